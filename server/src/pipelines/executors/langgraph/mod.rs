//! The langgraph executor: a `langgraph` stage runs an assistant (or a graph, by its id) of
//! the LangGraph server (`SLATE_LANGGRAPH_URL`, with `SLATE_LANGGRAPH_TOKEN` as its bearer
//! token) on a thread named by the attempt's id, its inputs (bound like every stage's) as
//! the graph's input.
//!
//! The run is started in the background with a resumable stream of `custom`, `updates`
//! and `values` events, and the stream is joined: custom `{progress, message}` moves the
//! bar and says what the graph does, updates become log lines (the node and a short JSON
//! summary), the last values are the stage's values (`${stages.NAME.values.FIELD}`, and
//! `values.json` among its outputs), an `error` event fails the stage in the graph's words.
//! A dropped connection is joined again after the last event seen (`Last-Event-ID`), and
//! the run's status, not the stream, says how it ended.
//!
//! A graph that interrupts for a person makes the stage wait: the question and the
//! thread's values are kept (`questions`), the status says "Waiting for a person: …", and
//! once a lead, an admin or the submitter has answered, the thread is resumed with the
//! answer (`{"action": "approve" | "edit" | "reject", ...}`) by a new run, and followed
//! again. Cancel cancels the run in flight (or stops waiting for a person).
//!
//! The thread is recorded before the run starts (`langgraph <thread> -`), and the run once
//! it has (`langgraph <thread> <run> [after:<event>]`): after Slate restarts, the attempt
//! that takes the stage up follows the newest run of the same thread, from the last event
//! recorded, and never starts another (runs are made with `multitask_strategy: reject`).

mod client;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use app::error::AppError;
use app::pipelines::template::StageKind;

pub use self::client::{LanggraphClient, LgError, SseEvent};
use crate::pipelines::attempt::{Attempt, Report, Stream};
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::questions::{self, Asked};
use crate::pipelines::queue::Outcome;
use crate::pipelines::workspace::{bind_inputs, Workspace};

/// The queue of LangGraph runs (`SLATE_LANGGRAPH_URL` set; capacity from the settings).
pub const QUEUE: &str = "langgraph";

/// The events Slate asks the run to stream.
const STREAM_MODE: [&str; 3] = ["custom", "updates", "values"];
/// How often an answer is looked for while a person is asked, and a lost stream joined
/// again.
const POLL: Duration = Duration::from_secs(1);
/// How long LangGraph may stay unreachable while a run is followed before the attempt
/// fails (and is retried while attempts remain).
const UNREACHABLE_FOR: Duration = Duration::from_secs(300);
/// At most this often is the last event seen recorded (for joining after a restart).
const RECORD_EVERY: Duration = Duration::from_secs(2);
/// A log line of an update is cut to this many characters.
const SUMMARY_CHARS: usize = 240;

/// Refuses a langgraph stage when no server is configured.
pub fn admit(stage: &str, configured: bool) -> Result<(), AppError> {
    if configured {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "Stage \"{stage}\" runs on langgraph, and this Slate has no langgraph server (SLATE_LANGGRAPH_URL)."
    )))
}

pub struct LanggraphExecutor {
    pub files: Workspace,
    pub base: url::Url,
    /// The bearer token the server's custom auth checks (never logged).
    pub token: Option<String>,
    pub capacity: i64,
}

impl LanggraphExecutor {
    /// The executor, when the settings name a server.
    pub fn from_config(
        config: &crate::config::Config,
        files: Workspace,
    ) -> anyhow::Result<Option<Self>> {
        Ok(config.langgraph_url.clone().map(|base| LanggraphExecutor {
            files,
            base,
            token: config
                .langgraph_token
                .clone()
                .filter(|t| !t.trim().is_empty()),
            capacity: config.langgraph_runs,
        }))
    }
}

/// Resolves when the run is cancelled (never, once nobody can cancel it any more).
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits `d`, or less when cancelled; says whether it was cancelled.
async fn pause(d: Duration, cancel: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *cancel.borrow(),
        _ = cancelled(cancel) => true,
    }
}

