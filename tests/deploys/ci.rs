//! `POST /api/deploys`: who may call it, what it accepts, idempotency by run id.

use serde_json::{json, Value};
use slate_tests::{spawn_app, TestApp, ADMIN_EMAIL};

use super::text;

const SHA: &str = "4f2a9c1e0b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e";

fn report(phase: &str) -> Value {
    json!({
        "run_id": "7731-1",
        "sha": SHA,
        "branch": "main",
        "run_url": "https://github.com/studio/slate/actions/runs/7731",
        "actor": "mara",
        "environment": "prod",
        "images": ["ghcr.io/studio/slate:4f2a9c1"],
        "phase": phase,
    })
}

async fn post(app: &TestApp, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = app.bare_client().post(app.url("/api/deploys")).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

async fn stored(app: &TestApp) -> Vec<(String, String, String, Value)> {
    sqlx::query_as("select run_id, sha, phase, phases from ci_deploys order by run_id")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn only_a_live_ci_token_may_report() {
    let app = spawn_app().await;
    let ci = app.create_token("github actions", "ci", ADMIN_EMAIL).await;
    let api = app.create_token("render script", "api", ADMIN_EMAIL).await;
    let colab = app.create_token("notebook", "colab", ADMIN_EMAIL).await;

    let (status, body) = text(post(&app, None, &report("started")).await).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = text(post(&app, Some(&api), &report("started")).await).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("ci-scoped"), "{body}");
    let (status, _) = text(post(&app, Some(&colab), &report("started")).await).await;
    assert_eq!(status, 403);
    let (status, _) =
        text(post(&app, Some("slate_not-a-real-token"), &report("started")).await).await;
    assert_eq!(status, 401);
    // A signed-in browser session is not CI either.
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let res = admin
        .post(app.url("/api/deploys"))
        .json(&report("started"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(stored(&app).await.is_empty(), "nothing was stored");

    // Revoked: refused from then on.
    assert_eq!(
        post(&app, Some(&ci), &report("started")).await.status(),
        201
    );
    let id: uuid::Uuid =
        sqlx::query_scalar("select id from api_tokens where name = 'github actions'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let res = app
        .call(
            &admin,
            "/api/admin/revoke_token",
            &[("id", &id.to_string())],
        )
        .await;
    assert_eq!(res.status(), 200);
    let (status, _) = text(post(&app, Some(&ci), &report("succeeded")).await).await;
    assert_eq!(status, 401);
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].2, "started",
        "the revoked token's report changed nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_reports_get_a_clear_error_and_change_nothing() {
    let app = spawn_app().await;
    let ci = app.create_token("github actions", "ci", ADMIN_EMAIL).await;
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut missing_sha = report("started");
    missing_sha.as_object_mut().unwrap().remove("sha");
    cases.push((missing_sha, "sha is missing"));
    let mut short_sha = report("started");
    short_sha["sha"] = json!("xyz");
    cases.push((short_sha, "not a commit SHA"));
    let mut bad_image = report("started");
    bad_image["images"] = json!(["ghcr.io/studio/slate:ok", "ghcr.io/Studio/slate latest"]);
    cases.push((bad_image, "is not an image reference"));
    let mut unpinned = report("started");
    unpinned["images"] = json!(["ghcr.io/studio/slate"]);
    cases.push((unpinned, "is not an image reference"));
    let mut phase = report("started");
    phase["phase"] = json!("deployed");
    cases.push((phase, "phase \\\"deployed\\\""));
    let mut no_run = report("started");
    no_run["run_id"] = json!("  ");
    cases.push((no_run, "run_id is missing"));
    let mut unknown = report("started");
    unknown["colour"] = json!("blue");
    cases.push((unknown, "unknown field"));
    let mut not_a_list = report("started");
    not_a_list["images"] = json!("ghcr.io/studio/slate:1");
    cases.push((not_a_list, "invalid type"));
    let mut url = report("started");
    url["run_url"] = json!("javascript:alert(1)");
    cases.push((url, "run_url"));
    for (body, expected) in cases {
        let (status, text) = text(post(&app, Some(&ci), &body).await).await;
        // A body that does not decode is a bad request; values that do not pass
        // validation are unprocessable, as everywhere in Slate.
        let decodes = !(text.contains("unknown field") || text.contains("invalid type"));
        assert_eq!(status, if decodes { 422 } else { 400 }, "{body}: {text}");
        assert!(
            text.contains(expected),
            "{body}: {text} should say {expected}"
        );
    }
    let res = app
        .bare_client()
        .post(app.url("/api/deploys"))
        .bearer_auth(&ci)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(stored(&app).await.is_empty());
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'deploy.ci_reported'")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_run_is_recorded_once_per_phase_and_finishes_once() {
    let app = spawn_app().await;
    let ci = app.create_token("github actions", "ci", ADMIN_EMAIL).await;
    let first = post(&app, Some(&ci), &report("started")).await;
    assert_eq!(first.status(), 201);
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["duplicate"], false);

    // The same report again: said so, nothing changed.
    let again = post(&app, Some(&ci), &report("started")).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["duplicate"], true);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("nothing changed"));
    let before = stored(&app).await;
    assert_eq!(before[0].3.as_array().unwrap().len(), 1);

    // The same run with another commit: a conflict, nothing changed.
    let mut other = report("succeeded");
    other["sha"] = json!("0000000000000000000000000000000000000000");
    let (status, said) = text(post(&app, Some(&ci), &other).await).await;
    assert_eq!(status, 409, "{said}");
    assert!(
        said.contains("was reported for commit 4f2a9c1e0b7d"),
        "{said}"
    );
    assert_eq!(stored(&app).await, before);

    // It succeeds; then it cannot fail any more.
    assert_eq!(
        post(&app, Some(&ci), &report("succeeded")).await.status(),
        200
    );
    let (status, said) = text(post(&app, Some(&ci), &report("failed")).await).await;
    assert_eq!(status, 409, "{said}");
    assert!(said.contains("already finished as succeeded"), "{said}");
    let rows = stored(&app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].2, "succeeded");
    let phases: Vec<&str> = rows[0]
        .3
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["started", "succeeded"]);
    // Each change is audited with the token that made it; refusals are not changes.
    let audited: Vec<String> = sqlx::query_scalar(
        "select actor_label from audit_log where action = 'deploy.ci_reported' order by at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited.len(), 2);
    assert!(audited[0].contains("github actions"), "{audited:?}");
    app.stop().await;
}

