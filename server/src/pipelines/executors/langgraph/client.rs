//! A client for the LangGraph server API (the calls ../shared/reference/orchestrators.md
//! §5 verified): threads with chosen ids, background runs that stream resumably, joining a
//! run's stream from the last event seen (`Last-Event-ID`), a run's status, a thread's
//! status and interrupts, cancelling a run. The bearer token is sent on every call and
//! never appears in an error or a log line.

use std::time::Duration;

use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use url::Url;

/// What went wrong with a call, in words fit for the stage's page.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LgError {
    /// 401 or 403: the server refused Slate's token (or wants one).
    #[error(
        "LangGraph refused Slate's token (HTTP {status}: {detail}); check SLATE_LANGGRAPH_TOKEN"
    )]
    Unauthorized { status: u16, detail: String },
    /// 404.
    #[error("LangGraph has no such {what}: {detail}")]
    NotFound { what: &'static str, detail: String },
    /// 409: the thread is busy (a run is in flight and the strategy is `reject`).
    #[error("LangGraph says the thread is busy: {0}")]
    Busy(String),
    /// Another 4xx: the request itself is refused (an unknown assistant is a 422).
    #[error("LangGraph refused the request (HTTP {status}): {detail}")]
    Refused { status: u16, detail: String },
    /// The server cannot be reached, or failed (5xx), or answered something unreadable.
    #[error("LangGraph cannot be reached: {0}")]
    Unreachable(String),
}

/// A run as `GET /threads/{tid}/runs/{rid}` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// A thread as `GET /threads/{tid}` gives it.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ThreadInfo {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub values: Value,
    /// `{task_id: [{id, value}]}` while interrupted.
    #[serde(default)]
    pub interrupts: Value,
    /// `{error, message}` after a failed run.
    #[serde(default)]
    pub error: Value,
}

