//! What each endpoint has, fetched from it and kept (`endpoint_inventories`): its node
//! classes and its model files by folder (`app::comfyui::inventory` holds the types and
//! the pre-flight). Fetched when an endpoint is verified and when a lead or admin asks;
//! the HTTP API for scripts and pages:
//!
//! - `GET /api/endpoints/current/inventory`, `GET /api/endpoints/{id}/inventory` → the
//!   inventory (`comfyui_version`, `nodes`, `models`) with `endpoint`, `fetched_at`,
//!   `error`, `core_nodes` and `packs`
//! - `POST /api/endpoints/{id}/inventory/refresh` (leads and admins, audited) → the same
//! - `POST /api/comfyui/preflight` `{"graph"}` → `{"endpoint", "fetched_at", "gaps",
//!   "messages"}` against the current endpoint's inventory

use std::collections::BTreeMap;
use std::time::Duration;

use app::accounts::{Principal, Role};
use app::backend::RequestAuth;
use app::colab::EndpointState;
use app::comfyui::inventory::{self as inv, Inventory, NodeSpec};
use app::error::AppError;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::address::redact;
use super::probe::{parse_json, Prober};
use crate::audit::Who;
use crate::colab::Colab;
use crate::db::OrAppError as _;
use crate::errors;

/// `/object_info` is half a megabyte with core nodes only and several with node packs;
/// ComfyUI builds it on each request (asking every class, listing every folder).
pub const OBJECT_INFO_CAP: usize = 64 * 1024 * 1024;
pub const OBJECT_INFO_TIMEOUT: Duration = Duration::from_secs(90);
/// One folder's file list.
pub const FOLDER_CAP: usize = 8 * 1024 * 1024;
pub const FOLDER_TIMEOUT: Duration = Duration::from_secs(30);
/// More folders than any ComfyUI has (about twenty), more files than any folder.
const MAX_FOLDERS: usize = 200;
const MAX_FILES: usize = 50_000;
/// Folders asked for at once.
const PARALLEL: usize = 4;
/// Not models: ComfyUI lists its custom node directory under `/models` too.
const NOT_MODELS: &[&str] = &["custom_nodes"];

/// A folder name Slate puts in a path: ComfyUI's are plain words.
fn plain_folder(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .take(MAX_FILES)
            .map(str::to_owned)
            .collect()
    })
}

