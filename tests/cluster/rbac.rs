//! The Role in k8s/ grants exactly the API calls Slate's code makes: the calls are taken
//! from what the fake API server received while Slate ran against it, not from a list
//! kept by hand. When new code calls the API, this test names the missing permission;
//! when a permission is no longer used, it names that too.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::Role;
use server::cluster::{Cluster, Target};
use slate_tests::fake_kube::FakeKube;
use slate_tests::kube_fixtures::{apply_settled_base, base_manifests};
use slate_tests::{eventually, seen};

use super::topology::until;

type Permission = (String, String, String);

fn granted() -> BTreeSet<Permission> {
    let role = base_manifests()
        .into_iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "slate")
        .expect("the Role slate");
    let role: Role = serde_json::from_value(role).unwrap();
    let mut out = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        assert!(
            rule.resource_names.is_none(),
            "resourceNames would need a finer check"
        );
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "no wildcards");
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn the_role_grants_exactly_what_slate_calls() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    let (cluster, tasks) = Cluster::start_with(Target::Cluster(fake.client()), "ai-film");
    until(&cluster, "sync", |t| {
        matches!(
            t.source,
            app::architecture::Source::Live { synced: true, .. }
        )
    })
    .await;
    // Watches follow lists: give every watcher time to open its watch.
    eventually(
        "every watcher to open its watch",
        std::time::Duration::from_secs(5),
        || async {
            let watching: BTreeSet<String> = fake
                .requests()
                .into_iter()
                .filter(|r| r.verb == "watch")
                .map(|r| r.resource)
                .collect();
            seen(watching, |w| w.len() >= 13)
        },
    )
    .await;
    // Publishing the Colab endpoint: the first time creates the Secret, then patches it.
    let publisher = server::colab::publish::Publisher {
        client: fake.client(),
        namespace: "ai-film".into(),
        target: server::colab::publish::Target::Secret("comfyui-endpoint".into()),
    };
    for url in [
        "https://first-try.trycloudflare.com/",
        "https://second-go.trycloudflare.com/",
    ] {
        publisher.publish(url).await.expect("published");
    }
    // Deploys: a restart of each kind of workload and a rollback, as kubectl does them.
    let workloads = server::deploys::Workloads {
        client: fake.client(),
        namespace: "ai-film".into(),
    };
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-26T10:00:00Z"}}}}});
    for (kind, name) in [("Deployment", "comfyui"), ("StatefulSet", "postgres")] {
        workloads.get(kind, name).await.expect("read");
        workloads
            .restart(kind, name, &patch)
            .await
            .expect("restarted");
    }
    let current = workloads.get("Deployment", "blender").await.unwrap();
    let mut old = current["spec"]["template"].clone();
    old["spec"]["containers"][0]["image"] = serde_json::json!("blender:4.1.0");
    let server::deploys::rollout::Undo::Patch(undo) =
        server::deploys::rollout::undo(&current, &old, &serde_json::json!({})).unwrap()
    else {
        panic!("a patch")
    };
    workloads.undo("blender", undo).await.expect("rolled back");
    // Pipeline stages: a Job per attempt, read after a restart, its pod's log followed
    // and read whole, deleted on cancel.
    let jobs = server::pipelines::executors::kubernetes::Jobs {
        client: fake.client(),
        namespace: "ai-film".into(),
    };
    let job = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "slate-render-0123456789ab"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "stage", "image": "blender:4.2.3", "command": ["blender", "-b"]}]}}}
    });
    jobs.create(&job).await.expect("created");
    assert!(jobs
        .get("slate-render-0123456789ab")
        .await
        .unwrap()
        .is_some());
    fake.apply(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "slate-render-0123456789ab-x1", "labels": {"job-name": "slate-render-0123456789ab"}},
        "spec": {"containers": [{"name": "stage", "image": "blender:4.2.3"}]},
        "status": {"phase": "Succeeded"}
    }));
    fake.set_pod_log(
        "ai-film",
        "slate-render-0123456789ab-x1",
        Some("stage"),
        "Fra:1\n",
    );
    assert_eq!(
        jobs.log("slate-render-0123456789ab-x1").await.unwrap(),
        "Fra:1\n"
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let had = std::sync::atomic::AtomicUsize::new(0);
    let following = jobs.follow_log("slate-render-0123456789ab-x1", &had, &tx);
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), following).await;
    assert_eq!(rx.recv().await.as_deref(), Some("Fra:1"));
    jobs.delete("slate-render-0123456789ab")
        .await
        .expect("deleted");
    let called: BTreeSet<Permission> = fake
        .requests()
        .into_iter()
        .filter(|r| !r.resource.is_empty())
        .map(|r| {
            let resource = match r.subresource {
                Some(sub) => format!("{}/{sub}", r.resource),
                None => r.resource,
            };
            (r.group, resource, r.verb)
        })
        .collect();
    let granted = granted();
    let missing: Vec<_> = called.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&called).collect();
    assert!(
        missing.is_empty(),
        "Slate calls what the Role does not grant: {missing:?}"
    );
    assert!(
        unused.is_empty(),
        "the Role grants what Slate never calls: {unused:?}"
    );
    tasks.iter().for_each(|t| t.abort());
}
