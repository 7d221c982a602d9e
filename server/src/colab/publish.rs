//! Publication: the current endpoint is written into the cluster (a Secret by default,
//! since the URL is a credential; a ConfigMap if configured), key `COMFYUI_URL`, and
//! every Deployment labelled `slate.dev/comfyui-consumer: "true"` is restarted exactly as
//! `kubectl rollout restart` does it (a paused one is refused, not restarted).

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub const KEY: &str = "COMFYUI_URL";
pub const CONSUMER_SELECTOR: &str = "slate.dev/comfyui-consumer=true";

/// Where the endpoint goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Secret(String),
    ConfigMap(String),
}

/// What one publication did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    /// `Secret/comfyui-endpoint`, `ConfigMap/…`.
    pub object: String,
    pub created: bool,
    pub restarted: Vec<String>,
    /// The `restartedAt` stamp the restarts wrote (it ties the new revisions to this
    /// publication in the deploy history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// Consumers left alone, with the reason (paused).
    pub refused: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct Publisher {
    pub client: Client,
    pub namespace: String,
    pub target: Target,
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "comfyui-endpoint".to_owned(),
        ),
        ("app.kubernetes.io/part-of".to_owned(), "ai-film".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "slate".to_owned(),
        ),
        ("slate.dev/layer".to_owned(), "processing".to_owned()),
    ])
}

impl Publisher {
    pub async fn publish(&self, url: &str) -> Result<Publication, kube::Error> {
        let mut publication = Publication::default();
        match &self.target {
            Target::Secret(name) => {
                publication.object = format!("Secret/{name}");
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
                let encoded = base64::engine::general_purpose::STANDARD.encode(url);
                if api.get_metadata_opt(name).await?.is_some() {
                    let patch = json!({"data": {KEY: encoded}});
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                } else {
                    let secret: Secret = serde_json::from_value(json!({
                        "apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": name, "labels": labels()},
                        "type": "Opaque",
                        "data": {KEY: encoded}
                    }))
                    .expect("a valid Secret");
                    api.create(&PostParams::default(), &secret).await?;
                    publication.created = true;
                }
            }
            Target::ConfigMap(name) => {
                publication.object = format!("ConfigMap/{name}");
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                if api.get_metadata_opt(name).await?.is_some() {
                    let patch = json!({"data": {KEY: url}});
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                } else {
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "labels": labels()},
                        "data": {KEY: url}
                    }))
                    .expect("a valid ConfigMap");
                    api.create(&PostParams::default(), &cm).await?;
                    publication.created = true;
                }
            }
        }
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let consumers = deployments
            .list(&ListParams::default().labels(CONSUMER_SELECTOR))
            .await?;
        let now = chrono::Utc::now();
        for d in consumers {
            let name = d.name_any();
            let value = serde_json::to_value(&d).unwrap_or_default();
            match crate::deploys::rollout::restart(&value, now) {
                Err(refusal) => {
                    publication
                        .refused
                        .push((name.clone(), refusal.message("Deployment", &name)));
                }
                Ok((patch, stamp)) => {
                    deployments
                        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                        .await?;
                    publication.restarted.push(name);
                    publication.restarted_at = Some(stamp);
                }
            }
        }
        Ok(publication)
    }
}
