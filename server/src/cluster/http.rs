//! HTTP routes of the architecture: the live change stream (Server-Sent Events: a
//! snapshot on connect, then changes; `Last-Event-ID` resumes) and the exports.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::hub::Start;
use crate::http::AppState;

pub fn router() -> Router<AppState> {
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
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let cluster = state.cluster.clone();
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
    let initial = futures::stream::iter(first.into_iter().map(Ok));
    let later =
        futures::stream::unfold((rx, sent, cluster), |(mut rx, sent, cluster)| async move {
            loop {
                match rx.recv().await {
                    Ok(c) if c.version <= sent => continue,
                    Ok(c) => {
                        let event = change_event(c.version, &c.json);
                        return Some((Ok(event), (rx, c.version, cluster)));
                    }
                    // Too slow to keep up: start over with the whole picture.
                    Err(RecvError::Lagged(_)) => {
                        let (start, rx) = cluster.hub().subscribe(None);
                        if let Start::Snapshot(t, json) = start {
                            let version = t.version;
                            return Some((
                                Ok(snapshot_event(version, json)),
                                (rx, version, cluster),
                            ));
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
    let stream = futures::StreamExt::chain(initial, later);
    Sse::new(futures::StreamExt::take_until(
        stream,
        crate::http::stopping(state.stopping.clone()),
    ))
    .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
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

async fn export_svg(State(state): State<AppState>) -> Response {
    let t = state.cluster.hub().current();
    download(
        app::architecture::diagram::render_svg(&t, false, None),
        "image/svg+xml; charset=utf-8",
        "svg",
    )
}

async fn export_mermaid(State(state): State<AppState>) -> Response {
    let t = state.cluster.hub().current();
    download(
        app::architecture::export::mermaid(&t),
        "text/vnd.mermaid; charset=utf-8",
        "mmd",
    )
}

async fn export_ascii(State(state): State<AppState>) -> Response {
    let t = state.cluster.hub().current();
    download(
        app::architecture::export::ascii(&t),
        "text/plain; charset=utf-8",
        "txt",
    )
}
