//! The one place that says who may reach which path. Server functions carry their
//! required role in their URL prefix (`/api/public`, `/api`, `/api/lead`, `/api/admin`);
//! pages under `/admin` need an admin, `/architecture` a lead; everything else needs
//! someone signed in.

use app::accounts::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    SignedIn(Role),
}

pub fn required(path: &str) -> Access {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/login" | "/favicon.ico"
    ) || under("/pkg")
        || under("/api/public")
        // Signed with the webhook secret instead (checked by the handler).
        || path == crate::colab::webhook::PATH
    {
        Access::Public
    } else if under("/admin") || under("/api/admin") {
        Access::SignedIn(Role::Admin)
    } else if under("/api/lead") || under("/architecture") || under("/deploys") {
        Access::SignedIn(Role::Lead)
    } else {
        Access::SignedIn(Role::Creator)
    }
}

/// Pages are what a browser navigates to; everything under `/api` is for programs.
pub fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/pkg/")
        || matches!(path, "/healthz" | "/readyz" | "/metrics"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_roles_they_need() {
        assert_eq!(required("/healthz"), Access::Public);
        assert_eq!(required("/pkg/slate.wasm"), Access::Public);
        assert_eq!(required("/api/public/login"), Access::Public);
        assert_eq!(required("/api/colab/endpoint"), Access::Public);
        assert_eq!(
            required("/api/colab/endpoint/x"),
            Access::SignedIn(Role::Creator)
        );
        assert_eq!(required("/"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/api/dashboard"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/api/lead/anything"), Access::SignedIn(Role::Lead));
        assert_eq!(required("/admin"), Access::SignedIn(Role::Admin));
        assert_eq!(required("/architecture"), Access::SignedIn(Role::Lead));
        assert_eq!(required("/admin/users"), Access::SignedIn(Role::Admin));
        assert_eq!(
            required("/api/admin/list_users"),
            Access::SignedIn(Role::Admin)
        );
        // Prefix tricks do not open anything.
        assert_eq!(required("/administrator"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/api/publicity"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/pkgx"), Access::SignedIn(Role::Creator));
    }
}
