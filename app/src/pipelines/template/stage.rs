//! A stage and its kind. `StageKind` is the one place the kinds are listed: each carries
//! the fields only it takes, so code that must treat every kind is a `match` the
//! compiler checks. In YAML (and as stored) a stage stays one flat mapping that names
//! its `executor`; [`StageSource`] is that shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Problem;

/// One step of a template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StageSource", into = "StageSource")]
pub struct Stage {
    pub name: String,
    pub title: Option<String>,
    /// Stages that must finish first (besides those referenced).
    pub needs: Vec<String>,
    /// Values the stage takes, literal or references (what each kind takes:
    /// [`StageKind::input_shape`]).
    pub inputs: BTreeMap<String, serde_json::Value>,
    /// Attempts before the stage fails (1 = no retry).
    pub attempts: u32,
    /// Seconds before an attempt is stopped.
    pub timeout_seconds: u64,
    /// `for_each: ${stages.NAME.values.FIELD}`: the stage runs once per item of that
    /// list (fan-out), each instance seeing its item as `${item}`.
    pub for_each: Option<String>,
    pub kind: StageKind,
}

/// What runs a stage, with what only that executor needs.
#[derive(Clone, Debug, PartialEq)]
pub enum StageKind {
    /// A program on Slate's own machine.
    Local(LocalStage),
    /// A Kubernetes Job.
    Kubernetes(JobStage),
    /// A workflow graph on the ComfyUI endpoint.
    Comfyui(ComfyStage),
    /// A job run by Dagster.
    Dagster(DagsterStage),
    /// A LangGraph assistant (an agent graph) run on a thread.
    Langgraph(LanggraphStage),
}

/// `executor: local`.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalStage {
    /// A bare name an admin allowed (see the local executor).
    pub program: String,
    /// Each one literal, with references inside.
    pub args: Vec<String>,
}

/// `executor: kubernetes`.
#[derive(Clone, Debug, PartialEq)]
pub struct JobStage {
    /// Pinned (a tag or a digest).
    pub image: String,
    /// The container's command, each element literal with references inside.
    pub command: Vec<String>,
    /// GPUs to request (0: none).
    pub gpu: u32,
}

/// `executor: comfyui`.
#[derive(Clone, Debug, PartialEq)]
pub struct ComfyStage {
    /// A stored workflow, `NAME@VERSION` or `NAME` (its latest version when a run is
    /// submitted): `crate::comfyui::workflow`.
    pub workflow: String,
}

/// `executor: dagster`.
#[derive(Clone, Debug, PartialEq)]
pub struct DagsterStage {
    /// The code location (`--location-name` of its code server).
    pub location: String,
    /// The repository in it (`__repository__` for a `Definitions` object).
    pub repository: String,
    pub job: String,
}

/// `executor: langgraph`.
#[derive(Clone, Debug, PartialEq)]
pub struct LanggraphStage {
    /// An assistant id, or a graph's id (which LangGraph takes as its default assistant).
    pub assistant: String,
}

/// The repository a `Definitions` object makes.
pub const DAGSTER_DEFAULT_REPOSITORY: &str = "__repository__";

impl StageKind {
    /// The name templates give this kind (`executor:`), which is also its queue's.
    pub fn executor(&self) -> &'static str {
        match self {
            StageKind::Local(_) => "local",
            StageKind::Kubernetes(_) => "kubernetes",
            StageKind::Comfyui(_) => "comfyui",
            StageKind::Dagster(_) => "dagster",
            StageKind::Langgraph(_) => "langgraph",
        }
    }

    /// The texts with references in them besides the inputs (arguments, a command).
    pub fn texts(&self) -> &[String] {
        match self {
            StageKind::Local(s) => &s.args,
            StageKind::Kubernetes(s) => &s.command,
            StageKind::Comfyui(_) | StageKind::Dagster(_) | StageKind::Langgraph(_) => &[],
        }
    }

    /// Whether the stage runs on Slate's own machine, where an absolute path in an
    /// argument would be the host's.
    pub fn runs_on_host(&self) -> bool {
        match self {
            StageKind::Local(_) => true,
            StageKind::Kubernetes(_)
            | StageKind::Comfyui(_)
            | StageKind::Dagster(_)
            | StageKind::Langgraph(_) => false,
        }
    }
}

/// A stage as written: one flat mapping, every kind's fields optional. Read from YAML
/// strictly (unknown keys refused) and turned into a [`Stage`]; also the stored and wire
/// form of a stage, byte for byte what it has always been.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub executor: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default)]
    pub gpu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, serde_json::Value>,
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_attempts() -> u32 {
    3
}

fn default_timeout() -> u64 {
    3600
}

/// Why a written stage is not a stage: the field it is about (to find its line) and
/// what is wrong.
pub struct KindProblem {
    pub field: &'static str,
    pub message: String,
}

