//! `POST /api/colab/endpoint`: the notebook reports its tunnel (`up`), that it is alive
//! (`heartbeat`) and that it stops (`down`). Authenticated by its signature alone (no
//! session, no token), rate-limited, and idempotent: an event id is accepted once, and
//! events are applied in the order of their signed times, so a late `up` for an old URL
//! never replaces a newer one. A heartbeat for an endpoint that was marked down, and that
//! nothing newer than a fallback replaced, brings it back (verified again, like an `up`):
//! ComfyUI restarted behind the same tunnel and the notebook says it lives. Refusals say little to the caller and everything to the
//! log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::signature::{self, SignatureError};
use super::Colab;
use crate::comfyui::address::{normalise, redact};

pub const PATH: &str = "/api/colab/endpoint";
/// Largest body accepted (a URL and a few ids).
pub const MAX_BODY: usize = 8 * 1024;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Colab: FromRef<S>,
{
    Router::new().route(PATH, post(receive))
}

/// The webhook's limits: reports with a good signature and requests without one count
/// in separate buckets, so a flood of forgeries can never make the notebook's own
/// reports wait.
pub struct RateLimit {
    signed: Window,
    unsigned: Window,
}

impl RateLimit {
    /// `per_client` and `overall` requests per `window` for signed reports, and as many
    /// per client for the rest.
    pub fn new(per_client: u32, overall: u32, window: Duration) -> RateLimit {
        RateLimit {
            signed: Window::new(per_client, overall, window),
            // Refusing a forgery is cheap, and one address must not shut out others:
            // no overall cap for them.
            unsigned: Window::new(per_client, u32::MAX, window),
        }
    }

    /// Whether one more signed report from `client` fits; if not, seconds to wait.
    pub fn check_signed(&self, client: Option<IpAddr>) -> Result<(), u64> {
        self.signed.check(client)
    }

    /// Whether one more badly signed request from `client` gets an answer with a
    /// reason (and a line in the log) rather than a plain 429.
    pub fn check_unsigned(&self, client: Option<IpAddr>) -> Result<(), u64> {
        self.unsigned.check(client)
    }
}

/// A fixed window per client address and one for everybody.
struct Window {
    per_client: u32,
    overall: u32,
    window: Duration,
    state: Mutex<(Instant, HashMap<IpAddr, u32>, u32)>,
}

impl Window {
    fn new(per_client: u32, overall: u32, window: Duration) -> Window {
        Window {
            per_client,
            overall,
            window,
            state: Mutex::new((Instant::now(), HashMap::new(), 0)),
        }
    }

    fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(s.0) >= self.window {
            *s = (now, HashMap::new(), 0);
        }
        let wait = (self.window - now.duration_since(s.0)).as_secs().max(1);
        if s.2 >= self.overall {
            return Err(wait);
        }
        if let Some(ip) = client {
            let n = s.1.entry(ip).or_insert(0);
            if *n >= self.per_client {
                return Err(wait);
            }
            *n += 1;
        }
        s.2 += 1;
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    event: String,
    event_id: String,
    notebook_id: String,
    #[serde(default)]
    url: Option<String>,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unauthorized() -> Response {
    refuse(
        StatusCode::UNAUTHORIZED,
        "The request is not signed with an active webhook secret.",
    )
}

fn rate_limited(wait: u64) -> Response {
    let mut res = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many reports; wait a little.",
    );
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        res.headers_mut().insert("retry-after", v);
    }
    res
}

/// Longest signature header accepted: a time and a few `v1=` values (one per active
/// secret), so that checking it costs a few HMACs at most.
const MAX_SIGNATURE_HEADER: usize = 1024;

