//! Talking to ComfyUI, for the Colab endpoint's page and the pipelines' executor alike:
//! which addresses may be reached (`address`), recognising and reaching an endpoint
//! safely (`probe`), the API client (`client`), the progress socket (`socket`), what an endpoint has
//! (`inventory`) and the workflows Slate runs on it (`workflows`).

pub mod address;
pub mod client;
pub mod inventory;
pub mod probe;
pub mod socket;
pub mod workflows;

use sqlx::PgPool;
use uuid::Uuid;

/// The endpoint prompts go to now, the healthy one verified last: (its row id, its URL).
pub async fn healthy_endpoint(pool: &PgPool) -> Option<(Uuid, String)> {
    sqlx::query_as(
        "select id, url from colab_endpoints where state = 'healthy'
         order by verified_at desc nulls last limit 1",
    )
    .fetch_optional(pool)
    .await
    .ok()
    .flatten()
}
