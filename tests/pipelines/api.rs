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

    // Resubmit with one change: same seed, same version, the new count (cleo may not).
    let (status, _) = post(
        &app,
        &cleo,
        &format!("/api/runs/{id}/resubmit"),
        json!({"params": {"count": 2}}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(app.count("select count(*) from runs").await, 1);
    let (status, again) = post(
        &app,
        &script,
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
    assert_eq!(copy["submitted_by"], ADMIN_EMAIL);
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

#[tokio::test]
async fn only_the_submitter_leads_and_admins_may_run_a_run_again() {
    let app = spawn_app_with(|c| {
        c.local_stages = 0;
        c.comfyui_prompts = 0;
    })
    .await;
    let dana = app.signed_in("dana@studio.test", "creator").await;
    let cleo = app.signed_in("cleo@studio.test", "creator").await;
    let lena = app.signed_in("lena@studio.test", "lead").await;
    let tokens = [
        app.create_token("dana's", "api", "dana@studio.test").await,
        app.create_token("cleo's", "api", "cleo@studio.test").await,
        app.create_token("lena's", "api", "lena@studio.test").await,
    ];
    let [dana_token, cleo_token, lena_token] = &tokens;
    let (status, created) = post(
        &app,
        dana_token,
        "/api/runs",
        json!({"template": "keyframes-to-animatic", "params": {"prompt": "a fox", "count": 2}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let resubmit = format!("/api/runs/{id}/resubmit");
    let runs = || app.count("select count(*) from runs");
    let resubmits = || app.count("select count(*) from runs where resubmitted_from is not null");

    // Another creator: refused over HTTP, by the server function and by the form that
    // edits and runs again, and nothing is written or audited.
    let (status, err) = post(&app, cleo_token, &resubmit, json!({})).await;
    assert_eq!(status, 403, "{err}");
    assert!(
        err.to_string().contains("Only the person who submitted"),
        "{err}"
    );
    let res = app.call(&cleo, "/api/resubmit_run", &[("id", &id)]).await;
    assert_eq!(res.status(), 403);
    let res = app
        .call(
            &cleo,
            "/api/template_form",
            &[("name", "keyframes-to-animatic"), ("from", &id)],
        )
        .await;
    assert_eq!(res.status(), 403);
    assert_eq!(runs().await, 1);
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'run.submit'")
            .await,
        1
    );
    // Nor may she touch it in any other way (a run that is not there is 404 for all).
    let (status, _) = post(
        &app,
        cleo_token,
        &format!("/api/runs/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);
    let res = app.call(&cleo, "/api/cancel_run", &[("id", &id)]).await;
    assert_eq!(res.status(), 403);
    let nowhere = uuid::Uuid::now_v7().to_string();
    let (status, _) = post(
        &app,
        cleo_token,
        &format!("/api/runs/{nowhere}/resubmit"),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let res = app
        .call(&cleo, "/api/resubmit_run", &[("id", &nowhere)])
        .await;
    assert_eq!(res.status(), 404);
    // She sees it, and the page offers her no change.
    let res = app.call(&cleo, "/api/run_detail", &[("id", &id)]).await;
    assert_eq!(res.status(), 200);
    let detail: Value = res.json().await.unwrap();
    assert_eq!(detail["can_change"], false);

    // Its submitter and a lead may, both ways in.
    for token in [dana_token, lena_token] {
        let (status, again) = post(&app, token, &resubmit, json!({})).await;
        assert_eq!(status, 201, "{again}");
    }
    for client in [&dana, &lena] {
        let res = app.call(client, "/api/resubmit_run", &[("id", &id)]).await;
        assert_eq!(res.status(), 200);
        let res = app
            .call(
                client,
                "/api/template_form",
                &[("name", "keyframes-to-animatic"), ("from", &id)],
            )
            .await;
        assert_eq!(res.status(), 200);
    }
    assert_eq!(resubmits().await, 4);
    let by: Vec<String> = sqlx::query_scalar(
        "select u.email from runs r join users u on u.id = r.submitted_by
         where r.resubmitted_from is not null order by r.created_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        by,
        [
            "dana@studio.test",
            "lena@studio.test",
            "dana@studio.test",
            "lena@studio.test"
        ]
    );
    app.stop().await;
}
