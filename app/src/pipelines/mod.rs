//! Pipelines: versioned templates (a DAG of stages with typed parameters), their
//! validation, and the built-in templates that reflect the film pipeline.
//!
//! Only the model is here so far; submission, the queue, the executors and the pages
//! come with the rest of the pipelines issue (nothing of it is in the UI yet).

pub mod template;
