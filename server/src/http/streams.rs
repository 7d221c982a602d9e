//! A cap on the live event streams one session (or token, or address) holds open at once:
//! each is an endless response, so without one a single client could hold any number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use app::backend::RequestAuth;
use app::error::AppError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt as _;
use tower_sessions::Session;

use super::errors;

/// Enough for a person with several tabs open on live pages.
pub const MAX_STREAMS_PER_SESSION: usize = 8;

#[derive(Clone, Default)]
pub struct StreamLimits(Arc<Mutex<HashMap<String, usize>>>);

/// Held by an open stream's body; gives its place back when the stream ends.
struct Permit {
    limits: StreamLimits,
    key: String,
}

impl StreamLimits {
    fn acquire(&self, key: String) -> Option<Permit> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= MAX_STREAMS_PER_SESSION {
            return None;
        }
        *count += 1;
        Some(Permit {
            limits: self.clone(),
            key,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.limits.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

fn key(req: &Request, session: &Session) -> String {
    let auth = req.extensions().get::<RequestAuth>();
    if let Some(token) = auth
        .and_then(|a| a.principal.as_ref())
        .and_then(|p| p.token.as_ref())
    {
        return format!("token:{}", token.id);
    }
    if let Some(id) = session.id() {
        return format!("session:{id}");
    }
    match auth.and_then(|a| a.client_addr) {
        Some(addr) => format!("addr:{addr}"),
        None => "anonymous".into(),
    }
}

pub async fn limit(
    State(limits): State<StreamLimits>,
    session: Session,
    req: Request,
    next: Next,
) -> Response {
    let key = key(&req, &session);
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        return response;
    }
    let Some(permit) = limits.acquire(key) else {
        return errors::for_path(
            &path,
            &AppError::TooManyRequests(format!(
                "At most {MAX_STREAMS_PER_SESSION} live views can be open at once; close some \
                 tabs and reload."
            )),
        );
    };
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}
