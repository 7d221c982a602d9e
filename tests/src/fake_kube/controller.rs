//! The fake's only controller, off unless the test turns it on: a small imitation of the
//! deployment controller that keeps one ReplicaSet per pod template of a Deployment, with
//! the revision annotations `kubectl rollout history` and `rollout undo` read.
//!
//! It runs synchronously inside the store, right after a Deployment is written, and
//! writes through the store's `_raw` methods: every change it makes gets a
//! resourceVersion and reaches watchers like any other, is never a recorded request, and
//! sets no controller off again. It makes no Pods, does not surge or wait for readiness
//! (the new ReplicaSet is at once fully scaled and ready, the old ones at once at 0) and
//! does not collect the ReplicaSets of a deleted Deployment.

use serde_json::{json, Map, Value};

use super::store::{self, Key, Origin, State};

const APPS_V1: &str = "apps/v1";
const REPLICA_SET: &str = "ReplicaSet";
const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Deployment annotations never copied onto its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Old ReplicaSets kept when `spec.revisionHistoryLimit` is not set.
const DEFAULT_HISTORY_LIMIT: u64 = 10;

/// The characters of a pod-template-hash (no vowels, so no words; no 0, 1 or 3).
const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const HASH_LENGTH: usize = 10;

pub(crate) fn is_deployment(key: &Key) -> bool {
    key.0 == APPS_V1 && key.1 == "Deployment"
}

/// Brings the ReplicaSets of the Deployment at `key`, and the Deployment's revision
/// annotation and status, in line with its spec. Does nothing for a paused Deployment or
/// one being deleted.
pub(crate) fn reconcile_deployment(state: &mut State, key: &Key) {
    let Some(deployment) = state.objects.get(key).cloned() else {
        return;
    };
    let metadata = &deployment["metadata"];
    let spec = &deployment["spec"];
    if metadata["deletionTimestamp"].is_string() || spec["paused"] == json!(true) {
        return;
    }
    let Some(uid) = metadata["uid"].as_str() else {
        return;
    };
    let namespace = key.2.as_str();
    let template = without_hash(&spec["template"]);
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    let copied = copied_annotations(&deployment);

    let owned = owned_replica_sets(state, namespace, uid);
    let max_revision = owned.iter().map(|(_, rs)| revision(rs)).max().unwrap_or(0);
    let same_template = owned
        .iter()
        .filter(|(_, rs)| without_hash(&rs["spec"]["template"]) == template)
        .max_by_key(|(_, rs)| revision(rs));
    // A rollback's annotations go out in the same write as its scaling up.
    let mut rolled_back = None;
    let current = match same_template {
        Some((rs_key, rs)) => {
            let old_revision = revision(rs);
            if old_revision != max_revision {
                let mut rs = rs.clone();
                roll_back(&mut rs, old_revision, max_revision + 1, &copied);
                rolled_back = Some(rs);
            }
            rs_key.clone()
        }
        None => create_replica_set(
            state,
            &deployment,
            &template,
            copied,
            replicas,
            max_revision + 1,
        ),
    };

    let mut all: Vec<Key> = owned.into_iter().map(|(rs_key, _)| rs_key).collect();
    if !all.contains(&current) {
        all.push(current.clone());
    }
    for rs_key in &all {
        let Some(old) = state.objects.get(rs_key).cloned() else {
            continue;
        };
        let is_current = *rs_key == current;
        let mut rs = if is_current {
            rolled_back.take().unwrap_or_else(|| old.clone())
        } else {
            old.clone()
        };
        scale(
            &mut rs,
            &old,
            if is_current { replicas } else { 0 },
            is_current,
        );
        state.update_raw(rs_key, rs, Origin::Api);
    }

    let current_revision = state.objects.get(&current).map(revision).unwrap_or(0);
    record_rollout(state, key, current_revision, &current.3, replicas);
    prune(state, namespace, uid, &current, spec);
}

