//! The delivery worker: it turns the outbox's events into one delivery per matching
//! enabled subscription, and tries due deliveries: claimed with `for update skip locked`
//! under a lease (so no two workers, on any replica, send one try at once), sent signed to
//! a checked address, recorded with the receiver's answer, and retried with backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use app::webhooks::{webhook_id, TRIES};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use url::Url;
use uuid::Uuid;

use super::secret::Secret;
use super::target;
use super::Webhooks;

/// How often the worker looks for events and due tries when nothing wakes it.
const POLL: Duration = Duration::from_secs(1);
/// A try's whole request, and its connection.
const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claim holds: longer than the DNS lookup and the request together, so it
/// only expires when its worker died.
const LEASE_SECONDS: f64 = 60.0;
/// Tries in flight at once in one worker.
const IN_FLIGHT: usize = 16;
/// Events turned into deliveries per transaction.
const EVENTS_PER_BATCH: i64 = 200;
/// How much of a response body the log keeps.
pub const EXCERPT_BYTES: usize = 2048;
/// The waits after the first, second, ... failed try (the last repeats).
const BACKOFF: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
];
/// How long dispatched events and finished deliveries are kept.
const KEEP_EVENTS: &str = "7 days";
const KEEP_DELIVERIES: &str = "30 days";

/// Tests: when non-zero, every wait between tries is this many milliseconds.
static TEST_BACKOFF_MS: AtomicU64 = AtomicU64::new(0);

