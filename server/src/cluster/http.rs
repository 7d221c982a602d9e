//! HTTP routes of the architecture: the live change stream (Server-Sent Events: a
//! snapshot on connect, then changes; `Last-Event-ID` resumes) and the exports.

use std::convert::Infallible;

use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::hub::Start;
use super::Cluster;
use crate::tasks::Shutdown;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Cluster: FromRef<S>,
    Shutdown: FromRef<S>,
{
    Router::new()
        .route("/api/lead/topology/events", get(events))
        .route("/api/lead/architecture.svg", get(export_svg))
        .route("/api/lead/architecture.mmd", get(export_mermaid))
        .route("/api/lead/architecture.txt", get(export_ascii))
}

fn snapshot_event(version: u64, json: String) -> Event {
    Event::default()
        .event("snapshot")
        .id(version.to_string())
        .data(json)
}

fn change_event(version: u64, json: &str) -> Event {
    Event::default()
        .event("change")
        .id(version.to_string())
        .data(json)
}

async fn events(
    State(cluster): State<Cluster>,
    State(shutdown): State<Shutdown>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (start, rx) = cluster.hub().subscribe(last);
    let (first, sent): (Vec<Event>, u64) = match start {
        Start::Snapshot(t, json) => (vec![snapshot_event(t.version, json)], t.version),
        Start::Resume(missed) => {
            let sent = missed.last().map_or(last.unwrap_or(0), |c| c.version);
            (
                missed
                    .iter()
                    .map(|c| change_event(c.version, &c.json))
                    .collect(),
                sent,
            )
        }
    };
    let initial = futures::stream::iter(first);
    let later =
        futures::stream::unfold((rx, sent, cluster), |(mut rx, sent, cluster)| async move {
            loop {
                match rx.recv().await {
                    Ok(c) if c.version <= sent => continue,
                    Ok(c) => {
                        let event = change_event(c.version, &c.json);
                        return Some((event, (rx, c.version, cluster)));
                    }
                    // Too slow to keep up: start over with the whole picture.
                    Err(RecvError::Lagged(_)) => {
                        let (start, rx) = cluster.hub().subscribe(None);
                        if let Start::Snapshot(t, json) = start {
                            let version = t.version;
                            return Some((snapshot_event(version, json), (rx, version, cluster)));
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
    let stream = futures::StreamExt::chain(initial, later);
    crate::sse::respond(stream, &shutdown)
}

fn download(body: String, content_type: &'static str, name: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(match name {
                    "svg" => "attachment; filename=\"architecture.svg\"",
                    "mmd" => "attachment; filename=\"architecture.mmd\"",
                    _ => "attachment; filename=\"architecture.txt\"",
                }),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn export_svg(State(cluster): State<Cluster>) -> Response {
    let t = cluster.hub().current();
    download(
        app::architecture::diagram::render_svg(&t, false, None),
        "image/svg+xml; charset=utf-8",
        "svg",
    )
}

async fn export_mermaid(State(cluster): State<Cluster>) -> Response {
    let t = cluster.hub().current();
    download(
        app::architecture::export::mermaid(&t),
        "text/vnd.mermaid; charset=utf-8",
        "mmd",
    )
}

async fn export_ascii(State(cluster): State<Cluster>) -> Response {
    let t = cluster.hub().current();
    download(
        app::architecture::export::ascii(&t),
        "text/plain; charset=utf-8",
        "txt",
    )
}