impl ThreadInfo {
    /// The interrupts pending on the thread, as (id, value), in the order given.
    pub fn pending(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if let Some(tasks) = self.interrupts.as_object() {
            for list in tasks.values() {
                for i in list.as_array().into_iter().flatten() {
                    if let Some(id) = i["id"].as_str() {
                        out.push((id.to_owned(), i["value"].clone()));
                    }
                }
            }
        }
        out
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Reads server-sent events out of chunks of text, whatever the chunks' boundaries.
#[derive(Default)]
pub struct SseParser {
    buffer: String,
    current: SseEvent,
    data_lines: Vec<String>,
}

impl SseParser {
    /// The events completed by `chunk`.
    pub fn feed(&mut self, chunk: &str) -> Vec<SseEvent> {
        self.buffer.push_str(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data_lines.is_empty() || !self.current.event.is_empty() {
                    let mut event = std::mem::take(&mut self.current);
                    event.data = std::mem::take(&mut self.data_lines).join("\n");
                    if event.event.is_empty() {
                        event.event = "message".into();
                    }
                    out.push(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.current.event = value.to_owned(),
                "data" => self.data_lines.push(value.to_owned()),
                "id" => self.current.id = Some(value.to_owned()),
                _ => {}
            }
        }
        out
    }
}

#[derive(Clone)]
pub struct LanggraphClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// How long one plain call may take (a stream has no limit: it lasts as long as the run).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl LanggraphClient {
    pub fn new(base: Url, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        LanggraphClient { http, base, token }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn call(
        &self,
        builder: reqwest::RequestBuilder,
        what: &'static str,
    ) -> Result<Value, LgError> {
        let res = builder
            .timeout(CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| LgError::Unreachable(without_url(&e)))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| LgError::Unreachable(without_url(&e)))?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &text, what));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            LgError::Unreachable(format!("an answer that is not JSON ({e}) from {what}"))
        })
    }

    /// Makes the thread `thread` (or leaves it as it is when it exists).
    pub async fn create_thread(&self, thread: &str, metadata: &Value) -> Result<(), LgError> {
        let body = json!({"thread_id": thread, "metadata": metadata, "if_exists": "do_nothing"});
        self.call(
            self.request(reqwest::Method::POST, "/threads").json(&body),
            "thread",
        )
        .await
        .map(drop)
    }

    /// Starts a background run on the thread (`body`: assistant, input or command, …).
    pub async fn create_run(&self, thread: &str, body: &Value) -> Result<RunInfo, LgError> {
        let answer = self
            .call(
                self.request(reqwest::Method::POST, &format!("/threads/{thread}/runs"))
                    .json(body),
                "thread",
            )
            .await?;
        serde_json::from_value(answer)
            .map_err(|e| LgError::Unreachable(format!("a run without its id ({e})")))
    }

    pub async fn run(&self, thread: &str, run: &str) -> Result<RunInfo, LgError> {
        let answer = self
            .call(
                self.request(
                    reqwest::Method::GET,
                    &format!("/threads/{thread}/runs/{run}"),
                ),
                "run",
            )
            .await?;
        serde_json::from_value(answer)
            .map_err(|e| LgError::Unreachable(format!("a run that cannot be read ({e})")))
    }

    /// The thread's runs, the newest first.
    pub async fn runs(&self, thread: &str) -> Result<Vec<RunInfo>, LgError> {
        let answer = self
            .call(
                self.request(
                    reqwest::Method::GET,
                    &format!("/threads/{thread}/runs?limit=100"),
                ),
                "thread",
            )
            .await?;
        let mut runs: Vec<RunInfo> = serde_json::from_value(answer)
            .map_err(|e| LgError::Unreachable(format!("runs that cannot be read ({e})")))?;
        // Run ids are UUID v7 (time-ordered), and the creation times ISO 8601.
        runs.sort_by(|a, b| {
            (b.created_at.as_deref(), b.run_id.as_str())
                .cmp(&(a.created_at.as_deref(), a.run_id.as_str()))
        });
        Ok(runs)
    }

    pub async fn thread(&self, thread: &str) -> Result<ThreadInfo, LgError> {
        let answer = self
            .call(
                self.request(reqwest::Method::GET, &format!("/threads/{thread}")),
                "thread",
            )
            .await?;
        serde_json::from_value(answer)
            .map_err(|e| LgError::Unreachable(format!("a thread that cannot be read ({e})")))
    }

    /// Cancels the run and waits until it has stopped (its values are kept). `Ok(false)`
    /// when there was nothing to cancel (it had ended).
    pub async fn cancel(&self, thread: &str, run: &str) -> Result<bool, LgError> {
        let path = format!("/threads/{thread}/runs/{run}/cancel?wait=true&action=interrupt");
        match self
            .call(self.request(reqwest::Method::POST, &path), "run")
            .await
        {
            Ok(_) => Ok(true),
            Err(LgError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Joins the run's stream, after event `last` when given (nothing seen is repeated),
    /// sending each event to `tx` until the stream ends (the run is over, or the
    /// connection dropped: the caller asks the run's status to tell).
    pub async fn stream(
        &self,
        thread: &str,
        run: &str,
        last: Option<&str>,
        tx: &mpsc::Sender<SseEvent>,
    ) -> Result<(), LgError> {
        let mut builder = self
            .request(
                reqwest::Method::GET,
                &format!("/threads/{thread}/runs/{run}/stream"),
            )
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            builder = builder.header("last-event-id", last);
        }
        let res = builder
            .send()
            .await
            .map_err(|e| LgError::Unreachable(without_url(&e)))?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(refusal(status.as_u16(), &text, "run"));
        }
        let mut parser = SseParser::default();
        let mut body = res.bytes_stream();
        // A chunk may end inside a UTF-8 character: the bytes wait for the rest.
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| LgError::Unreachable(without_url(&e)))?;
            pending.extend_from_slice(&chunk);
            let valid = match std::str::from_utf8(&pending) {
                Ok(_) => pending.len(),
                Err(e) => e.valid_up_to(),
            };
            let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            for event in parser.feed(&text) {
                if tx.send(event).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A refusal in LangGraph's own words (`{"detail": ...}`), by status.
fn refusal(status: u16, text: &str, what: &'static str) -> LgError {
    let detail = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| match &v["detail"] {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
        .unwrap_or_else(|| text.chars().take(300).collect());
    // One line (the stage's status shows the first): LangGraph lists choices on lines.
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    match status {
        401 | 403 => LgError::Unauthorized { status, detail },
        404 => LgError::NotFound { what, detail },
        409 => LgError::Busy(detail),
        400..=499 => LgError::Refused { status, detail },
        _ => LgError::Unreachable(format!("HTTP {status}: {detail}")),
    }
}

/// A reqwest error without its URL (the base may carry credentials in a proxy setup, and
/// the path says nothing a person needs).
fn without_url(e: &reqwest::Error) -> String {
    let e = e.to_string();
    match e.split_once(" for url (") {
        Some((head, _)) => head.to_owned(),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_whatever_the_chunks() {
        let text = "event: metadata\ndata: {\"run_id\":\"r\"}\nid: 1-0\n\nevent: custom\r\ndata: {\"progress\":0.5}\r\nid: 2-0\r\n\r\n: keep-alive\n\nevent: values\ndata: {\"a\":\ndata: 1}\n\n";
        let whole = SseParser::default().feed(text);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event, "metadata");
        assert_eq!(whole[1].id.as_deref(), Some("2-0"));
        assert_eq!(whole[1].data, "{\"progress\":0.5}");
        assert_eq!(whole[2].data, "{\"a\":\n1}");
        // Byte by byte gives the same events.
        let mut parser = SseParser::default();
        let mut pieces = Vec::new();
        for c in text.chars() {
            pieces.extend(parser.feed(&c.to_string()));
        }
        assert_eq!(pieces, whole);
    }

    #[test]
    fn refusals_keep_langgraphs_words_by_status() {
        assert!(matches!(
            refusal(401, r#"{"detail":"A valid bearer token is required."}"#, "thread"),
            LgError::Unauthorized { status: 401, detail } if detail == "A valid bearer token is required."
        ));
        assert!(matches!(refusal(409, "{}", "thread"), LgError::Busy(_)));
        assert!(matches!(
            refusal(422, r#"{"detail":"Invalid assistant: 'x'"}"#, "thread"),
            LgError::Refused { status: 422, .. }
        ));
        assert!(matches!(
            refusal(502, "bad gateway", "run"),
            LgError::Unreachable(_)
        ));
    }

    #[test]
    fn a_threads_interrupts_are_listed() {
        let t: ThreadInfo = serde_json::from_value(json!({
            "status": "interrupted",
            "interrupts": {"task": [{"id": "i1", "value": {"question": "ok?"}}]}
        }))
        .unwrap();
        assert_eq!(t.pending(), vec![("i1".into(), json!({"question": "ok?"}))]);
        assert!(ThreadInfo::default().pending().is_empty());
    }
}