/// Asks the endpoint what it has: `/object_info` (needed), `/system_stats` for the
/// version, `/models` and each folder's files. Everything but `/object_info` is lenient:
/// what failed is returned in words beside what was found.
pub async fn fetch(prober: &Prober, url: &str) -> Result<(Inventory, Vec<String>), String> {
    let mut problems = Vec::new();
    let (_, body, _) = prober
        .send(
            url,
            "/object_info",
            OBJECT_INFO_TIMEOUT,
            OBJECT_INFO_CAP,
            &[],
            |c, u| c.get(u),
        )
        .await
        .map_err(|e| format!("GET /object_info: {e}"))?;
    let json = parse_json(&body).map_err(|e| format!("GET /object_info: {e}"))?;
    if !json.is_object() {
        return Err("GET /object_info: the answer is not an object of node classes".into());
    }
    let nodes = inv::parse_object_info(&json);
    drop(json);
    if nodes.is_empty() {
        return Err("GET /object_info: no node class could be read".into());
    }

    let comfyui_version = match prober.system_stats(url).await {
        Ok((stats, _)) => stats.comfyui_version,
        Err(e) => {
            problems.push(format!("GET /system_stats: {e}"));
            None
        }
    };

    let folders: Vec<String> = match prober.get_json(url, "/models").await {
        Ok(answer) => match strings(&answer.json) {
            Some(list) => {
                let (plain, odd): (Vec<String>, Vec<String>) =
                    list.into_iter().partition(|f| plain_folder(f));
                if !odd.is_empty() {
                    problems.push(format!(
                        "GET /models: {} folder name(s) left out (not plain words)",
                        odd.len()
                    ));
                }
                plain
                    .into_iter()
                    .filter(|f| !NOT_MODELS.contains(&f.as_str()))
                    .take(MAX_FOLDERS)
                    .collect()
            }
            None => {
                problems.push("GET /models: the answer is not a list of folders".into());
                Vec::new()
            }
        },
        Err(e) => {
            problems.push(format!("GET /models: {e}"));
            Vec::new()
        }
    };
    let answers: Vec<(String, Result<Vec<String>, String>)> = futures::stream::iter(folders)
        .map(|folder| async move {
            let path = format!("/models/{folder}");
            let files = prober
                .send(url, &path, FOLDER_TIMEOUT, FOLDER_CAP, &[], |c, u| c.get(u))
                .await
                .map_err(|e| e.to_string())
                .and_then(|(_, body, _)| parse_json(&body).map_err(|e| e.to_string()))
                .and_then(|json| strings(&json).ok_or_else(|| "not a list of files".to_owned()))
                .map_err(|e| format!("GET {path}: {e}"));
            (folder, files)
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut models = BTreeMap::new();
    for (folder, files) in answers {
        match files {
            Ok(files) => {
                models.insert(folder, files);
            }
            Err(e) => problems.push(e),
        }
    }
    Ok((
        Inventory {
            comfyui_version,
            nodes,
            models,
        },
        problems,
    ))
}

/// Fetches endpoint `endpoint`'s inventory from `url` and keeps it. A failed fetch is
/// recorded (the last good inventory stays) and returned as the reason.
#[tracing::instrument(skip(pool, prober, url), fields(endpoint = %endpoint))]
pub async fn refresh(
    pool: &PgPool,
    prober: &Prober,
    endpoint: Uuid,
    url: &str,
) -> Result<Inventory, String> {
    match fetch(prober, url).await {
        Ok((inventory, problems)) => {
            let error = (!problems.is_empty()).then(|| problems.join("; "));
            let stored = sqlx::query(
                "insert into endpoint_inventories (endpoint_id, attempted_at, fetched_at, comfyui_version, nodes, models, error)
                 values ($1, now(), now(), $2, $3, $4, $5)
                 on conflict (endpoint_id) do update set attempted_at = now(), fetched_at = now(),
                     comfyui_version = $2, nodes = $3, models = $4, error = $5",
            )
            .bind(endpoint)
            .bind(&inventory.comfyui_version)
            .bind(sqlx::types::Json(&inventory.nodes))
            .bind(sqlx::types::Json(&inventory.models))
            .bind(&error)
            .execute(pool)
            .await;
            if let Err(e) = stored {
                tracing::error!(error = %e, "cannot keep an endpoint's inventory");
                return Err("the inventory was fetched but could not be kept".into());
            }
            tracing::info!(endpoint_url = %redact(url), nodes = inventory.nodes.len(), packs = inventory.packs().len(),
                folders = inventory.models.len(), problems = ?error, "endpoint inventory fetched");
            Ok(inventory)
        }
        Err(reason) => {
            tracing::warn!(endpoint_url = %redact(url), %reason, "cannot fetch an endpoint's inventory");
            let stored = sqlx::query(
                "insert into endpoint_inventories (endpoint_id, attempted_at, error) values ($1, now(), $2)
                 on conflict (endpoint_id) do update set attempted_at = now(), error = $2",
            )
            .bind(endpoint)
            .bind(&reason)
            .execute(pool)
            .await;
            if let Err(e) = stored {
                tracing::error!(error = %e, "cannot record a failed inventory fetch");
            }
            Err(reason)
        }
    }
}

/// An `endpoint_inventories` row: the inventory when one was ever fetched, and how the
/// last attempt went.
#[derive(Clone, Debug)]
pub struct Stored {
    pub endpoint: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub fetched_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub inventory: Option<Inventory>,
}

impl Stored {
    pub fn view(&self) -> app::colab::InventoryView {
        app::colab::InventoryView::new(
            self.endpoint,
            self.attempted_at,
            self.fetched_at,
            self.error.clone(),
            self.inventory.as_ref(),
        )
    }
}

type Row = (
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
    Option<Value>,
    Option<Value>,
);

pub async fn stored(pool: &PgPool, endpoint: Uuid) -> Result<Option<Stored>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "select attempted_at, fetched_at, error, comfyui_version, nodes, models
         from endpoint_inventories where endpoint_id = $1",
    )
    .bind(endpoint)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(attempted_at, fetched_at, error, comfyui_version, nodes, models)| {
            let inventory = match (fetched_at, nodes) {
                (Some(_), Some(nodes)) => {
                    let nodes = serde_json::from_value::<BTreeMap<String, NodeSpec>>(nodes);
                    let models = models
                        .map(serde_json::from_value::<BTreeMap<String, Vec<String>>>)
                        .transpose();
                    match (nodes, models) {
                        (Ok(nodes), Ok(models)) => Some(Inventory {
                            comfyui_version,
                            nodes,
                            models: models.unwrap_or_default(),
                        }),
                        // Kept by an older Slate in another shape: fetched again at
                        // the next verification or refresh.
                        (Err(e), _) | (_, Err(e)) => {
                            tracing::warn!(%endpoint, error = %e, "a kept inventory does not read");
                            None
                        }
                    }
                }
                _ => None,
            };
            Stored {
                endpoint,
                attempted_at,
                fetched_at: inventory.as_ref().and(fetched_at),
                error,
                inventory,
            }
        },
    ))
}

