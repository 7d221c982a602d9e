//! Revisions recorded from the cluster (live and at start), diffs, restart and rollback
//! with kubectl's semantics, and what is refused.

use serde_json::{json, Value};
use slate_tests::ADMIN_EMAIL;

use super::{kubectl_undo, Env};

fn patches(env: &Env, name: &str) -> Vec<slate_tests::fake_kube::Request> {
    env.fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.verb == "patch" && r.resource == "deployments" && r.name.as_deref() == Some(name)
        })
        .collect()
}

#[tokio::test]
async fn revisions_are_recorded_live_and_at_start() {
    let env = Env::start().await;
    // Every Deployment of the base gets its first revision, StatefulSets none yet.
    let (source, actor, images, _) = env.revision("Deployment", "blender", 1).await;
    assert_eq!(source, "cluster");
    assert_eq!(actor, None);
    assert_eq!(images.len(), 1);
    assert!(
        images[0].starts_with("ghcr.io/") || images[0].contains(':'),
        "{images:?}"
    );

    // A change by hand, with a change-cause and a deployed-by annotation.
    env.change("blender", |d| {
        d["metadata"]["annotations"]["kubernetes.io/change-cause"] =
            json!("kubectl set image blender=blender:4.2.1");
        d["metadata"]["annotations"]["slate.dev/deployed-by"] = json!("ines");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("blender:4.2.1");
    });
    let (source, actor, images, _) = env.revision("Deployment", "blender", 2).await;
    assert_eq!(
        (source.as_str(), actor.as_deref()),
        ("cluster", Some("ines"))
    );
    assert_eq!(images, vec!["blender:4.2.1".to_owned()]);
    let cause: Option<String> = sqlx::query_scalar(
        "select change_cause from deploy_revisions where workload = 'blender' and revision = 2",
    )
    .fetch_one(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(
        cause.as_deref(),
        Some("kubectl set image blender=blender:4.2.1")
    );

    // Slate goes down; two rollouts happen; at start both are recorded from the
    // ReplicaSets still there.
    let env = env
        .while_down(|fake| {
            super::set_image(fake, "blender", "blender:4.2.2");
            super::set_image(fake, "blender", "blender:4.2.3");
        })
        .await;
    let (_, _, images, _) = env.revision("Deployment", "blender", 4).await;
    assert_eq!(images, vec!["blender:4.2.3".to_owned()]);
    let (_, _, images, _) = env.revision("Deployment", "blender", 3).await;
    assert_eq!(images, vec!["blender:4.2.2".to_owned()]);
    // Nothing twice.
    assert_eq!(
        env.app
            .count("select count(*) from deploy_revisions where workload = 'blender'")
            .await,
        4
    );

    // The diff of revision 4 against its previous one, and against revision 1.
    let lead = env.app.signed_in("lead@studio.test", "lead").await;
    let diff: Value = env.diff(&lead, "blender", "4", None).await.1;
    assert_eq!(diff["left_label"], "revision 3");
    let changed: Vec<&Value> = diff["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["change"] != "Same")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0]["left"][1]
        .as_str()
        .unwrap()
        .contains("blender:4.2.2"));
    assert!(changed[0]["right"][1]
        .as_str()
        .unwrap()
        .contains("blender:4.2.3"));
    let (status, body) = env.diff(&lead, "blender", "4", Some("9")).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.to_string().contains("no recorded revision 9"),
        "{body}"
    );
    env.stop().await;
}

