//! Slate's live view of a cluster, driven through the real `kube::Client` against the
//! fake API server: the full base, a broken namespace, 410 Gone, the API server going
//! away and coming back, metadata-only Secrets, the detail panel.

use std::time::Duration;

use app::architecture::{EdgeKind, Health, Source, Topology};
use app::backend::ClusterBackend as _;
use server::cluster::{Cluster, Target};
use slate_tests::eventually;
use slate_tests::fake_kube::FakeKube;
use slate_tests::kube_fixtures::*;

/// Waits (bounded) until the topology satisfies `ok`; panics with the last one otherwise.
pub async fn until(cluster: &Cluster, what: &str, ok: impl Fn(&Topology) -> bool) -> Topology {
    eventually(what, Duration::from_secs(15), || async {
        let t = cluster.topology();
        if ok(&t) {
            Ok(t)
        } else {
            Err(Drawn(t))
        }
    })
    .await
}

/// A topology shown as its ASCII drawing in a failure message.
struct Drawn(Topology);

impl std::fmt::Debug for Drawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", app::architecture::export::ascii(&self.0))
    }
}

fn synced(t: &Topology) -> bool {
    matches!(
        t.source,
        Source::Live {
            synced: true,
            unreachable_since: None,
            ..
        }
    )
}

fn health(t: &Topology, id: &str) -> Option<Health> {
    t.node(id).map(|n| n.health)
}

async fn live(fake: &FakeKube) -> (Cluster, Vec<tokio::task::JoinHandle<()>>) {
    Cluster::start_with(Target::Cluster(fake.client()), "ai-film")
}

