//! `kubectl rollout` semantics, as pure functions over the objects' JSON: what `undo`
//! and `restart` send, when they refuse, and the state of the current rollout.
//!
//! Written from kubectl's documented behaviour (see ../shared/reference/kubernetes.md):
//! undo refuses a paused Deployment, does nothing when the target template equals the
//! current one ignoring `pod-template-hash`, and otherwise sends one JSON patch that
//! replaces `/spec/template` (the target without `pod-template-hash`) and
//! `/metadata/annotations` (the Deployment's bookkeeping annotations plus the revision's
//! own). Restart is one strategic-merge patch of `restartedAt`.

use serde_json::{json, Map, Value};

/// The label the deployment controller adds to each ReplicaSet's template.
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// Annotations that belong to the Deployment's bookkeeping: an undo keeps the
/// Deployment's values and never copies the revision's.
pub const BOOKKEEPING: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Paused,
}

impl Refusal {
    pub fn message(&self, kind: &str, name: &str) -> String {
        match self {
            Refusal::Paused => format!(
                "{kind}/{name} is paused: resume it first (kubectl rollout resume {}/{name}), then try again.",
                kind.to_ascii_lowercase()
            ),
        }
    }
}

/// What `rollout undo` would do.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// The current template already is the target's.
    AlreadyCurrent,
    /// The JSON patch to send.
    Patch(Value),
}

/// A pod template with the `pod-template-hash` label removed (and an emptied labels map
/// dropped, as Go's omitempty would).
pub fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            if let Some(meta) = t.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                meta.remove("labels");
            }
        }
    }
    t
}

/// Whether two pod templates are equal ignoring `pod-template-hash`.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

pub fn is_paused(workload: &Value) -> bool {
    workload.pointer("/spec/paused").and_then(Value::as_bool) == Some(true)
}

/// `kubectl rollout undo --to-revision` for a Deployment, given the revision's pod
/// template and its ReplicaSet's annotations.
pub fn undo(
    deployment: &Value,
    target_template: &Value,
    target_annotations: &Value,
) -> Result<Undo, Refusal> {
    if is_paused(deployment) {
        return Err(Refusal::Paused);
    }
    let current = deployment.pointer("/spec/template").unwrap_or(&Value::Null);
    if equal_ignore_hash(target_template, current) {
        return Ok(Undo::AlreadyCurrent);
    }
    let mut annotations = Map::new();
    if let Some(own) = deployment
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for key in BOOKKEEPING {
            if let Some(v) = own.get(key) {
                annotations.insert(key.to_owned(), v.clone());
            }
        }
    }
    if let Some(theirs) = target_annotations.as_object() {
        for (k, v) in theirs {
            if !BOOKKEEPING.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    // A Deployment the controller has seen always has annotations (its revision), and
    // kubectl replaces them. Without any, "replace" would fail on the missing path, so
    // the map is added instead: the same end state.
    let has_annotations = deployment
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object);
    Ok(Undo::Patch(json!([
        {"op": "replace", "path": "/spec/template", "value": without_hash(target_template)},
        {"op": if has_annotations { "replace" } else { "add" }, "path": "/metadata/annotations", "value": annotations},
    ])))
}

/// `kubectl rollout restart`: refused when paused, else the strategic-merge patch. The
/// stamp has milliseconds where kubectl's has seconds: two restarts within one second (a
/// Colab endpoint reported twice in a row) would otherwise write the same template, and
/// the Deployment controller would not roll the second time.
pub fn restart(
    workload: &Value,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(Value, String), Refusal> {
    if is_paused(workload) {
        return Err(Refusal::Paused);
    }
    let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}});
    Ok((patch, stamp))
}

/// The container images of a pod template, init containers first, in order.
pub fn images(template: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| template.pointer(&format!("/spec/{k}")))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(paused: bool) -> Value {
        json!({
            "metadata": {"name": "web", "annotations": {
                REVISION: "4",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "deployment.kubernetes.io/revision-history": "2",
                CHANGE_CAUSE: "image bumped to v4",
                "team": "pipeline"
            }},
            "spec": {"paused": paused, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:v4"}]}
            }}
        })
    }

    fn old_template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web", HASH_LABEL: "abc123"}},
            "spec": {"containers": [{"name": "web", "image": "web:v2"}]}
        })
    }

    #[test]
    fn undo_replaces_the_template_without_the_hash_and_keeps_the_bookkeeping() {
        let rs_annotations = json!({
            REVISION: "2",
            "deployment.kubernetes.io/desired-replicas": "3",
            CHANGE_CAUSE: "image v2",
        });
        let Ok(Undo::Patch(patch)) = undo(&deployment(false), &old_template(), &rs_annotations)
        else {
            panic!("a patch")
        };
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/spec/template", "value": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:v2"}]}
                }},
                {"op": "replace", "path": "/metadata/annotations", "value": {
                    REVISION: "4",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "deployment.kubernetes.io/revision-history": "2",
                    CHANGE_CAUSE: "image v2",
                }},
            ])
        );
    }

    #[test]
    fn undo_to_the_current_template_is_a_no_op_and_paused_is_refused() {
        let mut same = deployment(false)["spec"]["template"].clone();
        same["metadata"]["labels"][HASH_LABEL] = json!("zzz");
        assert_eq!(
            undo(&deployment(false), &same, &json!({})),
            Ok(Undo::AlreadyCurrent)
        );
        assert_eq!(
            undo(&deployment(true), &old_template(), &json!({})),
            Err(Refusal::Paused)
        );
        assert!(restart(&deployment(true), chrono::Utc::now()).is_err());
    }

    #[test]
    fn restart_is_kubectls_patch_stamped_to_the_millisecond() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T10:00:00.5Z")
            .unwrap()
            .to_utc();
        let (patch, stamp) = restart(&deployment(false), at).unwrap();
        assert_eq!(stamp, "2026-11-26T10:00:00.500Z");
        assert_eq!(
            patch,
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-11-26T10:00:00.500Z"}}}}})
        );
        // A second restart within the same second still changes the template.
        let later = at + chrono::Duration::milliseconds(300);
        assert_ne!(restart(&deployment(false), later).unwrap().1, stamp);
    }

    #[test]
    fn a_template_whose_only_label_is_the_hash_loses_its_labels() {
        let t = json!({"metadata": {"labels": {HASH_LABEL: "x"}}, "spec": {}});
        assert_eq!(without_hash(&t), json!({"metadata": {}, "spec": {}}));
        assert_eq!(images(&old_template()), vec!["web:v2".to_owned()]);
    }
}
