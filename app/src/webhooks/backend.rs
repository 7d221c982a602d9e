//! What the webhook pages need from the server (implemented by the `server` crate). Every
//! call is an admin's; the server checks the role again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{CreatedSubscription, DeliveryLog, SubscriptionView};
use crate::backend::Actor;
use crate::error::AppError;

/// A subscription as an admin asks for it.
#[derive(Clone, Debug, Default)]
pub struct NewSubscription {
    pub url: String,
    /// `None`: every event type.
    pub events: Option<Vec<String>>,
    /// `whsec_...`; `None`: Slate makes one.
    pub secret: Option<String>,
    pub description: String,
}

#[async_trait]
pub trait WebhooksBackend: Send + Sync + 'static {
    async fn list(&self, actor: &Actor) -> Result<Vec<SubscriptionView>, AppError>;
    /// Checks the URL (its scheme, and every address its name resolves to) and the
    /// secret, stores the subscription and returns it with its secret, shown once.
    async fn create(
        &self,
        actor: &Actor,
        new: NewSubscription,
    ) -> Result<CreatedSubscription, AppError>;
    async fn set_enabled(&self, actor: &Actor, id: Uuid, enabled: bool) -> Result<(), AppError>;
    /// Deletes the subscription and its delivery log.
    async fn delete(&self, actor: &Actor, id: Uuid) -> Result<(), AppError>;
    /// Replaces the secret (a given one, or a new one Slate makes); returns it, shown once.
    async fn rotate_secret(
        &self,
        actor: &Actor,
        id: Uuid,
        secret: Option<String>,
    ) -> Result<String, AppError>;
    /// The subscription and its deliveries, newest first, older than `before` if given.
    async fn deliveries(
        &self,
        actor: &Actor,
        id: Uuid,
        before: Option<DateTime<Utc>>,
    ) -> Result<DeliveryLog, AppError>;
    /// One more try of a delivery, now, with the same webhook id.
    async fn resend(&self, actor: &Actor, delivery: Uuid) -> Result<(), AppError>;
    /// Sends a `ping` event to the subscription; the delivery's id.
    async fn ping(&self, actor: &Actor, id: Uuid) -> Result<Uuid, AppError>;
}
