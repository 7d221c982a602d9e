//! `GET /api/assets/events`: live asset changes for the browser, by server push: each
//! PostgreSQL `NOTIFY asset_changes` (from any replica) becomes an `asset` event.

use axum::extract::{FromRef, State};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;

use crate::notify::{Channel, Notifications};
use crate::tasks::Shutdown;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Notifications: FromRef<S>,
    Shutdown: FromRef<S>,
{
    Router::new().route("/api/assets/events", get(events))
}

/// An `asset` event per change, its data the asset's id (`*` after a gap).
async fn events(
    State(notifications): State<Notifications>,
    State(shutdown): State<Shutdown>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = notifications.subscribe(Channel::AssetChanges);
    crate::sse::respond(crate::sse::notifications(rx, "asset"), &shutdown)
}
