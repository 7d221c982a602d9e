//! The background tasks of a process under one supervisor, and the signal that the server
//! is stopping: a task that ends or panics is logged by name (and started again with
//! backoff when it must run); shutdown stops them all and waits for them within a bound.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// Fires when the server begins to stop, so that endless responses (event streams) end
/// and graceful shutdown does not wait for them forever.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells everything holding this that the server is stopping.
    pub fn begin(&self) {
        self.0.cancel();
    }

    pub fn is_stopping(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves when the server begins to stop.
    pub fn stopped(&self) -> WaitForCancellationFutureOwned {
        self.0.clone().cancelled_owned()
    }
}

/// How long a restarted task waits: `first` after its first end, doubling up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// A task that ran at least this long before it ended was healthy: its next restart
/// waits only the first backoff again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The supervisor of a process's background tasks (cheap to clone; clones share them).
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    backoff: Backoff,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_backoff(backoff: Backoff) -> Self {
        Self {
            backoff,
            ..Self::default()
        }
    }

    /// Runs a task that must run for as long as the process does: whenever the future
    /// `task()` makes returns or panics before shutdown, that is logged and, after the
    /// backoff, `task()` is called again. At shutdown the running future is dropped.
    pub fn keep<F, Fut>(&self, name: impl Into<Arc<str>>, mut task: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let stop = self.stop.clone();
        let backoff = self.backoff;
        self.tracker.spawn(async move {
            let mut delay = backoff.first;
            loop {
                let started = Instant::now();
                let ended = tokio::select! {
                    _ = stop.cancelled() => return,
                    ended = AssertUnwindSafe(task()).catch_unwind() => ended,
                };
                if started.elapsed() >= HEALTHY_RUN {
                    delay = backoff.first;
                }
                match ended {
                    Ok(()) => tracing::warn!(task = %name, retry_in = ?delay,
                        "a background task ended; starting it again"),
                    Err(panic) => tracing::error!(task = %name, panic = %message(&*panic),
                        retry_in = ?delay, "a background task panicked; starting it again"),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(backoff.max);
            }
        });
    }

    /// Supervises a task spawned elsewhere (one that cannot be started again from here):
    /// its end before shutdown is logged, and at shutdown it is aborted.
    pub fn adopt(&self, name: impl Into<Arc<str>>, mut handle: JoinHandle<()>) {
        let name = name.into();
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {
                    handle.abort();
                    let _ = handle.await;
                }
                ended = &mut handle => match ended {
                    Ok(()) => tracing::warn!(task = %name, "a background task ended"),
                    Err(err) if err.is_panic() => {
                        let panic = err.into_panic();
                        tracing::error!(task = %name, panic = %message(&*panic),
                            "a background task panicked");
                    }
                    Err(_) => tracing::debug!(task = %name, "a background task was cancelled"),
                },
            }
        });
    }

    /// Runs `task` once under the supervisor: stopped at shutdown, its panic logged by
    /// name. For work started by a request that must not outlive the server unseen (the
    /// verification of a reported endpoint).
    pub fn once<Fut>(&self, name: impl Into<Arc<str>>, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                ended = AssertUnwindSafe(task).catch_unwind() => {
                    if let Err(panic) = ended {
                        tracing::error!(task = %name, panic = %message(&*panic),
                            "a background task panicked");
                    }
                }
            }
        });
    }

    /// The tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Stops every task and waits for them, at most `bound`; returns whether they all
    /// ended in time (those that did not are left to the runtime).
    pub async fn shutdown(&self, bound: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        tracing::warn!(left = self.tracker.len(), bound = ?bound,
            "some background tasks did not stop in time");
        false
    }
}

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quick() -> Tasks {
        Tasks::with_backoff(Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
        })
    }

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_started_again() {
        let tasks = quick();
        let starts = Arc::new(AtomicUsize::new(0));
        let (running, mut third) = tokio::sync::watch::channel(false);
        let counted = starts.clone();
        tasks.keep("flaky", move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let running = running.clone();
            async move {
                match n {
                    0 => panic!("first start fails"),
                    1 => {}
                    _ => {
                        let _ = running.send(true);
                        std::future::pending::<()>().await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), third.wait_for(|r| *r))
            .await
            .expect("the task is started a third time")
            .expect("the task holds the sender");
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn shutdown_stops_kept_and_adopted_tasks() {
        let tasks = quick();
        // Dropped when the kept future is: proof that shutdown ended it.
        struct Flag(Arc<AtomicUsize>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicUsize::new(0));
        let flag = dropped.clone();
        tasks.keep("endless", move || {
            let flag = Flag(flag.clone());
            async move {
                let _flag = flag;
                std::future::pending::<()>().await;
            }
        });
        let adopted = tokio::spawn(std::future::pending::<()>());
        tasks.adopt("adopted", adopted);
        tokio::task::yield_now().await;
        assert_eq!(tasks.len(), 2);
        assert!(tasks.shutdown(Duration::from_secs(5)).await);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
        assert!(tasks.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_gives_up_on_a_stuck_task_at_the_bound() {
        let tasks = quick();
        let (started, mut running) = tokio::sync::watch::channel(false);
        // Blocking inside a future: it cannot be dropped until it yields, so shutdown
        // must stop waiting for it at the bound.
        tasks.keep("stuck", move || {
            let started = started.clone();
            async move {
                let _ = started.send(true);
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        running
            .wait_for(|r| *r)
            .await
            .expect("the task holds the sender");
        let began = std::time::Instant::now();
        assert!(!tasks.shutdown(Duration::from_millis(200)).await);
        let waited = began.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_millis(900), "{waited:?}");
    }

    #[test]
    fn shutdown_signal_fires_once_begun() {
        let shutdown = Shutdown::new();
        let copy = shutdown.clone();
        assert!(!copy.is_stopping());
        shutdown.begin();
        assert!(copy.is_stopping());
        assert!(copy.stopped().now_or_never().is_some());
    }
}
