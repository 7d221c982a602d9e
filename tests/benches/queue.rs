//! The pipeline queue's dispatch speed with a no-op executor. Prints figures; asserts
//! nothing about time.
//!
//! For one and then two Slate instances (each its own dispatcher, connection pool,
//! runner id and `LISTEN` connection, on one database):
//! 1. throughput: 10,000 stages queued at once, the time until every one has started
//!    (and finished: the executor does nothing);
//! 2. latency: 10,000 stages queued at a steady 1,000 per second (batches of 50 every
//!    50 ms), p50 and p99 of the time from queued to started, taken from the rows.
//!
//! The two-instance figures are printed with their ratio to the one-instance baseline
//! measured in the same run.
//!
//! Run: SLATE_TEST_DATABASE_URL=… cargo bench -p slate-tests --bench queue

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use server::notify::{Channel, Notifications};
use server::pipelines::attempt::Attempt;
use server::pipelines::queue::Outcome;
use server::pipelines::{Dispatcher, Executor, Queue};
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

const STAGES: i64 = 10_000;

struct NoOp;

#[async_trait]
impl Executor for NoOp {
    fn queues(&self) -> Vec<Queue> {
        Vec::new()
    }

    async fn run(&self, _: &Attempt, _: watch::Receiver<bool>) -> Result<Outcome, String> {
        Ok(Outcome::Succeeded)
    }
}

/// Queues `n` one-stage runs of `pipeline` in one statement per table.
async fn enqueue(pool: &PgPool, pipeline: Uuid, user: Uuid, n: i64) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "with new as (select gen_random_uuid() as run from generate_series(1, $3))
         , runs_in as (
             insert into runs (id, pipeline_id, params, state, submitted_by)
             select run, $1, '{}'::jsonb, 'queued', $2 from new returning id)
         insert into run_stages (id, run_id, name, executor, state, priority, attempts_max, queued_at)
         select gen_random_uuid(), id, 's0', 'local', 'queued', 0, 1, clock_timestamp() from runs_in",
    )
    .bind(pipeline)
    .bind(user)
    .bind(n)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn finished(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from run_stages where state = 'succeeded'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn instances(url: &str, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await
            .unwrap();
        let wake = Arc::new(Notify::new());
        // Each instance as a replica: its own LISTEN connection and wake-ups.
        let notifications = Notifications::new();
        tasks.push(tokio::spawn(notifications.clone().listen(pool.clone())));
        tasks.push(tokio::spawn(server::pipelines::wake_on_queued(
            notifications.subscribe(Channel::StageQueued),
            HashMap::from([("local".to_owned(), wake.clone())]),
        )));
        let dispatcher = Arc::new(Dispatcher {
            pool,
            queue: "local".into(),
            capacity: 64,
            executor: Arc::new(NoOp),
            runner: Uuid::now_v7(),
            wake,
        });
        tasks.push(tokio::spawn(dispatcher.run()));
    }
    tasks
}

async fn clear(pool: &PgPool) {
    sqlx::query("truncate stage_attempts, stage_logs, run_stages, run_outputs, runs cascade")
        .execute(pool)
        .await
        .unwrap();
}

async fn wait_all(pool: &PgPool) {
    while finished(pool).await < STAGES {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (stages per second to drain a backlog, p50 ms, p99 ms at 1,000 per second).
async fn measure(
    app: &slate_tests::TestApp,
    pipeline: Uuid,
    user: Uuid,
    n: usize,
) -> (f64, f64, f64) {
    let pool = &app.pool;
    clear(pool).await;
    enqueue(pool, pipeline, user, STAGES).await;
    let started = Instant::now();
    let tasks = instances(&app.database_url, n).await;
    wait_all(pool).await;
    let drain = started.elapsed();
    clear(pool).await;
    let paced = Instant::now();
    for batch in 0..(STAGES / 50) {
        let due = Duration::from_millis(50 * batch as u64);
        if let Some(wait) = due.checked_sub(paced.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        enqueue(pool, pipeline, user, 50).await;
    }
    wait_all(pool).await;
    let (p50, p99): (f64, f64) = sqlx::query_as(
        "select percentile_cont(0.5) within group (order by ms), percentile_cont(0.99) within group (order by ms)
         from (select extract(epoch from started_at - queued_at) * 1000 as ms from run_stages) l",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    for t in tasks {
        t.abort();
    }
    (STAGES as f64 / drain.as_secs_f64(), p50, p99)
}

#[tokio::main]
async fn main() {
    let app = slate_tests::spawn_app_with(|c| c.local_stages = 0).await;
    let admin: Uuid = sqlx::query_scalar("select id from users limit 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let pipeline: Uuid =
        sqlx::query_scalar("select id from pipelines where name = 'transcode-and-proxies'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    println!("queue: {STAGES} one-stage runs, a no-op executor, 64 stages in flight per instance");
    let one = measure(&app, pipeline, admin, 1).await;
    println!(
        "  1 instance : {:>7.0} stages/s to drain a backlog; queued→started at 1,000/s: p50 {:.1} ms, p99 {:.1} ms",
        one.0, one.1, one.2
    );
    let two = measure(&app, pipeline, admin, 2).await;
    println!(
        "  2 instances: {:>7.0} stages/s to drain a backlog; queued→started at 1,000/s: p50 {:.1} ms, p99 {:.1} ms",
        two.0, two.1, two.2
    );
    println!(
        "  ratio (2 / 1): throughput {:.2}×, p50 {:.2}×, p99 {:.2}×",
        two.0 / one.0,
        two.1 / one.1,
        two.2 / one.2
    );
    app.stop().await;
}
