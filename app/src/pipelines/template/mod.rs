//! The template model. A template is YAML:
//!
//! ```yaml
//! name: transcode-and-proxies
//! title: Transcode and proxies
//! parameters:
//!   - {name: source, type: asset, kind: video}
//!   - {name: crf, type: integer, min: 14, max: 35, default: 20}
//! stages:
//!   - name: proxy
//!     executor: local
//!     program: ffmpeg
//!     args: ["-i", "${params.source}", "-crf", "${params.crf}", "${output}/proxy.mp4"]
//! ```
//!
//! A stage names its executor (`local`, `comfyui`, `kubernetes`: [`StageKind`]) and its
//! inputs: literal values or references, `${params.NAME}` and `${stages.NAME.outputs}` (which makes the
//! stage depend on that one, as `needs` does). Validation rejects unknown keys, unknown
//! references, cycles, and references whose type does not fit where they are used, and
//! says on which line (`validate`). Parameters' values are checked by `params`, the
//! references inside values are read by `references`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

mod params;
mod references;
mod stage;
#[cfg(all(test, feature = "ssr"))]
mod tests;
mod validate;

pub use references::{host_path, json_at, references, Reference};
pub use stage::{
    ComfyStage, DagsterStage, JobStage, LanggraphStage, LocalStage, Stage, StageKind, StageSource,
    DAGSTER_DEFAULT_REPOSITORY,
};
pub use validate::{stage_texts, Shape};

/// The kinds an asset parameter may ask for (as the asset library names them).
pub const ASSET_KINDS: [&str; 6] = ["image", "video", "audio", "scene", "model", "other"];
pub const EXECUTORS: [&str; 5] = ["local", "comfyui", "kubernetes", "dagster", "langgraph"];
/// Most instances one fanned-out stage may have.
pub const MAX_FAN_OUT: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ParamType {
    /// One line of text.
    String {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<usize>,
    },
    /// Several lines (prompts, notes).
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<usize>,
    },
    Integer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    Float {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
    },
    Enum {
        options: Vec<String>,
    },
    Boolean,
    /// A random seed: an integer from 0 to 2^53 - 1, drawn when left empty.
    Seed,
    /// One asset of a kind from the library.
    Asset {
        kind: String,
    },
    /// A model file on the ComfyUI endpoint, from one of its folders (`checkpoints`,
    /// `loras`, …): the choices are the endpoint's files; left empty, the first file of
    /// the folder there is used and recorded.
    Model {
        folder: String,
    },
    /// Several assets of a kind.
    Assets {
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<usize>,
    },
}

/// Largest seed: what a JSON number holds exactly.
pub const MAX_SEED: i64 = (1 << 53) - 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(flatten)]
    pub ty: ParamType,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    pub stages: Vec<Stage>,
}

/// A template as written, before its stages are told apart by kind.
#[cfg(feature = "ssr")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateSource {
    name: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Vec<Parameter>,
    stages: Vec<StageSource>,
}

/// A problem in a template, with the line it is on (1-based) when it can be found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Template {
    /// Parses and validates; every problem found, with its line.
    #[cfg(feature = "ssr")]
    pub fn parse(source: &str) -> Result<Template, Vec<Problem>> {
        let written: TemplateSource = serde_yaml::from_str(source).map_err(|e| {
            vec![Problem {
                line: e.location().map(|l| l.line()),
                message: e.to_string(),
            }]
        })?;
        // Each stage as its kind first: what the rest checks depends on it.
        let stages_at = validate::line_of(source, "stages:", 1).unwrap_or(1);
        let mut stages = Vec::new();
        let mut problems = Vec::new();
        for written in written.stages {
            let at = validate::line_of(source, &format!("name: {}", written.name), stages_at);
            match written.into_stage(true) {
                Ok(stage) => stages.push(stage),
                Err(found) => problems.extend(found.into_iter().map(|p| p.located(source, at))),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let template = Template {
            name: written.name,
            title: written.title,
            description: written.description,
            parameters: written.parameters,
            stages,
        };
        let problems = template.problems(source);
        if problems.is_empty() {
            Ok(template)
        } else {
            Err(problems)
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The stages a stage waits for: its `needs` and the stages it references.
    pub fn upstream(&self, stage: &Stage) -> BTreeSet<String> {
        let mut up: BTreeSet<String> = stage.needs.iter().cloned().collect();
        for text in validate::stage_texts(stage) {
            for r in references(&text).unwrap_or_default() {
                if let Reference::Outputs(s)
                | Reference::NodeOutputs(s, _)
                | Reference::Values(s, _) = r
                {
                    up.insert(s);
                }
            }
        }
        up
    }

    /// Stage names in an order where each comes after its upstream stages, or the names
    /// on a cycle.
    pub fn order(&self) -> Result<Vec<String>, Vec<String>> {
        let mut done: Vec<String> = Vec::new();
        let mut left: Vec<&Stage> = self.stages.iter().collect();
        while !left.is_empty() {
            let ready: Vec<String> = left
                .iter()
                .filter(|s| {
                    self.upstream(s)
                        .iter()
                        .all(|u| done.contains(u) || self.stage(u).is_none())
                })
                .map(|s| s.name.clone())
                .collect();
            if ready.is_empty() {
                return Err(left.iter().map(|s| s.name.clone()).collect());
            }
            left.retain(|s| !ready.contains(&s.name));
            done.extend(ready);
        }
        Ok(done)
    }
}

/// The templates that ship with Slate.
pub const BUILT_IN: [(&str, &str); 6] = [
    (
        "keyframes-to-animatic",
        include_str!("builtin/keyframes-to-animatic.yaml"),
    ),
    (
        "transcode-and-proxies",
        include_str!("builtin/transcode-and-proxies.yaml"),
    ),
    (
        "blender-render",
        include_str!("builtin/blender-render.yaml"),
    ),
    (
        "keyframe-to-clip",
        include_str!("builtin/keyframe-to-clip.yaml"),
    ),
    (
        "opencv-post-process",
        include_str!("builtin/opencv-post-process.yaml"),
    ),
    (
        "story-to-animatic",
        include_str!("builtin/story-to-animatic.yaml"),
    ),
];
