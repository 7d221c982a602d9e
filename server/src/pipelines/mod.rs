//! Pipelines: templates (`store`), runs and their submission (`runs`), the durable queue
//! (`queue`), and what runs queued stages: the executor seam (`executor`), the
//! dispatchers (`dispatcher`), one attempt as an executor sees it (`attempt`), the shared
//! work directory (`workspace`), and the executors (`executors`: local, ComfyUI,
//! Kubernetes). The pages' backend is `backend`, the HTTP API `http`.

pub mod attempt;
pub mod backend;
pub mod dispatcher;
pub mod executor;
pub mod executors;
pub mod http;
pub mod outputs;
pub mod questions;
pub mod queue;
pub mod runs;
pub mod store;
pub mod workspace;

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

pub use dispatcher::{reconcile, wake_on_queued, Dispatcher};
pub use executor::{Capabilities, Executor, Queue, Registry};

use crate::notify::{Channel, Notifications};
use crate::tasks::Tasks;
use executors::{comfyui, dagster, kubernetes, langgraph, local};
use workspace::Workspace;

/// The executors this replica runs, from the settings: local stages and ComfyUI prompts
/// always (with no capacity, their queues are left to other replicas), Jobs when Slate
/// is connected to a cluster.
pub fn registry(
    config: &crate::config::Config,
    pool: &PgPool,
    assets: &crate::assets::Assets,
    prober: crate::comfyui::probe::Prober,
    cluster: &crate::cluster::Cluster,
) -> anyhow::Result<Registry> {
    // Jobs see the work directory at the same path: it must be absolute.
    let files = Workspace {
        pool: pool.clone(),
        assets: assets.clone(),
        work: std::path::absolute(config.work())?,
    };
    let local = local::LocalExecutor::from_config(config, files.clone());
    let mut capabilities = Capabilities {
        programs: local.allowed.names(),
        kubernetes: false,
        dagster: false,
        dagster_url: None,
        langgraph: false,
    };
    let mut executors: Vec<Arc<dyn Executor>> = vec![
        Arc::new(local),
        Arc::new(comfyui::ComfyExecutor::from_config(
            config,
            files.clone(),
            prober,
        )),
    ];
    if let Some(executor) = dagster::DagsterExecutor::from_config(config, files.clone())? {
        capabilities.dagster = true;
        capabilities.dagster_url = config.dagster_url.clone();
        executors.push(Arc::new(executor));
    }
    if let Some(executor) = langgraph::LanggraphExecutor::from_config(config, files.clone())? {
        capabilities.langgraph = true;
        executors.push(Arc::new(executor));
    }
    if let Some(client) = cluster.client() {
        let executor = kubernetes::KubeExecutor::from_config(config, files, cluster, client)
            .map_err(anyhow::Error::msg)?;
        capabilities.kubernetes = true;
        executors.push(Arc::new(executor));
    }
    Ok(Registry {
        capabilities,
        executors,
    })
}

/// Seeds the built-in templates and starts, under the supervisor, this replica's
/// dispatchers (one per queue served here), the reconciler, and the wake-ups from
/// `stage_queued`.
pub async fn start(
    config: &crate::config::Config,
    pool: &PgPool,
    assets: &crate::assets::Assets,
    prober: crate::comfyui::probe::Prober,
    cluster: &crate::cluster::Cluster,
    notifications: &Notifications,
    tasks: &Tasks,
) -> anyhow::Result<Capabilities> {
    // Workflows first: the built-in templates name them.
    crate::comfyui::workflows::store::seed_bundled(pool)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    store::seed_builtins(pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot save the built-in pipeline templates: {e:?}"))?;
    std::fs::create_dir_all(config.work())?;
    let registry = registry(config, pool, assets, prober, cluster)?;
    tasks.keep("pipelines reconciler", {
        let pool = pool.clone();
        move || reconcile(pool.clone())
    });
    let mut wakes = HashMap::new();
    for (queue, executor) in registry.queues() {
        let wake = Arc::new(Notify::new());
        wakes.insert(queue.name.to_owned(), wake.clone());
        let dispatcher = Arc::new(Dispatcher {
            pool: pool.clone(),
            queue: queue.name.into(),
            capacity: queue.capacity,
            executor,
            runner: Uuid::now_v7(),
            wake,
        });
        tasks.keep(format!("dispatcher {}", queue.name), move || {
            dispatcher.clone().run()
        });
    }
    tasks.keep("pipelines wake-ups", {
        let notifications = notifications.clone();
        move || wake_on_queued(notifications.subscribe(Channel::StageQueued), wakes.clone())
    });
    Ok(registry.capabilities)
}
