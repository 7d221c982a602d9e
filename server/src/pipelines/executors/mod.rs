//! The executors, one module each, every one an [`Executor`](super::executor::Executor):
//! `local` (a program on this machine), `comfyui` (a workflow on the ComfyUI endpoint),
//! `kubernetes` (a Job per attempt), `dagster` (a run of a Dagster job) and `langgraph`
//! (a run of a LangGraph assistant on a thread).

pub mod comfyui;
pub mod dagster;
pub mod kubernetes;
pub mod langgraph;
pub mod local;
