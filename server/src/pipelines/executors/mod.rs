//! The executors, one module each, every one an [`Executor`](super::executor::Executor):
//! `local` (a program on this machine), `comfyui` (a workflow on the ComfyUI endpoint)
//! and `kubernetes` (a Job per attempt).

pub mod comfyui;
pub mod kubernetes;
pub mod local;
