//! Live asset changes for the browser, by server push: PostgreSQL `NOTIFY` from any
//! replica, one `LISTEN` connection per process, fanned out to Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/assets/events", get(events))
}

/// Forwards `asset_changes` notifications into `tx`, reconnecting with backoff.
pub fn spawn(pool: sqlx::PgPool, tx: broadcast::Sender<String>) -> JoinHandle<()> {
    forward(pool, "asset_changes", tx)
}

/// Forwards the notifications of one channel into `tx`, reconnecting with backoff.
pub fn forward(
    pool: sqlx::PgPool,
    channel: &'static str,
    tx: broadcast::Sender<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if listener.listen(channel).await.is_ok() {
                        delay = Duration::from_secs(1);
                        while let Ok(n) = listener.recv().await {
                            let _ = tx.send(n.payload().to_owned());
                        }
                    }
                }
                Err(err) => {
                    tracing::debug!(error = %err, channel, "change listener cannot connect")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    })
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.asset_events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(id) => id,
            // A slow reader missed some: tell it to refresh everything.
            Err(broadcast::error::RecvError::Lagged(_)) => "*".to_owned(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().event("asset").data(data)), rx))
    });
    let stream =
        futures::StreamExt::take_until(stream, crate::http::stopping(state.stopping.clone()));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
