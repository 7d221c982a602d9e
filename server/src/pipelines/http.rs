//! The runs API for scripts (an `api` token) and pages alike, in JSON:
//!
//! - `POST /api/runs` `{"template", "version"?, "params", "priority"?}` → 201 `{"id", "url"}`
//! - `GET /api/runs/{id}` → the run, its stages and its outputs
//! - `POST /api/runs/{id}/cancel` → 200
//! - `POST /api/runs/{id}/stages/{name}/retry` → 200
//! - `POST /api/runs/{id}/resubmit` `{"params"}` (the changed ones) → 201 `{"id", "url"}`
//!
//! Refusals: 401 without a principal, 403 for another creator's run or a raised priority
//! by a creator, 404, 409 (a finished run, a stage that cannot be retried, a Job stage
//! without a cluster), 422 with the reason for bad parameters or assets.

use app::backend::RequestAuth;
use app::error::AppError;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::backend::Pipelines;
use super::runs::{self, Submission, Submitter};
use crate::assets::Assets;
use crate::audit::Who;
use crate::errors;
use crate::notify::{Channel, Notifications};
use crate::tasks::Shutdown;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Pipelines: FromRef<S>,
    Assets: FromRef<S>,
    Notifications: FromRef<S>,
    Shutdown: FromRef<S>,
{
    Router::new()
        .route("/api/runs", post(submit))
        .route("/api/runs/{id}", get(show))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/runs/{id}/stages/{name}/retry", post(retry))
        .route("/api/runs/{id}/resubmit", post(resubmit))
        .route("/api/runs/{id}/stages/{name}/preview", get(preview))
        .route("/api/runs/{id}/attempts/{attempt}/log", get(archived_log))
        .route("/api/runs/events", get(events))
}

/// `GET /api/runs/events`: a `run` event (its data the run's id, or `*` after a gap)
/// whenever a run, a stage, its progress or its log changes, from any replica.
async fn events(
    State(notifications): State<Notifications>,
    State(shutdown): State<Shutdown>,
) -> axum::response::sse::Sse<
    impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    let rx = notifications.subscribe(Channel::RunChanges);
    crate::sse::respond(crate::sse::notifications(rx, "run"), &shutdown)
}

/// A refusal: the error, and a status when it is not the error's own (400 for a body
/// that does not decode).
pub struct Refused(Option<StatusCode>, AppError);

impl From<AppError> for Refused {
    fn from(e: AppError) -> Self {
        Refused(None, e)
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self.0 {
            Some(status) => (status, Json(self.1)).into_response(),
            None => errors::api(&self.1),
        }
    }
}

type Answer = Result<Response, Refused>;

/// The caller and how the audit log names them, or 401 (the workflows API uses it too).
pub(crate) fn principal(
    auth: Option<Extension<RequestAuth>>,
) -> Result<(app::accounts::Principal, Who), Refused> {
    let auth = auth.map(|Extension(a)| a);
    let client = auth.as_ref().and_then(|a| a.client_addr);
    match auth.and_then(|a| a.principal) {
        Some(p) => {
            let who = Who::principal(&p, client);
            Ok((p, who))
        }
        None => Err(AppError::Unauthenticated("Sign in or send an API token.".into()).into()),
    }
}

fn submitter<'a>(p: &app::accounts::Principal, who: &'a Who) -> Submitter<'a> {
    Submitter {
        who,
        user_id: p.user_id,
        role: p.role,
        token: p.token.as_ref().map(|t| t.name.clone()),
    }
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, Refused> {
    serde_json::from_slice(bytes).map_err(|e| {
        Refused(
            Some(StatusCode::BAD_REQUEST),
            AppError::invalid(format!("The body is not valid here: {e}.")),
        )
    })
}

fn parse_id(id: &str) -> Result<Uuid, Refused> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("There is no run {id}.")).into())
}

async fn submit(
    State(pipelines): State<Pipelines>,
    auth: Option<Extension<RequestAuth>>,
    bytes: Bytes,
) -> Answer {
    let (p, who) = principal(auth)?;
    let submission: Submission = body(&bytes)?;
    let by = submitter(&p, &who);
    let id = runs::submit(&pipelines.pool, &pipelines.caps, &by, &submission, None).await?;
    Ok(created(id))
}

fn created(id: Uuid) -> Response {
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "url": format!("/runs/{id}")})),
    )
        .into_response()
}

async fn show(
    State(pipelines): State<Pipelines>,
    auth: Option<Extension<RequestAuth>>,
    Path(id): Path<String>,
) -> Answer {
    principal(auth)?;
    let id = parse_id(&id)?;
    match describe(&pipelines.pool, id).await {
        Ok(Some(v)) => Ok(Json(v).into_response()),
        Ok(None) => Err(AppError::NotFound(format!("There is no run {id}.")).into()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read a run");
            Err(AppError::internal().into())
        }
    }
}

