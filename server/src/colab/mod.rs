//! The ComfyUI endpoint on Google Colab, behind a Cloudflare quick tunnel whose URL
//! changes on every start: the signed webhook the notebook reports to (`webhook`,
//! `signature`), verification before an endpoint is accepted, its history, publication to
//! the cluster (`publish`), the health monitor with failover (`monitor`) and the admin
//! page's backend (`admin`). An endpoint that becomes current has its inventory fetched
//! (`crate::comfyui::inventory`). Reaching ComfyUI itself is `crate::comfyui`.

pub mod admin;
pub mod monitor;
pub mod publish;
pub mod signature;
pub mod webhook;

use app::colab::EndpointState;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore as _;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::comfyui::address::{redact, HostRules};
use crate::comfyui::probe::{self, Prober};
use webhook::RateLimit;

/// Serialises every change of the current endpoint across replicas.
pub const LOCK_KEY: i64 = 0x5c0_1ab;

/// How long a rotated-out webhook secret keeps working.
pub const ROTATION_GRACE: chrono::Duration = chrono::Duration::hours(24);

#[derive(Clone)]
pub struct Colab {
    pub pool: PgPool,
    pub prober: Prober,
    pub rate_limit: Arc<RateLimit>,
    /// Verification keeps retrying a fresh tunnel this long…
    pub verify_within: Duration,
    /// …this often.
    pub verify_every: Duration,
    /// Where accepted endpoints are published; None without a cluster.
    pub publisher: Option<publish::Publisher>,
    /// The architecture diagram, whose external box shows the endpoint's health.
    pub diagram: Option<crate::cluster::Cluster>,
    /// Slate's public URL, for the webhook address in the notebook cell.
    pub public_url: String,
    /// Where verifications run: the server's supervisor (stopped and awaited at
    /// shutdown), or a supervisor of their own for the command line and tests.
    pub tasks: crate::tasks::Tasks,
}

impl Colab {
    pub fn new(pool: PgPool, rules: HostRules, verify_within: Duration) -> Colab {
        Colab {
            pool,
            prober: Prober::new(rules),
            // The notebook sends one report a minute; a burst of 30 a minute is plenty.
            rate_limit: Arc::new(RateLimit::new(30, 300, Duration::from_secs(60))),
            verify_within,
            verify_every: Duration::from_secs(3)
                .min(verify_within / 4)
                .max(Duration::from_millis(50)),
            publisher: None,
            diagram: None,
            public_url: "http://127.0.0.1:3000".into(),
            tasks: crate::tasks::Tasks::new(),
        }
    }

    pub fn with_tasks(mut self, tasks: &crate::tasks::Tasks) -> Colab {
        self.tasks = tasks.clone();
        self
    }

    pub fn with_public_url(mut self, url: &str) -> Colab {
        self.public_url = url.trim_end_matches('/').to_owned();
        self
    }

    pub fn with_diagram(mut self, diagram: crate::cluster::Cluster) -> Colab {
        self.diagram = Some(diagram);
        self
    }

