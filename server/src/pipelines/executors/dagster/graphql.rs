//! The Dagster webserver's GraphQL API as the dagster executor uses it: launch, re-execute
//! from a failure, find runs by tag, follow a run (status, steps, its event log after a
//! cursor, each step's captured stdout/stderr), terminate, and validate a run config.
//!
//! Dagster answers its domain errors with HTTP 200 as members of a result union (an
//! unknown job is a `PipelineNotFoundError`, a bad config a `RunConfigValidationInvalid`),
//! so every query selects `__typename` and each answer is read by it; only a query
//! Dagster cannot parse gets a 4xx with `errors`. The webserver has no authentication:
//! nothing secret is ever sent, and the URL is shown without any credentials in it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use url::Url;

/// What went wrong talking to Dagster (not a domain answer: those are typed results).
#[derive(Debug, thiserror::Error)]
pub enum GraphqlError {
    #[error("cannot reach Dagster: {0}")]
    Unreachable(String),
    #[error("Dagster answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("Dagster refused the query: {0}")]
    Query(String),
    #[error("Dagster's answer is not what Slate expects: {0}")]
    Shape(String),
}

/// A client of one Dagster webserver.
#[derive(Clone)]
pub struct Dagster {
    http: reqwest::Client,
    endpoint: Url,
    base: Url,
}

/// Which job: `repositoryLocationName`, `repositoryName`, `jobName`.
#[derive(Clone, Debug)]
pub struct Selector<'a> {
    pub location: &'a str,
    pub repository: &'a str,
    pub job: &'a str,
}

/// One problem Dagster found in a run config, with the path it names
/// (`ops.render_shot.config.frames`) when its message has one.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ConfigProblem {
    pub path: Option<String>,
    pub reason: String,
    pub message: String,
}

/// Dagster's answer to a launch or a re-execution.
#[derive(Debug)]
pub enum Launched {
    Run(String),
    /// `RunConfigValidationInvalid`: no run was made.
    Invalid(Vec<ConfigProblem>),
    /// `PipelineNotFoundError` (an unknown location, repository or job), in its words.
    NoJob(String),
    /// `PythonError`: something failed inside Dagster.
    Python(String),
    /// Any other member of the union (`RunConflict`, `InvalidSubsetError`, …).
    Refused {
        kind: String,
        message: String,
    },
}

/// A run as `runOrError` describes it.
#[derive(Clone, Debug, Default)]
pub struct RunState {
    pub id: String,
    pub status: String,
    /// The steps this run executes (all of the job's, or those of a re-execution).
    pub steps: Vec<String>,
    /// The steps that started, with their status (`SUCCESS`, `FAILURE`, `IN_PROGRESS`, …).
    pub step_stats: Vec<(String, String)>,
    pub tags: BTreeMap<String, String>,
}

impl RunState {
    /// Whether the run has ended (Dagster changes nothing about it afterwards).
    pub fn finished(&self) -> bool {
        is_terminal(&self.status)
    }

    /// Steps that have ended, whichever way.
    pub fn steps_done(&self) -> usize {
        self.step_stats
            .iter()
            .filter(|(_, s)| matches!(s.as_str(), "SUCCESS" | "FAILURE" | "SKIPPED"))
            .count()
    }
}

/// Whether a run status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "SUCCESS" | "FAILURE" | "CANCELED")
}

/// One event of a run's log, with what the executor reads of each kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub kind: String,
    pub message: String,
    pub level: String,
    pub step: Option<String>,
    /// `STEP_SUCCESS`, …; `None` for a `context.log` line.
    pub event_type: Option<String>,
    /// An `ExecutionStepFailureEvent`'s error: (class name, message).
    pub error: Option<(String, String)>,
    /// A materialization's asset key and metadata (label, value).
    pub asset_key: Option<Vec<String>>,
    pub metadata: Vec<(String, Value)>,
    /// A `LogsCapturedEvent`'s file key and the steps whose output it holds.
    pub file_key: Option<String>,
    pub step_keys: Vec<String>,
}

/// A page of a run's event log.
#[derive(Debug, Default)]
pub struct Events {
    pub events: Vec<Event>,
    pub cursor: Option<String>,
    pub has_more: bool,
}

/// What a step process printed since a cursor.
#[derive(Debug, Default)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
    pub cursor: Option<String>,
}

