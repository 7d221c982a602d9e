//! A fake Kubernetes API server for tests: an HTTP server on 127.0.0.1 that speaks enough
//! of the real wire protocol for the real `kube::Client`, watchers and reflectors.
//!
//! No cluster can run on these machines, so cluster code is tested against this fake. It
//! keeps objects as JSON in memory under one global `resourceVersion` counter with a
//! bounded change history, which is what makes list-then-watch, resumed watches, 410 Gone
//! and relists behave as they do against a real API server. The test sets state through
//! [`FakeKube::apply`] and friends, makes the server misbehave on cue ([`FakeKube::stop`],
//! [`FakeKube::expire_history`], [`FakeKube::fail_next`]) and asserts the requests it got.
//!
//! Served: get, list (with `limit`/`continue`, `labelSelector`, `fieldSelector`), watch
//! (`watch=true`, `resourceVersion`, `timeoutSeconds`, `sendInitialEvents`), create,
//! replace, delete, deletecollection, patch (merge, strategic, JSON patch, server-side
//! apply), the `status` and `scale` subresources, pod logs (with `follow`, `tailLines`),
//! metadata-only answers (`Accept: ...;as=PartialObjectMetadata[List]`), `/version` and
//! minimal discovery (`/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`).
//!
//! Not served, on purpose: authentication and RBAC (every request is allowed), admission
//! and validation beyond names and namespaces, field ownership in server-side apply,
//! garbage collection of dependents, `as=Table`, protobuf, websockets (exec, attach,
//! port-forward), periodic watch bookmarks (the only BOOKMARK sent ends the initial
//! events of a streaming list), and controllers but one: nothing creates Pods, and
//! ReplicaSets only once [`FakeKube::enable_deployment_controller`] turns on the opt-in
//! Deployment controller. That one keeps a ReplicaSet per pod template of each
//! Deployment, with the revision annotations rollout history reads (new revisions,
//! rollbacks, `revisionHistoryLimit`), scales the current one up and the rest to 0 at
//! once and reports the rollout complete; it makes no Pods, models no surge, readiness
//! or progress deadline, and leaves a deleted Deployment's ReplicaSets in place.

use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod controller;
mod discovery;
mod kinds;
mod patch;
mod selector;
mod server;
mod store;
mod streams;

use store::{Origin, State};

/// The namespace [`FakeKube::client`] and the kubeconfig default to, and where
/// [`FakeKube::apply`] puts namespaced objects that name none.
pub const NAMESPACE: &str = "ai-film";

/// A request the fake received, decoded the way RBAC sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The HTTP method, upper case (`GET`, `PATCH`, ...).
    pub method: String,
    /// The RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// The API group, `""` for the core group (and for non-resource paths).
    pub group: String,
    /// The API version, e.g. `v1`.
    pub version: String,
    /// The plural resource name, e.g. `deployments` (empty for non-resource paths).
    pub resource: String,
    /// `log`, `status`, `scale`, ... when the path names one.
    pub subresource: Option<String>,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name in the path, if any.
    pub name: Option<String>,
    /// The raw query string (without `?`), empty when there is none.
    pub query: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The body, parsed as JSON (or YAML for server-side apply); `None` when empty or
    /// unparseable.
    pub body: Option<Value>,
}

/// Shared between the test's handle, the HTTP handlers and the streams they serve.
struct Inner {
    state: Mutex<State>,
    /// Bumped on every change of objects, logs or history; streams wait on it.
    changed: watch::Sender<u64>,
    /// Bumped by `stop`: streams started in an earlier life end.
    life: watch::Sender<u64>,
    addr: SocketAddr,
    /// A clone of every accepted connection's socket, so `stop` can cut them.
    sockets: Mutex<Vec<std::net::TcpStream>>,
    serving: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Ends every stream, stops listening and cuts every open connection.
    fn halt(&self) -> Option<JoinHandle<()>> {
        self.life.send_modify(|n| *n += 1);
        let serving = self
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = &serving {
            task.abort();
        }
        serving
    }

