//! `POST /api/deploys`: CI reports a deploy (commit, branch, run, actor, environment,
//! images, phase). Only a `ci`-scoped token may call it. Idempotent by the CI run id: a
//! phase reported twice changes nothing and says so; a run moves from `started` to
//! `succeeded` or `failed` once. Each report is linked to the cluster revisions that
//! introduced one of its images.

use std::sync::OnceLock;

use app::accounts::TokenScope;
use app::backend::RequestAuth;
use app::error::AppError;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use regex::Regex;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::revisions::{introduced, link_ci};
use crate::audit::Who;
use crate::errors;

pub const PATH: &str = "/api/deploys";
pub const MAX_BODY: usize = 64 * 1024;

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    PgPool: FromRef<S>,
{
    Router::new()
        .route(PATH, post(report))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// What CI sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub run_id: Option<String>,
    pub sha: Option<String>,
    pub branch: Option<String>,
    pub run_url: Option<String>,
    pub actor: Option<String>,
    pub environment: Option<String>,
    #[serde(default)]
    pub images: Vec<String>,
    pub phase: Option<String>,
}

/// A report that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub run_id: String,
    pub sha: String,
    pub branch: Option<String>,
    pub run_url: Option<String>,
    pub actor: String,
    pub environment: String,
    pub images: Vec<String>,
    pub phase: String,
}

/// Whether `s` is an image reference as registries and kubelets accept it:
/// `[host[:port]/]path[:tag][@sha256:<64 hex>]`, with a tag or a digest (an unpinned
/// image tells nobody what ran).
pub fn is_image_reference(s: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let host = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)";
        Regex::new(&format!(
            r"^{host}?{component}(?:/{component})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$"
        ))
        .expect("a valid pattern")
    });
    s.len() <= 512 && re.is_match(s) && {
        let last = s.rsplit('/').next().unwrap_or(s);
        last.contains(':') || s.contains('@')
    }
}

fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, AppError> {
    match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > max => Err(AppError::invalid(format!(
            "{field} is longer than {max} characters."
        ))),
        Some(v) if v.chars().any(char::is_control) => Err(AppError::invalid(format!(
            "{field} contains control characters."
        ))),
        v => Ok(v),
    }
}

fn required(
    field: &str,
    value: Option<String>,
    max: usize,
    what: &str,
) -> Result<String, AppError> {
    text(field, value, max)?
        .ok_or_else(|| AppError::invalid(format!("{field} is missing: send {what}.")))
}

pub fn validate(r: Report) -> Result<Valid, AppError> {
    let run_id = required(
        "run_id",
        r.run_id,
        200,
        "the CI run's id (e.g. GitHub's run_id-run_attempt)",
    )?;
    let sha = required("sha", r.sha, 64, "the commit SHA the run deployed")?.to_ascii_lowercase();
    if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::invalid(format!(
            "sha \"{sha}\" is not a commit SHA (7 to 64 hexadecimal digits)."
        )));
    }
    let run_url = text("run_url", r.run_url, 2000)?;
    if let Some(u) = &run_url {
        let ok = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http"));
        if !ok {
            return Err(AppError::invalid(format!(
                "run_url \"{u}\" is not an http(s) address."
            )));
        }
    }
    let environment = required(
        "environment",
        r.environment,
        100,
        "the environment deployed to (e.g. prod)",
    )?;
    if !environment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(AppError::invalid(format!(
            "environment \"{environment}\" may only contain letters, digits, '-', '_' and '.'."
        )));
    }
    if r.images.len() > 100 {
        return Err(AppError::invalid("images lists more than 100 images."));
    }
    let mut images = Vec::new();
    for image in r.images {
        let image = image.trim().to_owned();
        if !is_image_reference(&image) {
            return Err(AppError::invalid(format!(
                "\"{image}\" is not an image reference: use [registry/]name:tag or name@sha256:<digest>."
            )));
        }
        if !images.contains(&image) {
            images.push(image);
        }
    }
    let phase = required("phase", r.phase, 20, "started, succeeded or failed")?;
    if !matches!(phase.as_str(), "started" | "succeeded" | "failed") {
        return Err(AppError::invalid(format!(
            "phase \"{phase}\" is not one of started, succeeded, failed."
        )));
    }
    Ok(Valid {
        run_id,
        sha,
        branch: text("branch", r.branch, 255)?,
        run_url,
        actor: required("actor", r.actor, 200, "who started the run")?,
        environment,
        images,
        phase,
    })
}

