//! Health verdicts for objects as a real cluster reports them.

use super::*;
use k8s_openapi::api::core::v1::Pod;
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
        from(json!({"metadata": {"name": "s", "generation": 1}, "spec": spec, "status": status}))
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
