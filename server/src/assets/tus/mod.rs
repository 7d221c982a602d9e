//! The tus 1.0.0 resumable-upload protocol under `/api/uploads`: core, creation (with
//! deferred length and with upload), expiration, checksum (sha1, sha256), termination
//! and concatenation. Bodies are streamed to a partial file whose size is the durable
//! offset: after a crash, HEAD reports the bytes actually stored.

mod error;
mod headers;
mod routes;
mod store;
mod writer;

use app::assets::UploadState;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub(super) use error::db as db_error;
pub use error::TusError;
pub use headers::parse_metadata;
pub use routes::router;

pub const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-defer-length,creation-with-upload,expiration,checksum,termination,concatenation";
const OCTET_STREAM: &str = "application/offset+octet-stream";
/// How long a PATCH holds an upload; refreshed while bytes flow, so a crashed holder
/// blocks the upload for at most this long.
const LEASE: Duration = Duration::from_secs(15);
/// A deferred-length PATCH without Content-Length is granted quota in steps this large
/// (a query per step), each granted before its bytes are written.
const GRANT_STEP: u64 = 4 * 1024 * 1024;

/// A row of `uploads`, as the protocol needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UploadRow {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub length: Option<i64>,
    pub received: i64,
    pub metadata_raw: Option<String>,
    pub concat: String,
    pub state: UploadState,
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