impl StageSource {
    /// The stage, when its executor is known and it has what that executor needs. With
    /// `strict`, a field another kind takes is a problem too (as it is when a template is
    /// saved); without, it is ignored (versions stored before were checked when saved).
    pub fn into_stage(self, strict: bool) -> Result<Stage, Vec<KindProblem>> {
        let mut problems = Vec::new();
        let name = self.name.clone();
        let missing = |field: &'static str, what: &str| KindProblem {
            field,
            message: format!(
                "stage \"{name}\": a {} stage names its {what}",
                self.executor
            ),
        };
        let kind = match self.executor.as_str() {
            "local" => match &self.program {
                Some(program) => Some(StageKind::Local(LocalStage {
                    program: program.clone(),
                    args: self.args.clone(),
                })),
                None => {
                    problems.push(missing("name:", "program"));
                    None
                }
            },
            "kubernetes" => match &self.image {
                Some(image) => Some(StageKind::Kubernetes(JobStage {
                    image: image.clone(),
                    command: self.command.clone(),
                    gpu: self.gpu,
                })),
                None => {
                    problems.push(missing("name:", "image"));
                    None
                }
            },
            "comfyui" => match &self.workflow {
                Some(workflow) => Some(StageKind::Comfyui(ComfyStage {
                    workflow: workflow.clone(),
                })),
                None => {
                    problems.push(missing("name:", "workflow"));
                    None
                }
            },
            "dagster" => match (&self.location, &self.job) {
                (Some(location), Some(job)) => Some(StageKind::Dagster(DagsterStage {
                    location: location.clone(),
                    repository: self
                        .repository
                        .clone()
                        .unwrap_or_else(|| DAGSTER_DEFAULT_REPOSITORY.to_owned()),
                    job: job.clone(),
                })),
                (None, _) => {
                    problems.push(missing("name:", "code location (location:)"));
                    None
                }
                (_, None) => {
                    problems.push(missing("name:", "job"));
                    None
                }
            },
            "langgraph" => match &self.assistant {
                Some(assistant) => Some(StageKind::Langgraph(LanggraphStage {
                    assistant: assistant.clone(),
                })),
                None => {
                    problems.push(missing("name:", "assistant"));
                    None
                }
            },
            other => {
                problems.push(KindProblem {
                    field: "executor:",
                    message: format!(
                        "stage \"{}\": executor \"{other}\" is not one of {}",
                        self.name,
                        super::EXECUTORS.join(", ")
                    ),
                });
                None
            }
        };
        if strict {
            if let Some(kind) = &kind {
                problems.extend(self.foreign_fields(kind));
            }
        }
        match kind {
            Some(kind) if problems.is_empty() => Ok(Stage {
                name: self.name,
                title: self.title,
                needs: self.needs,
                inputs: self.inputs,
                attempts: self.attempts,
                timeout_seconds: self.timeout_seconds,
                for_each: self.for_each,
                kind,
            }),
            _ => Err(problems),
        }
    }

    /// The fields given that belong to another kind.
    fn foreign_fields(&self, kind: &StageKind) -> Vec<KindProblem> {
        let given: [(&'static str, bool); 9] = [
            ("program", self.program.is_some()),
            ("args", !self.args.is_empty()),
            ("image", self.image.is_some()),
            ("command", !self.command.is_empty()),
            ("workflow", self.workflow.is_some()),
            ("location", self.location.is_some()),
            ("repository", self.repository.is_some()),
            ("job", self.job.is_some()),
            ("assistant", self.assistant.is_some()),
        ];
        let takes: &[&str] = match kind {
            StageKind::Local(_) => &["program", "args"],
            StageKind::Kubernetes(_) => &["image", "command"],
            StageKind::Comfyui(_) => &["workflow"],
            StageKind::Dagster(_) => &["location", "repository", "job"],
            StageKind::Langgraph(_) => &["assistant"],
        };
        let mut out: Vec<KindProblem> = given
            .iter()
            .filter(|(field, present)| *present && !takes.contains(field))
            .map(|(field, _)| KindProblem {
                field: match *field {
                    "program" => "program:",
                    "args" => "args:",
                    "image" => "image:",
                    "command" => "command:",
                    "workflow" => "workflow:",
                    "location" => "location:",
                    "repository" => "repository:",
                    "job" => "job:",
                    _ => "assistant:",
                },
                message: format!(
                    "stage \"{}\": a {} stage takes no {field} (it takes {})",
                    self.name,
                    kind.executor(),
                    takes.join(", ")
                ),
            })
            .collect();
        if self.gpu > 0 && !matches!(kind, StageKind::Kubernetes(_)) {
            out.push(KindProblem {
                field: "gpu:",
                message: format!(
                    "stage \"{}\": only a kubernetes stage can ask for GPUs",
                    self.name
                ),
            });
        }
        out
    }
}

impl TryFrom<StageSource> for Stage {
    type Error = String;

    fn try_from(source: StageSource) -> Result<Self, String> {
        source.into_stage(false).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

impl From<Stage> for StageSource {
    fn from(stage: Stage) -> Self {
        let mut source = StageSource {
            name: stage.name,
            title: stage.title,
            executor: stage.kind.executor().to_owned(),
            needs: stage.needs,
            program: None,
            args: Vec::new(),
            image: None,
            command: Vec::new(),
            gpu: 0,
            workflow: None,
            location: None,
            repository: None,
            job: None,
            assistant: None,
            for_each: stage.for_each,
            inputs: stage.inputs,
            attempts: stage.attempts,
            timeout_seconds: stage.timeout_seconds,
        };
        match stage.kind {
            StageKind::Local(s) => {
                source.program = Some(s.program);
                source.args = s.args;
            }
            StageKind::Kubernetes(s) => {
                source.image = Some(s.image);
                source.command = s.command;
                source.gpu = s.gpu;
            }
            StageKind::Comfyui(s) => source.workflow = Some(s.workflow),
            StageKind::Dagster(s) => {
                source.location = Some(s.location);
                // The default stays unwritten, so a stage reads as it was written.
                if s.repository != DAGSTER_DEFAULT_REPOSITORY {
                    source.repository = Some(s.repository);
                }
                source.job = Some(s.job);
            }
            StageKind::Langgraph(s) => source.assistant = Some(s.assistant),
        }
        source
    }
}

impl KindProblem {
    /// As a template problem, on the line of its field within the stage at `at`.
    pub fn located(self, source: &str, at: Option<usize>) -> Problem {
        let line = if self.field == "name:" {
            at
        } else {
            at.and_then(|a| super::validate::line_of(source, self.field, a))
                .or(at)
        };
        Problem {
            line,
            message: self.message,
        }
    }
}
