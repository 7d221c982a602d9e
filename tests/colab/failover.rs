//! The failover scenario end to end, against the fake API server and fake ComfyUIs:
//! up → healthy → the tunnel dies → three failed checks → failover to the fallback,
//! published with kubectl's restart patch → a new `up` → switch to it.

use std::time::Duration;

use base64::Engine as _;
use server::audit::Who;
use slate_tests::fake_comfy::{FakeComfy, Mode};
use slate_tests::fake_kube::FakeKube;
use slate_tests::{eventually, seen, spawn_app_with, TestApp};

async fn published_url(fake: &FakeKube) -> Option<String> {
    let secret = fake.get("v1", "Secret", "ai-film", "comfyui-endpoint")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["COMFYUI_URL"].as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn restarts(fake: &FakeKube) -> usize {
    fake.requests()
        .into_iter()
        .filter(|r| {
            r.verb == "patch" && r.resource == "deployments" && r.name.as_deref() == Some("comfyui")
        })
        .count()
}

/// Waits until the Secret holds `url` and the consumers have been restarted `restarts`
/// times in all: a publication writes the Secret first and patches the Deployments after.
async fn wait_published(fake: &FakeKube, url: &str, restarts_so_far: usize) {
    eventually(
        &format!("{url} to be published with restart {restarts_so_far}"),
        Duration::from_secs(15),
        || async {
            let holds = published_url(fake).await;
            let restarted = restarts(fake);
            if holds.as_deref() == Some(url) && restarted >= restarts_so_far {
                assert_eq!(restarted, restarts_so_far, "one restart per publication");
                Ok(())
            } else {
                Err(format!("the Secret holds {holds:?}, restarts {restarted}"))
            }
        },
    )
    .await;
}

async fn current(app: &TestApp) -> Option<(String, String, String)> {
    sqlx::query_as(
        "select url, source, state from colab_endpoints where state in ('verifying', 'healthy')",
    )
    .fetch_optional(&app.pool)
    .await
    .unwrap()
}

/// The diagram's external box, once its health is `want`.
async fn external_box(app: &TestApp, admin: &reqwest::Client, want: &str) -> serde_json::Value {
    eventually(
        &format!("the external box to be {want}"),
        Duration::from_secs(10),
        || async {
            let t: serde_json::Value = app
                .call(admin, "/api/lead/topology", &[])
                .await
                .json()
                .await
                .unwrap();
            let external = t["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == "External/comfyui-colab")
                .cloned()
                .unwrap();
            seen(external, |e| e["health"] == want)
        },
    )
    .await
}

async fn up(app: &TestApp, secret: &str, id: &str, url: &str) {
    slate_tests::colab_up(app, secret, id, url).await
}

#[tokio::test]
async fn a_dead_tunnel_fails_over_and_a_new_up_takes_over_again() {
    let fake = FakeKube::start().await;
    slate_tests::kube_fixtures::apply_settled_base(&fake);
    let kubeconfig = std::env::temp_dir().join(format!(
        "slate-failover-kube-{}",
        uuid::Uuid::now_v7().simple()
    ));
    fake.write_kubeconfig(&kubeconfig);
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.colab_check_seconds = 1;
        c.kube = server::config::KubeMode::Auto;
        c.kubeconfig = Some(kubeconfig.display().to_string());
    })
    .await;
    let colab = server::colab::Colab::new(
        app.pool.clone(),
        server::comfyui::address::HostRules::parse("", true),
        Duration::from_secs(2),
    );
    let secret = colab.rotate_secret(&Who::cli()).await.unwrap();
    let (first, fallback, third) = (
        FakeComfy::start(Mode::Current).await,
        FakeComfy::start(Mode::Mid2024).await,
        FakeComfy::start(Mode::Current).await,
    );
    colab
        .set_fallback(&Who::cli(), Some(&fallback.url()))
        .await
        .unwrap();

    // Up, verified, published.
    up(&app, &secret, "f-1", &first.url()).await;
    wait_published(&fake, &first.url(), 1).await;

    // The tunnel dies: three failed checks later the fallback is current and published.
    first.set_mode(Mode::Cloudflare(530));
    wait_published(&fake, &fallback.url(), 2).await;
    assert_eq!(
        current(&app).await,
        Some((fallback.url(), "fallback".into(), "healthy".into()))
    );
    let (state, reason): (String, String) =
        sqlx::query_as("select state, end_reason from colab_endpoints where url = $1")
            .bind(first.url())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "down");
    assert!(
        reason.contains("3 checks failed in a row") && reason.contains("tunnel is gone"),
        "{reason}"
    );
    let failed: i64 = app.count("select count(*) from endpoint_checks where kind = 'health' and not ok and class = 'gone'").await;
    assert!(failed >= 3);
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.failover'")
            .await,
        1
    );

    // The notebook restarts with a new tunnel: it takes over from the fallback.
    up(&app, &secret, "f-2", &third.url()).await;
    wait_published(&fake, &third.url(), 3).await;
    assert_eq!(current(&app).await.map(|c| c.0), Some(third.url()));

    // The architecture diagram's external box follows the endpoint's health.
    let admin = app.signed_in(slate_tests::ADMIN_EMAIL, "admin").await;
    let external = external_box(&app, &admin, "healthy").await;
    assert_eq!(external["health"], "healthy", "{external}");
    assert_eq!(external["facts"][0], "Tesla T4");
    third.set_mode(Mode::Cloudflare(502));
    let external = external_box(&app, &admin, "degraded").await;
    assert_eq!(external["health"], "degraded", "{external}");
    assert!(
        external["reason"].as_str().unwrap().contains("restarting"),
        "{external}"
    );
    app.stop().await;
    let _ = std::fs::remove_file(kubeconfig);
}

#[tokio::test]
async fn busy_and_slow_answers_do_not_take_an_endpoint_down() {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
        c.colab_check_seconds = 1;
    })
    .await;
    let colab = server::colab::Colab::new(
        app.pool.clone(),
        server::comfyui::address::HostRules::parse("", true),
        Duration::from_secs(2),
    );
    let secret = colab.rotate_secret(&Who::cli()).await.unwrap();
    let comfy = FakeComfy::start(Mode::Current).await;
    up(&app, &secret, "b-1", &comfy.url()).await;
    eventually(
        "the endpoint to be healthy",
        Duration::from_secs(5),
        || async {
            seen(current(&app).await, |c| {
                c.as_ref().is_some_and(|c| c.2 == "healthy")
            })
        },
    )
    .await;
    comfy.set_mode(Mode::Cloudflare(429));
    eventually("four busy checks", Duration::from_secs(10), || async {
        let busy = app
            .count("select count(*) from endpoint_checks where class = 'busy'")
            .await;
        seen(busy, |n| *n >= 4)
    })
    .await;
    assert_eq!(
        current(&app).await.map(|c| c.2),
        Some("healthy".to_owned()),
        "429 means back off, not down"
    );
    app.stop().await;
}
