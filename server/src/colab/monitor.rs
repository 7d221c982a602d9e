//! The health monitor: one replica at a time (a PostgreSQL advisory lock held on its own
//! connection is the lease), it probes the current endpoint with the cheap `GET /prompt`
//! every interval, records each check, marks the endpoint down after three failures in a
//! row (or when the notebook said `down`), and fails over: to the endpoint it lost, when
//! that answers again (ComfyUI restarted behind the same tunnel, as Colab does after an
//! out-of-memory crash), else to the configured fallback, else to the most recent
//! endpoint that was healthy before and verifies again. The replacement is published like
//! any accepted endpoint (the lost one needs no publication: nothing replaced it); a new
//! `up` or a heartbeat from the notebook takes over again through the webhook.

use app::colab::EndpointState;
use std::time::Duration;

use serde_json::json;
use sqlx::Connection as _;
use uuid::Uuid;

use super::{Colab, LOCK_KEY};
use crate::comfyui::address::redact;

/// Failed checks in a row that mark an endpoint down.
pub const FAILURES_FOR_DOWN: i64 = 3;
/// The lease's own key (distinct from the lock that serialises changes).
const LEASE_KEY: i64 = 0x05c0_1ab1_ea5e;

impl Colab {
    /// Runs the monitor forever (drop the future to stop it).
    pub async fn monitor(self, every: Duration) {
        loop {
            if let Err(e) = self.hold_lease_and_monitor(every).await {
                tracing::debug!(error = %e, "colab monitor lost its database connection; retrying");
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn hold_lease_and_monitor(&self, every: Duration) -> Result<(), sqlx::Error> {
        let mut lease = self.pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
            .bind(LEASE_KEY)
            .fetch_one(&mut lease)
            .await?;
        if !got {
            return Ok(()); // another replica monitors
        }
        tracing::info!("this replica monitors the colab endpoint");
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "colab check failed to record");
            }
            self.show_on_diagram().await;
            tokio::time::sleep(every).await;
            // Still holding the lease? (A lost connection releases it.)
            lease.ping().await?;
        }
    }

    /// One round: check the current endpoint, or fail over when there is none.
    pub async fn tick(&self) -> Result<(), sqlx::Error> {
        let current: Option<(Uuid, String)> =
            sqlx::query_as("select id, url from colab_endpoints where state = 'healthy'")
                .fetch_optional(&self.pool)
                .await?;
        let Some((id, url)) = current else {
            return self.fail_over_if_needed().await;
        };
        let outcome = self.prober.queue(&url).await;
        match &outcome {
            Ok((queue, latency)) => {
                sqlx::query(
                    "insert into endpoint_checks (endpoint_id, kind, ok, latency_ms, queue_remaining)
                     values ($1, 'health', true, $2, $3)",
                )
                .bind(id)
                .bind(i32::try_from(latency.as_millis()).unwrap_or(i32::MAX))
                .bind(queue.and_then(|q| i32::try_from(q).ok()))
                .execute(&self.pool)
                .await?;
            }
            Err(e) => {
                sqlx::query(
                    "insert into endpoint_checks (endpoint_id, kind, ok, class, detail) values ($1, 'health', false, $2, $3)",
                )
                .bind(id)
                .bind(e.class())
                .bind(e.to_string())
                .execute(&self.pool)
                .await?;
                // Failures since the last success. 429 (too many requests: back off) and 524
                // (slow, not dead) are recorded but do not count towards "down".
                let failures: i64 = sqlx::query_scalar(
                    "select count(*) from endpoint_checks where endpoint_id = $1 and kind = 'health' and not ok
                     and class not in ('busy', 'slow')
                     and at > coalesce((select max(at) from endpoint_checks where endpoint_id = $1 and ok), '-infinity')",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
                tracing::warn!(endpoint = %redact(&url), error = %e, failures, "colab endpoint check failed");
                if failures >= FAILURES_FOR_DOWN {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query("select pg_advisory_xact_lock($1)")
                        .bind(LOCK_KEY)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "update colab_endpoints set state = 'down', ended_at = now(), end_reason = $2
                         where id = $1 and state = 'healthy'",
                    )
                    .bind(id)
                    .bind(format!("{FAILURES_FOR_DOWN} checks failed in a row: {e}"))
                    .execute(&mut *tx)
                    .await?;
                    crate::audit::record(
                        &mut *tx,
                        &crate::audit::Who::system(),
                        "colab.endpoint_down",
                        Some(redact(&url)),
                        json!({ "endpoint_id": id, "reason": e.to_string(), "class": e.class() }),
                    )
                    .await?;
                    tx.commit().await?;
                    return self.fail_over_if_needed().await;
                }
            }
        }
        Ok(())
    }

