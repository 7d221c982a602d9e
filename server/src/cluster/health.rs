//! Health of each kind, after Argo CD's rules with the two corrections in
//! shared/reference/kubernetes.md: an unschedulable pod is Degraded with the scheduler's
//! reason in plain words, and an Ingress without a load-balancer address is Unknown.
//! Every verdict other than Healthy comes with a reason a person can act on.

use app::architecture::Health;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt as _;

pub type Verdict = (Health, Option<String>);

fn healthy() -> Verdict {
    (Health::Healthy, None)
}

fn verdict(health: Health, reason: impl Into<String>) -> Verdict {
    (health, Some(reason.into()))
}

fn deleting(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Verdict> {
    meta.deletion_timestamp
        .as_ref()
        .map(|_| verdict(Health::Progressing, "Being deleted"))
}

pub fn deployment(d: &Deployment) -> Verdict {
    if let Some(v) = deleting(&d.metadata) {
        return v;
    }
    let spec = d.spec.clone().unwrap_or_default();
    if spec.paused == Some(true) {
        return verdict(Health::Suspended, "Rollout paused");
    }
    let Some(status) = &d.status else {
        return verdict(Health::Progressing, "No status reported yet");
    };
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return verdict(
            Health::Progressing,
            "Waiting for the controller to see the change",
        );
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return verdict(
            Health::Degraded,
            format!(
                "Rollout stalled: {}",
                c.message.as_deref().unwrap_or("progress deadline exceeded")
            ),
        );
    }
    let desired = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return verdict(
            Health::Progressing,
            format!("Rolling out: {updated} of {desired} replicas updated"),
        );
    }
    if replicas > updated {
        return verdict(
            Health::Progressing,
            format!(
                "Rolling out: {} old replicas pending termination",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return verdict(
            Health::Progressing,
            format!("{available} of {updated} updated replicas available"),
        );
    }
    healthy()
}

pub fn statefulset(s: &StatefulSet) -> Verdict {
    if let Some(v) = deleting(&s.metadata) {
        return v;
    }
    let spec = s.spec.clone().unwrap_or_default();
    let Some(status) = &s.status else {
        return verdict(Health::Progressing, "No status reported yet");
    };
    if s.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return verdict(
            Health::Progressing,
            "Waiting for the controller to see the change",
        );
    }
    let desired = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < desired {
        return verdict(
            Health::Progressing,
            format!("{ready} of {desired} replicas ready"),
        );
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling
        && status.update_revision.is_some()
        && status.update_revision != status.current_revision
    {
        return verdict(Health::Progressing, "Rolling update in progress");
    }
    healthy()
}

pub fn pvc(p: &PersistentVolumeClaim) -> Verdict {
    if let Some(v) = deleting(&p.metadata) {
        return v;
    }
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Bound") => healthy(),
        Some("Lost") => verdict(Health::Degraded, "The bound volume is lost"),
        _ => verdict(Health::Progressing, "Waiting for a volume to be bound"),
    }
}

pub fn service(s: &Service) -> Verdict {
    if let Some(v) = deleting(&s.metadata) {
        return v;
    }
    let lb = s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has_ingress = s
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if lb && !has_ingress {
        return verdict(Health::Progressing, "Waiting for a load-balancer address");
    }
    healthy()
}

/// Correction 2: many ingress controllers never fill the status, so an empty one says
/// nothing either way.
pub fn ingress(i: &Ingress) -> Verdict {
    if let Some(v) = deleting(&i.metadata) {
        return v;
    }
    let has_address = i
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if has_address {
        healthy()
    } else {
        verdict(
            Health::Unknown,
            "No address reported by the ingress controller",
        )
    }
}

pub fn job(j: &Job) -> Verdict {
    if let Some(v) = deleting(&j.metadata) {
        return v;
    }
    let condition = |kind: &str| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == "True"))
    };
    if condition("Complete").is_some() {
        return healthy();
    }
    if let Some(c) = condition("Failed") {
        return verdict(
            Health::Degraded,
            format!(
                "Job failed: {}",
                c.message
                    .as_deref()
                    .or(c.reason.as_deref())
                    .unwrap_or("no reason given")
            ),
        );
    }
    if j.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return verdict(Health::Suspended, "Job suspended");
    }
    verdict(Health::Progressing, "Running")
}

