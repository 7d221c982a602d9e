//! Templates in the database: every saved version is kept (a run names the exact version
//! it ran), the built-in ones are written at start when they changed, and an admin's edit
//! is validated before it becomes a new version.

use app::pipelines::template::{Problem, Template, BUILT_IN};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::Who;

/// One stored version.
#[derive(Clone, Debug)]
pub struct Stored {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub source: String,
    pub template: Template,
    pub builtin: bool,
    pub created_at: DateTime<Utc>,
}

type Row = (
    Uuid,
    String,
    i32,
    String,
    serde_json::Value,
    bool,
    DateTime<Utc>,
);

fn stored(row: Row) -> Option<Stored> {
    let (id, name, version, source, definition, builtin, created_at) = row;
    Some(Stored {
        id,
        name,
        version,
        source,
        template: serde_json::from_value(definition).ok()?,
        builtin,
        created_at,
    })
}

const COLUMNS: &str = "id, name, version, source, definition, builtin, created_at";

/// Why a save did not make a new version.
#[derive(Debug)]
pub enum SaveError {
    Invalid(Vec<Problem>),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for SaveError {
    fn from(e: sqlx::Error) -> Self {
        SaveError::Database(e)
    }
}

/// Saves `source` as the next version of its template, unless it is the same text as the
/// latest version. Returns (name, version, whether a version was made).
pub async fn save(
    pool: &PgPool,
    who: &Who,
    source: &str,
    builtin: bool,
) -> Result<(String, i32, bool), SaveError> {
    let template = Template::parse(source).map_err(SaveError::Invalid)?;
    let comfy = crate::comfyui::workflows::check_stages(pool, &template).await?;
    if !comfy.is_empty() {
        return Err(SaveError::Invalid(
            comfy
                .into_iter()
                .map(|message| Problem {
                    line: None,
                    message,
                })
                .collect(),
        ));
    }
    let mut tx = pool.begin().await?;
    // One writer per template name at a time (replicas seed built-ins at once).
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('pipelines:' || $1, 0))")
        .bind(&template.name)
        .execute(&mut *tx)
        .await?;
    let latest: Option<(i32, String)> = sqlx::query_as(
        "select version, source from pipelines where name = $1 order by version desc limit 1",
    )
    .bind(&template.name)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((version, text)) = &latest {
        if text == source {
            return Ok((template.name, *version, false));
        }
    }
    let version = latest.map(|(v, _)| v + 1).unwrap_or(1);
    sqlx::query(
        "insert into pipelines (id, name, version, title, source, definition, builtin, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(&template.name)
    .bind(version)
    .bind(&template.title)
    .bind(source)
    .bind(serde_json::to_value(&template).unwrap_or_default())
    .bind(builtin)
    .bind(who.user_id)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut *tx,
        who,
        "pipeline.save",
        Some(format!("{} v{version}", template.name)),
        json!({"builtin": builtin}),
    )
    .await?;
    tx.commit().await?;
    Ok((template.name, version, true))
}

/// Writes the built-in templates that are new or changed since the last start.
pub async fn seed_builtins(pool: &PgPool) -> Result<(), SaveError> {
    for (_, source) in BUILT_IN {
        let (name, version, made) = save(pool, &Who::system(), source, true).await?;
        if made {
            tracing::info!(%name, version, "built-in pipeline template saved");
        }
    }
    Ok(())
}

/// The latest version of every template, by name.
pub async fn latest_all(pool: &PgPool) -> Result<Vec<Stored>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select distinct on (name) {COLUMNS} from pipelines order by name, version desc"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(stored).collect())
}

/// A template's latest version, or a given one.
pub async fn find(
    pool: &PgPool,
    name: &str,
    version: Option<i32>,
) -> Result<Option<Stored>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {COLUMNS} from pipelines where name = $1 and ($2::int is null or version = $2)
         order by version desc limit 1"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(stored))
}

/// The template version a claimed stage belongs to, and that stage (for executors: the
/// error is the attempt's failure).
pub async fn claimed_stage(
    pool: &PgPool,
    claim: &super::queue::Claim,
) -> Result<(Stored, app::pipelines::template::Stage), String> {
    let stored = by_id(pool, claim.pipeline_id)
        .await
        .map_err(|e| format!("cannot read the template: {e}"))?
        .ok_or("the run's template is gone")?;
    let stage = stored
        .template
        .stage(&claim.stage)
        .ok_or_else(|| format!("the template has no stage {}", claim.stage))?
        .clone();
    Ok((stored, stage))
}

pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Option<Stored>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as(&format!("select {COLUMNS} from pipelines where id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row.and_then(stored))
}
