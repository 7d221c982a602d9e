//! The Colab endpoint, as the admin page shows it: the current endpoint (its URL
//! redacted to the host's first word: the URL is a credential), its checks, what its
//! machine has (nodes and models, `InventoryView`), the history, and the actions (set by
//! hand, fallback, re-verify, refresh the inventory, rotate the webhook secret).

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
    /// What the current endpoint's machine has, when Slate has tried to find out.
    pub inventory: Option<InventoryView>,
}

/// An endpoint's inventory as the page shows it: counts and file names, not every
/// node's inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InventoryView {
    pub endpoint: Uuid,
    /// When Slate last asked.
    pub attempted_at: DateTime<Utc>,
    /// When what is shown was fetched (`None`: never, yet).
    pub fetched_at: Option<DateTime<Utc>>,
    /// What went wrong the last time: the whole fetch, or some folders.
    pub error: Option<String>,
    pub comfyui_version: Option<String>,
    pub core_nodes: usize,
    /// Custom node packs and their classes, by name.
    pub packs: Vec<(String, usize)>,
    /// Model folders and their files, by folder name.
    pub models: Vec<(String, Vec<String>)>,
}

impl InventoryView {
    pub fn new(
        endpoint: Uuid,
        attempted_at: DateTime<Utc>,
        fetched_at: Option<DateTime<Utc>>,
        error: Option<String>,
        inventory: Option<&crate::comfyui::inventory::Inventory>,
    ) -> InventoryView {
        InventoryView {
            endpoint,
            attempted_at,
            fetched_at: inventory.and(fetched_at),
            error,
            comfyui_version: inventory.and_then(|i| i.comfyui_version.clone()),
            core_nodes: inventory.map_or(0, |i| i.core_nodes()),
            packs: inventory.map_or_else(Vec::new, |i| i.packs().into_iter().collect()),
            models: inventory.map_or_else(Vec::new, |i| {
                i.models
                    .iter()
                    .map(|(f, files)| (f.clone(), files.clone()))
                    .collect()
            }),
        }
    }

    /// All node classes.
    pub fn nodes(&self) -> usize {
        self.core_nodes + self.packs.iter().map(|(_, n)| n).sum::<usize>()
    }
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