/// A refusal of the server that another attempt would only repeat, as the stage's end.
fn refused(e: &LgError, assistant: &str) -> Outcome {
    match e {
        LgError::Unauthorized { .. } => Outcome::FailedForGood(e.to_string()),
        LgError::NotFound { detail, .. } => Outcome::FailedForGood(format!(
            "LangGraph has no assistant \"{assistant}\": {detail}"
        )),
        LgError::Refused { detail, .. } if detail.to_ascii_lowercase().contains("assistant") => {
            Outcome::FailedForGood(format!(
                "LangGraph has no assistant \"{assistant}\": {detail}"
            ))
        }
        LgError::Refused { .. } => Outcome::FailedForGood(e.to_string()),
        LgError::Busy(_) | LgError::Unreachable(_) => Outcome::Failed(e.to_string()),
    }
}

/// What the stream has said about the run being followed.
#[derive(Default)]
struct Heard {
    /// The last `values` (without `__interrupt__`).
    values: Option<Value>,
    /// The last `error` event: `{error, message}`.
    error: Option<Value>,
    /// The last event id, and whether it was recorded since.
    last_event: Option<String>,
    recorded_event: Option<String>,
    recorded_at: Option<tokio::time::Instant>,
}

/// The thread and run an attempt follows.
struct Work {
    thread: String,
    run: String,
}

impl Work {
    fn reference(&self, after: Option<&str>) -> String {
        match after {
            Some(id) => format!("langgraph {} {} after:{id}", self.thread, self.run),
            None => format!("langgraph {} {}", self.thread, self.run),
        }
    }
}

/// The reference a lost attempt left: (thread, run if it had one, last event seen).
fn parse_reference(reference: &str) -> Option<(String, Option<String>, Option<String>)> {
    let mut parts = reference.split_whitespace();
    let thread = parts.next()?.to_owned();
    let run = parts.next().filter(|r| *r != "-").map(str::to_owned);
    let after = parts
        .next()
        .and_then(|a| a.strip_prefix("after:"))
        .map(str::to_owned);
    Some((thread, run, after))
}

/// A JSON value in at most `SUMMARY_CHARS` characters.
fn summary(value: &Value) -> String {
    let text = match value {
        Value::Null => "(no change)".to_owned(),
        other => other.to_string(),
    };
    if text.chars().count() > SUMMARY_CHARS {
        format!(
            "{}…",
            text.chars().take(SUMMARY_CHARS - 1).collect::<String>()
        )
    } else {
        text
    }
}

/// A graph's error in its own words: `ValueError: the budget …`.
fn error_words(error: &Value) -> String {
    match (error["error"].as_str(), error["message"].as_str()) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message.to_owned(),
        _ => error.to_string(),
    }
}

/// Everything one attempt needs on the way.
struct Run<'a> {
    attempt: &'a Attempt,
    client: &'a LanggraphClient,
    assistant: &'a str,
    log: &'a mpsc::Sender<Report>,
    pool: &'a sqlx::PgPool,
    metadata: Value,
}

