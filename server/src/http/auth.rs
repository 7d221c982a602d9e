//! Authentication and authorization for every request, in one middleware: find the
//! principal (bearer token or session), apply `policy::required`, and hand the result to
//! pages and server functions as `app::backend::RequestAuth`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use app::accounts::Principal;
use app::backend::{RequestAuth, SessionControl};
use app::error::AppError;
use async_trait::async_trait;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;
use uuid::Uuid;

use super::policy::{self, Access};
use super::{errors, AppState};

const USER_KEY: &str = "user_id";

struct BrowserSession(Session);

#[async_trait]
impl SessionControl for BrowserSession {
    async fn sign_in(&self, user: Uuid) -> Result<(), AppError> {
        // A new id at sign-in, so a session id planted before sign-in is worthless.
        self.0.cycle_id().await.map_err(session_error)?;
        self.0.insert(USER_KEY, user).await.map_err(session_error)
    }

    async fn sign_out(&self) -> Result<(), AppError> {
        self.0.flush().await.map_err(session_error)
    }
}

fn session_error(err: tower_sessions::session::Error) -> AppError {
    tracing::warn!(error = %err, "session store failed");
    AppError::unavailable()
}

pub fn client_addr(req: &Request, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
}

fn bearer(req: &Request) -> Option<Result<String, ()>> {
    let value = req.headers().get(header::AUTHORIZATION)?;
    let text = value.to_str().map_err(|_| ());
    Some(text.and_then(|t| {
        let (scheme, token) = t.split_once(' ').ok_or(())?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            Ok(token.trim().to_owned())
        } else {
            Err(())
        }
    }))
}

#[tracing::instrument(skip_all, fields(path = %req.uri().path()))]
pub async fn authorize(
    State(state): State<AppState>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_owned();
    if path.contains("//") || path.contains("/../") || path.contains("/./") || path.ends_with("/..")
    {
        return errors::for_path(&path, &AppError::invalid("This address is not valid."));
    }
    let client_addr = client_addr(&req, state.config.trust_proxy);

    let principal = match bearer(&req) {
        Some(Err(())) => {
            return errors::api(&AppError::Unauthenticated(
                "The Authorization header must be \"Bearer <token>\".".into(),
            ))
        }
        Some(Ok(secret)) => match state.accounts.principal_for_token(&secret).await {
            Err(err) => return errors::for_path(&path, &err),
            Ok(Err(refusal)) => {
                tracing::info!(reason = ?refusal, "bearer token refused");
                return errors::api(&AppError::Unauthenticated(refusal.message().into()));
            }
            Ok(Ok(principal)) => {
                let scope = principal.token.as_ref().map(|t| t.scope);
                if scope.is_some_and(|s| !s.allows(&path)) {
                    return errors::api(&AppError::Forbidden(format!(
                        "This token's scope ({}) does not allow {path}.",
                        scope.map(|s| s.as_str()).unwrap_or_default()
                    )));
                }
                Some(principal)
            }
        },
        None => match session_principal(&state, &session).await {
            Ok(p) => p,
            Err(err) => return errors::for_path(&path, &err),
        },
    };

    if policy::is_page(&path) && !state.db_health.is_up() {
        return errors::for_path(&path, &AppError::unavailable());
    }

    let verdict = check(policy::required(&path), principal.as_ref());
    req.extensions_mut().insert(RequestAuth {
        principal,
        client_addr,
        session: Arc::new(BrowserSession(session)),
    });
    match verdict {
        Ok(()) => next.run(req).await,
        Err(AppError::Unauthenticated(_)) if policy::is_page(&path) => {
            let wanted = req
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/");
            if wanted == "/" {
                Redirect::to("/login").into_response()
            } else {
                let next =
                    url::form_urlencoded::byte_serialize(wanted.as_bytes()).collect::<String>();
                Redirect::to(&format!("/login?next={next}")).into_response()
            }
        }
        Err(err) => errors::for_path(&path, &err),
    }
}

async fn session_principal(
    state: &AppState,
    session: &Session,
) -> Result<Option<Principal>, AppError> {
    let Some(user_id) = session.get::<Uuid>(USER_KEY).await.map_err(session_error)? else {
        return Ok(None);
    };
    let principal = state.accounts.principal_for_user(user_id).await?;
    if principal.is_none() {
        // Disabled or deleted since sign-in: end the session now.
        session.flush().await.map_err(session_error)?;
    }
    Ok(principal)
}

fn check(access: Access, principal: Option<&Principal>) -> Result<(), AppError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use app::accounts::Role;

    fn someone(role: Role) -> Principal {
        Principal {
            user_id: Uuid::nil(),
            email: "x@y.z".into(),
            role,
            token: None,
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
