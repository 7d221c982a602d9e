//! What the workflow pages need from the server (implemented by the `server` crate).

use async_trait::async_trait;

use super::workflow::{Binding, WorkflowDetail, WorkflowSummary};
use crate::backend::Actor;
use crate::error::AppError;

#[async_trait]
pub trait WorkflowsBackend: Send + Sync + 'static {
    /// The latest version of every workflow (everyone signed in).
    async fn list(&self, actor: &Actor) -> Result<Vec<WorkflowSummary>, AppError>;
    /// One version (the latest when `version` is `None`), with its nodes, bindings,
    /// Slate's proposal, the changes from the version before and what the current
    /// endpoint lacks for it.
    async fn show(
        &self,
        actor: &Actor,
        name: &str,
        version: Option<i32>,
    ) -> Result<WorkflowDetail, AppError>;
    /// Adds a workflow, or a new version of one, from its JSON text (leads and admins).
    /// Returns the version made (or the latest, when the graph is unchanged).
    async fn add(
        &self,
        actor: &Actor,
        name: &str,
        title: &str,
        description: Option<String>,
        json: &str,
    ) -> Result<i32, AppError>;
    /// Saves new bindings on the latest graph as a new version (leads and admins), and
    /// the template that runs it (`workflow-NAME`). Returns the version.
    async fn bind(
        &self,
        actor: &Actor,
        name: &str,
        bindings: Vec<Binding>,
    ) -> Result<i32, AppError>;
}