impl Run<'_> {
    async fn line(&self, stream: Stream, line: String) {
        let _ = self.log.send(Report::Log { stream, line }).await;
    }

    /// The body of a run: `what` is `{"input": …}` or `{"command": …}`.
    fn body(&self, what: Value) -> Value {
        let mut body = json!({
            "assistant_id": self.assistant,
            "metadata": self.metadata,
            "stream_mode": STREAM_MODE,
            "stream_resumable": true,
            "multitask_strategy": "reject",
        });
        if let (Some(b), Value::Object(w)) = (body.as_object_mut(), what) {
            b.extend(w);
        }
        body
    }

    /// Starts a run on the thread; a thread busy with a run (one this stage started, the
    /// moment before a restart) is that run.
    async fn start(&self, thread: &str, what: Value) -> Result<String, Outcome> {
        match self.client.create_run(thread, &self.body(what)).await {
            Ok(run) => Ok(run.run_id),
            Err(LgError::Busy(why)) => match self.client.runs(thread).await {
                Ok(runs) if !runs.is_empty() => Ok(runs[0].run_id.clone()),
                _ => Err(Outcome::Failed(format!(
                    "LangGraph says the thread is busy: {why}"
                ))),
            },
            Err(e) => {
                tracing::warn!(error = %e, assistant = self.assistant, "LangGraph refused a run");
                Err(refused(&e, self.assistant))
            }
        }
    }

    /// Uses one event of the stream.
    async fn heard(&self, work: &Work, event: SseEvent, heard: &mut Heard) {
        if let Some(id) = event.id.clone() {
            heard.last_event = Some(id);
        }
        let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::String(event.data));
        match event.event.as_str() {
            "metadata" => {}
            "custom" => {
                let progress = data["progress"]
                    .as_f64()
                    .filter(|p| p.is_finite())
                    .map(|p| p.clamp(0.0, 1.0) as f32);
                match data["message"].as_str() {
                    Some(message) => {
                        self.attempt.status(message, progress).await;
                        self.line(Stream::Stdout, format!("[custom] {message}"))
                            .await;
                    }
                    None => match progress {
                        Some(p) => self.attempt.progress(p).await,
                        None => {
                            self.line(Stream::Stdout, format!("[custom] {}", summary(&data)))
                                .await
                        }
                    },
                }
            }
            "updates" => {
                for (node, update) in data.as_object().into_iter().flatten() {
                    let line = if node == "__interrupt__" {
                        let question = update
                            .get(0)
                            .map(|i| questions::short(&i["value"]))
                            .unwrap_or_default();
                        format!("[interrupt] {question}")
                    } else {
                        format!("[{node}] {}", summary(update))
                    };
                    self.line(Stream::Stdout, line).await;
                }
            }
            "values" => {
                let mut values = data;
                if let Some(map) = values.as_object_mut() {
                    map.remove("__interrupt__");
                }
                heard.values = Some(values);
            }
            "error" => {
                self.line(Stream::Stderr, format!("[error] {}", error_words(&data)))
                    .await;
                heard.error = Some(data);
            }
            other => {
                self.line(Stream::Stdout, format!("[{other}] {}", summary(&data)))
                    .await
            }
        }
        // The last event seen, for joining after a restart: recorded now and then.
        let due = heard
            .recorded_at
            .is_none_or(|t| t.elapsed() >= RECORD_EVERY);
        if due && heard.last_event != heard.recorded_event {
            if let Some(id) = heard.last_event.clone() {
                self.attempt.started(&work.reference(Some(&id)), None).await;
                heard.recorded_event = Some(id);
                heard.recorded_at = Some(tokio::time::Instant::now());
            }
        }
    }

    /// Follows the run until it ends; its final status, or the attempt's outcome when it
    /// ended otherwise (cancelled, LangGraph unreachable for too long or refusing).
    async fn follow(
        &self,
        work: &Work,
        heard: &mut Heard,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<String, Outcome> {
        let mut unreachable_since: Option<tokio::time::Instant> = None;
        loop {
            let (tx, mut rx) = mpsc::channel::<SseEvent>(256);
            let streaming = {
                let client = self.client.clone();
                let (thread, run) = (work.thread.clone(), work.run.clone());
                // From the start of the run the first time (it began before the stream
                // was joined), after the last event seen afterwards.
                let after = heard.last_event.clone().unwrap_or_else(|| "0-0".into());
                tokio::spawn(async move { client.stream(&thread, &run, Some(&after), &tx).await })
            };
            let abort = streaming.abort_handle();
            loop {
                tokio::select! {
                    event = rx.recv() => match event {
                        Some(event) => self.heard(work, event, heard).await,
                        None => break,
                    },
                    _ = cancelled(cancel) => {
                        abort.abort();
                        return Err(self.cancel(work).await);
                    }
                }
            }
            let streamed = streaming.await.unwrap_or(Ok(()));
            // The stream ended: the run is over, or the connection dropped.
            match self.client.run(&work.thread, &work.run).await {
                Ok(run) if matches!(run.status.as_str(), "pending" | "running") => {
                    unreachable_since = None;
                    if run.status == "pending" {
                        self.attempt
                            .status("Queued on LangGraph.", None)
                            .await;
                    }
                }
                Ok(run) => return Ok(run.status),
                Err(e @ LgError::Unauthorized { .. }) => {
                    return Err(Outcome::FailedForGood(e.to_string()))
                }
                Err(LgError::NotFound { .. }) => {
                    return Err(Outcome::Failed(format!(
                        "LangGraph no longer knows run {} of thread {} (was its server restarted without its database?)",
                        work.run, work.thread
                    )))
                }
                Err(e) => {
                    let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > UNREACHABLE_FOR {
                        return Err(Outcome::Failed(e.to_string()));
                    }
                    let why = match streamed {
                        Err(s) => s.to_string(),
                        Ok(()) => e.to_string(),
                    };
                    self.attempt
                        .status(&format!("{why}; trying again."), None)
                        .await;
                }
            }
            if pause(POLL, cancel).await {
                return Err(self.cancel(work).await);
            }
        }
    }

    /// Cancels the run in flight: it stops, its values are kept.
    async fn cancel(&self, work: &Work) -> Outcome {
        self.attempt
            .status("Cancelling: asking LangGraph to stop the run.", None)
            .await;
        match self.client.cancel(&work.thread, &work.run).await {
            Ok(_) => Outcome::Cancelled,
            Err(e) => {
                tracing::warn!(thread = %work.thread, run = %work.run, error = %e, "a LangGraph run could not be cancelled");
                Outcome::Failed(format!(
                    "Cancelled in Slate, but {e}: the run may still be going on in LangGraph"
                ))
            }
        }
    }

    /// Asks a person the thread's question and waits for the answer; the answer, or the
    /// attempt's outcome when it was cancelled meanwhile.
    async fn ask(
        &self,
        work: &Work,
        interrupt: &str,
        question: &Value,
        values: Option<&Value>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<questions::Given, Outcome> {
        let claim = &self.attempt.claim;
        let pool = self.pool;
        let id = questions::ask(
            pool,
            &Asked {
                run: claim.run_id,
                stage: claim.stage_id,
                attempt: claim.attempt_id,
                thread: &work.thread,
                interrupt,
                question,
                values,
            },
        )
        .await
        .map_err(Outcome::Failed)?;
        let short = questions::short(question);
        self.line(Stream::Stdout, format!("[question] {short}"))
            .await;
        self.attempt
            .status(&format!("Waiting for a person: {short}"), None)
            .await;
        loop {
            match questions::answer_of(pool, id).await {
                Ok(Some(given)) => return Ok(given),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read a question's answer"),
            }
            if pause(POLL, cancel).await {
                questions::close(pool, claim.stage_id, "the run was cancelled").await;
                return Err(Outcome::Cancelled);
            }
        }
    }
}

impl LanggraphExecutor {
    async fn attempt(
        &self,
        attempt: &Attempt,
        log: &mpsc::Sender<Report>,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let StageKind::Langgraph(stage) = &attempt.stage.kind else {
            return Err("not a langgraph stage".into());
        };
        let claim = &attempt.claim;
        let client = LanggraphClient::new(self.base.clone(), self.token.clone());
        let run = Run {
            attempt,
            client: &client,
            assistant: &stage.assistant,
            log,
            pool: &self.files.pool,
            metadata: json!({
                "slate_run": claim.run_id,
                "slate_stage": claim.name,
                "slate_attempt": claim.attempt_id,
            }),
        };
        let mut heard = Heard::default();
        let left = attempt
            .left_behind("langgraph")
            .await
            .and_then(|(r, _)| parse_reference(&r));
        let mut work = match left {
            // Slate stopped while the thread was at work: follow its newest run.
            Some((thread, recorded, after)) => {
                let newest = match client.runs(&thread).await {
                    Ok(runs) => runs.first().map(|r| r.run_id.clone()),
                    Err(e) => return Ok(refused(&e, &stage.assistant)),
                };
                // The event recorded belongs to the recorded run only.
                heard.last_event = after.filter(|_| newest.is_none() || newest == recorded);
                let run_id = match newest.or(recorded) {
                    Some(r) => r,
                    None => {
                        let input = self.input(attempt).await?;
                        match run.start(&thread, json!({"input": input})).await {
                            Ok(r) => r,
                            Err(outcome) => return Ok(outcome),
                        }
                    }
                };
                let work = Work {
                    thread,
                    run: run_id,
                };
                run.line(
                    Stream::Stdout,
                    format!(
                        "Slate restarted: following LangGraph run {} of thread {} again.",
                        work.run, work.thread
                    ),
                )
                .await;
                attempt
                    .started(&work.reference(heard.last_event.as_deref()), None)
                    .await;
                work
            }
            None => {
                let thread = claim.attempt_id.to_string();
                let input = self.input(attempt).await?;
                attempt.status("Starting the LangGraph run.", None).await;
                if let Err(e) = client.create_thread(&thread, &run.metadata).await {
                    tracing::warn!(error = %e, "LangGraph refused a thread");
                    return Ok(refused(&e, &stage.assistant));
                }
                // The thread first: a restart before the run is recorded finds it.
                attempt
                    .started(&format!("langgraph {thread} -"), None)
                    .await;
                let run_id = match run.start(&thread, json!({"input": input})).await {
                    Ok(r) => r,
                    Err(outcome) => return Ok(outcome),
                };
                let work = Work {
                    thread,
                    run: run_id,
                };
                attempt
                    .started(
                        &work.reference(None),
                        Some(json!({"assistant": stage.assistant, "thread": work.thread,
                                    "run": work.run, "input": input})),
                    )
                    .await;
                run.line(
                    Stream::Stdout,
                    format!(
                        "LangGraph run {} of assistant {} on thread {}.",
                        work.run, stage.assistant, work.thread
                    ),
                )
                .await;
                work
            }
        };
        // Whether the last answer was a rejection: the graph's error is then final.
        let mut rejected = false;
        loop {
            let status = match run.follow(&work, &mut heard, &mut cancel).await {
                Ok(status) => status,
                Err(outcome) => return Ok(outcome),
            };
            match status.as_str() {
                "success" => {
                    let thread = match client.thread(&work.thread).await {
                        Ok(t) => t,
                        Err(e) => return Ok(refused(&e, &stage.assistant)),
                    };
                    let pending = thread.pending();
                    let Some((interrupt, question)) = pending.first().cloned() else {
                        let values = heard.values.take().unwrap_or(thread.values);
                        self.keep(attempt, &stage.assistant, &work, &values).await?;
                        return Ok(Outcome::Succeeded);
                    };
                    let values = heard.values.clone().unwrap_or(thread.values.clone());
                    let given = match run
                        .ask(&work, &interrupt, &question, Some(&values), &mut cancel)
                        .await
                    {
                        Ok(given) => given,
                        Err(outcome) => return Ok(outcome),
                    };
                    rejected = given.answer["action"] == "reject";
                    run.line(
                        Stream::Stdout,
                        format!(
                            "[answer] {} answered {}.",
                            given.by,
                            given.answer["action"].as_str().unwrap_or("?")
                        ),
                    )
                    .await;
                    attempt
                        .status("Answered; resuming the LangGraph thread.", None)
                        .await;
                    // A resume already made (just before a restart) is followed, not made
                    // again.
                    let resume = match &given.resumed_run {
                        Some(r) if *r != work.run => r.clone(),
                        _ => match run
                            .start(
                                &work.thread,
                                json!({"command": {"resume": given.answer}}),
                            )
                            .await
                        {
                            Ok(r) => r,
                            Err(outcome) => return Ok(outcome),
                        },
                    };
                    questions::resumed(&self.files.pool, given.id, &resume).await;
                    work.run = resume;
                    heard = Heard::default();
                    attempt.started(&work.reference(None), None).await;
                }
                "error" => {
                    let words = match heard.error.take() {
                        Some(e) => error_words(&e),
                        None => match client.thread(&work.thread).await {
                            Ok(t) if !t.error.is_null() => error_words(&t.error),
                            _ => "the graph failed and LangGraph gave no reason".into(),
                        },
                    };
                    let reason = format!("LangGraph: {words}");
                    return Ok(if rejected {
                        Outcome::FailedForGood(reason)
                    } else {
                        Outcome::Failed(reason)
                    });
                }
                "timeout" => {
                    return Ok(Outcome::Failed(format!(
                        "LangGraph stopped run {}: it took longer than the server allows",
                        work.run
                    )))
                }
                "interrupted" => {
                    return Ok(Outcome::FailedForGood(format!(
                        "LangGraph run {} was cancelled outside Slate (in LangGraph's own API or studio); not retried: run the stage again to go on.",
                        work.run
                    )))
                }
                other => {
                    return Ok(Outcome::Failed(format!(
                        "LangGraph run {} ended \"{other}\"",
                        work.run
                    )))
                }
            }
        }
    }

    /// The graph's input: the stage's inputs with their references resolved.
    async fn input(&self, attempt: &Attempt) -> Result<Value, String> {
        let scope = self.files.scope(attempt).await?;
        Ok(Value::Object(bind_inputs(
            &attempt.stage.inputs,
            &attempt.claim.params,
            &scope,
        )))
    }

    /// Keeps the final values: the stage's values, and `values.json` among its outputs
    /// (an asset people can download, with the run's provenance).
    async fn keep(
        &self,
        attempt: &Attempt,
        assistant: &str,
        work: &Work,
        values: &Value,
    ) -> Result<(), String> {
        attempt.values(values).await?;
        let claim = &attempt.claim;
        let out = self.files.stage_dir(claim).join("out");
        let _ = tokio::fs::remove_dir_all(&out).await;
        tokio::fs::create_dir_all(&out)
            .await
            .map_err(|e| format!("cannot keep the values: {e}"))?;
        let text = serde_json::to_vec_pretty(values).map_err(|e| e.to_string())?;
        tokio::fs::write(out.join("values.json"), text)
            .await
            .map_err(|e| format!("cannot keep the values: {e}"))?;
        let how = json!({"executor": "langgraph", "assistant": assistant,
                         "thread": work.thread, "langgraph_run": work.run});
        self.files.outputs(attempt, &out, &[], how).await
    }
}

#[async_trait]
impl Executor for LanggraphExecutor {
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
        let (tx, recording) = attempt.record::<Report>();
        let result = self.attempt(attempt, &tx, cancel).await;
        drop(tx);
        let log = recording.await.unwrap_or_default();
        let claim = &attempt.claim;
        let workdir = self.files.stage_dir(claim).join(claim.attempt.to_string());
        self.files
            .archive_log(attempt, &workdir, &log, "langgraph")
            .await;
        // Whatever ended the attempt, nobody can answer its questions any more.
        if !matches!(result, Ok(Outcome::Cancelled)) {
            questions::close(&self.files.pool, claim.stage_id, "the stage ended").await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_the_thread_the_run_and_the_last_event() {
        let work = Work {
            thread: "t".into(),
            run: "r".into(),
        };
        assert_eq!(work.reference(None), "langgraph t r");
        assert_eq!(work.reference(Some("17-0")), "langgraph t r after:17-0");
        assert_eq!(
            parse_reference("t r after:17-0"),
            Some(("t".into(), Some("r".into()), Some("17-0".into())))
        );
        assert_eq!(parse_reference("t -"), Some(("t".into(), None, None)));
        assert_eq!(parse_reference(""), None);
    }

    #[test]
    fn errors_and_refusals_read_in_the_peers_words() {
        assert_eq!(
            error_words(&json!({"error": "ValueError", "message": "no shots"})),
            "ValueError: no shots"
        );
        let unknown = refused(
            &LgError::Refused {
                status: 422,
                detail: "Invalid assistant: 'nope'".into(),
            },
            "nope",
        );
        assert!(
            matches!(&unknown, Outcome::FailedForGood(m) if m.starts_with("LangGraph has no assistant \"nope\"")),
            "{unknown:?}"
        );
        let token = refused(
            &LgError::Unauthorized {
                status: 401,
                detail: "A valid bearer token is required.".into(),
            },
            "x",
        );
        assert!(
            matches!(&token, Outcome::FailedForGood(m) if m.contains("refused Slate's token")),
            "{token:?}"
        );
        assert!(matches!(
            refused(&LgError::Unreachable("down".into()), "x"),
            Outcome::Failed(_)
        ));
        assert_eq!(summary(&Value::Null), "(no change)");
        assert!(summary(&json!("x".repeat(500))).chars().count() <= SUMMARY_CHARS);
    }
}
