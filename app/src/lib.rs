//! Slate's Leptos application: the shell, the routes and the pages, shared by the server
//! (rendering, `ssr`) and the browser (hydration, `hydrate`).

/// Declares a state enum stored as text (`runs.state`, `assets.state`, …): the same
/// lower-case words in SQL, in JSON and in the UI. Defined before the modules, so that
/// each can use it.
macro_rules! text_state {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "ssr", derive(sqlx::Type))]
        #[cfg_attr(feature = "ssr", sqlx(type_name = "text", rename_all = "lowercase"))]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every state, in the order pages list them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod access;
pub mod accounts;
pub mod architecture;
pub mod assets;
#[cfg(feature = "ssr")]
pub mod backend;
pub mod colab;
pub mod comfyui;
pub mod components;
pub mod deploys;
pub mod error;
pub mod pipelines;
mod shell;
pub mod webhooks;

pub use shell::*;
