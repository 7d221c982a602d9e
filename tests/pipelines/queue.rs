//! The queue with stand-in executors: what runs, how often, how many at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use server::audit::Who;
use server::pipelines::attempt::Attempt;
use server::pipelines::queue::Outcome;
use server::pipelines::runs::Submitter;
use server::pipelines::{Dispatcher, Executor, Queue};
use slate_tests::wait::try_eventually;
use slate_tests::{eventually, seen, spawn_app_with, TestApp};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::{submit_runs, template, Shared};

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
    fn queues(&self) -> Vec<Queue> {
        Vec::new()
    }

    async fn run(
        &self,
        attempt: &Attempt,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let claim = &attempt.claim;
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
        Ok(outcome)
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
        queue: "local".into(),
        capacity,
        executor,
        runner: Uuid::now_v7(),
        wake: Arc::new(Notify::new()),
    })
}

async fn wait_runs(pool: &sqlx::PgPool, state: &str, n: i64) {
    let what = format!("{n} runs to be {state}");
    let done = try_eventually(&what, Duration::from_secs(30), || async {
        let done: i64 = sqlx::query_scalar("select count(*) from runs where state = $1")
            .bind(state)
            .fetch_one(pool)
            .await
            .unwrap();
        seen(done, |d| *d >= n)
    })
    .await;
    let Err(timed_out) = done else {
        return;
    };
    let states: Vec<(String, i64)> =
        sqlx::query_as("select state, count(*) from run_stages group by state")
            .fetch_all(pool)
            .await
            .unwrap();
    panic!("{timed_out}; stages: {states:?}");
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
    let message = eventually("s1 queued again after its first attempt", Duration::from_secs(10), || async {
        let row: Option<Option<String>> = sqlx::query_scalar(
            "select status_message from run_stages where run_id = $1 and name = 's1' and attempt = 1 and state = 'queued'",
        )
        .bind(run)
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        row.map(Option::unwrap_or_default)
    })
    .await;
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
    wait_calls(&slow, 1).await;
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
    wait_calls(&slow, 2).await;
    assert_eq!(slow.calls.lock().unwrap()[1].1, 2, "the second attempt");
    let (who, id) = super::admin(&app).await;
    let by = by_admin(&who, id);
    assert!(
        cancel_and_wait(&app, run, &by).await,
        "the run settled once its stage stopped"
    );
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

fn by_admin(who: &Who, id: Uuid) -> Submitter<'_> {
    Submitter {
        who,
        user_id: id,
        role: app::accounts::Role::Admin,
        token: None,
    }
}

/// Cancels `run` and waits until none of its stages runs any more; returns whether the
/// run had then settled (its end time set).
async fn cancel_and_wait(app: &TestApp, run: Uuid, by: &Submitter<'_>) -> bool {
    server::pipelines::runs::cancel(&app.pool, run, by)
        .await
        .unwrap();
    let running =
        format!("select count(*) from run_stages where run_id = '{run}' and state = 'running'");
    // It may not stop at all (that is what the callers check): the wait gives up quietly.
    let _ = try_eventually(
        "the run's stages to stop",
        Duration::from_secs(30),
        || async { seen(app.count(&running).await, |n| *n == 0) },
    )
    .await;
    let finished: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select finished_at from runs where id = $1")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    finished.is_some()
}

/// Waits until `recorder` was given `n` attempts.
async fn wait_calls(recorder: &Recorder, n: usize) {
    eventually(
        &format!("{n} attempts to be claimed"),
        Duration::from_secs(30),
        || async {
            let calls = recorder.calls.lock().unwrap().clone();
            seen(calls, |c| c.len() >= n)
        },
    )
    .await;
}

async fn stage_of(pool: &sqlx::PgPool, run: Uuid) -> Uuid {
    sqlx::query_scalar("select id from run_stages where run_id = $1")
        .bind(run)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn retry_after_cancel_gets_a_new_attempt_number_and_others_still_run() {
    let app = without_dispatchers().await;
    let first = submit_runs(&app, &template("cancelled", 1, false, 1), 1, 0).await[0];
    let slow = Arc::new(Recorder {
        hold: Duration::from_secs(3600),
        ..Default::default()
    });
    let d = tokio::spawn(dispatcher(&app.pool, 2, slow.clone()).run());
    wait_calls(&slow, 1).await;
    // Cancelled while it runs, then its stage retried from the run's page.
    let (who, id) = super::admin(&app).await;
    let by = by_admin(&who, id);
    assert!(cancel_and_wait(&app, first, &by).await);
    server::pipelines::runs::retry_stage(&app.pool, first, "s0", &by)
        .await
        .unwrap();
    // Someone else's run of another template, queued after it.
    let other = submit_runs(&app, &template("other", 1, false, 1), 1, 0).await[0];
    wait_calls(&slow, 3).await;
    let stage = stage_of(&app.pool, first).await;
    let other_stage = stage_of(&app.pool, other).await;
    let mut calls = slow.calls.lock().unwrap().clone();
    calls.sort();
    let mut want = vec![(stage, 1), (stage, 2), (other_stage, 1)];
    want.sort();
    assert_eq!(
        calls, want,
        "the retried stage's second attempt, and the other run"
    );
    let attempts: Vec<(i32, String)> = sqlx::query_as(
        "select number, state from stage_attempts where stage_id = $1 order by number",
    )
    .bind(stage)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        attempts,
        [(1, "cancelled".to_owned()), (2, "running".to_owned())]
    );
    d.abort();
    app.stop().await;
}