#[tokio::test]
async fn the_full_base_is_drawn_live_and_healthy() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    // Slate reads every kind it draws; RBAC objects are not among them.
    let objects = base_manifests()
        .iter()
        .filter(|o| {
            !["ServiceAccount", "Role", "RoleBinding"]
                .contains(&o["kind"].as_str().unwrap_or_default())
        })
        .count();
    apply_pods(&fake, "slate", &[running(), running()]);
    let (cluster, tasks) = live(&fake).await;
    let t = until(&cluster, "the base, synced", |t| {
        synced(t) && t.node("Deployment/slate").is_some_and(|n| n.pods == 2)
    })
    .await;
    assert_eq!(
        t.objects,
        objects + 3,
        "every object read (plus one ReplicaSet and two pods)"
    );
    let slate = t.node("Deployment/slate").unwrap();
    assert_eq!(
        (slate.health, slate.ready, slate.desired),
        (Health::Healthy, Some(2), Some(2))
    );
    assert_eq!(slate.image_tag(), Some("0.1.0"));
    for id in [
        "Deployment/comfyui",
        "StatefulSet/postgres",
        "PersistentVolumeClaim/models",
        "Service/redis",
        "Ingress/slate",
    ] {
        assert_eq!(health(&t, id), Some(Health::Healthy), "{id}");
    }
    // The Secrets nobody committed are drawn as missing, not silently dropped.
    assert_eq!(health(&t, "Secret/slate-database"), Some(Health::Missing));
    let has = |from: &str, kind, to: &str| {
        t.edges
            .iter()
            .any(|e| e.from == from && e.kind == kind && e.to == to)
    };
    assert!(has("Ingress/slate", EdgeKind::Routes, "Service/slate"));
    assert!(has("Service/slate", EdgeKind::Selects, "Deployment/slate"));
    // Dagster's runs write where Slate and its webserver read: the shared work volume.
    assert!(has(
        "Deployment/dagster-daemon",
        EdgeKind::Mounts,
        "PersistentVolumeClaim/slate-assets"
    ));
    assert!(has(
        "Deployment/dagster-code",
        EdgeKind::Mounts,
        "PersistentVolumeClaim/slate-assets"
    ));
    assert!(has(
        "Deployment/comfyui",
        EdgeKind::Declared,
        "External/comfyui-colab"
    ));
    assert!(t.node("Deployment/comfyui").unwrap().gpu);
    assert!(t
        .node("Deployment/ffmpeg")
        .unwrap()
        .facts
        .iter()
        .any(|f| f.contains("autoscaled 1–8")));
    tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn a_broken_namespace_says_what_is_wrong() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    apply_pods(&fake, "langgraph", &[running(), running(), crash_looping()]);
    apply_pods(&fake, "comfyui", &[unschedulable_gpu()]);
    let mut claim = fake
        .get("v1", "PersistentVolumeClaim", "ai-film", "videos")
        .unwrap();
    claim["status"] = serde_json::json!({"phase": "Pending"});
    fake.apply(claim);
    let mut ingress = fake
        .get("networking.k8s.io/v1", "Ingress", "ai-film", "slate")
        .unwrap();
    ingress["status"] = serde_json::json!({"loadBalancer": {}});
    fake.apply(ingress);

    let (cluster, tasks) = live(&fake).await;
    let t = until(&cluster, "the broken state", |t| {
        synced(t) && health(t, "Deployment/comfyui") == Some(Health::Degraded)
    })
    .await;
    let lg = t.node("Deployment/langgraph").unwrap();
    assert_eq!(lg.health, Health::Degraded);
    assert!(
        lg.reason
            .as_deref()
            .unwrap()
            .contains("CrashLoopBackOff (restarted 7 times)"),
        "{:?}",
        lg.reason
    );
    let comfy = t.node("Deployment/comfyui").unwrap();
    assert_eq!(
        comfy.reason.as_deref(),
        Some("Waiting for a free GPU: no node of 2 can run it (2 nodes without a free GPU)")
    );
    assert_eq!(
        health(&t, "PersistentVolumeClaim/videos"),
        Some(Health::Progressing)
    );
    assert_eq!(health(&t, "Ingress/slate"), Some(Health::Unknown));
    // Lanes take their worst member.
    assert_eq!(
        t.layer_health(app::architecture::Layer::Processing),
        Some(Health::Degraded)
    );

    // The panel explains the pods.
    warn_event(
        &fake,
        "Pod",
        "langgraph-5d9f7c-2",
        "BackOff",
        "Back-off restarting failed container main",
    );
    let detail = eventually("the panel's events", Duration::from_secs(2), || async {
        let detail = cluster.node_detail("Deployment/langgraph").unwrap();
        (!detail.events.is_empty()).then_some(detail)
    })
    .await;
    assert_eq!(detail.pods.len(), 3);
    let bad = detail.pods.iter().find(|p| p.name.ends_with("-2")).unwrap();
    assert_eq!((bad.restarts, bad.ready), (7, false));
    assert!(bad.reason.as_deref().unwrap().contains("CrashLoopBackOff"));
    assert_eq!(detail.events[0].reason, "BackOff");
    assert_eq!(
        detail.containers[0].image,
        "ghcr.io/slate-film/langgraph-agents:0.1.0"
    );
    assert!(detail.containers[0].limits.contains("memory"));
    assert!(cluster.node_detail("Deployment/nope").is_err());
    tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn changes_and_recoveries_follow_the_cluster() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    let (cluster, tasks) = live(&fake).await;
    until(&cluster, "sync", synced).await;
    let v0 = cluster.topology().version;

    set_deployment_stalled(&fake, "slate", true);
    let t = until(&cluster, "slate degraded", |t| {
        health(t, "Deployment/slate") == Some(Health::Degraded)
    })
    .await;
    assert!(t.version > v0);
    assert!(t
        .node("Deployment/slate")
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains("timed out progressing"));
    set_deployment_stalled(&fake, "slate", false);
    until(&cluster, "slate healthy", |t| {
        health(t, "Deployment/slate") == Some(Health::Healthy)
    })
    .await;

    // History compacted: the watchers relist and still see what changed meanwhile.
    fake.expire_history();
    fake.delete("apps/v1", "Deployment", "ai-film", "opencv");
    until(&cluster, "opencv gone", |t| {
        t.node("Deployment/opencv").is_none()
    })
    .await;

    // The API server goes away: the last known state stays, marked as such.
    fake.stop().await;
    let t = until(&cluster, "unreachable", |t| {
        matches!(
            t.source,
            Source::Live {
                unreachable_since: Some(_),
                ..
            }
        )
    })
    .await;
    assert!(
        t.node("Deployment/slate").is_some(),
        "the last known state is kept"
    );
    fake.delete("apps/v1", "Deployment", "ai-film", "blender");
    // Long enough for a change to come through if anything were still watching.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cluster.topology().node("Deployment/blender").is_some(),
        "nothing is seen while it is away"
    );
    fake.restart().await;
    until(&cluster, "back, without blender", |t| {
        synced(t) && t.node("Deployment/blender").is_none()
    })
    .await;
    tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn secrets_are_only_ever_read_as_metadata() {
    let fake = FakeKube::start().await;
    fake.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "slate-database", "namespace": "ai-film", "labels": {"app.kubernetes.io/part-of": "ai-film"}},
        "data": {"url": "cG9zdGdyZXM6Ly9zZWNyZXQtdmFsdWU="}
    }));
    let (cluster, tasks) = live(&fake).await;
    let t = until(&cluster, "the secret", |t| {
        synced(t) && t.node("Secret/slate-database").is_some()
    })
    .await;
    let everything = serde_json::to_string(&t).unwrap()
        + &serde_json::to_string(&cluster.node_detail("Secret/slate-database").unwrap()).unwrap();
    assert!(!everything.contains("cG9zdGdyZXM6Ly9zZWNyZXQtdmFsdWU="));
    let secret_requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets")
        .collect();
    assert!(!secret_requests.is_empty());
    for r in secret_requests {
        let accept = r.accept.unwrap_or_default();
        assert!(
            accept.contains("as=PartialObjectMetadata"),
            "{} {} asked for {accept}",
            r.verb,
            r.query
        );
    }
    tasks.iter().for_each(|t| t.abort());
}

#[tokio::test]
async fn a_flapping_api_server_is_retried_with_backoff_not_in_a_loop() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    let (cluster, tasks) = live(&fake).await;
    until(&cluster, "sync", synced).await;
    fake.stop().await;
    until(&cluster, "unreachable", |t| {
        matches!(
            t.source,
            Source::Live {
                unreachable_since: Some(_),
                ..
            }
        )
    })
    .await;
    fake.clear_requests();
    // Come back for a moment, but answer every request with 500.
    fake.fail_next(1_000_000, 500);
    fake.restart().await;
    // The scenario: three seconds of failures, then count what the watchers sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let requests = fake.requests().len();
    // Twelve watchers and a probe, each backing off: a hot loop would send thousands.
    assert!(requests < 200, "{requests} requests in 3 s");
    assert!(matches!(cluster.topology().source, Source::Live { .. }));
    assert!(cluster.topology().node("Deployment/slate").is_some());
    tasks.iter().for_each(|t| t.abort());
}
