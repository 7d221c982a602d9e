//! Deploys: the CI webhook, the revision history recorded from the fake API server (with
//! its Deployment controller on), template diffs, and restart and rollback with
//! `kubectl rollout` semantics, including after the ReplicaSet was pruned.

mod ci;
mod history;
mod realkube;
mod scenario;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use slate_tests::fake_kube::FakeKube;
use slate_tests::{eventually, spawn_app_with, TestApp};

/// A stored revision: source, actor, images, CI run.
pub type Recorded = (String, Option<String>, Vec<String>, Option<String>);

/// Slate connected to a fake cluster running the whole base, with the fake's
/// Deployment controller making ReplicaSets as the real one does.
pub struct Env {
    pub fake: FakeKube,
    pub app: TestApp,
    kubeconfig: PathBuf,
}

impl Env {
    pub async fn start() -> Env {
        let fake = FakeKube::start().await;
        fake.enable_deployment_controller();
        slate_tests::kube_fixtures::apply_settled_base(&fake);
        let kubeconfig = std::env::temp_dir().join(format!(
            "slate-deploys-kube-{}",
            uuid::Uuid::now_v7().simple()
        ));
        fake.write_kubeconfig(&kubeconfig);
        let path = kubeconfig.display().to_string();
        let app = spawn_app_with(|c| {
            c.kube = server::config::KubeMode::Auto;
            c.kubeconfig = Some(path);
        })
        .await;
        Env {
            fake,
            app,
            kubeconfig,
        }
    }

    /// Stops Slate (every background task with it), lets `during` change the cluster
    /// while it is down, and starts it again on the same database and fake cluster.
    pub async fn while_down(self, during: impl FnOnce(&FakeKube)) -> Env {
        let Env {
            fake,
            app,
            kubeconfig,
        } = self;
        let config = app.config.clone();
        app.stop().await;
        during(&fake);
        Env {
            fake,
            app: slate_tests::start(config).await,
            kubeconfig,
        }
    }

    pub fn deployment(&self, name: &str) -> Value {
        self.fake
            .get("apps/v1", "Deployment", "ai-film", name)
            .unwrap_or_else(|| panic!("Deployment {name}"))
    }

    /// Changes a Deployment the way `kubectl apply` or `kubectl set image` would (a new
    /// spec, so a new generation), and returns it.
    pub fn change(&self, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
        change(&self.fake, name, edit)
    }

    pub fn set_image(&self, name: &str, image: &str) -> Value {
        set_image(&self.fake, name, image)
    }

    /// The ReplicaSets of a Deployment, by revision.
    pub fn replicasets(&self, name: &str) -> Vec<(i64, Value)> {
        let mut out: Vec<(i64, Value)> = self
            .fake
            .list("apps/v1", "ReplicaSet", "ai-film")
            .into_iter()
            .filter(|rs| rs["metadata"]["ownerReferences"][0]["name"] == name)
            .map(|rs| {
                let revision = rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                (revision, rs)
            })
            .collect();
        out.sort_by_key(|(r, _)| *r);
        out
    }

    /// Waits until Slate has stored `revision` of `Kind/name`; returns its row as
    /// (source, actor, images, ci_run).
    pub async fn revision(&self, kind: &str, name: &str, revision: i64) -> Recorded {
        eventually(
            &format!("{kind}/{name} revision {revision} to be recorded"),
            Duration::from_secs(10),
            || async {
                let row: Option<Recorded> = sqlx::query_as(
                    "select source, actor, images, ci_run from deploy_revisions
                     where kind = $1 and workload = $2 and revision = $3",
                )
                .bind(kind)
                .bind(name)
                .bind(revision)
                .fetch_optional(&self.app.pool)
                .await
                .unwrap();
                match row {
                    Some(row) => Ok(row),
                    None => Err(self.recorded().await),
                }
            },
        )
        .await
    }

    /// Every (workload, revision) recorded so far, for failure messages.
    async fn recorded(&self) -> Vec<(String, i64)> {
        sqlx::query_as("select workload, revision from deploy_revisions order by 1, 2")
            .fetch_all(&self.app.pool)
            .await
            .unwrap()
    }

    /// Asks for a rollback as `client`; returns the status and the body.
    pub async fn rollback(
        &self,
        client: &reqwest::Client,
        name: &str,
        revision: &str,
        reason: &str,
    ) -> (u16, String) {
        let form = [("name", name), ("revision", revision), ("reason", reason)];
        text(
            self.app
                .call(client, "/api/admin/deploy_rollback", &form)
                .await,
        )
        .await
    }

    /// Asks for a restart as `client`; returns the status and the body.
    pub async fn restart(
        &self,
        client: &reqwest::Client,
        kind: &str,
        name: &str,
        reason: &str,
    ) -> (u16, String) {
        let form = [("kind", kind), ("name", name), ("reason", reason)];
        text(
            self.app
                .call(client, "/api/lead/deploy_restart", &form)
                .await,
        )
        .await
    }

    /// A revision's diff against its previous one, or `against`.
    pub async fn diff(
        &self,
        client: &reqwest::Client,
        name: &str,
        revision: &str,
        against: Option<&str>,
    ) -> (u16, Value) {
        let mut form = vec![
            ("kind", "Deployment"),
            ("name", name),
            ("revision", revision),
        ];
        form.extend(against.map(|a| ("against", a)));
        let (status, body) =
            text(self.app.call(client, "/api/lead/deploy_diff", &form).await).await;
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }

    pub async fn stop(self) {
        self.app.stop().await;
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Changes a Deployment in the fake as `kubectl apply` would (a new spec: a new
/// generation).
pub fn change(fake: &FakeKube, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut d = fake
        .get("apps/v1", "Deployment", "ai-film", name)
        .unwrap_or_else(|| panic!("Deployment {name}"));
    edit(&mut d);
    fake.apply(d)
}

/// `kubectl set image deployment/<name> <first container>=<image>`.
pub fn set_image(fake: &FakeKube, name: &str, image: &str) -> Value {
    change(fake, name, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image)
    })
}

/// What `kubectl rollout undo --to-revision` leaves in a Deployment, computed here from
/// kubectl's rules independently of Slate's code: the revision's template without
/// `pod-template-hash`, and the annotations made of the Deployment's bookkeeping ones
/// plus every other annotation of the revision's ReplicaSet.
pub fn kubectl_undo(deployment: &Value, rs_template: &Value, rs_annotations: &Value) -> Value {
    const KEEP: [&str; 6] = [
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    ];
    let mut out = deployment.clone();
    let mut template = rs_template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    out["spec"]["template"] = template;
    let mut annotations = serde_json::Map::new();
    for (k, v) in deployment["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if KEEP.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in rs_annotations.as_object().into_iter().flatten() {
        if !KEEP.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    out["metadata"]["annotations"] = Value::Object(annotations);
    out
}

/// A JSON answer's `message`-like text, whatever the shape of the error body.
pub async fn text(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    (status, res.text().await.unwrap_or_default())
}
