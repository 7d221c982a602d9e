//! One rule for every JSON and form body, whichever route reads it: at most
//! `max_body_bytes`, and no NUL character in any string (PostgreSQL's text cannot hold
//! one, and a query that tried would fail as a server error instead of a refusal).
//! Uploads (tus, with limits of its own) pass untouched.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use app::error::AppError;

use super::{errors, AppState};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Form,
    Unlabelled,
}

/// How to read the body of `req` for the checks, or `None` for bodies that are not
/// held to the limit: uploads (tus streams its bytes with limits of its own). A body
/// that says neither JSON nor form is still checked, as some handlers read JSON and
/// server functions read forms whatever the label says.
fn kind(req: &Request) -> Option<Kind> {
    let path = req.uri().path();
    if path == "/api/uploads" || path.starts_with("/api/uploads/") {
        return None;
    }
    // A workflow brought as a file (an image is binary), read by its handler with a
    // limit of its own.
    if path == "/api/workflows/import"
        || (path.starts_with("/api/workflows/") && path.ends_with("/versions"))
    {
        return None;
    }
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if essence == "application/x-www-form-urlencoded" {
        Some(Kind::Form)
    } else if essence == "application/json" || essence.ends_with("+json") {
        Some(Kind::Json)
    } else if req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        Some(Kind::Unlabelled)
    } else {
        None
    }
}

pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(kind) = kind(&req) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    let limit = state.config.max_body_bytes;
    let too_large = || {
        errors::for_path(
            &path,
            &AppError::TooLarge(format!(
                "The request body is larger than the limit of {limit} bytes."
            )),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        // Either past the limit while streaming, or the client went away (then nobody
        // reads this answer).
        return too_large();
    };
    if has_nul(kind, &bytes) {
        return errors::for_path(
            &path,
            &AppError::BadRequest("Text fields must not contain NUL characters.".into()),
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn has_nul(kind: Kind, bytes: &[u8]) -> bool {
    match kind {
        Kind::Form => {
            url::form_urlencoded::parse(bytes).any(|(k, v)| k.contains('\0') || v.contains('\0'))
        }
        // Unparseable JSON is the handler's to refuse, with its own words.
        Kind::Json => serde_json::from_slice::<Value>(bytes).is_ok_and(|v| value_has_nul(&v)),
        Kind::Unlabelled => {
            bytes.contains(&0)
                || has_nul(Kind::Json, bytes)
                || (serde_json::from_slice::<Value>(bytes).is_err() && has_nul(Kind::Form, bytes))
        }
    }
}

fn value_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(value_has_nul),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k.contains('\0') || value_has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_found_in_every_encoding_of_a_string() {
        assert!(has_nul(Kind::Form, b"q=a%00b"));
        assert!(has_nul(Kind::Form, b"a%00=1"));
        assert!(!has_nul(Kind::Form, b"q=a%2500b"));
        assert!(has_nul(Kind::Json, br#"{"q":"a\u0000b"}"#));
        assert!(has_nul(Kind::Json, br#"{"a":[{"b\u0000":1}]}"#));
        assert!(!has_nul(Kind::Json, br#"{"q":"a\\u0000b"}"#));
        assert!(!has_nul(Kind::Json, b"not json"));
        assert!(has_nul(Kind::Unlabelled, br#"{"q":"\u0000"}"#));
        assert!(has_nul(Kind::Unlabelled, b"search=%00"));
        assert!(has_nul(Kind::Unlabelled, b"a\0b"));
        assert!(!has_nul(Kind::Unlabelled, br#"{"q":"100%00"}"#));
    }
}
