//! What the workflow pages need from the server (implemented by the `server` crate).

use async_trait::async_trait;

use crate::backend::Actor;
use crate::error::AppError;

#[async_trait]
pub trait WorkflowsBackend: Send + Sync + 'static {
    /// The latest version of every workflow.
    async fn list(&self, actor: &Actor) -> Result<Vec<super::workflow::WorkflowSummary>, AppError>;
}