#[tokio::test]
async fn a_stage_that_cannot_be_claimed_fails_with_its_reason_and_the_others_still_run() {
    let app = without_dispatchers().await;
    // First in the queue, and the database refuses any attempt of it.
    let broken = submit_runs(&app, &template("broken", 1, false, 1), 1, 10).await[0];
    let fine = submit_runs(&app, &template("fine", 1, false, 1), 2, 0).await;
    let stage = stage_of(&app.pool, broken).await;
    sqlx::raw_sql(&format!(
        "create function refuse_attempt() returns trigger language plpgsql as $$
         begin
             if new.stage_id = '{stage}' then
                 raise exception 'this stage is refused';
             end if;
             return new;
         end $$;
         create trigger refuse_attempt before insert on stage_attempts
             for each row execute function refuse_attempt();"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
    let recorder = Arc::new(Recorder::default());
    // One at a time: the refused stage must not hold the only place.
    let d = tokio::spawn(dispatcher(&app.pool, 1, recorder.clone()).run());
    wait_runs(&app.pool, "succeeded", 2).await;
    wait_runs(&app.pool, "failed", 1).await;
    d.abort();
    let (state, status): (String, String) =
        sqlx::query_as("select state, status_message from run_stages where id = $1")
            .bind(stage)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert_eq!(
        status,
        "Slate could not start this stage: this stage is refused"
    );
    let run_state: String = sqlx::query_scalar("select state from runs where id = $1")
        .bind(broken)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(run_state, "failed");
    for run in fine {
        assert_eq!(super::wait_run(&app, run).await, "succeeded");
    }
    assert!(recorder.calls.lock().unwrap().iter().all(|c| c.0 != stage));
    // The run's page says why.
    let res = app
        .as_admin("/api/run_detail", &[("id", &broken.to_string())])
        .await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("Slate could not start this stage: this stage is refused"),
        "{page}"
    );
    app.stop().await;
}

/// Panics on the first attempt it is given; succeeds at the others.
#[derive(Default)]
struct PanicsFirst {
    calls: AtomicUsize,
}

#[async_trait]
impl Executor for PanicsFirst {
    fn queues(&self) -> Vec<Queue> {
        Vec::new()
    }

    async fn run(
        &self,
        _attempt: &Attempt,
        _cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("boom");
        }
        Ok(Outcome::Succeeded)
    }
}

#[tokio::test]
async fn a_panicking_executor_fails_its_attempt_and_frees_its_slot() {
    let app = without_dispatchers().await;
    let crashed = submit_runs(&app, &template("crashes", 1, false, 1), 1, 10).await[0];
    let next = submit_runs(&app, &template("next", 1, false, 1), 1, 0).await[0];
    let executor = Arc::new(PanicsFirst::default());
    // A single place: the next stage runs only once the crashed one gave it back.
    let d = tokio::spawn(
        Arc::new(Dispatcher {
            pool: app.pool.clone(),
            queue: "local".into(),
            capacity: 1,
            executor: executor.clone(),
            runner: Uuid::now_v7(),
            wake: Arc::new(Notify::new()),
        })
        .run(),
    );
    assert_eq!(super::wait_run(&app, next).await, "succeeded");
    assert_eq!(super::wait_run(&app, crashed).await, "failed");
    d.abort();
    let (state, status, attempt, error): (String, String, String, String) = sqlx::query_as(
        "select s.state, s.status_message, a.state, a.error
         from run_stages s join stage_attempts a on a.stage_id = s.id where s.run_id = $1",
    )
    .bind(crashed)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (state.as_str(), attempt.as_str(), error.as_str()),
        ("failed", "failed", "the executor crashed: boom")
    );
    assert_eq!(
        status,
        "Failed after 1 attempt(s): the executor crashed: boom"
    );
    // Its lease is no longer renewed.
    let leased: i64 = app
        .count("select count(*) from run_stages where lease_owner is not null")
        .await;
    assert_eq!(leased, 0);
    app.stop().await;
}

/// Fails stage s0 at once; holds the others until the gate opens, then succeeds.
struct Gated {
    gate: watch::Receiver<bool>,
}

#[async_trait]
impl Executor for Gated {
    fn queues(&self) -> Vec<Queue> {
        Vec::new()
    }

    async fn run(
        &self,
        attempt: &Attempt,
        _cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let claim = &attempt.claim;
        if claim.name == "s0" {
            return Ok(Outcome::Failed("exit status 1".into()));
        }
        let _ = self.gate.clone().wait_for(|open| *open).await;
        Ok(Outcome::Succeeded)
    }
}

#[tokio::test]
async fn a_run_whose_stage_failed_while_another_ran_ends_when_that_one_succeeds() {
    let app = without_dispatchers().await;
    let run = submit_runs(&app, &template("split", 2, false, 1), 1, 0).await[0];
    let (open, gate) = watch::channel(false);
    let d = tokio::spawn(
        Arc::new(Dispatcher {
            pool: app.pool.clone(),
            queue: "local".into(),
            capacity: 2,
            executor: Arc::new(Gated { gate }),
            runner: Uuid::now_v7(),
            wake: Arc::new(Notify::new()),
        })
        .run(),
    );
    eventually(
        "s0 failed while s1 runs",
        Duration::from_secs(30),
        || async {
            let states: Vec<String> =
                sqlx::query_scalar("select state from run_stages where run_id = $1 order by name")
                    .bind(run)
                    .fetch_all(&app.pool)
                    .await
                    .unwrap();
            seen(states, |s| s == &["failed", "running"])
        },
    )
    .await;
    open.send(true).unwrap();
    assert_eq!(super::wait_run(&app, run).await, "failed");
    d.abort();
    let finished: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select finished_at from runs where id = $1")
            .bind(run)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(finished.is_some());
    app.stop().await;
}
