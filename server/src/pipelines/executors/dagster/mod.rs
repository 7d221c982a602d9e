//! The dagster executor: each attempt of a `dagster` stage is one run of a Dagster job,
//! launched and followed through the webserver's GraphQL API (`SLATE_DAGSTER_URL`).
//!
//! Config: the stage's inputs, bound like every stage's, become the run config; an
//! input's name is a path into it (`ops.render_shot.config.frames: ${params.frames}` is
//! `{"ops": {"render_shot": {"config": {"frames": 5}}}}`, see [`run_config`]). The run
//! is tagged `slate/run`, `slate/stage` (the stage row), `slate/attempt` and
//! `slate/output`: the attempt's output directory (`<stage dir>/<attempt>/out`, made
//! first) on the work volume Dagster's code server shares at the same path, as Job stages
//! do. What the job writes there becomes the stage's assets when the run succeeds.
//!
//! Following: the run and its event log after a cursor are polled every second in one
//! request. Each event becomes a log line (`[render_shot] STEP_SUCCESS ...`, errors on
//! stderr), each step process's captured stdout/stderr is tailed into the log, the bar is
//! the share of the run's steps that ended, and materializations (asset key and metadata)
//! are kept in the attempt's detail under `materializations`, beside the run id.
//!
//! Ends: SUCCESS is the outputs ingested; FAILURE fails the attempt with the step's error
//! in Dagster's words (retried: the next attempt re-executes the failed run from its
//! failure, `FROM_FAILURE`, with the files the steps that succeeded left carried over);
//! a run cancelled in Dagster fails the stage for good (someone chose it). Cancelling the
//! Slate run terminates the Dagster run (`SAFE_TERMINATE`, forced after a minute) and
//! waits for CANCELED. Refusals are final and nothing is launched: a run config Dagster
//! rejects (each error's message, naming its field), an unknown location, repository or
//! job (in Dagster's words).
//!
//! After a restart the run a lost attempt launched is followed, never launched twice: it
//! is the lost attempt's reference (`dagster <run id>`), or, when Slate died between the
//! launch and recording it, the unfinished run tagged with this stage.

mod config;
mod graphql;
mod log;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use app::error::AppError;
use app::pipelines::template::{DagsterStage, StageKind};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

pub use self::config::run_config;
pub use self::graphql::{ConfigProblem, Dagster, GraphqlError, Launched, RunState, Selector};
use self::log::{event_line, materialization, Tail};
use crate::pipelines::attempt::{Attempt, Report, Stream};
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::queue::Outcome;
use crate::pipelines::workspace::{bind_inputs, Workspace};

/// The queue of Dagster runs (`SLATE_DAGSTER_URL` set; capacity from the settings).
pub const QUEUE: &str = "dagster";

/// How often a run is polled (its status and new events: one small request).
const POLL: Duration = Duration::from_secs(1);
/// How long a run may take to stop after `SAFE_TERMINATE` before it is marked cancelled.
const STOP_WITHIN: Duration = Duration::from_secs(60);
/// How long Dagster may not answer before the attempt fails (its run goes on; the next
/// attempt finds it by its tag and follows it).
const UNANSWERED_FOR: Duration = Duration::from_secs(600);
/// Events read per request.
const PAGE: u32 = 500;

/// Refuses a dagster stage when no server is configured.
pub fn admit(stage: &str, configured: bool) -> Result<(), AppError> {
    if configured {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "Stage \"{stage}\" runs on dagster, and this Slate has no dagster server (SLATE_DAGSTER_URL)."
    )))
}

pub struct DagsterExecutor {
    pub files: Workspace,
    pub client: Dagster,
    pub capacity: i64,
}

impl DagsterExecutor {
    /// The executor, when the settings name a server.
    pub fn from_config(
        config: &crate::config::Config,
        files: Workspace,
    ) -> anyhow::Result<Option<Self>> {
        let Some(base) = &config.dagster_url else {
            return Ok(None);
        };
        Ok(Some(DagsterExecutor {
            files,
            client: Dagster::new(base).map_err(anyhow::Error::msg)?,
            capacity: config.dagster_runs,
        }))
    }
}