fn is_bad_waiting(reason: &str) -> bool {
    reason.starts_with("Err") || reason.ends_with("Error") || reason.ends_with("BackOff")
}

pub fn pod(p: &Pod) -> Verdict {
    if let Some(v) = deleting(&p.metadata) {
        return v;
    }
    let Some(status) = &p.status else {
        return verdict(Health::Progressing, "Pending");
    };
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in statuses.clone() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            if let Some(reason) = w.reason.as_deref().filter(|r| is_bad_waiting(r)) {
                let mut text = format!("Container {}: {reason}", cs.name);
                if cs.restart_count > 0 {
                    text.push_str(&format!(" (restarted {} times)", cs.restart_count));
                }
                if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
                    text.push_str(&format!(": {}", first_line(m)));
                } else if let Some(t) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                    text.push_str(&format!(
                        ": last exit code {}{}",
                        t.exit_code,
                        t.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                }
                return verdict(Health::Degraded, text);
            }
        }
    }
    let conditions = status.conditions.iter().flatten();
    match status.phase.as_deref() {
        Some("Pending") | None => {
            // Correction 1: a pod the scheduler cannot place will not start by waiting.
            if let Some(c) = conditions.clone().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            }) {
                return verdict(
                    Health::Degraded,
                    plain_scheduler_message(c.message.as_deref().unwrap_or_default()),
                );
            }
            verdict(Health::Progressing, "Pending")
        }
        Some("Failed") => verdict(
            Health::Degraded,
            format!(
                "Pod failed: {}",
                status
                    .message
                    .as_deref()
                    .or(status.reason.as_deref())
                    .unwrap_or("no reason given")
            ),
        ),
        Some("Succeeded") => healthy(),
        Some("Running") => {
            let ready = conditions
                .clone()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return healthy();
            }
            let restarted = statuses.clone().any(|cs| {
                cs.last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
            });
            if restarted {
                verdict(Health::Degraded, "Running but not ready after a restart")
            } else {
                verdict(Health::Progressing, "Starting: not ready yet")
            }
        }
        Some(other) => verdict(Health::Unknown, format!("Pod phase {other}")),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

/// Turns the scheduler's "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2
/// node(s) had untolerated taint {…}. preemption: …" into a sentence.
pub fn plain_scheduler_message(message: &str) -> String {
    let message = message.trim();
    let (head, rest) = match message.split_once(": ") {
        Some((h, r)) if h.contains("nodes are available") => (h, r),
        _ => {
            return if message.is_empty() {
                "Cannot be scheduled on any node".to_owned()
            } else {
                format!("Cannot be scheduled: {message}")
            };
        }
    };
    let total = head
        .split_once('/')
        .and_then(|(_, t)| t.split_whitespace().next())
        .and_then(|t| t.parse::<u32>().ok());
    // The list ends at the first ". " (what follows is preemption advice).
    let list = rest
        .split(". ")
        .next()
        .unwrap_or(rest)
        .trim_end_matches('.');
    let mut reasons = Vec::new();
    for part in list.split(", ") {
        let part = part.trim();
        let (count, what) = match part.split_once(' ') {
            Some((n, w)) if n.parse::<u32>().is_ok() => (n.parse::<u32>().unwrap_or(0), w),
            _ => (0, part),
        };
        let nodes = if count == 1 {
            "1 node".to_owned()
        } else {
            format!("{count} nodes")
        };
        let sentence = if let Some(resource) = what.strip_prefix("Insufficient ") {
            match resource {
                "nvidia.com/gpu" | "amd.com/gpu" => format!("{nodes} without a free GPU"),
                "cpu" => format!("{nodes} without enough free CPU"),
                "memory" => format!("{nodes} without enough free memory"),
                other => format!("{nodes} without enough {other}"),
            }
        } else if what.contains("untolerated taint") {
            format!("{nodes} with a taint the pod does not tolerate")
        } else if what.contains("didn't match Pod's node affinity/selector") {
            format!("{nodes} not matching the pod's node selector")
        } else if what.contains("unbound immediate PersistentVolumeClaims") {
            format!("{nodes} waiting for a volume claim to be bound")
        } else {
            format!("{nodes}: {what}")
        };
        reasons.push(sentence.replace("0 nodes: ", ""));
    }
    let gpu = list.contains("nvidia.com/gpu") || list.contains("amd.com/gpu");
    let lead = match (gpu, total) {
        (true, Some(t)) => format!("Waiting for a free GPU: no node of {t} can run it"),
        (true, None) => "Waiting for a free GPU".to_owned(),
        (false, Some(t)) => format!("Cannot be scheduled: no node of {t} fits"),
        (false, None) => "Cannot be scheduled".to_owned(),
    };
    if reasons.is_empty() {
        lead
    } else {
        format!("{lead} ({})", reasons.join("; "))
    }
}

