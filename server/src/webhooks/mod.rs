//! Slate's events out: webhook subscriptions, signed deliveries (Standard Webhooks), retries
//! and the delivery log. (Scaffolding: being written.)

use axum::extract::FromRef;
use axum::Router;
use sqlx::PgPool;

/// The webhook service: subscriptions and deliveries.
#[derive(Clone)]
pub struct Webhooks {
    pub pool: PgPool,
    /// Hosts deliveries may reach although private (`SLATE_WEBHOOK_ALLOW`).
    pub allow: Vec<String>,
}

impl Webhooks {
    pub fn new(pool: PgPool, config: &crate::config::Config) -> Self {
        let allow = config
            .webhook_allow
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Webhooks { pool, allow }
    }

    /// Starts the delivery worker under the supervisor.
    pub fn start(&self, _tasks: &crate::tasks::Tasks) {}
}

impl app::webhooks::backend::WebhooksBackend for Webhooks {}

/// The webhook routes.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Webhooks: FromRef<S>,
{
    Router::new()
}
