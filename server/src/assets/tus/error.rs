//! The tus error: a status and a message for the client, with the mapping from
//! database and storage failures to it.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::TUS_VERSION;

#[derive(Debug)]
pub struct TusError(pub(super) StatusCode, pub(super) String);

impl TusError {
    /// A writer found its lease taken over (it stalled past the lease): it must stop.
    pub(super) fn lease_lost() -> Self {
        Self::new(
            409,
            "This request stalled and another one took over the upload.",
        )
    }

    pub(super) fn new(status: u16, message: impl Into<String>) -> Self {
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

/// The database error as the client is told it; its own messages, but the same line
/// between "try again" and "our fault" as [`crate::db::app_error`].
pub(in crate::assets) fn db(err: sqlx::Error) -> TusError {
    if crate::db::is_unavailable(&err) {
        tracing::warn!(error = %err, "database unavailable during an upload");
        TusError::new(503, "The database is not answering; try again.")
    } else {
        tracing::error!(error = %err, "upload query failed");
        TusError::new(
            500,
            "Slate could not record the upload; the details are in its log.",
        )
    }
}

pub(super) fn io(err: std::io::Error) -> TusError {
    tracing::error!(error = %err, "upload storage failed");
    if err.raw_os_error() == Some(28) {
        TusError::new(507, "The server is out of disk space. What arrived is kept: resume when space is available.")
    } else {
        TusError::new(500, "Storing the upload failed.")
    }
}

pub(super) type TusResult<T> = Result<T, TusError>;
