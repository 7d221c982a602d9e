//! The runs API over HTTP with API tokens: submit, read, cancel, retry, resubmit, and
//! the refusals (wrong types, another's run, finished runs), each changing nothing.

use serde_json::{json, Value};
use slate_tests::{spawn_app_with, TestApp, ADMIN_EMAIL};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let res = app
        .bare_client()
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let res = app
        .bare_client()
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_script_submits_follows_and_cancels_a_run_and_bad_calls_change_nothing() {
    // No dispatcher: runs stay where the API puts them.
    let app = spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await;
    let script = app.create_token("studio script", "api", ADMIN_EMAIL).await;
    app.create_user("cleo@studio.test", "creator").await;
    let cleo = app
        .create_token("cleo's script", "api", "cleo@studio.test")
        .await;

    let mut body =
        json!({"template": "keyframes-to-animatic", "params": {"prompt": "a fox", "count": 100}});
    let (status, err) = post(&app, &script, "/api/runs", body.clone()).await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err.to_string().contains("Keyframes must be from 1 to 64"),
        "{err}"
    );
    let (status, _) = post(
        &app,
        &script,
        "/api/runs",
        json!({"template": "keyframes-to-animatic", "colour": 1}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &app,
        &cleo,
        "/api/runs",
        json!({"template": "keyframes-to-animatic", "params": {"prompt": "x"}, "priority": 10}),
    )
    .await;
    assert_eq!(status, 403, "a creator cannot raise the priority");
    assert_eq!(app.count("select count(*) from runs").await, 0);

    body["params"]["count"] = json!(4);
    let (status, created) = post(&app, &script, "/api/runs", body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["url"], format!("/runs/{id}"));
    let (status, run) = get(&app, &script, &format!("/api/runs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(run["template"], "keyframes-to-animatic");
    assert_eq!(run["state"], "queued");
    assert_eq!(run["submitted_via"], "studio script");
    let stages: Vec<(&str, &str)> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(stages, [("keyframes", "queued"), ("animatic", "waiting")]);
    assert_eq!(get(&app, &script, "/api/runs/not-a-run").await.0, 404);

    // Another creator may not touch it; its submitter may cancel it, once.
    let (status, _) = post(&app, &cleo, &format!("/api/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = post(&app, &script, &format!("/api/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200);
    let (status, err) = post(&app, &script, &format!("/api/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 409, "{err}");
    assert!(err.to_string().contains("already finished"));
    let (_, run) = get(&app, &script, &format!("/api/runs/{id}")).await;
    assert_eq!(run["state"], "cancelled");
    assert!(run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["state"] == "cancelled"));

    // Retry: cleo may not; the admin's script may retry the cancelled first stage.
    let (status, _) = post(
        &app,
        &cleo,
        &format!("/api/runs/{id}/stages/keyframes/retry"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &app,
        &script,
        &format!("/api/runs/{id}/stages/nope/retry"),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &app,
        &script,
        &format!("/api/runs/{id}/stages/keyframes/retry"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, run) = get(&app, &script, &format!("/api/runs/{id}")).await;
    assert_eq!(run["stages"][0]["state"], "queued");
    assert_eq!(run["stages"][1]["state"], "waiting");

    // Resubmit with one change: same seed, same version, the new count.
    let (status, again) = post(
        &app,
        &cleo,
        &format!("/api/runs/{id}/resubmit"),
        json!({"params": {"count": 2}}),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    let (_, copy) = get(
        &app,
        &cleo,
        &format!("/api/runs/{}", again["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(copy["params"]["count"], 2);
    assert_eq!(copy["params"]["seed"], run["params"]["seed"]);
    assert_eq!(copy["resubmitted_from"], id);
    assert_eq!(copy["submitted_by"], "cleo@studio.test");
    let audited: Vec<String> =
        sqlx::query_scalar("select action from audit_log where action like 'run.%' order by at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        audited,
        ["run.submit", "run.cancel", "run.retry_stage", "run.submit"]
    );
    app.stop().await;
}
