//! Live state: one watcher and reflector per kind (the twelve the topology draws, plus
//! ControllerRevisions for the deploy history) (with backoff, so a flapping API
//! server is retried calmly and never crashes Slate), a record of whether the API server
//! answers, and a snapshot of every store for the topology builder.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::architecture::Source;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt as _;
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::objects::Objects;

/// Whether the API server answers, and which kinds have listed once.
#[derive(Default)]
pub struct Connection {
    state: Mutex<ConnectionState>,
}

#[derive(Default)]
struct ConnectionState {
    unreachable_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    synced: BTreeMap<&'static str, bool>,
}

impl Connection {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expect(&self, kind: &'static str) {
        self.lock().synced.entry(kind).or_insert(false);
    }

    fn answered(&self, kind: Option<&'static str>, listed: bool) {
        let mut s = self.lock();
        if let Some(since) = s.unreachable_since.take() {
            tracing::info!(%since, "the cluster's API server answers again");
        }
        if let (Some(kind), true) = (kind, listed) {
            s.synced.insert(kind, true);
        }
    }

    fn failed(&self, kind: &'static str, error: String) {
        let mut s = self.lock();
        if s.unreachable_since.is_none() {
            tracing::warn!(kind, %error, "cannot watch the cluster; keeping the last known state and retrying with backoff");
            s.unreachable_since = Some(Utc::now());
        }
        s.last_error = Some(error);
    }

    pub fn is_unreachable(&self) -> bool {
        self.lock().unreachable_since.is_some()
    }

    pub fn source(&self) -> Source {
        let s = self.lock();
        Source::Live {
            unreachable_since: s.unreachable_since,
            synced: !s.synced.is_empty() && s.synced.values().all(|v| *v),
        }
    }
}

/// The reflectors' stores, one per kind.
#[derive(Clone)]
pub struct Stores {
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    services: Store<Service>,
    ingresses: Store<Ingress>,
    pvcs: Store<PersistentVolumeClaim>,
    configmaps: Store<ConfigMap>,
    secrets: Store<PartialObjectMeta<Secret>>,
    jobs: Store<Job>,
    hpas: Store<HorizontalPodAutoscaler>,
    events: Store<Event>,
    controller_revisions: Store<ControllerRevision>,
}

impl Stores {
    pub fn snapshot(&self) -> Objects {
        Objects {
            deployments: self.deployments.state(),
            statefulsets: self.statefulsets.state(),
            replicasets: self.replicasets.state(),
            pods: self.pods.state(),
            services: self.services.state(),
            ingresses: self.ingresses.state(),
            pvcs: self.pvcs.state(),
            configmaps: self.configmaps.state(),
            secrets: self.secrets.state(),
            jobs: self.jobs.state(),
            hpas: self.hpas.state(),
            events: self.events.state(),
            controller_revisions: self.controller_revisions.state(),
        }
    }
}

fn watch<K>(
    client: &Client,
    namespace: &str,
    kind: &'static str,
    connection: &Arc<Connection>,
    changed: &Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| {
            // Bulk nobody reads: managed fields and kubectl's copy of the last apply.
            o.managed_fields_mut().clear();
            if let Some(a) = o.meta_mut().annotations.as_mut() {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
            }
        })
        .reflect(writer);
    let connection = connection.clone();
    let changed = changed.clone();
    connection.expect(kind);
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    let listed = matches!(event, watcher::Event::InitDone);
                    connection.answered(Some(kind), listed);
                }
                Err(err) => connection.failed(kind, err.to_string()),
            }
            changed.notify_one();
        }
    }));
    reader
}

/// Starts the watchers. `changed` is notified on every event and connection change.
pub fn start(
    client: Client,
    namespace: &str,
    connection: Arc<Connection>,
    changed: Arc<Notify>,
) -> (Stores, Vec<JoinHandle<()>>) {
    let mut t = Vec::new();
    let (c, n, ns) = (&connection, &changed, namespace);
    let stores = Stores {
        deployments: watch(&client, ns, "deployments", c, n, &mut t),
        statefulsets: watch(&client, ns, "statefulsets", c, n, &mut t),
        replicasets: watch(&client, ns, "replicasets", c, n, &mut t),
        pods: watch(&client, ns, "pods", c, n, &mut t),
        services: watch(&client, ns, "services", c, n, &mut t),
        ingresses: watch(&client, ns, "ingresses", c, n, &mut t),
        pvcs: watch(&client, ns, "persistentvolumeclaims", c, n, &mut t),
        configmaps: watch(&client, ns, "configmaps", c, n, &mut t),
        // `PartialObjectMeta` makes every request metadata-only: values never leave the
        // API server.
        secrets: watch(&client, ns, "secrets", c, n, &mut t),
        jobs: watch(&client, ns, "jobs", c, n, &mut t),
        hpas: watch(&client, ns, "horizontalpodautoscalers", c, n, &mut t),
        events: watch(&client, ns, "events", c, n, &mut t),
        controller_revisions: watch(&client, ns, "controllerrevisions", c, n, &mut t),
    };
    // A resumed watch says nothing until something changes, so while the API server is
    // unreachable a cheap probe finds out when it is back.
    t.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if connection.is_unreachable() && client.apiserver_version().await.is_ok() {
                connection.answered(None, false);
                changed.notify_one();
            }
        }
    }));
    (stores, t)
}
