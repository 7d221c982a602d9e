//! The same scenarios against a real cluster, for a developer laptop or a CI runner with
//! Docker (kind, k3d, minikube). Ignored by default: no cluster can run on the machines
//! the suite normally runs on. Run with
//!
//! ```sh
//! kubectl apply -k k8s/overlays/dev
//! KUBECONFIG=~/.kube/config cargo test -p slate-tests --test suite -- --ignored cluster::real
//! ```

use app::architecture::Source;
use server::cluster::{Cluster, Target};

use super::topology::until;

async fn real_cluster() -> Cluster {
    let path = std::env::var("KUBECONFIG").expect("set KUBECONFIG to a real cluster");
    let file = kube::config::Kubeconfig::read_from(&path).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("a usable kubeconfig");
    let client = kube::Client::try_from(config).expect("a client");
    let namespace = std::env::var("SLATE_NAMESPACE").unwrap_or_else(|_| "ai-film".into());
    Cluster::start_with(Target::Cluster(client), &namespace).0
}

#[tokio::test]
#[ignore = "needs a real cluster (KUBECONFIG) with k8s/overlays/dev applied"]
async fn real_the_dev_overlay_is_drawn_live() {
    let cluster = real_cluster().await;
    let t = until(&cluster, "sync", |t| {
        matches!(t.source, Source::Live { synced: true, .. })
            && t.node("Deployment/slate").is_some()
    })
    .await;
    println!("{}", app::architecture::export::ascii(&t));
    for id in [
        "Deployment/comfyui",
        "StatefulSet/postgres",
        "Service/slate",
        "PersistentVolumeClaim/models",
    ] {
        assert!(t.node(id).is_some(), "{id}");
    }
}
