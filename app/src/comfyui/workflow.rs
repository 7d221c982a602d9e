//! A ComfyUI workflow in API format (the only form `POST /prompt` runs), as Slate
//! stores it: the graph, checked before it is kept, and its bindings.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A workflow's latest version, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub nodes: usize,
    pub bindings: usize,
    pub bundled: bool,
    pub created_by: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}
