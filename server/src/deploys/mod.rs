//! Deploys: the rollout history of the namespace (cluster revisions, CI reports and
//! Slate's own actions), template diffs, live rollout status, and restart and rollback
//! with `kubectl rollout` semantics.

pub mod ci;
pub mod events;
pub mod revisions;
pub mod rollout;
pub mod status;

use std::collections::BTreeSet;

use app::accounts::Role;
use app::backend::{Actor, DeploysBackend};
use app::deploys::{
    diff, DeployEntry, DeployFilter, DeploysView, RevisionChoice, RollbackPreview, TemplateDiff,
};
use app::error::AppError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit::Who;
use crate::cluster::Cluster;
use crate::db::OrAppError as _;
use rollout::{equal_ignore_hash, without_hash, Refusal, Undo};

/// How many timeline entries one page shows.
pub const PAGE: i64 = 300;

/// The cluster calls of restart and rollback, and nothing else: the Role in k8s/ is
/// tested against them.
#[derive(Clone)]
pub struct Workloads {
    pub client: kube::Client,
    pub namespace: String,
}

/// Refuses a workload name the API server could read as more than a name (a
/// subresource, a query): only a DNS-1123 subdomain, as Kubernetes names objects.
fn object_name(name: &str) -> Result<&str, AppError> {
    let fits = (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if fits {
        Ok(name)
    } else {
        Err(AppError::invalid(
            "A workload name is lower-case letters, digits, '-' and '.' (at most 253).",
        ))
    }
}

impl Workloads {
    fn not_found(&self, kind: &str, name: &str) -> impl Fn(kube::Error) -> AppError {
        let message = format!("There is no {kind} {name} in namespace {}.", self.namespace);
        move |e| match e {
            kube::Error::Api(s) if s.code == 404 => AppError::NotFound(message.clone()),
            e => cluster_error(e),
        }
    }

    /// The workload as the API server has it now (with every annotation).
    pub async fn get(&self, kind: &str, name: &str) -> Result<Value, AppError> {
        let name = object_name(name)?;
        let value = match kind {
            "Deployment" => serde_json::to_value(
                Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                    .get(name)
                    .await
                    .map_err(self.not_found(kind, name))?,
            ),
            "StatefulSet" => serde_json::to_value(
                Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                    .get(name)
                    .await
                    .map_err(self.not_found(kind, name))?,
            ),
            other => {
                return Err(AppError::invalid(format!(
                    "Only Deployments and StatefulSets have rollouts, not \"{other}\"."
                )))
            }
        };
        Ok(value.unwrap_or_default())
    }

    /// Sends `kubectl rollout restart`'s strategic-merge patch.
    pub async fn restart(&self, kind: &str, name: &str, patch: &Value) -> Result<(), AppError> {
        let name = object_name(name)?;
        let params = PatchParams::default();
        let result = if kind == "Deployment" {
            Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
                .patch(name, &params, &Patch::Strategic(patch))
                .await
                .map(|_| ())
        } else {
            Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
                .patch(name, &params, &Patch::Strategic(patch))
                .await
                .map(|_| ())
        };
        result.map_err(self.not_found(kind, name))
    }

    /// Sends `kubectl rollout undo`'s JSON patch to a Deployment.
    pub async fn undo(&self, name: &str, patch: Value) -> Result<(), AppError> {
        let name = object_name(name)?;
        let patch: json_patch::Patch =
            serde_json::from_value(patch).map_err(|_| AppError::internal())?;
        Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map(|_| ())
            .map_err(self.not_found("Deployment", name))
    }
}

#[derive(Clone)]
pub struct Deploys {
    pool: PgPool,
    cluster: Cluster,
}

fn cluster_error(e: kube::Error) -> AppError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => AppError::NotFound(s.message.clone()),
        _ => {
            tracing::warn!(error = %e, "deploys: the cluster refused");
            AppError::Unavailable(format!("The cluster did not do it: {e}"))
        }
    }
}