/// Dagster's answer to `terminateRun`.
#[derive(Debug)]
pub enum Terminated {
    Asked,
    /// `TerminateRunFailure` (it has ended already, …) or `RunNotFoundError`.
    Refused(String),
}

const METADATA: &str = "metadataEntries { __typename label
    ... on PathMetadataEntry { path } ... on TextMetadataEntry { text }
    ... on IntMetadataEntry { intValue intRepr } ... on FloatMetadataEntry { floatValue }
    ... on JsonMetadataEntry { jsonString } ... on UrlMetadataEntry { url }
    ... on BoolMetadataEntry { boolValue } ... on MarkdownMetadataEntry { mdStr } }";

const LAUNCH_RESULT: &str = "__typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { __typename message reason } }
    ... on PythonError { message }
    ... on Error { message }";

const RUN_FIELDS: &str = "runId status stepKeysToExecute executionPlan { steps { key } }
    stepStats { stepKey status } tags { key value }";

impl Dagster {
    /// A client of the webserver at `base` (`http://dagster-webserver:3000/`).
    pub fn new(base: &Url) -> Result<Self, String> {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = base
            .join("graphql")
            .map_err(|e| format!("SLATE_DAGSTER_URL: {e}"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            // The address is the admin's; nothing else decides where requests go.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot make the Dagster client: {e}"))?;
        Ok(Dagster {
            http,
            endpoint,
            base,
        })
    }

    /// The page of a run in Dagster's UI, without any credentials the URL may carry.
    pub fn run_page(&self, run: &str) -> String {
        let mut page = self.base.clone();
        let _ = page.set_username("");
        let _ = page.set_password(None);
        page.join(&format!("runs/{run}"))
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// One GraphQL request; its `data`.
    async fn call(&self, query: &str, variables: Value) -> Result<Value, GraphqlError> {
        let res = self
            .http
            .post(self.endpoint.clone())
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|e| GraphqlError::Unreachable(without_url(&e)))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| GraphqlError::Unreachable(without_url(&e)))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        let errors = body
            .as_ref()
            .and_then(|b| b["errors"].as_array())
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["message"].as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|m| !m.is_empty());
        match (status.is_success(), body, errors) {
            (_, _, Some(errors)) => Err(GraphqlError::Query(errors)),
            (true, Some(mut body), None) => Ok(body["data"].take()),
            (true, None, None) => Err(GraphqlError::Shape(clip(&text))),
            (false, _, None) => Err(GraphqlError::Status {
                status: status.as_u16(),
                body: clip(&text),
            }),
        }
    }

    /// Launches a run of `job` with `config` and `tags`.
    pub async fn launch(
        &self,
        job: &Selector<'_>,
        config: &Value,
        tags: &[(&str, String)],
    ) -> Result<Launched, GraphqlError> {
        let query = format!(
            "mutation Launch($p: ExecutionParams!) {{ launchRun(executionParams: $p) {{ {LAUNCH_RESULT} }} }}"
        );
        let params = json!({
            "selector": {
                "repositoryLocationName": job.location,
                "repositoryName": job.repository,
                "jobName": job.job,
            },
            "runConfigData": config,
            "executionMetadata": {"tags": tag_list(tags)},
        });
        let data = self.call(&query, json!({"p": params})).await?;
        Ok(launched(&data["launchRun"]))
    }

    /// Re-executes `parent` from its failure (the steps that failed and those after
    /// them, with the parent's config), with `tags` added.
    pub async fn reexecute(
        &self,
        parent: &str,
        tags: &[(&str, String)],
    ) -> Result<Launched, GraphqlError> {
        let query = format!(
            "mutation Retry($p: ReexecutionParams!) {{ launchRunReexecution(reexecutionParams: $p) {{ {LAUNCH_RESULT} }} }}"
        );
        let params = json!({
            "parentRunId": parent,
            "strategy": "FROM_FAILURE",
            "extraTags": tag_list(tags),
        });
        let data = self.call(&query, json!({"p": params})).await?;
        Ok(launched(&data["launchRunReexecution"]))
    }

    /// The run, or `None` when Dagster has no such run.
    pub async fn run(&self, run: &str) -> Result<Option<RunState>, GraphqlError> {
        let query = format!(
            "query Run($r: ID!) {{ runOrError(runId: $r) {{ __typename ... on Run {{ {RUN_FIELDS} }} ... on Error {{ message }} }} }}"
        );
        let data = self.call(&query, json!({"r": run})).await?;
        run_state(&data["runOrError"])
    }

