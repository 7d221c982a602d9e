//! The durable queue: stages are rows of `run_stages`, claimed with `FOR UPDATE SKIP
//! LOCKED` by priority then age, at most `capacity` running per executor across every
//! replica (claims of one executor are serialised by an advisory lock, so two replicas
//! never overshoot a limit such as "one prompt at a time"). A claimed stage runs under a
//! lease its runner renews; a runner that dies lets the lease lapse, and `reconcile`
//! gives the stage back to the queue (or fails it once its attempts are spent).
//!
//! Finishing a stage promotes the stages waiting on it, retries a failure after a backoff
//! (5 s, 10 s, 20 s, … up to 5 min) while attempts remain, and settles the run.
//!
//! Fan-out: a stage with `for_each` is expanded, when its upstream stages have succeeded,
//! into one queued row per item of the list its reference names (`<stage>.<index>`,
//! with `fan_of`, `item_index` and `item`); the stage's own row then stands for the group
//! (`running`, with `fanned` instances and no runner), succeeds when every instance has,
//! and fails or is cancelled with them. Each instance is an ordinary stage to the queue:
//! its own attempts, lease, log and outputs, and the executor's limit counts it.

use std::time::Duration;

use app::pipelines::RunState;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// How long a claim lives without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a runner renews its leases (and hears of cancellations).
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// A stage attempt handed to an executor.
#[derive(Clone, Debug)]
pub struct Claim {
    pub stage_id: Uuid,
    pub run_id: Uuid,
    pub attempt_id: Uuid,
    /// The attempt's number among all of its stage's attempts (1, 2, …): a retried stage
    /// goes on counting, so each attempt has its own number (and its own directory).
    pub attempt: i32,
    pub attempts_max: i32,
    /// The row's name: the template stage's, or `<stage>.<index>` for an instance of a
    /// fanned-out stage (its directory is named so too).
    pub name: String,
    /// The template stage it runs.
    pub stage: String,
    /// For an instance of a fanned-out stage: its index and its item.
    pub item: Option<(i32, Value)>,
    pub executor: String,
    pub pipeline_id: Uuid,
    pub params: Value,
    pub submitted_by: Uuid,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    run_id: Uuid,
    number: i32,
    attempts_max: i32,
    name: String,
    fan_of: Option<String>,
    item_index: Option<i32>,
    item: Option<Value>,
    executor: String,
    pipeline_id: Uuid,
    params: Value,
    submitted_by: Uuid,
}

