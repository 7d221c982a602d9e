//! The dagster executor: a run of a Dagster job, launched through the webserver's GraphQL API.
//! (Scaffolding: the executor is being written; until it is, every attempt fails saying so.)

use async_trait::async_trait;
use tokio::sync::watch;

use app::error::AppError;

use crate::pipelines::attempt::Attempt;
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::queue::Outcome;
use crate::pipelines::workspace::Workspace;

/// The queue of Dagster runs (`SLATE_DAGSTER_URL` set; capacity from the settings).
pub const QUEUE: &str = "dagster";

/// Refuses a dagster stage when no server is configured.
pub fn admit(stage: &str, configured: bool) -> Result<(), AppError> {
    if configured {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "Stage \"{stage}\" runs on dagster, and this Slate has no dagster server (SLATE_DAGSTER_URL)."
    )))
}

pub struct DagsterExecutor {
    pub files: Workspace,
    pub base: url::Url,
    pub capacity: i64,
}

impl DagsterExecutor {
    /// The executor, when the settings name a server.
    pub fn from_config(
        config: &crate::config::Config,
        files: Workspace,
    ) -> anyhow::Result<Option<Self>> {
        Ok(config.dagster_url.clone().map(|base| DagsterExecutor {
            files,
            base,
            capacity: config.dagster_runs,
        }))
    }
}

#[async_trait]
impl Executor for DagsterExecutor {
    fn queues(&self) -> Vec<Queue> {
        vec![Queue {
            name: QUEUE,
            capacity: self.capacity,
        }]
    }

    async fn run(
        &self,
        _attempt: &Attempt,
        _cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let _ = (&self.files, &self.base);
        Ok(Outcome::FailedForGood(
            "the dagster executor is not written yet".into(),
        ))
    }
}
