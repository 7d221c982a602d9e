//! Slate's events out: webhook subscriptions an admin registers, and their deliveries.
//! The event types, what the pages show of a subscription and its delivery log, and the
//! parsing of the event list a form sends.

pub mod api;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod pages;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

/// Every event type a subscription may ask for, with what it means. (`ping`, the test
/// event, is sent only when an admin asks, to the one subscription.)
pub const EVENT_TYPES: &[(&str, &str)] = &[
    ("run.queued", "A run was submitted"),
    ("run.started", "A run's first stage started"),
    ("run.succeeded", "A run finished well"),
    ("run.failed", "A run failed"),
    ("run.cancelled", "A run was cancelled"),
    ("stage.started", "A stage's attempt started"),
    ("stage.succeeded", "A stage succeeded"),
    ("stage.failed", "A stage failed for good"),
    ("stage.cancelled", "A stage was cancelled"),
    (
        "stage.waiting",
        "A stage waits for a person (a LangGraph question)",
    ),
    ("output.created", "A run output became an asset"),
    ("endpoint.up", "The Colab endpoint became healthy"),
    (
        "endpoint.down",
        "The Colab endpoint went down or was rejected",
    ),
    (
        "endpoint.changed",
        "The Colab endpoint changed otherwise (verifying, replaced)",
    ),
];

/// The test event's type.
pub const PING: &str = "ping";

/// How many tries a delivery gets before it is given up.
pub const TRIES: i32 = 8;

/// Reads the event list of a form: empty or `*` means every type; otherwise names from
/// [`EVENT_TYPES`] separated by commas, spaces or new lines (duplicates dropped).
/// `None` means every type.
pub fn parse_events(raw: &str) -> Result<Option<Vec<String>>, AppError> {
    let names: Vec<&str> = raw
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() || names == ["*"] {
        return Ok(None);
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        if !EVENT_TYPES.iter().any(|(t, _)| *t == name) {
            return Err(AppError::BadRequest(format!(
                "{name:?} is not an event type. The types are: {}; or * for all of them.",
                EVENT_TYPES
                    .iter()
                    .map(|(t, _)| *t)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    }
    Ok(Some(out))
}

/// A subscription as the admin page lists it (never its secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub url: String,
    /// `None`: every event type.
    pub events: Option<Vec<String>>,
    pub enabled: bool,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    /// The newest delivery: its state, last status code and when it was made.
    pub last: Option<DeliveryBrief>,
    /// Deliveries still being tried, and given up.
    pub pending: i64,
    pub failed: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryBrief {
    pub kind: String,
    pub state: String,
    pub last_status: Option<i32>,
    pub at: DateTime<Utc>,
}

/// A new subscription and its secret, shown this once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedSubscription {
    pub subscription: SubscriptionView,
    pub secret: String,
}

/// One delivery and each of its tries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id` header (the same on every try).
    pub webhook_id: String,
    pub kind: String,
    /// `pending`, `succeeded` or `failed` (given up).
    pub state: String,
    pub tries: i32,
    pub next_try_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub attempts: Vec<TryView>,
}

/// One try of a delivery: when, how long, what the receiver answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TryView {
    pub number: i32,
    pub at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub excerpt: Option<String>,
    pub error: Option<String>,
    pub resend: bool,
}

/// A subscription with its recent deliveries (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryLog {
    pub subscription: SubscriptionView,
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for older deliveries, when there are more.
    pub next_before: Option<DateTime<Utc>>,
}

/// The webhook id of a delivery, as sent and as shown.
pub fn webhook_id(delivery: Uuid) -> String {
    format!("msg_{}", delivery.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_are_read_strictly() {
        assert_eq!(parse_events("").unwrap(), None);
        assert_eq!(parse_events(" * ").unwrap(), None);
        assert_eq!(
            parse_events("run.succeeded, stage.failed\nrun.succeeded").unwrap(),
            Some(vec!["run.succeeded".to_owned(), "stage.failed".to_owned()])
        );
        let err = parse_events("run.succeeded,run.exploded").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("run.exploded"), "{err}");
        // The test event is not something to subscribe to.
        assert!(parse_events("ping").is_err());
    }

    #[test]
    fn the_webhook_id_is_stable_and_prefixed() {
        let id = Uuid::nil();
        assert_eq!(webhook_id(id), webhook_id(id));
        assert!(webhook_id(id).starts_with("msg_"));
    }
}