/// The inventory kept for `endpoint` and when it was fetched.
pub async fn load(
    pool: &PgPool,
    endpoint: Uuid,
) -> Result<Option<(Inventory, DateTime<Utc>)>, sqlx::Error> {
    Ok(stored(pool, endpoint)
        .await?
        .and_then(|s| Some((s.inventory?, s.fetched_at?))))
}

/// The healthy endpoint's inventory (the endpoint prompts go to now), when it has one.
pub async fn current(pool: &PgPool) -> Option<(Uuid, Inventory, DateTime<Utc>)> {
    let (id, _) = super::healthy_endpoint(pool).await?;
    match load(pool, id).await {
        Ok(found) => found.map(|(inventory, at)| (id, inventory, at)),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the current endpoint's inventory");
            None
        }
    }
}

/// A refresh asked for by a person or token: only the healthy endpoint's (an ended
/// endpoint's tunnel address may belong to somebody else by now), audited either way.
pub async fn refresh_as(
    pool: &PgPool,
    prober: &Prober,
    who: &Who,
    endpoint: Uuid,
) -> Result<Inventory, AppError> {
    let row: Option<(String, EndpointState)> =
        sqlx::query_as("select url, state from colab_endpoints where id = $1")
            .bind(endpoint)
            .fetch_optional(pool)
            .await
            .or_app()?;
    let (url, state) =
        row.ok_or_else(|| AppError::NotFound(format!("There is no endpoint {endpoint}.")))?;
    if state != EndpointState::Healthy {
        return Err(AppError::Conflict(format!(
            "This endpoint is {state}: only the healthy endpoint's inventory can be fetched."
        )));
    }
    let outcome = refresh(pool, prober, endpoint, &url).await;
    let detail = match &outcome {
        Ok(i) => json!({ "endpoint_id": endpoint, "ok": true, "nodes": i.nodes.len(),
            "packs": i.packs().len(), "folders": i.models.len() }),
        Err(e) => json!({ "endpoint_id": endpoint, "ok": false, "error": e }),
    };
    crate::audit::record(
        pool,
        who,
        "endpoint.inventory_refresh",
        Some(redact(&url)),
        detail,
    )
    .await
    .or_app()?;
    outcome.map_err(|e| {
        AppError::Unavailable(format!(
            "The endpoint's inventory could not be fetched: {e}."
        ))
    })
}

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Colab: FromRef<S>,
{
    Router::new()
        .route("/api/endpoints/current/inventory", get(current_inventory))
        .route("/api/endpoints/{id}/inventory", get(endpoint_inventory))
        .route(
            "/api/endpoints/{id}/inventory/refresh",
            post(refresh_endpoint),
        )
        .route("/api/comfyui/preflight", post(preflight))
}

