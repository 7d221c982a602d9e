//! Server functions of the webhook admin page, all under `/api/admin` (admins only: the
//! access policy judges the path, and each body judges its caller again).

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use uuid::Uuid;

use super::{CreatedSubscription, DeliveryLog, SubscriptionView};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, services};

#[server(prefix = "/api/admin", endpoint = "webhook_list")]
pub async fn list_webhooks() -> Result<Vec<SubscriptionView>, AppError> {
    answer(
        async {
            let actor = caller::<ListWebhooks>()?;
            services()?.webhooks.list(&actor).await
        }
        .await,
    )
}

/// Creates a subscription. `events`: type names separated by commas (empty or `*`: all);
/// `secret`: `whsec_<base64>` of 24 to 64 bytes, or empty for one Slate makes.
#[server(prefix = "/api/admin", endpoint = "webhook_create")]
pub async fn create_webhook(
    url: String,
    #[server(default)] events: String,
    #[server(default)] secret: Option<String>,
    #[server(default)] description: Option<String>,
) -> Result<CreatedSubscription, AppError> {
    answer(
        async {
            let actor = caller::<CreateWebhook>()?;
            let new = super::backend::NewSubscription {
                url: url.trim().to_owned(),
                events: super::parse_events(&events)?,
                secret: secret
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                description: description.unwrap_or_default().trim().to_owned(),
            };
            services()?.webhooks.create(&actor, new).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "webhook_set_enabled")]
pub async fn set_webhook_enabled(id: Uuid, enabled: bool) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<SetWebhookEnabled>()?;
            services()?.webhooks.set_enabled(&actor, id, enabled).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "webhook_delete")]
pub async fn delete_webhook(id: Uuid) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<DeleteWebhook>()?;
            services()?.webhooks.delete(&actor, id).await
        }
        .await,
    )
}

/// A new secret for the subscription (the given one, or one Slate makes), shown once.
#[server(prefix = "/api/admin", endpoint = "webhook_rotate_secret")]
pub async fn rotate_webhook_secret(
    id: Uuid,
    #[server(default)] secret: Option<String>,
) -> Result<String, AppError> {
    answer(
        async {
            let actor = caller::<RotateWebhookSecret>()?;
            let secret = secret
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty());
            services()?.webhooks.rotate_secret(&actor, id, secret).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "webhook_deliveries")]
pub async fn webhook_deliveries(
    id: Uuid,
    #[server(default)] before: Option<DateTime<Utc>>,
) -> Result<DeliveryLog, AppError> {
    answer(
        async {
            let actor = caller::<WebhookDeliveries>()?;
            services()?.webhooks.deliveries(&actor, id, before).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "webhook_resend")]
pub async fn resend_webhook(delivery: Uuid) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<ResendWebhook>()?;
            services()?.webhooks.resend(&actor, delivery).await
        }
        .await,
    )
}

/// Sends a `ping` to the subscription; the delivery's id.
#[server(prefix = "/api/admin", endpoint = "webhook_ping")]
pub async fn ping_webhook(id: Uuid) -> Result<Uuid, AppError> {
    answer(
        async {
            let actor = caller::<PingWebhook>()?;
            services()?.webhooks.ping(&actor, id).await
        }
        .await,
    )
}