async fn receive(
    State(colab): State<Colab>,
    auth: Option<axum::Extension<app::backend::RequestAuth>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let colab = &colab;
    // The address the authentication middleware found (X-Forwarded-For only when trusted).
    let client = auth.and_then(|a| a.0.client_addr);
    // The signature comes first: it is cheap to check on a bounded body, and only a
    // report that passes it may count against the notebook's limit.
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "The report is too large."),
    };
    let header = headers
        .get("x-slate-signature")
        .map(|v| v.to_str().ok().filter(|h| h.len() <= MAX_SIGNATURE_HEADER));
    let now = Utc::now().timestamp();
    // Missing, malformed and stale signatures are refused without reading any secret.
    let checked = match header {
        Some(None) => Err(SignatureError::Malformed),
        // With no secret to match, `verify` says only whether the header is usable.
        Some(Some(h)) => match signature::verify(Some(h), &body, &[], now) {
            Ok(_) | Err(SignatureError::NoMatch) => Ok(h),
            Err(err) => Err(err),
        },
        None => Err(SignatureError::Missing),
    };
    let checked = match checked {
        Ok(h) => match colab.active_secrets().await {
            Ok(secrets) if secrets.is_empty() => {
                tracing::warn!("colab webhook called but no webhook secret exists (create one with `slate colab rotate-secret`)");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The webhook is not set up in Slate yet.",
                );
            }
            Ok(secrets) => signature::verify(Some(h), &body, &secrets, now),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhook secrets");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Slate cannot check the report right now.",
                );
            }
        },
        Err(err) => Err(err),
    };
    let signed_at = match checked {
        Ok(t) => t,
        Err(err) => {
            if let Err(wait) = colab.rate_limit.check_unsigned(client) {
                return rate_limited(wait);
            }
            let reason = match &err {
                SignatureError::Missing => "missing signature",
                SignatureError::Malformed => "malformed signature",
                SignatureError::Stale(_) => "timestamp outside the 300 s window",
                SignatureError::NoMatch => "signature matches no active secret",
            };
            tracing::warn!(client = ?client, reason, detail = %err, "colab webhook refused");
            return unauthorized();
        }
    };
    if let Err(wait) = colab.rate_limit.check_signed(client) {
        tracing::warn!(client = ?client, "colab webhook rate-limited");
        return rate_limited(wait);
    }
    let report: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("The report is not valid: {e}."),
            );
        }
    };
    if report.event_id.is_empty() || report.event_id.len() > 200 || report.notebook_id.len() > 200 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "event_id must have 1 to 200 characters, notebook_id at most 200.",
        );
    }
    if !matches!(report.event.as_str(), "up" | "heartbeat" | "down") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "event must be up, heartbeat or down.",
        );
    }
    let url = match report
        .url
        .as_deref()
        .map(|u| normalise(u, &colab.prober.rules))
    {
        Some(Ok(u)) => Some(u.to_string()),
        Some(Err(e)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("The URL is not accepted: {e}."),
            )
        }
        None if report.event == "up" => {
            return refuse(StatusCode::BAD_REQUEST, "An up event needs the url.")
        }
        None => None,
    };
    let signed = DateTime::<Utc>::from_timestamp(signed_at, 0).unwrap_or_else(Utc::now);
    match colab
        .apply_report(
            &report.event,
            &report.event_id,
            &report.notebook_id,
            url.as_deref(),
            signed,
            client,
        )
        .await
    {
        Ok(Applied::Replayed) => {
            tracing::warn!(client = ?client, event_id = %report.event_id, "colab webhook refused: replayed event id");
            unauthorized()
        }
        Ok(applied) => {
            tracing::info!(event = %report.event, endpoint = %url.as_deref().map(redact).unwrap_or_default(), outcome = applied.word(), "colab report");
            let status = if matches!(applied, Applied::Verifying(_)) {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            (
                status,
                Json(json!({ "outcome": applied.word(), "endpoint_id": applied.endpoint() })),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot record a colab report");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Slate cannot record the report right now; send it again.",
            )
        }
    }
}

/// What a report did.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// A new endpoint, being verified.
    Verifying(uuid::Uuid),
    /// The current endpoint is alive.
    Heartbeat(uuid::Uuid),
    /// The current endpoint went down.
    Down(uuid::Uuid),
    /// Older than what was already applied: recorded, changes nothing.
    Stale,
    /// About an endpoint that is not the current one: recorded, changes nothing.
    Ignored,
    /// The event id was seen before.
    Replayed,
}

impl Applied {
    pub fn word(&self) -> &'static str {
        match self {
            Applied::Verifying(_) => "verifying",
            Applied::Heartbeat(_) => "heartbeat",
            Applied::Down(_) => "down",
            Applied::Stale => "stale",
            Applied::Ignored => "ignored",
            Applied::Replayed => "replayed",
        }
    }

    pub fn endpoint(&self) -> Option<uuid::Uuid> {
        match self {
            Applied::Verifying(id) | Applied::Heartbeat(id) | Applied::Down(id) => Some(*id),
            _ => None,
        }
    }
}

