//! Pipelines: templates (`store`), runs (`runs`), the durable queue (`queue`) and the
//! dispatchers that hand queued stages to executors.
//!
//! A dispatcher per executor kind claims work when it is woken (PostgreSQL
//! `NOTIFY stage_queued`, from any replica) or every second, runs each claimed stage in
//! its own task, renews the leases every two seconds (hearing of cancellations on the
//! way), and records the outcome. A reconciler gives back stages whose runner died.

pub mod backend;
pub mod exec_comfy;
pub mod exec_kube;
pub mod exec_local;
pub mod http;
pub mod local;
pub mod outputs;
pub mod queue;
pub mod runs;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use queue::{Claim, Outcome};

/// An executor runs one attempt of a stage to its end.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs the attempt; `cancel` turns true when the run is cancelled (the executor then
    /// stops the work and returns `Outcome::Cancelled`).
    async fn run(&self, claim: &Claim, cancel: watch::Receiver<bool>) -> Outcome;
}

/// Claims and runs the stages of one executor kind.
pub struct Dispatcher {
    pub pool: PgPool,
    pub kind: String,
    pub capacity: i64,
    pub executor: Arc<dyn Executor>,
    /// This process's runner id (the lease owner).
    pub runner: Uuid,
    pub wake: Arc<Notify>,
}