#[async_trait]
impl Executor for DagsterExecutor {
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
        let StageKind::Dagster(stage) = &attempt.stage.kind else {
            return Err("not a dagster stage".into());
        };
        self.attempt(attempt, stage, cancel).await
    }
}

/// A problem with a dagster stage found before any run: the field it is about (an
/// input's path such as `ops.render_shot.config.frames`, `inputs`, or `job`) and what is
/// wrong, in Dagster's words where they are Dagster's.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckProblem {
    pub field: String,
    pub message: String,
}

/// Checks a stage's run config against the Dagster at `base` without launching
/// (`isPipelineConfigValid`): no problems, or each one by field. `inputs` are the
/// stage's bound inputs ([`bind_inputs`]). An error is Dagster not answering.
pub async fn check(
    base: &url::Url,
    stage: &DagsterStage,
    inputs: &Map<String, Value>,
) -> Result<Vec<CheckProblem>, String> {
    let config = match run_config(inputs) {
        Ok(c) => c,
        Err(message) => {
            return Ok(vec![CheckProblem {
                field: "inputs".into(),
                message,
            }])
        }
    };
    let client = Dagster::new(base)?;
    let answer = client
        .validate(&selector(stage), &config)
        .await
        .map_err(|e| e.to_string())?;
    Ok(match answer {
        Ok(problems) => problems
            .into_iter()
            .map(|p| CheckProblem {
                field: p.path.unwrap_or_else(|| "inputs".into()),
                message: p.message,
            })
            .collect(),
        Err(Launched::NoJob(message)) => vec![CheckProblem {
            field: "job".into(),
            message: no_job(stage, &message),
        }],
        Err(other) => vec![CheckProblem {
            field: "job".into(),
            message: refusal(stage, other),
        }],
    })
}

fn selector(stage: &DagsterStage) -> Selector<'_> {
    Selector {
        location: &stage.location,
        repository: &stage.repository,
        job: &stage.job,
    }
}

fn no_job(stage: &DagsterStage, message: &str) -> String {
    format!(
        "Dagster has no job {} in location {} (repository {}): {message}",
        stage.job, stage.location, stage.repository
    )
}