async fn report(
    State(pool): State<PgPool>,
    auth: Option<Extension<RequestAuth>>,
    body: Bytes,
) -> Response {
    let principal = auth.and_then(|Extension(a)| a.principal);
    let Some(principal) = principal else {
        return errors::api(&AppError::Unauthenticated(
            "Send a ci-scoped token: Authorization: Bearer <token>.".into(),
        ));
    };
    match principal.token.as_ref().map(|t| t.scope) {
        Some(TokenScope::Ci) => {}
        Some(other) => {
            return errors::api(&AppError::Forbidden(format!(
                "Only a ci-scoped token may report deploys; this token's scope is {other}."
            )))
        }
        None => {
            return errors::api(&AppError::Forbidden(
                "Deploys are reported by CI with a ci-scoped token, not from a browser session."
                    .into(),
            ))
        }
    }
    let report: Report = match serde_json::from_slice(&body) {
        Ok(r) => r,
        // Undecodable JSON is a bad request (400); a decodable report with bad values
        // is refused by validation (422), like every form in Slate.
        Err(e) => {
            let err = AppError::invalid(format!("The body is not a deploy report: {e}."));
            return (StatusCode::BAD_REQUEST, Json(err)).into_response();
        }
    };
    let valid = match validate(report) {
        Ok(v) => v,
        Err(e) => return errors::api(&e),
    };
    let who = Who::principal(&principal, None);
    match store(&pool, &who, &valid).await {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => errors::api(&e),
    }
}

