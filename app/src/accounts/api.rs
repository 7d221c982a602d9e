//! Server functions for accounts. Their URL prefix decides who may call them
//! (`/api/public`, `/api` for anyone signed in, `/api/admin`): the server's
//! access policy judges every request to them, and each body judges its caller again
//! (`caller`), as pages call them in process while rendering.

use leptos::prelude::*;
use uuid::Uuid;

use super::{AuditPage, CreatedToken, CreatedUser, Dashboard, Principal, TokenView, UserView};
use crate::error::AppError;

#[cfg(feature = "ssr")]
use crate::backend::{answer, caller, request_auth, services};

/// Who is signed in, if anyone.
#[server(prefix = "/api/public", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<Principal>, AppError> {
    answer(request_auth().map(|auth| auth.principal))
}

#[server(prefix = "/api/public", endpoint = "login")]
pub async fn login(email: String, password: String, next: Option<String>) -> Result<(), AppError> {
    answer(
        async {
            let auth = request_auth()?;
            let principal = services()?
                .accounts
                .sign_in(&email, &password, auth.client_addr)
                .await?;
            auth.session.sign_in(principal.user_id).await?;
            leptos_axum::redirect(&super::safe_next(next.as_deref()));
            Ok(())
        }
        .await,
    )
}

#[server(prefix = "/api/public", endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    answer(
        async {
            let auth = request_auth()?;
            if let Ok(actor) = auth.actor() {
                services()?.accounts.record_sign_out(&actor).await?;
            }
            auth.session.sign_out().await?;
            leptos_axum::redirect("/login");
            Ok(())
        }
        .await,
    )
}

#[server(prefix = "/api", endpoint = "dashboard")]
pub async fn get_dashboard() -> Result<Dashboard, AppError> {
    answer(
        async {
            let actor = caller::<GetDashboard>()?;
            services()?.accounts.dashboard(&actor.principal).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, AppError> {
    answer(
        async {
            caller::<ListUsers>()?;
            services()?.accounts.list_users().await
        }
        .await,
    )
}

/// Creates a user; an empty password means "generate one and show it once".
#[server(prefix = "/api/admin", endpoint = "create_user")]
pub async fn create_user(
    email: String,
    role: String,
    password: Option<String>,
) -> Result<CreatedUser, AppError> {
    answer(
        async {
            let actor = caller::<CreateUser>()?;
            let role = role.parse()?;
            let password = password.filter(|p| !p.is_empty());
            services()?
                .accounts
                .create_user(&actor, &email, role, password)
                .await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "set_user_role")]
pub async fn set_user_role(id: Uuid, role: String) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<SetUserRole>()?;
            let role = role.parse()?;
            services()?.accounts.set_role(&actor, id, role).await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "set_user_disabled")]
pub async fn set_user_disabled(id: Uuid, disabled: bool) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<SetUserDisabled>()?;
            services()?
                .accounts
                .set_disabled(&actor, id, disabled)
                .await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "list_tokens")]
pub async fn list_tokens() -> Result<Vec<TokenView>, AppError> {
    answer(
        async {
            caller::<ListTokens>()?;
            services()?.accounts.list_tokens().await
        }
        .await,
    )
}

/// Creates a token owned by `owner` (an email; the caller when empty).
#[server(prefix = "/api/admin", endpoint = "create_token")]
pub async fn create_token(
    name: String,
    scope: String,
    owner: Option<String>,
) -> Result<CreatedToken, AppError> {
    answer(
        async {
            let actor = caller::<CreateToken>()?;
            let scope = scope.parse()?;
            let owner = owner.as_deref().map(str::trim).filter(|o| !o.is_empty());
            services()?
                .accounts
                .create_token(&actor, &name, scope, owner)
                .await
        }
        .await,
    )
}

#[server(prefix = "/api/admin", endpoint = "revoke_token")]
pub async fn revoke_token(id: Uuid) -> Result<(), AppError> {
    answer(
        async {
            let actor = caller::<RevokeToken>()?;
            services()?.accounts.revoke_token(&actor, id).await
        }
        .await,
    )
}

/// One page of the audit log, newest first; see `AuditQuery` for the filters.
#[server(prefix = "/api/admin", endpoint = "audit_log")]
pub async fn audit_log(
    actor: Option<String>,
    action: Option<String>,
    before: Option<i64>,
) -> Result<AuditPage, AppError> {
    answer(
        async {
            caller::<AuditLog>()?;
            let query = super::AuditQuery {
                actor,
                action,
                before,
            };
            services()?.accounts.audit_log(query).await
        }
        .await,
    )
}
