//! What the server functions need from the server, declared here as small traits per
//! domain and implemented by the `server` crate. UI code never touches infrastructure.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use leptos::prelude::*;
use uuid::Uuid;

use crate::accounts::{
    AuditPage, AuditQuery, CreatedToken, CreatedUser, Dashboard, Principal, Role, TokenScope,
    TokenView, UserView,
};
use crate::architecture::{NodeDetail, Topology};
use crate::assets::{AssetDetail, LibraryPage, LibraryQuery};
use crate::error::AppError;

/// The person or token acting, and from where: everything an audit entry needs.
#[derive(Clone, Debug)]
pub struct Actor {
    pub principal: Principal,
    pub client_addr: Option<IpAddr>,
}

#[async_trait]
pub trait AccountsBackend: Send + Sync + 'static {
    /// Checks a password (rate-limited, one generic error for every failure).
    async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client_addr: Option<IpAddr>,
    ) -> Result<Principal, AppError>;
    async fn record_sign_out(&self, actor: &Actor) -> Result<(), AppError>;
    async fn dashboard(&self, who: &Principal) -> Result<Dashboard, AppError>;
    async fn list_users(&self) -> Result<Vec<UserView>, AppError>;
    async fn create_user(
        &self,
        actor: &Actor,
        email: &str,
        role: Role,
        password: Option<String>,
    ) -> Result<CreatedUser, AppError>;
    async fn set_role(&self, actor: &Actor, user: Uuid, role: Role) -> Result<(), AppError>;
    async fn set_disabled(&self, actor: &Actor, user: Uuid, disabled: bool)
        -> Result<(), AppError>;
    async fn list_tokens(&self) -> Result<Vec<TokenView>, AppError>;
    async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        scope: TokenScope,
        owner_email: Option<&str>,
    ) -> Result<CreatedToken, AppError>;
    async fn revoke_token(&self, actor: &Actor, token: Uuid) -> Result<(), AppError>;
    async fn audit_log(&self, query: AuditQuery) -> Result<AuditPage, AppError>;
}

#[async_trait]
pub trait AssetsBackend: Send + Sync + 'static {
    /// The library as `who` sees it (others' uploads in progress are left out).
    async fn library(&self, who: &Principal, query: LibraryQuery) -> Result<LibraryPage, AppError>;
    async fn asset(&self, who: &Principal, id: Uuid) -> Result<AssetDetail, AppError>;
    async fn set_tags(&self, actor: &Actor, id: Uuid, tags: Vec<String>) -> Result<(), AppError>;
    async fn delete(&self, actor: &Actor, id: Uuid) -> Result<(), AppError>;
}

/// The cluster as Slate sees it (live, last known, or desired from the manifests).
pub trait ClusterBackend: Send + Sync + 'static {
    fn topology(&self) -> Topology;
    fn node_detail(&self, id: &str) -> Result<NodeDetail, AppError>;
}

/// The Colab endpoint (admins).
#[async_trait]
pub trait ColabBackend: Send + Sync + 'static {
    async fn overview(&self, actor: &Actor) -> Result<crate::colab::ColabOverview, AppError>;
    async fn reveal(&self, actor: &Actor, id: Uuid) -> Result<String, AppError>;
    async fn set_endpoint(&self, actor: &Actor, url: &str) -> Result<(), AppError>;
    async fn set_fallback(&self, actor: &Actor, url: Option<String>) -> Result<(), AppError>;
    async fn reverify(&self, actor: &Actor) -> Result<(), AppError>;
    /// Fetches endpoint `id`'s nodes and models again (leads and admins; audited).
    async fn refresh_inventory(&self, actor: &Actor, id: Uuid) -> Result<(), AppError>;
    async fn rotate_secret(&self, actor: &Actor) -> Result<crate::colab::RotatedSecret, AppError>;
}

/// Deploy history, rollout status, restart and rollback.
#[async_trait]
pub trait DeploysBackend: Send + Sync + 'static {
    async fn view(
        &self,
        actor: &Actor,
        filter: crate::deploys::DeployFilter,
    ) -> Result<crate::deploys::DeploysView, AppError>;
    /// Revision `revision`'s template against revision `against` (its previous one when
    /// `None`).
    async fn diff(
        &self,
        kind: &str,
        name: &str,
        revision: i64,
        against: Option<i64>,
    ) -> Result<crate::deploys::TemplateDiff, AppError>;
    async fn rollback_preview(
        &self,
        name: &str,
        revision: i64,
    ) -> Result<crate::deploys::RollbackPreview, AppError>;
    /// Rolls a Deployment back to a revision; returns what happened, in words.
    async fn rollback(
        &self,
        actor: &Actor,
        name: &str,
        revision: i64,
        reason: &str,
    ) -> Result<String, AppError>;
    /// Restarts a Deployment or StatefulSet; returns what happened, in words.
    async fn restart(
        &self,
        actor: &Actor,
        kind: &str,
        name: &str,
        reason: &str,
    ) -> Result<String, AppError>;
}

