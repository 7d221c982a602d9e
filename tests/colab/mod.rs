//! The Colab endpoint: fetching safely from a URL that arrived over a webhook, and
//! recognising ComfyUI, against a fake ComfyUI that misbehaves like a Colab runtime
//! behind a Cloudflare quick tunnel, and against the real ComfyUI (`comfy_real`); what
//! the endpoint's machine has and the pre-flight against it (`inventory`).

mod admin;
mod client;
mod comfy_real;
mod failover;
mod inventory;
mod probe;
mod webhook;
