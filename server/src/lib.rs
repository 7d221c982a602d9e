//! The Slate server as a library: `cli::main` is the binary, `startup::Application`
//! is what tests start in-process.

// Leptos views nest deeply in types; the workflow pages pass the default limit.
#![recursion_limit = "256"]

pub mod accounts;
pub mod assets;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod colab;
pub mod comfyui;
pub mod config;
pub mod db;
pub mod deploys;
pub mod embedded_pg;
pub mod errors;
pub mod http;
pub mod notify;
pub mod pipelines;
pub mod sse;
pub mod startup;
pub mod tasks;
pub mod webhooks;
