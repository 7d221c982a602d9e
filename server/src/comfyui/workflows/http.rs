//! The workflows API for scripts (an `api` token) and pages alike, in JSON
//! (docs/workflows.md):
//!
//! - `GET /api/workflows` → the latest version of each
//! - `POST /api/workflows` `{"name", "title"?, "description"?, "workflow"}` (the API-format
//!   graph as an object or as text) → 201 `{"name", "version", "url"}`
//! - `POST /api/workflows/{name}/versions?title=&description=` with the file itself as
//!   the body (JSON, or a PNG ComfyUI saved) → 201, the same answer
//! - `POST /api/workflows/import` multipart (`name`, `title`, `description`, `file`), the
//!   page's file form → 303 to the workflow's page
//! - `GET /api/workflows/{name}?version=N` → the version, its graph, nodes, bindings,
//!   proposal, changes and what the current endpoint lacks
//! - `POST /api/workflows/{name}/bindings` `{"bindings": [...]}` → 201 `{"version", "template"}`
//! - `GET /api/workflows/{name}/preflight?version=N` → `{"endpoint_known", "gaps"}`
//!
//! Adding and binding are for leads and admins; a refusal is 4xx with the reason.

// A refusal is a response like any other (axum's handlers answer `Result<Response, E>`);
// boxing it would only add a step.
#![allow(clippy::result_large_err)]

use app::backend::RequestAuth;
use app::comfyui::workflow::Binding;
use app::error::AppError;
use axum::body::{Body, Bytes};
use axum::extract::{FromRef, Multipart, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Workflows, MAX_IMAGE_BYTES};
use crate::audit::Who;
use crate::errors;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Workflows: FromRef<S>,
{
    Router::new()
        .route("/api/workflows", get(list).post(add))
        .route("/api/workflows/import", post(import_form))
        .route("/api/workflows/{name}", get(show))
        .route("/api/workflows/{name}/versions", post(add_file))
        .route("/api/workflows/{name}/bindings", post(bind))
        .route("/api/workflows/{name}/preflight", get(preflight))
}

type Answer = Result<Response, Response>;

fn refuse(e: AppError) -> Response {
    errors::api(&e)
}

fn principal(
    auth: Option<Extension<RequestAuth>>,
) -> Result<(app::accounts::Principal, Who), Response> {
    crate::pipelines::http::principal(auth).map_err(IntoResponse::into_response)
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(AppError::invalid(format!(
                "The body is not valid here: {e}."
            ))),
        )
            .into_response()
    })
}

fn created(name: &str, version: i32) -> Response {
    (
        StatusCode::CREATED,
        Json(json!({"name": name, "version": version,
                    "url": format!("/workflows/{name}?version={version}")})),
    )
        .into_response()
}

async fn list(State(w): State<Workflows>, auth: Option<Extension<RequestAuth>>) -> Answer {
    principal(auth)?;
    let all = w.summaries().await.map_err(refuse)?;
    Ok(Json(all).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Add {
    name: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
    /// The graph as an object, or the exported file's text.
    workflow: Value,
}

async fn add(
    State(w): State<Workflows>,
    auth: Option<Extension<RequestAuth>>,
    bytes: Bytes,
) -> Answer {
    let (p, who) = principal(auth)?;
    let body: Add = json_body(&bytes)?;
    let text = match &body.workflow {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let version = w
        .import(
            &who,
            &p,
            &body.name,
            &body.title,
            body.description.as_deref(),
            text.as_bytes(),
        )
        .await
        .map_err(refuse)?;
    Ok(created(&body.name, version))
}

#[derive(Deserialize)]
struct FileQuery {
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
}

/// Reads at most the image limit (a JSON file is held to its own, smaller one when parsed).
async fn limited(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_IMAGE_BYTES)
        .await
        .map_err(|_| {
            refuse(AppError::TooLarge(format!(
                "The file is larger than {} MiB.",
                MAX_IMAGE_BYTES / (1024 * 1024)
            )))
        })
}

async fn add_file(
    State(w): State<Workflows>,
    auth: Option<Extension<RequestAuth>>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
    body: Body,
) -> Answer {
    let (p, who) = principal(auth)?;
    let bytes = limited(body).await?;
    let version = w
        .import(&who, &p, &name, &q.title, q.description.as_deref(), &bytes)
        .await
        .map_err(refuse)?;
    Ok(created(&name, version))
}

/// The page's file form: a refusal is plain text with the reason (the browser shows it),
/// success goes to the workflow's page.
async fn import_form(
    State(w): State<Workflows>,
    auth: Option<Extension<RequestAuth>>,
    mut form: Multipart,
) -> Answer {
    let plain = |e: AppError| {
        (
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            e.to_string(),
        )
            .into_response()
    };
    let (p, who) = principal(auth)?;
    let (mut name, mut title, mut description, mut file) =
        (String::new(), String::new(), None, None::<Bytes>);
    let mut read = 0usize;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(plain(AppError::BadRequest(format!(
                    "The form cannot be read: {e}."
                ))))
            }
        };
        let key = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|e| {
            plain(AppError::BadRequest(format!(
                "The form cannot be read: {e}."
            )))
        })?;
        read += bytes.len();
        if read > MAX_IMAGE_BYTES {
            return Err(plain(AppError::TooLarge(format!(
                "The file is larger than {} MiB.",
                MAX_IMAGE_BYTES / (1024 * 1024)
            ))));
        }
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match key.as_str() {
            "name" => name = text(),
            "title" => title = text(),
            "description" => description = Some(text()).filter(|d| !d.is_empty()),
            "file" => file = Some(bytes),
            _ => {}
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return Err(plain(AppError::invalid(
            "Choose a file: the workflow's JSON, or an image ComfyUI saved.",
        )));
    };
    let version = w
        .import(&who, &p, &name, &title, description.as_deref(), &file)
        .await
        .map_err(plain)?;
    Ok((
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("/workflows/{name}?version={version}"),
        )],
    )
        .into_response())
}

#[derive(Deserialize)]
struct VersionQuery {
    #[serde(default)]
    version: Option<i32>,
}

async fn show(
    State(w): State<Workflows>,
    auth: Option<Extension<RequestAuth>>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Answer {
    let (p, _) = principal(auth)?;
    let detail = w.detail(&p, &name, q.version).await.map_err(refuse)?;
    let graph: Value = serde_json::from_str(&detail.graph_json).unwrap_or_default();
    let mut answer = serde_json::to_value(&detail).unwrap_or_default();
    if let Some(obj) = answer.as_object_mut() {
        obj.remove("graph_json");
        obj.insert("graph".into(), graph);
    }
    Ok(Json(answer).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bind {
    bindings: Vec<Binding>,
}

async fn bind(
    State(w): State<Workflows>,
    auth: Option<Extension<RequestAuth>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Answer {
    let (p, who) = principal(auth)?;
    let body: Bind = json_body(&bytes)?;
    let version = w
        .save_bindings(&who, &p, &name, body.bindings)
        .await
        .map_err(refuse)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "version": version,
                    "template": app::comfyui::workflow::template_name(&name)})),
    )
        .into_response())
}

async fn preflight(
    State(w): State<Workflows>,
    auth: Option<Extension<RequestAuth>>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Answer {
    let (p, _) = principal(auth)?;
    let detail = w.detail(&p, &name, q.version).await.map_err(refuse)?;
    Ok(Json(json!({
        "workflow": name,
        "version": detail.summary.version,
        "endpoint_known": detail.gaps.is_some(),
        "gaps": detail.gaps.unwrap_or_default(),
    }))
    .into_response())
}