    /// The run and the events after `cursor` (at most `limit`), in one request.
    pub async fn follow(
        &self,
        run: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Option<RunState>, Events), GraphqlError> {
        let query = format!(
            "query Follow($r: ID!, $after: String, $limit: Int) {{
               runOrError(runId: $r) {{ __typename ... on Run {{ {RUN_FIELDS} }} ... on Error {{ message }} }}
               logsForRun(runId: $r, afterCursor: $after, limit: $limit) {{ __typename
                 ... on EventConnection {{ cursor hasMore events {{ __typename
                   ... on MessageEvent {{ message level stepKey eventType }}
                   ... on MaterializationEvent {{ assetKey {{ path }} {METADATA} }}
                   ... on LogsCapturedEvent {{ fileKey stepKeys }}
                   ... on ExecutionStepFailureEvent {{ error {{ message className }} }} }} }}
                 ... on Error {{ message }} }} }}"
        );
        let data = self
            .call(&query, json!({"r": run, "after": cursor, "limit": limit}))
            .await?;
        let state = run_state(&data["runOrError"])?;
        let logs = &data["logsForRun"];
        let events = match logs["__typename"].as_str() {
            Some("EventConnection") => Events {
                events: logs["events"]
                    .as_array()
                    .map(|all| all.iter().map(event).collect())
                    .unwrap_or_default(),
                cursor: logs["cursor"].as_str().map(str::to_owned),
                has_more: logs["hasMore"].as_bool().unwrap_or(false),
            },
            // No run, no log: the state says so.
            Some("RunNotFoundError") => Events::default(),
            _ => return Err(GraphqlError::Shape(message_of(logs))),
        };
        Ok((state, events))
    }

    /// What the step process of `file_key` printed after `cursor`.
    pub async fn captured(
        &self,
        run: &str,
        file_key: &str,
        cursor: Option<&str>,
    ) -> Result<Captured, GraphqlError> {
        let query = "query Logs($k: [String!]!, $c: String) { capturedLogs(logKey: $k, cursor: $c) { stdout stderr cursor } }";
        let data = self
            .call(
                query,
                json!({"k": [run, "compute_logs", file_key], "c": cursor}),
            )
            .await?;
        let logs = &data["capturedLogs"];
        Ok(Captured {
            stdout: logs["stdout"].as_str().unwrap_or_default().to_owned(),
            stderr: logs["stderr"].as_str().unwrap_or_default().to_owned(),
            cursor: logs["cursor"].as_str().map(str::to_owned),
        })
    }

    /// The runs tagged `key=value` (the newest first, at most 20).
    pub async fn runs_tagged(&self, key: &str, value: &str) -> Result<Vec<RunState>, GraphqlError> {
        let query = format!(
            "query Tagged($f: RunsFilter) {{ runsOrError(filter: $f, limit: 20) {{ __typename
               ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on Error {{ message }} }} }}"
        );
        let data = self
            .call(
                &query,
                json!({"f": {"tags": [{"key": key, "value": value}]}}),
            )
            .await?;
        let runs = &data["runsOrError"];
        if runs["__typename"] != "Runs" {
            return Err(GraphqlError::Shape(message_of(runs)));
        }
        let mut out = Vec::new();
        for run in runs["results"].as_array().into_iter().flatten() {
            out.push(run_fields(run));
        }
        Ok(out)
    }

    /// Asks Dagster to stop the run (`SAFE_TERMINATE`, or `MARK_AS_CANCELED_IMMEDIATELY`
    /// when a run does not stop).
    pub async fn terminate(&self, run: &str, force: bool) -> Result<Terminated, GraphqlError> {
        let query = "mutation Stop($r: String!, $p: TerminateRunPolicy) {
            terminateRun(runId: $r, terminatePolicy: $p) { __typename
              ... on TerminateRunFailure { message } ... on Error { message } } }";
        let policy = if force {
            "MARK_AS_CANCELED_IMMEDIATELY"
        } else {
            "SAFE_TERMINATE"
        };
        let data = self.call(query, json!({"r": run, "p": policy})).await?;
        let answer = &data["terminateRun"];
        Ok(match answer["__typename"].as_str() {
            Some("TerminateRunSuccess") => Terminated::Asked,
            _ => Terminated::Refused(message_of(answer)),
        })
    }

    /// Whether `config` is a valid run config of `job`, without launching: the problems
    /// Dagster finds, or the refusal (an unknown job) as a launch would give it.
    pub async fn validate(
        &self,
        job: &Selector<'_>,
        config: &Value,
    ) -> Result<Result<Vec<ConfigProblem>, Launched>, GraphqlError> {
        let query = "query Check($s: PipelineSelector!, $c: RunConfigData) {
            isPipelineConfigValid(pipeline: $s, mode: \"default\", runConfigData: $c) { __typename
              ... on RunConfigValidationInvalid { errors { __typename message reason } }
              ... on PythonError { message } ... on Error { message } } }";
        let selector = json!({
            "repositoryLocationName": job.location,
            "repositoryName": job.repository,
            "pipelineName": job.job,
        });
        let data = self
            .call(query, json!({"s": selector, "c": config}))
            .await?;
        let answer = &data["isPipelineConfigValid"];
        Ok(match answer["__typename"].as_str() {
            Some("PipelineConfigValidationValid") => Ok(Vec::new()),
            Some("RunConfigValidationInvalid") => Ok(problems(answer)),
            _ => Err(launched(answer)),
        })
    }
}