/// The ReplicaSets in `namespace` a Deployment with `uid` controls, sorted by key.
fn owned_replica_sets(state: &State, namespace: &str, uid: &str) -> Vec<(Key, Value)> {
    state.select(APPS_V1, REPLICA_SET, Some(namespace), |rs| {
        rs["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|owner| {
                owner["controller"] == json!(true)
                    && owner["kind"] == "Deployment"
                    && owner["uid"] == uid
            })
    })
}

/// A ReplicaSet's revision annotation as a number, 0 when missing or not a number.
fn revision(rs: &Value) -> u64 {
    rs["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.trim().parse().ok())
        .unwrap_or(0)
}

/// A pod template without the `pod-template-hash` label (and without the labels and
/// metadata that leaves empty), so a Deployment's template and its ReplicaSets' compare.
fn without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(labels) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                metadata.remove("labels");
            }
        }
        if metadata.is_empty() {
            template
                .as_object_mut()
                .expect("has metadata, so an object")
                .remove("metadata");
        }
    }
    template
}

/// `template` with the `pod-template-hash` label set.
fn with_hash(template: &Value, hash: &str) -> Value {
    let mut template = template.clone();
    if !template.is_object() {
        template = json!({});
    }
    let metadata = store::metadata_mut(&mut template);
    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[HASH_LABEL] = json!(hash);
    template
}

/// The Deployment's annotations that go onto its ReplicaSets.
fn copied_annotations(deployment: &Value) -> Map<String, Value> {
    deployment["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !NOT_COPIED.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// `object.metadata.annotations` as a map, created when missing.
fn annotations_mut(object: &mut Value) -> &mut Map<String, Value> {
    let metadata = store::metadata_mut(object);
    let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations.as_object_mut().expect("made an object above")
}

/// A deterministic hash of a pod template: FNV-1a (64 bits) of its JSON with every
/// object's keys sorted, so the order fields arrived in does not matter, written with
/// [`HASH_ALPHABET`]. `collisions` (the names already taken) changes it.
fn template_hash(template: &Value, collisions: u32) -> String {
    let mut text = String::new();
    write_canonical(template, &mut text);
    if collisions > 0 {
        text.push_str(&collisions.to_string());
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let base = HASH_ALPHABET.len() as u64;
    (0..HASH_LENGTH)
        .map(|_| {
            let digit = HASH_ALPHABET[(hash % base) as usize];
            hash /= base;
            char::from(digit)
        })
        .collect()
}

/// Compact JSON with object keys in sorted order, whatever order the map keeps them in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Makes an old ReplicaSet whose template the Deployment has again the newest revision,
/// remembering its old revision in the history annotation.
fn roll_back(rs: &mut Value, old_revision: u64, new_revision: u64, copied: &Map<String, Value>) {
    let annotations = annotations_mut(rs);
    for (name, value) in copied {
        annotations.insert(name.clone(), value.clone());
    }
    let history = match annotations.get(REVISION_HISTORY).and_then(Value::as_str) {
        Some(history) if !history.is_empty() => format!("{history},{old_revision}"),
        _ => old_revision.to_string(),
    };
    annotations.insert(REVISION_HISTORY.into(), json!(history));
    annotations.insert(REVISION.into(), json!(new_revision.to_string()));
}

/// Creates the ReplicaSet of a template no owned ReplicaSet has; returns its key.
fn create_replica_set(
    state: &mut State,
    deployment: &Value,
    template: &Value,
    mut annotations: Map<String, Value>,
    replicas: i64,
    revision: u64,
) -> Key {
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    // A name taken by something else (not one of ours with this template) changes the
    // hash, as the real controller's collision count does.
    let mut collisions = 0;
    let (rs_name, hash) = loop {
        let hash = template_hash(template, collisions);
        let rs_name = format!("{name}-{hash}");
        if !state
            .objects
            .contains_key(&store::key(APPS_V1, REPLICA_SET, namespace, &rs_name))
        {
            break (rs_name, hash);
        }
        collisions += 1;
    };
    let template = with_hash(template, &hash);
    let mut selector = deployment["spec"]["selector"].clone();
    if !selector.is_object() {
        selector = json!({});
    }
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(DESIRED_REPLICAS.into(), json!(replicas.to_string()));
    annotations.insert(MAX_REPLICAS.into(), json!((replicas + 1).to_string()));
    let rs = json!({
        "apiVersion": APPS_V1,
        "kind": REPLICA_SET,
        "metadata": {
            "name": rs_name,
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": APPS_V1,
                "kind": "Deployment",
                "name": name,
                "uid": deployment["metadata"]["uid"],
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
        "status": replica_set_status(replicas, 1),
    });
    let stored = state.create_raw(rs, Origin::Api);
    store::key_of(&stored)
}

fn replica_set_status(replicas: i64, observed_generation: i64) -> Value {
    json!({
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "observedGeneration": observed_generation,
    })
}

/// Sets `spec.replicas` on `rs` (the stored ReplicaSet `old`, maybe already changed),
/// and its status as if its pods were all ready at once; the current one's replica
/// annotations follow.
fn scale(rs: &mut Value, old: &Value, replicas: i64, current: bool) {
    if !rs["spec"].is_object() {
        rs["spec"] = json!({});
    }
    rs["spec"]["replicas"] = json!(replicas);
    if current {
        let annotations = annotations_mut(rs);
        annotations.insert(DESIRED_REPLICAS.into(), json!(replicas.to_string()));
        annotations.insert(MAX_REPLICAS.into(), json!((replicas + 1).to_string()));
    }
    // The generation the store gives it for this write: +1 when the spec changes.
    let generation = old["metadata"]["generation"].as_i64().unwrap_or(1)
        + i64::from(store::desired_state(rs) != store::desired_state(old));
    let status = replica_set_status(replicas, generation);
    if !rs["status"].is_object() {
        rs["status"] = json!({});
    }
    for (field, value) in status.as_object().expect("an object") {
        rs["status"][field] = value.clone();
    }
}

/// Sets the Deployment's revision annotation, and, when its spec changed since the last
/// rollout (`status.observedGeneration` behind `metadata.generation`), a status saying
/// the rollout to `rs_name` is complete. A status the test set for the current
/// generation stays.
fn record_rollout(state: &mut State, key: &Key, revision: u64, rs_name: &str, replicas: i64) {
    let Some(mut deployment) = state.objects.get(key).cloned() else {
        return;
    };
    annotations_mut(&mut deployment).insert(REVISION.into(), json!(revision.to_string()));
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
    if deployment["status"]["observedGeneration"].as_i64() != Some(generation) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        deployment["status"] = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
            ],
        });
    }
    state.update_raw(key, deployment, Origin::Api);
}

