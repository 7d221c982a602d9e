//! The notebook's webhook over HTTP against the real server: signatures (bad, stale,
//! replayed, rotated), validation, ordering, idempotency, rate limit, verification.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use server::audit::Who;
use server::colab::signature::sign;
use slate_tests::fake_comfy::{FakeComfy, Mode};
use slate_tests::{eventually, seen, spawn_app_with, TestApp};

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
    })
    .await
}

async fn new_secret(app: &TestApp) -> String {
    let colab = server::colab::Colab::new(
        app.pool.clone(),
        server::comfyui::address::HostRules::parse("", true),
        Duration::from_secs(2),
    );
    colab.rotate_secret(&Who::cli()).await.unwrap()
}

async fn post(app: &TestApp, signature: Option<String>, body: &str) -> reqwest::Response {
    let mut req = app
        .bare_client()
        .post(app.url("/api/colab/endpoint"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("x-slate-signature", s);
    }
    req.send().await.unwrap()
}

fn report(event: &str, event_id: &str, url: Option<&str>) -> String {
    let mut v = json!({"event": event, "event_id": event_id, "notebook_id": "nb-1"});
    if let Some(u) = url {
        v["url"] = json!(u);
    }
    v.to_string()
}

async fn send(app: &TestApp, secret: &str, t: i64, body: &str) -> reqwest::Response {
    post(app, Some(sign(secret.as_bytes(), t, body.as_bytes())), body).await
}

async fn endpoints(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("select url, state from colab_endpoints order by received_at")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

async fn wait_state(app: &TestApp, url: &str, want: &str) {
    eventually(
        &format!("{url} to become {want}"),
        Duration::from_secs(10),
        || async {
            seen(endpoints(app).await, |all| {
                all.iter().any(|(u, s)| u == url && s == want)
            })
        },
    )
    .await;
}

#[tokio::test]
async fn a_signed_up_is_verified_and_recorded() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    comfy.warm_up(2, 502);
    let body = report("up", "ev-1", Some(&format!("  | {} |  ", comfy.url())));
    let res = send(&app, &secret, Utc::now().timestamp(), &body).await;
    assert_eq!(res.status(), 202);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["outcome"], "verifying");
    wait_state(&app, &comfy.url(), "healthy").await;
    let verification: Value = sqlx::query_scalar("select verification from colab_endpoints")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(verification["gpu"], "Tesla T4");
    assert_eq!(verification["comfyui_version"], "0.3.40");
    assert_eq!(
        app.count("select count(*) from endpoint_checks where kind = 'verify' and ok")
            .await,
        1
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.endpoint_reported'")
            .await,
        1
    );
    // The URL is a credential: the audit log has only its first word.
    let target: String =
        sqlx::query_scalar("select target from audit_log where action = 'colab.endpoint_reported'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(!target.contains(&comfy.addr.port().to_string()), "{target}");

    // Heartbeats touch it; down ends it.
    let t = Utc::now().timestamp();
    let res = send(
        &app,
        &secret,
        t,
        &report("heartbeat", "ev-2", Some(&comfy.url())),
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = send(
        &app,
        &secret,
        t,
        &report("down", "ev-3", Some(&comfy.url())),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(endpoints(&app).await, [(comfy.url(), "down".to_owned())]);
    app.stop().await;
}

#[tokio::test]
async fn bad_signatures_are_refused_and_change_nothing() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    let body = report("up", "ev-x", Some(&comfy.url()));
    let now = Utc::now().timestamp();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("none", None),
        ("malformed", Some("v1=abc".into())),
        (
            "wrong secret",
            Some(sign(b"not-the-secret", now, body.as_bytes())),
        ),
        ("other body", Some(sign(secret.as_bytes(), now, b"{}"))),
        (
            "stale",
            // Well past the 300 s window (the exact edge is a unit test: here seconds pass).
            Some(sign(secret.as_bytes(), now - 400, body.as_bytes())),
        ),
        (
            "future",
            Some(sign(secret.as_bytes(), now + 400, body.as_bytes())),
        ),
    ];
    for (what, signature) in cases {
        let res = post(&app, signature, &body).await;
        assert_eq!(res.status(), 401, "{what}");
        let text = res.text().await.unwrap();
        assert!(
            !text.contains("stale") && !text.contains("secret matches"),
            "no reason in the answer: {text}"
        );
    }
    assert!(endpoints(&app).await.is_empty());
    assert_eq!(
        comfy.hits(),
        0,
        "no outbound request before the signature is checked"
    );
    assert_eq!(
        app.count("select count(*) from colab_webhook_events").await,
        0
    );

    // Replay: the same signed event twice.
    let good = sign(secret.as_bytes(), now, body.as_bytes());
    assert_eq!(post(&app, Some(good.clone()), &body).await.status(), 202);
    wait_state(&app, &comfy.url(), "healthy").await;
    assert_eq!(post(&app, Some(good), &body).await.status(), 401);
    assert_eq!(endpoints(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn two_secrets_work_during_a_rotation_and_the_old_one_then_stops() {
    let app = app().await;
    let old = new_secret(&app).await;
    let new = new_secret(&app).await;
    assert_ne!(old, new);
    let comfy = FakeComfy::start(Mode::Current).await;
    let t = Utc::now().timestamp();
    assert_eq!(
        send(&app, &old, t, &report("up", "r-1", Some(&comfy.url())))
            .await
            .status(),
        202
    );
    assert_eq!(
        send(
            &app,
            &new,
            t,
            &report("heartbeat", "r-2", Some(&comfy.url()))
        )
        .await
        .status(),
        200
    );
    sqlx::query("update colab_webhook_secrets set retires_at = now() - interval '1 second' where secret = $1")
        .bind(&old)
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        send(
            &app,
            &old,
            t,
            &report("heartbeat", "r-3", Some(&comfy.url()))
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        send(
            &app,
            &new,
            t,
            &report("heartbeat", "r-4", Some(&comfy.url()))
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.webhook_secret_rotated'")
            .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn events_apply_in_the_order_they_were_signed() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let (a, b, c) = (
        FakeComfy::start(Mode::Current).await,
        FakeComfy::start(Mode::Current).await,
        FakeComfy::start(Mode::Current).await,
    );
    let t = Utc::now().timestamp();
    assert_eq!(
        send(&app, &secret, t - 20, &report("up", "o-1", Some(&a.url())))
            .await
            .status(),
        202
    );
    assert_eq!(
        send(&app, &secret, t - 5, &report("up", "o-2", Some(&b.url())))
            .await
            .status(),
        202
    );
    // A late `up` signed before the newest one: recorded, but it replaces nothing.
    let res = send(&app, &secret, t - 10, &report("up", "o-3", Some(&c.url()))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "stale");
    wait_state(&app, &b.url(), "healthy").await;
    let states = endpoints(&app).await;
    assert_eq!(
        states,
        [
            (a.url(), "replaced".to_owned()),
            (b.url(), "healthy".to_owned())
        ]
    );
    // A `down` for an endpoint that is no longer current changes nothing either.
    let res = send(&app, &secret, t, &report("down", "o-4", Some(&a.url()))).await;
    assert_eq!(res.json::<Value>().await.unwrap()["outcome"], "ignored");
    assert_eq!(endpoints(&app).await, states);
    app.stop().await;
}

#[tokio::test]
async fn bad_reports_get_clear_errors_and_change_nothing() {
    let app = app().await;
    // No secret yet: the webhook is not set up.
    let t = Utc::now().timestamp();
    let res = send(
        &app,
        "anything",
        t,
        &report("up", "b-0", Some("https://a.trycloudflare.com")),
    )
    .await;
    assert_eq!(res.status(), 503);
    let secret = new_secret(&app).await;
    for (body, want) in [
        (report("up", "b-1", None), "needs the url"),
        (report("sideways", "b-2", None), "event must be"),
        (report("up", "b-3", Some("http://quiet-river.trycloudflare.com")), "only https"),
        (report("up", "b-4", Some("https://10.0.0.8")), "not a public address"),
        (report("up", "b-5", Some("https://evil.example.com")), "not allowed"),
        (report("up", "", Some("https://a.trycloudflare.com")), "event_id"),
        (r#"{"event": "up""#.to_owned(), "not valid"),
        (json!({"event": "up", "event_id": "b-6", "notebook_id": "n", "url": "https://a.trycloudflare.com", "extra": 1}).to_string(), "not valid"),
    ] {
        let res = send(&app, &secret, t, &body).await;
        assert_eq!(res.status(), 400, "{body}");
        let text = res.text().await.unwrap();
        assert!(text.contains(want), "{body}: {text}");
    }
    let huge = report(
        "up",
        "b-7",
        Some(&format!("https://{}.trycloudflare.com", "a".repeat(9000))),
    );
    assert_eq!(send(&app, &secret, t, &huge).await.status(), 413);
    assert!(endpoints(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_is_not_comfyui_is_rejected() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Html).await;
    let t = Utc::now().timestamp();
    assert_eq!(
        send(&app, &secret, t, &report("up", "n-1", Some(&comfy.url())))
            .await
            .status(),
        202
    );
    wait_state(&app, &comfy.url(), "rejected").await;
    let (class, detail): (String, String) =
        sqlx::query_as("select class, detail from endpoint_checks")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(class, "not-comfyui");
    assert!(detail.contains("HTML page"));
    app.stop().await;
}

#[tokio::test]
async fn the_webhook_is_rate_limited() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let t = Utc::now().timestamp();
    let mut limited = None;
    for i in 0..40 {
        let res = send(
            &app,
            &secret,
            t,
            &report("heartbeat", &format!("h-{i}"), None),
        )
        .await;
        if res.status() == 429 {
            limited = Some((i, res.headers().get("retry-after").cloned()));
            break;
        }
        assert_eq!(res.status(), 200);
    }
    let (at, retry_after) = limited.expect("refused at some point");
    assert_eq!(at, 30, "30 reports a minute from one address");
    assert!(retry_after.is_some());
    app.stop().await;
}

#[tokio::test]
async fn a_flood_of_unsigned_posts_does_not_hold_up_the_notebook() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let t = Utc::now().timestamp();
    // From the notebook's own address: no signature, and signatures by a wrong secret.
    let flood = (0..60).map(|i| {
        let body = report("heartbeat", &format!("f-{i}"), None);
        let signature = (i % 2 == 0).then(|| sign(b"not the secret", t, body.as_bytes()));
        let app = &app;
        async move { post(app, signature, &body).await.status().as_u16() }
    });
    let answers = futures::future::join_all(flood).await;
    assert!(
        answers.iter().all(|s| *s == 401 || *s == 429),
        "{answers:?}"
    );
    assert!(
        answers.contains(&429),
        "the flood is limited in its own bucket: {answers:?}"
    );

    let res = send(&app, &secret, t, &report("heartbeat", "h-1", None)).await;
    assert!(res.status().is_success(), "{}", res.status());
    app.stop().await;
}

#[tokio::test]
async fn an_accepted_endpoint_is_published_to_the_cluster_and_audited() {
    use slate_tests::fake_kube::FakeKube;
    let fake = FakeKube::start().await;
    fake.enable_deployment_controller();
    slate_tests::kube_fixtures::apply_settled_base(&fake);
    let kubeconfig = std::env::temp_dir().join(format!(
        "slate-colab-kube-{}",
        uuid::Uuid::now_v7().simple()
    ));
    fake.write_kubeconfig(&kubeconfig);
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.kube = server::config::KubeMode::Auto;
        c.kubeconfig = Some(kubeconfig.display().to_string());
    })
    .await;
    let secret = new_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    let t = Utc::now().timestamp();
    assert_eq!(
        send(&app, &secret, t, &report("up", "p-1", Some(&comfy.url())))
            .await
            .status(),
        202
    );
    wait_state(&app, &comfy.url(), "healthy").await;
    // The audit entry is written once the whole publication (Secret, then restarts) is done.
    eventually(
        "the audit entry colab.endpoint_published",
        Duration::from_secs(5),
        || async {
            let entries = app
                .count("select count(*) from audit_log where action = 'colab.endpoint_published'")
                .await;
            seen(entries, |n| *n == 1)
        },
    )
    .await;
    let published = match fake.get("v1", "Secret", "ai-film", "comfyui-endpoint") {
        Some(p) => p,
        None => {
            let rows: Vec<(Option<Value>, String)> =
                sqlx::query_as("select publication, state from colab_endpoints")
                    .fetch_all(&app.pool)
                    .await
                    .unwrap();
            panic!("the Secret was not written: {rows:?}");
        }
    };
    assert!(published["data"]["COMFYUI_URL"].is_string());
    let comfyui = fake
        .get("apps/v1", "Deployment", "ai-film", "comfyui")
        .unwrap();
    assert!(comfyui["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
    let publication: Value = sqlx::query_scalar(
        "select publication from colab_endpoints where published_at is not null",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(publication["restarted"], json!(["comfyui"]));
    // Recorded as Slate-initiated deploy events: the write and the restart.
    let events: Vec<(String, String, String, String)> = sqlx::query_as(
        "select source, action, kind || '/' || name, outcome from deploy_events order by action",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            (
                "slate".into(),
                "publish-endpoint".into(),
                "Secret/comfyui-endpoint".into(),
                "done".into()
            ),
            (
                "slate".into(),
                "restart".into(),
                "Deployment/comfyui".into(),
                "done".into()
            ),
        ]
    );
    // The restart's new revision of ComfyUI is attributed to the publication.
    // A revision is first stored as the cluster's, then attributed when its cause is known.
    let attributed = eventually("ComfyUI's revision 2 to be attributed", Duration::from_secs(5), || async {
        let row = sqlx::query_as::<_, (String, Option<String>)>(
            "select source, actor from deploy_revisions where workload = 'comfyui' and revision = 2",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        seen(row, |row| row.as_ref().is_some_and(|(source, _)| source != "cluster"))
    })
    .await;
    assert_eq!(
        attributed,
        Some(("slate".into(), Some("slate (colab endpoint)".into())))
    );
    app.stop().await;
    let _ = std::fs::remove_file(kubeconfig);
}

#[tokio::test]
async fn without_a_cluster_publication_is_skipped_and_says_so() {
    let app = app().await;
    let secret = new_secret(&app).await;
    let comfy = FakeComfy::start(Mode::Current).await;
    let t = Utc::now().timestamp();
    assert_eq!(
        send(&app, &secret, t, &report("up", "s-1", Some(&comfy.url())))
            .await
            .status(),
        202
    );
    wait_state(&app, &comfy.url(), "healthy").await;
    eventually(
        "the audit entry colab.endpoint_not_published",
        Duration::from_secs(5),
        || async {
            let entries = app
                .count(
                    "select count(*) from audit_log where action = 'colab.endpoint_not_published'",
                )
                .await;
            seen(entries, |n| *n == 1)
        },
    )
    .await;
    let publication: Value = sqlx::query_scalar("select publication from colab_endpoints")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(publication["skipped"]
        .as_str()
        .unwrap()
        .contains("not connected to Kubernetes"));
    app.stop().await;
}
