//! Slate's events out: webhook subscriptions (admins), the outbox the database fills by
//! triggers (migration `webhooks`), and signed deliveries (Standard Webhooks) with
//! retries and a log of every try. `secret` signs, `target` guards where a delivery may
//! go, `deliver` is the worker.

pub mod deliver;
pub mod secret;
pub mod target;

use std::sync::Arc;

use app::accounts::Role;
use app::backend::Actor;
use app::error::AppError;
use app::webhooks::backend::{NewSubscription, WebhooksBackend};
use app::webhooks::{
    webhook_id, CreatedSubscription, DeliveryBrief, DeliveryLog, DeliveryView, SubscriptionView,
    TryView, PING, TRIES,
};
use async_trait::async_trait;
use axum::extract::FromRef;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use url::Url;
use uuid::Uuid;

use crate::audit::Who;
use crate::db::OrAppError as _;
use secret::Secret;

/// Longest description kept.
const MAX_DESCRIPTION: usize = 500;
/// Deliveries per page of the log.
const LOG_PAGE: i64 = 50;

/// The webhook service: subscriptions and deliveries.
#[derive(Clone)]
pub struct Webhooks {
    pub pool: PgPool,
    /// Hosts deliveries may reach although private (`SLATE_WEBHOOK_ALLOW`).
    pub allow: Vec<String>,
    /// Slate's public URL, for the links in payloads.
    pub public: Url,
    /// Wakes this process's worker (a resend, a ping) before its next look.
    wake: Arc<tokio::sync::Notify>,
}

impl Webhooks {
    pub fn new(pool: PgPool, config: &crate::config::Config) -> Self {
        let allow = config
            .webhook_allow
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Webhooks {
            pool,
            allow,
            public: config.public_url(),
            wake: Arc::default(),
        }
    }

    /// Starts the delivery worker under the supervisor.
    pub fn start(&self, tasks: &crate::tasks::Tasks) {
        let me = self.clone();
        tasks.keep("webhook deliveries", move || me.clone().work());
    }

    /// Checks a URL for a subscription: its form, and (unless allowed) every address its
    /// name resolves to now.
    pub async fn check_url(&self, raw: &str) -> Result<target::Target, AppError> {
        let target = target::parse(raw, &self.allow)
            .map_err(|e| AppError::BadRequest(format!("The URL is refused: {e}.")))?;
        target
            .addresses()
            .await
            .map_err(|e| AppError::BadRequest(format!("The URL is refused: {e}.")))?;
        Ok(target)
    }

    async fn view(&self, id: Option<Uuid>) -> Result<Vec<SubscriptionView>, AppError> {
        let rows: Vec<SubscriptionRow> = sqlx::query_as(
            "select s.id, s.url, s.events, s.enabled, s.description, s.created_at,
                    u.email as created_by, l.type as last_type, l.state as last_state,
                    l.last_status, l.created_at as last_at,
                    (select count(*) from webhook_deliveries p
                     where p.subscription_id = s.id and p.state = 'pending') as pending,
                    (select count(*) from webhook_deliveries f
                     where f.subscription_id = s.id and f.state = 'failed') as failed
             from webhook_subscriptions s
             left join users u on u.id = s.created_by
             left join lateral (select type, state, last_status, created_at
                                from webhook_deliveries d where d.subscription_id = s.id
                                order by d.created_at desc, d.id desc limit 1) l on true
             where $1::uuid is null or s.id = $1
             order by s.created_at desc",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        Ok(rows.into_iter().map(SubscriptionRow::into_view).collect())
    }

    async fn one(&self, id: Uuid) -> Result<SubscriptionView, AppError> {
        self.view(Some(id))
            .await?
            .pop()
            .ok_or_else(|| AppError::NotFound("There is no such webhook subscription.".into()))
    }

    /// Wakes the worker of this process.
    fn nudge(&self) {
        self.wake.notify_one();
    }
}

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: Uuid,
    url: String,
    events: Option<Vec<String>>,
    enabled: bool,
    description: String,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
    last_type: Option<String>,
    last_state: Option<String>,
    last_status: Option<i32>,
    last_at: Option<DateTime<Utc>>,
    pending: i64,
    failed: i64,
}

