//! Live state: one watcher and reflector per kind (the twelve the topology draws, plus
//! ControllerRevisions for the deploy history), a record of whether the API server
//! answers and of the kinds it does not let Slate watch (each left out on its own, so an
//! optional API the cluster lacks never darkens the whole view), backoff that really
//! backs off, and a snapshot of every store for the topology builder.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::architecture::{Source, Unwatched};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt as _;
use kube::{Api, Client, Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::objects::Objects;

/// Whether the API server answers, and what Slate knows of each kind it watches.
#[derive(Default)]
pub struct Connection {
    state: Mutex<ConnectionState>,
}

#[derive(Default)]
struct ConnectionState {
    unreachable_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    kinds: BTreeMap<&'static str, KindState>,
}

#[derive(Default)]
struct KindState {
    /// Listed at least once.
    listed: bool,
    /// Why the kind is not watched: the API server does not serve it (an optional API,
    /// a CRD not installed) or Slate may not read it. Only this kind is left out.
    unavailable: Option<String>,
}

impl Connection {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expect(&self, kind: &'static str) {
        self.lock().kinds.entry(kind).or_default();
    }

    /// The API server answered (a list page, a watch event, an error of its own).
    fn answered(&self) {
        let mut s = self.lock();
        if let Some(since) = s.unreachable_since.take() {
            tracing::info!(%since, "the cluster's API server answers again");
        }
    }

    fn listed(&self, kind: &'static str) {
        self.answered();
        let mut s = self.lock();
        let state = s.kinds.entry(kind).or_default();
        if state.unavailable.take().is_some() {
            tracing::info!(kind, "the kind is served and watched again");
        }
        state.listed = true;
    }

    fn unavailable(&self, kind: &'static str, reason: String) {
        self.answered();
        let mut s = self.lock();
        let state = s.kinds.entry(kind).or_default();
        if state.unavailable.as_deref() != Some(reason.as_str()) {
            tracing::warn!(kind, %reason, "not watching this kind; the rest of the namespace is still watched");
            state.unavailable = Some(reason);
        }
    }

    fn failed(&self, kind: &'static str, error: String) {
        let mut s = self.lock();
        if s.unreachable_since.is_none() {
            tracing::warn!(kind, %error, "cannot reach the cluster's API server; keeping the last known state and retrying with backoff");
            s.unreachable_since = Some(Utc::now());
        }
        s.last_error = Some(error);
    }

    pub fn is_unreachable(&self) -> bool {
        self.lock().unreachable_since.is_some()
    }

    /// Synced once every kind has listed or is known to be unavailable.
    pub fn source(&self) -> Source {
        let s = self.lock();
        Source::Live {
            unreachable_since: s.unreachable_since,
            synced: !s.kinds.is_empty()
                && s.kinds
                    .values()
                    .all(|k| k.listed || k.unavailable.is_some()),
            unwatched: s
                .kinds
                .iter()
                .filter_map(|(kind, k)| {
                    k.unavailable.as_ref().map(|reason| Unwatched {
                        kind: (*kind).to_owned(),
                        reason: reason.clone(),
                    })
                })
                .collect(),
        }
    }
}

/// What a failed watch means.
#[derive(Debug, PartialEq)]
enum Failure {
    /// The API server cannot be reached (or fails as a whole): the view is out of date.
    Unreachable(String),
    /// The server answered that this kind cannot be watched: leave out only this kind.
    Unavailable(String),
    /// The resource version is too old (410 Gone, after compaction or a restart): the
    /// watcher lists again. Not an outage.
    Relist,
}

fn classify(error: &watcher::Error) -> Failure {
    use watcher::Error as E;
    let status = match error {
        E::InitialListFailed(e) | E::WatchStartFailed(e) | E::WatchFailed(e) => match e {
            kube::Error::Api(status) => Some(status.as_ref()),
            _ => None,
        },
        E::WatchError(status) => Some(status.as_ref()),
        E::NoResourceVersion => {
            return Failure::Unavailable(
                "the API server lists it without a resourceVersion, so it cannot be watched".into(),
            )
        }
    };
    match status {
        None => Failure::Unreachable(error.to_string()),
        Some(s) if s.code == 410 => Failure::Relist,
        Some(s) if s.code == 404 => {
            Failure::Unavailable(format!("the API server does not serve it ({})", s.message))
        }
        Some(s) if s.code == 403 => {
            Failure::Unavailable(format!("Slate may not watch it: {}", s.message))
        }
        Some(s) if s.code >= 500 || s.code == 429 => Failure::Unreachable(error.to_string()),
        Some(s) => Failure::Unavailable(format!("{} {}", s.code, s.message)),
    }
}

/// Exponential backoff that resets only on real progress (a completed list or a watch
/// event). kube-runtime's own backoff resets on any event, and the watcher emits `Init`
/// before every relist, so a kind that always fails was retried about once a second.
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay to wait now, with up to a quarter added at random so that the
    /// watchers of one Slate (and several Slates) do not retry in step.
    fn delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now + now.mul_f64(rand::random::<f64>() / 4.0)
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
    let stream = watcher(api, watcher::Config::default());
    connection.expect(kind);
    let (connection, changed) = (connection.clone(), changed.clone());
    tasks.push(tokio::spawn(follow(
        kind, stream, writer, connection, changed,
    )));
    reader
}

