//! What the admin page needs: the overview (with what the current endpoint's machine
//! has), revealing a URL, setting an endpoint by hand or the fallback, re-running
//! verification, refreshing the inventory, and rotating the webhook secret with the
//! notebook cell that goes with it. Every change is audited.

use app::backend::{Actor, ColabBackend};
use app::colab::{CheckView, ColabOverview, EndpointView, RotatedSecret};
use app::error::AppError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::Colab;
use crate::audit::Who;
use crate::comfyui::address::{normalise, redact};
use crate::db::OrAppError as _;

/// An endpoint as the admin page shows it.
#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: Uuid,
    url: String,
    source: String,
    actor_label: String,
    state: app::colab::EndpointState,
    received_at: DateTime<Utc>,
    verified_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    end_reason: Option<String>,
    last_heartbeat_at: Option<DateTime<Utc>>,
    verification: Option<Value>,
    publication: Option<Value>,
}

/// The healthy endpoint, for a verification on demand.
#[derive(sqlx::FromRow)]
struct HealthyRow {
    id: Uuid,
    url: String,
}

const COLUMNS: &str =
    "id, url, source, actor_label, state, received_at, verified_at, ended_at, end_reason,
     last_heartbeat_at, verification, publication";

fn view(r: EndpointRow) -> EndpointView {
    let EndpointRow {
        id,
        url,
        source,
        actor_label: actor,
        state,
        received_at,
        verified_at,
        ended_at,
        end_reason,
        last_heartbeat_at: heartbeat,
        verification,
        publication,
    } = r;
    let v = verification.unwrap_or(Value::Null);
    let text = |k: &str| v[k].as_str().map(str::to_owned);
    let publication = publication.map(|p| {
        if let Some(s) = p["skipped"].as_str() {
            format!("not published: {s}")
        } else if let Some(e) = p["error"].as_str() {
            format!("publication failed: {e}")
        } else {
            let restarted: Vec<&str> = p["restarted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut s = format!(
                "written to {}; restarted {}",
                p["object"].as_str().unwrap_or("?"),
                if restarted.is_empty() {
                    "nothing".to_owned()
                } else {
                    restarted.join(", ")
                }
            );
            let refused = p["refused"].as_array().map_or(0, Vec::len);
            if refused > 0 {
                s.push_str(&format!("; {refused} paused consumer(s) left alone"));
            }
            s
        }
    });
    EndpointView {
        id,
        redacted: redact(&url),
        source,
        actor,
        state,
        received_at,
        verified_at,
        ended_at,
        end_reason,
        last_heartbeat_at: heartbeat,
        gpu: text("gpu"),
        vram_total: v["vram_total"].as_i64(),
        comfyui_version: text("comfyui_version"),
        python_version: text("python_version"),
        publication,
    }
}

fn who(actor: &Actor) -> Who {
    Who::principal(&actor.principal, actor.client_addr)
}

