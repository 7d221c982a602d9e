//! The Colab endpoint: fetching safely from a URL that arrived over a webhook, and
//! recognising ComfyUI, against a fake ComfyUI that misbehaves like a Colab runtime
//! behind a Cloudflare quick tunnel, and against the real ComfyUI (`comfy_real`).

mod admin;
mod client;
mod comfy_real;
mod failover;
mod probe;
mod webhook;