/// The name of a pod's first container whose state explains the verdict, for the panel.
pub fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A short label for a pod's name in messages.
pub fn pod_label(p: &Pod) -> String {
    p.name_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("valid object")
    }

    fn dep(spec: serde_json::Value, status: serde_json::Value, generation: i64) -> Deployment {
        from(
            json!({"metadata": {"name": "d", "generation": generation}, "spec": spec, "status": status}),
        )
    }

    #[test]
    fn deployment_rules() {
        let table: Vec<(Deployment, Health)> = vec![
            (
                dep(
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                    1,
                ),
                Health::Healthy,
            ),
            (
                dep(
                    json!({"replicas": 2, "paused": true}),
                    json!({"observedGeneration": 1}),
                    1,
                ),
                Health::Suspended,
            ),
            (
                dep(
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
                    2,
                ),
                Health::Progressing,
            ),
            (
                dep(
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"d-1\" has timed out progressing."}]}),
                    1,
                ),
                Health::Degraded,
            ),
            (
                dep(
                    json!({"replicas": 3}),
                    json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}),
                    1,
                ),
                Health::Progressing,
            ),
            (
                dep(
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
                    1,
                ),
                Health::Progressing,
            ),
            (
                dep(
                    json!({"replicas": 2}),
                    json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
                    1,
                ),
                Health::Progressing,
            ),
            // Scaled to zero is healthy.
            (
                dep(json!({"replicas": 0}), json!({"observedGeneration": 1}), 1),
                Health::Healthy,
            ),
            (dep(json!({}), json!(null), 1), Health::Progressing),
        ];
        for (i, (d, want)) in table.into_iter().enumerate() {
            assert_eq!(deployment(&d).0, want, "row {i}");
        }
        let mut d = dep(
            json!({"replicas": 1}),
            json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
            1,
        );
        d.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert_eq!(deployment(&d).0, Health::Progressing);
    }

    #[test]
    fn statefulset_rules() {
        let sts = |spec: serde_json::Value, status: serde_json::Value| -> StatefulSet {
            from(
                json!({"metadata": {"name": "s", "generation": 1}, "spec": spec, "status": status}),
            )
        };
        let base = json!({"selector": {}, "template": {}, "serviceName": "s", "replicas": 1});
        assert_eq!(statefulset(&sts(base.clone(), json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "a"}))).0, Health::Healthy);
        assert_eq!(
            statefulset(&sts(
                base.clone(),
                json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 0})
            ))
            .0,
            Health::Progressing
        );
        assert_eq!(
            statefulset(&sts(
                base.clone(),
                json!({"observedGeneration": 0, "replicas": 1, "readyReplicas": 1})
            ))
            .0,
            Health::Progressing
        );
        assert_eq!(statefulset(&sts(base.clone(), json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"}))).0, Health::Progressing);
        let mut on_delete = base;
        on_delete["updateStrategy"] = json!({"type": "OnDelete"});
        assert_eq!(statefulset(&sts(on_delete, json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentRevision": "a", "updateRevision": "b"}))).0, Health::Healthy);
    }

    #[test]
    fn pvc_service_ingress_job_rules() {
        let claim = |phase: &str| -> PersistentVolumeClaim {
            from(json!({"metadata": {"name": "c"}, "status": {"phase": phase}}))
        };
        assert_eq!(pvc(&claim("Bound")).0, Health::Healthy);
        assert_eq!(pvc(&claim("Pending")).0, Health::Progressing);
        assert_eq!(pvc(&claim("Lost")).0, Health::Degraded);

        let svc = |t: &str, status: serde_json::Value| -> Service {
            from(json!({"metadata": {"name": "s"}, "spec": {"type": t}, "status": status}))
        };
        assert_eq!(service(&svc("ClusterIP", json!({}))).0, Health::Healthy);
        assert_eq!(
            service(&svc("LoadBalancer", json!({"loadBalancer": {}}))).0,
            Health::Progressing
        );
        assert_eq!(
            service(&svc(
                "LoadBalancer",
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
            ))
            .0,
            Health::Healthy
        );

        let ing = |status: serde_json::Value| -> Ingress {
            from(json!({"metadata": {"name": "i"}, "status": status}))
        };
        assert_eq!(
            ingress(&ing(json!({"loadBalancer": {}}))).0,
            Health::Unknown
        );
        assert_eq!(
            ingress(&ing(json!({"loadBalancer": {"ingress": []}}))).0,
            Health::Unknown
        );
        assert_eq!(
            ingress(&ing(
                json!({"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}})
            ))
            .0,
            Health::Healthy
        );

        let job_with = |spec: serde_json::Value, status: serde_json::Value| -> Job {
            from(json!({"metadata": {"name": "j"}, "spec": spec, "status": status}))
        };
        let t = json!({"template": {}});
        assert_eq!(
            job(&job_with(
                t.clone(),
                json!({"conditions": [{"type": "Complete", "status": "True"}]})
            ))
            .0,
            Health::Healthy
        );
        assert_eq!(job(&job_with(t.clone(), json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}))).0, Health::Degraded);
        let mut suspended = t.clone();
        suspended["suspend"] = json!(true);
        assert_eq!(job(&job_with(suspended, json!({}))).0, Health::Suspended);
        assert_eq!(
            job(&job_with(t, json!({"active": 1}))).0,
            Health::Progressing
        );
    }

    fn pod_with(status: serde_json::Value) -> Pod {
        from(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}, "status": status}),
        )
    }

    #[test]
    fn pod_rules() {
        let waiting = |reason: &str| {
            pod_with(
                json!({"phase": "Running", "containerStatuses": [{"name": "c", "ready": false, "restartCount": 4, "image": "x", "imageID": "", "state": {"waiting": {"reason": reason}}}]}),
            )
        };
        for bad in [
            "CrashLoopBackOff",
            "ImagePullBackOff",
            "ErrImagePull",
            "CreateContainerConfigError",
            "InvalidImageNameError",
        ] {
            let (h, reason) = pod(&waiting(bad));
            assert_eq!(h, Health::Degraded, "{bad}");
            assert!(reason.unwrap().contains(bad));
        }
        assert_eq!(pod(&waiting("ContainerCreating")).0, Health::Progressing);
        assert_eq!(
            pod(&pod_with(json!({"phase": "Pending"}))).0,
            Health::Progressing
        );
        assert_eq!(
            pod(&pod_with(json!({"phase": "Failed", "reason": "Evicted"}))).0,
            Health::Degraded
        );
        assert_eq!(
            pod(&pod_with(json!({"phase": "Succeeded"}))).0,
            Health::Healthy
        );
        assert_eq!(
            pod(&pod_with(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            ))
            .0,
            Health::Healthy
        );
        assert_eq!(
            pod(&pod_with(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]})
            ))
            .0,
            Health::Progressing
        );
        assert_eq!(
            pod(&pod_with(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "c", "ready": false, "restartCount": 1, "image": "x", "imageID": "", "lastState": {"terminated": {"exitCode": 137}}}]}))).0,
            Health::Degraded
        );
        assert_eq!(pod(&pod_with(json!({"phase": "Weird"}))).0, Health::Unknown);
    }

    #[test]
    fn an_unschedulable_gpu_pod_is_degraded_with_a_plain_reason() {
        let p = pod_with(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."}]}),
        );
        let (h, reason) = pod(&p);
        assert_eq!(h, Health::Degraded);
        assert_eq!(
            reason.unwrap(),
            "Waiting for a free GPU: no node of 3 can run it (1 node without a free GPU; 2 nodes with a taint the pod does not tolerate)"
        );
        assert_eq!(
            plain_scheduler_message("0/1 nodes are available: 1 Insufficient memory."),
            "Cannot be scheduled: no node of 1 fits (1 node without enough free memory)"
        );
        assert_eq!(
            plain_scheduler_message("something else"),
            "Cannot be scheduled: something else"
        );
    }
}
