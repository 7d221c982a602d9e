//! A Dagster run's log as stage log lines: each structured event as one line named by its
//! step and type (`[render_shot] STEP_SUCCESS Finished execution of step ...`), errors on
//! stderr; and each step process's captured stdout/stderr, tailed by cursor, line by line
//! with its step's name in front. Dagster's own log handler also writes every event to
//! the step's stderr; those copies are left out, the events already said it.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::graphql::Event;
use crate::pipelines::attempt::Stream;

/// The line an event makes.
pub fn event_line(e: &Event) -> (Stream, String) {
    let who = e.step.as_deref().unwrap_or("run");
    let what = e.event_type.as_deref().unwrap_or(e.level.as_str());
    let mut line = format!("[{who}] {what}");
    if let Some(key) = &e.asset_key {
        line.push(' ');
        line.push_str(&key.join("/"));
    }
    if !e.message.is_empty() {
        line.push(' ');
        line.push_str(e.message.trim_end());
    }
    if let Some((_, message)) = &e.error {
        line.push_str(": ");
        line.push_str(&error_text(message));
    }
    let failed = e.error.is_some()
        || matches!(e.level.as_str(), "ERROR" | "CRITICAL")
        || e.event_type
            .as_deref()
            .is_some_and(|t| t.ends_with("_FAILURE"));
    let stream = if failed {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    (stream, line)
}

/// Why a step failed, as Dagster put it: the exception's own message, without the module
/// path Dagster writes before its class (`dagster._core.definitions.events.Failure: x`
/// reads `Failure: x`).
pub fn error_text(message: &str) -> String {
    let first = message.trim();
    match first.split_once(": ") {
        Some((class, rest)) if !class.contains(' ') && class.contains('.') => {
            let short = class.rsplit('.').next().unwrap_or(class);
            format!("{short}: {rest}")
        }
        _ => first.to_owned(),
    }
}

/// A materialization as the attempt's detail keeps it.
pub fn materialization(e: &Event) -> Option<Value> {
    let key = e.asset_key.as_ref()?;
    let metadata: serde_json::Map<String, Value> = e.metadata.iter().cloned().collect();
    Some(json!({
        "asset_key": key.join("/"),
        "step": e.step,
        "description": (!e.message.is_empty()).then_some(&e.message),
        "metadata": metadata,
    }))
}

/// Whether a captured stderr line is Dagster's own copy of an event
/// (`2026-12-01 23:07:31 +0000 - dagster - DEBUG - ...`).
fn is_dagster_echo(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[..4].iter().all(u8::is_ascii_digit)
        && line
            .get(19..)
            .and_then(|r| r.trim_start().get(5..))
            .is_some_and(|r| r.starts_with(" - dagster - "))
}

/// What is known of one step process's captured output: the cursor to read from, and
/// the unfinished last line of each stream.
#[derive(Debug, Default)]
pub struct Tail {
    pub steps: Vec<String>,
    pub cursor: Option<String>,
    partial: BTreeMap<&'static str, String>,
    /// Polls since every step of it ended (it is read a few more times, then left).
    pub quiet: u32,
}

impl Tail {
    pub fn new(steps: Vec<String>) -> Self {
        Tail {
            steps,
            ..Self::default()
        }
    }

    /// The whole lines of a new chunk of `stream`, each with the steps' names in front;
    /// `last` also gives what remains without a newline (the process has ended).
    pub fn lines(&mut self, stream: Stream, chunk: &str, last: bool) -> Vec<(Stream, String)> {
        let name = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let held = self.partial.entry(name).or_default();
        held.push_str(chunk);
        let mut complete: String = match held.rfind('\n') {
            Some(end) => {
                let rest = held.split_off(end + 1);
                std::mem::replace(held, rest)
            }
            None => String::new(),
        };
        if last && !held.is_empty() {
            complete.push_str(&std::mem::take(held));
        }
        let who = self.steps.join(",");
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| !(stream == Stream::Stderr && is_dagster_echo(l)))
            .map(|l| (stream, format!("[{who}] {}", l.trim_end())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_by_step_and_type_and_failures_go_to_stderr() {
        let success = Event {
            kind: "ExecutionStepSuccessEvent".into(),
            message: "Finished execution of step \"render_shot\" in 1.68s.".into(),
            level: "DEBUG".into(),
            step: Some("render_shot".into()),
            event_type: Some("STEP_SUCCESS".into()),
            ..Event::default()
        };
        assert_eq!(
            event_line(&success),
            (
                Stream::Stdout,
                "[render_shot] STEP_SUCCESS Finished execution of step \"render_shot\" in 1.68s."
                    .into()
            )
        );
        let info = Event {
            message: "rendering sc01: 3 frames".into(),
            level: "INFO".into(),
            step: Some("render_shot".into()),
            ..Event::default()
        };
        assert_eq!(
            event_line(&info).1,
            "[render_shot] INFO rendering sc01: 3 frames"
        );
        let failure = Event {
            message: "Execution of step \"check\" failed.".into(),
            level: "ERROR".into(),
            step: Some("check".into()),
            event_type: Some("STEP_FAILURE".into()),
            error: Some((
                "Failure".into(),
                "dagster._core.definitions.events.Failure: wants a second look\n".into(),
            )),
            ..Event::default()
        };
        let (stream, line) = event_line(&failure);
        assert_eq!(stream, Stream::Stderr);
        assert!(
            line.ends_with("failed.: Failure: wants a second look"),
            "{line}"
        );
        let run = Event {
            event_type: Some("RUN_ENQUEUED".into()),
            level: "INFO".into(),
            ..Event::default()
        };
        assert_eq!(event_line(&run).1, "[run] RUN_ENQUEUED");
    }

    #[test]
    fn captured_output_comes_in_whole_lines_without_dagsters_echoes() {
        let mut tail = Tail::new(vec!["render_shot".into()]);
        assert_eq!(
            tail.lines(Stream::Stdout, "wrote frame 1\nwrote fr", false),
            vec![(Stream::Stdout, "[render_shot] wrote frame 1".to_owned())]
        );
        assert_eq!(
            tail.lines(Stream::Stdout, "ame 2\n", false),
            vec![(Stream::Stdout, "[render_shot] wrote frame 2".to_owned())]
        );
        let stderr = "2026-12-01 23:07:31 +0000 - dagster - DEBUG - shot_job - a661 - 13269 - render_shot - STEP_START - Started\nsc01: 3 frames on stderr\nno newline";
        assert_eq!(
            tail.lines(Stream::Stderr, stderr, false),
            vec![(
                Stream::Stderr,
                "[render_shot] sc01: 3 frames on stderr".to_owned()
            )]
        );
        assert_eq!(
            tail.lines(Stream::Stderr, "", true),
            vec![(Stream::Stderr, "[render_shot] no newline".to_owned())]
        );
    }
}
