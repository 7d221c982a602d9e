//! Workflow versions in the database: every version kept and never changed, a save
//! identical to the latest version making none, the bundled workflows written at start
//! when they changed.

use app::comfyui::workflow::{Binding, Bundle, Graph, BUNDLED};
use app::error::AppError;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::Who;

/// One stored version.
#[derive(Clone, Debug)]
pub struct Version {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub graph: Graph,
    pub bindings: Vec<Binding>,
    pub origin: String,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: String,
    version: i32,
    title: String,
    description: Option<String>,
    graph: Value,
    bindings: Value,
    origin: String,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
}

impl Row {
    fn version(self) -> Option<Version> {
        Some(Version {
            id: self.id,
            name: self.name,
            version: self.version,
            title: self.title,
            description: self.description,
            graph: serde_json::from_value(self.graph).ok()?,
            bindings: serde_json::from_value(self.bindings).ok()?,
            origin: self.origin,
            created_by: self.created_by,
            created_at: self.created_at,
        })
    }
}

const SELECT: &str = "select w.id, w.name, w.version, w.title, w.description, w.graph, w.bindings,
    w.origin, u.email as created_by, w.created_at
    from workflows w left join users u on u.id = w.created_by";

/// What to save as a version.
pub struct New<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub graph: &'a Graph,
    pub bindings: &'a [Binding],
    pub origin: &'a str,
}

/// Saves the next version of `new.name`, unless it is the latest one again. Returns
/// (version, whether one was made). The caller has checked graph and bindings.
pub async fn save(pool: &PgPool, who: &Who, new: New<'_>) -> Result<(i32, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One writer per workflow name at a time (replicas seed bundled ones at once).
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('workflows:' || $1, 0))")
        .bind(new.name)
        .execute(&mut *tx)
        .await?;
    let latest: Option<(i32, String, Option<String>, Value, Value)> = sqlx::query_as(
        "select version, title, description, graph, bindings from workflows where name = $1
         order by version desc limit 1",
    )
    .bind(new.name)
    .fetch_optional(&mut *tx)
    .await?;
    let graph = Value::Object(new.graph.clone());
    let bindings = serde_json::to_value(new.bindings).unwrap_or_else(|_| json!([]));
    if let Some((version, title, description, g, b)) = &latest {
        if *title == new.title
            && description.as_deref() == new.description
            && *g == graph
            && *b == bindings
        {
            return Ok((*version, false));
        }
    }
    let version = latest.map(|l| l.0 + 1).unwrap_or(1);
    sqlx::query(
        "insert into workflows (id, name, version, title, description, graph, bindings, origin, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(new.name)
    .bind(version)
    .bind(new.title)
    .bind(new.description)
    .bind(&graph)
    .bind(&bindings)
    .bind(new.origin)
    .bind(who.user_id)
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut *tx,
        who,
        "workflow.save",
        Some(format!("{} v{version}", new.name)),
        json!({"origin": new.origin, "nodes": new.graph.len(), "bindings": new.bindings.len()}),
    )
    .await?;
    tx.commit().await?;
    Ok((version, true))
}

/// Writes the bundled workflows that are new or changed since the last start.
pub async fn seed_bundled(pool: &PgPool) -> Result<(), String> {
    for (name, text) in BUNDLED {
        let bundle: Bundle =
            serde_json::from_str(text).map_err(|e| format!("bundled workflow {name}: {e}"))?;
        let (version, made) = save(
            pool,
            &Who::system(),
            New {
                name: &bundle.name,
                title: &bundle.title,
                description: bundle.description.as_deref(),
                graph: &bundle.graph,
                bindings: &bundle.bindings,
                origin: "bundled",
            },
        )
        .await
        .map_err(|e| format!("cannot save bundled workflow {name}: {e}"))?;
        if made {
            tracing::info!(%name, version, "bundled workflow saved");
        }
        // Each bundled workflow runs on its own too, from its generated template.
        if !bundle.bindings.is_empty() {
            if let Some(v) = find(pool, name, Some(version))
                .await
                .map_err(|e| format!("cannot read bundled workflow {name}: {e}"))?
            {
                crate::pipelines::store::save(
                    pool,
                    &Who::system(),
                    &super::generated_template(&v),
                    true,
                )
                .await
                .map_err(|e| format!("cannot save the template of workflow {name}: {e:?}"))?;
            }
        }
    }
    Ok(())
}

/// A workflow's latest version, or a given one.
pub async fn find(
    pool: &PgPool,
    name: &str,
    version: Option<i32>,
) -> Result<Option<Version>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "{SELECT} where w.name = $1 and ($2::int is null or w.version = $2)
         order by w.version desc limit 1"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(Row::version))
}

pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Option<Version>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} where w.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.and_then(Row::version))
}

/// The latest version of every workflow, by name.
pub async fn latest_all(pool: &PgPool) -> Result<Vec<Version>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select distinct on (w.name) * from ({SELECT}) w order by w.name, w.version desc"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(Row::version).collect())
}

/// Every version of a workflow: (version, when, by whom), newest first.
pub async fn versions(
    pool: &PgPool,
    name: &str,
) -> Result<Vec<(i32, DateTime<Utc>, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "select w.version, w.created_at, u.email from workflows w
         left join users u on u.id = w.created_by where w.name = $1 order by w.version desc",
    )
    .bind(name)
    .fetch_all(pool)
    .await
}

/// `NAME` or `NAME@N` as a stage names it, resolved; a clear refusal when absent.
pub async fn resolve(pool: &PgPool, reference: &str) -> Result<Version, AppError> {
    let Some((name, version)) = app::comfyui::workflow::parse_reference(reference) else {
        return Err(AppError::invalid(format!(
            "\"{reference}\" does not name a workflow (NAME or NAME@VERSION)."
        )));
    };
    find(pool, name, version)
        .await
        .map_err(crate::db::app_error)?
        .ok_or_else(|| {
            AppError::invalid(match version {
                Some(v) => format!("There is no version {v} of workflow \"{name}\"."),
                None => format!("There is no workflow \"{name}\"."),
            })
        })
}
