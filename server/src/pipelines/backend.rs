//! What the runs pages need, over the same functions as the JSON API.

use std::collections::BTreeMap;
use std::sync::Arc;

use app::backend::{Actor, PipelinesBackend};
use app::error::AppError;
use app::pipelines::template::ParamType;
use app::pipelines::{
    AttemptView, LogLine, OutputView, RunDetail, RunFilter, RunSummary, RunsView, StageView,
    TemplateForm, TemplateSource, TemplateSummary, TemplateVersions,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::executor::Capabilities;
use super::runs::{self, Submission, Submitter};
use super::store::{self, Stored};
use crate::audit::Who;

#[derive(Clone)]
pub struct Pipelines {
    pub pool: PgPool,
    pub caps: Arc<Capabilities>,
}

fn summary(s: &Stored) -> TemplateSummary {
    TemplateSummary {
        name: s.name.clone(),
        version: s.version,
        title: s.template.title.clone(),
        description: s.template.description.clone(),
        stages: s
            .template
            .stages
            .iter()
            .map(|st| (st.name.clone(), st.kind.executor().to_owned()))
            .collect(),
    }
}

/// A run's summary as the pages show it, with its submitter's id.
#[derive(sqlx::FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    summary: RunSummary,
    submitter_id: Uuid,
}

const SUMMARY: &str = "select r.id, p.name as template, p.version, p.title, r.state,
        u.email as submitted_by, r.created_at, r.started_at, r.finished_at,
        (select count(*) from run_stages s where s.run_id = r.id and s.fan_of is null and s.state = 'succeeded') as stages_done,
        (select count(*) from run_stages s where s.run_id = r.id and s.fan_of is null) as stages_total,
        coalesce((select avg(case when s.state = 'succeeded' then 1 else coalesce(s.progress, 0) end)
                  from run_stages s where s.run_id = r.id and s.fan_of is null), 0)::float4 as progress,
        r.submitted_by as submitter_id
    from runs r join pipelines p on p.id = r.pipeline_id join users u on u.id = r.submitted_by";

impl Pipelines {
    fn who(actor: &Actor) -> Who {
        Who::principal(&actor.principal, actor.client_addr)
    }
}