/// Pipeline templates and runs.
#[async_trait]
pub trait PipelinesBackend: Send + Sync + 'static {
    async fn runs(
        &self,
        actor: &Actor,
        filter: crate::pipelines::RunFilter,
    ) -> Result<crate::pipelines::RunsView, AppError>;
    async fn run(&self, actor: &Actor, id: Uuid) -> Result<crate::pipelines::RunDetail, AppError>;
    /// The form of a template; with `from`, filled with that run's values (to edit and
    /// run again).
    async fn template_form(
        &self,
        actor: &Actor,
        name: &str,
        from: Option<Uuid>,
    ) -> Result<crate::pipelines::TemplateForm, AppError>;
    async fn submit_form(
        &self,
        actor: &Actor,
        template: &str,
        params: std::collections::BTreeMap<String, String>,
        lists: std::collections::BTreeMap<String, Vec<String>>,
        priority: i32,
    ) -> Result<Uuid, AppError>;
    async fn cancel(&self, actor: &Actor, id: Uuid) -> Result<(), AppError>;
    async fn retry(&self, actor: &Actor, id: Uuid, stage: &str) -> Result<(), AppError>;
    async fn resubmit(&self, actor: &Actor, id: Uuid) -> Result<Uuid, AppError>;
    async fn template_versions(&self) -> Result<Vec<crate::pipelines::TemplateVersions>, AppError>;
    async fn template_source(
        &self,
        name: &str,
        version: Option<i32>,
        against: Option<i32>,
    ) -> Result<crate::pipelines::TemplateSource, AppError>;
    /// Saves a new version; returns it. Invalid YAML is refused with every problem and
    /// its line.
    async fn save_template(&self, actor: &Actor, source: &str) -> Result<(String, i32), AppError>;
}

/// The browser session of the current request.
#[async_trait]
pub trait SessionControl: Send + Sync + 'static {
    /// Binds the session to `user`, under a new session id.
    async fn sign_in(&self, user: Uuid) -> Result<(), AppError>;
    async fn sign_out(&self) -> Result<(), AppError>;
}

/// Everything the server knows about the current request's caller. The server's
/// authentication middleware puts it in the request's extensions.
#[derive(Clone)]
pub struct RequestAuth {
    pub principal: Option<Principal>,
    pub client_addr: Option<IpAddr>,
    pub session: Arc<dyn SessionControl>,
}

impl RequestAuth {
    pub fn actor(&self) -> Result<Actor, AppError> {
        let principal = self
            .principal
            .clone()
            .ok_or_else(|| AppError::Unauthenticated("Sign in first.".into()))?;
        Ok(Actor {
            principal,
            client_addr: self.client_addr,
        })
    }
}

/// The implementations, provided to every page render and server function call.
#[derive(Clone)]
pub struct Services {
    pub accounts: Arc<dyn AccountsBackend>,
    pub assets: Arc<dyn AssetsBackend>,
    pub cluster: Arc<dyn ClusterBackend>,
    pub colab: Arc<dyn ColabBackend>,
    pub deploys: Arc<dyn DeploysBackend>,
    pub pipelines: Arc<dyn PipelinesBackend>,
    pub workflows: Arc<dyn crate::comfyui::backend::WorkflowsBackend>,
    pub questions: Arc<dyn crate::pipelines::question::QuestionsBackend>,
    pub webhooks: Arc<dyn crate::webhooks::backend::WebhooksBackend>,
}

pub fn services() -> Result<Services, AppError> {
    use_context::<Services>().ok_or_else(AppError::internal)
}

pub fn request_auth() -> Result<RequestAuth, AppError> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<RequestAuth>().cloned())
        .ok_or_else(AppError::internal)
}

/// The caller of server function `F`, judged by the access policy on `F`'s own path: the
/// same rule the middleware applies to requests, applied again here because a page that
/// renders on the server calls its server functions in process, past the middleware.
/// Every server function that is not public starts with this.
pub fn caller<F: leptos::server_fn::ServerFn>() -> Result<Actor, AppError> {
    let auth = request_auth()?;
    crate::access::allowed(F::PATH, auth.principal.as_ref())?;
    auth.actor()
}

/// Sets the response status to match the error so HTTP clients see 4xx/5xx.
pub fn answer<T>(result: Result<T, AppError>) -> Result<T, AppError> {
    if let Err(err) = &result {
        if let Some(opts) = use_context::<leptos_axum::ResponseOptions>() {
            if let Ok(code) = http::StatusCode::from_u16(err.status()) {
                opts.set_status(code);
            }
        }
    }
    result
}
