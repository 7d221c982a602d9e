//! What the webhook pages need from the server.

use async_trait::async_trait;

#[async_trait]
pub trait WebhooksBackend: Send + Sync + 'static {}
