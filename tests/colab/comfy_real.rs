//! The Colab endpoint against the real ComfyUI (`slate_tests::comfyui_peer`): the prober
//! and verification recognise it, the monitor's checks read its queue, and ComfyUI
//! restarted behind the same URL (Colab after an out-of-memory crash) comes back, both
//! when the monitor finds it answering again and when the notebook's heartbeats say so.

use std::time::Duration;

use server::comfyui::address::HostRules;
use server::comfyui::probe::Prober;
use slate_tests::comfyui_peer;
use slate_tests::{eventually, seen, spawn_app_with, TestApp};

/// ComfyUI on two shared cores starts in 5–30 s; the monitor needs three checks (one a
/// second here) to mark it down.
const START: Duration = Duration::from_secs(180);
const DOWN: Duration = Duration::from_secs(60);

fn loopback() -> Prober {
    Prober::new(HostRules::parse("", true))
}

async fn slate() -> TestApp {
    spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 120;
        c.colab_check_seconds = 1;
    })
    .await
}

/// The newest endpoint's URL and state.
async fn newest(app: &TestApp) -> Option<(String, String)> {
    sqlx::query_as("select url, state from colab_endpoints order by received_at desc limit 1")
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

async fn wait_state(app: &TestApp, what: &str, within: Duration, want: &str) {
    eventually(what, within, || async {
        seen(newest(app).await, |n| {
            n.as_ref().is_some_and(|n| n.1 == want)
        })
    })
    .await;
}

/// A signed report from the notebook; returns the answer's `outcome`.
async fn report(app: &TestApp, secret: &str, event: &str, event_id: &str, url: &str) -> String {
    let body =
        serde_json::json!({"event": event, "event_id": event_id, "notebook_id": "nb", "url": url})
            .to_string();
    let t = chrono::Utc::now().timestamp();
    let res = app
        .bare_client()
        .post(app.url("/api/colab/endpoint"))
        .header(
            "x-slate-signature",
            server::colab::signature::sign(secret.as_bytes(), t, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{event}: {}", res.status());
    let answer: serde_json::Value = res.json().await.unwrap();
    answer["outcome"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn comfy_real_is_recognised_verified_and_checked() {
    let peer = comfyui_peer::shared().await;
    let (stats, _) = loopback().system_stats(&peer.url()).await.unwrap();
    assert_eq!(stats.comfyui_version.as_deref(), Some("0.3.64"));
    assert_eq!(stats.gpu.as_deref(), Some("cpu"), "{stats:?}");
    assert!(stats.vram_total.is_some_and(|v| v > 0), "{stats:?}");
    assert!(stats
        .python_version
        .as_deref()
        .is_some_and(|v| v.starts_with("3.")));
    let (queue, _) = loopback().queue(&peer.url()).await.unwrap();
    assert!(queue.is_some(), "GET /prompt gives the queue length");
    // The heaviest answer of an idle ComfyUI, /object_info, fits the cap of a probe
    // (Slate never asks for it: it is expensive for ComfyUI).
    let object_info = peer.get("/object_info").await;
    eprintln!(
        "the real /object_info (core nodes only): {} bytes",
        object_info.len()
    );
    assert!(object_info.len() < server::comfyui::probe::MAX_BODY);
    let classes = loopback()
        .get_json(&peer.url(), "/object_info")
        .await
        .unwrap()
        .json
        .as_object()
        .map_or(0, |o| o.len());
    assert!(classes > 400, "{classes} node classes");

    let app = slate().await;
    let secret = slate_tests::colab_secret(&app).await;
    slate_tests::colab_up(&app, &secret, "v-1", &peer.url()).await;
    wait_state(&app, "the real ComfyUI to be verified", START, "healthy").await;
    let verification: serde_json::Value =
        sqlx::query_scalar("select verification from colab_endpoints where state = 'healthy'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(verification["comfyui_version"], "0.3.64");
    assert_eq!(verification["gpu"], "cpu");
    // The monitor's checks: GET /prompt, answered with the queue's length.
    let checks = eventually("three good health checks", START, || async {
        let n = app
            .count("select count(*) from endpoint_checks where kind = 'health' and ok and queue_remaining is not null and latency_ms is not null")
            .await;
        seen(n, |n| *n >= 3)
    })
    .await;
    assert!(checks >= 3);
    assert_eq!(
        app.count("select count(*) from endpoint_checks where not ok")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_restarted_behind_the_same_url_comes_back_for_the_monitor_and_for_heartbeats() {
    let peer = comfyui_peer::private().await;
    let app = slate().await;
    let secret = slate_tests::colab_secret(&app).await;
    slate_tests::colab_up(&app, &secret, "r-1", &peer.url()).await;
    wait_state(&app, "the endpoint to be verified", START, "healthy").await;

    // ComfyUI stops; three failed checks later the endpoint is down.
    peer.stop().await;
    wait_state(&app, "the endpoint to be marked down", DOWN, "down").await;
    // It starts again behind the same URL: the monitor finds it answering and it is
    // current again, without a report from the notebook.
    peer.start().await;
    wait_state(&app, "the endpoint to come back", START, "healthy").await;
    assert_eq!(newest(&app).await.unwrap().0, peer.url());
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.endpoint_back'")
            .await,
        1
    );

    // Again, and this time the notebook's heartbeat says it lives before the monitor
    // looks: the heartbeat is not ignored, the endpoint is verified again and current.
    peer.stop().await;
    wait_state(&app, "the endpoint to be marked down again", DOWN, "down").await;
    let outcome = report(&app, &secret, "heartbeat", "r-2", &peer.url()).await;
    assert_eq!(outcome, "verifying", "the heartbeat brings it back");
    peer.start().await;
    wait_state(&app, "the endpoint to be verified again", START, "healthy").await;
    let outcome = report(&app, &secret, "heartbeat", "r-3", &peer.url()).await;
    assert_eq!(outcome, "heartbeat", "and later heartbeats are its own");
    let states: Vec<(String, String)> =
        sqlx::query_as("select url, state from colab_endpoints order by received_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let url = peer.url();
    assert_eq!(
        states,
        [
            (url.clone(), "down".to_owned()),
            (url.clone(), "down".to_owned()),
            (url, "healthy".to_owned())
        ]
    );
    app.stop().await;
}
