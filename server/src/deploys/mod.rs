//! Deploys: the rollout history of the namespace (cluster revisions, CI reports and
//! Slate's own actions), template diffs, live rollout status, and restart and rollback
//! with `kubectl rollout` semantics.

mod backend;
pub mod ci;
pub mod events;
pub mod revisions;
pub mod rollout;
pub mod status;
mod store;

use app::deploys::{diff, TemplateDiff};
use app::error::AppError;
use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::Value;
use sqlx::PgPool;

use crate::cluster::Cluster;
use rollout::without_hash;

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
            Some(stored) => Ok((stored.template, stored.annotations, true)),
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
