//! What each endpoint has, fetched from it and kept: its node classes and its model
//! files by folder (`app::comfyui::inventory` holds the types and the pre-flight).

use axum::Router;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
}
