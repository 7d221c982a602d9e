//! The cluster as Slate sees it. With a cluster (in-cluster service account, else the
//! KUBECONFIG file) the namespace is watched live; without one, the desired state is
//! read from the `k8s/` manifests built into the binary and labelled as such. Either way
//! one rebuild loop turns the objects into a topology (debounced) and publishes it.

pub mod health;
pub mod http;
pub mod hub;
pub mod kustomize;
pub mod live;
pub mod objects;
pub mod topology;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::architecture::{NodeDetail, Source, Topology};
use app::backend::ClusterBackend;
use app::error::AppError;
use chrono::Utc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::{Config, KubeMode};
use hub::Hub;
use objects::Objects;
use topology::External;

/// How long changes are gathered before the topology is rebuilt.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Which cluster to talk to, if any, and why.
pub enum Target {
    Cluster(kube::Client),
    None(String),
}

/// Finds the cluster: in a pod its service account, else the KUBECONFIG file, else none.
pub async fn target(config: &Config) -> Target {
    if config.kube == KubeMode::Off {
        return Target::None("SLATE_KUBE=off".into());
    }
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let kube_config = if in_pod {
        kube::Config::incluster().map_err(|e| format!("cannot use the pod's service account: {e}"))
    } else {
        let Some(path) = config
            .kubeconfig
            .as_deref()
            .and_then(|list| {
                list.split(':')
                    .filter(|p| !p.is_empty())
                    .find(|p| std::path::Path::new(p).exists())
            })
            .map(str::to_owned)
        else {
            return Target::None("no cluster: not in a pod and KUBECONFIG names no file".into());
        };
        match kube::config::Kubeconfig::read_from(&path) {
            Ok(file) => kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("cannot use {path}: {e}")),
            Err(e) => Err(format!("cannot read {path}: {e}")),
        }
    };
    match kube_config.and_then(|c| {
        kube::Client::try_from(c).map_err(|e| format!("cannot build a cluster client: {e}"))
    }) {
        Ok(client) => Target::Cluster(client),
        Err(why) => {
            tracing::warn!(%why, "not connecting to a cluster");
            Target::None(why)
        }
    }
}

/// The desired state: the objects of the built-in `k8s/base`.
pub fn desired_objects(namespace: &str) -> Objects {
    let built = kustomize::build(&kustomize::embedded(), "base").and_then(|mut docs| {
        for d in &mut docs {
            if d["kind"] != "Namespace" {
                d["metadata"]["namespace"] = serde_json::Value::String(namespace.to_owned());
            }
        }
        Objects::from_documents(&docs)
    });
    built.unwrap_or_else(|err| {
        tracing::error!(%err, "the built-in manifests do not parse");
        Objects::default()
    })
}

struct Inner {
    namespace: String,
    hub: Hub,
    /// The objects the current topology was built from (for the detail panel).
    objects: Mutex<Arc<Objects>>,
    external: Mutex<External>,
    changed: Arc<Notify>,
    live: Option<(live::Stores, Arc<live::Connection>)>,
    desired_why: Option<String>,
    /// The live objects after every rebuild (never the desired state): the deploy
    /// history and the rollout status read them.
    feed: tokio::sync::watch::Sender<Arc<Objects>>,
    client: Option<kube::Client>,
}

/// The cluster service: current topology, change stream, details.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Connects (or not) and starts the watchers and the rebuild loop.
    pub async fn start(config: &Config) -> (Cluster, Vec<JoinHandle<()>>) {
        let target = target(config).await;
        Self::start_with(target, &config.namespace)
    }

    pub fn start_with(target: Target, namespace: &str) -> (Cluster, Vec<JoinHandle<()>>) {
        let changed = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        let mut kube_client = None;
        let (live, desired_why, objects) = match target {
            Target::Cluster(client) => {
                tracing::info!(namespace, "watching the cluster");
                kube_client = Some(client.clone());
                let connection = Arc::new(live::Connection::default());
                let (stores, t) =
                    live::start(client, namespace, connection.clone(), changed.clone());
                tasks.extend(t);
                (Some((stores, connection)), None, Objects::default())
            }
            Target::None(why) => {
                tracing::info!(%why, "no cluster: the architecture page shows the desired state from the built-in manifests");
                (None, Some(why), desired_objects(namespace))
            }
        };
        let source = match (&live, &desired_why) {
            (Some((_, c)), _) => c.source(),
            (None, why) => Source::Desired {
                why: why.clone().unwrap_or_default(),
            },
        };
        let external = External::default();
        let first = topology::build(&objects, namespace, source, &external, Utc::now());
        let inner = Arc::new(Inner {
            namespace: namespace.to_owned(),
            hub: Hub::new(first),
            objects: Mutex::new(Arc::new(objects)),
            external: Mutex::new(external),
            changed,
            live,
            desired_why,
            feed: tokio::sync::watch::channel(Arc::new(Objects::default())).0,
            client: kube_client,
        });
        let cluster = Cluster { inner };
        let looped = cluster.clone();
        tasks.push(tokio::spawn(async move { looped.rebuild_loop().await }));
        (cluster, tasks)
    }

    async fn rebuild_loop(self) {
        loop {
            self.inner.changed.notified().await;
            tokio::time::sleep(DEBOUNCE).await;
            self.rebuild();
        }
    }

    /// Builds the topology from the current objects and publishes it if it changed.
    pub fn rebuild(&self) {
        let inner = &self.inner;
        let (objects, source) = match &inner.live {
            Some((stores, connection)) => (Arc::new(stores.snapshot()), connection.source()),
            None => (
                inner
                    .objects
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
                Source::Desired {
                    why: inner.desired_why.clone().unwrap_or_default(),
                },
            ),
        };
        let external = inner
            .external
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let next = topology::build(&objects, &inner.namespace, source, &external, Utc::now());
        if inner.live.is_some() {
            inner.feed.send_replace(objects.clone());
        }
        *inner.objects.lock().unwrap_or_else(|e| e.into_inner()) = objects;
        inner.hub.publish(next);
    }

    /// Sets what Slate knows about the external ComfyUI endpoint (from its probe).
    pub fn set_external(&self, external: External) {
        *self
            .inner
            .external
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = external;
        self.inner.changed.notify_one();
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The live objects, as of the last rebuild; changes with every rebuild. Empty and
    /// never changing without a cluster.
    pub fn feed(&self) -> tokio::sync::watch::Receiver<Arc<Objects>> {
        self.inner.feed.subscribe()
    }

    /// The client, when connected to a cluster.
    pub fn client(&self) -> Option<kube::Client> {
        self.inner.client.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Whether every watcher has listed once and the API server answers.
    pub fn is_synced(&self) -> bool {
        self.inner.live.as_ref().is_some_and(|(_, c)| {
            matches!(
                c.source(),
                Source::Live {
                    synced: true,
                    unreachable_since: None,
                    ..
                }
            )
        })
    }

    /// Why there is no live cluster, when there is none.
    pub fn why_not_live(&self) -> Option<String> {
        self.inner.desired_why.clone()
    }

    pub fn is_live(&self) -> bool {
        self.inner.live.is_some()
    }
}

impl ClusterBackend for Cluster {
    fn topology(&self) -> Topology {
        (*self.inner.hub.current()).clone()
    }

    fn node_detail(&self, id: &str) -> Result<NodeDetail, AppError> {
        let topology = self.inner.hub.current();
        let objects = self
            .inner
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        topology::detail(&objects, &topology, id)
    }
}
