//! The seam between the queue and what runs stages: the [`Executor`] trait each executor
//! implements, what a Slate accepts at submission ([`Capabilities`]), and the
//! [`Registry`] of the executors this replica runs, built from the configuration.
//!
//! Adding an executor is one module under `executors/` with an `Executor` impl and an
//! `admit` function, a variant of `app::pipelines::template::StageKind`, and the arms the
//! compiler then asks for: here (admission, queues) and in the template's rules.

use std::sync::Arc;

use app::error::AppError;
use app::pipelines::template::{Stage, StageKind, Template};
use async_trait::async_trait;
use tokio::sync::watch;

use super::attempt::Attempt;
use super::executors::{comfyui, dagster, kubernetes, langgraph, local};
use super::queue::Outcome;

/// A queue an executor takes attempts from, and how many of them may run at once
/// across every replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    pub name: &'static str,
    pub capacity: i64,
}

/// What runs the attempts of one kind of stage.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// The queues it serves (a queue with no capacity is not served here).
    fn queues(&self) -> Vec<Queue>;

    /// Runs one attempt to its end. `cancel` turns true when the run is cancelled: the
    /// executor then stops the work and returns [`Outcome::Cancelled`]. An error is the
    /// attempt's failure, in words shown on the run's page.
    async fn run(
        &self,
        attempt: &Attempt,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String>;
}

/// What this Slate can run, for refusing at submission a run that never could. Each
/// executor's `admit` says what it accepts.
#[derive(Clone, Debug, Default)]
pub struct Capabilities {
    /// Programs an admin allowed for local stages.
    pub programs: Vec<String>,
    /// Whether Kubernetes Jobs can be started (Slate is connected to a cluster).
    pub kubernetes: bool,
    /// Whether a Dagster webserver is configured (`SLATE_DAGSTER_URL`).
    pub dagster: bool,
    /// Where, to check a dagster stage's run config at submission.
    pub dagster_url: Option<url::Url>,
    /// Whether a LangGraph server is configured (`SLATE_LANGGRAPH_URL`).
    pub langgraph: bool,
}

impl Capabilities {
    /// Refuses a template one of whose stages these executors cannot run.
    pub fn admit(&self, template: &Template) -> Result<(), AppError> {
        for stage in &template.stages {
            match &stage.kind {
                StageKind::Local(s) => local::admit(&stage.name, s, &self.programs)?,
                StageKind::Kubernetes(_) => kubernetes::admit(&stage.name, self.kubernetes)?,
                StageKind::Comfyui(_) => comfyui::admit(),
                StageKind::Dagster(_) => dagster::admit(&stage.name, self.dagster)?,
                StageKind::Langgraph(_) => langgraph::admit(&stage.name, self.langgraph)?,
            }
        }
        Ok(())
    }
}

/// The queue a stage waits in: its kind's, with GPU Jobs apart (GPUs are few, so they
/// have their own limit).
pub fn queue_of(stage: &Stage) -> &'static str {
    match &stage.kind {
        StageKind::Local(_) => local::QUEUE,
        StageKind::Kubernetes(job) => kubernetes::queue_of(job),
        StageKind::Comfyui(_) => comfyui::QUEUE,
        StageKind::Dagster(_) => dagster::QUEUE,
        StageKind::Langgraph(_) => langgraph::QUEUE,
    }
}

/// The executors this replica runs, and what they accept.
pub struct Registry {
    pub capabilities: Capabilities,
    pub executors: Vec<Arc<dyn Executor>>,
}

impl Registry {
    /// Every queue served here, with the executor serving it.
    pub fn queues(&self) -> Vec<(Queue, Arc<dyn Executor>)> {
        self.executors
            .iter()
            .flat_map(|e| {
                e.queues()
                    .into_iter()
                    .filter(|q| q.capacity > 0)
                    .map(move |q| (q, e.clone()))
            })
            .collect()
    }
}
