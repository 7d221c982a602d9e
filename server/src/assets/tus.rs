//! The tus 1.0.0 resumable-upload protocol under `/api/uploads`: core, creation (with
//! deferred length and with upload), expiration, checksum (sha1, sha256), termination
//! and concatenation. Bodies are streamed to a partial file whose size is the durable
//! offset: after a crash, HEAD reports the bytes actually stored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use app::backend::RequestAuth;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::json;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use super::{clean_name, Assets, Holdings};
use crate::audit::{self, Who};
use crate::http::AppState;

pub const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-defer-length,creation-with-upload,expiration,checksum,termination,concatenation";
const OCTET_STREAM: &str = "application/offset+octet-stream";
/// How long a PATCH holds an upload; refreshed while bytes flow, so a crashed holder
/// blocks the upload for at most this long.
const LEASE: Duration = Duration::from_secs(15);
/// A deferred-length PATCH without Content-Length is granted quota in steps this large
/// (a query per step), each granted before its bytes are written.
const GRANT_STEP: u64 = 4 * 1024 * 1024;

pub fn router() -> Router<AppState> {
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

#[derive(Debug)]
pub struct TusError(StatusCode, String);

impl TusError {
    pub(super) fn from_db() -> Self {
        Self::new(503, "The database is not answering; try again.")
    }

    /// A writer found its lease taken over (it stalled past the lease): it must stop.
    fn lease_lost() -> Self {
        Self::new(
            409,
            "This request stalled and another one took over the upload.",
        )
    }

    fn new(status: u16, message: impl Into<String>) -> Self {
        Self(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            message.into(),
        )
    }
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        let mut res = (self.0, format!("{}\n", self.1)).into_response();
        if self.0 == StatusCode::PRECONDITION_FAILED {
            res.headers_mut()
                .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        }
        res
    }
}

fn db(err: sqlx::Error) -> TusError {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            tracing::warn!(error = %err, "database unavailable during an upload");
            TusError::new(503, "The database is not answering; try again.")
        }
        _ => {
            tracing::error!(error = %err, "upload query failed");
            TusError::new(
                500,
                "Slate could not record the upload; the details are in its log.",
            )
        }
    }
}

fn io(err: std::io::Error) -> TusError {
    tracing::error!(error = %err, "upload storage failed");
    if err.raw_os_error() == Some(28) {
        TusError::new(507, "The server is out of disk space. What arrived is kept: resume when space is available.")
    } else {
        TusError::new(500, "Storing the upload failed.")
    }
}

type TusResult<T> = Result<T, TusError>;

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_version(headers: &HeaderMap) -> TusResult<()> {
    match text(headers, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        Some(other) => Err(TusError::new(
            412,
            format!("Tus-Resumable {other} is not supported; use {TUS_VERSION}."),
        )),
        None => Err(TusError::new(412, "The Tus-Resumable header is missing.")),
    }
}

fn number(headers: &HeaderMap, name: &str) -> TusResult<Option<u64>> {
    text(headers, name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| TusError::new(400, format!("{name} must be a non-negative integer.")))
        })
        .transpose()
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent).
pub fn parse_metadata(raw: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split(' ');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        if key.is_empty() || parts.next().is_some() {
            return Err(format!(
                "Upload-Metadata pair \"{pair}\" is not \"key base64value\"."
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| format!("Upload-Metadata value for \"{key}\" is not valid base64."))?;
        out.insert(key.to_owned(), String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(out)
}

fn http_date(at: DateTime<Utc>) -> String {
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn principal(auth: &RequestAuth) -> TusResult<app::accounts::Principal> {
    auth.principal
        .clone()
        .ok_or_else(|| TusError::new(401, "Sign in first."))
}

async fn options(State(state): State<AppState>) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static(EXTENSIONS));
    h.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static("sha1,sha256"),
    );
    if let Ok(v) = HeaderValue::from_str(&state.assets.config.max_upload_bytes.to_string()) {
        h.insert("tus-max-size", v);
    }
    res
}

/// A row of `uploads`, as the protocol needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub length: Option<i64>,
    pub received: i64,
    pub metadata_raw: Option<String>,
    pub concat: String,
    pub state: String,
    pub version_id: Option<Uuid>,
    pub expires_at: DateTime<Utc>,
    /// The final upload this finished partial is being joined into.
    pub final_id: Option<Uuid>,
}