#[async_trait]
impl PipelinesBackend for Pipelines {
    async fn runs(&self, _actor: &Actor, filter: RunFilter) -> Result<RunsView, AppError> {
        let day = |text: &str, which: &str| -> Result<Option<chrono::NaiveDate>, AppError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    AppError::invalid(format!(
                        "\"{text}\" is not a date for \"{which}\": use YYYY-MM-DD."
                    ))
                })
        };
        let (from, to) = (day(&filter.from, "from")?, day(&filter.to, "to")?);
        if let (Some(f), Some(t)) = (from, to) {
            if t < f {
                return Err(AppError::invalid(format!(
                    "\"to\" ({t}) is before \"from\" ({f})."
                )));
            }
        }
        let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
            "{SUMMARY} where ($1 = '' or r.state = $1) and ($2 = '' or p.name = $2)
               and ($3 = '' or u.email ilike '%' || $3 || '%')
               and ($4::date is null or r.created_at >= $4::date::timestamp at time zone 'UTC')
               and ($5::date is null or r.created_at < ($5::date + 1)::timestamp at time zone 'UTC')
             order by r.created_at desc, r.id desc limit 200"
        ))
        .bind(filter.state.trim())
        .bind(filter.template.trim())
        .bind(filter.submitter.trim())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        let counts: Vec<(app::pipelines::RunState, i64)> =
            sqlx::query_as("select state, count(*) from runs group by state")
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db::app_error)?;
        let templates = store::latest_all(&self.pool)
            .await
            .map_err(crate::db::app_error)?;
        Ok(RunsView {
            runs: rows.into_iter().map(|r| r.summary).collect(),
            counts,
            templates: templates.iter().map(summary).collect(),
            now: Utc::now(),
        })
    }

    async fn run(&self, actor: &Actor, id: Uuid) -> Result<RunDetail, AppError> {
        let row: Option<SummaryRow> = sqlx::query_as(&format!("{SUMMARY} where r.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(crate::db::app_error)?;
        let Some(row) = row else {
            return Err(AppError::NotFound(format!("There is no run {id}.")));
        };
        let (owner, summary) = (row.submitter_id, row.summary);
        let (pipeline, params): (Uuid, Value) =
            sqlx::query_as("select pipeline_id, params from runs where id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .map_err(crate::db::app_error)?;
        let stored = store::by_id(&self.pool, pipeline)
            .await
            .map_err(crate::db::app_error)?
            .ok_or_else(AppError::internal)?;
        // Assets by name, not id.
        let mut names = std::collections::HashMap::new();
        let ids: Vec<Uuid> = stored
            .template
            .parameters
            .iter()
            .filter(|p| matches!(p.ty, ParamType::Asset { .. } | ParamType::Assets { .. }))
            .flat_map(|p| match &params[p.name.as_str()] {
                Value::String(s) => s.parse().ok().into_iter().collect::<Vec<Uuid>>(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str()?.parse().ok())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        if !ids.is_empty() {
            let rows: Vec<(Uuid, String)> =
                sqlx::query_as("select id, name from assets where id = any($1)")
                    .bind(&ids)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db::app_error)?;
            names.extend(rows);
        }
        let params = stored
            .template
            .parameters
            .iter()
            .map(|p| {
                let v = &params[p.name.as_str()];
                let name_of = |s: &str| {
                    s.parse::<Uuid>()
                        .ok()
                        .and_then(|id| names.get(&id).cloned())
                        .unwrap_or_else(|| s.to_owned())
                };
                let text = match v {
                    Value::String(s) => name_of(s),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| name_of(i.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Value::Null => "—".into(),
                    other => other.to_string(),
                };
                (p.label().to_owned(), text)
            })
            .collect();
        let stages: Vec<StageView> = sqlx::query_as(
            "select name, executor, needs, state, attempt, attempts_max, progress,
                    status_message as status, queued_at, started_at, finished_at, preview_at,
                    fan_of, item_index, fanned,
                    case when item is not null then left(coalesce(item->>'shot', item->>'name', item->>'title',
                                                                  item->>'id', item #>> '{}'), 80) end as item_label
             from run_stages where run_id = $1 order by fan_of nulls first, item_index, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        let attempts: Vec<AttemptView> = sqlx::query_as(
            "select a.id, s.name as stage, a.number, a.state, a.executor_ref as reference, a.error,
                    a.started_at, a.finished_at, a.log_key is not null as has_log,
                    a.detail->'materializations' as materializations
             from stage_attempts a join run_stages s on s.id = a.stage_id
             where s.run_id = $1 order by a.started_at, a.id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        let outputs: Vec<OutputView> = sqlx::query_as(
            "select a.id as asset, a.name, a.state, s.name as stage, (v.thumbnail_key is not null) as has_thumbnail
             from run_outputs o join assets a on a.id = o.asset_id join run_stages s on s.id = o.stage_id
             left join asset_versions v on v.id = a.current_version_id
             where o.run_id = $1 order by o.created_at, a.name",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        let mut log: Vec<LogLine> = sqlx::query_as(
            "select s.name as stage, l.stream, l.line from stage_logs l
             join stage_attempts a on a.id = l.attempt_id join run_stages s on s.id = a.stage_id
             where s.run_id = $1 order by l.id desc limit 300",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        log.reverse();
        Ok(RunDetail {
            summary,
            params,
            stages,
            outputs,
            attempts,
            log,
            can_change: runs::may_change(owner, actor.principal.user_id, actor.principal.role),
            now: Utc::now(),
        })
    }

    async fn template_form(
        &self,
        actor: &Actor,
        name: &str,
        from: Option<Uuid>,
    ) -> Result<TemplateForm, AppError> {
        let Some(mut stored) = store::find(&self.pool, name, None)
            .await
            .map_err(crate::db::app_error)?
        else {
            return Err(AppError::NotFound(format!(
                "There is no template \"{name}\"."
            )));
        };
        if let Some(run) = from {
            // That run's values in place of the defaults (the template's current version).
            // Editing and running again is resubmitting: the same people may.
            let found: Option<(Value, Uuid)> = sqlx::query_as(
                "select r.params, r.submitted_by from runs r join pipelines p on p.id = r.pipeline_id
                 where r.id = $1 and p.name = $2",
            )
            .bind(run)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(crate::db::app_error)?;
            let Some((params, owner)) = found else {
                return Err(AppError::NotFound(format!(
                    "There is no run {run} of \"{name}\" to start from."
                )));
            };
            runs::refuse_unless_may_change(owner, actor.principal.user_id, actor.principal.role)?;
            for p in &mut stored.template.parameters {
                if let Some(v) = params.get(&p.name).filter(|v| !v.is_null()) {
                    p.default = Some(v.clone());
                }
            }
        }
        let mut choices = Vec::new();
        for p in &stored.template.parameters {
            if let ParamType::Asset { kind } | ParamType::Assets { kind, .. } = &p.ty {
                let assets: Vec<(Uuid, String)> = sqlx::query_as(
                    "select id, name from assets where kind = $1 and state = 'ready' and deleted_at is null
                     order by created_at desc limit 200",
                )
                .bind(kind)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db::app_error)?;
                choices.push((p.name.clone(), assets));
            }
        }
        // Model choices are the current endpoint's files, never a setting.
        let mut models = Vec::new();
        if stored
            .template
            .parameters
            .iter()
            .any(|p| matches!(p.ty, ParamType::Model { .. }))
        {
            if let Some(inventory) = crate::comfyui::workflows::current_inventory(&self.pool).await
            {
                for p in &stored.template.parameters {
                    if let ParamType::Model { folder } = &p.ty {
                        models.push((
                            p.name.clone(),
                            inventory.models.get(folder).cloned().unwrap_or_default(),
                        ));
                    }
                }
            }
        }
        Ok(TemplateForm {
            summary: summary(&stored),
            parameters: stored.template.parameters.clone(),
            choices,
            models,
            unavailable: runs::check_capabilities(&stored.template, &self.caps)
                .err()
                .map(|e| e.to_string()),
        })
    }

    async fn submit_form(
        &self,
        actor: &Actor,
        template: &str,
        params: BTreeMap<String, String>,
        lists: BTreeMap<String, Vec<String>>,
        priority: i32,
    ) -> Result<Uuid, AppError> {
        let Some(stored) = store::find(&self.pool, template, None)
            .await
            .map_err(crate::db::app_error)?
        else {
            return Err(AppError::NotFound(format!(
                "There is no template \"{template}\"."
            )));
        };
        // Text from the form becomes values of each parameter's type; text that does not
        // convert is passed on as text so that the checks say what is wrong with it.
        let mut values = Map::new();
        for (name, text) in params {
            let text = text.trim().to_owned();
            let value = match stored.template.parameter(&name).map(|p| &p.ty) {
                _ if text.is_empty() => Value::Null,
                Some(ParamType::Integer { .. } | ParamType::Seed) => text
                    .parse::<i64>()
                    .map(|n| json!(n))
                    .unwrap_or(Value::String(text)),
                Some(ParamType::Float { .. }) => text
                    .parse::<f64>()
                    .ok()
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
                    .unwrap_or(Value::String(text)),
                Some(ParamType::Boolean) => json!(matches!(text.as_str(), "true" | "on" | "yes")),
                _ => Value::String(text),
            };
            values.insert(name, value);
        }
        for (name, items) in lists {
            values.insert(name, json!(items));
        }
        let who = Self::who(actor);
        let by = Submitter {
            who: &who,
            user_id: actor.principal.user_id,
            role: actor.principal.role,
            token: None,
        };
        let submission = Submission {
            template: stored.name.clone(),
            version: Some(stored.version),
            params: values,
            priority,
        };
        runs::submit(&self.pool, &self.caps, &by, &submission, None).await
    }

    async fn cancel(&self, actor: &Actor, id: Uuid) -> Result<(), AppError> {
        let who = Self::who(actor);
        let by = submitter(actor, &who);
        runs::cancel(&self.pool, id, &by).await
    }

    async fn retry(&self, actor: &Actor, id: Uuid, stage: &str) -> Result<(), AppError> {
        let who = Self::who(actor);
        let by = submitter(actor, &who);
        runs::retry_stage(&self.pool, id, stage, &by).await
    }

    async fn resubmit(&self, actor: &Actor, id: Uuid) -> Result<Uuid, AppError> {
        let who = Self::who(actor);
        let by = submitter(actor, &who);
        runs::resubmit(&self.pool, &self.caps, id, &Map::new(), &by).await
    }

    async fn template_versions(&self) -> Result<Vec<TemplateVersions>, AppError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            name: String,
            title: String,
            version: i32,
            at: DateTime<Utc>,
            builtin: bool,
            author: Option<String>,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "select p.name, p.title, p.version, p.created_at as at, p.builtin, u.email as author
             from pipelines p left join users u on u.id = p.created_by
             order by p.name, p.version desc",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(crate::db::app_error)?;
        let mut out: Vec<TemplateVersions> = Vec::new();
        for Row {
            name,
            title,
            version,
            at,
            builtin,
            author: by,
        } in rows
        {
            match out.last_mut() {
                Some(t) if t.name == name => t.versions.push((version, at, builtin, by)),
                _ => out.push(TemplateVersions {
                    name,
                    title,
                    versions: vec![(version, at, builtin, by)],
                }),
            }
        }
        Ok(out)
    }

    async fn template_source(
        &self,
        name: &str,
        version: Option<i32>,
        against: Option<i32>,
    ) -> Result<TemplateSource, AppError> {
        let Some(stored) = store::find(&self.pool, name, version)
            .await
            .map_err(crate::db::app_error)?
        else {
            return Err(AppError::NotFound(format!(
                "There is no such version of \"{name}\"."
            )));
        };
        let against = against.or((stored.version > 1).then_some(stored.version - 1));
        let before = match against {
            Some(v) => match store::find(&self.pool, name, Some(v))
                .await
                .map_err(crate::db::app_error)?
            {
                Some(b) => b.source,
                None => {
                    return Err(AppError::NotFound(format!(
                        "\"{name}\" has no version {v} to compare with."
                    )))
                }
            },
            None => String::new(),
        };
        Ok(TemplateSource {
            name: stored.name.clone(),
            version: stored.version,
            diff: app::deploys::diff::side_by_side(&before, &stored.source),
            source: stored.source,
            against,
        })
    }

    async fn save_template(&self, actor: &Actor, source: &str) -> Result<(String, i32), AppError> {
        if source.len() > 256 * 1024 {
            return Err(AppError::invalid("A template is at most 256 KiB."));
        }
        // `workflow-NAME` is the template Slate keeps for running workflow NAME.
        if let Ok(t) = app::pipelines::template::Template::parse(source) {
            if t.name.starts_with("workflow-") {
                return Err(AppError::invalid(format!(
                    "Template names starting with \"workflow-\" are Slate's own (the template that runs a workflow); choose another name than \"{}\".",
                    t.name
                )));
            }
        }
        match store::save(&self.pool, &Self::who(actor), source, false).await {
            Ok((name, version, true)) => Ok((name, version)),
            Ok((name, version, false)) => Err(AppError::Conflict(format!(
                "Nothing changed: this is the text of {name} version {version}."
            ))),
            Err(store::SaveError::Invalid(problems)) => Err(AppError::invalid(
                problems
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )),
            Err(store::SaveError::Database(e)) => Err(crate::db::app_error(e)),
        }
    }
}

fn submitter<'a>(actor: &Actor, who: &'a Who) -> Submitter<'a> {
    Submitter {
        who,
        user_id: actor.principal.user_id,
        role: actor.principal.role,
        token: None,
    }
}
