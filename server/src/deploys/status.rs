//! The current rollout of a workload, in the words of `kubectl rollout status`.

use app::deploys::RolloutView;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};

use super::rollout::{images, REVISION};

pub fn deployment(d: &Deployment) -> RolloutView {
    let name = d.metadata.name.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    let stalled = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let (state, message) = if spec.paused == Some(true) {
        (
            "paused",
            "Paused: changes wait until it is resumed.".to_owned(),
        )
    } else if observed < generation {
        (
            "progressing",
            "Waiting for the controller to see the new spec.".to_owned(),
        )
    } else if let Some(c) = stalled {
        (
            "failed",
            format!(
                "Failed: progress deadline exceeded{}",
                c.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
        )
    } else if updated < desired {
        (
            "progressing",
            format!("{updated} of {desired} new replicas updated."),
        )
    } else if total > updated {
        (
            "progressing",
            format!("{} old replicas pending termination.", total - updated),
        )
    } else if available < updated {
        (
            "progressing",
            format!("{available} of {updated} updated replicas available."),
        )
    } else {
        (
            "complete",
            "Rolled out: every replica runs the current template.".to_owned(),
        )
    };
    RolloutView {
        kind: "Deployment".into(),
        name,
        revision: d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .and_then(|r| r.parse().ok()),
        state: state.into(),
        message,
        ready,
        desired,
        images: images(&serde_json::to_value(&spec.template).unwrap_or_default()),
    }
}

pub fn statefulset(s: &StatefulSet) -> RolloutView {
    let name = s.metadata.name.clone().unwrap_or_default();
    let spec = s.spec.clone().unwrap_or_default();
    let status = s.status.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0);
    let (state, message) = if observed < s.metadata.generation.unwrap_or(0) {
        (
            "progressing",
            "Waiting for the controller to see the new spec.".to_owned(),
        )
    } else if status.update_revision.is_some() && status.update_revision != status.current_revision
    {
        (
            "progressing",
            format!("{updated} of {desired} pods updated to the new revision."),
        )
    } else if ready < desired {
        ("progressing", format!("{ready} of {desired} pods ready."))
    } else {
        (
            "complete",
            "Rolled out: every pod runs the current revision.".to_owned(),
        )
    };
    RolloutView {
        kind: "StatefulSet".into(),
        name,
        revision: None,
        state: state.into(),
        message,
        ready,
        desired,
        images: images(&serde_json::to_value(&spec.template).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(status: serde_json::Value, paused: bool) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": 3, "annotations": {REVISION: "7"}},
            "spec": {"replicas": 2, "paused": paused, "selector": {},
                     "template": {"spec": {"containers": [{"name": "web", "image": "web:7"}]}}},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn rollout_states_read_like_kubectl() {
        let done = d(
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2}),
            false,
        );
        let v = deployment(&done);
        assert_eq!(
            (v.state.as_str(), v.revision, v.images.clone()),
            ("complete", Some(7), vec!["web:7".to_owned()])
        );
        let rolling = d(
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1}),
            false,
        );
        assert_eq!(deployment(&rolling).message, "1 of 2 new replicas updated.");
        let stalled = d(
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-5d\" has timed out progressing."}]}),
            false,
        );
        let v = deployment(&stalled);
        assert_eq!(v.state, "failed");
        assert!(
            v.message.contains("has timed out progressing"),
            "{}",
            v.message
        );
        assert_eq!(deployment(&d(json!({}), true)).state, "paused");
        assert_eq!(
            deployment(&d(json!({"observedGeneration": 2}), false)).state,
            "progressing"
        );
    }
}
