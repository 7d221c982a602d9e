//! Server-Sent Events as every Slate stream sends them: a keep-alive comment every 15 s,
//! and the end of the stream when the server begins to stop.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::tasks::Shutdown;

/// Often enough that proxies do not take an idle stream for a dead one.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The response for a stream of events. It ends at shutdown, or graceful shutdown would
/// wait for it forever.
pub fn respond<S>(
    events: S,
    shutdown: &Shutdown,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Stream<Item = Event> + Send + 'static,
{
    Sse::new(events.map(Ok).take_until(shutdown.stopped()))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// One `event` per notification, its data the payload, or `*` after a gap (a slow reader
/// missed some and should refresh everything).
pub fn notifications(
    rx: broadcast::Receiver<String>,
    event: &'static str,
) -> impl Stream<Item = Event> + Send + 'static {
    futures::stream::unfold(rx, move |mut rx| async move {
        let data = match rx.recv().await {
            Ok(payload) => payload,
            Err(RecvError::Lagged(_)) => "*".to_owned(),
            Err(RecvError::Closed) => return None,
        };
        Some((Event::default().event(event).data(data), rx))
    })
}