/// The example workflow's reporter (`scripts/report-deploy`), run as the workflow runs it.
#[tokio::test]
async fn the_example_workflows_reporter_is_understood() {
    let app = spawn_app().await;
    let ci = app.create_token("github actions", "ci", ADMIN_EMAIL).await;
    let root = slate_tests::root();
    let workflow: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join(".github/workflows/deploy.yml")).unwrap(),
    )
    .unwrap();
    let steps: Vec<String> = workflow["jobs"]["deploy"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect();
    for phase in ["started", "succeeded", "failed"] {
        assert!(
            steps
                .iter()
                .any(|r| r.contains(&format!("scripts/report-deploy {phase} \"$IMAGE\""))),
            "the workflow reports {phase}"
        );
    }
    // On a blocking thread: the server answers on this test's runtime meanwhile.
    let run = |phase: &str, image: &str| {
        let mut command = std::process::Command::new(root.join("scripts/report-deploy"));
        command
            .args([phase, image])
            .env("SLATE_URL", app.url(""))
            .env("SLATE_CI_TOKEN", &ci)
            .env("DEPLOY_ENV", "prod")
            .env("GITHUB_SHA", SHA)
            .env("GITHUB_REF_NAME", "main")
            .env("GITHUB_RUN_ID", "8800")
            .env("GITHUB_RUN_ATTEMPT", "2")
            .env("GITHUB_ACTOR", "mara")
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_REPOSITORY", "studio/slate");
        async move {
            tokio::task::spawn_blocking(move || {
                command.output().expect("python3 runs the reporter")
            })
            .await
            .unwrap()
        }
    };
    let image = "ghcr.io/studio/slate:sha-4f2a9c1e0b7d";
    let started = run("started", image).await;
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(String::from_utf8_lossy(&started.stdout).starts_with("201"));
    assert!(run("succeeded", image).await.status.success());
    let again = run("succeeded", image).await;
    assert!(again.status.success(), "a repeated report is not an error");
    assert!(String::from_utf8_lossy(&again.stdout).contains("\"duplicate\":true"));
    let refused = run("failed", "not an image").await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("422"));
    let row: (String, String, String, String, Vec<String>) =
        sqlx::query_as("select run_id, branch, run_url, phase, images from ci_deploys")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        row,
        (
            "8800-2".to_owned(),
            "main".to_owned(),
            "https://github.com/studio/slate/actions/runs/8800".to_owned(),
            "succeeded".to_owned(),
            vec![image.to_owned()]
        )
    );
    app.stop().await;
}
