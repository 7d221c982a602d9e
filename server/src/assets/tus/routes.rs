//! The `/api/uploads` router and its handlers: OPTIONS, creation (plain, partial,
//! final), HEAD, PATCH (and the POST method override) and termination.

use app::assets::UploadState;
use std::collections::BTreeMap;

use app::backend::RequestAuth;
use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::json;
use uuid::Uuid;

use super::error::{db, io, TusError, TusResult};
use super::headers::{check_version, number, parse_metadata, text, upload_headers};
use super::store::{load, stored_offset};
use super::writer::append;
use super::{Concat, UploadRow, EXTENSIONS, OCTET_STREAM, TUS_VERSION};
use crate::assets::Assets;
use crate::audit::{self, Who};

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Assets: FromRef<S>,
{
    Router::new()
        .route("/api/uploads", post(create).options(options))
        .route(
            "/api/uploads/{id}",
            axum::routing::head(head_upload)
                .patch(patch)
                .delete(terminate)
                .post(method_override)
                .options(options),
        )
        .layer(axum::middleware::map_response(
            |mut res: Response| async move {
                res.headers_mut()
                    .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                res
            },
        ))
}

fn principal(auth: &RequestAuth) -> TusResult<app::accounts::Principal> {
    auth.principal
        .clone()
        .ok_or_else(|| TusError::new(401, "Sign in first."))
}

async fn options(State(state): State<Assets>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static("sha1,sha256"),
    );
    if let Ok(v) = HeaderValue::from_str(&state.config.max_upload_bytes.to_string()) {
        h.insert("tus-max-size", v);
    }
    res
}

async fn head_upload(
    State(state): State<Assets>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> TusResult<Response> {
    check_version(&headers)?;
    let who = principal(&auth)?;
    let row = load(&state, &id, who.user_id).await?;
    let offset = stored_offset(&state, &row).await?;
    let mut res = StatusCode::OK.into_response();
    upload_headers(&mut res, &row, offset);
    let h = res.headers_mut();
    match row.length {
        Some(len) => {
            h.insert("upload-length", HeaderValue::from(len));
        }
        None => {
            h.insert("upload-defer-length", HeaderValue::from_static("1"));
        }
    }
    if let Some(meta) = row
        .metadata_raw
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
    {
        h.insert("upload-metadata", meta);
    }
    match row.concat.as_str() {
        "partial" => {
            h.insert("upload-concat", HeaderValue::from_static("partial"));
        }
        "final" => {
            h.insert("upload-concat", HeaderValue::from_static("final"));
        }
        _ => {}
    }
    Ok(res)
}

async fn create(
    State(state): State<Assets>,
    Extension(auth): Extension<RequestAuth>,
    headers: HeaderMap,
    body: Body,
) -> TusResult<Response> {
    check_version(&headers)?;
    let who = principal(&auth)?;
    let assets = &state;
    let concat = text(&headers, "upload-concat").map(str::trim);
    let metadata_raw = text(&headers, "upload-metadata").map(str::to_owned);
    let metadata = match &metadata_raw {
        Some(raw) => parse_metadata(raw).map_err(|m| TusError::new(400, m))?,
        None => BTreeMap::new(),
    };

    if let Some(final_list) = concat.and_then(|c| c.strip_prefix("final;")) {
        return create_final(
            &state,
            &auth,
            who.user_id,
            final_list,
            metadata,
            metadata_raw,
        )
        .await;
    }
    let partial = match concat {
        None => false,
        Some("partial") => true,
        Some(other) => {
            return Err(TusError::new(
                400,
                format!("Upload-Concat \"{other}\" is not understood."),
            ))
        }
    };
    let length = number(&headers, "upload-length")?;
    let deferred = text(&headers, "upload-defer-length").map(str::trim);
    match (length, deferred) {
        (Some(_), Some(_)) => {
            return Err(TusError::new(
                400,
                "Send Upload-Length or Upload-Defer-Length, not both.",
            ))
        }
        (None, None) => {
            return Err(TusError::new(
                400,
                "Upload-Length (or Upload-Defer-Length: 1) is required.",
            ))
        }
        (None, Some(d)) if d != "1" => {
            return Err(TusError::new(400, "Upload-Defer-Length must be 1."))
        }
        _ => {}
    }
    let mut row = assets
        .create_upload(
            &Who::principal(&who, auth.client_addr),
            &who,
            length,
            &metadata,
            metadata_raw.as_deref(),
            if partial {
                Concat::Partial
            } else {
                Concat::None
            },
        )
        .await?;
    let mut offset = 0;
    let has_body = text(&headers, header::CONTENT_TYPE.as_str()) == Some(OCTET_STREAM);
    if has_body {
        match append(&state, &mut row, &headers, body, 0).await {
            Ok(reached) => offset = reached,
            Err(err) => {
                // The client never learned where this upload is: nothing to resume, so
                // nothing is left behind (no placeholder, no pending slot).
                assets.discard_upload(&row, UploadState::Terminated).await?;
                return Err(err);
            }
        }
    }
    let mut res = (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/uploads/{}", row.id))],
    )
        .into_response();
    upload_headers(&mut res, &row, offset);
    Ok(res)
}

async fn create_final(
    state: &Assets,
    auth: &RequestAuth,
    owner: Uuid,
    list: &str,
    metadata: BTreeMap<String, String>,
    metadata_raw: Option<String>,
) -> TusResult<Response> {
    let assets = &state;
    let mut parts: Vec<UploadRow> = Vec::new();
    for url in list.split_whitespace() {
        let id = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let row = load(assets, id, owner).await?;
        if parts.iter().any(|p| p.id == row.id) {
            return Err(TusError::new(
                400,
                format!(
                    "Upload {id} is listed more than once; each partial upload is joined once."
                ),
            ));
        }
        if row.concat != "partial" {
            return Err(TusError::new(
                400,
                format!("Upload {id} is not a partial upload."),
            ));
        }
        if row.state != UploadState::Complete {
            return Err(TusError::new(
                400,
                format!("Partial upload {id} is not complete yet."),
            ));
        }
        parts.push(row);
    }
    if parts.is_empty() {
        return Err(TusError::new(
            400,
            "Upload-Concat: final lists no partial uploads.",
        ));
    }
    let total: u64 = parts.iter().map(|p| p.received.max(0) as u64).sum();
    let ids: Vec<Uuid> = parts.iter().map(|p| p.id).collect();
    let who = principal(auth)?;
    // Checks the joined size against the maximum and the quota, and claims the parts.
    let row = assets
        .create_upload(
            &Who::principal(&who, auth.client_addr),
            &who,
            Some(total),
            &metadata,
            metadata_raw.as_deref(),
            Concat::Final(&ids),
        )
        .await?;
    let joined = async {
        let mut out = tokio::fs::File::create(assets.partial_path(row.id))
            .await
            .map_err(io)?;
        for part in &parts {
            let mut input = tokio::fs::File::open(assets.partial_path(part.id))
                .await
                .map_err(io)?;
            tokio::io::copy(&mut input, &mut out).await.map_err(io)?;
        }
        out.sync_all().await.map_err(io)
    }
    .await;
    if let Err(err) = joined {
        // The parts are released and stay as they were: the client may try again.
        assets.discard_upload(&row, UploadState::Terminated).await?;
        return Err(err);
    }
    assets.complete(row.id, total as i64).await?;
    assets.retire_joined(row.id).await?;
    let mut res = (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/uploads/{}", row.id))],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        res.headers_mut().insert("upload-offset", v);
    }
    Ok(res)
}

async fn method_override(
    State(state): State<Assets>,
    auth: Extension<RequestAuth>,
    path: Path<String>,
    headers: HeaderMap,
    body: Body,
) -> TusResult<Response> {
    match text(&headers, "x-http-method-override")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("PATCH") => patch(State(state), auth, path, headers, body).await,
        Some("DELETE") => terminate(State(state), auth, path, headers).await,
        Some("HEAD") => head_upload(State(state), auth, path, headers).await,
        _ => Err(TusError::new(
            405,
            "POST on an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD.",
        )),
    }
}