fn tag_list(tags: &[(&str, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

fn launched(answer: &Value) -> Launched {
    match answer["__typename"].as_str().unwrap_or_default() {
        "LaunchRunSuccess" => match answer["run"]["runId"].as_str() {
            Some(id) => Launched::Run(id.to_owned()),
            None => Launched::Refused {
                kind: "LaunchRunSuccess".into(),
                message: "Dagster launched a run without an id".into(),
            },
        },
        "RunConfigValidationInvalid" => Launched::Invalid(problems(answer)),
        "PipelineNotFoundError" => Launched::NoJob(message_of(answer)),
        "PythonError" => Launched::Python(message_of(answer)),
        kind => Launched::Refused {
            kind: kind.to_owned(),
            message: message_of(answer),
        },
    }
}

fn problems(answer: &Value) -> Vec<ConfigProblem> {
    answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let message = e["message"].as_str().unwrap_or_default().to_owned();
            ConfigProblem {
                path: config_path(&message),
                reason: e["reason"].as_str().unwrap_or_default().to_owned(),
                message,
            }
        })
        .collect()
}

/// The path a config error's message names (`... at path root:ops:render_shot:config:frames.`),
/// written as a stage input is (`ops.render_shot.config.frames`).
pub fn config_path(message: &str) -> Option<String> {
    let rest = message.split(" at path root").nth(1)?;
    let path: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches('.')
        .trim_start_matches(':')
        .replace(':', ".");
    Some(path)
}

fn run_state(answer: &Value) -> Result<Option<RunState>, GraphqlError> {
    match answer["__typename"].as_str() {
        Some("Run") => Ok(Some(run_fields(answer))),
        Some("RunNotFoundError") => Ok(None),
        _ => Err(GraphqlError::Shape(message_of(answer))),
    }
}

fn run_fields(run: &Value) -> RunState {
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s[key].as_str().or(s.as_str()).map(str::to_owned))
            .collect()
    };
    let mut steps = strings(&run["executionPlan"]["steps"], "key");
    if steps.is_empty() {
        steps = strings(&run["stepKeysToExecute"], "");
    }
    RunState {
        id: run["runId"].as_str().unwrap_or_default().to_owned(),
        status: run["status"].as_str().unwrap_or_default().to_owned(),
        steps,
        step_stats: run["stepStats"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["stepKey"].as_str().unwrap_or_default().to_owned(),
                    s["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        tags: run["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["key"].as_str()?.to_owned(),
                    t["value"].as_str()?.to_owned(),
                ))
            })
            .collect(),
    }
}