pub(super) const UPLOAD_COLUMNS: &str =
    "id, owner_id, length, received, metadata_raw, concat, state, version_id, expires_at, final_id";

/// What kind of upload is being created.
#[derive(Clone, Copy)]
enum Concat<'a> {
    None,
    Partial,
    /// Joins these finished partials, which the creation claims.
    Final(&'a [Uuid]),
}

impl Concat<'_> {
    fn column(self) -> &'static str {
        match self {
            Concat::None => "none",
            Concat::Partial => "partial",
            Concat::Final(_) => "final",
        }
    }
}

/// Finds an upload of this owner: someone else's is "not found", never "forbidden".
async fn load(assets: &Assets, id: &str, owner: Uuid) -> TusResult<UploadRow> {
    let not_found = || TusError::new(404, "No such upload.");
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let row: Option<UploadRow> = sqlx::query_as(&format!(
        "select {UPLOAD_COLUMNS} from uploads where id = $1 and owner_id = $2"
    ))
    .bind(id)
    .bind(owner)
    .fetch_optional(&assets.pool)
    .await
    .map_err(db)?;
    let row = row.ok_or_else(not_found)?;
    match row.state.as_str() {
        "terminated" => Err(not_found()),
        "expired" => Err(TusError::new(410, "This upload expired; start it again.")),
        "receiving" if row.expires_at < Utc::now() => {
            Err(TusError::new(410, "This upload expired; start it again."))
        }
        _ => Ok(row),
    }
}

/// The durable offset: what the partial file holds (never beyond the length).
async fn stored_offset(assets: &Assets, row: &UploadRow) -> TusResult<u64> {
    if row.state != "receiving" {
        return Ok(row.received as u64);
    }
    let on_disk = match tokio::fs::metadata(assets.partial_path(row.id)).await {
        Ok(meta) => meta.len(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(io(err)),
    };
    Ok(match row.length {
        Some(len) => on_disk.min(len as u64),
        None => on_disk,
    })
}

fn upload_headers(res: &mut Response, row: &UploadRow, offset: u64) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&offset.to_string()) {
        h.insert("upload-offset", v);
    }
    if row.state == "receiving" {
        if let Ok(v) = HeaderValue::from_str(&http_date(row.expires_at)) {
            h.insert("upload-expires", v);
        }
    }
}

