//! The local executor: a `local` stage's program runs on this machine (`process`), as
//! an allowed program and as the stage user (`programs`), its output read into log lines
//! and ffmpeg's progress (`output`). References resolve to files of the shared
//! [`Workspace`]; logs go to `stage_logs` as they come and to storage in full at the end;
//! every file the stage leaves in its output directory becomes an asset with its
//! provenance.

mod output;
pub mod process;
pub mod programs;

use std::sync::Arc;
use std::time::Duration;

use app::error::AppError;
use app::pipelines::template::{LocalStage, StageKind};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::watch;

use self::process::{Allowed, Event, Expected, RunAs, Spec};
use crate::pipelines::attempt::{Attempt, Report};
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::queue::Outcome;
use crate::pipelines::workspace::Workspace;

/// The queue of local stages (`SLATE_LOCAL_STAGES` at once on each replica).
pub const QUEUE: &str = "local";

pub struct LocalExecutor {
    pub files: Workspace,
    pub allowed: Arc<Allowed>,
    /// Whom the programs run as (the stage user when Slate is root).
    pub run_as: RunAs,
    /// How many stages may run at once here.
    pub capacity: i64,
}

/// Refuses a stage whose program an admin has not allowed.
pub fn admit(stage: &str, local: &LocalStage, allowed: &[String]) -> Result<(), AppError> {
    if allowed.contains(&local.program) {
        return Ok(());
    }
    Err(AppError::invalid(format!(
        "Stage \"{stage}\" runs \"{}\", which an admin has not allowed (allowed: {}).",
        local.program,
        allowed.join(", ")
    )))
}

impl LocalExecutor {
    pub fn from_config(config: &crate::config::Config, files: Workspace) -> Self {
        let names: Vec<String> = config
            .local_programs
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let allowed = Allowed::resolve(&names);
        if config.local_stages > 0 && !allowed.missing().is_empty() {
            tracing::warn!(missing = ?allowed.missing(), "some allowed programs for local stages cannot be found on PATH");
        }
        LocalExecutor {
            files,
            allowed: Arc::new(allowed),
            run_as: RunAs::for_setting(&config.stage_user),
            capacity: config.local_stages,
        }
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn queues(&self) -> Vec<Queue> {
        vec![Queue {
            name: QUEUE,
            capacity: self.capacity,
        }]
    }

    async fn run(
        &self,
        attempt: &Attempt,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        self.attempt(attempt, cancel).await
    }
}

impl From<Event> for Report {
    fn from(event: Event) -> Report {
        match event {
            Event::Started { pid } => Report::Started(format!("pid {pid}")),
            Event::Log { stream, line } => Report::Log { stream, line },
            Event::Progress(p) => Report::Progress(p),
        }
    }
}

impl LocalExecutor {
    async fn attempt(
        &self,
        attempt: &Attempt,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let StageKind::Local(local) = &attempt.stage.kind else {
            return Err("not a local stage".into());
        };
        let claim = &attempt.claim;
        let stage_dir = self.files.stage_dir(claim);
        let workdir = stage_dir.join(claim.attempt.to_string());
        let out = workdir.join("out");
        let (args, inputs) = self.files.arguments(attempt, &local.args, &out).await?;
        let program = local.program.clone();
        let expected = inputs
            .iter()
            .find_map(|(_, i)| i.duration_us)
            .map(Expected::DurationMicros);
        let spec = Spec {
            program: program.clone(),
            args: args.clone(),
            workdir: workdir.clone(),
            timeout: Duration::from_secs(attempt.stage.timeout_seconds.max(1)),
            expected,
            run_as: self.run_as.clone(),
        };
        let (tx, recorder) = attempt.record::<Event>();
        let result = process::run(&self.allowed, &spec, tx, cancel).await;
        let log = recorder.await.unwrap_or_default();
        let text = format!("$ {program} {}\n{log}", args.join(" "));
        self.files
            .archive_log(attempt, &workdir, &text, &program)
            .await;
        let outcome = match result {
            Err(e) => return Err(e.to_string()),
            Ok(process::Outcome::Succeeded) => Outcome::Succeeded,
            Ok(process::Outcome::Cancelled) => Outcome::Cancelled,
            Ok(process::Outcome::TimedOut) => Outcome::Failed(format!(
                "{program} ran longer than {} s and was stopped",
                attempt.stage.timeout_seconds
            )),
            Ok(process::Outcome::Failed {
                exit_code,
                signal,
                stderr_tail,
            }) => {
                let last = stderr_tail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .replace(&workdir.display().to_string(), ".");
                Outcome::Failed(match (exit_code, signal) {
                    (Some(code), _) => format!("{program} exited with status {code}: {last}"),
                    (_, Some(sig)) => format!("{program} was killed by signal {sig}: {last}"),
                    _ => format!("{program} failed: {last}"),
                })
            }
        };
        if outcome == Outcome::Succeeded {
            let final_out = stage_dir.join("out");
            let _ = tokio::fs::remove_dir_all(&final_out).await;
            tokio::fs::rename(&out, &final_out)
                .await
                .map_err(|e| format!("cannot keep the outputs: {e}"))?;
            let how = json!({"executor": "local", "program": program, "args": args});
            self.files
                .outputs(attempt, &final_out, &inputs, how)
                .await?;
        }
        Ok(outcome)
    }
}
