//! The live view against the real Kubernetes 1.20 control plane (../shared/realkube),
//! as Slate's own ServiceAccount, so the Role in `k8s/` is enforced by the API server:
//! the dev overlay applied for real, a kind Slate may not read left out on its own, the
//! API server stopped and started again mid-watch, and the Colab endpoint published into
//! a real Secret with its consumers restarted through the real Deployment controller.

use std::time::Duration;

use app::architecture::{Source, Topology};
use app::backend::ClusterBackend as _;
use server::cluster::{Cluster, Target};
use slate_tests::eventually;
use slate_tests::realkube::{client_for, Contents, Namespace, RealKube};

/// Slate's live view of `ns`, as the `slate` ServiceAccount.
async fn watch(ns: &Namespace) -> (Cluster, Vec<tokio::task::JoinHandle<()>>) {
    let client = client_for(&ns.kubeconfig).await;
    Cluster::start_with(Target::Cluster(client), &ns.name)
}

/// Waits until the topology satisfies `ok` (the real controllers and the fake kubelet
/// take seconds, more on a busy machine).
async fn until(cluster: &Cluster, what: &str, ok: impl Fn(&Topology) -> bool) -> Topology {
    eventually(what, Duration::from_secs(90), || async {
        let t = cluster.topology();
        if ok(&t) {
            Ok(t)
        } else {
            Err(app::architecture::export::ascii(&t))
        }
    })
    .await
}

fn live_and_synced(t: &Topology) -> bool {
    matches!(
        t.source,
        Source::Live {
            synced: true,
            unreachable_since: None,
            ..
        }
    )
}

fn unwatched(t: &Topology) -> Vec<(String, String)> {
    match &t.source {
        Source::Live { unwatched, .. } => unwatched
            .iter()
            .map(|u| (u.kind.clone(), u.reason.clone()))
            .collect(),
        Source::Desired { .. } => Vec::new(),
    }
}

fn stop(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn realkube_the_dev_overlay_applied_for_real_is_drawn_live_as_slates_service_account() {
    let kube = RealKube::shared().await;
    let ns = kube.namespace(Contents::Overlay).await;
    let (cluster, tasks) = watch(&ns).await;
    // Kubernetes 1.20 serves no autoscaling/v2: the autoscaler is read as v2beta2 and
    // drawn like every other kind, and nothing is left out.
    let t = until(&cluster, "the dev overlay, live", |t| {
        live_and_synced(t)
            && t.node("Deployment/ffmpeg")
                .is_some_and(|n| n.facts.iter().any(|f| f == "autoscaled 1–8"))
            && t.node("Deployment/slate").is_some_and(|n| n.pods > 0)
    })
    .await;
    println!("{}", app::architecture::export::ascii(&t));
    assert_eq!(unwatched(&t), Vec::<(String, String)>::new());
    for id in [
        "Deployment/comfyui",
        "StatefulSet/postgres",
        "Service/slate",
        "PersistentVolumeClaim/models",
        "Ingress/slate",
    ] {
        assert!(t.node(id).is_some(), "{id} is drawn");
    }
    // The real controllers made the ReplicaSets and pods, and the fake kubelet ran them.
    let pods = kube
        .kubectl(&["-n", &ns.name, "get", "pods", "-o", "name"])
        .await;
    assert!(pods.lines().count() >= 5, "pods: {pods}");
    stop(tasks);
}

#[tokio::test]
async fn realkube_a_kind_slate_may_not_read_is_left_out_alone_with_the_reason() {
    let kube = RealKube::shared().await;
    let ns = kube.namespace(Contents::Rbac).await;
    kube.create_deployment(&ns.name, "web", "registry.example/web:1")
        .await;
    // The Role without its autoscaling rule: the API server now answers 403 for HPAs.
    kube.kubectl(&[
        "-n",
        &ns.name,
        "patch",
        "role",
        "slate",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/rules/4/apiGroups/0","value":"autoscaling"},{"op":"remove","path":"/rules/4"}]"#,
    ])
    .await;
    let (cluster, tasks) = watch(&ns).await;
    let t = until(&cluster, "live, without autoscalers", |t| {
        live_and_synced(t) && t.node("Deployment/web").is_some() && !unwatched(t).is_empty()
    })
    .await;
    let left_out = unwatched(&t);
    assert_eq!(left_out.len(), 1, "{left_out:?}");
    assert_eq!(left_out[0].0, "horizontalpodautoscalers");
    assert!(
        left_out[0].1.contains("forbidden"),
        "the API server's reason: {left_out:?}"
    );
    // The rest is live: a new Deployment appears.
    kube.create_deployment(&ns.name, "api", "registry.example/api:1")
        .await;
    until(&cluster, "the new Deployment", |t| {
        live_and_synced(t) && t.node("Deployment/api").is_some()
    })
    .await;
    stop(tasks);
}

#[tokio::test]
async fn realkube_the_api_server_stopped_and_started_again_mid_watch() {
    let kube = RealKube::private("restart").await;
    let ns = kube.namespace(Contents::Rbac).await;
    kube.create_deployment(&ns.name, "web", "registry.example/web:1")
        .await;
    let (cluster, tasks) = watch(&ns).await;
    until(&cluster, "live", |t| {
        live_and_synced(t) && t.node("Deployment/web").is_some()
    })
    .await;

    kube.stop().await;
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
        t.node("Deployment/web").is_some(),
        "the last known state is kept"
    );

    kube.start_again().await;
    until(&cluster, "live again", live_and_synced).await;
    // Back, and the watches resume or relist (410 Gone for versions from before the
    // restart): that is not an outage, so the view must not flip back to unreachable
    // while a change made now comes through. Every published topology is looked at (a
    // rebuild is debounced by far longer than a look takes).
    kube.create_deployment(&ns.name, "api", "registry.example/api:1")
        .await;
    let mut flips = Vec::new();
    eventually(
        "the Deployment made after the restart",
        Duration::from_secs(90),
        || {
            let t = cluster.topology();
            if let Source::Live {
                unreachable_since: Some(since),
                ..
            } = t.source
            {
                if !flips.contains(&since) {
                    flips.push(since);
                }
            }
            let done = t.node("Deployment/api").is_some() && live_and_synced(&t);
            async move { done }
        },
    )
    .await;
    assert!(
        flips.is_empty(),
        "the view flipped to unreachable after it was back, at {flips:?}"
    );
    stop(tasks);
}

