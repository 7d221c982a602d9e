//! Originals, thumbnails and proxies for signed-in people: HTTP Range (so video seeks),
//! strong ETags (content hashes), and a Content-Disposition that cannot be abused by a
//! file name.

use axum::body::Body;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::TryStreamExt as _;
use serde::Deserialize;
use uuid::Uuid;

use super::Assets;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Assets: FromRef<S>,
{
    Router::new().route("/api/assets/{id}/{what}", get(download))
}

#[derive(Deserialize)]
struct Which {
    version: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct Found {
    id: Uuid,
    original_name: String,
    sha256: Option<String>,
    blob_key: Option<String>,
    mime: Option<String>,
    thumbnail_key: Option<String>,
    proxy_key: Option<String>,
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "No such file.\n").into_response()
}

async fn download(
    State(assets): State<Assets>,
    Path((asset, what)): Path<(String, String)>,
    Query(which): Query<Which>,
    headers: HeaderMap,
) -> Response {
    let Ok(asset) = Uuid::parse_str(&asset) else {
        return not_found();
    };
    let found: Result<Option<Found>, _> = sqlx::query_as(
        "select v.id, v.original_name, v.sha256, v.blob_key, v.mime, v.thumbnail_key, v.proxy_key
         from asset_versions v join assets a on a.id = v.asset_id
         where a.id = $1 and a.deleted_at is null and v.id = coalesce($2, a.current_version_id)",
    )
    .bind(asset)
    .bind(which.version)
    .fetch_optional(&assets.pool)
    .await;
    let found = match found {
        Ok(Some(f)) => f,
        Ok(None) => return not_found(),
        Err(err) => {
            tracing::warn!(error = %err, "download lookup failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "The database is not answering.\n",
            )
                .into_response();
        }
    };
    let (key, mime, etag, disposition) = match what.as_str() {
        "original" => (
            found.blob_key.clone(),
            found
                .mime
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            found.sha256.clone().unwrap_or_default(),
            content_disposition("attachment", &found.original_name),
        ),
        "thumbnail" => (
            found.thumbnail_key.clone(),
            "image/jpeg".into(),
            format!("{}-thumb", found.id),
            "inline".into(),
        ),
        "proxy" => (
            found.proxy_key.clone(),
            "video/mp4".into(),
            format!("{}-proxy", found.id),
            "inline".into(),
        ),
        _ => return not_found(),
    };
    let Some(key) = key else { return not_found() };
    let etag = format!("\"{etag}\"");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let size = match assets.storage.size(&key).await {
        Ok(size) => size,
        Err(err) => {
            tracing::error!(error = %err, key, "stored file missing");
            return not_found();
        }
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| parse_range(r, size));
    let (status, span) = match range {
        Some(Some(Ok(span))) => (StatusCode::PARTIAL_CONTENT, Some(span)),
        Some(Some(Err(()))) => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response()
        }
        // Several ranges or an unreadable header: serve the whole file, as RFC 9110 allows.
        Some(None) | None => (StatusCode::OK, None),
    };
    let result = match assets.storage.get_range(&key, span.clone()).await {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(error = %err, key, "reading a stored file failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Reading the file failed.\n",
            )
                .into_response();
        }
    };
    let length = span.as_ref().map_or(size, |r| r.end - r.start);
    let body = Body::from_stream(result.into_stream().map_err(std::io::Error::other));
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, mime);
    set(header::CONTENT_LENGTH, length.to_string());
    set(header::ETAG, etag);
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::CONTENT_DISPOSITION, disposition);
    set(header::CACHE_CONTROL, "private, no-cache".into());
    if let Some(span) = span {
        set(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", span.start, span.end - 1),
        );
    }
    res
}

/// One byte range of a file of `size` bytes: `None` when the header is not a single
/// range we serve, `Err` when it cannot be satisfied.
pub fn parse_range(header: &str, size: u64) -> Option<Result<std::ops::Range<u64>, ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        if suffix == 0 {
            return Some(Err(()));
        }
        size.saturating_sub(suffix)..size
    } else {
        let start: u64 = start.parse().ok()?;
        let end = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Some(Err(()));
        }
        start..end + 1
    };
    Some(Ok(range))
}

/// `attachment; filename="safe ascii"; filename*=UTF-8''percent-encoded`.
pub fn content_disposition(kind: &str, name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = base
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some(Ok(0..100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some(Ok(900..1000)));
        assert_eq!(parse_range("bytes=-100", 1000), Some(Ok(900..1000)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some(Ok(990..1000)));
        assert_eq!(parse_range("bytes=1000-", 1000), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
    }

    #[test]
    fn file_names_cannot_break_the_header() {
        let d = content_disposition("attachment", "../../evil\"\r\nX: y.mp4");
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert!(d.starts_with("attachment; filename=\"evil__"), "{d}");
        assert_eq!(
            content_disposition("attachment", "plan é.pdf"),
            "attachment; filename=\"plan _.pdf\"; filename*=UTF-8''plan%20%C3%A9.pdf"
        );
    }
}