#[tokio::test]
async fn rollback_sends_kubectls_patch_also_after_the_replicaset_was_pruned() {
    let env = Env::start().await;
    // Keep one old ReplicaSet only.
    env.change("blender", |d| d["spec"]["revisionHistoryLimit"] = json!(1));
    env.revision("Deployment", "blender", 1).await;
    let rs1 = env.replicasets("blender")[0].1.clone();
    env.change("blender", |d| {
        d["metadata"]["annotations"]["kubernetes.io/change-cause"] = json!("v2");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("blender:9.0.2");
    });
    env.change("blender", |d| {
        d["metadata"]["annotations"]["kubernetes.io/change-cause"] = json!("v3");
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("blender:9.0.3");
    });
    env.revision("Deployment", "blender", 3).await;
    let revisions: Vec<i64> = env.replicasets("blender").iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, vec![2, 3], "revision 1's ReplicaSet was pruned");

    let admin = env.app.signed_in(ADMIN_EMAIL, "admin").await;
    // A creator and a lead may not roll back; an unknown revision is a clear 404.
    let creator = env.app.signed_in("cleo@studio.test", "creator").await;
    let lead = env.app.signed_in("lead@studio.test", "lead").await;
    for client in [&creator, &lead] {
        let (status, _) = env.rollback(client, "blender", "1", "").await;
        assert_eq!(status, 403);
    }
    let (status, body) = env.rollback(&admin, "blender", "7", "").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("recorded revisions: 1, 2, 3")
            || body.contains("recorded revisions: 3, 2, 1"),
        "{body}"
    );
    // Rolling back to the current template changes nothing, and says so.
    let (status, body) = env.rollback(&admin, "blender", "3", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Nothing to do"), "{body}");
    assert!(patches(&env, "blender").is_empty());

    // The preview shows the diff of what runs now against revision 1, from the store.
    let preview: Value = env
        .app
        .call(
            &admin,
            "/api/admin/deploy_rollback_preview",
            &[("name", "blender"), ("revision", "1")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["from_store"], true);
    assert_eq!(preview["already_current"], false);
    assert_eq!(preview["diff"]["left_label"], "running now");

    // The rollback itself.
    let before = env.deployment("blender");
    let (status, body) = env
        .rollback(&admin, "blender", "1", "9.x renders black frames")
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("from the stored template"), "{body}");
    let sent = patches(&env, "blender");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/json-patch+json")
    );
    let expected = kubectl_undo(
        &before,
        &rs1["spec"]["template"],
        &rs1["metadata"]["annotations"],
    );
    assert_eq!(
        sent[0].body,
        Some(json!([
            {"op": "replace", "path": "/spec/template", "value": expected["spec"]["template"]},
            {"op": "replace", "path": "/metadata/annotations", "value": expected["metadata"]["annotations"]},
        ]))
    );
    assert!(expected["spec"]["template"]["metadata"]["labels"]
        .get("pod-template-hash")
        .is_none());
    // The Deployment ends up as kubectl leaves it (the controller then numbers it 4).
    let after = env.deployment("blender");
    assert_eq!(after["spec"]["template"], expected["spec"]["template"]);
    let mut annotations = after["metadata"]["annotations"].clone();
    annotations
        .as_object_mut()
        .unwrap()
        .remove("deployment.kubernetes.io/revision");
    let mut wanted = expected["metadata"]["annotations"].clone();
    wanted
        .as_object_mut()
        .unwrap()
        .remove("deployment.kubernetes.io/revision");
    assert_eq!(annotations, wanted);
    // Recorded: revision 4 is Slate's, by the admin, with the reason; and audited.
    let (source, actor, images, _) = env.revision("Deployment", "blender", 4).await;
    assert_eq!(source, "slate");
    assert_eq!(actor.as_deref(), Some(ADMIN_EMAIL));
    assert_eq!(images, env.revision("Deployment", "blender", 1).await.2);
    assert_eq!(
        env.app
            .count("select count(*) from audit_log where action = 'deploy.rollback' and detail->>'outcome' = 'done'")
            .await,
        1
    );
    env.stop().await;
}

