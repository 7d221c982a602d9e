//! The queue with stand-in executors: what runs, how often, how many at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use server::pipelines::queue::{Claim, Outcome};
use server::pipelines::{Dispatcher, Executor};
use slate_tests::{spawn_app_with, TestApp};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::{submit_runs, template, Shared};

/// Records every attempt it is given; holds each for `hold`; fails the first attempt of
/// stages named in `fail_first`.
#[derive(Default)]
struct Recorder {
    calls: Shared<Vec<(Uuid, i32)>>,
    now: AtomicUsize,
    most: AtomicUsize,
    hold: Duration,
    fail_first: Vec<String>,
}

#[async_trait]
impl Executor for Recorder {
    async fn run(&self, claim: &Claim, mut cancel: watch::Receiver<bool>) -> Outcome {
        self.calls
            .lock()
            .unwrap()
            .push((claim.stage_id, claim.attempt));
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // Counts down however the attempt ends, also when its task is aborted.
        struct Running<'a>(&'a AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _running = Running(&self.now);
        let outcome = tokio::select! {
            _ = tokio::time::sleep(self.hold) => {
                if claim.attempt == 1 && self.fail_first.contains(&claim.name) {
                    Outcome::Failed("exit status 1\nmore".into())
                } else {
                    Outcome::Succeeded
                }
            }
            _ = cancel.wait_for(|c| *c) => Outcome::Cancelled,
        };
        outcome
    }
}

/// Slate with no dispatcher of its own: the test's stand-ins take all the work.
async fn without_dispatchers() -> TestApp {
    spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await
}

fn dispatcher(pool: &sqlx::PgPool, capacity: i64, executor: Arc<Recorder>) -> Arc<Dispatcher> {
    Arc::new(Dispatcher {
        pool: pool.clone(),
        kind: "local".into(),
        capacity,
        executor,
        runner: Uuid::now_v7(),
        wake: Arc::new(Notify::new()),
    })
}

