//! Workflows in the database: every version kept, the bundled ones written at start,
//! a new graph or new bindings checked before they become a version (decision 0014).

pub mod http;

use app::backend::Actor;
use app::comfyui::backend::WorkflowsBackend;
use app::comfyui::workflow::WorkflowSummary;
use app::error::AppError;
use async_trait::async_trait;
use sqlx::PgPool;

/// The workflows service of the pages and the API.
#[derive(Clone)]
pub struct Workflows {
    pub pool: PgPool,
}

impl Workflows {
    pub fn new(pool: PgPool) -> Workflows {
        Workflows { pool }
    }
}

#[async_trait]
impl WorkflowsBackend for Workflows {
    async fn list(&self, _actor: &Actor) -> Result<Vec<WorkflowSummary>, AppError> {
        Ok(Vec::new())
    }
}