impl Dispatcher {
    /// Runs until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let running: Running = Arc::default();
        let renewer = {
            let this = self.clone();
            let running = running.clone();
            tokio::spawn(async move { this.renew_loop(running).await })
        };
        let _renewer = AbortOnDrop(renewer);
        // The attempts in flight belong to this dispatcher: they end with it.
        let mut attempts = tokio::task::JoinSet::new();
        loop {
            while attempts.try_join_next().is_some() {}
            let free =
                self.capacity - running.lock().unwrap_or_else(|e| e.into_inner()).len() as i64;
            let claims = if free > 0 {
                match queue::claim(
                    &self.pool,
                    &self.kind,
                    self.runner,
                    self.capacity,
                    free.min(64),
                )
                .await
                {
                    Ok(c) => c,
                    Err(err) => {
                        tracing::warn!(error = %err, kind = %self.kind, "cannot claim queued stages");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let claimed = claims.len();
            for claim in claims {
                let (tx, rx) = watch::channel(false);
                running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(claim.stage_id, tx);
                let this = self.clone();
                // However the attempt ends, its lease is no longer renewed and its slot
                // is free.
                let slot = Slot {
                    running: running.clone(),
                    stage: claim.stage_id,
                    wake: self.wake.clone(),
                };
                attempts.spawn(async move {
                    let _slot = slot;
                    let outcome = run_caught(this.executor.as_ref(), &claim, rx).await;
                    let mut tries = 0;
                    // The outcome must be recorded: retry through a database blip.
                    while let Err(err) =
                        queue::finish(&this.pool, this.runner, &claim, &outcome).await
                    {
                        tries += 1;
                        tracing::warn!(error = %err, tries, "cannot record a stage's outcome; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if tries > 30 {
                            break;
                        }
                    }
                });
            }
            if claimed > 0 && (claimed as i64) == free.min(64) {
                // There may be more: claim again at once.
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn renew_loop(&self, running: Running) {
        loop {
            tokio::time::sleep(queue::RENEW_EVERY).await;
            let ids: Vec<Uuid> = running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect();
            match queue::renew(&self.pool, self.runner, &ids).await {
                Ok(cancel) => {
                    let running = running.lock().unwrap_or_else(|e| e.into_inner());
                    for id in cancel {
                        if let Some(tx) = running.get(&id) {
                            let _ = tx.send(true);
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot renew stage leases"),
            }
        }
    }
}

type Running = Arc<Mutex<HashMap<Uuid, watch::Sender<bool>>>>;

/// An attempt's place among those a dispatcher runs (and renews the leases of), given
/// back when the attempt's task ends in any way.
struct Slot {
    running: Running,
    stage: Uuid,
    wake: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.stage);
        self.wake.notify_one();
    }
}

/// Runs an attempt; an executor that panics fails it with the panic's message instead
/// of leaving it running.
async fn run_caught(
    executor: &dyn Executor,
    claim: &Claim,
    cancel: watch::Receiver<bool>,
) -> Outcome {
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(executor.run(claim, cancel))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            tracing::error!(run = %claim.run_id, stage = %claim.name, attempt = claim.attempt,
                panic = %message, "an executor panicked; its attempt fails");
            Outcome::Failed(format!("the executor crashed: {message}"))
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wakes the dispatchers of this process when any replica queues work of their kind.
pub fn listen(pool: PgPool, wakes: HashMap<String, Arc<Notify>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if listener.listen("stage_queued").await.is_ok() {
                        delay = Duration::from_secs(1);
                        while let Ok(n) = listener.recv().await {
                            if let Some(w) = wakes.get(n.payload()) {
                                w.notify_one();
                            }
                        }
                    }
                }
                Err(err) => tracing::debug!(error = %err, "queue listener cannot connect"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    })
}

/// Gives back lapsed stages every few seconds.
pub fn spawn_reconciler(pool: PgPool) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match queue::reconcile(&pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    n,
                    "stages whose runner stopped were given back to the queue"
                ),
                Err(err) => tracing::warn!(error = %err, "cannot reconcile lapsed stages"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// Seeds the built-in templates and starts this replica's dispatchers (local stages, if
/// it runs any), the reconciler and the queue listener.
pub async fn start(
    config: &crate::config::Config,
    pool: &PgPool,
    assets: &crate::assets::Assets,
    prober: crate::colab::probe::Prober,
    cluster: &crate::cluster::Cluster,
) -> anyhow::Result<(runs::Capabilities, Vec<JoinHandle<()>>)> {
    store::seed_builtins(pool)
        .await
        .map_err(|e| anyhow::anyhow!("cannot save the built-in pipeline templates: {e:?}"))?;
    std::fs::create_dir_all(config.work())?;
    let mut tasks = vec![spawn_reconciler(pool.clone())];
    let mut wakes = HashMap::new();
    let names: Vec<String> = config
        .local_programs
        .split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let allowed = local::Allowed::resolve(&names);
    // Without a cluster, a template with a Job stage is refused rather than queued
    // forever.
    let kube_client = cluster.client();
    let caps = runs::Capabilities {
        programs: allowed.names(),
        kubernetes: kube_client.is_some(),
    };
    // Jobs see the work directory at the same path: it must be absolute.
    let work = std::path::absolute(config.work())?;
    if config.local_stages > 0 {
        if !allowed.missing().is_empty() {
            tracing::warn!(missing = ?allowed.missing(), "some allowed programs for local stages cannot be found on PATH");
        }
        let wake = Arc::new(Notify::new());
        wakes.insert("local".to_owned(), wake.clone());
        let dispatcher = Arc::new(Dispatcher {
            pool: pool.clone(),
            kind: "local".into(),
            capacity: config.local_stages,
            executor: Arc::new(exec_local::LocalExecutor {
                files: exec_local::Workspace {
                    pool: pool.clone(),
                    assets: assets.clone(),
                    work: work.clone(),
                },
                allowed: Arc::new(allowed),
                run_as: local::RunAs::for_setting(&config.stage_user),
            }),
            runner: Uuid::now_v7(),
            wake,
        });
        tasks.push(tokio::spawn(dispatcher.run()));
    }
    if config.comfyui_prompts > 0 {
        let wake = Arc::new(Notify::new());
        wakes.insert("comfyui".to_owned(), wake.clone());
        let dispatcher = Arc::new(Dispatcher {
            pool: pool.clone(),
            kind: "comfyui".into(),
            capacity: config.comfyui_prompts,
            executor: Arc::new(exec_comfy::ComfyExecutor {
                pool: pool.clone(),
                assets: assets.clone(),
                prober,
                work: work.clone(),
                poll: Duration::from_millis(config.comfyui_poll_ms.max(50)),
                checkpoint: config.comfyui_checkpoint.clone(),
            }),
            runner: Uuid::now_v7(),
            wake,
        });
        tasks.push(tokio::spawn(dispatcher.run()));
    }
    if let Some(client) = kube_client {
        let settings = exec_kube::JobSettings::from_config(config).map_err(anyhow::Error::msg)?;
        let executor: Arc<dyn Executor> = Arc::new(exec_kube::KubeExecutor {
            files: exec_local::Workspace {
                pool: pool.clone(),
                assets: assets.clone(),
                work: work.clone(),
            },
            cluster: cluster.clone(),
            jobs: exec_kube::Jobs {
                client,
                namespace: cluster.namespace().to_owned(),
            },
            settings: Arc::new(settings),
        });
        // GPU Jobs have their own limit (GPUs are few); both kinds run the same way.
        for (kind, capacity) in [
            (runs::KUBERNETES, config.job_stages),
            (runs::KUBERNETES_GPU, config.gpu_jobs),
        ] {
            if capacity <= 0 {
                continue;
            }
            let wake = Arc::new(Notify::new());
            wakes.insert(kind.to_owned(), wake.clone());
            let dispatcher = Arc::new(Dispatcher {
                pool: pool.clone(),
                kind: kind.into(),
                capacity,
                executor: executor.clone(),
                runner: Uuid::now_v7(),
                wake,
            });
            tasks.push(tokio::spawn(dispatcher.run()));
        }
    }
    tasks.push(listen(pool.clone(), wakes));
    Ok((caps, tasks))
}
