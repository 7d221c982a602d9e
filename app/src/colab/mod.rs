//! The Colab endpoint, as the admin page shows it: the current endpoint (its URL
//! redacted to the host's first word: the URL is a credential), its checks, the history,
//! and the actions (set by hand, fallback, re-verify, rotate the webhook secret).

mod api;
mod pages;

pub use api::*;
pub use pages::ColabPage;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

text_state! {
    /// A reported endpoint's state (`colab_endpoints.state`): being verified, current and
    /// healthy, refused by verification, lost by the monitor, or replaced by a newer one.
    EndpointState {
        Verifying => "verifying",
        Healthy => "healthy",
        Rejected => "rejected",
        Down => "down",
        Replaced => "replaced",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub id: Uuid,
    /// `https://quiet-…`: never the whole URL.
    pub redacted: String,
    pub source: String,
    pub actor: String,
    pub state: EndpointState,
    pub received_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub gpu: Option<String>,
    pub vram_total: Option<i64>,
    pub comfyui_version: Option<String>,
    pub python_version: Option<String>,
    /// What publication did, in words.
    pub publication: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct CheckView {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub latency_ms: Option<i32>,
    pub class: Option<String>,
    pub detail: Option<String>,
    pub queue_remaining: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColabOverview {
    pub current: Option<EndpointView>,
    /// The most recent checks of the current endpoint, oldest first.
    pub checks: Vec<CheckView>,
    pub history: Vec<EndpointView>,
    pub fallback: Option<String>,
    pub active_secrets: i64,
    /// Whether Slate publishes endpoints into a cluster.
    pub publishes: bool,
    pub webhook_url: String,
}

/// A new webhook secret (shown once) and the notebook cell that uses it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RotatedSecret {
    pub secret: String,
    pub cell: String,
}

/// Bytes as GiB with one decimal.
pub fn gib(bytes: i64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}