async fn patch(
    State(state): State<Assets>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> TusResult<Response> {
    check_version(&headers)?;
    if text(&headers, header::CONTENT_TYPE.as_str()) != Some(OCTET_STREAM) {
        return Err(TusError::new(
            415,
            format!("PATCH bodies must be {OCTET_STREAM}."),
        ));
    }
    let who = principal(&auth)?;
    let mut row = load(&state, &id, who.user_id).await?;
    if row.concat == "final" {
        return Err(TusError::new(
            403,
            "A final (concatenated) upload cannot be patched.",
        ));
    }
    let offset = number(&headers, "upload-offset")?
        .ok_or_else(|| TusError::new(400, "Upload-Offset is required."))?;
    let current = stored_offset(&state, &row).await?;
    if offset != current {
        return Err(TusError::new(
            409,
            format!("Upload-Offset {offset} does not match the stored offset {current}."),
        ));
    }
    if let Some(len) = number(&headers, "upload-length")? {
        match row.length {
            Some(existing) if existing as u64 != len => {
                return Err(TusError::new(400, "Upload-Length cannot change once set."))
            }
            Some(_) => {}
            None => state.declare_length(&mut row, len).await?,
        }
    }
    if row.state == UploadState::Complete {
        // Nothing more can be appended; an empty PATCH at the end is harmless.
        let mut res = StatusCode::NO_CONTENT.into_response();
        upload_headers(&mut res, &row, current);
        return Ok(res);
    }
    let new_offset = append(&state, &mut row, &headers, body, offset).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    upload_headers(&mut res, &row, new_offset);
    Ok(res)
}

async fn terminate(
    State(state): State<Assets>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> TusResult<Response> {
    check_version(&headers)?;
    let who = principal(&auth)?;
    let row = load(&state, &id, who.user_id).await?;
    let done = || {
        TusError::new(
            409,
            "This upload is complete; it can no longer be cancelled.",
        )
    };
    if row.state != UploadState::Receiving {
        return Err(done());
    }
    // Taken and kept: no PATCH starts on what is being removed.
    let Some((lease, _)) = state.take_lease(row.id).await? else {
        return Err(TusError::new(
            423,
            "A request is writing to this upload; try again shortly.",
        ));
    };
    // Read again under the lease: a PATCH may have finished it meanwhile.
    let row = load(&state, &id, who.user_id).await?;
    if row.state != UploadState::Receiving || row.length == Some(row.received) {
        state.release_lease(row.id, lease).await?;
        return Err(done());
    }
    state.discard_upload(&row, UploadState::Terminated).await?;
    audit::record(
        &state.pool,
        &Who::principal(&who, auth.client_addr),
        "upload.terminate",
        Some(format!("upload:{}", row.id)),
        json!({ "received": row.received }),
    )
    .await
    .map_err(db)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