/// Deletes the oldest scaled-down ReplicaSets beyond `spec.revisionHistoryLimit`.
fn prune(state: &mut State, namespace: &str, uid: &str, current: &Key, spec: &Value) {
    let limit = spec["revisionHistoryLimit"]
        .as_u64()
        .unwrap_or(DEFAULT_HISTORY_LIMIT);
    let mut old: Vec<(u64, Key)> = owned_replica_sets(state, namespace, uid)
        .into_iter()
        .filter(|(rs_key, rs)| rs_key != current && rs["spec"]["replicas"].as_i64() == Some(0))
        .map(|(rs_key, rs)| (revision(&rs), rs_key))
        .collect();
    old.sort();
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(usize::MAX));
    for (_, rs_key) in old.into_iter().take(excess) {
        state.remove(&rs_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_and_the_hash_label() {
        let a: Value =
            serde_json::from_str(r#"{"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"x":1}}"#)
                .expect("json");
        let b: Value = serde_json::from_str(
            r#"{"spec":{"x":1},"metadata":{"labels":{"pod-template-hash":"zz","b":"2","a":"1"}}}"#,
        )
        .expect("json");
        let hash = template_hash(&without_hash(&a), 0);
        assert_eq!(hash, template_hash(&without_hash(&b), 0));
        assert_eq!(hash.len(), HASH_LENGTH);
        assert!(hash.bytes().all(|c| HASH_ALPHABET.contains(&c)), "{hash}");
        assert_ne!(hash, template_hash(&without_hash(&a), 1));
        assert_ne!(hash, template_hash(&json!({"spec": {"x": 2}}), 0));
    }
}
