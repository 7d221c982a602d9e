//! The fake's memory: objects by (apiVersion, kind, namespace, name), the global
//! resourceVersion, the bounded change history watches replay from, list snapshots for
//! `continue` tokens, pod logs and the recorded requests.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};

use super::controller;
use super::kinds;
use super::Request;

/// (apiVersion, kind, namespace, name); the namespace is empty for cluster-scoped kinds.
pub(crate) type Key = (String, String, String, String);

/// (namespace, pod, container); the container is empty for "the pod's only log".
pub(crate) type LogKey = (String, String, String);

/// How many changes are kept for watches to resume from; older ones are compacted away.
const HISTORY_LIMIT: usize = 50_000;
/// How many paginated lists can be in progress at once.
const SNAPSHOT_LIMIT: usize = 32;

/// Who is writing: the API follows the server's rules, the test may set anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Api,
    Test,
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the history: the object after the change (for a deletion, the last state
/// with the deletion's resourceVersion) and before it.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub change: ChangeType,
    pub key: Key,
    pub object: Value,
    pub previous: Option<Value>,
}

/// The full result of a paginated list, kept until its last page is served.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub id: u64,
    pub rv: u64,
    pub items: Vec<Value>,
}

#[derive(Debug)]
pub(crate) struct State {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub history: VecDeque<Change>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    /// Bumped by `expire_history`; open watches from an earlier epoch get 410 and end.
    pub expiry_epoch: u64,
    pub requests: Vec<Request>,
    /// (requests left to fail, HTTP status to fail with)
    pub failures: (usize, u16),
    pub logs: BTreeMap<LogKey, String>,
    /// Whether Deployment writes run the fake's deployment controller.
    pub deployment_controller: bool,
    snapshots: VecDeque<Snapshot>,
    next_snapshot: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            // Far from 0, which clients send to mean "any version".
            rv: 1000,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            expiry_epoch: 0,
            requests: Vec::new(),
            failures: (0, 0),
            logs: BTreeMap::new(),
            deployment_controller: false,
            snapshots: VecDeque::new(),
            next_snapshot: 1,
        }
    }
}

/// The store key of an object; cluster-scoped kinds ignore `namespace`.
pub(crate) fn key(api_version: &str, kind: &str, namespace: &str, name: &str) -> Key {
    let namespaced = kinds::by_kind(api_version, kind).is_none_or(|k| k.namespaced);
    (
        api_version.to_owned(),
        kind.to_owned(),
        if namespaced { namespace } else { "" }.to_owned(),
        name.to_owned(),
    )
}

/// The store key of an object with apiVersion, kind and metadata filled in.
pub(crate) fn key_of(object: &Value) -> Key {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&object["apiVersion"]),
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

pub(crate) fn log_key(namespace: &str, pod: &str, container: Option<&str>) -> LogKey {
    (
        namespace.to_owned(),
        pod.to_owned(),
        container.unwrap_or_default().to_owned(),
    )
}

/// Checks what a test hands to `apply` and puts namespaced objects in `ai-film` by default.
pub(crate) fn normalize_for_test(mut object: Value) -> Value {
    let api_version = object["apiVersion"]
        .as_str()
        .expect("apiVersion")
        .to_owned();
    let kind = object["kind"].as_str().expect("kind").to_owned();
    assert!(
        object["metadata"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty()),
        "metadata.name is required: {object}"
    );
    let namespaced = kinds::by_kind(&api_version, &kind).is_none_or(|k| k.namespaced);
    let metadata = metadata_mut(&mut object);
    if !namespaced {
        metadata.remove("namespace");
    } else if metadata
        .get("namespace")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        metadata.insert("namespace".into(), json!(super::NAMESPACE));
    }
    object
}

/// `object.metadata` as a map, created when missing.
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("made an object above")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Everything but `metadata` and `status`: what a change to bumps `generation`.
pub(crate) fn desired_state(object: &Value) -> Value {
    let mut rest = object.as_object().cloned().unwrap_or_default();
    rest.remove("metadata");
    rest.remove("status");
    Value::Object(rest)
}

