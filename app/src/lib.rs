//! Slate's Leptos application: the shell, the routes and the pages, shared by the server
//! (rendering, `ssr`) and the browser (hydration, `hydrate`).

pub mod access;
pub mod accounts;
pub mod architecture;
pub mod assets;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod colab;
pub mod components;
pub mod deploys;
pub mod error;
pub mod pipelines;
mod shell;

pub use shell::*;