fn event(e: &Value) -> Event {
    let text = |key: &str| e[key].as_str().map(str::to_owned);
    Event {
        kind: text("__typename").unwrap_or_default(),
        message: text("message").unwrap_or_default(),
        level: text("level").unwrap_or_default(),
        step: text("stepKey"),
        event_type: text("eventType"),
        error: e["error"]["message"].as_str().map(|m| {
            (
                e["error"]["className"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                m.to_owned(),
            )
        }),
        asset_key: e["assetKey"]["path"].as_array().map(|p| {
            p.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        }),
        metadata: e["metadataEntries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(metadata_value)
            .collect(),
        file_key: text("fileKey"),
        step_keys: e["stepKeys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
    }
}

/// A metadata entry as (label, value): paths, texts, URLs and Markdown as strings,
/// numbers as numbers, JSON as itself.
fn metadata_value(entry: &Value) -> Option<(String, Value)> {
    let label = entry["label"].as_str()?.to_owned();
    let value = match entry["__typename"].as_str()? {
        "PathMetadataEntry" => entry["path"].clone(),
        "TextMetadataEntry" => entry["text"].clone(),
        "UrlMetadataEntry" => entry["url"].clone(),
        "MarkdownMetadataEntry" => entry["mdStr"].clone(),
        "BoolMetadataEntry" => entry["boolValue"].clone(),
        "FloatMetadataEntry" => entry["floatValue"].clone(),
        // Dagster's Int is 32-bit in GraphQL; `intRepr` holds any size.
        "IntMetadataEntry" => match &entry["intValue"] {
            Value::Number(n) => Value::Number(n.clone()),
            _ => entry["intRepr"]
                .as_str()
                .and_then(|r| r.parse::<i64>().ok())
                .map(Value::from)
                .unwrap_or_else(|| entry["intRepr"].clone()),
        },
        "JsonMetadataEntry" => entry["jsonString"]
            .as_str()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null),
        _ => return None,
    };
    Some((label, value))
}

fn message_of(answer: &Value) -> String {
    let kind = answer["__typename"].as_str().unwrap_or("nothing");
    match answer["message"].as_str() {
        Some(m) => m.to_owned(),
        None => format!("Dagster answered {kind}"),
    }
}

/// A transport error without the URL (which may carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(at) = e.find(" for url (") {
        e.truncate(at);
    }
    e
}

fn clip(text: &str) -> String {
    let mut t: String = text.chars().take(500).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_error_names_its_path_as_a_stage_input_would() {
        assert_eq!(
            config_path(
                "Invalid scalar at path root:ops:render_shot:config:frames. Value \"five\""
            ),
            Some("ops.render_shot.config.frames".into())
        );
        assert_eq!(
            config_path("Received unexpected config entry \"bogus\" at path root:ops:render_shot:config. Expected"),
            Some("ops.render_shot.config".into())
        );
        assert_eq!(
            config_path("Missing required config entry \"ops\" at the root."),
            None
        );
    }

    #[test]
    fn union_members_are_read_by_their_typename() {
        let ok = launched(
            &json!({"__typename": "LaunchRunSuccess", "run": {"runId": "r1", "status": "QUEUED"}}),
        );
        assert!(matches!(ok, Launched::Run(id) if id == "r1"));
        let missing = launched(
            &json!({"__typename": "PipelineNotFoundError", "message": "Could not find Pipeline film.__repository__.nojob"}),
        );
        assert!(matches!(missing, Launched::NoJob(m) if m.contains("nojob")));
        let invalid = launched(
            &json!({"__typename": "RunConfigValidationInvalid", "errors": [
            {"message": "Invalid scalar at path root:ops:a:config:n. Value", "reason": "RUNTIME_TYPE_MISMATCH"}]}),
        );
        let Launched::Invalid(problems) = invalid else {
            panic!("invalid")
        };
        assert_eq!(problems[0].path.as_deref(), Some("ops.a.config.n"));
        let conflict = launched(&json!({"__typename": "RunConflict", "message": "taken"}));
        assert!(matches!(conflict, Launched::Refused { kind, .. } if kind == "RunConflict"));
    }

    #[test]
    fn metadata_entries_keep_their_values_typed() {
        let entries = [
            json!({"__typename": "PathMetadataEntry", "label": "path", "path": "/w/out"}),
            json!({"__typename": "IntMetadataEntry", "label": "frames", "intValue": 3, "intRepr": "3"}),
            json!({"__typename": "IntMetadataEntry", "label": "big", "intValue": null, "intRepr": "9007199254740993"}),
            json!({"__typename": "FloatMetadataEntry", "label": "s", "floatValue": 1.5}),
            json!({"__typename": "JsonMetadataEntry", "label": "j", "jsonString": "{\"a\": [1]}"}),
            json!({"__typename": "TableMetadataEntry", "label": "t"}),
        ];
        let values: Vec<_> = entries.iter().filter_map(metadata_value).collect();
        assert_eq!(
            values,
            vec![
                ("path".into(), json!("/w/out")),
                ("frames".into(), json!(3)),
                ("big".into(), json!(9007199254740993i64)),
                ("s".into(), json!(1.5)),
                ("j".into(), json!({"a": [1]})),
            ]
        );
    }
}