pub(crate) fn resource_version(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
}

impl State {
    fn bump(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: ChangeType, key: Key, object: Value, previous: Option<Value>) {
        self.history.push_back(Change {
            rv: self.rv,
            change,
            key,
            object,
            previous,
        });
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
    }

    /// Stores a new object (the caller checked it is absent) and records ADDED; then
    /// runs the controllers that watch its kind. Returns the object as this write stored
    /// it (a controller may have changed it since).
    pub fn create(&mut self, object: Value, origin: Origin) -> Value {
        let stored = self.create_raw(object, origin);
        self.run_controllers(&key_of(&stored));
        stored
    }

    /// Replaces a stored object as [`State::update_raw`] does, then runs the controllers
    /// that watch its kind. Returns the object as this write stored it.
    pub fn update(&mut self, key: &Key, object: Value, origin: Origin) -> Value {
        let stored = self.update_raw(key, object, origin);
        self.run_controllers(key);
        stored
    }

    /// Turns the deployment controller on and reconciles every stored Deployment.
    pub fn enable_deployment_controller(&mut self) {
        self.deployment_controller = true;
        let deployments: Vec<Key> = self
            .objects
            .keys()
            .filter(|key| controller::is_deployment(key))
            .cloned()
            .collect();
        for key in deployments {
            controller::reconcile_deployment(self, &key);
        }
    }

    /// What a write to `key` sets off: the deployment controller, when it is on and the
    /// object is a Deployment. Controllers write through the `_raw` methods, so their own
    /// writes set nothing off.
    fn run_controllers(&mut self, key: &Key) {
        if self.deployment_controller && controller::is_deployment(key) {
            controller::reconcile_deployment(self, key);
        }
    }

    /// Stores a new object (the caller checked it is absent) and records ADDED, without
    /// running controllers.
    pub fn create_raw(&mut self, mut object: Value, origin: Origin) -> Value {
        let rv = self.bump();
        let metadata = metadata_mut(&mut object);
        let keep = |m: &Map<String, Value>, field: &str| {
            origin == Origin::Test && m.get(field).is_some_and(|v| !v.is_null())
        };
        if !keep(metadata, "uid") {
            metadata.insert("uid".into(), json!(uuid::Uuid::now_v7().to_string()));
        }
        if !keep(metadata, "creationTimestamp") {
            metadata.insert("creationTimestamp".into(), json!(now()));
        }
        if !keep(metadata, "generation") {
            metadata.insert("generation".into(), json!(1));
        }
        metadata.insert("resourceVersion".into(), json!(rv.to_string()));
        let key = key_of(&object);
        self.objects.insert(key.clone(), object.clone());
        self.record(ChangeType::Added, key, object.clone(), None);
        object
    }

    /// Replaces a stored object (the caller checked it is present) and records MODIFIED,
    /// without running controllers; returns the stored object. Identical content is a
    /// no-op. An object being deleted whose last finalizer goes is removed.
    pub fn update_raw(&mut self, key: &Key, mut object: Value, origin: Origin) -> Value {
        let Some(old) = self.objects.get(key).cloned() else {
            return self.create_raw(object, origin);
        };
        let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
        let metadata = metadata_mut(&mut object);
        let owned: &[&str] = match origin {
            Origin::Api => &["uid", "creationTimestamp", "deletionTimestamp"],
            Origin::Test => &[],
        };
        for field in ["uid", "creationTimestamp", "deletionTimestamp"] {
            let given = metadata.get(field).is_some_and(|v| !v.is_null());
            if owned.contains(&field) || !given {
                match old_meta.get(field) {
                    Some(value) => metadata.insert(field.into(), value.clone()),
                    None => metadata.remove(field),
                };
            }
        }
        let old_generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let given_generation = metadata.get("generation").and_then(Value::as_i64);
        let generation = match given_generation {
            Some(g) if origin == Origin::Test && g != old_generation => g,
            _ if desired_state(&object) != desired_state(&old) => old_generation + 1,
            _ => old_generation,
        };
        let metadata = metadata_mut(&mut object);
        metadata.insert("generation".into(), json!(generation));
        metadata.insert(
            "resourceVersion".into(),
            old_meta.get("resourceVersion").cloned().unwrap_or_default(),
        );
        if object == old {
            return old;
        }
        let rv = self.bump();
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects.insert(key.clone(), object.clone());
        self.record(ChangeType::Modified, key.clone(), object.clone(), Some(old));
        let finalized = object["metadata"]["deletionTimestamp"].is_string()
            && object["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if finalized {
            self.remove(key);
        }
        object
    }