async fn head_upload(
    State(state): State<AppState>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> TusResult<Response> {
    check_version(&headers)?;
    let who = principal(&auth)?;
    let row = load(&state.assets, &id, who.user_id).await?;
    let offset = stored_offset(&state.assets, &row).await?;
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
    State(state): State<AppState>,
    Extension(auth): Extension<RequestAuth>,
    headers: HeaderMap,
    body: Body,
) -> TusResult<Response> {
    check_version(&headers)?;
    let who = principal(&auth)?;
    let assets = &state.assets;
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
                assets.discard_upload(&row, "terminated").await?;
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
    state: &AppState,
    auth: &RequestAuth,
    owner: Uuid,
    list: &str,
    metadata: BTreeMap<String, String>,
    metadata_raw: Option<String>,
) -> TusResult<Response> {
    let assets = &state.assets;
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
        if row.state != "complete" {
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
        assets.discard_upload(&row, "terminated").await?;
        return Err(err);
    }
    assets.complete(row.id, total as i64).await?;
    let joined: Vec<Uuid> = sqlx::query_scalar(
        "update uploads set state = 'terminated', updated_at = now()
         where final_id = $1 and state = 'complete' returning id",
    )
    .bind(row.id)
    .fetch_all(&assets.pool)
    .await
    .map_err(db)?;
    for part in joined {
        let _ = tokio::fs::remove_file(assets.partial_path(part)).await;
    }
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
    State(state): State<AppState>,
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
    State(state): State<AppState>,
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
    let mut row = load(&state.assets, &id, who.user_id).await?;
    if row.concat == "final" {
        return Err(TusError::new(
            403,
            "A final (concatenated) upload cannot be patched.",
        ));
    }
    let offset = number(&headers, "upload-offset")?
        .ok_or_else(|| TusError::new(400, "Upload-Offset is required."))?;
    let current = stored_offset(&state.assets, &row).await?;
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
            None => state.assets.declare_length(&mut row, len).await?,
        }
    }
    if row.state == "complete" {
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

enum Checksum {
    Sha1(sha1::Sha1, Vec<u8>),
    Sha256(sha2::Sha256, Vec<u8>),
}

fn parse_checksum(headers: &HeaderMap) -> TusResult<Option<Checksum>> {
    let Some(value) = text(headers, "upload-checksum") else {
        return Ok(None);
    };
    let (algo, digest) = value.trim().split_once(' ').ok_or_else(|| {
        TusError::new(
            400,
            "Upload-Checksum must be \"<algorithm> <base64 digest>\".",
        )
    })?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| TusError::new(400, "The Upload-Checksum digest is not valid base64."))?;
    match algo.to_ascii_lowercase().as_str() {
        "sha1" => Ok(Some(Checksum::Sha1(sha1::Sha1::new(), digest))),
        "sha256" => Ok(Some(Checksum::Sha256(sha2::Sha256::new(), digest))),
        other => Err(TusError::new(
            400,
            format!("Checksum algorithm \"{other}\" is not supported; use sha1 or sha256."),
        )),
    }
}

/// How far a PATCH may write.
#[derive(Clone, Copy)]
enum Limit {
    /// The upload's declared length.
    Length(u64),
    /// Deferred length: the end the owner's quota granted this PATCH so far; more is
    /// asked for, before it is written, as the body goes past it.
    Granted(u64),
}

/// Appends the request body at the stored offset, which must be `expected`, and returns
/// the new offset. Holds the upload's lease meanwhile (a second PATCH gets 423).
async fn append(
    state: &AppState,
    row: &mut UploadRow,
    headers: &HeaderMap,
    body: Body,
    expected: u64,
) -> TusResult<u64> {
    let assets = &state.assets;
    let mut checksum = parse_checksum(headers)?;
    let declared = number(headers, header::CONTENT_LENGTH.as_str())?;
    let Some((lease, length)) = assets.take_lease(row.id).await? else {
        return Err(TusError::new(
            423,
            "Another request is writing to this upload; try again shortly.",
        ));
    };
    // Everything that touches the file happens under the lease; the last step records
    // the new offset and lets go in one statement.
    let outcome = async {
        // Read under the lease: no other request moves the offset or sets the length now.
        row.length = length;
        let start = stored_offset(assets, row).await?;
        if start != expected {
            return Err(TusError::new(
                409,
                format!("Upload-Offset {expected} does not match the stored offset {start}."),
            ));
        }
        let limit = match row.length {
            Some(len) => {
                if let Some(body_len) = declared {
                    if start + body_len > len as u64 {
                        return Err(TusError::new(
                            413,
                            format!("The body would go past the upload's length ({len} bytes)."),
                        ));
                    }
                }
                Limit::Length(len as u64)
            }
            // A body of known size is granted whole before a byte is written.
            None => Limit::Granted(match declared {
                Some(body_len) => assets.grant(row, lease, start, start + body_len, 0).await?,
                None => start,
            }),
        };
        let new_offset =
            write_body(assets, row, lease, start, limit, body, checksum.as_mut()).await?;
        if let Some(sum) = checksum {
            let ok = match sum {
                Checksum::Sha1(h, want) => h.finalize().as_slice() == want.as_slice(),
                Checksum::Sha256(h, want) => h.finalize().as_slice() == want.as_slice(),
            };
            if !ok {
                truncate(assets, row.id, start).await?;
                return Err(TusError::new(
                    460,
                    "Checksum mismatch: the chunk was discarded.",
                ));
            }
        }
        let complete = row.length.is_some_and(|len| new_offset == len as u64);
        if complete {
            let done = tokio::fs::File::open(assets.partial_path(row.id))
                .await
                .map_err(io)?;
            done.sync_all().await.map_err(io)?;
        }
        Ok((new_offset, complete))
    }
    .await;
    let (new_offset, complete) = match outcome {
        Ok(done) => done,
        Err(err) => {
            assets.release_lease(row.id, lease).await?;
            return Err(err);
        }
    };
    assets.record_offset(row, new_offset, lease).await?;
    if complete {
        assets.complete(row.id, new_offset as i64).await?;
        row.state = "complete".into();
    }
    Ok(new_offset)
}

