//! Accounts: roles, users, API tokens and the audit log — the types shared by browser and
//! server, their validation, the server functions and the admin pages.

mod api;
mod pages;

pub use api::*;
pub use pages::*;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use crate::error::AppError;

/// What a person may do. Ordered: every role can do what the roles below it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ssr", derive(sqlx::Type))]
#[cfg_attr(feature = "ssr", sqlx(type_name = "text", rename_all = "snake_case"))]
pub enum Role {
    Creator,
    Lead,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Creator, Role::Lead, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Lead => "lead",
            Role::Admin => "admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Creator => "Creator",
            Role::Lead => "Team lead",
            Role::Admin => "Admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "creator" => Ok(Role::Creator),
            "lead" => Ok(Role::Lead),
            "admin" => Ok(Role::Admin),
            other => Err(AppError::invalid(format!(
                "Unknown role \"{other}\": use creator, lead or admin."
            ))),
        }
    }
}

/// What an API token may be used for. A token acts as its owner, but only on the
/// routes its scope opens (see `TokenScope::allows`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ssr", derive(sqlx::Type))]
#[cfg_attr(feature = "ssr", sqlx(type_name = "text", rename_all = "snake_case"))]
pub enum TokenScope {
    /// General API access with the owner's role.
    Api,
    /// CI reporting deploys.
    Ci,
    /// The Colab notebook reporting its ComfyUI endpoint.
    Colab,
}

impl TokenScope {
    pub const ALL: [TokenScope; 3] = [TokenScope::Api, TokenScope::Ci, TokenScope::Colab];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Api => "api",
            TokenScope::Ci => "ci",
            TokenScope::Colab => "colab",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            TokenScope::Api => "scripts calling Slate's API as the owner",
            TokenScope::Ci => "CI pipelines reporting deploys",
            TokenScope::Colab => "only /api/colab (the notebook signs with the webhook secret)",
        }
    }

    /// Whether a request to `path` may be made with a token of this scope.
    pub fn allows(self, path: &str) -> bool {
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        match self {
            TokenScope::Api => under("/api"),
            TokenScope::Ci => under("/api/deploys"),
            TokenScope::Colab => under("/api/colab"),
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenScope {
    type Err = AppError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "api" => Ok(TokenScope::Api),
            "ci" => Ok(TokenScope::Ci),
            "colab" => Ok(TokenScope::Colab),
            other => Err(AppError::invalid(format!(
                "Unknown token scope \"{other}\": use api, ci or colab."
            ))),
        }
    }
}

/// An email address, trimmed and lower-cased; just enough checking to catch typos.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let email = raw.trim().to_lowercase();
        let bad = || AppError::invalid(format!("\"{}\" is not an email address.", raw.trim()));
        if email.is_empty() {
            return Err(AppError::invalid("An email address is required."));
        }
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;

/// Rules for a new password: long enough to resist guessing, short enough to hash cheaply.
pub fn validate_password(password: &str) -> Result<(), AppError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::invalid(format!(
            "The password must have at least {MIN_PASSWORD_CHARS} characters."
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::invalid(
            "The password is too long (at most 1024 bytes).",
        ));
    }
    Ok(())
}

/// A token's name: what it is for, as people will read it in the list.
pub fn validate_token_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid(
            "Give the token a name that says what uses it.",
        ));
    }
    if name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "Token names are at most 80 printable characters.",
        ));
    }
    Ok(name.to_owned())
}

/// Where to go after signing in: only paths on this site, never another origin.
pub fn safe_next(next: Option<&str>) -> String {
    match next.map(str::trim) {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.starts_with("/login")
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The token a request was made with, when it was not made from a browser session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRef {
    pub id: Uuid,
    pub name: String,
    pub scope: TokenScope,
}

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    pub token: Option<TokenRef>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.role >= role
    }

    /// How this principal is named in the audit log.
    pub fn label(&self) -> String {
        match &self.token {
            Some(token) => format!("{} (token \"{}\")", self.email, token.name),
            None => self.email.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedUser {
    pub user: UserView,
    /// Set when Slate generated the password; shown once.
    pub generated_password: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub scope: TokenScope,
    pub prefix: String,
    pub owner_email: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: TokenView,
    /// The secret, shown once and never stored.
    pub secret: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: String,
    pub client_addr: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Part of the actor's name (email or token name).
    pub actor: Option<String>,
    /// An action, or a prefix such as `user.`.
    pub action: Option<String>,
    /// Keyset pagination: only entries older than this id.
    pub before: Option<i64>,
}

pub const AUDIT_PAGE_SIZE: i64 = 50;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to see the next (older) page.
    pub next_before: Option<i64>,
}

/// What the landing page shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    pub server: ServerInfo,
    pub my_recent: Vec<AuditEntry>,
    /// Only for admins.
    pub admin: Option<AdminCounts>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminCounts {
    pub active_users: i64,
    pub disabled_users: i64,
    pub active_tokens: i64,
    pub audit_last_day: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// "embedded" or "external".
    pub database: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin > Role::Lead && Role::Lead > Role::Creator);
        assert_eq!("ADMIN".parse::<Role>().unwrap(), Role::Admin);
        assert_eq!(" lead ".parse::<Role>().unwrap(), Role::Lead);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn principal_has_roles_below_its_own() {
        let p = Principal {
            user_id: Uuid::nil(),
            email: "a@b.c".into(),
            role: Role::Lead,
            token: None,
        };
        assert!(p.has(Role::Creator) && p.has(Role::Lead));
        assert!(!p.has(Role::Admin));
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ann@Studio.Example ").unwrap().as_str(),
            "ann@studio.example"
        );
        for bad in [
            "", "ann", "@studio", "ann@", "a b@c.d", "a@b@c", "a@.b", "a@b.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_need_twelve_characters() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("twelve chars").is_ok());
        assert!(validate_password(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/admin/users?x=1")), "/admin/users?x=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "admin",
            "/login?next=/",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn token_scopes_open_only_their_routes() {
        assert!(TokenScope::Api.allows("/api/assets"));
        assert!(!TokenScope::Api.allows("/admin/users"));
        assert!(TokenScope::Ci.allows("/api/deploys"));
        assert!(!TokenScope::Ci.allows("/api/deploysx"));
        assert!(!TokenScope::Ci.allows("/api/admin/list_users"));
        assert!(TokenScope::Colab.allows("/api/colab/endpoint"));
        assert!(!TokenScope::Colab.allows("/api/deploys"));
    }

    #[test]
    fn token_names_are_required_and_bounded() {
        assert_eq!(validate_token_name("  nightly CI ").unwrap(), "nightly CI");
        assert!(validate_token_name("   ").is_err());
        assert!(validate_token_name(&"n".repeat(81)).is_err());
    }
}