/// A refusal, answered as the error's JSON with its status.
pub struct Refused(AppError);

impl From<AppError> for Refused {
    fn from(e: AppError) -> Self {
        Refused(e)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        errors::api(&self.0)
    }
}

type Answer = Result<Response, Refused>;

fn refuse(e: AppError) -> Refused {
    Refused(e)
}

fn principal(auth: Option<Extension<RequestAuth>>) -> Result<(Principal, Who), Refused> {
    let auth = auth.map(|Extension(a)| a);
    let client = auth.as_ref().and_then(|a| a.client_addr);
    match auth.and_then(|a| a.principal) {
        Some(p) => {
            let who = Who::principal(&p, client);
            Ok((p, who))
        }
        None => Err(refuse(AppError::Unauthenticated(
            "Sign in or send an API token.".into(),
        ))),
    }
}

fn endpoint_id(id: &str) -> Result<Uuid, Refused> {
    id.parse()
        .map_err(|_| refuse(AppError::NotFound(format!("There is no endpoint {id}."))))
}

/// The inventory as the API gives it: `Inventory`'s own fields, so a script can read the
/// body as one, and what a person wants first.
fn body(endpoint: Uuid, fetched_at: DateTime<Utc>, error: Option<&str>, i: &Inventory) -> Value {
    json!({
        "endpoint": endpoint,
        "fetched_at": fetched_at,
        "error": error,
        "comfyui_version": i.comfyui_version,
        "core_nodes": i.core_nodes(),
        "packs": i.packs(),
        "nodes": i.nodes,
        "models": i.models,
    })
}

async fn show(pool: &PgPool, endpoint: Uuid) -> Answer {
    let stored = stored(pool, endpoint).await.or_app().map_err(refuse)?;
    match stored {
        Some(Stored {
            inventory: Some(i),
            fetched_at: Some(at),
            error,
            ..
        }) => Ok(Json(body(endpoint, at, error.as_deref(), &i)).into_response()),
        Some(Stored { error, .. }) => Err(refuse(AppError::NotFound(format!(
            "No inventory yet for this endpoint: the last fetch failed ({}).",
            error.unwrap_or_default()
        )))),
        None => Err(refuse(AppError::NotFound(
            "No inventory yet for this endpoint: it is fetched when the endpoint is verified."
                .into(),
        ))),
    }
}

async fn current_inventory(
    State(colab): State<Colab>,
    auth: Option<Extension<RequestAuth>>,
) -> Answer {
    principal(auth)?;
    let (id, _) = super::healthy_endpoint(&colab.pool).await.ok_or_else(|| {
        refuse(AppError::Conflict(
            "There is no healthy endpoint now.".into(),
        ))
    })?;
    show(&colab.pool, id).await
}

async fn endpoint_inventory(
    State(colab): State<Colab>,
    auth: Option<Extension<RequestAuth>>,
    Path(id): Path<String>,
) -> Answer {
    principal(auth)?;
    let id = endpoint_id(&id)?;
    let known: bool =
        sqlx::query_scalar("select exists(select 1 from colab_endpoints where id = $1)")
            .bind(id)
            .fetch_one(&colab.pool)
            .await
            .or_app()
            .map_err(refuse)?;
    if !known {
        return Err(refuse(AppError::NotFound(format!(
            "There is no endpoint {id}."
        ))));
    }
    show(&colab.pool, id).await
}

async fn refresh_endpoint(
    State(colab): State<Colab>,
    auth: Option<Extension<RequestAuth>>,
    Path(id): Path<String>,
) -> Answer {
    let (p, who) = principal(auth)?;
    if !p.has(Role::Lead) {
        return Err(refuse(AppError::Forbidden(
            "Refreshing an endpoint's inventory needs the lead or admin role.".into(),
        )));
    }
    let id = endpoint_id(&id)?;
    refresh_as(&colab.pool, &colab.prober, &who, id)
        .await
        .map_err(refuse)?;
    show(&colab.pool, id).await
}

