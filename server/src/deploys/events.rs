//! `GET /api/lead/deploys/events`: tells open deploy pages to refresh. A `changed` event
//! follows any write to the history (PostgreSQL `NOTIFY deploy_changes`, from whichever
//! replica) and any change of the live workloads (rollout status), gathered for 250 ms.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::sync::broadcast;

use crate::http::AppState;

pub const PATH: &str = "/api/lead/deploys/events";
/// How long changes are gathered into one event.
pub const GATHER: Duration = Duration::from_millis(250);

pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(events))
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let history = state.deploy_events.subscribe();
    let feed = state.cluster.feed();
    let stream = futures::stream::unfold((history, feed), |(mut history, mut feed)| async move {
        let woke = tokio::select! {
            r = history.recv() => !matches!(r, Err(broadcast::error::RecvError::Closed)),
            r = feed.changed() => r.is_ok() || {
                // Without a cluster the feed never changes: wait on the history alone.
                !matches!(history.recv().await, Err(broadcast::error::RecvError::Closed))
            },
        };
        if !woke {
            return None;
        }
        tokio::time::sleep(GATHER).await;
        while history.try_recv().is_ok() {}
        feed.mark_unchanged();
        Some((
            Ok(Event::default().event("changed").data("deploys")),
            (history, feed),
        ))
    });
    let stream =
        futures::StreamExt::take_until(stream, crate::http::stopping(state.stopping.clone()));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
