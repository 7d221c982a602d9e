//! `app::backend::DeploysBackend` for [`Deploys`]: the timeline view, diffs, and
//! restart and rollback as the UI asks for them.

use std::collections::BTreeSet;

use app::accounts::Role;
use app::backend::{Actor, DeploysBackend};
use app::deploys::{DeployEntry, DeployFilter, DeploysView, RollbackPreview, TemplateDiff};
use app::error::AppError;
use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};

use super::rollout::{self, equal_ignore_hash, without_hash, Refusal, Undo};
use super::store::TIMELINE;
use super::{check_reason, reason_or_none, status, Deploys, PAGE};
use crate::audit::Who;
use crate::db::OrAppError as _;

#[async_trait]
impl DeploysBackend for Deploys {
    async fn view(&self, actor: &Actor, filter: DeployFilter) -> Result<DeploysView, AppError> {
        let entries: Vec<DeployEntry> = sqlx::query_as(TIMELINE)
            .bind(filter.workload.trim())
            .bind(filter.source.trim())
            .bind(filter.actor.trim())
            .bind(filter.outcome.trim())
            .bind(self.namespace())
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await
            .or_app()?;
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
        let Some(super::store::StoredRevision { template, .. }) =
            self.stored(kind, name, revision).await?
        else {
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
                Some(stored) => Some((format!("revision {a}"), stored.template)),
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