#[tokio::test]
async fn restart_is_kubectls_and_paused_deployments_are_refused() {
    let env = Env::start().await;
    env.revision("Deployment", "opencv", 1).await;
    let lead = env.app.signed_in("lead@studio.test", "lead").await;
    let creator = env.app.signed_in("cleo@studio.test", "creator").await;
    let (status, _) = env.restart(&creator, "Deployment", "opencv", "").await;
    assert_eq!(status, 403);
    let (status, body) = env
        .restart(&lead, "Deployment", "opencv", "pick up the new model")
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = patches(&env, "opencv");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body = sent[0].body.clone().unwrap();
    let at = body["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(chrono::DateTime::parse_from_rfc3339(&at).is_ok());
    assert_eq!(
        body,
        json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}})
    );
    // The restart's new revision is attributed to the lead, with the reason.
    let (source, actor, ..) = env.revision("Deployment", "opencv", 2).await;
    assert_eq!(
        (source.as_str(), actor.as_deref()),
        ("slate", Some("lead@studio.test"))
    );

    // Paused: both refused with a clear message, nothing sent, both audited.
    env.change("opencv", |d| d["spec"]["paused"] = json!(true));
    env.fake.clear_requests();
    let (status, body) = env.restart(&lead, "Deployment", "opencv", "").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("is paused") && body.contains("kubectl rollout resume"),
        "{body}"
    );
    let admin = env.app.signed_in(ADMIN_EMAIL, "admin").await;
    let (status, body) = env.rollback(&admin, "opencv", "1", "").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("is paused"), "{body}");
    assert!(patches(&env, "opencv").is_empty());
    let refused: Vec<String> = sqlx::query_scalar(
        "select action from audit_log where detail->>'outcome' = 'refused' order by at",
    )
    .fetch_all(&env.app.pool)
    .await
    .unwrap();
    assert_eq!(refused, ["deploy.restart", "deploy.rollback"]);
    // Bad input: another kind, a workload that does not exist.
    let (status, _) = env.restart(&lead, "Pod", "opencv", "").await;
    assert_eq!(status, 422);
    let (status, body) = env.restart(&lead, "Deployment", "nope", "").await;
    assert_eq!(status, 404, "{body}");
    env.stop().await;
}

#[tokio::test]
async fn statefulset_revisions_come_from_controller_revisions() {
    let env = Env::start().await;
    let postgres = env
        .fake
        .get("apps/v1", "StatefulSet", "ai-film", "postgres")
        .unwrap();
    let uid = postgres["metadata"]["uid"].as_str().unwrap().to_owned();
    let revision = |n: i64, image: &str| {
        let mut template = postgres["spec"]["template"].clone();
        template["spec"]["containers"][0]["image"] = json!(image);
        template["$patch"] = json!("replace");
        json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {
                "name": format!("postgres-{n}a2b3c4d5"), "namespace": "ai-film",
                "labels": {"controller.kubernetes.io/hash": format!("{n}a2b3c4d5")},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "postgres",
                                     "uid": uid, "controller": true, "blockOwnerDeletion": true}]
            },
            "data": {"spec": {"template": template}},
            "revision": n
        })
    };
    env.fake.apply(revision(1, "postgres:17.2-bookworm"));
    env.fake.apply(revision(2, "postgres:17.3-bookworm"));
    let (source, _, images, _) = env.revision("StatefulSet", "postgres", 2).await;
    assert_eq!(source, "cluster");
    assert_eq!(images, vec!["postgres:17.3-bookworm".to_owned()]);
    let lead = env.app.signed_in("lead@studio.test", "lead").await;
    let form = [
        ("kind", "StatefulSet"),
        ("name", "postgres"),
        ("revision", "2"),
    ];
    let diff: Value = env
        .app
        .call(&lead, "/api/lead/deploy_diff", &form)
        .await
        .json()
        .await
        .unwrap();
    let changed: Vec<&Value> = diff["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["change"] != "Same")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0]["right"][1]
        .as_str()
        .unwrap()
        .contains("postgres:17.3-bookworm"));
    assert!(
        !diff["rows"].to_string().contains("$patch"),
        "the ControllerRevision's patch directive is not part of the template"
    );
    // Restarting a StatefulSet is kubectl's patch too.
    let (status, body) = env.restart(&lead, "StatefulSet", "postgres", "").await;
    assert_eq!(status, 200, "{body}");
    let sent: Vec<_> = env
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == "patch" && r.resource == "statefulsets")
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].body.as_ref().unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_string()
    );
    env.stop().await;
}