    /// A transaction holding the endpoint lock, when no endpoint is current or being
    /// verified (else None: a report that arrived meanwhile wins).
    async fn nothing_current(
        &self,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let taken: bool = sqlx::query_scalar(
            "select exists(select 1 from colab_endpoints where state in ('verifying', 'healthy'))",
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok((!taken).then_some(tx))
    }

    /// With no current endpoint after one went down: the fallback, else a previous
    /// endpoint that verifies again, becomes current and is published.
    async fn fail_over_if_needed(&self) -> Result<(), sqlx::Error> {
        // Only after a loss: the newest endpoint ended down (not replaced or rejected),
        // and nothing is current or being verified.
        let last: Option<(Uuid, EndpointState)> = sqlx::query_as(
            "select id, state from colab_endpoints order by received_at desc limit 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some((lost, state)) = last else {
            return Ok(());
        };
        if state != EndpointState::Down {
            return Ok(());
        }
        let fallback: Option<String> =
            sqlx::query_scalar("select fallback_url from colab_settings")
                .fetch_optional(&self.pool)
                .await?
                .flatten();
        let previous: Vec<String> = sqlx::query_scalar(
            "select url from (select url, max(verified_at) as at from colab_endpoints
               where verified_at is not null and id <> $1 group by url) v
             order by at desc limit 5",
        )
        .bind(lost)
        .fetch_all(&self.pool)
        .await?;
        let (lost_url, lost_source, lost_notebook, lost_publication): (
            String,
            String,
            Option<String>,
            Option<serde_json::Value>,
        ) = sqlx::query_as(
            "select url, source, notebook_id, publication from colab_endpoints where id = $1",
        )
        .bind(lost)
        .fetch_one(&self.pool)
        .await?;
        // The lost endpoint first: while nothing replaced it, it is still the one the
        // notebook runs and the cluster was given.
        let candidates = std::iter::once(lost_url.clone()).chain(
            fallback
                .into_iter()
                .chain(previous)
                .filter(|u| *u != lost_url),
        );
        for url in candidates {
            let again = url == lost_url;
            match self.prober.system_stats(&url).await {
                Ok((stats, _)) if again => {
                    let id = Uuid::now_v7();
                    let Some(mut tx) = self.nothing_current().await? else {
                        return Ok(());
                    };
                    sqlx::query(
                        "insert into colab_endpoints (id, url, source, notebook_id, actor_label, reported_at, state,
                             verification, verified_at, publication, published_at)
                         select $1, $2, $3, $4, 'slate (the endpoint answers again)', now(), 'healthy', $5, now(),
                             $6, published_at from colab_endpoints where id = $7",
                    )
                    .bind(id)
                    .bind(&url)
                    .bind(&lost_source)
                    .bind(&lost_notebook)
                    .bind(json!(stats))
                    .bind(&lost_publication)
                    .bind(lost)
                    .execute(&mut *tx)
                    .await?;
                    crate::audit::record(
                        &mut *tx,
                        &crate::audit::Who::system(),
                        "colab.endpoint_back",
                        Some(redact(&url)),
                        json!({ "endpoint_id": id, "was": lost }),
                    )
                    .await?;
                    tx.commit().await?;
                    tracing::info!(endpoint = %redact(&url), "the lost colab endpoint answers again; it is current again");
                    // A new row: ComfyUI restarted, maybe with other nodes or models.
                    self.spawn_inventory_refresh(id, url);
                    return Ok(());
                }
                Ok((stats, _)) => {
                    let id = Uuid::now_v7();
                    // A new `up` that arrived meanwhile wins.
                    let Some(mut tx) = self.nothing_current().await? else {
                        return Ok(());
                    };
                    sqlx::query(
                        "insert into colab_endpoints (id, url, source, actor_label, reported_at, state, verification, verified_at)
                         values ($1, $2, 'fallback', 'slate (failover)', now(), 'healthy', $3, now())",
                    )
                    .bind(id)
                    .bind(&url)
                    .bind(json!(stats))
                    .execute(&mut *tx)
                    .await?;
                    crate::audit::record(
                        &mut *tx,
                        &crate::audit::Who::system(),
                        "colab.failover",
                        Some(redact(&url)),
                        json!({ "endpoint_id": id, "replaces": lost }),
                    )
                    .await?;
                    tx.commit().await?;
                    tracing::info!(endpoint = %redact(&url), "failed over to another colab endpoint");
                    self.spawn_inventory_refresh(id, url.clone());
                    return self.publish(id, &url).await;
                }
                Err(e) => {
                    tracing::debug!(endpoint = %redact(&url), error = %e, "failover candidate does not answer");
                }
            }
        }
        Ok(())
    }

    /// Sets (or clears) the fallback endpoint.
    pub async fn set_fallback(
        &self,
        who: &crate::audit::Who,
        url: Option<&str>,
    ) -> Result<Option<String>, crate::comfyui::probe::ProbeError> {
        let url = match url {
            Some(u) => Some(crate::comfyui::address::normalise(u, &self.prober.rules)?.to_string()),
            None => None,
        };
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "insert into colab_settings (id, fallback_url, updated_by) values (true, $1, $2)
                 on conflict (id) do update set fallback_url = $1, updated_by = $2, updated_at = now()",
            )
            .bind(&url)
            .bind(who.user_id)
            .execute(&mut *tx)
            .await?;
            crate::audit::record(
                &mut *tx,
                who,
                "colab.fallback_set",
                url.as_deref().map(redact),
                json!({ "cleared": url.is_none() }),
            )
            .await?;
            tx.commit().await
        }
        .await;
        result.map_err(|e| crate::comfyui::probe::ProbeError::Connect(format!("database: {e}")))?;
        Ok(url)
    }
}
