//! The revision recorder: every revision of every Deployment (from its ReplicaSets) and
//! StatefulSet (from its ControllerRevisions) in the namespace is stored, with its pod
//! template, so that history, diffs and rollbacks outlive the cluster's pruning.
//!
//! It reads the watchers' objects after every change. At start the first complete
//! snapshot records whatever happened while Slate was down (as far as the ReplicaSets
//! still present tell). Rows are keyed by (namespace, kind, workload, revision) and
//! inserted with `on conflict do nothing`, so several replicas may record at once.
//!
//! Attribution of a new revision, first match wins:
//! - *slate*: a Slate restart whose `restartedAt` is in the template, or a Slate rollback
//!   whose template it is (from `deploy_events`, within ten minutes);
//! - *ci*: a CI report from the hour before whose images include an image this revision
//!   introduced (one its previous revision did not have), or any of its images when it
//!   is the first revision;
//! - *cluster*: anything else (kubectl by hand, another tool); the actor then comes from
//!   the `slate.dev/deployed-by` annotation when someone set it.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::rollout::{images, without_hash, CHANGE_CAUSE, HASH_LABEL, RESTARTED_AT, REVISION};
use crate::cluster::objects::Objects;

/// An annotation a deploy script may set to say who deployed.
pub const DEPLOYED_BY: &str = "slate.dev/deployed-by";

/// One revision as the cluster shows it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub kind: &'static str,
    pub workload: String,
    pub revision: i64,
    pub hash: String,
    pub template: Value,
    pub annotations: Value,
    pub created_at: DateTime<Utc>,
}

impl Seen {
    pub fn images(&self) -> Vec<String> {
        images(&self.template)
    }
}

fn controller_uid(meta: &ObjectMeta, kind: &str) -> Option<String> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == kind)
        .map(|o| o.uid.clone())
}

fn chrono_of(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// Every revision the objects show, oldest first per workload.
pub fn seen(objects: &Objects, now: DateTime<Utc>) -> Vec<Seen> {
    let mut out = Vec::new();
    for d in &objects.deployments {
        let Some(uid) = d.metadata.uid.as_deref() else {
            continue;
        };
        let name = d.metadata.name.clone().unwrap_or_default();
        for rs in &objects.replicasets {
            if controller_uid(&rs.metadata, "Deployment").as_deref() != Some(uid) {
                continue;
            }
            let annotations = rs.metadata.annotations.clone().unwrap_or_default();
            let Some(revision) = annotations
                .get(REVISION)
                .and_then(|r| r.parse::<i64>().ok())
            else {
                continue;
            };
            if revision <= 0 {
                continue;
            }
            let template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .map(|t| serde_json::to_value(t).unwrap_or_default())
                .unwrap_or_default();
            let hash = rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .cloned()
                .unwrap_or_default();
            // A ReplicaSet that took a new number (a rollback) keeps its creation time:
            // the revision itself is as old as Slate's first sight of it.
            let reused = annotations.contains_key("deployment.kubernetes.io/revision-history");
            let created_at = match (&rs.metadata.creation_timestamp, reused) {
                (Some(t), false) => chrono_of(t).unwrap_or(now),
                _ => now,
            };
            out.push(Seen {
                kind: "Deployment",
                workload: name.clone(),
                revision,
                hash,
                template: without_hash(&template),
                annotations: serde_json::to_value(&annotations).unwrap_or_default(),
                created_at,
            });
        }
    }
    for s in &objects.statefulsets {
        let Some(uid) = s.metadata.uid.as_deref() else {
            continue;
        };
        let name = s.metadata.name.clone().unwrap_or_default();
        for cr in &objects.controller_revisions {
            if controller_uid(&cr.metadata, "StatefulSet").as_deref() != Some(uid) {
                continue;
            }
            let mut template = cr
                .data
                .as_ref()
                .map(|d| d.0.clone())
                .and_then(|d| d.pointer("/spec/template").cloned())
                .unwrap_or_default();
            if let Some(t) = template.as_object_mut() {
                t.remove("$patch");
            }
            let hash = cr
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("controller.kubernetes.io/hash"))
                .cloned()
                .unwrap_or_default();
            out.push(Seen {
                kind: "StatefulSet",
                workload: name.clone(),
                revision: cr.revision,
                hash,
                template,
                annotations: serde_json::to_value(
                    cr.metadata.annotations.clone().unwrap_or_default(),
                )
                .unwrap_or_default(),
                created_at: cr
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(chrono_of)
                    .unwrap_or(now),
            });
        }
    }
    out.sort_by(|a, b| (a.kind, &a.workload, a.revision).cmp(&(b.kind, &b.workload, b.revision)));
    out
}

/// Stores the revisions not stored yet, attributing each new one. Returns how many
/// were new.
pub async fn record(pool: &PgPool, namespace: &str, seen: &[Seen]) -> Result<usize, sqlx::Error> {
    let mut new = 0;
    for s in seen {
        let images = s.images();
        let change_cause = s.annotations[CHANGE_CAUSE].as_str().map(str::to_owned);
        let mut tx = pool.begin().await?;
        let id: Option<Uuid> = sqlx::query_scalar(
            "insert into deploy_revisions
                 (id, namespace, kind, workload, revision, template_hash, template, annotations,
                  images, change_cause, actor, source, created_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'cluster', $12)
             on conflict (namespace, kind, workload, revision) do nothing
             returning id",
        )
        .bind(Uuid::now_v7())
        .bind(namespace)
        .bind(s.kind)
        .bind(&s.workload)
        .bind(s.revision)
        .bind(&s.hash)
        .bind(&s.template)
        .bind(&s.annotations)
        .bind(&images)
        .bind(&change_cause)
        .bind(s.annotations[DEPLOYED_BY].as_str())
        .bind(s.created_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            continue;
        };
        new += 1;
        attribute(&mut tx, namespace, id, s, &images).await?;
        tx.commit().await?;
        tracing::info!(kind = s.kind, workload = %s.workload, revision = s.revision, "recorded a new revision");
    }
    Ok(new)
}