    /// Shows what Slate knows about the endpoint on the architecture diagram.
    pub async fn show_on_diagram(&self) {
        use app::architecture::Health;
        let Some(diagram) = &self.diagram else { return };
        let row: Result<Option<(EndpointState, Option<serde_json::Value>)>, _> = sqlx::query_as(
            "select state, verification from colab_endpoints where state in ('verifying', 'healthy')",
        )
        .fetch_optional(&self.pool)
        .await;
        let last_check: Option<(bool, Option<String>, Option<i32>)> = sqlx::query_as(
            "select c.ok, c.detail, c.queue_remaining from endpoint_checks c
             join colab_endpoints e on e.id = c.endpoint_id and e.state = 'healthy'
             order by c.at desc limit 1",
        )
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten();
        let mut external = crate::cluster::topology::External::default();
        match row {
            Ok(Some((EndpointState::Healthy, verification))) => {
                let gpu = verification
                    .as_ref()
                    .and_then(|v| v["gpu"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "GPU".into());
                external.facts = vec![gpu];
                match last_check {
                    Some((false, detail, _)) => {
                        external.health = Health::Degraded;
                        external.reason =
                            Some(format!("Last check failed: {}", detail.unwrap_or_default()));
                    }
                    Some((true, _, queue)) => {
                        external.health = Health::Healthy;
                        external.reason = None;
                        if let Some(q) = queue {
                            external.facts.push(format!("queue {q}"));
                        }
                    }
                    None => {
                        external.health = Health::Healthy;
                        external.reason = None;
                    }
                }
            }
            Ok(Some(_)) => {
                external.health = Health::Progressing;
                external.reason = Some("A new endpoint is being verified".into());
            }
            Ok(None) => {
                let ended: Option<(EndpointState, Option<String>)> = sqlx::query_as(
                    "select state, end_reason from colab_endpoints order by received_at desc limit 1",
                )
                .fetch_optional(&self.pool)
                .await
                .ok()
                .flatten();
                if let Some((_, reason)) = ended {
                    external.health = Health::Degraded;
                    external.reason = Some(format!(
                        "No working endpoint: {}",
                        reason.unwrap_or_else(|| "the last one ended".into())
                    ));
                }
            }
            Err(_) => return,
        }
        diagram.set_external(external);
    }

    pub fn with_publisher(mut self, publisher: Option<publish::Publisher>) -> Colab {
        self.publisher = publisher;
        self
    }

    /// Publishes `url` as endpoint `id` (or records why it was not) and audits it.
    pub async fn publish(&self, id: Uuid, url: &str) -> Result<(), sqlx::Error> {
        let (detail, ok) = match &self.publisher {
            None => (
                json!({"skipped": "Slate is not connected to Kubernetes"}),
                false,
            ),
            Some(p) => match p.publish(url).await {
                Ok(publication) => {
                    tracing::info!(endpoint = %redact(url), object = %publication.object, restarted = ?publication.restarted, refused = ?publication.refused, "colab endpoint published");
                    (json!(publication), true)
                }
                Err(e) => {
                    tracing::warn!(endpoint = %redact(url), error = %e, "cannot publish the colab endpoint");
                    (json!({"error": e.to_string()}), false)
                }
            },
        };
        let mut tx = self.pool.begin().await?;
        // Each publication is a Slate-initiated deploy event: the write, every restart,
        // and every consumer left alone because it is paused.
        if let (Some(p), true) = (&self.publisher, ok) {
            let publication: publish::Publication =
                serde_json::from_value(detail.clone()).unwrap_or_default();
            let (kind, name) = publication.object.split_once('/').unwrap_or(("Secret", ""));
            let mut events: Vec<(&str, String, String, &str, Option<String>)> = vec![(
                "publish-endpoint",
                kind.to_owned(),
                name.to_owned(),
                "done",
                None,
            )];
            for d in &publication.restarted {
                events.push(("restart", "Deployment".into(), d.clone(), "done", None));
            }
            for (d, why) in &publication.refused {
                events.push((
                    "restart",
                    "Deployment".into(),
                    d.clone(),
                    "refused",
                    Some(why.clone()),
                ));
            }
            for (action, kind, name, outcome, why) in events {
                sqlx::query(
                    "insert into deploy_events (id, source, actor_label, action, namespace, kind, name, outcome, reason, detail)
                     values ($1, 'slate', 'slate (colab endpoint)', $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(Uuid::now_v7())
                .bind(action)
                .bind(&p.namespace)
                .bind(kind)
                .bind(name)
                .bind(outcome)
                .bind(why.unwrap_or_else(|| format!("the Colab endpoint changed to {}", redact(url))))
                .bind(json!({ "endpoint_id": id, "restarted_at": publication.restarted_at }))
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "update colab_endpoints set publication = $2, published_at = case when $3 then now() else published_at end
             where id = $1",
        )
        .bind(id)
        .bind(&detail)
        .bind(ok)
        .execute(&mut *tx)
        .await?;
        crate::audit::record(
            &mut *tx,
            &crate::audit::Who::system(),
            if ok {
                "colab.endpoint_published"
            } else {
                "colab.endpoint_not_published"
            },
            Some(redact(url)),
            json!({ "endpoint_id": id, "publication": detail }),
        )
        .await?;
        tx.commit().await
    }

    /// The secrets that may sign a report now (newest first).
    pub async fn active_secrets(&self) -> Result<Vec<Vec<u8>>, sqlx::Error> {
        let rows: Vec<String> = sqlx::query_scalar(
            "select secret from colab_webhook_secrets where retires_at is null or retires_at > now()
             order by id desc",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(String::into_bytes).collect())
    }

    /// Creates a new webhook secret; the ones before it keep working for
    /// [`ROTATION_GRACE`]. Returns the new secret (shown once).
    pub async fn rotate_secret(&self, who: &crate::audit::Who) -> Result<String, sqlx::Error> {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let secret = format!("whsec_{}", hex::encode(bytes));
        let mut tx = self.pool.begin().await?;
        let retired = sqlx::query(
            "update colab_webhook_secrets set retires_at = now() + $1
             where retires_at is null or retires_at > now() + $1",
        )
        .bind(ROTATION_GRACE)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let id: i64 = sqlx::query_scalar(
            "insert into colab_webhook_secrets (secret, created_by) values ($1, $2) returning id",
        )
        .bind(&secret)
        .bind(who.user_id)
        .fetch_one(&mut *tx)
        .await?;
        crate::audit::record(
            &mut *tx,
            who,
            "colab.webhook_secret_rotated",
            Some(format!("secret {id}")),
            json!({ "previous_secrets_retiring": retired, "grace_hours": ROTATION_GRACE.num_hours() }),
        )
        .await?;
        tx.commit().await?;
        Ok(secret)
    }

    /// Verifies a reported endpoint in the background and records the outcome.
    pub fn spawn_verification(&self, id: Uuid, url: String) {
        let colab = self.clone();
        self.tasks.once("colab verification", async move {
            let outcome = colab
                .prober
                .verify(&url, colab.verify_within, colab.verify_every)
                .await;
            let verified = outcome.is_ok();
            let mut current = false;
            match colab.record_verification(id, &url, outcome).await {
                // Published only if it is still the endpoint waiting for this result.
                Ok(true) if verified => {
                    current = true;
                    if let Err(e) = colab.publish(id, &url).await {
                        tracing::error!(error = %e, "cannot record a publication");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot record a verification"),
            }
            colab.show_on_diagram().await;
            // Last: /object_info is ComfyUI's heaviest answer, and health and
            // publication should not wait for it. A failure is kept with the row.
            if current {
                let _ =
                    crate::comfyui::inventory::refresh(&colab.pool, &colab.prober, id, &url).await;
            }
        });
    }

    /// Fetches endpoint `id`'s nodes and models in the background (an endpoint that
    /// became current without a verification task: back after a loss, a failover, or
    /// verified again by hand).
    pub fn spawn_inventory_refresh(&self, id: Uuid, url: String) {
        let colab = self.clone();
        self.tasks.once("endpoint inventory", async move {
            let _ = crate::comfyui::inventory::refresh(&colab.pool, &colab.prober, id, &url).await;
        });
    }

    async fn record_verification(
        &self,
        id: Uuid,
        url: &str,
        outcome: Result<(probe::SystemStats, Duration), probe::ProbeError>,
    ) -> Result<bool, sqlx::Error> {
        // Whether the endpoint was still waiting for this verification (not replaced).
        let mut current = false;
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        match &outcome {
            Ok((stats, latency)) => {
                tracing::info!(endpoint = %redact(url), gpu = ?stats.gpu, "colab endpoint verified");
                current = sqlx::query(
                    "update colab_endpoints set state = 'healthy', verified_at = now(), verification = $2
                     where id = $1 and state = 'verifying'",
                )
                .bind(id)
                .bind(json!(stats))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                sqlx::query(
                    "insert into endpoint_checks (endpoint_id, kind, ok, latency_ms) values ($1, 'verify', true, $2)",
                )
                .bind(id)
                .bind(i32::try_from(latency.as_millis()).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?;
            }
            Err(e) => {
                tracing::warn!(endpoint = %redact(url), error = %e, "colab endpoint failed verification");
                sqlx::query(
                    "update colab_endpoints set state = 'rejected', ended_at = now(), end_reason = $2,
                     verification = $3 where id = $1 and state = 'verifying'",
                )
                .bind(id)
                .bind(format!("verification failed: {e}"))
                .bind(json!({ "error": e.to_string(), "class": e.class() }))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "insert into endpoint_checks (endpoint_id, kind, ok, class, detail) values ($1, 'verify', false, $2, $3)",
                )
                .bind(id)
                .bind(e.class())
                .bind(e.to_string())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(current)
    }
}