type EntryRow = (
    String,
    DateTime<Utc>,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    Vec<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The timeline: revisions, CI reports and Slate's actions, newest first. `$1` workload
/// (`Kind/name`), `$2` source, `$3` actor (substring), `$4` outcome; empty is any.
const TIMELINE: &str = "
with entries as (
    select 'rev:' || r.id as key, r.created_at as at, 'revision' as entry, r.source, r.actor,
           'done' as outcome, r.kind, r.workload as name, 'Revision ' || r.revision as title,
           e.reason, r.images, r.revision, r.change_cause, r.ci_run, c.run_url as ci_url, c.sha
    from deploy_revisions r
    left join ci_deploys c on c.run_id = r.ci_run
    left join deploy_events e on e.id = r.slate_event
    where r.namespace = $5
  union all
    select 'ci:' || c.id, c.updated_at, 'ci', 'ci', c.actor,
           case c.phase when 'succeeded' then 'done' else c.phase end, '', c.environment,
           'CI deploy of ' || left(c.sha, 7) || ' to ' || c.environment,
           case when c.branch is null then null else 'branch ' || c.branch end,
           c.images, null::bigint, null, c.run_id, c.run_url, c.sha
    from ci_deploys c
  union all
    select 'event:' || e.id, e.at, 'action', e.source, e.actor_label, e.outcome, e.kind, e.name,
           replace(e.action, '-', ' '), e.reason, '{}'::text[],
           (e.detail->>'to_revision')::bigint, null, null, null, null
    from deploy_events e
    where e.namespace = $5
)
select * from entries
where ($1 = '' or kind || '/' || name = $1
       or (entry = 'ci' and exists (select 1 from deploy_revisions r
                                    where r.ci_run = entries.ci_run and r.kind || '/' || r.workload = $1)))
  and ($2 = '' or source = $2)
  and ($3 = '' or actor ilike '%' || $3 || '%')
  and ($4 = '' or outcome = $4)
order by at desc, key desc
limit $6";

impl Deploys {
    pub fn new(pool: PgPool, cluster: Cluster) -> Self {
        Self { pool, cluster }
    }

    fn namespace(&self) -> &str {
        self.cluster.namespace()
    }

    fn workloads(&self) -> Result<Workloads, AppError> {
        let client = self.cluster.client().ok_or_else(|| {
            AppError::Unavailable(format!(
                "Slate is not connected to a cluster ({}), so it cannot change one.",
                self.cluster
                    .why_not_live()
                    .unwrap_or_else(|| "no cluster".into())
            ))
        })?;
        Ok(Workloads {
            client,
            namespace: self.namespace().to_owned(),
        })
    }

    async fn stored(
        &self,
        kind: &str,
        name: &str,
        revision: i64,
    ) -> Result<Option<(Value, Value, DateTime<Utc>, Vec<String>)>, AppError> {
        sqlx::query_as(
            "select template, annotations, created_at, images from deploy_revisions
             where namespace = $1 and kind = $2 and workload = $3 and revision = $4",
        )
        .bind(self.namespace())
        .bind(kind)
        .bind(name)
        .bind(revision)
        .fetch_optional(&self.pool)
        .await
        .or_app()
    }

    async fn choices(&self, kind: &str, name: &str) -> Result<Vec<RevisionChoice>, AppError> {
        let rows: Vec<(i64, DateTime<Utc>, Vec<String>)> = sqlx::query_as(
            "select revision, created_at, images from deploy_revisions
             where namespace = $1 and kind = $2 and workload = $3 order by revision desc",
        )
        .bind(self.namespace())
        .bind(kind)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        Ok(rows
            .into_iter()
            .map(|(revision, at, images)| RevisionChoice {
                revision,
                at,
                images,
            })
            .collect())
    }

    /// A revision of a Deployment: from its ReplicaSet when the cluster still has it,
    /// else from the store. Returns (template, the ReplicaSet's annotations, from store).
    async fn target(&self, name: &str, revision: i64) -> Result<(Value, Value, bool), AppError> {
        let objects = self.cluster.feed().borrow().clone();
        let live = revisions::seen(&objects, Utc::now())
            .into_iter()
            .find(|s| s.kind == "Deployment" && s.workload == name && s.revision == revision);
        if let Some(s) = live {
            return Ok((s.template, s.annotations, false));
        }
        match self.stored("Deployment", name, revision).await? {
            Some((template, annotations, _, _)) => Ok((template, annotations, true)),
            None => {
                let known: Vec<String> = self
                    .choices("Deployment", name)
                    .await?
                    .iter()
                    .map(|c| c.revision.to_string())
                    .collect();
                Err(AppError::NotFound(if known.is_empty() {
                    format!("Deployment/{name} has no recorded revisions.")
                } else {
                    format!(
                        "Deployment/{name} has no revision {revision}; recorded revisions: {}.",
                        known.join(", ")
                    )
                }))
            }
        }
    }

    async fn current(&self, name: &str) -> Result<Value, AppError> {
        self.workloads()?.get("Deployment", name).await
    }

    /// Records one of Slate's actions (done or refused) and audits it, together.
    async fn record_action(
        &self,
        who: &Who,
        action: &str,
        (kind, name): (&str, &str),
        outcome: &str,
        reason: Option<&str>,
        detail: Value,
    ) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await.or_app()?;
        sqlx::query(
            "insert into deploy_events (id, source, actor_label, action, namespace, kind, name, outcome, reason, detail)
             values ($1, 'slate', $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(Uuid::now_v7())
        .bind(&who.label)
        .bind(action)
        .bind(self.namespace())
        .bind(kind)
        .bind(name)
        .bind(outcome)
        .bind(reason)
        .bind(&detail)
        .execute(&mut *tx)
        .await
        .or_app()?;
        let mut audit = detail;
        audit["outcome"] = json!(outcome);
        audit["reason"] = json!(reason);
        if let Some(t) = audit.as_object_mut() {
            t.remove("template");
        }
        crate::audit::record(
            &mut *tx,
            who,
            &format!("deploy.{action}"),
            Some(format!("{kind}/{name}")),
            audit,
        )
        .await
        .or_app()?;
        tx.commit().await.or_app()
    }

    fn template_diff(
        kind: &str,
        name: &str,
        left: Option<(&str, &Value)>,
        right: (&str, &Value),
    ) -> TemplateDiff {
        let yaml = |v: &Value| serde_yaml::to_string(&without_hash(v)).unwrap_or_default();
        let left_text = left.map(|(_, v)| yaml(v)).unwrap_or_default();
        TemplateDiff {
            kind: kind.into(),
            name: name.into(),
            left_label: left
                .map(|(l, _)| l.to_owned())
                .unwrap_or_else(|| "nothing before".into()),
            right_label: right.0.to_owned(),
            rows: diff::side_by_side(&left_text, &yaml(right.1)),
            choices: Vec::new(),
            revision: 0,
            against: None,
        }
    }
}

fn reason_or_none(reason: &str) -> Option<&str> {
    Some(reason.trim()).filter(|r| !r.is_empty())
}

fn check_reason(reason: &str) -> Result<(), AppError> {
    if reason.chars().count() > 500 {
        return Err(AppError::invalid(
            "The reason is longer than 500 characters.",
        ));
    }
    Ok(())
}

#[async_trait]
impl DeploysBackend for Deploys {
    async fn view(&self, actor: &Actor, filter: DeployFilter) -> Result<DeploysView, AppError> {
        let rows: Vec<EntryRow> = sqlx::query_as(TIMELINE)
            .bind(filter.workload.trim())
            .bind(filter.source.trim())
            .bind(filter.actor.trim())
            .bind(filter.outcome.trim())
            .bind(self.namespace())
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await
            .or_app()?;
        let entries = rows
            .into_iter()
            .map(|r| DeployEntry {
                key: r.0,
                at: r.1,
                entry: r.2,
                source: r.3,
                actor: r.4,
                outcome: r.5,
                kind: r.6,
                name: r.7,
                title: r.8,
                reason: r.9,
                images: r.10,
                revision: r.11,
                change_cause: r.12,
                ci_run: r.13,
                ci_url: r.14,
                sha: r.15,
            })
            .collect();
        let objects = self.cluster.feed().borrow().clone();
        let mut rollouts: Vec<_> = objects
            .deployments
            .iter()
            .map(|d| status::deployment(d))
            .chain(objects.statefulsets.iter().map(|s| status::statefulset(s)))
            .collect();
        rollouts.sort_by(|a, b| (&a.name, &a.kind).cmp(&(&b.name, &b.kind)));
        let stored: Vec<String> = sqlx::query_scalar(
            "select distinct kind || '/' || workload from deploy_revisions where namespace = $1
             union select distinct kind || '/' || name from deploy_events
             where namespace = $1 and kind in ('Deployment', 'StatefulSet')",
        )
        .bind(self.namespace())
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        let workloads: BTreeSet<String> = stored
            .into_iter()
            .chain(rollouts.iter().map(|r| format!("{}/{}", r.kind, r.name)))
            .collect();
        let actors: Vec<String> = sqlx::query_scalar(
            "select distinct actor from (
                 select actor from deploy_revisions where namespace = $1 and actor is not null
                 union select actor from ci_deploys
                 union select actor_label from deploy_events where namespace = $1) a
             order by 1 limit 200",
        )
        .bind(self.namespace())
        .fetch_all(&self.pool)
        .await
        .or_app()?;
        let offline = (!self.cluster.is_live()).then(|| {
            format!(
                "Not connected to a cluster ({}): history is shown, restart and rollback are unavailable.",
                self.cluster.why_not_live().unwrap_or_default()
            )
        });
        Ok(DeploysView {
            rollouts,
            entries,
            workloads: workloads.into_iter().collect(),
            actors,
            can_restart: offline.is_none() && actor.principal.has(Role::Lead),
            can_rollback: offline.is_none() && actor.principal.has(Role::Admin),
            offline,
        })
    }

    async fn diff(
        &self,
        kind: &str,
        name: &str,
        revision: i64,
        against: Option<i64>,
    ) -> Result<TemplateDiff, AppError> {
        let Some((template, _, _, _)) = self.stored(kind, name, revision).await? else {
            return Err(AppError::NotFound(format!(
                "{kind}/{name} has no recorded revision {revision}."
            )));
        };
        let against = match against {
            Some(a) => Some(a),
            None => sqlx::query_scalar(
                "select max(revision) from deploy_revisions
                 where namespace = $1 and kind = $2 and workload = $3 and revision < $4",
            )
            .bind(self.namespace())
            .bind(kind)
            .bind(name)
            .bind(revision)
            .fetch_one(&self.pool)
            .await
            .or_app()?,
        };
        let left = match against {
            Some(a) => match self.stored(kind, name, a).await? {
                Some((t, ..)) => Some((format!("revision {a}"), t)),
                None => {
                    return Err(AppError::NotFound(format!(
                        "{kind}/{name} has no recorded revision {a} to compare with."
                    )))
                }
            },
            None => None,
        };
        let mut d = Self::template_diff(
            kind,
            name,
            left.as_ref().map(|(l, t)| (l.as_str(), t)),
            (&format!("revision {revision}"), &template),
        );
        d.choices = self.choices(kind, name).await?;
        d.revision = revision;
        d.against = against;
        Ok(d)
    }

    async fn rollback_preview(
        &self,
        name: &str,
        revision: i64,
    ) -> Result<RollbackPreview, AppError> {
        let current = self.current(name).await?;
        let (template, _, from_store) = self.target(name, revision).await?;
        let live = current
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_default();
        let mut diff = Self::template_diff(
            "Deployment",
            name,
            Some(("running now", &live)),
            (&format!("revision {revision}"), &template),
        );
        diff.revision = revision;
        diff.choices = self.choices("Deployment", name).await?;
        Ok(RollbackPreview {
            diff,
            already_current: equal_ignore_hash(&template, &live),
            paused: rollout::is_paused(&current),
            from_store,
        })
    }

    async fn rollback(
        &self,
        actor: &Actor,
        name: &str,
        revision: i64,
        reason: &str,
    ) -> Result<String, AppError> {
        check_reason(reason)?;
        let current = self.current(name).await?;
        let (template, annotations, from_store) = self.target(name, revision).await?;
        let who = Who::principal(&actor.principal, actor.client_addr);
        let from = current
            .pointer(&format!(
                "/metadata/annotations/{}",
                rollout::REVISION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .and_then(|r| r.parse::<i64>().ok());
        match rollout::undo(&current, &template, &annotations) {
            Err(refusal @ Refusal::Paused) => {
                let message = refusal.message("Deployment", name);
                self.record_action(
                    &who,
                    "rollback",
                    ("Deployment", name),
                    "refused",
                    Some(&message),
                    json!({"to_revision": revision, "from_revision": from}),
                )
                .await?;
                Err(AppError::Conflict(message))
            }
            Ok(Undo::AlreadyCurrent) => Ok(format!(
                "Nothing to do: Deployment/{name} already runs revision {revision}'s template."
            )),
            Ok(Undo::Patch(patch)) => {
                self.workloads()?.undo(name, patch).await?;
                self.record_action(
                    &who,
                    "rollback",
                    ("Deployment", name),
                    "done",
                    reason_or_none(reason),
                    json!({"to_revision": revision, "from_revision": from,
                           "from_store": from_store, "template": without_hash(&template)}),
                )
                .await?;
                Ok(format!(
                    "Rolled Deployment/{name} back to revision {revision}{}.",
                    if from_store {
                        " from the stored template (its ReplicaSet was pruned)"
                    } else {
                        ""
                    }
                ))
            }
        }
    }

    async fn restart(
        &self,
        actor: &Actor,
        kind: &str,
        name: &str,
        reason: &str,
    ) -> Result<String, AppError> {
        check_reason(reason)?;
        let workloads = self.workloads()?;
        let current = workloads.get(kind, name).await?;
        let who = Who::principal(&actor.principal, actor.client_addr);
        match rollout::restart(&current, Utc::now()) {
            Err(refusal) => {
                let message = refusal.message(kind, name);
                self.record_action(
                    &who,
                    "restart",
                    (kind, name),
                    "refused",
                    Some(&message),
                    json!({}),
                )
                .await?;
                Err(AppError::Conflict(message))
            }
            Ok((patch, stamp)) => {
                workloads.restart(kind, name, &patch).await?;
                self.record_action(
                    &who,
                    "restart",
                    (kind, name),
                    "done",
                    reason_or_none(reason),
                    json!({"restarted_at": stamp}),
                )
                .await?;
                Ok(format!(
                    "Restarted {kind}/{name}: its pods are being replaced one by one."
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn only_plain_object_names_reach_the_api_server() {
        for ok in ["slate", "comfy-ui", "a.b-c", "x1"] {
            assert_eq!(object_name(ok), Ok(ok));
        }
        for bad in [
            "",
            "slate/status",
            "x?dryRun=All",
            "../secrets",
            "Slate",
            "-a",
            "a-",
            "a b",
        ] {
            assert!(object_name(bad).is_err(), "{bad}");
        }
        assert!(object_name(&"a".repeat(254)).is_err());
    }
}
