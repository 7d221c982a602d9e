//! Submitting, cancelling, retrying and resubmitting runs. Every bad input is refused
//! before anything is written; every change is audited.

use std::collections::BTreeMap;

use app::accounts::Role;
use app::error::AppError;
use app::pipelines::template::{ParamType, Template, MAX_SEED};
use app::pipelines::{RunState, StageState};
use rand::Rng as _;
use serde_json::{json, Map, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::executor::{queue_of, Capabilities};
use super::store::{self, Stored};
use crate::audit::Who;

/// What a person or a script asks to run.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub template: String,
    #[serde(default)]
    pub version: Option<i32>,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub priority: i32,
}

/// The submitter: who, and with which role.
pub struct Submitter<'a> {
    pub who: &'a Who,
    pub user_id: Uuid,
    pub role: Role,
    pub token: Option<String>,
}

/// Checks every parameter and returns the values to run with (defaults filled in, a
/// missing seed drawn).
pub async fn resolve_params(
    pool: &PgPool,
    template: &Template,
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, AppError> {
    for name in given.keys() {
        if template.parameter(name).is_none() {
            return Err(AppError::invalid(format!(
                "\"{name}\" is not a parameter of {}; it takes {}.",
                template.name,
                template
                    .parameters
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut values = Map::new();
    for p in &template.parameters {
        let mut value = given
            .get(&p.name)
            .cloned()
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .or_else(|| p.default.clone())
            .unwrap_or(Value::Null);
        if p.ty == ParamType::Seed && value.is_null() {
            value = json!(rand::thread_rng().gen_range(0..=MAX_SEED));
        }
        p.check(&value)
            .map_err(|e| AppError::invalid(format!("{e}.")))?;
        let ids: Vec<Uuid> = match (&p.ty, &value) {
            (ParamType::Asset { .. }, Value::String(s)) => s.parse().into_iter().collect(),
            (ParamType::Assets { .. }, Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str()?.parse().ok())
                .collect(),
            _ => Vec::new(),
        };
        if let ParamType::Asset { kind } | ParamType::Assets { kind, .. } = &p.ty {
            let found: Vec<(Uuid, String, String, String)> = sqlx::query_as(
                "select id, name, kind, state from assets where id = any($1) and deleted_at is null",
            )
            .bind(&ids)
            .fetch_all(pool)
            .await
            .map_err(crate::db::app_error)?;
            for id in &ids {
                let Some((_, name, have, state)) = found.iter().find(|f| f.0 == *id) else {
                    return Err(AppError::invalid(format!(
                        "{}: there is no asset {id} in the library.",
                        p.label()
                    )));
                };
                if have != kind {
                    return Err(AppError::invalid(format!(
                        "{} must be {kind} assets; \"{name}\" is {have}.",
                        p.label()
                    )));
                }
                if state != "ready" {
                    return Err(AppError::invalid(format!(
                        "{}: \"{name}\" is not ready yet ({state}).",
                        p.label()
                    )));
                }
            }
        }
        values.insert(p.name.clone(), value);
    }
    Ok(values)
}

/// Refuses a template whose stages these executors cannot run.
pub fn check_capabilities(template: &Template, caps: &Capabilities) -> Result<(), AppError> {
    caps.admit(template)
}

/// Asks Dagster whether each dagster stage's run config is one it takes, for the stages
/// whose config is known at submission (inputs from parameters and literals only; an
/// item, values or outputs are known only when the stage runs): refused with Dagster's
/// own words, field by field, before anything is launched. A Dagster that does not
/// answer refuses nothing here: the stage says so when it runs.
async fn check_dagster_config(
    caps: &Capabilities,
    template: &Template,
    params: &Map<String, Value>,
) -> Result<(), AppError> {
    use app::pipelines::template::{references, Reference, StageKind};
    let Some(base) = &caps.dagster_url else {
        return Ok(());
    };
    let params = Value::Object(params.clone());
    let mut problems = Vec::new();
    for stage in &template.stages {
        let StageKind::Dagster(dagster) = &stage.kind else {
            continue;
        };
        let known = stage.for_each.is_none()
            && stage.inputs.values().all(|v| {
                v.as_str().is_none_or(|text| {
                    references(text)
                        .unwrap_or_default()
                        .iter()
                        .all(|r| matches!(r, Reference::Param(_)))
                })
            });
        if !known {
            continue;
        }
        let inputs = super::workspace::bind_inputs(
            &stage.inputs,
            &params,
            &super::workspace::Scope::default(),
        );
        match super::executors::dagster::check(base, dagster, &inputs).await {
            Ok(found) => problems.extend(
                found
                    .into_iter()
                    .map(|p| format!("stage \"{}\": {}: {}", stage.name, p.field, p.message)),
            ),
            Err(e) => {
                tracing::warn!(stage = %stage.name, error = %e, "cannot check a dagster stage's run config at submission")
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::invalid(format!(
            "Not submitted: Dagster refuses the run config.\n{}",
            problems.join("\n")
        )))
    }
}

/// Creates a run and queues its first stages. Returns the run's id.
pub async fn submit(
    pool: &PgPool,
    caps: &Capabilities,
    by: &Submitter<'_>,
    submission: &Submission,
    resubmitted_from: Option<Uuid>,
) -> Result<Uuid, AppError> {
    if !(-100..=100).contains(&submission.priority) {
        return Err(AppError::invalid("Priority must be from -100 to 100."));
    }
    if submission.priority > 0 && by.role < Role::Lead {
        return Err(AppError::Forbidden(
            "Only leads and admins may raise a run's priority.".into(),
        ));
    }
    let Some(stored) = store::find(pool, &submission.template, submission.version)
        .await
        .map_err(crate::db::app_error)?
    else {
        return Err(AppError::NotFound(match submission.version {
            Some(v) => format!(
                "There is no version {v} of template \"{}\".",
                submission.template
            ),
            None => format!("There is no template \"{}\".", submission.template),
        }));
    };
    check_capabilities(&stored.template, caps)?;
    let params = resolve_params(pool, &stored.template, &submission.params).await?;
    check_dagster_config(caps, &stored.template, &params).await?;
    create(
        pool,
        by,
        &stored,
        params,
        submission.priority,
        resubmitted_from,
    )
    .await
}

async fn create(
    pool: &PgPool,
    by: &Submitter<'_>,
    stored: &Stored,
    params: Map<String, Value>,
    priority: i32,
    resubmitted_from: Option<Uuid>,
) -> Result<Uuid, AppError> {
    let template = &stored.template;
    // The workflow version each ComfyUI stage runs, fixed now; refused before anything
    // is written when the endpoint lacks a node or a model it needs.
    let (workflows, gaps) =
        crate::comfyui::workflows::for_submission(pool, template, &params, resubmitted_from)
            .await?;
    if !gaps.is_empty() {
        return Err(AppError::invalid(format!(
            "Not {}: the GPU endpoint lacks what the workflow needs.\n{}",
            if resubmitted_from.is_some() {
                "run again"
            } else {
                "submitted"
            },
            gaps.join("\n")
        )));
    }
    let run = Uuid::now_v7();
    let mut tx = pool.begin().await.map_err(crate::db::app_error)?;
    sqlx::query(
        "insert into runs (id, pipeline_id, params, priority, state, submitted_by, submitted_via, resubmitted_from)
         values ($1, $2, $3, $4, 'queued', $5, $6, $7)",
    )
    .bind(run)
    .bind(stored.id)
    .bind(Value::Object(params.clone()))
    .bind(priority)
    .bind(by.user_id)
    .bind(&by.token)
    .bind(resubmitted_from)
    .execute(&mut *tx)
    .await
    .map_err(crate::db::app_error)?;
    for stage in &template.stages {
        let needs: Vec<String> = template.upstream(stage).into_iter().collect();
        let first = needs.is_empty();
        sqlx::query(
            "insert into run_stages (id, run_id, name, executor, needs, state, priority, attempts_max, queued_at, status_message, workflow_id, for_each)
             values ($1, $2, $3, $4, $5, $6, $7, $8, case when $9 then now() end, $10, $11, $12)",
        )
        .bind(Uuid::now_v7())
        .bind(run)
        .bind(&stage.name)
        .bind(queue_of(stage))
        .bind(&needs)
        .bind(if first { "queued" } else { "waiting" })
        .bind(priority)
        .bind(stage.attempts as i32)
        .bind(first)
        .bind((!first).then(|| format!("Waiting for {}.", needs.join(", "))))
        .bind(workflows.iter().find(|(s, _)| *s == stage.name).map(|(_, id)| *id))
        .bind(&stage.for_each)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
    }
    crate::audit::record(
        &mut *tx,
        by.who,
        "run.submit",
        Some(format!("run {run}")),
        json!({"template": stored.name, "version": stored.version, "priority": priority,
               "params": params, "resubmitted_from": resubmitted_from}),
    )
    .await
    .map_err(crate::db::app_error)?;
    tx.commit().await.map_err(crate::db::app_error)?;
    Ok(run)
}

/// Who may act on a run (cancel it, retry its stages, resubmit it or start a form
/// from it): its submitter, leads and admins.
pub fn may_change(submitted_by: Uuid, user_id: Uuid, role: Role) -> bool {
    submitted_by == user_id || role >= Role::Lead
}

/// `may_change` as an answer: 403 with the rule for anyone else.
pub fn refuse_unless_may_change(
    submitted_by: Uuid,
    user_id: Uuid,
    role: Role,
) -> Result<(), AppError> {
    if may_change(submitted_by, user_id, role) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only the person who submitted a run, leads and admins may change it or run it again."
                .into(),
        ))
    }
}

/// The run's state, once `by` may change it; the run's row stays locked until the
/// transaction ends, so the state cannot change under the caller.
async fn owner_check(
    tx: &mut PgConnection,
    run: Uuid,
    by: &Submitter<'_>,
) -> Result<RunState, AppError> {
    let row: Option<(RunState, Uuid)> =
        sqlx::query_as("select state, submitted_by from runs where id = $1 for update")
            .bind(run)
            .fetch_optional(&mut *tx)
            .await
            .map_err(crate::db::app_error)?;
    let Some((state, owner)) = row else {
        return Err(AppError::NotFound(format!("There is no run {run}.")));
    };
    refuse_unless_may_change(owner, by.user_id, by.role)?;
    Ok(state)
}

/// Cancels a run: waiting and queued stages are cancelled at once, running ones are
/// asked to stop (their executor stops the work) and settle when they have.
pub async fn cancel(pool: &PgPool, run: Uuid, by: &Submitter<'_>) -> Result<(), AppError> {
    let mut tx = pool.begin().await.map_err(crate::db::app_error)?;
    let state = owner_check(&mut tx, run, by).await?;
    if state.is_finished() {
        return Err(AppError::Conflict(format!(
            "This run has already finished ({state}); there is nothing to cancel."
        )));
    }
    sqlx::query(
        "update run_stages set state = 'cancelled', finished_at = now(), status_message = 'Cancelled.'
         where run_id = $1 and state in ('waiting', 'queued')",
    )
    .bind(run)
    .execute(&mut *tx)
    .await
    .map_err(crate::db::app_error)?;
    // A fanned-out stage none of whose instances runs any more ends now.
    super::queue::settle_groups(&mut tx, run)
        .await
        .map_err(crate::db::app_error)?;
    sqlx::query(
        "update run_stages set cancel_requested = true, status_message = 'Stopping…'
         where run_id = $1 and state = 'running'",
    )
    .bind(run)
    .execute(&mut *tx)
    .await
    .map_err(crate::db::app_error)?;
    sqlx::query(
        "update runs set state = 'cancelled',
             finished_at = case when exists (select 1 from run_stages where run_id = $1 and state = 'running')
                                then null else now() end
         where id = $1",
    )
    .bind(run)
    .execute(&mut *tx)
    .await
    .map_err(crate::db::app_error)?;
    crate::audit::record(
        &mut *tx,
        by.who,
        "run.cancel",
        Some(format!("run {run}")),
        json!({}),
    )
    .await
    .map_err(crate::db::app_error)?;
    tx.commit().await.map_err(crate::db::app_error)
}

/// Runs a failed or cancelled stage again (with its attempts renewed), and the stages
/// after it once it succeeds.
pub async fn retry_stage(
    pool: &PgPool,
    run: Uuid,
    stage: &str,
    by: &Submitter<'_>,
) -> Result<(), AppError> {
    let mut tx = pool.begin().await.map_err(crate::db::app_error)?;
    let run_state = owner_check(&mut tx, run, by).await?;
    /// The stage as far as retrying it goes: a fanned-out group, an instance, or neither.
    #[derive(sqlx::FromRow)]
    struct Retried {
        state: StageState,
        fan_of: Option<String>,
        fanned: Option<i32>,
        for_each: Option<String>,
    }
    let row: Option<Retried> = sqlx::query_as(
        "select state, fan_of, fanned, for_each from run_stages where run_id = $1 and name = $2 for update",
    )
    .bind(run)
    .bind(stage)
    .fetch_optional(&mut *tx)
    .await
    .map_err(crate::db::app_error)?;
    let Some(Retried {
        state,
        fan_of,
        fanned,
        for_each,
    }) = row
    else {
        return Err(AppError::NotFound(format!(
            "This run has no stage \"{stage}\"."
        )));
    };
    if !matches!(state, StageState::Failed | StageState::Cancelled)
        || !matches!(run_state, RunState::Failed | RunState::Cancelled)
    {
        return Err(AppError::Conflict(format!(
            "Only a failed or cancelled stage of a finished run can be retried; \"{stage}\" is {state}."
        )));
    }
    // Its attempts are renewed (`attempt` counts them anew); the attempts it made stay,
    // and the next one is numbered after them. A fanned-out stage is retried by its
    // instances that did not succeed; one that never fanned out (its list was not one)
    // waits to be expanded again.
    let renew = "state = 'queued', attempt = 0, queued_at = now(), ready_at = now(),
             cancel_requested = false, started_at = null, finished_at = null, progress = null,
             status_message = 'Retried.'";
    if fanned.is_some() {
        sqlx::query(&format!(
            "update run_stages set {renew} where run_id = $1 and fan_of = $2 and state in ('failed', 'cancelled', 'skipped')"
        ))
        .bind(run)
        .bind(stage)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
        sqlx::query(
            "update run_stages set state = 'running', cancel_requested = false, finished_at = null
             where run_id = $1 and name = $2",
        )
        .bind(run)
        .bind(stage)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
    } else if for_each.is_some() {
        sqlx::query(
            "update run_stages set state = 'waiting', cancel_requested = false, finished_at = null,
                 status_message = 'Retried.'
             where run_id = $1 and name = $2",
        )
        .bind(run)
        .bind(stage)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
    } else {
        sqlx::query(&format!(
            "update run_stages set {renew} where run_id = $1 and name = $2"
        ))
        .bind(run)
        .bind(stage)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
        if let Some(group) = &fan_of {
            sqlx::query(
                "update run_stages set state = 'running', cancel_requested = false, finished_at = null
                 where run_id = $1 and name = $2",
            )
            .bind(run)
            .bind(group)
            .execute(&mut *tx)
            .await
            .map_err(crate::db::app_error)?;
        }
    }
    // The stages the failure stopped wait again (a group runs again: its instances wait).
    sqlx::query(
        "update run_stages set state = case when fanned is not null then 'running' else 'waiting' end,
             cancel_requested = false, finished_at = null,
             status_message = 'Waiting for ' || array_to_string(needs, ', ') || '.'
         where run_id = $1 and state in ('skipped', 'cancelled') and name <> $2",
    )
    .bind(run)
    .bind(stage)
    .execute(&mut *tx)
    .await
    .map_err(crate::db::app_error)?;
    sqlx::query("update runs set state = 'running', finished_at = null where id = $1")
        .bind(run)
        .execute(&mut *tx)
        .await
        .map_err(crate::db::app_error)?;
    crate::audit::record(
        &mut *tx,
        by.who,
        "run.retry_stage",
        Some(format!("run {run}")),
        json!({"stage": stage}),
    )
    .await
    .map_err(crate::db::app_error)?;
    tx.commit().await.map_err(crate::db::app_error)?;
    // What waits and can go now (an instance skipped with the failure, a fanned-out stage
    // to expand again) is queued.
    super::queue::advance(pool, run)
        .await
        .map_err(crate::db::app_error)
}

/// Submits a run again with some parameters changed (the same template version).
pub async fn resubmit(
    pool: &PgPool,
    caps: &Capabilities,
    run: Uuid,
    changes: &Map<String, Value>,
    by: &Submitter<'_>,
) -> Result<Uuid, AppError> {
    let row: Option<(Uuid, Value, i32, Uuid)> = sqlx::query_as(
        "select pipeline_id, params, priority, submitted_by from runs where id = $1",
    )
    .bind(run)
    .fetch_optional(pool)
    .await
    .map_err(crate::db::app_error)?;
    let Some((pipeline, params, priority, owner)) = row else {
        return Err(AppError::NotFound(format!("There is no run {run}.")));
    };
    refuse_unless_may_change(owner, by.user_id, by.role)?;
    let Some(stored) = store::by_id(pool, pipeline)
        .await
        .map_err(crate::db::app_error)?
    else {
        return Err(AppError::internal());
    };
    let mut merged: BTreeMap<String, Value> = params
        .as_object()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (k, v) in changes {
        merged.insert(k.clone(), v.clone());
    }
    let submission = Submission {
        template: stored.name.clone(),
        version: Some(stored.version),
        params: merged.into_iter().collect(),
        priority: priority.min(if by.role >= Role::Lead { 100 } else { 0 }),
    };
    submit(pool, caps, by, &submission, Some(run)).await
}