async fn attribute(
    tx: &mut sqlx::PgConnection,
    namespace: &str,
    id: Uuid,
    s: &Seen,
    images: &[String],
) -> Result<(), sqlx::Error> {
    let restarted_at = s
        .template
        .pointer(&format!(
            "/metadata/annotations/{}",
            RESTARTED_AT.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    // Slate's own restart or rollback.
    let event: Option<SlateEvent> = sqlx::query_as(
        "select e.id, e.actor_label from deploy_events e
         where e.source = 'slate' and e.outcome = 'done' and e.namespace = $1 and e.kind = $2
           and e.name = $3 and e.at > $4 - interval '10 minutes'
           and ((e.action = 'restart' and e.detail->>'restarted_at' = $5)
             or (e.action = 'rollback' and e.detail->'template' = $6))
           and not exists (select 1 from deploy_revisions r where r.slate_event = e.id)
         order by e.at desc limit 1",
    )
    .bind(namespace)
    .bind(s.kind)
    .bind(&s.workload)
    .bind(s.created_at)
    .bind(restarted_at)
    .bind(&s.template)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(SlateEvent {
        id: event,
        actor_label: actor,
    }) = event
    {
        sqlx::query(
            "update deploy_revisions set source = 'slate', slate_event = $2, actor = $3 where id = $1",
        )
        .bind(id)
        .bind(event)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        return Ok(());
    }
    // A CI run that shipped an image this revision introduced.
    let previous: Option<Vec<String>> = sqlx::query_scalar(
        "select images from deploy_revisions
         where namespace = $1 and kind = $2 and workload = $3 and revision < $4
         order by revision desc limit 1",
    )
    .bind(namespace)
    .bind(s.kind)
    .bind(&s.workload)
    .bind(s.revision)
    .fetch_optional(&mut *tx)
    .await?;
    let introduced = introduced(images, previous.as_deref());
    if introduced.is_empty() {
        return Ok(());
    }
    let run: Option<CiRun> = sqlx::query_as(
        "select run_id, actor from ci_deploys
         where images && $1 and created_at <= $2 + interval '2 minutes'
           and created_at >= $2 - interval '1 hour'
         order by created_at desc limit 1",
    )
    .bind(&introduced)
    .bind(s.created_at)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(CiRun { run_id, actor }) = run {
        link_ci(tx, id, &run_id, &actor).await?;
    }
    Ok(())
}

/// One of Slate's own restarts or rollbacks that a new revision may be the result of.
#[derive(sqlx::FromRow)]
struct SlateEvent {
    id: Uuid,
    actor_label: String,
}

/// A CI run that may have shipped a revision's images.
#[derive(sqlx::FromRow)]
struct CiRun {
    run_id: String,
    actor: String,
}

/// The images of a revision that its previous revision did not have (all of them for a
/// first revision).
pub fn introduced(images: &[String], previous: Option<&[String]>) -> Vec<String> {
    let before: HashSet<&String> = previous.into_iter().flatten().collect();
    images
        .iter()
        .filter(|i| !before.contains(i))
        .cloned()
        .collect()
}

pub async fn link_ci(
    tx: &mut sqlx::PgConnection,
    revision: Uuid,
    run: &str,
    actor: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update deploy_revisions set source = 'ci', ci_run = $2, actor = coalesce(actor, $3)
         where id = $1 and source = 'cluster'",
    )
    .bind(revision)
    .bind(run)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Records what the cluster shows after every change, for as long as Slate runs. Waits
/// until every watcher has listed once, so that a half-filled first snapshot is never
/// taken for the truth.
pub async fn run(cluster: crate::cluster::Cluster, pool: PgPool) {
    let namespace = cluster.namespace().to_owned();
    let mut feed = cluster.feed();
    let mut last: Option<Arc<Objects>> = None;
    // Revisions known to be stored (by this replica or another): most rebuilds bring
    // none that is new, and then touch no database.
    let mut stored: HashSet<(&'static str, String, i64)> = HashSet::new();
    loop {
        if feed.changed().await.is_err() {
            return;
        }
        if !cluster.is_synced() {
            continue;
        }
        let objects = feed.borrow_and_update().clone();
        if last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &objects)) {
            continue;
        }
        let new: Vec<Seen> = seen(&objects, Utc::now())
            .into_iter()
            .filter(|s| !stored.contains(&(s.kind, s.workload.clone(), s.revision)))
            .collect();
        if !new.is_empty() {
            match record(&pool, &namespace, &new).await {
                Ok(n) => {
                    tracing::debug!(n, "revisions recorded");
                    stored.extend(new.into_iter().map(|s| (s.kind, s.workload, s.revision)));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot record revisions; trying again in 5 s");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    feed.mark_changed();
                    continue;
                }
            }
        }
        last = Some(objects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_a_revision_introduced_link_it_to_ci() {
        let now = vec!["slate:2".to_owned(), "redis:7".to_owned()];
        let before = vec!["slate:1".to_owned(), "redis:7".to_owned()];
        assert_eq!(introduced(&now, Some(&before)), vec!["slate:2".to_owned()]);
        assert!(introduced(&before, Some(&before)).is_empty());
        assert_eq!(introduced(&now, None), now);
    }
}
