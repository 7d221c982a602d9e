//! The deploys tables: the timeline query, stored revisions, and Slate's own actions
//! (recorded with their audit entry).

use app::deploys::RevisionChoice;
use app::error::AppError;
use serde_json::{json, Value};
use uuid::Uuid;

use super::Deploys;
use crate::audit::Who;
use crate::db::OrAppError as _;

/// The timeline: revisions, CI reports and Slate's actions, newest first. `$1` workload
/// (`Kind/name`), `$2` source, `$3` actor (substring), `$4` outcome; empty is any.
pub(super) const TIMELINE: &str = "
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

/// A revision as the store keeps it.
#[derive(sqlx::FromRow)]
pub(super) struct StoredRevision {
    pub template: Value,
    pub annotations: Value,
}

impl Deploys {
    pub(super) async fn stored(
        &self,
        kind: &str,
        name: &str,
        revision: i64,
    ) -> Result<Option<StoredRevision>, AppError> {
        sqlx::query_as(
            "select template, annotations from deploy_revisions
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

    pub(super) async fn choices(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<Vec<RevisionChoice>, AppError> {
        sqlx::query_as(
            "select revision, created_at as at, images from deploy_revisions
             where namespace = $1 and kind = $2 and workload = $3 order by revision desc",
        )
        .bind(self.namespace())
        .bind(kind)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .or_app()
    }
    /// Records one of Slate's actions (done or refused) and audits it, together.
    pub(super) async fn record_action(
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
}