    fn cut_connections(&self) {
        let mut sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        for socket in sockets.drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A fake Kubernetes API server on 127.0.0.1; see the module documentation.
///
/// Dropping it stops the server.
pub struct FakeKube {
    inner: Arc<Inner>,
}

impl FakeKube {
    /// Starts a server on 127.0.0.1 on a free port, with no objects.
    pub async fn start() -> FakeKube {
        let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind the fake API server to 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("the fake API server's address");
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            life: watch::channel(0).0,
            addr,
            sockets: Mutex::new(Vec::new()),
            serving: Mutex::new(None),
        });
        server::spawn(&inner, listener);
        FakeKube { inner }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// A `kube::Config` for this server: no TLS, no auth, default namespace `ai-film`,
    /// kube's defaults otherwise (including its retry of 429/503/504 answers).
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url().parse().expect("a valid URL"));
        config.default_namespace = NAMESPACE.to_owned();
        config
    }

    /// A real `kube::Client` for this server, built from [`FakeKube::config`].
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config()).expect("a kube client for the fake API server")
    }

    /// Writes a kubeconfig (server = [`FakeKube::url`], namespace `ai-film`, no auth) so
    /// that `KUBECONFIG=path` makes `kube::Config::infer()` find this server.
    pub fn write_kubeconfig(&self, path: &Path) {
        let yaml = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake-kube\n  cluster:\n    server: {url}\n\
             contexts:\n\
             - name: fake-kube\n  context:\n    cluster: fake-kube\n    user: fake-kube\n    namespace: {NAMESPACE}\n\
             current-context: fake-kube\n\
             preferences: {{}}\n\
             users:\n\
             - name: fake-kube\n  user: {{}}\n",
            url = self.url()
        );
        std::fs::write(path, yaml).expect("write the kubeconfig");
    }

    /// Creates or replaces an object, found by apiVersion, kind, namespace and name, as
    /// a controller or `kubectl apply` would, and tells watchers (ADDED or MODIFIED).
    ///
    /// Fills what the API server owns: `metadata.uid` and `creationTimestamp` when missing
    /// (kept from the stored object on replace), `metadata.generation` (1 on create, +1
    /// when anything outside `metadata` and `status` changes; a generation given that
    /// differs from the stored one is kept, so tests can set it), and
    /// `metadata.resourceVersion`. A namespaced object without a namespace goes to
    /// `ai-film`. Unlike the API, `status` is stored as given. Replacing with identical
    /// content changes nothing, as on a real server. Returns the stored object, as it is
    /// once the Deployment controller (when enabled) has run.
    ///
    /// Panics when the object lacks apiVersion, kind or metadata.name.
    pub fn apply(&self, object: Value) -> Value {
        let object = store::normalize_for_test(object);
        let stored = {
            let mut state = self.inner.lock();
            let key = store::key_of(&object);
            let written = if state.objects.contains_key(&key) {
                state.update(&key, object, Origin::Test)
            } else {
                state.create(object, Origin::Test)
            };
            state.objects.get(&key).cloned().unwrap_or(written)
        };
        self.inner.notify();
        stored
    }

    /// Applies every document of a (multi-document) YAML string; `kind: List` documents
    /// apply each item. Panics on invalid YAML.
    pub fn apply_yaml(&self, yaml: &str) {
        use serde::Deserialize as _;
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let value = Value::deserialize(document).expect("valid YAML");
            if value.is_null() {
                continue;
            }
            if value["kind"] == "List" {
                for item in value["items"].as_array().into_iter().flatten() {
                    self.apply(item.clone());
                }
            } else {
                self.apply(value);
            }
        }
    }

    /// Turns on the fake's only controller, an imitation of the deployment controller
    /// good enough for rollout history, and runs it at once for every stored Deployment.
    ///
    /// From then on every create, replace or patch of an `apps/v1` Deployment (through
    /// the API, [`FakeKube::apply`] or the `scale` and `status` subresources) is
    /// reconciled synchronously, before watchers hear of it. Unless `spec.paused`:
    ///
    /// - the ReplicaSets it controls (an `ownerReferences` entry with `controller: true`
    ///   and its uid) are compared with `spec.template`, ignoring the
    ///   `pod-template-hash` label. A new template gets a new ReplicaSet,
    ///   `{deployment}-{hash}` (the hash deterministic, 10 characters), labelled and
    ///   selected with `pod-template-hash`, with revision max + 1 in
    ///   `deployment.kubernetes.io/revision`, `desired-replicas`, `max-replicas` and the
    ///   Deployment's own annotations (such as `kubernetes.io/change-cause`; never
    ///   `last-applied-configuration` or the controller's). An old template back (a
    ///   rollback) gets its ReplicaSet revision max + 1, the old revision appended to
    ///   `deployment.kubernetes.io/revision-history` and the Deployment's annotations;
    /// - the current ReplicaSet is scaled to `spec.replicas` (default 1), the others to
    ///   0, with statuses as if every pod were ready at once;
    /// - the Deployment's `deployment.kubernetes.io/revision` becomes the current
    ///   revision and, when `status.observedGeneration` is not `metadata.generation`, its
    ///   status says the rollout is complete (a status set for the current generation,
    ///   such as a stalled one, stays);
    /// - scaled-down ReplicaSets beyond `spec.revisionHistoryLimit` (default 10) are
    ///   deleted, oldest revision first.
    ///
    /// Its writes get resourceVersions and reach watchers like any change, are not
    /// [`FakeKube::requests`], and write nothing when nothing changes. It makes no Pods
    /// and does not delete the ReplicaSets of a deleted Deployment.
    pub fn enable_deployment_controller(&self) {
        self.inner.lock().enable_deployment_controller();
        self.inner.notify();
    }

    /// Deletes an object at once (finalizers are ignored) and tells watchers (DELETED).
    /// Returns whether it existed. Cluster-scoped kinds ignore `namespace`.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let key = store::key(api_version, kind, namespace, name);
        let removed = self.inner.lock().remove(&key).is_some();
        if removed {
            self.inner.notify();
        }
        removed
    }

    /// The stored object, if any. Cluster-scoped kinds ignore `namespace`.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = store::key(api_version, kind, namespace, name);
        self.inner.lock().objects.get(&key).cloned()
    }

    /// The stored objects of a kind in a namespace (every namespace when it is empty),
    /// sorted by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<Value> {
        let namespace = (!namespace.is_empty()).then_some(namespace);
        self.inner
            .lock()
            .objects
            .iter()
            .filter(|((av, k, ns, _), _)| {
                av == api_version && k == kind && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Every request received since the start (or [`FakeKube::clear_requests`]), in order,
    /// including failed ones.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.inner.lock().requests.clear();
    }

    /// Compacts the history, as etcd compaction or an API server restart does: a watch
    /// (or a `continue` token) from a resourceVersion older than now gets 410 Gone, and
    /// every open watch receives a 410 ERROR event and ends, so watchers relist.
    pub fn expire_history(&self) {
        self.inner.lock().expire();
        self.inner.notify();
    }

    /// Goes away: stops listening (connections are refused) and cuts every open
    /// connection, ending watch and log streams. State is kept for [`FakeKube::restart`].
    pub async fn stop(&self) {
        if let Some(task) = self.inner.halt() {
            let _ = task.await;
        }
        self.inner.cut_connections();
    }

    /// Comes back on the same port with the same state (no-op when running).
    pub async fn restart(&self) {
        if self
            .inner
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
        {
            return;
        }
        let mut attempts = 0;
        let listener = loop {
            match server::bind(self.inner.addr) {
                Ok(listener) => break listener,
                Err(_) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!("rebind {}: {err}", self.inner.addr),
            }
        };
        server::spawn(&self.inner, listener);
    }

    /// The next `count` requests, whatever they are, answer `status` with a Status body
    /// (reason from the code: 503 ServiceUnavailable, 500 InternalError, 429
    /// TooManyRequests, ...). They are recorded like any other.
    ///
    /// kube's default client retries 429, 503 and 504 by itself (up to 15 times), so
    /// those surface as errors only with `default_retry` off in [`FakeKube::config`].
    pub fn fail_next(&self, count: usize, status: u16) {
        self.inner.lock().failures = (count, status);
    }

    /// Sets a container's log (the pod's only log when `container` is `None`).
    pub fn set_pod_log(&self, namespace: &str, pod: &str, container: Option<&str>, text: &str) {
        self.inner
            .lock()
            .logs
            .insert(store::log_key(namespace, pod, container), text.to_owned());
        self.inner.notify();
    }

    /// Appends to a container's log; requests with `follow=true` receive it live.
    pub fn append_pod_log(&self, namespace: &str, pod: &str, container: Option<&str>, text: &str) {
        self.inner
            .lock()
            .logs
            .entry(store::log_key(namespace, pod, container))
            .or_default()
            .push_str(text);
        self.inner.notify();
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        drop(self.inner.halt());
        self.inner.cut_connections();
    }
}
