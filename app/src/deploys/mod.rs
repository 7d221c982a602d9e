//! Deploys: the namespace's rollout history (cluster revisions, CI reports, Slate's own
//! actions), diffs of pod templates, live rollout status, restart and rollback.

pub mod api;
pub mod diff;
pub mod pages;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a history entry came from.
pub const SOURCES: [(&str, &str); 3] = [
    ("cluster", "Cluster (kubectl, other tools)"),
    ("ci", "CI"),
    ("slate", "Slate"),
];

/// Outcomes an entry can have.
pub const OUTCOMES: [&str; 4] = ["done", "started", "refused", "failed"];

/// One line of the timeline (a row of the server's timeline query).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct DeployEntry {
    /// Unique across kinds: `rev:<uuid>`, `ci:<uuid>`, `event:<uuid>`.
    pub key: String,
    pub at: DateTime<Utc>,
    /// `revision`, `ci` or `action`.
    pub entry: String,
    /// `cluster`, `ci` or `slate`.
    pub source: String,
    pub actor: Option<String>,
    /// `done`, `started`, `refused`, `failed`.
    pub outcome: String,
    /// `Deployment`, `StatefulSet`, `Secret`, … (empty for a CI report).
    pub kind: String,
    pub name: String,
    /// What happened, in a few words.
    pub title: String,
    pub reason: Option<String>,
    pub images: Vec<String>,
    /// For a revision.
    pub revision: Option<i64>,
    pub change_cause: Option<String>,
    /// For a revision made by CI, or a CI report: the run.
    pub ci_run: Option<String>,
    pub ci_url: Option<String>,
    pub sha: Option<String>,
}

/// The state of a workload's current rollout, as `kubectl rollout status` would say it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub kind: String,
    pub name: String,
    pub revision: Option<i64>,
    /// `progressing`, `complete`, `failed` or `paused`.
    pub state: String,
    pub message: String,
    pub ready: i32,
    pub desired: i32,
    pub images: Vec<String>,
}

/// Timeline filters; empty means all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployFilter {
    /// `Kind/name`.
    pub workload: String,
    pub source: String,
    pub actor: String,
    pub outcome: String,
}

/// Everything the deploys page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploysView {
    pub rollouts: Vec<RolloutView>,
    pub entries: Vec<DeployEntry>,
    /// `Kind/name` of every workload with history or live state, for the filter.
    pub workloads: Vec<String>,
    pub actors: Vec<String>,
    /// Why restart and rollback are unavailable (no cluster), when they are.
    pub offline: Option<String>,
    pub can_restart: bool,
    pub can_rollback: bool,
}

/// A revision one can diff against or roll back to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct RevisionChoice {
    pub revision: i64,
    pub at: DateTime<Utc>,
    pub images: Vec<String>,
}

/// A side-by-side diff of two pod templates (as YAML).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateDiff {
    pub kind: String,
    pub name: String,
    pub left_label: String,
    pub right_label: String,
    pub rows: Vec<diff::Row>,
    /// Revisions of the same workload, newest first, to compare with instead.
    pub choices: Vec<RevisionChoice>,
    pub revision: i64,
    /// The revision on the left, `None` for the live template (or nothing before).
    pub against: Option<i64>,
}

impl TemplateDiff {
    pub fn changes(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.change != diff::Change::Same)
            .count()
    }
}

/// What a rollback would do, shown before it is confirmed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollbackPreview {
    pub diff: TemplateDiff,
    /// The revision's template is the current one: rolling back would change nothing.
    pub already_current: bool,
    pub paused: bool,
    /// The revision's ReplicaSet is gone; the stored template is used.
    pub from_store: bool,
}
