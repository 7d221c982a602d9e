//! Deploys against the real Kubernetes 1.20 control plane, as Slate's ServiceAccount:
//! the real Deployment controller numbers the revisions and prunes old ReplicaSets;
//! Slate records every revision, restarts, and rolls back (also to a pruned revision).

use std::time::Duration;

use serde_json::Value;
use slate_tests::realkube::{Contents, RealKube};
use slate_tests::{eventually, spawn_app_with, TestApp, ADMIN_EMAIL};

use super::text;

/// The revisions Slate has stored for `Deployment/name`: (revision, source, images).
async fn recorded(app: &TestApp, name: &str) -> Vec<(i64, String, Vec<String>)> {
    sqlx::query_as(
        "select revision, source, images from deploy_revisions
         where kind = 'Deployment' and workload = $1 order by revision",
    )
    .bind(name)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

async fn until_recorded(app: &TestApp, name: &str, revision: i64) -> (String, Vec<String>) {
    eventually(
        &format!("Deployment/{name} revision {revision} to be recorded"),
        Duration::from_secs(90),
        || async {
            let all = recorded(app, name).await;
            match all.iter().find(|(r, _, _)| *r == revision) {
                Some((_, source, images)) => Ok((source.clone(), images.clone())),
                None => Err(all),
            }
        },
    )
    .await
}

/// The Deployment's revision and image, as the API server has them.
async fn current(kube: &RealKube, ns: &str, name: &str) -> (String, String) {
    let d: Value = serde_json::from_str(
        &kube
            .kubectl(&["-n", ns, "get", "deployment", name, "-o", "json"])
            .await,
    )
    .unwrap();
    (
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        d["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// The revision numbers of the Deployment's ReplicaSets still in the cluster.
async fn replicaset_revisions(kube: &RealKube, ns: &str) -> Vec<i64> {
    let list: Value = serde_json::from_str(
        &kube
            .kubectl(&["-n", ns, "get", "replicasets", "-o", "json"])
            .await,
    )
    .unwrap();
    let mut out: Vec<i64> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rs| {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                .as_str()?
                .parse()
                .ok()
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn realkube_revisions_restart_and_rollback_after_pruning_through_the_real_controller() {
    let kube = RealKube::shared().await;
    let ns = kube.namespace(Contents::Rbac).await;
    kube.create_deployment(&ns.name, "grade", "registry.example/grade:1")
        .await;
    kube.kubectl(&[
        "-n",
        &ns.name,
        "patch",
        "deployment",
        "grade",
        "-p",
        r#"{"spec":{"revisionHistoryLimit":1}}"#,
    ])
    .await;
    let path = ns.kubeconfig.display().to_string();
    let name = ns.name.clone();
    let app = spawn_app_with(|c| {
        c.kube = server::config::KubeMode::Auto;
        c.kubeconfig = Some(path);
        c.namespace = name;
    })
    .await;
    let (source, images) = until_recorded(&app, "grade", 1).await;
    assert_eq!(source, "cluster");
    assert_eq!(images, vec!["registry.example/grade:1".to_owned()]);

    // Two rollouts by hand; the controller keeps one old ReplicaSet, so revision 1's goes.
    for image in [
        "grade=registry.example/grade:2",
        "grade=registry.example/grade:3",
    ] {
        kube.kubectl(&["-n", &ns.name, "set", "image", "deployment/grade", image])
            .await;
    }
    until_recorded(&app, "grade", 3).await;
    eventually(
        "the controller to prune revision 1's ReplicaSet",
        Duration::from_secs(60),
        || async { replicaset_revisions(kube, &ns.name).await == vec![2, 3] },
    )
    .await;

    // A restart through Slate: the controller makes revision 4 with the same image.
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let form = [
        ("kind", "Deployment"),
        ("name", "grade"),
        ("reason", "stuck workers"),
    ];
    let (status, body) = text(app.call(&admin, "/api/lead/deploy_restart", &form).await).await;
    assert_eq!(status, 200, "{body}");
    let (source, images) = until_recorded(&app, "grade", 4).await;
    assert_eq!(source, "slate");
    assert_eq!(images, vec!["registry.example/grade:3".to_owned()]);

    // A rollback to revision 1, whose ReplicaSet is gone: from Slate's stored template.
    let form = [
        ("name", "grade"),
        ("revision", "1"),
        ("reason", "3 is broken"),
    ];
    let (status, body) = text(app.call(&admin, "/api/admin/deploy_rollback", &form).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from the stored template"), "{body}");
    let (source, images) = until_recorded(&app, "grade", 5).await;
    assert_eq!(source, "slate");
    assert_eq!(images, vec!["registry.example/grade:1".to_owned()]);
    assert_eq!(
        current(kube, &ns.name, "grade").await,
        ("5".to_owned(), "registry.example/grade:1".to_owned()),
        "the real controller rolled the Deployment back"
    );
    assert_eq!(
        app.count(
            "select count(*) from audit_log where action in ('deploy.restart', 'deploy.rollback')"
        )
        .await,
        2
    );
    app.stop().await;
}