/// Stores a valid report; returns the status and the answer.
pub async fn store(
    pool: &sqlx::PgPool,
    who: &Who,
    r: &Valid,
) -> Result<(StatusCode, serde_json::Value), AppError> {
    let db = |e: sqlx::Error| {
        tracing::error!(error = %e, "cannot store a CI deploy report");
        AppError::internal()
    };
    let mut tx = pool.begin().await.map_err(db)?;
    // Serialises reports of one run across replicas.
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('ci_deploys:' || $1, 0))")
        .bind(&r.run_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    type Stored = (
        Uuid,
        String,
        String,
        String,
        serde_json::Value,
        DateTime<Utc>,
    );
    let stored: Option<Stored> = sqlx::query_as(
        "select id, sha, environment, phase, phases, created_at from ci_deploys where run_id = $1",
    )
    .bind(&r.run_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let (id, status, created_at) = match stored {
        Some((id, sha, environment, phase, phases, created_at)) => {
            if sha != r.sha || environment != r.environment {
                return Err(AppError::Conflict(format!(
                    "Run {} was reported for commit {} to {}; this report says commit {} to {}.",
                    r.run_id,
                    &sha[..sha.len().min(12)],
                    environment,
                    &r.sha[..r.sha.len().min(12)],
                    r.environment
                )));
            }
            let seen = phases
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["phase"] == r.phase.as_str());
            if seen {
                return Ok((
                    StatusCode::OK,
                    json!({"id": id, "run_id": r.run_id, "phase": phase, "duplicate": true,
                           "message": format!("Run {} was already reported as {}: nothing changed.", r.run_id, r.phase)}),
                ));
            }
            if phase != "started" {
                return Err(AppError::Conflict(format!(
                    "Run {} already finished as {phase}; it cannot become {}.",
                    r.run_id, r.phase
                )));
            }
            if r.phase == "started" {
                unreachable!("a started run has seen the started phase");
            }
            sqlx::query(
                "update ci_deploys set phase = $2, phases = phases || jsonb_build_array(jsonb_build_object('phase', $2::text, 'at', now())),
                     images = case when cardinality($3::text[]) > 0 then $3 else images end,
                     branch = coalesce($4, branch), run_url = coalesce($5, run_url), updated_at = now()
                 where id = $1",
            )
            .bind(id)
            .bind(&r.phase)
            .bind(&r.images)
            .bind(&r.branch)
            .bind(&r.run_url)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            (id, StatusCode::OK, created_at)
        }
        None => {
            let id = Uuid::now_v7();
            let created_at: DateTime<Utc> = sqlx::query_scalar(
                "insert into ci_deploys (id, run_id, sha, branch, run_url, actor, environment, images, phase, phases, token_owner, token_name)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, jsonb_build_array(jsonb_build_object('phase', $9::text, 'at', now())), $10, $11)
                 returning created_at",
            )
            .bind(id)
            .bind(&r.run_id)
            .bind(&r.sha)
            .bind(&r.branch)
            .bind(&r.run_url)
            .bind(&r.actor)
            .bind(&r.environment)
            .bind(&r.images)
            .bind(&r.phase)
            .bind(who.user_id)
            .bind(&who.label)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
            (id, StatusCode::CREATED, created_at)
        }
    };
    let linked = link_revisions(&mut tx, r, created_at).await.map_err(db)?;
    crate::audit::record(
        &mut *tx,
        who,
        "deploy.ci_reported",
        Some(format!("run {}", r.run_id)),
        json!({"sha": r.sha, "environment": r.environment, "phase": r.phase, "images": r.images, "linked": linked}),
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok((
        status,
        json!({"id": id, "run_id": r.run_id, "phase": r.phase, "duplicate": false, "linked": linked}),
    ))
}

/// Links the revisions that introduced one of the run's images (and are not already
/// attributed) to the run. Returns them as `Kind/name#revision`.
async fn link_revisions(
    tx: &mut sqlx::PgConnection,
    r: &Valid,
    created_at: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    if r.images.is_empty() {
        return Ok(Vec::new());
    }
    /// A revision, its images and its previous revision's images.
    type Candidate = (Uuid, String, String, i64, Vec<String>, Option<Vec<String>>);
    let candidates: Vec<Candidate> =
        sqlx::query_as(
            "select r.id, r.kind, r.workload, r.revision, r.images,
                    (select p.images from deploy_revisions p
                     where p.namespace = r.namespace and p.kind = r.kind and p.workload = r.workload
                       and p.revision < r.revision order by p.revision desc limit 1)
             from deploy_revisions r
             where r.source = 'cluster' and r.images && $1
               and r.created_at >= $2 - interval '2 minutes' and r.created_at <= $2 + interval '1 hour'
             order by r.created_at",
        )
        .bind(&r.images)
        .bind(created_at)
        .fetch_all(&mut *tx)
        .await?;
    let mut linked = Vec::new();
    for (id, kind, workload, revision, images, previous) in candidates {
        let new = introduced(&images, previous.as_deref());
        if new.iter().any(|i| r.images.contains(i)) {
            link_ci(tx, id, &r.run_id, &r.actor).await?;
            linked.push(format!("{kind}/{workload}#{revision}"));
        }
    }
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "ghcr.io/studio/slate:1.4.2",
            "slate:0.1.0",
            "localhost:5000/slate:dev-abc",
            "docker.io/library/redis:7.4-alpine",
            "ghcr.io/studio/slate@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "ghcr.io/studio/slate:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_image_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "slate",
            "Slate:1",
            "ghcr.io/studio/slate:",
            "slate:1 ; rm -rf /",
            "slate@sha256:xyz",
            "-slate:1",
            "ghcr.io//slate:1",
            "localhost:5000/slate",
        ] {
            assert!(!is_image_reference(bad), "{bad}");
        }
    }

    fn report() -> Report {
        Report {
            run_id: Some("981-1".into()),
            sha: Some("0123456789ABCDEF0123456789abcdef01234567".into()),
            branch: Some("main".into()),
            run_url: Some("https://github.com/studio/slate/actions/runs/981".into()),
            actor: Some("mara".into()),
            environment: Some("prod".into()),
            images: vec!["ghcr.io/studio/slate:0123456".into()],
            phase: Some("started".into()),
        }
    }

    #[test]
    fn reports_are_validated_with_a_reason() {
        let v = validate(report()).unwrap();
        assert_eq!(v.sha, "0123456789abcdef0123456789abcdef01234567");
        let missing = validate(Report {
            sha: None,
            ..report()
        })
        .unwrap_err();
        assert!(missing.to_string().contains("sha is missing"), "{missing}");
        let bad = validate(Report {
            images: vec!["ghcr.io/x/slate".into()],
            ..report()
        })
        .unwrap_err();
        assert!(bad.to_string().contains("not an image reference"), "{bad}");
        let phase = validate(Report {
            phase: Some("done".into()),
            ..report()
        })
        .unwrap_err();
        assert!(phase.to_string().contains("phase \"done\""), "{phase}");
        let url = validate(Report {
            run_url: Some("javascript:alert(1)".into()),
            ..report()
        })
        .unwrap_err();
        assert!(url.to_string().contains("run_url"), "{url}");
    }
}