#[tokio::test]
async fn realkube_the_colab_endpoint_is_published_into_a_real_secret_and_its_consumers_roll() {
    use base64::Engine as _;
    use server::colab::publish::{Publisher, Target as Into};

    let kube = RealKube::shared().await;
    let ns = kube.namespace(Contents::Overlay).await;
    let revision = |name: &'static str| {
        let ns = ns.name.clone();
        async move {
            let d: serde_json::Value = serde_json::from_str(
                &kube
                    .kubectl(&["-n", &ns, "get", "deployment", name, "-o", "json"])
                    .await,
            )
            .unwrap();
            d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    eventually(
        "ComfyUI's first revision",
        Duration::from_secs(60),
        || async { revision("comfyui").await == "1" },
    )
    .await;
    let secret_url = || {
        let ns = ns.name.clone();
        async move {
            let encoded = kube
                .kubectl(&[
                    "-n",
                    &ns,
                    "get",
                    "secret",
                    "comfyui-endpoint",
                    "-o",
                    "jsonpath={.data.COMFYUI_URL}",
                ])
                .await;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap();
            String::from_utf8(bytes).unwrap()
        }
    };
    // As Slate's ServiceAccount: the Role must allow every call the publication makes.
    let publisher = Publisher {
        client: client_for(&ns.kubeconfig).await,
        namespace: ns.name.clone(),
        target: Into::Secret("comfyui-endpoint".into()),
    };
    let first = publisher
        .publish("https://quiet-river.trycloudflare.com/")
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.restarted, ["comfyui"]);
    assert_eq!(secret_url().await, "https://quiet-river.trycloudflare.com/");
    // The real Deployment controller rolled ComfyUI (a new revision); Blender, which
    // does not read the endpoint, was left alone.
    eventually(
        "ComfyUI's restart to roll out",
        Duration::from_secs(60),
        || async { revision("comfyui").await == "2" },
    )
    .await;
    assert_eq!(revision("blender").await, "1");

    let second = publisher
        .publish("https://bright-lake.trycloudflare.com/")
        .await
        .unwrap();
    assert!(!second.created, "patched in place");
    assert_eq!(secret_url().await, "https://bright-lake.trycloudflare.com/");
    eventually("the second restart", Duration::from_secs(60), || async {
        revision("comfyui").await == "3"
    })
    .await;
}