impl Colab {
    /// Records and applies one verified report (in one transaction, serialised with
    /// every other change of the endpoint by an advisory lock).
    pub async fn apply_report(
        &self,
        event: &str,
        event_id: &str,
        notebook_id: &str,
        url: Option<&str>,
        signed_at: DateTime<Utc>,
        client: Option<IpAddr>,
    ) -> Result<Applied, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(super::LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query(
            "insert into colab_webhook_events (event_id, signed_at, event, notebook_id, outcome)
             values ($1, $2, $3, $4, 'received') on conflict (event_id) do nothing",
        )
        .bind(event_id)
        .bind(signed_at)
        .bind(event)
        .bind(notebook_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(Applied::Replayed);
        }
        // The newest event applied so far, and the current endpoint.
        let last_applied: Option<DateTime<Utc>> = sqlx::query_scalar(
            "select max(signed_at) from colab_webhook_events
             where outcome in ('verifying', 'heartbeat', 'down') and event_id <> $1",
        )
        .bind(event_id)
        .fetch_one(&mut *tx)
        .await?;
        let current: Option<(uuid::Uuid, String)> = sqlx::query_as(
            "select id, url from colab_endpoints where state in ('verifying', 'healthy')",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let is_current = |u: Option<&str>| match (&current, u) {
            (Some((_, cur)), Some(u)) => cur == u,
            (Some(_), None) => true,
            _ => false,
        };
        // The endpoint a heartbeat brings back: this URL (or without one, this
        // notebook's), down (or rejected when it was verified before: a heartbeat came
        // while ComfyUI was still starting), and replaced by nothing but a fallback since.
        let back: Option<String> = if event == "heartbeat" && !is_current(url) {
            sqlx::query_scalar(
                "select e.url from colab_endpoints e
                 where e.state in ('down', 'rejected') and e.source <> 'fallback'
                   and (e.url = $1 or ($1 is null and e.notebook_id = $2))
                   and exists (select 1 from colab_endpoints v where v.url = e.url and v.verified_at is not null)
                   and not exists (select 1 from colab_endpoints n
                                   where n.received_at > e.received_at and n.source <> 'fallback')
                 order by e.received_at desc limit 1",
            )
            .bind(url)
            .bind(notebook_id)
            .fetch_optional(&mut *tx)
            .await?
        } else {
            None
        };
        let url = back.as_deref().or(url);
        let who = crate::audit::Who {
            user_id: None,
            token_id: None,
            label: format!("colab notebook {notebook_id}"),
            client_addr: client,
        };
        let applied = if last_applied.is_some_and(|last| signed_at < last) {
            Applied::Stale
        } else {
            match event {
                // A heartbeat, or an `up` repeating the current URL: the endpoint lives.
                "up" | "heartbeat" if current.is_some() && is_current(url) => {
                    let id = current.as_ref().map(|c| c.0).unwrap_or_default();
                    sqlx::query(
                        "update colab_endpoints set last_heartbeat_at = now() where id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Applied::Heartbeat(id)
                }
                "up" | "heartbeat" if event == "up" || back.is_some() => {
                    let url = url.unwrap_or_default();
                    if let Some((old, _)) = &current {
                        sqlx::query(
                            "update colab_endpoints set state = 'replaced', ended_at = now(),
                             end_reason = 'a newer endpoint was reported' where id = $1",
                        )
                        .bind(old)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let id = uuid::Uuid::now_v7();
                    sqlx::query(
                        "insert into colab_endpoints (id, url, source, notebook_id, actor_label, reported_at, state, last_heartbeat_at)
                         values ($1, $2, 'webhook', $3, $4, $5, 'verifying', now())",
                    )
                    .bind(id)
                    .bind(url)
                    .bind(notebook_id)
                    .bind(&who.label)
                    .bind(signed_at)
                    .execute(&mut *tx)
                    .await?;
                    crate::audit::record(
                        &mut *tx,
                        &who,
                        "colab.endpoint_reported",
                        Some(redact(url)),
                        json!({ "endpoint_id": id, "event_id": event_id, "back_after_down": back.is_some() }),
                    )
                    .await?;
                    Applied::Verifying(id)
                }
                "down" if current.is_some() && is_current(url) => {
                    let id = current.as_ref().map(|c| c.0).unwrap_or_default();
                    sqlx::query(
                        "update colab_endpoints set state = 'down', ended_at = now(),
                         end_reason = 'the notebook reported down' where id = $1",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    crate::audit::record(
                        &mut *tx,
                        &who,
                        "colab.endpoint_down",
                        current.as_ref().map(|c| redact(&c.1)),
                        json!({ "endpoint_id": id, "event_id": event_id }),
                    )
                    .await?;
                    Applied::Down(id)
                }
                _ => Applied::Ignored,
            }
        };
        sqlx::query("update colab_webhook_events set outcome = $2 where event_id = $1")
            .bind(event_id)
            .bind(applied.word())
            .execute(&mut *tx)
            .await?;
        // Event ids only need remembering for the signature window; keep a day.
        sqlx::query(
            "delete from colab_webhook_events where received_at < now() - interval '1 day'",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if let (Applied::Verifying(id), Some(url)) = (&applied, url) {
            self.spawn_verification(*id, url.to_owned());
        }
        if matches!(applied, Applied::Verifying(_) | Applied::Down(_)) {
            self.show_on_diagram().await;
        }
        Ok(applied)
    }
}
