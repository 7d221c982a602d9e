//! The one error type that crosses the network between the browser and the server.
//! It keeps its meaning (kind and a safe message) and maps to an HTTP status.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// What went wrong, in words that are safe to show to the person who asked.
/// Details that are not safe (SQL, paths, peers) go to the server log only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A request that could not be read at all (malformed address, undecodable
    /// arguments, characters text cannot hold).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// Transport problems seen by the client (network down, undecodable reply).
    #[error("{0}")]
    Transport(String),
}

impl AppError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthenticated(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::BadRequest(_) => 400,
            Self::Invalid(_) => 422,
            Self::TooLarge(_) => 413,
            Self::Conflict(_) => 409,
            Self::TooManyRequests(_) => 429,
            Self::Unavailable(_) => 503,
            Self::Internal(_) | Self::Transport(_) => 500,
        }
    }

    /// A generic message for internal failures; the cause is logged on the server.
    pub fn internal() -> Self {
        Self::Internal("Something went wrong on the server. The details are in its log.".into())
    }

    pub fn unavailable() -> Self {
        Self::Unavailable("The database is not answering. Try again in a moment.".into())
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(msg) => {
                Self::Transport(format!("Could not reach the server: {msg}"))
            }
            ServerFnErrorErr::Args(msg) | ServerFnErrorErr::MissingArg(msg) => {
                Self::BadRequest(format!("The arguments could not be read: {msg}"))
            }
            ServerFnErrorErr::Deserialization(msg) | ServerFnErrorErr::Response(msg) => {
                Self::Transport(format!("Unexpected reply from the server: {msg}"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip_as_tagged_json() {
        let err = AppError::Forbidden("admins only".into());
        let json = serde_json_like(&err);
        assert_eq!(json, r#"{"kind":"forbidden","message":"admins only"}"#);
        assert_eq!(err.status(), 403);
    }

    fn serde_json_like(err: &AppError) -> String {
        let bytes = <AppError as FromServerFnError>::ser(err);
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn undecodable_replies_become_transport_errors() {
        let err = <AppError as FromServerFnError>::de("not json".into());
        assert!(matches!(err, AppError::Transport(_)), "{err:?}");
    }
}