    /// Removes an object at once and records DELETED; returns it with the deletion's
    /// resourceVersion. A deleted pod's logs go with it.
    pub fn remove(&mut self, key: &Key) -> Option<Value> {
        let old = self.objects.remove(key)?;
        let rv = self.bump();
        let mut object = old.clone();
        metadata_mut(&mut object).insert("resourceVersion".into(), json!(rv.to_string()));
        if key.0 == "v1" && key.1 == "Pod" {
            self.logs
                .retain(|(ns, pod, _), _| !(*ns == key.2 && *pod == key.3));
        }
        self.record(ChangeType::Deleted, key.clone(), object.clone(), Some(old));
        Some(object)
    }

    /// A delete through the API: with finalizers the object only gets a
    /// `deletionTimestamp` (MODIFIED); without, it goes (DELETED).
    pub fn delete(&mut self, key: &Key) -> Option<Value> {
        let object = self.objects.get(key)?.clone();
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if !has_finalizers {
            return self.remove(key);
        }
        if object["metadata"]["deletionTimestamp"].is_string() {
            return Some(object);
        }
        let mut marked = object;
        let metadata = metadata_mut(&mut marked);
        metadata.insert("deletionTimestamp".into(), json!(now()));
        metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
        Some(self.update(key, marked, Origin::Test))
    }

    /// Objects of a kind (in a namespace, or all) that `select` accepts, sorted by key.
    pub fn select(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        select: impl Fn(&Value) -> bool,
    ) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .filter(|((av, k, ns, _), object)| {
                av == api_version
                    && k == kind
                    && namespace.is_none_or(|n| n == ns)
                    && select(object)
            })
            .map(|(key, object)| (key.clone(), object.clone()))
            .collect()
    }

    /// Changes after `rv`, or `None` when some of them were compacted away.
    pub fn changes_after(&self, rv: u64) -> Option<impl Iterator<Item = &Change>> {
        if rv < self.compacted {
            return None;
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Some(self.history.range(start..))
    }

    /// Compaction: forget the history and the list snapshots.
    pub fn expire(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
        self.snapshots.clear();
        self.expiry_epoch += 1;
    }

    /// Keeps the full result of a list for its next pages; returns its id.
    pub fn save_snapshot(&mut self, rv: u64, items: Vec<Value>) -> u64 {
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        self.snapshots.push_back(Snapshot { id, rv, items });
        while self.snapshots.len() > SNAPSHOT_LIMIT {
            self.snapshots.pop_front();
        }
        id
    }

    pub fn snapshot(&self, id: u64) -> Option<&Snapshot> {
        self.snapshots
            .iter()
            .find(|s| s.id == id && s.rv >= self.compacted)
    }

    pub fn drop_snapshot(&mut self, id: u64) {
        self.snapshots.retain(|s| s.id != id);
    }

    /// The log a request for `container` (or the pod's only one) reads, if any is set.
    pub fn log_for(&self, namespace: &str, pod: &str, container: Option<&str>) -> Option<LogKey> {
        let exact = log_key(namespace, pod, container);
        if self.logs.contains_key(&exact) {
            return Some(exact);
        }
        let unnamed = log_key(namespace, pod, None);
        if self.logs.contains_key(&unnamed) {
            return Some(unnamed);
        }
        if container.is_some() {
            return None;
        }
        let mut of_pod = self
            .logs
            .keys()
            .filter(|(ns, p, _)| ns == namespace && p == pod);
        match (of_pod.next(), of_pod.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    }
}
