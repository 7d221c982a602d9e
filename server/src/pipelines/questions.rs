//! Stages waiting for a person (a LangGraph interrupt): the question, and the answer a
//! lead or the submitter gives. (Scaffolding: being written.)

use axum::Router;
use sqlx::PgPool;

#[derive(Clone)]
pub struct Questions {
    pub pool: PgPool,
}

impl Questions {
    pub fn new(pool: PgPool) -> Self {
        Questions { pool }
    }
}

impl app::pipelines::question::QuestionsBackend for Questions {}

/// The routes for answering questions.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
}