/// `GET /api/runs/{id}/stages/{name}/preview`: the last image a stage produced while it
/// ran (404 when it has none).
async fn preview(
    State(pipelines): State<Pipelines>,
    auth: Option<Extension<RequestAuth>>,
    Path((id, name)): Path<(String, String)>,
) -> Answer {
    principal(auth)?;
    let id = parse_id(&id)?;
    let found: Option<(Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
        "select preview, preview_type from run_stages where run_id = $1 and name = $2",
    )
    .bind(id)
    .bind(&name)
    .fetch_optional(&pipelines.pool)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "cannot read a stage's preview");
        AppError::internal()
    })?;
    match found {
        Some((Some(bytes), Some(mime))) => Ok((
            [
                (axum::http::header::CONTENT_TYPE, mime),
                (axum::http::header::CACHE_CONTROL, "no-cache".to_owned()),
                (
                    axum::http::header::X_CONTENT_TYPE_OPTIONS,
                    "nosniff".to_owned(),
                ),
            ],
            bytes,
        )
            .into_response()),
        Some(_) => Err(AppError::NotFound(format!("Stage {name} has no image yet.")).into()),
        None => Err(AppError::NotFound(format!("Run {id} has no stage {name}.")).into()),
    }
}

/// `GET /api/runs/{id}/attempts/{attempt}/log`: an attempt's whole log, as archived in
/// storage when it ended (it outlives the pod or process that wrote it).
async fn archived_log(
    State(pipelines): State<Pipelines>,
    State(assets): State<Assets>,
    auth: Option<Extension<RequestAuth>>,
    Path((id, attempt)): Path<(String, String)>,
) -> Answer {
    principal(auth)?;
    let (id, attempt) = (parse_id(&id)?, parse_id(&attempt)?);
    let key: Option<Option<String>> = sqlx::query_scalar(
        "select a.log_key from stage_attempts a join run_stages s on s.id = a.stage_id
         where a.id = $1 and s.run_id = $2",
    )
    .bind(attempt)
    .bind(id)
    .fetch_optional(&pipelines.pool)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "cannot read an attempt");
        AppError::internal()
    })?;
    let Some(key) = key else {
        return Err(AppError::NotFound(format!("Run {id} has no attempt {attempt}.")).into());
    };
    let Some(key) = key else {
        return Err(AppError::NotFound(
            "This attempt's log is not archived yet: it is archived when the attempt ends.".into(),
        )
        .into());
    };
    let found = assets.storage.get_range(&key, None).await.map_err(|e| {
        tracing::error!(error = %e, key, "cannot read an archived log");
        AppError::internal()
    })?;
    let body = axum::body::Body::from_stream(found.into_stream());
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            ),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// A run as JSON: itself, its stages in template order, its outputs.
pub async fn describe(pool: &sqlx::PgPool, id: Uuid) -> Result<Option<Value>, sqlx::Error> {
    let run: Option<Value> = sqlx::query_scalar(
        "select jsonb_build_object('id', r.id, 'template', p.name, 'version', p.version, 'state', r.state,
             'params', r.params, 'priority', r.priority, 'submitted_by', u.email,
             'submitted_via', r.submitted_via, 'resubmitted_from', r.resubmitted_from,
             'created_at', r.created_at, 'started_at', r.started_at, 'finished_at', r.finished_at)
         from runs r join pipelines p on p.id = r.pipeline_id join users u on u.id = r.submitted_by
         where r.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(mut run) = run else {
        return Ok(None);
    };
    let stages: Vec<Value> = sqlx::query_scalar(
        "select jsonb_build_object('name', name, 'executor', executor, 'needs', needs, 'state', state,
             'attempt', attempt, 'attempts_max', attempts_max, 'progress', progress,
             'status', status_message, 'queued_at', queued_at, 'started_at', started_at,
             'finished_at', finished_at)
         from run_stages where run_id = $1 order by id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let outputs: Vec<Value> = sqlx::query_scalar(
        "select jsonb_build_object('asset', o.asset_id, 'name', a.name, 'state', a.state,
             'stage', s.name, 'provenance', o.provenance)
         from run_outputs o join assets a on a.id = o.asset_id join run_stages s on s.id = o.stage_id
         where o.run_id = $1 order by o.created_at, a.name",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    run["stages"] = Value::Array(stages);
    run["outputs"] = Value::Array(outputs);
    Ok(Some(run))
}

async fn cancel(
    State(pipelines): State<Pipelines>,
    auth: Option<Extension<RequestAuth>>,
    Path(id): Path<String>,
) -> Answer {
    let (p, who) = principal(auth)?;
    let id = parse_id(&id)?;
    runs::cancel(&pipelines.pool, id, &submitter(&p, &who)).await?;
    Ok(Json(json!({"id": id, "cancelled": true})).into_response())
}

async fn retry(
    State(pipelines): State<Pipelines>,
    auth: Option<Extension<RequestAuth>>,
    Path((id, name)): Path<(String, String)>,
) -> Answer {
    let (p, who) = principal(auth)?;
    let id = parse_id(&id)?;
    runs::retry_stage(&pipelines.pool, id, &name, &submitter(&p, &who)).await?;
    Ok(Json(json!({"id": id, "retried": name})).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Resubmit {
    #[serde(default)]
    params: Map<String, Value>,
}

async fn resubmit(
    State(pipelines): State<Pipelines>,
    auth: Option<Extension<RequestAuth>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let (p, who) = principal(auth)?;
    let id = parse_id(&id)?;
    let changes: Resubmit = if bytes.is_empty() {
        Resubmit { params: Map::new() }
    } else {
        body(&bytes)?
    };
    let by = submitter(&p, &who);
    let new = runs::resubmit(&pipelines.pool, &pipelines.caps, id, &changes.params, &by).await?;
    Ok(created(new))
}
