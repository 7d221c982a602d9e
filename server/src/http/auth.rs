//! Authentication and authorization for every request, in one middleware: find the
//! principal (bearer token or session), apply the access policy (`app::access`), and hand the result to
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

use super::policy;
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
            // The entry our proxy appended; the ones before it are the client's own words.
            .and_then(|v| v.rsplit(',').next())
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
    // The policy below judges the raw path; refusing every other spelling of it makes
    // that exactly the path the router serves.
    if let Err(reason) = policy::canonical(&path) {
        return errors::for_path(&path, &AppError::BadRequest(reason.into()));
    }
    if req.uri().query().is_some_and(has_nul) {
        return errors::for_path(
            &path,
            &AppError::BadRequest("The address's query must not contain NUL characters.".into()),
        );
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
            Ok(Ok(principal)) => Some(principal),
        },
        None => match session_principal(&state, &session).await {
            Ok(p) => p,
            Err(err) => return errors::for_path(&path, &err),
        },
    };

    if policy::is_page(&path) && !state.db_health.is_up() {
        return errors::for_path(&path, &AppError::unavailable());
    }

    let verdict = policy::allowed(&path, principal.as_ref());
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

/// Whether a query string holds a NUL once decoded (PostgreSQL text cannot).
fn has_nul(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k.contains('\0') || v.contains('\0'))
}