impl SubscriptionRow {
    fn into_view(self) -> SubscriptionView {
        let last = match (self.last_type, self.last_state, self.last_at) {
            (Some(kind), Some(state), Some(at)) => Some(DeliveryBrief {
                kind,
                state,
                last_status: self.last_status,
                at,
            }),
            _ => None,
        };
        SubscriptionView {
            id: self.id,
            url: self.url,
            events: self.events,
            enabled: self.enabled,
            description: self.description,
            created_at: self.created_at,
            created_by: self.created_by,
            last,
            pending: self.pending,
            failed: self.failed,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    r#type: String,
    state: String,
    tries: i32,
    next_try_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    last_status: Option<i32>,
    last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct TryRow {
    delivery_id: Uuid,
    number: i32,
    started_at: DateTime<Utc>,
    duration_ms: i32,
    status_code: Option<i32>,
    response_excerpt: Option<String>,
    error: Option<String>,
    resend: bool,
}

fn admin(actor: &Actor) -> Result<Who, AppError> {
    if actor.principal.has(Role::Admin) {
        Ok(Who::principal(&actor.principal, actor.client_addr))
    } else {
        Err(AppError::Forbidden(
            "Only admins manage webhook subscriptions.".into(),
        ))
    }
}

/// The secret an admin gave, checked, or a new one.
fn secret_from(given: Option<String>) -> Result<Secret, AppError> {
    match given {
        Some(text) => Secret::parse(&text)
            .map_err(|e| AppError::BadRequest(format!("The secret is refused: {e}."))),
        None => Ok(Secret::generate()),
    }
}

#[async_trait]
impl WebhooksBackend for Webhooks {
    async fn list(&self, actor: &Actor) -> Result<Vec<SubscriptionView>, AppError> {
        admin(actor)?;
        self.view(None).await
    }

    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        actor: &Actor,
        new: NewSubscription,
    ) -> Result<CreatedSubscription, AppError> {
        let who = admin(actor)?;
        if new.description.chars().count() > MAX_DESCRIPTION {
            return Err(AppError::BadRequest(format!(
                "The description is longer than {MAX_DESCRIPTION} characters."
            )));
        }
        if new.events.as_ref().is_some_and(Vec::is_empty) {
            return Err(AppError::BadRequest(
                "Choose at least one event type (or all of them).".into(),
            ));
        }
        let given = new.secret.is_some();
        let secret = secret_from(new.secret)?;
        let target = self.check_url(&new.url).await?;
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await.or_app()?;
        sqlx::query(
            "insert into webhook_subscriptions (id, url, events, secret, description, created_by)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(target.url.as_str())
        .bind(&new.events)
        .bind(secret.encode())
        .bind(&new.description)
        .bind(who.user_id)
        .execute(&mut *tx)
        .await
        .or_app()?;
        crate::audit::record(
            &mut *tx,
            &who,
            "webhook.create",
            Some(id.to_string()),
            json!({
                "target": target.redacted(),
                "events": new.events,
                "description": new.description,
                "secret": if given { "given" } else { "generated" },
            }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        tracing::info!(subscription = %id, target = %target.redacted(), "webhook subscription created");
        Ok(CreatedSubscription {
            subscription: self.one(id).await?,
            secret: secret.encode(),
        })
    }

    async fn set_enabled(&self, actor: &Actor, id: Uuid, enabled: bool) -> Result<(), AppError> {
        let who = admin(actor)?;
        let mut tx = self.pool.begin().await.or_app()?;
        let changed = sqlx::query(
            "update webhook_subscriptions set enabled = $2, updated_at = now() where id = $1",
        )
        .bind(id)
        .bind(enabled)
        .execute(&mut *tx)
        .await
        .or_app()?;
        if changed.rows_affected() == 0 {
            return Err(AppError::NotFound(
                "There is no such webhook subscription.".into(),
            ));
        }
        let action = if enabled {
            "webhook.enable"
        } else {
            "webhook.disable"
        };
        crate::audit::record(&mut *tx, &who, action, Some(id.to_string()), json!({}))
            .await
            .or_app()?;
        tx.commit().await.or_app()?;
        if enabled {
            self.nudge();
        }
        Ok(())
    }

    async fn delete(&self, actor: &Actor, id: Uuid) -> Result<(), AppError> {
        let who = admin(actor)?;
        let mut tx = self.pool.begin().await.or_app()?;
        let url: Option<String> =
            sqlx::query_scalar("delete from webhook_subscriptions where id = $1 returning url")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .or_app()?;
        let Some(url) = url else {
            return Err(AppError::NotFound(
                "There is no such webhook subscription.".into(),
            ));
        };
        let shown = Url::parse(&url)
            .map(|u| target::redact(&u))
            .unwrap_or_default();
        crate::audit::record(
            &mut *tx,
            &who,
            "webhook.delete",
            Some(id.to_string()),
            json!({ "target": shown }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        Ok(())
    }

    async fn rotate_secret(
        &self,
        actor: &Actor,
        id: Uuid,
        secret: Option<String>,
    ) -> Result<String, AppError> {
        let who = admin(actor)?;
        let given = secret.is_some();
        let secret = secret_from(secret)?;
        let mut tx = self.pool.begin().await.or_app()?;
        let changed = sqlx::query(
            "update webhook_subscriptions set secret = $2, updated_at = now() where id = $1",
        )
        .bind(id)
        .bind(secret.encode())
        .execute(&mut *tx)
        .await
        .or_app()?;
        if changed.rows_affected() == 0 {
            return Err(AppError::NotFound(
                "There is no such webhook subscription.".into(),
            ));
        }
        crate::audit::record(
            &mut *tx,
            &who,
            "webhook.rotate_secret",
            Some(id.to_string()),
            json!({ "given": given }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        Ok(secret.encode())
    }

    async fn deliveries(
        &self,
        actor: &Actor,
        id: Uuid,
        before: Option<DateTime<Utc>>,
    ) -> Result<DeliveryLog, AppError> {
        admin(actor)?;
        let subscription = self.one(id).await?;
        let mut rows: Vec<DeliveryRow> = sqlx::query_as(
            "select id, type, state, tries, next_try_at, created_at, finished_at, last_status,
                    last_error
             from webhook_deliveries
             where subscription_id = $1 and ($2::timestamptz is null or created_at < $2)
             order by created_at desc, id desc limit $3",
        )
        .bind(id)
        .bind(before)
        .bind(LOG_PAGE + 1)
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        let more = rows.len() as i64 > LOG_PAGE;
        rows.truncate(LOG_PAGE as usize);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let tries: Vec<TryRow> = sqlx::query_as(
            "select delivery_id, number, started_at, duration_ms, status_code, response_excerpt,
                    error, resend
             from webhook_tries where delivery_id = any($1) order by delivery_id, number",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        let next_before = if more {
            rows.last().map(|r| r.created_at)
        } else {
            None
        };
        let deliveries = rows
            .into_iter()
            .map(|r| DeliveryView {
                id: r.id,
                webhook_id: webhook_id(r.id),
                kind: r.r#type,
                next_try_at: (r.state == "pending").then_some(r.next_try_at),
                state: r.state,
                tries: r.tries,
                created_at: r.created_at,
                finished_at: r.finished_at,
                last_status: r.last_status,
                last_error: r.last_error,
                attempts: tries
                    .iter()
                    .filter(|t| t.delivery_id == r.id)
                    .map(|t| TryView {
                        number: t.number,
                        at: t.started_at,
                        duration_ms: t.duration_ms,
                        status_code: t.status_code,
                        excerpt: t.response_excerpt.clone(),
                        error: t.error.clone(),
                        resend: t.resend,
                    })
                    .collect(),
            })
            .collect();
        Ok(DeliveryLog {
            subscription,
            deliveries,
            next_before,
        })
    }

    async fn resend(&self, actor: &Actor, delivery: Uuid) -> Result<(), AppError> {
        let who = admin(actor)?;
        let mut tx = self.pool.begin().await.or_app()?;
        let found: Option<(Uuid, bool, String)> = sqlx::query_as(
            "select d.subscription_id, s.enabled, d.type from webhook_deliveries d
             join webhook_subscriptions s on s.id = d.subscription_id
             where d.id = $1 for update of d",
        )
        .bind(delivery)
        .fetch_optional(&mut *tx)
        .await
        .or_app()?;
        let Some((subscription, enabled, kind)) = found else {
            return Err(AppError::NotFound("There is no such delivery.".into()));
        };
        if !enabled {
            return Err(AppError::Conflict(
                "This subscription is disabled: enable it before resending.".into(),
            ));
        }
        sqlx::query(
            "update webhook_deliveries
             set state = 'pending', next_try_at = now(), tries_left = tries_left + 1,
                 resend_requested = true, finished_at = null
             where id = $1",
        )
        .bind(delivery)
        .execute(&mut *tx)
        .await
        .or_app()?;
        crate::audit::record(
            &mut *tx,
            &who,
            "webhook.resend",
            Some(delivery.to_string()),
            json!({ "subscription": subscription, "type": kind, "webhook_id": webhook_id(delivery) }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        self.nudge();
        Ok(())
    }

    async fn ping(&self, actor: &Actor, id: Uuid) -> Result<Uuid, AppError> {
        let who = admin(actor)?;
        let subscription = self.one(id).await?;
        if !subscription.enabled {
            return Err(AppError::Conflict(
                "This subscription is disabled: enable it before sending a test event.".into(),
            ));
        }
        let delivery = Uuid::now_v7();
        let body = deliver::body(
            PING,
            Utc::now(),
            json!({
                "subscription_id": id,
                "message": "A test event from Slate.",
                "by": actor.principal.label(),
            }),
            &self.public,
        );
        let mut tx = self.pool.begin().await.or_app()?;
        sqlx::query(
            "insert into webhook_deliveries (id, subscription_id, type, body, state, tries_left)
             values ($1, $2, $3, $4, 'pending', $5)",
        )
        .bind(delivery)
        .bind(id)
        .bind(PING)
        .bind(&body)
        .bind(TRIES)
        .execute(&mut *tx)
        .await
        .or_app()?;
        crate::audit::record(
            &mut *tx,
            &who,
            "webhook.ping",
            Some(id.to_string()),
            json!({ "delivery": delivery }),
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()?;
        self.nudge();
        Ok(delivery)
    }
}

/// The webhook routes. (Scripts manage subscriptions through the server functions under
/// `/api/admin/webhook_*` with an admin's token; there is no separate JSON API.)
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Webhooks: FromRef<S>,
{
    Router::new()
}