/// Makes every wait between tries `delay`, in this process (tests only: a real Slate
/// waits as `BACKOFF` says).
pub fn set_backoff_for_tests(delay: Duration) {
    TEST_BACKOFF_MS.store(delay.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// The wait after try number `tries` (1-based) failed.
pub fn backoff(tries: i32) -> Duration {
    let test = TEST_BACKOFF_MS.load(Ordering::Relaxed);
    if test > 0 {
        return Duration::from_millis(test);
    }
    let index = usize::try_from(tries.max(1) - 1).unwrap_or(0);
    BACKOFF[index.min(BACKOFF.len() - 1)]
}

/// A claimed try.
#[derive(sqlx::FromRow)]
struct Due {
    id: Uuid,
    subscription_id: Uuid,
    body: String,
    /// This try's number.
    tries: i32,
    tries_left: i32,
    resend: bool,
    url: String,
    secret: String,
}

/// What one try came to.
struct Answer {
    status: Option<u16>,
    excerpt: Option<String>,
    error: Option<String>,
}

impl Answer {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A try made, as it is recorded.
struct Tried {
    state: &'static str,
    next: Option<DateTime<Utc>>,
    answer: Answer,
    started_at: DateTime<Utc>,
    duration_ms: i32,
}

/// The body every try of a delivery sends: the Standard Webhooks envelope, with links to
/// Slate's pages added to the event's data.
pub fn body(kind: &str, at: DateTime<Utc>, mut data: Value, public: &Url) -> String {
    if let Some(obj) = data.as_object_mut() {
        let link = |path: String| public.join(&path).map(|u| u.to_string()).ok();
        if let Some(run) = obj.get("run_id").and_then(Value::as_str).map(str::to_owned) {
            if let Some(url) = link(format!("runs/{run}")) {
                obj.insert("run_url".into(), json!(url));
            }
        }
        if let Some(asset) = obj
            .get("asset_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            if let Some(url) = link(format!("assets/{asset}")) {
                obj.insert("asset_url".into(), json!(url));
            }
        }
    }
    json!({
        "type": kind,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

impl Webhooks {
    /// The worker: runs until the supervisor drops it.
    #[tracing::instrument(name = "webhook_worker", skip_all)]
    pub(super) async fn work(self) {
        // Each try is its own task: a try must not wait for this loop to poll it (it may
        // hold a database connection the loop itself is waiting for). Dropping the set
        // at shutdown aborts them; their leases expire and the tries are made again.
        let mut in_flight = tokio::task::JoinSet::new();
        let mut last_prune: Option<Instant> = None;
        loop {
            if let Err(e) = self.dispatch().await {
                tracing::warn!(error = %e, "cannot turn webhook events into deliveries");
            }
            let room = IN_FLIGHT.saturating_sub(in_flight.len());
            if room > 0 {
                match self.claim(room).await {
                    Ok(due) => {
                        for (claim, d) in due {
                            let me = self.clone();
                            in_flight.spawn(async move { me.attempt(claim, d).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries"),
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() > Duration::from_secs(600)) {
                last_prune = Some(Instant::now());
                if let Err(e) = self.prune().await {
                    tracing::warn!(error = %e, "cannot prune old webhook events");
                }
            }
            tokio::select! {
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass, to completion: dispatches waiting events, then makes every due try it can
    /// claim. Returns how many tries it made. (What the worker does continuously; tests
    /// call it to race workers.)
    pub async fn deliver_once(&self) -> Result<usize, sqlx::Error> {
        self.dispatch().await?;
        let due = self.claim(IN_FLIGHT).await?;
        let n = due.len();
        futures::future::join_all(due.into_iter().map(|(c, d)| self.attempt(c, d))).await;
        Ok(n)
    }

    /// Turns a batch of undispatched events into deliveries, in one transaction. Events
    /// are locked with `skip locked`, so replicas dispatch different events.
    pub async fn dispatch(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let events: Vec<(i64, String, Value, DateTime<Utc>)> = sqlx::query_as(
            "select id, type, data, occurred_at from webhook_events
             where dispatched_at is null order by id limit $1 for update skip locked",
        )
        .bind(EVENTS_PER_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let subscriptions: Vec<(Uuid, Option<Vec<String>>, DateTime<Utc>)> = sqlx::query_as(
            "select id, events, created_at from webhook_subscriptions where enabled",
        )
        .fetch_all(&mut *tx)
        .await?;
        let (mut ids, mut subs, mut event_ids, mut kinds, mut bodies) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (event, kind, data, at) in &events {
            let mut body_text = None;
            for (sub, wanted, created_at) in &subscriptions {
                // A new subscription hears what happens from its creation on, no backlog.
                let wants = wanted.as_ref().is_none_or(|w| w.iter().any(|t| t == kind));
                if !wants || created_at > at {
                    continue;
                }
                let text = body_text
                    .get_or_insert_with(|| body(kind, *at, data.clone(), &self.public))
                    .clone();
                ids.push(Uuid::now_v7());
                subs.push(*sub);
                event_ids.push(*event);
                kinds.push(kind.clone());
                bodies.push(text);
            }
        }
        if !ids.is_empty() {
            sqlx::query(
                "insert into webhook_deliveries (id, subscription_id, event_id, type, body, state, tries_left)
                 select d.*, 'pending', $6
                 from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[]) as d",
            )
            .bind(&ids)
            .bind(&subs)
            .bind(&event_ids)
            .bind(&kinds)
            .bind(&bodies)
            .bind(TRIES)
            .execute(&mut *tx)
            .await?;
        }
        let dispatched: Vec<i64> = events.iter().map(|e| e.0).collect();
        sqlx::query("update webhook_events set dispatched_at = now() where id = any($1)")
            .bind(&dispatched)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if !ids.is_empty() {
            tracing::debug!(
                events = events.len(),
                deliveries = ids.len(),
                "webhook events dispatched"
            );
        }
        Ok(ids.len())
    }

    /// Claims up to `limit` due tries of enabled subscriptions: each claimed try has its
    /// number counted and a lease that no other worker takes over before it expires.
    async fn claim(&self, limit: usize) -> Result<Vec<(Uuid, Due)>, sqlx::Error> {
        let claim = Uuid::now_v7();
        // The locking query is a materialized CTE so that it runs exactly once: as a
        // subquery of the update, the planner may run it again and claim more than asked.
        let due: Vec<Due> = sqlx::query_as(
            "with due as materialized (
                 select w.id, w.resend_requested as resend, s.url, s.secret
                 from webhook_deliveries w
                 join webhook_subscriptions s on s.id = w.subscription_id and s.enabled
                 where w.state = 'pending' and w.next_try_at <= now() and w.tries_left > 0
                   and (w.lease_until is null or w.lease_until < now())
                 order by w.next_try_at
                 limit $3
                 for update of w skip locked)
             update webhook_deliveries d
             set claim = $1, lease_until = now() + make_interval(secs => $2),
                 tries = d.tries + 1, tries_left = d.tries_left - 1, resend_requested = false
             from due
             where d.id = due.id
             returning d.id, d.subscription_id, d.body, d.tries, d.tries_left, due.resend,
                       due.url, due.secret",
        )
        .bind(claim)
        .bind(LEASE_SECONDS)
        .bind(i64::try_from(limit).unwrap_or(1))
        .fetch_all(&self.pool)
        .await?;
        Ok(due.into_iter().map(|d| (claim, d)).collect())
    }

    /// Makes one try and records it.
    #[tracing::instrument(skip_all, fields(delivery = %due.id, subscription = %due.subscription_id, try_number = due.tries))]
    async fn attempt(&self, claim: Uuid, due: Due) {
        let started_at = Utc::now();
        let clock = Instant::now();
        let answer = self.send(&due).await;
        let duration_ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
        let (state, next) = if answer.ok() {
            ("succeeded", None)
        } else if due.tries_left > 0 {
            let wait = backoff(due.tries);
            ("pending", Some(Utc::now() + wait))
        } else {
            ("failed", None)
        };
        match &answer {
            a if a.ok() => tracing::debug!(status = a.status, "webhook delivered"),
            a => tracing::info!(
                status = a.status,
                error = a.error.as_deref().unwrap_or(""),
                next = state,
                "webhook try failed"
            ),
        }
        let tried = Tried {
            state,
            next,
            answer,
            started_at,
            duration_ms,
        };
        // The try was made: its record must land, or the lease expires and the receiver
        // gets it again. A database that is briefly unavailable is waited for.
        let mut recorded = self.record(claim, &due, &tried).await;
        for pause in [1, 2, 4] {
            match &recorded {
                Err(e) if crate::db::is_unavailable(e) => {
                    tokio::time::sleep(Duration::from_secs(pause)).await;
                    recorded = self.record(claim, &due, &tried).await;
                }
                _ => break,
            }
        }
        match recorded {
            Ok(r) if r.rows_affected() == 0 => {
                tracing::warn!("a webhook try ended after its claim expired; not recorded")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot record a webhook try"),
        }
    }

    /// Writes one try and the delivery's new state, if this worker's claim still holds.
    async fn record(
        &self,
        claim: Uuid,
        due: &Due,
        t: &Tried,
    ) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
        sqlx::query(
            "with d as (
                 update webhook_deliveries
                 set state = $3, next_try_at = coalesce($4, next_try_at), claim = null,
                     lease_until = null, last_status = $5, last_error = $7,
                     finished_at = case when $3 = 'pending' then null else now() end
                 where id = $1 and claim = $2
                 returning id)
             insert into webhook_tries
                 (delivery_id, number, started_at, duration_ms, status_code, response_excerpt, error, resend)
             select id, $8, $9, $10, $5, $6, $7, $11 from d",
        )
        .bind(due.id)
        .bind(claim)
        .bind(t.state)
        .bind(t.next)
        .bind(t.answer.status.map(i32::from))
        .bind(&t.answer.excerpt)
        .bind(&t.answer.error)
        .bind(due.tries)
        .bind(t.started_at)
        .bind(t.duration_ms)
        .bind(due.resend)
        .execute(&self.pool)
        .await
    }

    /// Sends one signed try to a freshly checked address of the subscription's host.
    async fn send(&self, due: &Due) -> Answer {
        let failed = |error: String| Answer {
            status: None,
            excerpt: None,
            error: Some(error),
        };
        let target = match target::parse(&due.url, &self.allow) {
            Ok(t) => t,
            Err(e) => return failed(format!("refused: {e}")),
        };
        let addrs = match target.addresses().await {
            Ok(a) => a,
            Err(e) => return failed(format!("refused: {e}")),
        };
        let secret = match Secret::parse(&due.secret) {
            Ok(s) => s,
            Err(e) => return failed(format!("the stored secret is unusable: {e}")),
        };
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TIMEOUT)
            .no_proxy()
            .user_agent(concat!("Slate-Webhooks/", env!("CARGO_PKG_VERSION")))
            .resolve_to_addrs(&target.host, &addrs)
            .build()
        {
            Ok(c) => c,
            Err(e) => return failed(format!("cannot make a client: {e}")),
        };
        let id = webhook_id(due.id);
        let timestamp = Utc::now().timestamp();
        let sent = client
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", secret.sign(&id, timestamp, &due.body))
            .body(due.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return failed(format!("no answer within {} s", TIMEOUT.as_secs()))
            }
            Err(e) if e.is_connect() => return failed(format!("cannot connect: {}", root(&e))),
            Err(e) => return failed(format!("the request failed: {}", root(&e))),
        };
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        let mut error = None;
        while bytes.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    error = Some(format!("the answer's body broke off: {}", root(&e)));
                    break;
                }
            }
        }
        bytes.truncate(EXCERPT_BYTES);
        let excerpt = String::from_utf8_lossy(&bytes).into_owned();
        if (300..400).contains(&status) && error.is_none() {
            error = Some("redirects are not followed".into());
        }
        Answer {
            status: Some(status),
            excerpt: Some(excerpt).filter(|e| !e.is_empty()),
            error,
        }
    }

    /// Forgets dispatched events and finished deliveries past their keeping time.
    async fn prune(&self) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "delete from webhook_events where dispatched_at < now() - interval '{KEEP_EVENTS}'"
        ))
        .execute(&self.pool)
        .await?;
        sqlx::query(&format!(
            "delete from webhook_deliveries where state <> 'pending'
             and finished_at < now() - interval '{KEEP_DELIVERIES}'"
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The innermost cause of a client error (reqwest's outer message names only the URL,
/// which may carry a credential in its path).
fn root(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_then_stays() {
        assert_eq!(BACKOFF[0], Duration::from_secs(5));
        let waits: Vec<Duration> = (1..=TRIES)
            .map(|t| BACKOFF[(t as usize - 1).min(6)])
            .collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(waits.len(), 8);
    }

    #[test]
    fn the_body_is_the_envelope_with_links() {
        let public = Url::parse("https://slate.studio.example/").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let run = Uuid::nil().to_string();
        let text = body(
            "run.succeeded",
            at,
            json!({"run_id": run, "state": "succeeded"}),
            &public,
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "run.succeeded");
        assert_eq!(v["timestamp"], "2026-12-01T10:00:00.000Z");
        assert_eq!(v["data"]["state"], "succeeded");
        assert_eq!(
            v["data"]["run_url"],
            format!("https://slate.studio.example/runs/{run}")
        );
    }
}