/// Why a request body is not an API-format graph, naming the node when one is wrong.
pub fn graph_of(body: &[u8]) -> Result<Map<String, Value>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("The body is not JSON: {e}."))?;
    let graph = v
        .get("graph")
        .ok_or("The body needs a \"graph\": the workflow in API format.")?;
    let graph = graph
        .as_object()
        .ok_or("\"graph\" must be an object of nodes by id (the API format).")?;
    if graph.get("nodes").is_some_and(Value::is_array) {
        return Err("This is a workflow in ComfyUI's UI format; pre-flight needs the API format: in ComfyUI, Workflow → Export (API).".into());
    }
    if graph.is_empty() {
        return Err("The graph has no nodes.".into());
    }
    for (id, node) in graph {
        if !node.get("class_type").is_some_and(Value::is_string) {
            return Err(format!("Node {id} has no class_type."));
        }
        if node.get("inputs").is_some_and(|i| !i.is_object()) {
            return Err(format!("Node {id}: inputs must be an object."));
        }
    }
    Ok(graph.clone())
}

async fn preflight(
    State(colab): State<Colab>,
    auth: Option<Extension<RequestAuth>>,
    bytes: Bytes,
) -> Answer {
    principal(auth)?;
    let graph = graph_of(&bytes).map_err(|e| refuse(AppError::Invalid(e)))?;
    let (id, _) = super::healthy_endpoint(&colab.pool).await.ok_or_else(|| {
        refuse(AppError::Conflict(
            "There is no healthy endpoint to check the graph against.".into(),
        ))
    })?;
    let (inventory, fetched_at) = load(&colab.pool, id)
        .await
        .or_app()
        .map_err(refuse)?
        .ok_or_else(|| {
            refuse(AppError::Conflict(
                "The endpoint's inventory has not been fetched yet: it is fetched when the endpoint is verified, or ask for a refresh.".into(),
            ))
        })?;
    let gaps = inv::preflight(&graph, &inventory);
    Ok(Json(json!({
        "endpoint": id,
        "fetched_at": fetched_at,
        "messages": inv::messages(&gaps),
        "gaps": gaps,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_folder_names_reach_a_path() {
        for ok in ["checkpoints", "text_encoders", "model-patches", "v2.1"] {
            assert!(plain_folder(ok), "{ok}");
        }
        for bad in [
            "", "..", "../etc", "a/b", "a b", ".hidden", "x?y=1", "%2e%2e",
        ] {
            assert!(!plain_folder(bad), "{bad}");
        }
    }

    #[test]
    fn request_bodies_that_are_not_graphs_are_refused_with_the_reason() {
        assert!(graph_of(b"nope").unwrap_err().contains("not JSON"));
        assert!(graph_of(b"{}").unwrap_err().contains("needs a \"graph\""));
        assert!(graph_of(br#"{"graph": [1]}"#)
            .unwrap_err()
            .contains("object of nodes"));
        assert!(graph_of(br#"{"graph": {}}"#)
            .unwrap_err()
            .contains("no nodes"));
        assert!(graph_of(br#"{"graph": {"nodes": [], "links": []}}"#)
            .unwrap_err()
            .contains("Export (API)"));
        assert_eq!(
            graph_of(br#"{"graph": {"3": {"inputs": {}}}}"#).unwrap_err(),
            "Node 3 has no class_type."
        );
        assert_eq!(
            graph_of(br#"{"graph": {"3": {"class_type": "KSampler", "inputs": 5}}}"#).unwrap_err(),
            "Node 3: inputs must be an object."
        );
        let g = graph_of(br#"{"graph": {"3": {"class_type": "KSampler", "inputs": {}}}}"#).unwrap();
        assert_eq!(g.len(), 1);
    }
}