/// Claims up to `batch` queued stages of `executor` for `runner`, never letting more
/// than `capacity` of them run at once.
///
/// Each stage is claimed on its own (under a savepoint): one that cannot be claimed (the
/// database refuses its attempt) fails with the reason, shown on its run's page, and the
/// others are claimed all the same, so that no single stage can stop a queue.
pub async fn claim(
    pool: &PgPool,
    executor: &str,
    runner: Uuid,
    capacity: i64,
    batch: i64,
) -> Result<Vec<Claim>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('queue:' || $1, 0))")
        .bind(executor)
        .execute(&mut *tx)
        .await?;
    // A fanned-out stage's own row runs nothing: only its instances count.
    let running: i64 = sqlx::query_scalar(
        "select count(*) from run_stages where executor = $1 and state = 'running' and fanned is null",
    )
    .bind(executor)
    .fetch_one(&mut *tx)
    .await?;
    let free = (capacity - running).min(batch);
    if free <= 0 {
        return Ok(Vec::new());
    }
    let mut claims = Vec::new();
    let mut tried: Vec<Uuid> = Vec::new();
    let mut failed_runs: Vec<Uuid> = Vec::new();
    while (claims.len() as i64) < free {
        let picked: Vec<Uuid> = sqlx::query_scalar(
            "select id from run_stages
             where executor = $1 and state = 'queued' and ready_at <= now() and id <> all($2)
             order by priority desc, queued_at, id
             limit $3
             for update skip locked",
        )
        .bind(executor)
        .bind(&tried)
        .bind(free - claims.len() as i64)
        .fetch_all(&mut *tx)
        .await?;
        if picked.is_empty() {
            break;
        }
        for stage in picked {
            tried.push(stage);
            sqlx::query("savepoint claim_stage")
                .execute(&mut *tx)
                .await?;
            match claim_one(&mut tx, stage, runner).await {
                Ok(claim) => claims.push(claim),
                // What the database refuses about this stage is this stage's failure;
                // anything else (a lost connection) is the claim's, and tried again.
                Err(sqlx::Error::Database(e)) => {
                    tracing::error!(%stage, error = %e, "a queued stage cannot be claimed; it fails");
                    sqlx::query("rollback to savepoint claim_stage")
                        .execute(&mut *tx)
                        .await?;
                    match fail_unclaimable(&mut tx, stage, e.message()).await {
                        Ok(run) => failed_runs.push(run),
                        Err(sqlx::Error::Database(e)) => {
                            // Left queued; it is passed over until the next claim.
                            tracing::error!(%stage, error = %e, "cannot fail an unclaimable stage");
                            sqlx::query("rollback to savepoint claim_stage")
                                .execute(&mut *tx)
                                .await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
            sqlx::query("release savepoint claim_stage")
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    // The claims are made: what follows must not lose them, so it reports its errors
    // instead of returning them (`reconcile` settles a run left unsettled).
    for run in failed_runs {
        if let Err(e) = settle_run(pool, run, RunState::Failed).await {
            tracing::warn!(%run, error = %e, "cannot settle a run whose stage could not be claimed");
        }
    }
    // After the claim, holding no stage: a run's row is only ever locked before its
    // stages' (see `finish`), so this order can never deadlock with it.
    if !claims.is_empty() {
        let runs: Vec<Uuid> = claims.iter().map(|c| c.run_id).collect();
        if let Err(e) = sqlx::query(
            "update runs set state = 'running', started_at = coalesce(started_at, now())
             where id = any($1) and state = 'queued'",
        )
        .bind(&runs)
        .execute(pool)
        .await
        {
            tracing::warn!(error = %e, "cannot mark claimed runs running");
        }
    }
    Ok(claims)
}

/// Ends a run with a stage that failed for good (`settle_failed`), locking the run
/// before its stages.
async fn settle_run(pool: &PgPool, run: Uuid, state: RunState) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select 1 from runs where id = $1 for update")
        .bind(run)
        .execute(&mut *tx)
        .await?;
    settle_failed(&mut tx, run, state).await?;
    tx.commit().await
}

/// Claims one picked stage: its next attempt is numbered after every attempt it already
/// has (a retried stage keeps its earlier ones); the stage's row is locked, so no other
/// claim can number an attempt of it at the same time.
async fn claim_one(tx: &mut PgConnection, stage: Uuid, runner: Uuid) -> Result<Claim, sqlx::Error> {
    let row: ClaimRow =
        sqlx::query_as(
            "update run_stages s set state = 'running', attempt = s.attempt + 1,
                 lease_owner = $2, lease_until = now() + make_interval(secs => $3),
                 started_at = coalesce(s.started_at, now()), status_message = null
             from runs r
             where s.id = $1 and r.id = s.run_id
             returning s.id, s.run_id,
                       coalesce((select max(a.number) from stage_attempts a where a.stage_id = s.id), 0) + 1 as number,
                       s.attempts_max, s.name, s.fan_of, s.item_index, s.item, s.executor,
                       r.pipeline_id, r.params, r.submitted_by",
        )
        .bind(stage)
        .bind(runner)
        .bind(LEASE.as_secs_f64())
        .fetch_one(&mut *tx)
        .await?;
    let attempt_id = Uuid::now_v7();
    sqlx::query(
        "insert into stage_attempts (id, stage_id, number, state, runner) values ($1, $2, $3, 'running', $4)",
    )
    .bind(attempt_id)
    .bind(row.id)
    .bind(row.number)
    .bind(runner)
    .execute(&mut *tx)
    .await?;
    Ok(Claim {
        stage_id: row.id,
        run_id: row.run_id,
        attempt_id,
        attempt: row.number,
        attempts_max: row.attempts_max,
        stage: row.fan_of.clone().unwrap_or_else(|| row.name.clone()),
        item: row.item_index.map(|i| (i, row.item.unwrap_or(Value::Null))),
        name: row.name,
        executor: row.executor,
        pipeline_id: row.pipeline_id,
        params: row.params,
        submitted_by: row.submitted_by,
    })
}

/// Fails a stage that cannot be claimed, with the reason; returns its run (settled by
/// the caller once the stage's lock is released).
async fn fail_unclaimable(
    tx: &mut PgConnection,
    stage: Uuid,
    reason: &str,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar(
        "update run_stages set state = 'failed', finished_at = now(), lease_owner = null,
             lease_until = null, status_message = $2
         where id = $1
         returning run_id",
    )
    .bind(stage)
    .bind(format!(
        "Slate could not start this stage: {}",
        first_line(reason)
    ))
    .fetch_one(&mut *tx)
    .await
}

/// Renews `runner`'s leases on `stages`; returns those whose cancellation was asked.
pub async fn renew(pool: &PgPool, runner: Uuid, stages: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    if stages.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "update run_stages set lease_until = now() + make_interval(secs => $3)
         where id = any($1) and lease_owner = $2 and state = 'running'
         returning case when cancel_requested then id end",
    )
    .bind(stages)
    .bind(runner)
    .bind(LEASE.as_secs_f64())
    .fetch_all(pool)
    .await
    .map(|ids: Vec<Option<Uuid>>| ids.into_iter().flatten().collect())
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    /// Failed in a way another attempt would only repeat (ComfyUI refusing a workflow),
    /// or that someone outside Slate chose (an interrupt pressed in ComfyUI's own page):
    /// the stage fails now, whatever attempts are left.
    FailedForGood(String),
    Cancelled,
}

/// Backoff before retry `attempt` (1-based count of attempts made): 5 s doubling, at
/// most 5 minutes.
pub fn backoff(attempt: i32) -> Duration {
    let exp = attempt.clamp(1, 7) as u32 - 1;
    Duration::from_secs((5u64 << exp).min(300))
}

/// Records the end of an attempt and moves the run on. Only the lease holder's report
/// counts: a runner that lost its lease (another replica took the stage up) changes
/// nothing.
pub async fn finish(
    pool: &PgPool,
    runner: Uuid,
    claim: &Claim,
    outcome: &Outcome,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Stages of one run finish one at a time, so the last one sees all the others done.
    sqlx::query("select 1 from runs where id = $1 for update")
        .bind(claim.run_id)
        .execute(&mut *tx)
        .await?;
    let held: Option<(i32, bool)> = sqlx::query_as(
        "select attempt, cancel_requested from run_stages
         where id = $1 and lease_owner = $2 and state = 'running' for update",
    )
    .bind(claim.stage_id)
    .bind(runner)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((attempt, cancel_requested)) = held else {
        return Ok(false);
    };
    let (attempt_state, error) = match outcome {
        Outcome::Succeeded => ("succeeded", None),
        Outcome::Failed(e) | Outcome::FailedForGood(e) => ("failed", Some(e.clone())),
        Outcome::Cancelled => ("cancelled", None),
    };
    sqlx::query(
        "update stage_attempts set state = $2, error = $3, finished_at = now() where id = $1",
    )
    .bind(claim.attempt_id)
    .bind(attempt_state)
    .bind(&error)
    .execute(&mut *tx)
    .await?;
    match outcome {
        Outcome::Succeeded => {
            sqlx::query(
                "update run_stages set state = 'succeeded', progress = 1, finished_at = now(),
                     lease_owner = null, lease_until = null, status_message = null
                 where id = $1",
            )
            .bind(claim.stage_id)
            .execute(&mut *tx)
            .await?;
            // A run cancelled, or with another stage failed for good, while this one ran
            // ends once nothing of it runs: its remaining stages were not run.
            let (cancelled, failed): (bool, bool) = sqlx::query_as(
                "select r.state = 'cancelled',
                        exists (select 1 from run_stages s where s.run_id = r.id and s.state = 'failed')
                 from runs r where r.id = $1",
            )
            .bind(claim.run_id)
            .fetch_one(&mut *tx)
            .await?;
            if cancelled {
                settle_failed(&mut tx, claim.run_id, RunState::Cancelled).await?;
            } else if failed {
                settle_failed(&mut tx, claim.run_id, RunState::Failed).await?;
            } else {
                promote(&mut tx, claim.run_id).await?;
            }
        }
        Outcome::Failed(e) if attempt < claim.attempts_max && !cancel_requested => {
            let wait = backoff(attempt);
            sqlx::query(
                "update run_stages set state = 'queued', queued_at = now(),
                     ready_at = now() + make_interval(secs => $2), lease_owner = null, lease_until = null,
                     status_message = $3
                 where id = $1",
            )
            .bind(claim.stage_id)
            .bind(wait.as_secs_f64())
            .bind(format!(
                "Attempt {attempt} of {} failed ({}); trying again in {} s.",
                claim.attempts_max,
                first_line(e),
                wait.as_secs()
            ))
            .execute(&mut *tx)
            .await?;
        }
        Outcome::Failed(e) | Outcome::FailedForGood(e) => {
            sqlx::query(
                "update run_stages set state = 'failed', finished_at = now(), lease_owner = null,
                     lease_until = null, status_message = $2
                 where id = $1",
            )
            .bind(claim.stage_id)
            .bind(format!(
                "Failed after {attempt} attempt(s): {}",
                first_line(e)
            ))
            .execute(&mut *tx)
            .await?;
            settle_failed(&mut tx, claim.run_id, RunState::Failed).await?;
        }
        Outcome::Cancelled => {
            sqlx::query(
                "update run_stages set state = 'cancelled', finished_at = now(), lease_owner = null,
                     lease_until = null, status_message = 'Cancelled.'
                 where id = $1",
            )
            .bind(claim.stage_id)
            .execute(&mut *tx)
            .await?;
            settle_failed(&mut tx, claim.run_id, RunState::Cancelled).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim();
    line.chars().take(300).collect()
}

/// Moves a run on after a stage succeeded, until nothing more changes: expands the
/// fanned-out stages whose upstream stages all succeeded, ends the groups whose instances
/// all succeeded, queues the waiting stages whose upstream stages all succeeded, and
/// settles the run when every stage did.
async fn promote(tx: &mut PgConnection, run: Uuid) -> Result<(), sqlx::Error> {
    // Each round either changes a stage's state or stops; a run has finitely many.
    loop {
        let expanded = expand(tx, run).await?;
        if expanded.failed {
            return settle_failed(tx, run, RunState::Failed).await;
        }
        let ended = sqlx::query(
            "update run_stages g set state = 'succeeded', progress = 1, finished_at = now(),
                 status_message = case when g.fanned = 0 then 'No items: nothing to run.'
                                       else 'All ' || g.fanned || ' instances succeeded.' end
             where g.run_id = $1 and g.fanned is not null and g.state = 'running'
               and not exists (select 1 from run_stages i
                               where i.run_id = g.run_id and i.fan_of = g.name and i.state <> 'succeeded')",
        )
        .bind(run)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // The groups still running show how far their instances are.
        sqlx::query(
            "update run_stages g set progress = (
                 select count(*) filter (where i.state = 'succeeded')::real / greatest(g.fanned, 1)
                 from run_stages i where i.run_id = g.run_id and i.fan_of = g.name),
                 status_message = (
                 select count(*) filter (where i.state = 'succeeded') || ' of ' || g.fanned || ' instances done.'
                 from run_stages i where i.run_id = g.run_id and i.fan_of = g.name)
             where g.run_id = $1 and g.fanned is not null and g.state = 'running'",
        )
        .bind(run)
        .execute(&mut *tx)
        .await?;
        let queued = sqlx::query(
            "update run_stages s set state = 'queued', queued_at = now(), ready_at = now(), status_message = null
             where s.run_id = $1 and s.state = 'waiting' and s.for_each is null
               and not exists (select 1 from run_stages u
                               where u.run_id = s.run_id and u.name = any(s.needs) and u.state <> 'succeeded')",
        )
        .bind(run)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if expanded.count == 0 && ended == 0 && queued == 0 {
            break;
        }
    }
    sqlx::query(
        "update runs set state = 'succeeded', finished_at = now()
         where id = $1 and state in ('queued', 'running')
           and not exists (select 1 from run_stages where run_id = $1 and state <> 'succeeded')",
    )
    .bind(run)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What [`expand`] did.
struct Expanded {
    /// Stages expanded (or failed).
    count: u64,
    /// Whether a stage failed because its `for_each` named no list it could run over.
    failed: bool,
}

/// Expands the run's fanned-out stages whose upstream stages all succeeded into their
/// instances (see the module documentation). A `for_each` that names no list, or a list
/// longer than [`MAX_FAN_OUT`](app::pipelines::template::MAX_FAN_OUT), fails its stage
/// with the reason, and no instance is made.
async fn expand(tx: &mut PgConnection, run: Uuid) -> Result<Expanded, sqlx::Error> {
    use app::pipelines::template::{json_at, references, Reference, MAX_FAN_OUT};
    let ready: Vec<(Uuid, String, String)> = sqlx::query_as(
        "select s.id, s.name, s.for_each from run_stages s
         where s.run_id = $1 and s.state = 'waiting' and s.for_each is not null and s.fanned is null
           and not exists (select 1 from run_stages u
                           where u.run_id = s.run_id and u.name = any(s.needs) and u.state <> 'succeeded')
         for update",
    )
    .bind(run)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Expanded {
        count: 0,
        failed: false,
    };
    for (id, name, each) in ready {
        out.count += 1;
        let items = match references(&each).ok().as_deref() {
            Some([Reference::Values(up, path)]) => {
                let values = stage_values(tx, run, up).await?;
                match json_at(&values, path) {
                    Some(Value::Array(items)) if items.len() <= MAX_FAN_OUT => Ok(items.clone()),
                    Some(Value::Array(items)) => Err(format!(
                        "for_each {each} has {} items; at most {MAX_FAN_OUT} instances may run",
                        items.len()
                    )),
                    Some(other) => Err(format!(
                        "for_each {each} is not a list; it is {}",
                        json_kind(other)
                    )),
                    None => Err(format!(
                        "for_each {each} names nothing: stage \"{up}\" ended without that field"
                    )),
                }
            }
            _ => Err(format!("for_each \"{each}\" is not a values reference")),
        };
        match items {
            Ok(items) => {
                let n = items.len();
                let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
                let names: Vec<String> = (0..n).map(|i| format!("{name}.{i}")).collect();
                let indices: Vec<i32> = (0..n as i32).collect();
                sqlx::query(
                    "insert into run_stages (id, run_id, name, executor, needs, state, priority, attempts_max,
                                             queued_at, fan_of, item_index, item, workflow_id)
                     select i.id, g.run_id, i.name, g.executor, g.needs, 'queued', g.priority, g.attempts_max,
                            now(), g.name, i.idx, i.item, g.workflow_id
                     from run_stages g,
                          unnest($2::uuid[], $3::text[], $4::int[], $5::jsonb[]) as i(id, name, idx, item)
                     where g.id = $1",
                )
                .bind(id)
                .bind(&ids)
                .bind(&names)
                .bind(&indices)
                .bind(&items)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "update run_stages set state = 'running', fanned = $2, progress = 0,
                         started_at = now(), status_message = '0 of ' || $2 || ' instances done.'
                     where id = $1",
                )
                .bind(id)
                .bind(n as i32)
                .execute(&mut *tx)
                .await?;
            }
            Err(reason) => {
                sqlx::query(
                    "update run_stages set state = 'failed', finished_at = now(), status_message = $2
                     where id = $1",
                )
                .bind(id)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                out.failed = true;
            }
        }
    }
    Ok(out)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::String(_) => "a text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The values stage `stage` of `run` ended with (`${stages.NAME.values}`): a fanned-out
/// stage's are the list of its instances' values, in item order; `null` when it has none.
pub async fn stage_values(
    conn: &mut PgConnection,
    run: Uuid,
    stage: &str,
) -> Result<Value, sqlx::Error> {
    let row: Option<(Option<Value>, Option<i32>)> = sqlx::query_as(
        "select stage_values, fanned from run_stages where run_id = $1 and name = $2",
    )
    .bind(run)
    .bind(stage)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some((_, Some(_))) => {
            let all: Vec<Option<Value>> = sqlx::query_scalar(
                "select stage_values from run_stages where run_id = $1 and fan_of = $2 order by item_index",
            )
            .bind(run)
            .bind(stage)
            .fetch_all(&mut *conn)
            .await?;
            Value::Array(all.into_iter().map(|v| v.unwrap_or(Value::Null)).collect())
        }
        Some((values, None)) => values.unwrap_or(Value::Null),
        None => Value::Null,
    })
}

/// Ends the fanned-out groups of `run` none of whose instances still runs: failed when an
/// instance failed, cancelled when one was, else skipped (the run ended without them).
pub(crate) async fn settle_groups(tx: &mut PgConnection, run: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update run_stages g set
             state = case when exists (select 1 from run_stages i where i.run_id = g.run_id and i.fan_of = g.name and i.state = 'failed') then 'failed'
                          when exists (select 1 from run_stages i where i.run_id = g.run_id and i.fan_of = g.name and i.state = 'cancelled') then 'cancelled'
                          else 'skipped' end,
             finished_at = now(),
             status_message = (select count(*) filter (where i.state = 'succeeded') || ' of ' || g.fanned || ' instances succeeded; '
                                      || count(*) filter (where i.state = 'failed') || ' failed.'
                               from run_stages i where i.run_id = g.run_id and i.fan_of = g.name)
         where g.run_id = $1 and g.fanned is not null and g.state = 'running'
           and not exists (select 1 from run_stages i where i.run_id = g.run_id and i.fan_of = g.name and i.state = 'running')",
    )
    .bind(run)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves a run on outside a stage's end (after a stage is retried): see `promote`.
pub async fn advance(pool: &PgPool, run: Uuid) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select 1 from runs where id = $1 for update")
        .bind(run)
        .execute(&mut *tx)
        .await?;
    promote(&mut tx, run).await?;
    tx.commit().await
}

/// A stage failed for good (or was cancelled): the stages that were still to come are
/// skipped and the run ends with `state` once nothing of it is running.
async fn settle_failed(
    tx: &mut PgConnection,
    run: Uuid,
    state: RunState,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update run_stages set state = 'skipped', status_message = 'Not run: an earlier stage did not succeed.'
         where run_id = $1 and state in ('waiting', 'queued')",
    )
    .bind(run)
    .execute(&mut *tx)
    .await?;
    settle_groups(tx, run).await?;
    sqlx::query(
        "update runs set state = case when state = 'cancelled' then 'cancelled' else $2 end,
             finished_at = coalesce(finished_at, now())
         where id = $1 and not exists (select 1 from run_stages where run_id = $1 and state = 'running')",
    )
    .bind(run)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Gives back the stages whose runner stopped renewing (a crash, a lost replica): the
/// attempt is marked lost, and the stage is queued again while attempts remain. Returns
/// how many were reclaimed. Executors whose work outlives Slate (Jobs, ComfyUI prompts)
/// are reconciled from their own state by their runner before this lease ever lapses.
pub async fn reconcile(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Work that outlives Slate (a Job, a ComfyUI prompt) is followed by the next attempt
    // rather than started again, so losing its runner does not use up an attempt.
    #[derive(sqlx::FromRow)]
    struct Lapsed {
        stage: Uuid,
        run: Uuid,
        attempt: i32,
        max: i32,
        cancel: bool,
        outlives: bool,
    }
    let lapsed: Vec<Lapsed> = sqlx::query_as(
        "select s.id as stage, s.run_id as run, s.attempt, s.attempts_max as max,
                s.cancel_requested as cancel,
                exists (select 1 from stage_attempts a where a.stage_id = s.id and a.state = 'running'
                        and (a.executor_ref like 'job %' or a.executor_ref like 'comfyui %'
                             or a.executor_ref like 'dagster %' or a.executor_ref like 'langgraph %'))
                    as outlives
         from run_stages s
         where s.state = 'running' and s.lease_until < now() for update of s skip locked",
    )
    .fetch_all(&mut *tx)
    .await?;
    for Lapsed {
        stage,
        run,
        attempt,
        max,
        cancel,
        outlives,
    } in &lapsed
    {
        sqlx::query(
            "update stage_attempts set state = 'lost', finished_at = now(),
                 error = 'Slate stopped while this attempt ran (its lease lapsed).'
             where stage_id = $1 and state = 'running'",
        )
        .bind(stage)
        .execute(&mut *tx)
        .await?;
        if *cancel {
            sqlx::query(
                "update run_stages set state = 'cancelled', finished_at = now(), lease_owner = null, lease_until = null
                 where id = $1",
            )
            .bind(stage)
            .execute(&mut *tx)
            .await?;
            settle_failed(&mut tx, *run, RunState::Cancelled).await?;
        } else if attempt < max || *outlives {
            sqlx::query(
                "update run_stages set state = 'queued', queued_at = now(), ready_at = now(),
                     lease_owner = null, lease_until = null,
                     attempts_max = attempts_max + case when $2 then 1 else 0 end,
                     status_message = case when $2
                         then 'Its runner stopped; the work it started is followed again.'
                         else 'Its runner stopped; queued again.' end
                 where id = $1",
            )
            .bind(stage)
            .bind(outlives)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "update run_stages set state = 'failed', finished_at = now(), lease_owner = null,
                     lease_until = null, status_message = 'Its runner stopped on the last attempt.'
                 where id = $1",
            )
            .bind(stage)
            .execute(&mut *tx)
            .await?;
            settle_failed(&mut tx, *run, RunState::Failed).await?;
        }
    }
    tx.commit().await?;
    // A run with a stage failed for good and nothing left to run or claim ends (its
    // settling was cut short, e.g. by a crash after its stage could not be claimed).
    let unsettled: Vec<Uuid> = sqlx::query_scalar(
        "select r.id from runs r
         where r.state in ('queued', 'running')
           and exists (select 1 from run_stages s where s.run_id = r.id and s.state = 'failed')
           and not exists (select 1 from run_stages s
                           where s.run_id = r.id and s.state in ('queued', 'running'))",
    )
    .fetch_all(pool)
    .await?;
    for run in unsettled {
        settle_run(pool, run, RunState::Failed).await?;
    }
    Ok(lapsed.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(
            first_line("\n  ffmpeg: no such file\nmore"),
            "ffmpeg: no such file"
        );
    }
}