/// Drops what nobody reads: managed fields and kubectl's copy of the last apply.
fn trim<K: Resource>(o: &mut K) {
    o.managed_fields_mut().clear();
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Feeds one kind's watch events into its store and the connection state, backing off
/// after failures: short steps while the API server is away, long ones for a kind it
/// does not serve (a CRD may be installed later).
async fn follow<K, S>(
    kind: &'static str,
    stream: S,
    writer: reflector::store::Writer<K>,
    connection: Arc<Connection>,
    changed: Arc<Notify>,
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let stream = stream.modify(trim::<K>).reflect(writer);
    let mut stream = std::pin::pin!(stream);
    let mut outage = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut unserved = Backoff::new(Duration::from_secs(30), Duration::from_secs(300));
    while let Some(item) = stream.next().await {
        let pause = match item {
            Ok(watcher::Event::InitDone) => {
                connection.listed(kind);
                outage.reset();
                unserved.reset();
                None
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                connection.answered();
                outage.reset();
                None
            }
            Ok(watcher::Event::InitApply(_)) => {
                connection.answered();
                None
            }
            // Emitted before the list request is sent: says nothing about the server.
            Ok(watcher::Event::Init) => None,
            Err(err) => match classify(&err) {
                Failure::Relist => {
                    tracing::debug!(kind, %err, "listing again");
                    connection.answered();
                    Some(outage.delay())
                }
                Failure::Unavailable(reason) => {
                    connection.unavailable(kind, reason);
                    Some(unserved.delay())
                }
                Failure::Unreachable(reason) => {
                    connection.failed(kind, reason);
                    Some(outage.delay())
                }
            },
        };
        changed.notify_one();
        if let Some(pause) = pause {
            // The watcher sends its next request when polled again.
            tokio::time::sleep(pause).await;
        }
    }
}

/// HorizontalPodAutoscalers in the best version the server offers: `autoscaling/v2`
/// (1.23 and later), else `v2beta2` (1.12–1.25), else `v1`, each read into the v2 type
/// (`objects::hpa_as_v2`).
fn watch_hpas(
    client: &Client,
    namespace: &str,
    connection: &Arc<Connection>,
    changed: &Arc<Notify>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Store<HorizontalPodAutoscaler> {
    const KIND: &str = "horizontalpodautoscalers";
    let (reader, writer) = reflector::store();
    connection.expect(KIND);
    let (client, namespace) = (client.clone(), namespace.to_owned());
    let (connection, changed) = (connection.clone(), changed.clone());
    tasks.push(tokio::spawn(async move {
        let mut outage = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut unserved = Backoff::new(Duration::from_secs(30), Duration::from_secs(300));
        let resource = loop {
            let pause = match hpa_resource(&client).await {
                Ok(Some(resource)) => break resource,
                Ok(None) => {
                    connection.unavailable(
                        KIND,
                        "the API server serves no version Slate reads (autoscaling/v2, v2beta2, v1)"
                            .into(),
                    );
                    unserved.delay()
                }
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 403 => {
                    connection.unavailable(KIND, format!("discovery: {}", status.message));
                    unserved.delay()
                }
                Err(err) => {
                    connection.failed(KIND, err.to_string());
                    outage.delay()
                }
            };
            changed.notify_one();
            tokio::time::sleep(pause).await;
        };
        tracing::debug!(version = %resource.version, "watching HorizontalPodAutoscalers");
        let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &resource);
        let stream = watcher(api, watcher::Config::default()).filter_map(|item| async move {
            match item {
                Ok(event) => as_v2(event).map(Ok),
                Err(err) => Some(Err(err)),
            }
        });
        follow(KIND, stream, writer, connection, changed).await;
    }));
    reader
}

async fn hpa_resource(client: &Client) -> Result<Option<ApiResource>, kube::Error> {
    let group = kube::discovery::group(client, "autoscaling").await?;
    let served: Vec<&str> = group.versions().collect();
    Ok(["v2", "v2beta2", "v1"]
        .into_iter()
        .filter(|v| served.contains(v))
        .find_map(|v| {
            group
                .versioned_resources(v)
                .into_iter()
                .map(|(resource, _)| resource)
                .find(|r| r.plural == "horizontalpodautoscalers")
        }))
}

/// One event of the dynamic HPA watcher in the v2 type; an object that does not read
/// is left out (and logged).
fn as_v2(event: watcher::Event<DynamicObject>) -> Option<watcher::Event<HorizontalPodAutoscaler>> {
    fn read(o: DynamicObject) -> Option<HorizontalPodAutoscaler> {
        let name = o.name_any();
        serde_json::to_value(o)
            .and_then(super::objects::hpa_as_v2)
            .map_err(|err| tracing::warn!(%name, %err, "a HorizontalPodAutoscaler does not read"))
            .ok()
    }
    use watcher::Event as E;
    Some(match event {
        E::Apply(o) => E::Apply(read(o)?),
        E::Delete(o) => E::Delete(read(o)?),
        E::InitApply(o) => E::InitApply(read(o)?),
        E::Init => E::Init,
        E::InitDone => E::InitDone,
    })
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
        hpas: watch_hpas(&client, ns, c, n, &mut t),
        events: watch(&client, ns, "events", c, n, &mut t),
        controller_revisions: watch(&client, ns, "controllerrevisions", c, n, &mut t),
    };
    // A resumed watch says nothing until something changes, so while the API server is
    // unreachable a cheap probe finds out when it is back.
    t.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if connection.is_unreachable() && client.apiserver_version().await.is_ok() {
                connection.answered();
                changed.notify_one();
            }
        }
    }));
    (stores, t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn answered(code: u16, message: &str) -> watcher::Error {
        watcher::Error::InitialListFailed(kube::Error::Api(
            Status::failure(message, "").with_code(code).boxed(),
        ))
    }

    #[test]
    fn an_answer_about_one_kind_is_not_an_outage() {
        assert_eq!(
            classify(&answered(404, "the server could not find the requested resource")),
            Failure::Unavailable(
                "the API server does not serve it (the server could not find the requested resource)"
                    .into()
            )
        );
        assert!(matches!(
            classify(&answered(403, "horizontalpodautoscalers is forbidden")),
            Failure::Unavailable(m) if m.contains("forbidden")
        ));
        assert_eq!(
            classify(&watcher::Error::WatchError(
                Status::failure("too old resource version", "Expired")
                    .with_code(410)
                    .boxed()
            )),
            Failure::Relist
        );
        assert_eq!(classify(&answered(410, "Expired")), Failure::Relist);
        assert!(matches!(
            classify(&answered(503, "unavailable")),
            Failure::Unreachable(_)
        ));
        assert!(matches!(
            classify(&watcher::Error::WatchFailed(
                kube::Error::LinesCodecMaxLineLengthExceeded
            )),
            Failure::Unreachable(_)
        ));
    }

    #[test]
    fn backoff_grows_to_its_ceiling_and_resets_only_when_told() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..10).map(|_| b.delay()).collect();
        for (d, base) in delays
            .iter()
            .zip([500u64, 1000, 2000, 4000, 8000, 16000, 30000])
        {
            let base = Duration::from_millis(base);
            assert!(*d >= base && *d <= base + base / 4, "{d:?} for {base:?}");
        }
        assert!(delays[9] >= Duration::from_secs(30) && delays[9] <= Duration::from_millis(37500));
        b.reset();
        assert!(b.delay() < Duration::from_millis(626));
    }

    #[test]
    fn synced_counts_unavailable_kinds_as_known_and_lists_them() {
        let c = Connection::default();
        c.expect("pods");
        c.expect("horizontalpodautoscalers");
        c.listed("pods");
        assert!(matches!(c.source(), Source::Live { synced: false, .. }));
        c.unavailable("horizontalpodautoscalers", "not served".into());
        match c.source() {
            Source::Live {
                synced,
                unreachable_since,
                unwatched,
            } => {
                assert!(synced);
                assert_eq!(unreachable_since, None);
                assert_eq!(
                    unwatched,
                    vec![Unwatched {
                        kind: "horizontalpodautoscalers".into(),
                        reason: "not served".into()
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        c.listed("horizontalpodautoscalers");
        assert!(matches!(c.source(), Source::Live { unwatched, .. } if unwatched.is_empty()));
    }
}
