//! The workflows API for scripts (an `api` token) and pages alike, in JSON.

use axum::Router;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
}
