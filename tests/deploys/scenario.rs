//! The whole story on one workload: a rollout by CI, one by hand, one by Slate, the
//! timeline with its filters, a diff, and a rollback after the ReplicaSet was pruned,
//! compared with what kubectl leaves.

use serde_json::{json, Value};
use slate_tests::ADMIN_EMAIL;

use super::{kubectl_undo, Env};

async fn view(env: &Env, client: &reqwest::Client, filter: &[(&str, &str)]) -> Value {
    let form: Vec<(String, &str)> = filter
        .iter()
        .map(|(k, v)| (format!("filter[{k}]"), *v))
        .collect();
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let res = env.app.call(client, "/api/lead/deploys_view", &form).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn ci_by_hand_and_slate_then_a_rollback_after_pruning() {
    let env = Env::start().await;
    env.change("langgraph", |d| {
        d["spec"]["revisionHistoryLimit"] = json!(2)
    });
    env.revision("Deployment", "langgraph", 1).await;
    let first_rs = env.replicasets("langgraph")[0].1.clone();
    let ci = env
        .app
        .create_token("github actions", "ci", ADMIN_EMAIL)
        .await;

    // 1. CI: reports the run, applies a new image, reports success.
    let report = |phase: &str| {
        json!({"run_id": "5120-1", "sha": "9e1f00c2b3a4d5e6f708192a3b4c5d6e7f809102", "branch": "main",
               "run_url": "https://github.com/studio/pipeline/actions/runs/5120", "actor": "mara",
               "environment": "prod", "images": ["ghcr.io/studio/langgraph:0.3.1"], "phase": phase})
    };
    let post = |phase: &str| {
        env.app
            .bare_client()
            .post(env.app.url("/api/deploys"))
            .bearer_auth(&ci)
            .json(&report(phase))
            .send()
    };
    assert_eq!(post("started").await.unwrap().status(), 201);
    env.set_image("langgraph", "ghcr.io/studio/langgraph:0.3.1");
    let (source, actor, _, run) = env.revision("Deployment", "langgraph", 2).await;
    assert_eq!(
        (source.as_str(), actor.as_deref(), run.as_deref()),
        ("ci", Some("mara"), Some("5120-1"))
    );
    assert_eq!(post("succeeded").await.unwrap().status(), 200);

    // 2. By hand: kubectl set env.
    env.change("langgraph", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "LOG_LEVEL", "value": "debug"}]);
    });
    let (source, actor, ..) = env.revision("Deployment", "langgraph", 3).await;
    assert_eq!((source.as_str(), actor), ("cluster", None));

    // 3. Slate: a lead restarts it.
    let lead = env.app.signed_in("lead@studio.test", "lead").await;
    let (status, body) = env
        .restart(&lead, "Deployment", "langgraph", "reload prompts")
        .await;
    assert_eq!(status, 200, "{body}");
    let (source, actor, ..) = env.revision("Deployment", "langgraph", 4).await;
    assert_eq!(
        (source.as_str(), actor.as_deref()),
        ("slate", Some("lead@studio.test"))
    );
    // Revision 1's ReplicaSet is gone (two old ones kept).
    let kept: Vec<i64> = env
        .replicasets("langgraph")
        .iter()
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(kept, vec![2, 3, 4]);

    // The timeline of this workload, and its filters.
    let all = view(
        &env,
        &lead,
        &[
            ("workload", "Deployment/langgraph"),
            ("source", ""),
            ("actor", ""),
            ("outcome", ""),
        ],
    )
    .await;
    let titles: Vec<(String, String)> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_owned(),
                e["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for wanted in [
        ("slate", "Revision 4"),
        ("slate", "restart"),
        ("cluster", "Revision 3"),
        ("ci", "Revision 2"),
        ("ci", "CI deploy of 9e1f00c to prod"),
        ("cluster", "Revision 1"),
    ] {
        assert!(
            titles.iter().any(|(s, t)| s == wanted.0 && t == wanted.1),
            "{wanted:?} in {titles:?}"
        );
    }
    let by_ci = view(
        &env,
        &lead,
        &[
            ("workload", "Deployment/langgraph"),
            ("source", "ci"),
            ("actor", ""),
            ("outcome", ""),
        ],
    )
    .await;
    assert!(by_ci["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["source"] == "ci"));
    assert_eq!(by_ci["entries"].as_array().unwrap().len(), 2);
    let by_lead = view(
        &env,
        &lead,
        &[
            ("workload", ""),
            ("source", ""),
            ("actor", "lead@"),
            ("outcome", ""),
        ],
    )
    .await;
    assert!(!by_lead["entries"].as_array().unwrap().is_empty());
    assert!(by_lead["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"].as_str().unwrap().contains("lead@")));
    let rollout = all["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "langgraph")
        .unwrap()
        .clone();
    assert_eq!(rollout["revision"], 4);
    assert_eq!(rollout["state"], "complete");
    assert_eq!(all["can_restart"], true);
    assert_eq!(all["can_rollback"], false, "a lead cannot roll back");

    // A diff of the hand-made revision against the CI one: the env block was added.
    let diff: Value = env.diff(&lead, "langgraph", "3", None).await.1;
    let changed: Vec<String> = diff["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["change"] != "Same")
        .map(|r| r["right"][1].as_str().unwrap_or_default().trim().to_owned())
        .collect();
    assert!(
        changed.iter().any(|l| l.contains("LOG_LEVEL")),
        "{changed:?}"
    );
    assert_eq!(diff["left_label"], "revision 2");

    // Rollback to revision 1 after its ReplicaSet was pruned: from the stored template.
    let admin = env.app.signed_in(ADMIN_EMAIL, "admin").await;
    let before = env.deployment("langgraph");
    let (status, body) = env
        .rollback(&admin, "langgraph", "1", "0.3.1 loses the graph")
        .await;
    assert_eq!(status, 200, "{body}");
    let expected = kubectl_undo(
        &before,
        &first_rs["spec"]["template"],
        &first_rs["metadata"]["annotations"],
    );
    let after = env.deployment("langgraph");
    assert_eq!(after["spec"]["template"], expected["spec"]["template"]);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut()
            .unwrap()
            .remove("deployment.kubernetes.io/revision");
        v
    };
    assert_eq!(
        strip(&after["metadata"]["annotations"]),
        strip(&expected["metadata"]["annotations"])
    );
    let (source, actor, images, _) = env.revision("Deployment", "langgraph", 5).await;
    assert_eq!(
        (source.as_str(), actor.as_deref()),
        ("slate", Some(ADMIN_EMAIL))
    );
    assert_eq!(images, env.revision("Deployment", "langgraph", 1).await.2);
    env.stop().await;
}