async fn truncate(assets: &Assets, id: Uuid, to: u64) -> TusResult<()> {
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .open(assets.partial_path(id))
        .await
        .map_err(io)?;
    file.set_len(to).await.map_err(io)?;
    file.sync_all().await.map_err(io)
}

/// Streams the body into the partial file. Returns the offset reached. A body cut off
/// by the client keeps what arrived (unless a checksum was promised).
async fn write_body(
    assets: &Assets,
    row: &UploadRow,
    lease: Uuid,
    start: u64,
    mut limit: Limit,
    body: Body,
    mut checksum: Option<&mut Checksum>,
) -> TusResult<u64> {
    let path = assets.partial_path(row.id);
    let file = tokio::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .await
        .map_err(io)?;
    // Network chunks are small; write to disk in large blocks.
    let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
    let mut stream = body.into_data_stream();
    let mut offset = start;
    let mut lease_renewed = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(err) => {
                tracing::info!(upload = %row.id, error = %err, kept = offset - start, "upload body interrupted");
                file.flush().await.map_err(io)?;
                if checksum.is_some() {
                    truncate(assets, row.id, start).await?;
                    return Err(TusError::new(
                        400,
                        "The body was cut off before its checksum could be verified.",
                    ));
                }
                return Ok(offset);
            }
        };
        let end = offset + chunk.len() as u64;
        match limit {
            Limit::Length(len) if end > len => {
                drop(file);
                truncate(assets, row.id, start).await?;
                return Err(TusError::new(
                    413,
                    "The body goes past the upload's length; nothing was kept.",
                ));
            }
            Limit::Granted(granted) if end > granted => {
                match assets.grant(row, lease, start, end, GRANT_STEP).await {
                    Ok(more) => limit = Limit::Granted(more),
                    Err(err) => {
                        drop(file);
                        truncate(assets, row.id, start).await?;
                        return Err(err);
                    }
                }
            }
            _ => {}
        }
        // Never write without a live lease: renew well before it can lapse.
        if lease_renewed.elapsed() > LEASE / 3 {
            assets.renew_lease(row.id, lease).await?;
            lease_renewed = Instant::now();
        }
        if let Err(err) = file.write_all(&chunk).await {
            let _ = file.flush().await;
            return Err(io(err));
        }
        match checksum.as_deref_mut() {
            Some(Checksum::Sha1(h, _)) => h.update(&chunk),
            Some(Checksum::Sha256(h, _)) => h.update(&chunk),
            None => {}
        }
        offset += chunk.len() as u64;
    }
    // No fsync per PATCH: the file's size is the offset, and a killed process loses
    // nothing the kernel has. The finished file is synced once, before processing.
    file.flush().await.map_err(io)?;
    Ok(offset)
}