/// Any launch answer that is not a run, in words for the stage.
fn refusal(stage: &DagsterStage, answer: Launched) -> String {
    match answer {
        Launched::Run(id) => format!("Dagster launched run {id}"),
        Launched::Invalid(problems) => format!(
            "Dagster refused the run config of job {}: {}",
            stage.job,
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        Launched::NoJob(message) => no_job(stage, &message),
        Launched::Python(message) => {
            format!("Dagster failed to launch job {}: {message}", stage.job)
        }
        Launched::Refused { kind, message } => {
            format!(
                "Dagster refused to launch job {} ({kind}): {message}",
                stage.job
            )
        }
    }
}

/// The output directory a run was tagged with, when it is one of this stage's attempts'
/// (`<stage dir>/<number>/out`): nothing else is ever read or moved.
fn output_of(run: &RunState, stage_dir: &Path) -> Option<PathBuf> {
    let tagged = PathBuf::from(run.tags.get("slate/output")?);
    let number = tagged.parent()?.file_name()?.to_str()?;
    let fits = tagged.file_name()? == "out"
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && tagged == stage_dir.join(number).join("out");
    fits.then_some(tagged)
}

/// The first eight characters of a run id, as Dagster's UI shows it.
fn short(run: &str) -> &str {
    run.get(..8).unwrap_or(run)
}

/// How a followed run ended.
enum End {
    Finished {
        run: RunState,
        failure: Option<String>,
    },
    /// Dagster stopped answering for too long.
    Unanswered(String),
}

impl DagsterExecutor {
    /// The run a lost attempt of this stage launched, with its output directory: by the
    /// lost attempt's reference, else by the stage's tag (a crash between the launch and
    /// its recording) among the runs that have not ended.
    async fn left_behind(
        &self,
        attempt: &Attempt,
        stage_dir: &Path,
    ) -> Result<Option<(RunState, PathBuf)>, String> {
        if let Some((run_id, number)) = attempt.left_behind("dagster").await {
            let found = self
                .client
                .run(&run_id)
                .await
                .map_err(|e| format!("cannot ask Dagster about run {run_id}: {e}"))?;
            if let Some(run) = found {
                let out = output_of(&run, stage_dir)
                    .unwrap_or_else(|| stage_dir.join(number.to_string()).join("out"));
                return Ok(Some((run, out)));
            }
        }
        let stage_id = attempt.claim.stage_id.to_string();
        let tagged = self
            .client
            .runs_tagged("slate/stage", &stage_id)
            .await
            .map_err(|e| format!("cannot ask Dagster for this stage's runs: {e}"))?;
        Ok(tagged
            .into_iter()
            .filter(|r| !r.finished())
            .find_map(|r| output_of(&r, stage_dir).map(|out| (r, out))))
    }

    /// The failed run the previous attempt left, to re-execute from its failure.
    async fn failed_before(&self, attempt: &Attempt) -> Option<RunState> {
        let (run_id, _, state) = attempt.previous("dagster").await?;
        if state != "failed" {
            return None;
        }
        match self.client.run(&run_id).await {
            Ok(Some(run)) if run.status == "FAILURE" => Some(run),
            _ => None,
        }
    }

    async fn attempt(
        &self,
        attempt: &Attempt,
        stage: &DagsterStage,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let claim = &attempt.claim;
        let stage_dir = self.files.stage_dir(claim);
        let mut detail = json!({
            "location": stage.location,
            "repository": stage.repository,
            "job": stage.job,
            "materializations": [],
        });
        let (run_id, out) = match self.left_behind(attempt, &stage_dir).await? {
            Some((run, out)) => {
                detail["adopted"] = json!(true);
                attempt
                    .status(
                        &format!(
                            "Following Dagster run {}, launched before Slate restarted.",
                            short(&run.id)
                        ),
                        None,
                    )
                    .await;
                (run.id, out)
            }
            None => match self.launch(attempt, stage, &stage_dir, &mut detail).await? {
                Ok(launched) => launched,
                Err(refused) => return Ok(refused),
            },
        };
        detail["run_id"] = json!(run_id);
        detail["run_page"] = json!(self.client.run_page(&run_id));
        let reference = format!("dagster {run_id}");
        attempt.started(&reference, Some(detail.clone())).await;

        let (events, recorder) = attempt.record::<Report>();
        let mut cancel_asked = false;
        let end = self
            .follow(
                attempt,
                &run_id,
                &reference,
                &mut detail,
                &events,
                cancel,
                &mut cancel_asked,
            )
            .await;
        drop(events);
        let log = recorder.await.unwrap_or_default();
        let workdir = out
            .parent()
            .map(Path::to_owned)
            .unwrap_or(stage_dir.clone());
        let text = format!(
            "# Dagster run {run_id} of {}/{}/{}\n{log}",
            stage.location, stage.repository, stage.job
        );
        self.files
            .archive_log(attempt, &workdir, &text, &reference)
            .await;

        let (run, failure) = match end {
            End::Unanswered(why) => return Ok(Outcome::Failed(why)),
            End::Finished { run, failure } => (run, failure),
        };
        let short_id = short(&run_id);
        Ok(match (run.status.as_str(), cancel_asked) {
            (_, true) => Outcome::Cancelled,
            ("SUCCESS", false) => {
                let final_out = stage_dir.join("out");
                let _ = tokio::fs::remove_dir_all(&final_out).await;
                tokio::fs::create_dir_all(&out)
                    .await
                    .map_err(|e| format!("cannot keep the outputs: {e}"))?;
                tokio::fs::rename(&out, &final_out)
                    .await
                    .map_err(|e| format!("cannot keep the outputs: {e}"))?;
                let how = json!({
                    "executor": "dagster",
                    "dagster_run": run_id,
                    "location": stage.location,
                    "repository": stage.repository,
                    "job": stage.job,
                });
                self.files.outputs(attempt, &final_out, &[], how).await?;
                Outcome::Succeeded
            }
            ("CANCELED", false) => Outcome::FailedForGood(format!(
                "Dagster run {short_id} was cancelled in Dagster, not by Slate."
            )),
            _ => Outcome::Failed(
                failure.unwrap_or_else(|| format!("Dagster run {short_id} ended {}.", run.status)),
            ),
        })
    }

    /// Launches the attempt's run (a re-execution of the previous attempt's failed run,
    /// or a fresh one): its id and output directory, or the refusal that ends the stage.
    async fn launch(
        &self,
        attempt: &Attempt,
        stage: &DagsterStage,
        stage_dir: &Path,
        detail: &mut Value,
    ) -> Result<Result<(String, PathBuf), Outcome>, String> {
        let claim = &attempt.claim;
        let out = stage_dir.join(claim.attempt.to_string()).join("out");
        let _ = tokio::fs::remove_dir_all(&out).await;
        tokio::fs::create_dir_all(&out)
            .await
            .map_err(|e| format!("cannot prepare the output directory: {e}"))?;
        let tags = [
            ("slate/run", claim.run_id.to_string()),
            ("slate/stage", claim.stage_id.to_string()),
            ("slate/attempt", claim.attempt_id.to_string()),
            ("slate/output", out.display().to_string()),
        ];
        if let Some(parent) = self.failed_before(attempt).await {
            // The steps that succeeded are not run again: what they wrote comes along.
            if let Some(before) = output_of(&parent, stage_dir) {
                carry_over(&before, &out).await?;
            }
            attempt
                .status(
                    &format!(
                        "Re-executing Dagster run {} from its failure.",
                        short(&parent.id)
                    ),
                    None,
                )
                .await;
            let answer = self
                .client
                .reexecute(&parent.id, &tags)
                .await
                .map_err(|e| format!("cannot re-execute Dagster run {}: {e}", parent.id))?;
            match answer {
                Launched::Run(id) => {
                    detail["parent_run_id"] = json!(parent.id);
                    detail["strategy"] = json!("FROM_FAILURE");
                    return Ok(Ok((id, out)));
                }
                // The job changed under it (a step renamed): a fresh run instead.
                other => tracing::warn!(parent = %parent.id, answer = ?other,
                    "Dagster refused to re-execute a failed run; launching a fresh one"),
            }
        }
        let scope = self.files.scope(attempt).await?;
        let inputs = bind_inputs(&attempt.stage.inputs, &claim.params, &scope);
        let config = match run_config(&inputs) {
            Ok(c) => c,
            Err(e) => return Ok(Err(Outcome::FailedForGood(e))),
        };
        attempt
            .status(
                &format!("Launching Dagster job {} in {}.", stage.job, stage.location),
                None,
            )
            .await;
        let answer = self
            .client
            .launch(&selector(stage), &config, &tags)
            .await
            .map_err(|e| format!("cannot launch Dagster job {}: {e}", stage.job))?;
        detail["run_config"] = config;
        Ok(match answer {
            Launched::Run(id) => Ok((id, out)),
            // Another attempt would get the same answer.
            refused @ (Launched::Invalid(_) | Launched::NoJob(_)) => {
                Err(Outcome::FailedForGood(refusal(stage, refused)))
            }
            other => Err(Outcome::Failed(refusal(stage, other))),
        })
    }

    /// Follows the run to its end: events and captured output into the log, the bar and
    /// the status, materializations into the detail; a cancel terminates it.
    #[expect(clippy::too_many_arguments)]
    async fn follow(
        &self,
        attempt: &Attempt,
        run_id: &str,
        reference: &str,
        detail: &mut Value,
        events: &mpsc::Sender<Report>,
        mut cancel: watch::Receiver<bool>,
        cancel_asked: &mut bool,
    ) -> End {
        let short_id = short(run_id).to_owned();
        let mut cursor: Option<String> = None;
        let mut tails: BTreeMap<String, Tail> = BTreeMap::new();
        let mut ended_steps: Vec<String> = Vec::new();
        let mut failure: Option<String> = None;
        let mut answered = tokio::time::Instant::now();
        let mut terminating: Option<tokio::time::Instant> = None;
        let mut forced = false;
        let mut cancel_open = true;
        loop {
            if *cancel.borrow() && terminating.is_none() {
                *cancel_asked = true;
                terminating = Some(tokio::time::Instant::now());
                attempt
                    .status(&format!("Terminating Dagster run {short_id}."), None)
                    .await;
                match self.client.terminate(run_id, false).await {
                    Ok(graphql::Terminated::Asked) => {}
                    Ok(graphql::Terminated::Refused(why)) => {
                        log_line(events, Stream::Stderr, format!("# Dagster: {why}")).await
                    }
                    Err(e) => {
                        log_line(events, Stream::Stderr, format!("# cannot terminate: {e}")).await
                    }
                }
            }
            if let Some(since) = terminating {
                if !forced && since.elapsed() > STOP_WITHIN {
                    forced = true;
                    let _ = self.client.terminate(run_id, true).await;
                }
            }
            // The state and every new event (several pages when many came at once).
            let mut state = None;
            let mut failed_poll = None;
            for _ in 0..20 {
                match self.client.follow(run_id, cursor.as_deref(), PAGE).await {
                    Ok((run, page)) => {
                        answered = tokio::time::Instant::now();
                        if page.cursor.is_some() {
                            cursor = page.cursor.clone();
                        }
                        let mut found = false;
                        for e in &page.events {
                            let (stream, line) = event_line(e);
                            log_line(events, stream, line).await;
                            if let Some(m) = materialization(e) {
                                if let Some(all) = detail["materializations"].as_array_mut() {
                                    all.push(m);
                                    found = true;
                                }
                            }
                            if let Some(key) = &e.file_key {
                                tails
                                    .entry(key.clone())
                                    .or_insert_with(|| Tail::new(e.step_keys.clone()));
                            }
                            if let (Some((_, message)), Some(step)) = (&e.error, &e.step) {
                                failure.get_or_insert_with(|| {
                                    format!("step {step} failed: {}", log::error_text(message))
                                });
                            }
                            if let (Some(step), Some(t)) = (&e.step, &e.event_type) {
                                if matches!(
                                    t.as_str(),
                                    "STEP_SUCCESS" | "STEP_FAILURE" | "STEP_SKIPPED"
                                ) {
                                    ended_steps.push(step.clone());
                                }
                            }
                            if e.event_type.as_deref() == Some("RUN_FAILURE") && failure.is_none() {
                                failure = Some(e.message.clone());
                            }
                        }
                        if found {
                            attempt.started(reference, Some(detail.clone())).await;
                        }
                        state = Some(run);
                        if !page.has_more {
                            break;
                        }
                    }
                    Err(e) => {
                        failed_poll = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed_poll {
                if answered.elapsed() > UNANSWERED_FOR {
                    return End::Unanswered(format!(
                        "Dagster has not answered for {} minutes ({e}); run {run_id} may go on, and the next attempt follows it",
                        UNANSWERED_FOR.as_secs() / 60
                    ));
                }
                attempt
                    .status(&format!("Waiting for Dagster to answer: {e}."), None)
                    .await;
            }
            let run = match state {
                Some(Some(run)) => Some(run),
                Some(None) => {
                    return End::Finished {
                        run: RunState {
                            id: run_id.to_owned(),
                            status: "FAILURE".into(),
                            ..RunState::default()
                        },
                        failure: Some(format!("Dagster has no run {run_id} any more (deleted)")),
                    }
                }
                None => None,
            };
            let finished = run.as_ref().is_some_and(RunState::finished);
            self.tail(run_id, &mut tails, &ended_steps, finished, events)
                .await;
            if let Some(run) = run {
                let total = run.steps.len().max(1);
                let done = run.steps_done().min(total);
                let message = match run.status.as_str() {
                    "QUEUED" | "NOT_STARTED" | "STARTING" => {
                        format!("Dagster run {short_id} is queued ({}).", run.status)
                    }
                    "CANCELING" => format!("Dagster run {short_id} is being cancelled."),
                    _ => format!(
                        "Dagster run {short_id}: {done} of {} steps done.",
                        run.steps.len()
                    ),
                };
                attempt
                    .status(&message, Some(done as f32 / total as f32))
                    .await;
                if finished {
                    return End::Finished { run, failure };
                }
            }
            if cancel_open {
                tokio::select! {
                    changed = cancel.changed() => cancel_open = changed.is_ok(),
                    _ = tokio::time::sleep(POLL) => {}
                }
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Reads what each step process printed since last time; at the end, everything.
    async fn tail(
        &self,
        run_id: &str,
        tails: &mut BTreeMap<String, Tail>,
        ended_steps: &[String],
        finished: bool,
        events: &mpsc::Sender<Report>,
    ) {
        for (key, tail) in tails.iter_mut() {
            // A step's process is read a few more times after it ended (late flushes),
            // then only once more when the run ends.
            if tail.quiet > 2 && !finished {
                continue;
            }
            let Ok(captured) = self
                .client
                .captured(run_id, key, tail.cursor.as_deref())
                .await
            else {
                continue;
            };
            if captured.cursor.is_some() {
                tail.cursor = captured.cursor;
            }
            for (stream, chunk) in [
                (Stream::Stdout, captured.stdout),
                (Stream::Stderr, captured.stderr),
            ] {
                for (stream, line) in tail.lines(stream, &chunk, finished) {
                    log_line(events, stream, line).await;
                }
            }
            if tail.steps.iter().all(|s| ended_steps.contains(s)) {
                tail.quiet += 1;
            }
        }
    }
}

async fn log_line(events: &mpsc::Sender<Report>, stream: Stream, line: String) {
    let _ = events.send(Report::Log { stream, line }).await;
}

/// Links (or copies) the files an earlier attempt's run left into this attempt's output
/// directory: files only, links never followed.
async fn carry_over(from: &Path, to: &Path) -> Result<(), String> {
    let Ok(mut entries) = tokio::fs::read_dir(from).await else {
        return Ok(());
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if !entry.file_type().await.is_ok_and(|t| t.is_file()) {
            continue;
        }
        let target = to.join(entry.file_name());
        if tokio::fs::hard_link(entry.path(), &target).await.is_err() {
            tokio::fs::copy(entry.path(), &target)
                .await
                .map_err(|e| format!("cannot carry over {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_attempts_own_output_directory_is_taken_from_a_runs_tag() {
        let stage_dir = Path::new("/work/r1/render");
        let run = |out: &str| RunState {
            tags: [("slate/output".to_owned(), out.to_owned())].into(),
            ..RunState::default()
        };
        assert_eq!(
            output_of(&run("/work/r1/render/2/out"), stage_dir),
            Some(PathBuf::from("/work/r1/render/2/out"))
        );
        for wrong in [
            "/work/r1/render/out",
            "/work/r1/render/2/../../other/2/out",
            "/work/r1/other/2/out",
            "/etc/2/out",
            "/work/r1/render/x/out",
        ] {
            assert_eq!(output_of(&run(wrong), stage_dir), None, "{wrong}");
        }
        assert_eq!(output_of(&RunState::default(), stage_dir), None);
    }
}
