//! Who may reach which path: the one policy that both the server's middleware (for every
//! request) and every server function (for every call, also while a page renders in
//! process) apply. Server functions carry their required role in their URL prefix
//! (`/api/public`, `/api`, `/api/lead`, `/api/admin`); pages under `/admin` need an admin,
//! `/architecture` and `/deploys` a lead; everything else needs someone signed in.

use crate::accounts::{Principal, Role};
use crate::error::AppError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    SignedIn(Role),
}

/// The path the Colab notebook posts its signed webhook to (checked by its handler).
pub const COLAB_WEBHOOK: &str = "/api/colab/endpoint";

/// What `path` needs. `path` must have passed [`canonical`] first: the policy judges
/// exactly the path the router serves, and only a canonical path has one spelling.
pub fn required(path: &str) -> Access {
    // The router matches case-sensitively; judging the lower-case form as well means no
    // spelling can ever need less than the page it might reach.
    let path = path.to_ascii_lowercase();
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if matches!(
        path.as_str(),
        "/healthz" | "/readyz" | "/metrics" | "/login" | "/favicon.ico" | COLAB_WEBHOOK
    ) || under("/pkg")
        || under("/api/public")
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

/// Refuses every spelling of a path but the one canonical form, so that the policy and
/// the router can never read two different paths out of one request: no empty or dot
/// segments (plain or percent-encoded), no backslashes, no percent-encoded character that
/// needs no encoding (letters, digits, `-._~`) or that separates segments (`/`, `\`), no
/// encoded control characters, and only well-formed UTF-8 escapes.
pub fn canonical(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("The address must start with \"/\".");
    }
    if path.contains('\\') {
        return Err("The address must not contain a backslash.");
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("The address has a malformed percent escape.")?;
            if hex.is_ascii_alphanumeric() || b"-._~/\\".contains(&hex) {
                return Err("The address encodes a character that must be written plainly.");
            }
            if hex.is_ascii_control() {
                return Err("The address must not contain control characters.");
            }
            decoded.push(hex);
            i += 3;
        } else {
            if b.is_ascii_control() {
                return Err("The address must not contain control characters.");
            }
            decoded.push(b);
            i += 1;
        }
    }
    let decoded = std::str::from_utf8(&decoded)
        .map_err(|_| "The address is not valid UTF-8 once decoded.")?;
    if decoded.chars().any(char::is_control) {
        return Err("The address must not contain control characters.");
    }
    // Segments after the leading slash: none empty (a trailing slash is the one allowed
    // empty segment, as routers treat `/x/` like `/x`), none `.` or `..`.
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (n, segment) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        if segment.is_empty() && !last {
            return Err("The address must not contain empty segments (\"//\").");
        }
        if matches!(*segment, "." | "..") {
            return Err("The address must not contain \".\" or \"..\" segments.");
        }
    }
    Ok(())
}

/// Whether `principal` may reach something that needs `access`.
pub fn check(access: Access, principal: Option<&Principal>) -> Result<(), AppError> {
    match (access, principal) {
        (Access::Public, _) => Ok(()),
        (Access::SignedIn(_), None) => Err(AppError::Unauthenticated("Sign in first.".into())),
        (Access::SignedIn(role), Some(p)) if p.has(role) => Ok(()),
        (Access::SignedIn(role), Some(_)) => Err(AppError::Forbidden(format!(
            "This needs the {} role, which your account does not have.",
            role.label().to_lowercase()
        ))),
    }
}

/// Whether `principal` may call or open `path`: its role, and a token's scope.
pub fn allowed(path: &str, principal: Option<&Principal>) -> Result<(), AppError> {
    check(required(path), principal)?;
    let scope = principal.and_then(|p| p.token.as_ref()).map(|t| t.scope);
    match scope {
        Some(scope) if !scope.allows(path) => Err(AppError::Forbidden(format!(
            "This token's scope ({}) does not allow {path}.",
            scope.as_str()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn someone(role: Role) -> Principal {
        Principal {
            user_id: Uuid::nil(),
            email: "x@y.z".into(),
            role,
            token: None,
        }
    }

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
        // Prefix tricks do not open anything, and case does not lower the bar.
        assert_eq!(required("/administrator"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/api/publicity"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/pkgx"), Access::SignedIn(Role::Creator));
        assert_eq!(required("/ADMIN/users"), Access::SignedIn(Role::Admin));
        assert_eq!(
            required("/Api/Admin/list_users"),
            Access::SignedIn(Role::Admin)
        );
    }

    #[test]
    fn only_the_canonical_spelling_of_a_path_passes() {
        for ok in [
            "/",
            "/admin/users",
            "/admin/users/",
            "/assets/0191d3a8-0000-7000-8000-000000000000",
            "/api/assets/x/download/a%20b.mp4",
            "/api/assets/x/download/%C3%A9t%C3%A9.mp4",
            "/runs?state=failed",
        ] {
            let path = ok.split('?').next().unwrap_or(ok);
            assert_eq!(canonical(path), Ok(()), "{ok}");
        }
        for bad in [
            "/login/%2e%2e/admin/users",
            "/login/%2E%2E/admin/users",
            "/login/.%2e/admin/users",
            "/login/../admin/users",
            "/login/./admin",
            "/login/..",
            "/pkg/..%2fadmin/users",
            "/pkg/%2F..%2Fadmin",
            "/login%5c..%5cadmin",
            "/login\\..\\admin",
            "//admin/users",
            "/admin//users",
            "/%61dmin/users",
            "/admin/user%73",
            "/admin/%7e",
            "/admin/%00",
            "/admin/%0a",
            "/admin/%zz",
            "/admin/%",
            "/admin/%ff",
            "admin",
        ] {
            assert!(canonical(bad).is_err(), "{bad} passed");
        }
    }

    #[test]
    fn roles_below_the_requirement_are_refused() {
        assert!(check(Access::Public, None).is_ok());
        assert!(matches!(
            check(Access::SignedIn(Role::Creator), None),
            Err(AppError::Unauthenticated(_))
        ));
        assert!(check(Access::SignedIn(Role::Lead), Some(&someone(Role::Admin))).is_ok());
        assert!(matches!(
            check(Access::SignedIn(Role::Admin), Some(&someone(Role::Lead))),
            Err(AppError::Forbidden(_))
        ));
    }
}
