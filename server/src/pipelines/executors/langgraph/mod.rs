//! The langgraph executor: a run of a LangGraph assistant on a thread named by the attempt.
//! (Scaffolding: the executor is being written; until it is, every attempt fails saying so.)

use async_trait::async_trait;
use tokio::sync::watch;

use app::error::AppError;

use crate::pipelines::attempt::Attempt;
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::queue::Outcome;
use crate::pipelines::workspace::Workspace;

/// The queue of LangGraph runs (`SLATE_LANGGRAPH_URL` set; capacity from the settings).
pub const QUEUE: &str = "langgraph";

/// Refuses a langgraph stage when no server is configured.
pub fn admit(stage: &str, configured: bool) -> Result<(), AppError> {
    if configured {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "Stage \"{stage}\" runs on langgraph, and this Slate has no langgraph server (SLATE_LANGGRAPH_URL)."
    )))
}

pub struct LanggraphExecutor {
    pub files: Workspace,
    pub base: url::Url,
    pub capacity: i64,
}

impl LanggraphExecutor {
    /// The executor, when the settings name a server.
    pub fn from_config(
        config: &crate::config::Config,
        files: Workspace,
    ) -> anyhow::Result<Option<Self>> {
        Ok(config.langgraph_url.clone().map(|base| LanggraphExecutor {
            files,
            base,
            capacity: config.langgraph_runs,
        }))
    }
}

#[async_trait]
impl Executor for LanggraphExecutor {
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
            "the langgraph executor is not written yet".into(),
        ))
    }
}