async fn wait_runs(pool: &sqlx::PgPool, state: &str, n: i64) {
    for _ in 0..600 {
        let done: i64 = sqlx::query_scalar("select count(*) from runs where state = $1")
            .bind(state)
            .fetch_one(pool)
            .await
            .unwrap();
        if done >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let states: Vec<(String, i64)> =
        sqlx::query_as("select state, count(*) from run_stages group by state")
            .fetch_all(pool)
            .await
            .unwrap();
    panic!("fewer than {n} runs {state}; stages: {states:?}");
}

#[tokio::test]
async fn two_dispatchers_on_one_database_never_run_a_stage_twice() {
    let app = without_dispatchers().await;
    submit_runs(&app, &template("wide", 10, false, 1), 30, 0).await;
    let recorder = Arc::new(Recorder::default());
    let a = tokio::spawn(dispatcher(&app.pool, 8, recorder.clone()).run());
    let b = tokio::spawn(dispatcher(&app.pool, 8, recorder.clone()).run());
    wait_runs(&app.pool, "succeeded", 30).await;
    a.abort();
    b.abort();
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 300, "every stage ran once");
    let mut per_stage: HashMap<Uuid, usize> = HashMap::new();
    for (stage, _) in &calls {
        *per_stage.entry(*stage).or_default() += 1;
    }
    assert!(per_stage.values().all(|n| *n == 1));
    assert!(
        recorder.most.load(Ordering::SeqCst) <= 8,
        "the limit holds across dispatchers"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_limit_of_one_holds_across_replicas_and_priorities_go_first() {
    let app = without_dispatchers().await;
    let low = submit_runs(&app, &template("low", 1, false, 1), 3, -10).await;
    let high = submit_runs(&app, &template("high", 1, false, 1), 3, 50).await;
    let recorder = Arc::new(Recorder {
        hold: Duration::from_millis(30),
        ..Default::default()
    });
    let a = tokio::spawn(dispatcher(&app.pool, 1, recorder.clone()).run());
    let b = tokio::spawn(dispatcher(&app.pool, 1, recorder.clone()).run());
    wait_runs(&app.pool, "succeeded", 6).await;
    a.abort();
    b.abort();
    assert_eq!(recorder.most.load(Ordering::SeqCst), 1, "one at a time");
    // The high-priority runs started first.
    let order: Vec<Uuid> = sqlx::query_scalar("select run_id from run_stages order by started_at")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(high.contains(&order[0]) && high.contains(&order[1]) && high.contains(&order[2]));
    assert!(low.contains(&order[5]));
    app.stop().await;
}

#[tokio::test]
async fn a_chain_runs_in_order_and_a_failure_is_retried_after_a_backoff() {
    let app = without_dispatchers().await;
    let run = submit_runs(&app, &template("chain", 3, true, 2), 1, 0).await[0];
    let recorder = Arc::new(Recorder {
        fail_first: vec!["s1".into()],
        ..Default::default()
    });
    let d = tokio::spawn(dispatcher(&app.pool, 4, recorder.clone()).run());
    // s1's first attempt fails: it waits its backoff, with the reason.
    let mut message = String::new();
    for _ in 0..200 {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "select state, status_message from run_stages where run_id = $1 and name = 's1' and attempt = 1 and state = 'queued'",
        )
        .bind(run)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if let Some((_, m)) = row {
            message = m.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        message,
        "Attempt 1 of 2 failed (exit status 1); trying again in 5 s."
    );
    let s2: String =
        sqlx::query_scalar("select state from run_stages where run_id = $1 and name = 's2'")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(s2, "waiting");
    wait_runs(&app.pool, "succeeded", 1).await;
    d.abort();
    let calls: Vec<i32> = recorder.calls.lock().unwrap().iter().map(|c| c.1).collect();
    assert_eq!(calls, [1, 1, 2, 1], "s0, s1 (fails), s1 again, s2");
    let started: Vec<String> =
        sqlx::query_scalar("select name from run_stages where run_id = $1 order by finished_at")
            .bind(run)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(started, ["s0", "s1", "s2"]);
    app.stop().await;
}

#[tokio::test]
async fn a_runner_that_dies_gives_its_stage_back_and_cancel_stops_running_work() {
    let app = without_dispatchers().await;
    let run = submit_runs(&app, &template("long", 1, false, 3), 1, 0).await[0];
    let slow = Arc::new(Recorder {
        hold: Duration::from_secs(3600),
        ..Default::default()
    });
    let first = tokio::spawn(dispatcher(&app.pool, 1, slow.clone()).run());
    for _ in 0..200 {
        if slow.calls.lock().unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The replica dies; its lease lapses (made to lapse now rather than in 30 s).
    first.abort();
    sqlx::query("update run_stages set lease_until = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        server::pipelines::queue::reconcile(&app.pool)
            .await
            .unwrap(),
        1
    );
    let (state, attempts): (String, Vec<String>) = sqlx::query_as(
        "select s.state, array(select a.state from stage_attempts a where a.stage_id = s.id order by a.number)
         from run_stages s where s.run_id = $1",
    )
    .bind(run)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), attempts),
        ("queued", vec!["lost".to_owned()])
    );

    // Another replica takes it up; then the run is cancelled while it runs.
    let second = tokio::spawn(dispatcher(&app.pool, 1, slow.clone()).run());
    for _ in 0..200 {
        if slow.calls.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(slow.calls.lock().unwrap()[1].1, 2, "the second attempt");
    let (who, id) = crate::admin(&app).await;
    let by = server::pipelines::runs::Submitter {
        who: &who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    };
    server::pipelines::runs::cancel(&app.pool, run, &by)
        .await
        .unwrap();
    wait_runs(&app.pool, "cancelled", 1).await;
    for _ in 0..200 {
        let stage: String = sqlx::query_scalar("select state from run_stages where run_id = $1")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if stage == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select finished_at from runs where id = $1")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(finished.is_some(), "the run settled once its stage stopped");
    assert_eq!(
        slow.now.load(Ordering::SeqCst),
        0,
        "the executor stopped the work"
    );
    // A finished run cannot be cancelled again.
    let again = server::pipelines::runs::cancel(&app.pool, run, &by)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already finished"), "{again}");
    second.abort();
    app.stop().await;
}