async fn terminate(
    State(state): State<AppState>,
    Extension(auth): Extension<RequestAuth>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> TusResult<Response> {
    check_version(&headers)?;
    let who = principal(&auth)?;
    let row = load(&state.assets, &id, who.user_id).await?;
    let done = || {
        TusError::new(
            409,
            "This upload is complete; it can no longer be cancelled.",
        )
    };
    if row.state != "receiving" {
        return Err(done());
    }
    // Taken and kept: no PATCH starts on what is being removed.
    let Some((lease, _)) = state.assets.take_lease(row.id).await? else {
        return Err(TusError::new(
            423,
            "A request is writing to this upload; try again shortly.",
        ));
    };
    // Read again under the lease: a PATCH may have finished it meanwhile.
    let row = load(&state.assets, &id, who.user_id).await?;
    if row.state != "receiving" || row.length == Some(row.received) {
        state.assets.release_lease(row.id, lease).await?;
        return Err(done());
    }
    state.assets.discard_upload(&row, "terminated").await?;
    audit::record(
        &state.assets.pool,
        &Who::principal(&who, auth.client_addr),
        "upload.terminate",
        Some(format!("upload:{}", row.id)),
        json!({ "received": row.received }),
    )
    .await
    .map_err(db)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

impl Assets {
    /// Takes the upload for one PATCH, with its length as it stands now; `None` when
    /// another request holds it.
    async fn take_lease(&self, id: Uuid) -> TusResult<Option<(Uuid, Option<i64>)>> {
        let token = Uuid::now_v7();
        let taken: Option<Option<i64>> = sqlx::query_scalar(
            "update uploads set lease_token = $3, lease_until = now() + make_interval(secs => $2), reserved = 0
             where id = $1 and (lease_until is null or lease_until < now()) returning length",
        )
        .bind(id)
        .bind(LEASE.as_secs_f64())
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(taken.map(|length| (token, length)))
    }

    /// Extends the lease; fails when it was lost (the writer must stop).
    async fn renew_lease(&self, id: Uuid, token: Uuid) -> TusResult<()> {
        let renewed = sqlx::query(
            "update uploads set lease_until = now() + make_interval(secs => $2) where id = $1 and lease_token = $3",
        )
        .bind(id)
        .bind(LEASE.as_secs_f64())
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if renewed.rows_affected() == 1 {
            Ok(())
        } else {
            Err(TusError::lease_lost())
        }
    }

    async fn release_lease(&self, id: Uuid, token: Uuid) -> TusResult<()> {
        sqlx::query("update uploads set lease_until = null, lease_token = null, reserved = 0 where id = $1 and lease_token = $2")
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Records the offset reached, extends the expiry, and releases the PATCH's lease.
    async fn record_offset(&self, row: &mut UploadRow, offset: u64, lease: Uuid) -> TusResult<()> {
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.upload_expiry)
                .unwrap_or(chrono::Duration::hours(24));
        sqlx::query(
            "update uploads set received = $2, expires_at = $3, updated_at = now(), lease_until = null, lease_token = null, reserved = 0
             where id = $1 and lease_token = $4",
        )
        .bind(row.id)
        .bind(offset as i64)
        .bind(expires)
        .bind(lease)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        row.received = offset as i64;
        row.expires_at = expires;
        Ok(())
    }

    /// Refuses a total size over the maximum, or one that would take the owner past
    /// their quota beside what they already hold.
    pub(crate) fn check_total(&self, held: Holdings, size: u64) -> TusResult<()> {
        let max = self.config.max_upload_bytes;
        if size > max {
            return Err(TusError::new(
                413,
                format!(
                    "The file ({size} bytes) is larger than the maximum upload size ({max} bytes)."
                ),
            ));
        }
        if let Some(quota) = self.config.quota_bytes {
            if held.bytes.saturating_add(size) > quota {
                return Err(TusError::new(
                    413,
                    format!(
                        "This upload would exceed your storage quota: {} of {quota} bytes are in use.",
                        held.bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Starts a transaction that holds the owner's upload accounting: creations, declared
    /// lengths, grants and joins of one person run one at a time, so requests sent at
    /// once cannot together pass the quota or the cap. Returns what the owner holds
    /// apart from `except`.
    pub(crate) async fn lock_holdings(
        &self,
        owner: Uuid,
        except: &[Uuid],
    ) -> TusResult<(sqlx::Transaction<'static, sqlx::Postgres>, Holdings)> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // `no key update` leaves rows that reference the user (audit, uploads) insertable.
        sqlx::query("select 1 from users where id = $1 for no key update")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let held = Assets::holdings(&mut tx, owner, except).await.map_err(db)?;
        Ok((tx, held))
    }

    /// Lets a PATCH of a deferred-length upload, which holds `lease`, write up to `need`
    /// bytes in all, counted toward the quota before they are written; returns the end
    /// it may write to (up to `step` beyond `need` when the quota allows, to save queries).
    async fn grant(
        &self,
        row: &UploadRow,
        lease: Uuid,
        start: u64,
        need: u64,
        step: u64,
    ) -> TusResult<u64> {
        let kept = |err: TusError| {
            TusError(
                err.0,
                format!(
                    "{} This request's bytes were not kept; the {start} bytes stored before it are.",
                    err.1
                ),
            )
        };
        let max = self.config.max_upload_bytes;
        if need > max {
            return Err(kept(TusError::new(
                413,
                format!("The upload would reach {need} bytes, more than the maximum upload size ({max} bytes)."),
            )));
        }
        let Some(quota) = self.config.quota_bytes else {
            return Ok(max);
        };
        let (mut tx, held) = self.lock_holdings(row.owner_id, &[row.id]).await?;
        self.check_total(held, need).map_err(kept)?;
        let granted = need.saturating_add(step).min(max).min(quota - held.bytes);
        let updated =
            sqlx::query("update uploads set reserved = $3 where id = $1 and lease_token = $2")
                .bind(row.id)
                .bind(lease)
                .bind(granted as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        if updated.rows_affected() != 1 {
            return Err(TusError::lease_lost());
        }
        tx.commit().await.map_err(db)?;
        Ok(granted)
    }

    /// Sets a deferred length (`Upload-Length` on a PATCH) once it fits the maximum and
    /// the quota; anything refused changes nothing.
    async fn declare_length(&self, row: &mut UploadRow, len: u64) -> TusResult<()> {
        self.check_total(Holdings::default(), len)?;
        let (mut tx, held) = self.lock_holdings(row.owner_id, &[row.id]).await?;
        let (length, writing): (Option<i64>, bool) = sqlx::query_as(
            "select length, coalesce(lease_until > now(), false) from uploads where id = $1 for update",
        )
        .bind(row.id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        match length {
            Some(existing) if existing as u64 != len => {
                return Err(TusError::new(400, "Upload-Length cannot change once set."))
            }
            Some(_) => {}
            None => {
                if writing {
                    return Err(TusError::new(
                        423,
                        "Another request is writing to this upload; try again shortly.",
                    ));
                }
                if len < stored_offset(self, row).await? {
                    return Err(TusError::new(
                        400,
                        "Upload-Length is smaller than what is already stored.",
                    ));
                }
                self.check_total(held, len)?;
                sqlx::query("update uploads set length = $2, updated_at = now() where id = $1")
                    .bind(row.id)
                    .bind(len as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
            }
        }
        row.length = Some(len as i64);
        Ok(())
    }

    async fn create_upload(
        &self,
        who: &Who,
        uploader: &app::accounts::Principal,
        length: Option<u64>,
        metadata: &BTreeMap<String, String>,
        metadata_raw: Option<&str>,
        concat: Concat<'_>,
    ) -> TusResult<UploadRow> {
        let owner = uploader.user_id;
        let id = Uuid::now_v7();
        let expires = Utc::now()
            + chrono::Duration::from_std(self.config.upload_expiry)
                .unwrap_or(chrono::Duration::hours(24));
        let name = clean_name(
            metadata
                .get("filename")
                .or_else(|| metadata.get("name"))
                .map(String::as_str)
                .unwrap_or(""),
        );
        let parts = match concat {
            Concat::Final(parts) => parts,
            Concat::None | Concat::Partial => &[],
        };
        if let Some(len) = length {
            self.check_total(Holdings::default(), len)?;
        }
        // The parts of a final are counted already; the joined file takes their place.
        let (mut tx, held) = self.lock_holdings(owner, parts).await?;
        if let (Some(cap), Concat::None | Concat::Partial) = (self.config.max_pending, concat) {
            if held.pending >= cap {
                return Err(TusError::new(
                    429,
                    format!(
                        "You have {} unfinished uploads, the most one person may have at once; \
                         finish or cancel one first.",
                        held.pending
                    ),
                ));
            }
        }
        if let Some(len) = length {
            self.check_total(held, len)?;
        }
        let partial = matches!(concat, Concat::Partial);
        let version_id = if partial {
            None
        } else {
            let target = match metadata.get("asset") {
                Some(asset) => {
                    let asset = Uuid::parse_str(asset.trim()).map_err(|_| {
                        TusError::new(400, "The \"asset\" metadata is not an asset id.")
                    })?;
                    // Locked until commit: versions of one asset are numbered one at a
                    // time, whoever adds them.
                    let found: Option<(Uuid,)> = sqlx::query_as(
                        "select owner_id from assets where id = $1 and deleted_at is null for update",
                    )
                    .bind(asset)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    let (asset_owner,) = found.ok_or_else(|| {
                        TusError::new(404, "The asset for this new version does not exist.")
                    })?;
                    if asset_owner != owner && !uploader.has(app::accounts::Role::Lead) {
                        return Err(TusError::new(
                            403,
                            "Only the asset's owner, a lead or an admin can add a version.",
                        ));
                    }
                    Some(asset)
                }
                None => None,
            };
            let asset_id = match target {
                Some(asset) => asset,
                None => {
                    let asset = Uuid::now_v7();
                    sqlx::query("insert into assets (id, owner_id, name, state) values ($1, $2, $3, 'uploading')")
                        .bind(asset)
                        .bind(owner)
                        .bind(&name)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    asset
                }
            };
            let version = Uuid::now_v7();
            sqlx::query(
                "insert into asset_versions (id, asset_id, number, state, original_name, created_by)
                 values ($1, $2, (select coalesce(max(number), 0) + 1 from asset_versions where asset_id = $2), 'uploading', $3, $4)",
            )
            .bind(version)
            .bind(asset_id)
            .bind(&name)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Some(version)
        };
        // PostgreSQL's jsonb cannot hold NUL characters; people's metadata can.
        let cleaned: BTreeMap<&String, String> = metadata
            .iter()
            .map(|(k, v)| (k, v.replace('\0', "\u{FFFD}")))
            .collect();
        let metadata_json = serde_json::to_value(cleaned).unwrap_or_default();
        let row: UploadRow = sqlx::query_as(&format!(
            "insert into uploads (id, owner_id, length, metadata, metadata_raw, concat, state, version_id, expires_at)
             values ($1, $2, $3, $4, $5, $6, 'receiving', $7, $8) returning {UPLOAD_COLUMNS}"
        ))
        .bind(id)
        .bind(owner)
        .bind(length.map(|l| l as i64))
        .bind(metadata_json)
        .bind(metadata_raw)
        .bind(concat.column())
        .bind(version_id)
        .bind(expires)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if !parts.is_empty() {
            let claimed = sqlx::query(
                "update uploads set final_id = $1, updated_at = now()
                 where id = any($2) and owner_id = $3 and concat = 'partial' and state = 'complete'
                   and final_id is null",
            )
            .bind(id)
            .bind(parts)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if claimed.rows_affected() != parts.len() as u64 {
                return Err(TusError::new(
                    409,
                    "A partial upload listed is already being joined into another upload.",
                ));
            }
        }
        audit::record(
            &mut *tx,
            who,
            "upload.create",
            Some(format!("upload:{id}")),
            json!({ "name": name, "length": length, "concat": concat.column(), "parts": parts }),
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        tokio::fs::File::create(self.partial_path(id))
            .await
            .map_err(io)?;
        Ok(row)
    }

    /// Marks an upload complete and hands its version to processing.
    async fn complete(&self, id: Uuid, size: i64) -> TusResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let version: Option<Option<Uuid>> = sqlx::query_scalar(
            "update uploads set state = 'complete', received = $2, completed_at = now(), updated_at = now()
             where id = $1 and state = 'receiving' returning version_id",
        )
        .bind(id)
        .bind(size)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(Some(version)) = version {
            sqlx::query("update asset_versions set state = 'processing', size = $2, updated_at = now() where id = $1")
                .bind(version)
                .bind(size)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(
                "update assets set state = 'processing', updated_at = now()
                 where id = (select asset_id from asset_versions where id = $1) and current_version_id is null",
            )
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        self.wake.notify_one();
        if let Some(Some(version)) = version {
            if let Ok(asset) =
                sqlx::query_scalar::<_, Uuid>("select asset_id from asset_versions where id = $1")
                    .bind(version)
                    .fetch_one(&self.pool)
                    .await
            {
                self.changed(asset).await;
            }
        }
        Ok(())
    }

    /// Removes an unfinished upload's data and the placeholder asset it created.
    pub(super) async fn discard_upload(&self, row: &UploadRow, new_state: &str) -> TusResult<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A partial being joined keeps its data until the join ends.
        let discarded = sqlx::query(
            "update uploads set state = $2, version_id = null, updated_at = now()
             where id = $1 and final_id is null",
        )
        .bind(row.id)
        .bind(new_state)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if discarded.rows_affected() != 1 {
            return Err(TusError::new(
                409,
                "This partial upload is being joined into another upload.",
            ));
        }
        // A final that ends unfinished gives its parts back.
        sqlx::query(
            "update uploads set final_id = null where final_id = $1 and state = 'complete'",
        )
        .bind(row.id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(version) = row.version_id {
            let asset: Option<Uuid> = sqlx::query_scalar("delete from asset_versions where id = $1 and state = 'uploading' returning asset_id")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(asset) = asset {
                sqlx::query("delete from assets where id = $1 and not exists (select 1 from asset_versions where asset_id = $1)")
                    .bind(asset)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        match tokio::fs::remove_file(self.partial_path(row.id)).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_decode_and_bad_base64_is_refused() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert!(parse_metadata("filename not*base64").is_err());
        assert!(parse_metadata("a b c").is_err());
        assert!(parse_metadata("").unwrap().is_empty());
    }

    #[test]
    fn dates_are_rfc_7231() {
        let at = DateTime::parse_from_rfc3339("2026-11-26T08:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(http_date(at), "Thu, 26 Nov 2026 08:05:09 GMT");
    }

    #[test]
    fn only_tus_1_0_0_is_spoken() {
        let mut h = HeaderMap::new();
        assert_eq!(
            check_version(&h).unwrap_err().0,
            StatusCode::PRECONDITION_FAILED
        );
        h.insert("tus-resumable", HeaderValue::from_static("0.2.2"));
        assert_eq!(
            check_version(&h).unwrap_err().0,
            StatusCode::PRECONDITION_FAILED
        );
        h.insert("tus-resumable", HeaderValue::from_static("1.0.0"));
        assert!(check_version(&h).is_ok());
    }
}
