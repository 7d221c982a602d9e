//! Namespaces for the fake API server: the full `k8s/` base as a healthy cluster would
//! report it, and the pieces of a broken one (a crash-looping pod, a GPU pod nobody can
//! schedule, a claim with no volume).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::fake_kube::FakeKube;

/// The objects of `k8s/base` (without the Namespace), as the manifests define them.
pub fn base_manifests() -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../k8s");
    let files = server::cluster::kustomize::read_dir(&root).expect("k8s/ is readable");
    server::cluster::kustomize::build(&files, "base")
        .expect("the base builds")
        .into_iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|d| {
            // The fake plays a current cluster, which serves (and stores) autoscalers as
            // autoscaling/v2; the manifests use v1 (served by every version since 1.20).
            if d["kind"] == "HorizontalPodAutoscaler" {
                let mut v2 = serde_json::to_value(
                    server::cluster::objects::hpa_as_v2(d).expect("the autoscaler reads"),
                )
                .expect("JSON");
                v2["kind"] = json!("HorizontalPodAutoscaler");
                v2
            } else {
                d
            }
        })
        .collect()
}

/// `object` with the status a settled cluster reports for it.
pub fn settled(mut object: Value) -> Value {
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = match object["kind"].as_str().unwrap_or_default() {
        "Deployment" => json!({
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ]
        }),
        "StatefulSet" => json!({
            "observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
            "currentReplicas": replicas, "updatedReplicas": replicas,
            "currentRevision": "r1", "updateRevision": "r1"
        }),
        "PersistentVolumeClaim" => json!({"phase": "Bound"}),
        "Ingress" => json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}),
        "HorizontalPodAutoscaler" => json!({"currentReplicas": 1, "desiredReplicas": 1}),
        _ => return object,
    };
    object["status"] = status;
    object
}

/// Applies the whole base, settled, and returns how many objects that was.
pub fn apply_settled_base(fake: &FakeKube) -> usize {
    let objects = base_manifests();
    let n = objects.len();
    for o in objects {
        fake.apply(settled(o));
    }
    n
}

/// A ReplicaSet of the stored Deployment `name`, and `pods` pods with `pod_status`.
pub fn apply_pods(fake: &FakeKube, deployment: &str, pod_status: &[Value]) {
    let d = fake
        .get("apps/v1", "Deployment", "ai-film", deployment)
        .unwrap_or_else(|| panic!("no Deployment {deployment}"));
    let template = d["spec"]["template"].clone();
    let rs_name = format!("{deployment}-5d9f7c");
    let rs = fake.apply(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": rs_name, "namespace": "ai-film",
            "labels": template["metadata"]["labels"],
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
                "uid": d["metadata"]["uid"], "controller": true}]
        },
        "spec": {"replicas": pod_status.len(), "selector": d["spec"]["selector"], "template": template},
        "status": {"replicas": pod_status.len()}
    }));
    for (i, status) in pod_status.iter().enumerate() {
        fake.apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{rs_name}-{i}"), "namespace": "ai-film",
                "labels": template["metadata"]["labels"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                    "uid": rs["metadata"]["uid"], "controller": true}]
            },
            "spec": template["spec"],
            "status": status
        }));
    }
}

pub fn running() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"running": {}}}]})
}

pub fn crash_looping() -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "main", "ready": false, "restartCount": 7, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]})
}

pub fn unschedulable_gpu() -> Value {
    json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."}]})
}

/// Makes the stored Deployment `name` report a stalled rollout (or a settled one).
pub fn set_deployment_stalled(fake: &FakeKube, name: &str, stalled: bool) {
    let mut d = fake
        .get("apps/v1", "Deployment", "ai-film", name)
        .unwrap_or_else(|| panic!("no Deployment {name}"));
    d = settled(d);
    if stalled {
        d["status"]["availableReplicas"] = json!(0);
        d["status"]["readyReplicas"] = json!(0);
        d["status"]["conditions"] = json!([
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": format!("ReplicaSet \"{name}-5d9f7c\" has timed out progressing.")}
        ]);
    }
    fake.apply(d);
}

/// Adds a Warning event about an object.
pub fn warn_event(fake: &FakeKube, kind: &str, name: &str, reason: &str, message: &str) {
    fake.apply(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{}", uuid::Uuid::now_v7().simple()), "namespace": "ai-film"},
        "involvedObject": {"kind": kind, "name": name, "namespace": "ai-film"},
        "reason": reason, "message": message, "type": "Warning", "count": 3,
        "lastTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }));
}