/// The notebook cell: starts cloudflared with its metrics port, reads the hostname from
/// `/quicktunnel`, posts a signed `up`, a heartbeat every minute, and `down` at exit.
pub fn notebook_cell(webhook_url: &str, secret: &str) -> String {
    format!(
        r#"# Slate: report this notebook's ComfyUI tunnel to Slate. Run it after ComfyUI has started
# on port 8188. Needs cloudflared on PATH (e.g. the .deb from Cloudflare's releases).
import atexit, hashlib, hmac, json, os, subprocess, threading, time, urllib.error, urllib.request, uuid

SLATE_WEBHOOK = os.environ.get("SLATE_WEBHOOK", "{webhook_url}")
SLATE_SECRET = os.environ.get("SLATE_SECRET", "{secret}").encode()
COMFY_PORT = int(os.environ.get("COMFY_PORT", "8188"))
METRICS = os.environ.get("CLOUDFLARED_METRICS", "127.0.0.1:20241")
NOTEBOOK_ID = "colab-" + uuid.uuid4().hex[:12]

tunnel = subprocess.Popen(
    ["cloudflared", "tunnel", "--no-autoupdate", "--url", f"http://127.0.0.1:{{COMFY_PORT}}", "--metrics", METRICS],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
atexit.register(tunnel.terminate)  # runs last: after the `down` report below

def tunnel_hostname(wait_s=120):
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{{METRICS}}/quicktunnel", timeout=5) as r:
                host = json.load(r).get("hostname")
                if host:
                    return host
        except (OSError, ValueError):
            pass
        time.sleep(2)
    raise RuntimeError("cloudflared reported no hostname")

def report(event, url):
    body = json.dumps({{"event": event, "event_id": uuid.uuid4().hex, "notebook_id": NOTEBOOK_ID, "url": url}}).encode()
    t = str(int(time.time()))
    sig = hmac.new(SLATE_SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(SLATE_WEBHOOK, data=body, method="POST", headers={{
        "Content-Type": "application/json", "X-Slate-Signature": f"t={{t}},v1={{sig}}"}})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status
    except urllib.error.HTTPError as e:
        print(f"Slate answered {{e.code}}: {{e.read()[:200]!r}}")
        return e.code
    except OSError as e:
        print(f"Slate did not answer: {{e}}")
        return None

URL = "https://" + tunnel_hostname()
print("tunnel", URL.split(".")[0] + "…", "reported to Slate:", report("up", URL))

def heartbeat():
    while tunnel.poll() is None:
        time.sleep(int(os.environ.get("SLATE_HEARTBEAT_SECONDS", "60")))
        report("heartbeat", URL)

threading.Thread(target=heartbeat, daemon=True).start()
atexit.register(lambda: report("down", URL))
"#
    )
}

#[async_trait]
impl ColabBackend for Colab {
    async fn overview(&self, _actor: &Actor) -> Result<ColabOverview, AppError> {
        let current: Option<EndpointRow> = sqlx::query_as(&format!(
            "select {COLUMNS} from colab_endpoints where state in ('verifying', 'healthy')"
        ))
        .fetch_optional(&self.pool)
        .await
        .or_app()?;
        let checks: Vec<CheckView> = match &current {
            Some(c) => sqlx::query_as(
                "select at, ok, latency_ms, class, detail, queue_remaining from
                   (select * from endpoint_checks where endpoint_id = $1 order by at desc limit 40) c
                 order by at",
            )
            .bind(c.id)
            .fetch_all(&self.pool)
            .await
            .or_app()?,
            None => vec![],
        };
        let history: Vec<EndpointRow> = sqlx::query_as(&format!(
            "select {COLUMNS} from colab_endpoints order by received_at desc limit 25"
        ))
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        let fallback: Option<String> =
            sqlx::query_scalar("select fallback_url from colab_settings")
                .fetch_optional(&self.pool)
                .await
                .or_app()?
                .flatten();
        let active_secrets: i64 = sqlx::query_scalar(
            "select count(*) from colab_webhook_secrets where retires_at is null or retires_at > now()",
        )
        .fetch_one(&self.pool)
        .await
        .or_app()?;
        let inventory = match &current {
            Some(c) => crate::comfyui::inventory::stored(&self.pool, c.id)
                .await
                .or_app()?
                .map(|s| s.view()),
            None => None,
        };
        Ok(ColabOverview {
            inventory,
            current: current.map(view),
            checks,
            history: history.into_iter().map(view).collect(),
            fallback: fallback.as_deref().map(redact),
            active_secrets,
            publishes: self.publisher.is_some(),
            webhook_url: format!(
                "{}{}",
                self.public_url.trim_end_matches('/'),
                super::webhook::PATH
            ),
        })
    }

    async fn reveal(&self, actor: &Actor, id: Uuid) -> Result<String, AppError> {
        let url: Option<String> =
            sqlx::query_scalar("select url from colab_endpoints where id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .or_app()?;
        let url = url.ok_or_else(|| AppError::NotFound("No such endpoint.".into()))?;
        crate::audit::record(
            &self.pool,
            &who(actor),
            "colab.endpoint_revealed",
            Some(redact(&url)),
            json!({ "endpoint_id": id }),
        )
        .await
        .or_app()?;
        Ok(url)
    }

    async fn set_endpoint(&self, actor: &Actor, url: &str) -> Result<(), AppError> {
        let url = normalise(url, &self.prober.rules)
            .map_err(|e| AppError::Invalid(format!("{e}.")))?
            .to_string();
        let who = who(actor);
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.or_app()?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(super::LOCK_KEY)
            .execute(&mut *tx)
            .await
            .or_app()?;
        sqlx::query(
            "update colab_endpoints set state = 'replaced', ended_at = now(), end_reason = 'set by hand: replaced'
             where state in ('verifying', 'healthy')",
        )
        .execute(&mut *tx)
        .await
        .or_app()?;
        sqlx::query(
            "insert into colab_endpoints (id, url, source, actor_user_id, actor_token_id, actor_label, reported_at, state)
             values ($1, $2, 'admin', $3, $4, $5, now(), 'verifying')",
        )
        .bind(id)
        .bind(&url)
        .bind(who.user_id)
        .bind(who.token_id)
        .bind(&who.label)
        .execute(&mut *tx)
        .await
        .or_app()?;
        crate::audit::record(
            &mut *tx,
            &who,
            "colab.endpoint_set",
            Some(redact(&url)),
            json!({ "endpoint_id": id }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        self.spawn_verification(id, url);
        self.show_on_diagram().await;
        Ok(())
    }

    async fn set_fallback(&self, actor: &Actor, url: Option<String>) -> Result<(), AppError> {
        Colab::set_fallback(self, &who(actor), url.as_deref())
            .await
            .map(drop)
            .map_err(|e| AppError::Invalid(format!("{e}.")))
    }

    async fn reverify(&self, actor: &Actor) -> Result<(), AppError> {
        let current: Option<HealthyRow> =
            sqlx::query_as("select id, url from colab_endpoints where state = 'healthy'")
                .fetch_optional(&self.pool)
                .await
                .or_app()?;
        let HealthyRow { id, url } = current
            .ok_or_else(|| AppError::Conflict("There is no healthy endpoint to verify.".into()))?;
        let outcome = self.prober.system_stats(&url).await;
        let (ok, detail) = match &outcome {
            Ok((stats, _)) => (true, json!(stats)),
            Err(e) => (false, json!({ "error": e.to_string(), "class": e.class() })),
        };
        if ok {
            sqlx::query(
                "update colab_endpoints set verification = $2, verified_at = now() where id = $1",
            )
            .bind(id)
            .bind(&detail)
            .execute(&self.pool)
            .await
            .or_app()?;
        }
        sqlx::query("insert into endpoint_checks (endpoint_id, kind, ok, class, detail) values ($1, 'verify', $2, $3, $4)")
            .bind(id)
            .bind(ok)
            .bind(outcome.as_ref().err().map(|e| e.class()))
            .bind(outcome.as_ref().err().map(|e| e.to_string()))
            .execute(&self.pool)
            .await
            .or_app()?;
        crate::audit::record(
            &self.pool,
            &who(actor),
            "colab.endpoint_reverified",
            Some(redact(&url)),
            json!({ "ok": ok }),
        )
        .await
        .or_app()?;
        self.show_on_diagram().await;
        if ok {
            self.spawn_inventory_refresh(id, url);
        }
        match outcome {
            Ok(_) => Ok(()),
            Err(e) => Err(AppError::Unavailable(format!(
                "The endpoint did not verify: {e}."
            ))),
        }
    }

    async fn refresh_inventory(&self, actor: &Actor, id: Uuid) -> Result<(), AppError> {
        crate::comfyui::inventory::refresh_as(&self.pool, &self.prober, &who(actor), id)
            .await
            .map(drop)
    }

    async fn rotate_secret(&self, actor: &Actor) -> Result<RotatedSecret, AppError> {
        let secret = Colab::rotate_secret(self, &who(actor)).await.or_app()?;
        let webhook = format!(
            "{}{}",
            self.public_url.trim_end_matches('/'),
            super::webhook::PATH
        );
        Ok(RotatedSecret {
            cell: notebook_cell(&webhook, &secret),
            secret,
        })
    }
}
