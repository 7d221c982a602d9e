//! ComfyUI workflows as data, shared by the pages and the server: the API-format graph
//! and its checks (`workflow`), the bindings that turn a node's literal inputs into a
//! run's parameters, and what an endpoint has, its nodes and models, with the pre-flight
//! check of a graph against it (`inventory`). Decision 0014.

pub mod api;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod inventory;
pub mod pages;
pub mod workflow;
