//! Dispatchers hand queued attempts to executors: one per queue claims work when woken
//! (PostgreSQL `NOTIFY stage_queued`, from any replica) or every second, runs each claimed
//! attempt in its own task, renews the leases every two seconds (hearing of
//! cancellations on the way), and records the outcome. A reconciler gives back stages
//! whose runner died.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::attempt::Attempt;
use super::executor::Executor;
use super::queue::{self, Claim, Outcome};

/// Claims and runs the attempts of one queue.
pub struct Dispatcher {
    pub pool: PgPool,
    /// The queue (`run_stages.executor`).
    pub queue: String,
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
                    &self.queue,
                    self.runner,
                    self.capacity,
                    free.min(64),
                )
                .await
                {
                    Ok(c) => c,
                    Err(err) => {
                        tracing::warn!(error = %err, queue = %self.queue, "cannot claim queued stages");
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
                    let outcome = run_caught(&this.pool, this.executor.as_ref(), &claim, rx).await;
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

/// Runs an attempt in a span naming it; an executor that panics fails the attempt with
/// the panic's message instead of leaving it running.
async fn run_caught(
    pool: &PgPool,
    executor: &dyn Executor,
    claim: &Claim,
    cancel: watch::Receiver<bool>,
) -> Outcome {
    use futures::FutureExt as _;
    use tracing::Instrument as _;
    let span = tracing::info_span!("attempt", run = %claim.run_id, stage = %claim.name,
        attempt = claim.attempt, attempt_id = %claim.attempt_id, queue = %claim.executor);
    let work = async {
        let attempt = match Attempt::load(pool, claim.clone()).await {
            Ok(attempt) => attempt,
            Err(e) => return Outcome::Failed(e),
        };
        executor
            .run(&attempt, cancel)
            .await
            .unwrap_or_else(Outcome::Failed)
    };
    match std::panic::AssertUnwindSafe(work.instrument(span.clone()))
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
            span.in_scope(
                || tracing::error!(panic = %message, "an executor panicked; its attempt fails"),
            );
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

/// Wakes the dispatchers of this process when any replica queues work of their queue
/// (`NOTIFY stage_queued`, its payload the queue), until the notifications end.
pub async fn wake_on_queued(
    mut queued: broadcast::Receiver<String>,
    wakes: HashMap<String, Arc<Notify>>,
) {
    loop {
        match queued.recv().await {
            Ok(queue) => {
                if let Some(wake) = wakes.get(&queue) {
                    wake.notify_one();
                }
            }
            // Some were missed: every dispatcher looks (each claims only what there is).
            Err(broadcast::error::RecvError::Lagged(_)) => {
                wakes.values().for_each(|w| w.notify_one())
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Gives back lapsed stages every few seconds, for as long as it runs.
pub async fn reconcile(pool: PgPool) {
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
}
