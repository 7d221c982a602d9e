//! Pipelines in the UI and on the wire: templates (`template`: a DAG of typed stages with
//! typed parameters, and its rules), the states of runs, stages and attempts as the
//! database stores them, the views the pages show (`pages`) and the server functions
//! behind them (`api`).

pub mod api;
pub mod pages;
pub mod question;
pub mod template;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

text_state! {
    /// A run's state (`runs.state`).
    RunState {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
}

text_state! {
    /// A stage's state (`run_stages.state`): waiting for the stages before it, then as a
    /// run; `skipped` when the run ended before it could start.
    StageState {
        Waiting => "waiting",
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Skipped => "skipped",
    }
}

text_state! {
    /// An attempt's state (`stage_attempts.state`); `lost` when its runner stopped.
    AttemptState {
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        Lost => "lost",
    }
}

impl RunState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

impl StageState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StageState::Succeeded
                | StageState::Failed
                | StageState::Cancelled
                | StageState::Skipped
        )
    }
}

/// A template to choose from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateSummary {
    pub name: String,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    /// (stage, executor) in order.
    pub stages: Vec<(String, String)>,
}

/// A template's form: its parameters, and for each asset parameter the assets one may
/// pick (ready, of its kind).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateForm {
    pub summary: TemplateSummary,
    pub parameters: Vec<template::Parameter>,
    /// (parameter, [(asset id, name)]).
    pub choices: Vec<(String, Vec<(Uuid, String)>)>,
    /// (model parameter, the endpoint's files in its folder); absent when no endpoint
    /// inventory is known.
    #[serde(default)]
    pub models: Vec<(String, Vec<String>)>,
    /// Why it cannot run here, when it cannot.
    pub unavailable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct RunSummary {
    pub id: Uuid,
    pub template: String,
    pub version: i32,
    pub title: String,
    pub state: RunState,
    pub submitted_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub stages_done: i64,
    pub stages_total: i64,
    /// Mean progress of the stages, 0..=1.
    pub progress: f32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunFilter {
    pub state: String,
    pub template: String,
    pub submitter: String,
    /// Submitted on or after this day (`YYYY-MM-DD`, UTC; empty: any).
    #[serde(default)]
    pub from: String,
    /// Submitted on or before this day (`YYYY-MM-DD`, UTC; empty: any).
    #[serde(default)]
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunsView {
    pub runs: Vec<RunSummary>,
    /// (state, count) over every run.
    pub counts: Vec<(RunState, i64)>,
    pub templates: Vec<TemplateSummary>,
    /// The server's clock when this was read (durations of running work end here; the
    /// browser's clock is not used, so server and browser render the same text).
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct StageView {
    pub name: String,
    pub executor: String,
    pub needs: Vec<String>,
    pub state: StageState,
    pub attempt: i32,
    pub attempts_max: i32,
    pub progress: Option<f32>,
    pub status: Option<String>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the stage's last image (ComfyUI's latest preview or saved image) was kept.
    pub preview_at: Option<DateTime<Utc>>,
    /// For an instance of a fanned-out stage: the stage it is one of, its index, and a
    /// short label from its item (its `shot`, `name`, `title` or `id`, or the item itself).
    pub fan_of: Option<String>,
    pub item_index: Option<i32>,
    pub item_label: Option<String>,
    /// For a fanned-out stage: how many instances it has.
    pub fanned: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct OutputView {
    pub asset: Uuid,
    pub name: String,
    pub state: String,
    pub stage: String,
    pub has_thumbnail: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct LogLine {
    pub stage: String,
    pub stream: String,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub summary: RunSummary,
    /// (label, value as text) in the template's order.
    pub params: Vec<(String, String)>,
    pub stages: Vec<StageView>,
    pub outputs: Vec<OutputView>,
    /// The last lines of every attempt's log, oldest first.
    pub log: Vec<LogLine>,
    /// Every attempt of every stage, in order, with its whole log once it ended.
    pub attempts: Vec<AttemptView>,
    /// The person may cancel, retry and resubmit (submitter, lead, admin).
    pub can_change: bool,
    /// The server's clock when this was read.
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct AttemptView {
    pub id: Uuid,
    pub stage: String,
    pub number: i32,
    pub state: AttemptState,
    /// What the executor called the work (a process, a Job, a ComfyUI prompt).
    pub reference: Option<String>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The whole log was archived (served at `/api/runs/{run}/attempts/{id}/log`).
    pub has_log: bool,
    /// What a Dagster run materialized: `[{asset_key, step, description, metadata}]`.
    pub materializations: Option<serde_json::Value>,
}

/// A template and its versions, for the admins' editor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateVersions {
    pub name: String,
    pub title: String,
    /// (version, saved at, built in, saved by), newest first.
    pub versions: Vec<(i32, DateTime<Utc>, bool, Option<String>)>,
}

/// One version's text, and its differences from another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateSource {
    pub name: String,
    pub version: i32,
    pub source: String,
    /// Against the version before it (empty for the first).
    pub diff: Vec<crate::deploys::diff::Row>,
    pub against: Option<i32>,
}
