//! The HTTP surface: pages and server functions (Leptos), operations endpoints, and the
//! middleware every request passes through.

mod auth;
mod bodies;
mod csrf;
mod headers;
mod metrics;
pub mod policy;
pub mod serve;
pub mod streams;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use app::backend::Services;
use axum::body::Body;
use axum::extract::{FromRef, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use leptos::prelude::{provide_context, LeptosOptions};
use leptos_axum::{generate_route_list, handle_server_fns_with_context, LeptosRoutes};
use sqlx::PgPool;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::PostgresStore;

pub use crate::errors;
pub use metrics::HttpMetrics;

use crate::accounts::Accounts;
use crate::assets::Assets;
use crate::cluster::Cluster;
use crate::colab::Colab;
use crate::deploys::Deploys;
use crate::notify::Notifications;
use crate::pipelines::backend::Pipelines;
use crate::tasks::Shutdown;

/// Settings the middleware needs, resolved once at start.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `scheme://host[:port]` of the public URL.
    pub public_origin: String,
    pub trust_proxy: bool,
    pub max_body_bytes: usize,
    pub session_idle: Duration,
}

/// Whether the database answered recently; kept fresh by a background probe.
#[derive(Debug)]
pub struct DbHealth(AtomicBool);

impl DbHealth {
    pub fn new() -> Self {
        Self(AtomicBool::new(true))
    }

    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, up: bool) {
        if self.0.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("database is answering again");
            } else {
                tracing::warn!("database stopped answering");
            }
        }
    }
}

impl Default for DbHealth {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn probe(pool: &PgPool) -> bool {
    tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("select 1").execute(pool),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

/// What the routes and middleware share. Each domain's routes take only the parts they
/// need (`State<Assets>`, `State<Shutdown>`, ...), through `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub pool: PgPool,
    pub accounts: Accounts,
    pub assets: Assets,
    pub cluster: Cluster,
    pub colab: Colab,
    /// The runs service: its pool and what this Slate's executors can run.
    pub pipelines: Pipelines,
    /// ComfyUI workflows, their versions and bindings.
    pub workflows: crate::comfyui::workflows::Workflows,
    /// Webhook subscriptions and their deliveries.
    pub webhooks: crate::webhooks::Webhooks,
    /// `NOTIFY` payloads by channel, for the event streams.
    pub notifications: Notifications,
    pub shutdown: Shutdown,
    pub config: Arc<HttpConfig>,
    pub metrics: Arc<HttpMetrics>,
    pub db_health: Arc<DbHealth>,
    pub started_at: DateTime<Utc>,
}

impl AppState {
    /// The services as the pages and server functions see them (the same ones the
    /// routes use).
    fn services(&self) -> Services {
        Services {
            accounts: Arc::new(self.accounts.clone()),
            assets: Arc::new(self.assets.clone()),
            cluster: Arc::new(self.cluster.clone()),
            colab: Arc::new(self.colab.clone()),
            deploys: Arc::new(Deploys::new(self.pool.clone(), self.cluster.clone())),
            pipelines: Arc::new(self.pipelines.clone()),
            workflows: Arc::new(self.workflows.clone()),
            questions: Arc::new(crate::pipelines::questions::Questions::new(
                self.pool.clone(),
            )),
            webhooks: Arc::new(self.webhooks.clone()),
        }
    }
}

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let services = state.services();
    let server_fn = {
        let services = services.clone();
        move |req: Request<Body>| {
            let services = services.clone();
            async move {
                handle_server_fns_with_context(move || provide_context(services.clone()), req).await
            }
        }
    };
    let context = move || provide_context(services.clone());
    let shell = {
        let options = state.leptos_options.clone();
        move || app::shell(options.clone())
    };

    let store = PostgresStore::new(state.pool.clone())
        .with_schema_name("public")
        .and_then(|s| s.with_table_name("sessions"))
        .expect("valid identifiers");
    let sessions = SessionManagerLayer::new(store)
        .with_name("slate_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.public_origin.starts_with("https://"))
        .with_expiry(Expiry::OnInactivity(
            time::Duration::try_from(state.config.session_idle)
                .unwrap_or(time::Duration::hours(12)),
        ));

    let request_id = HeaderName::from_static("x-request-id");
    // Everything but uploads has a body limit; uploads stream without one. (JSON and
    // form bodies on every route, these included, also pass `bodies::guard`.)
    let limited = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::serve))
        .route("/api/{*fn_name}", get(server_fn.clone()).post(server_fn))
        .leptos_routes_with_context(&state, routes, context.clone(), shell)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, app::shell))
        .layer(axum::middleware::from_fn(with_error_status))
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        // Pages, server functions and the wasm compress well; uploads and media do not
        // (and Range requests must see the stored bytes), so they stay outside.
        .layer(CompressionLayer::new());
    Router::new()
        .merge(limited)
        .merge(crate::assets::tus::router())
        .merge(crate::assets::downloads::router())
        .merge(crate::assets::events::router())
        .merge(crate::cluster::http::router())
        .merge(crate::colab::webhook::router())
        .merge(crate::deploys::ci::router())
        .merge(crate::deploys::events::router())
        .merge(crate::pipelines::http::router())
        .merge(crate::comfyui::workflows::http::router())
        .merge(crate::comfyui::inventory::router())
        .merge(crate::pipelines::questions::router())
        .merge(crate::webhooks::router())
        .layer(from_fn_with_state(
            streams::StreamLimits::default(),
            streams::limit,
        ))
        .layer(from_fn_with_state(state.clone(), bodies::guard))
        .layer(from_fn_with_state(state.clone(), auth::authorize))
        .layer(from_fn_with_state(state.clone(), csrf::protect))
        .layer(sessions)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), headers::security_headers))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().on_response(DefaultOnResponse::new().level(tracing::Level::INFO)).make_span_with(|req: &Request<Body>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Server functions that fail before their body runs (arguments that cannot be decoded)
/// are answered 500 by the framework whatever the error says; the status should say what
/// the error does.
async fn with_error_status(req: Request, next: axum::middleware::Next) -> Response {
    let is_call = req.uri().path().starts_with("/api/");
    let response = next.run(req).await;
    if !is_call || response.status() != StatusCode::INTERNAL_SERVER_ERROR {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    };
    if let Ok(err) = serde_json::from_slice::<app::error::AppError>(&bytes) {
        if let Ok(status) = StatusCode::from_u16(err.status()) {
            parts.status = status;
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let up = probe(&state.pool).await;
    state.db_health.set(up);
    if up {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
    }
}
