//! The Colab endpoint: fetching safely from a URL that arrived over a webhook, and
//! recognising ComfyUI, against a fake ComfyUI that misbehaves like a Colab runtime
//! behind a Cloudflare quick tunnel.

mod admin;
mod client;
mod failover;
mod probe;
mod webhook;
