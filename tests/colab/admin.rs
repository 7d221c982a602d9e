//! The admin side of the Colab endpoint over HTTP, and the generated notebook cell run
//! as a real Python script against Slate, with a stand-in for cloudflared.

use std::time::Duration;

use serde_json::Value;
use slate_tests::fake_comfy::{FakeComfy, Mode};
use slate_tests::{eventually, seen, spawn_app_with, TestApp, ADMIN_EMAIL};

async fn app() -> TestApp {
    spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = 2;
    })
    .await
}

#[tokio::test]
async fn admins_set_reveal_and_verify_endpoints_and_nobody_else_can() {
    let app = app().await;
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let overview: Value = app
        .call(&admin, "/api/admin/colab_overview", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(overview["current"].is_null());
    assert!(overview["webhook_url"]
        .as_str()
        .unwrap()
        .ends_with("/api/colab/endpoint"));

    // Bad addresses are refused with the reason and change nothing.
    for bad in [
        "http://quiet.trycloudflare.com",
        "https://169.254.169.254",
        "nonsense",
    ] {
        let res = app
            .call(&admin, "/api/admin/colab_set_endpoint", &[("url", bad)])
            .await;
        assert_eq!(res.status(), 422, "{bad}");
    }
    assert_eq!(app.count("select count(*) from colab_endpoints").await, 0);

    let comfy = FakeComfy::start(Mode::Current).await;
    let res = app
        .call(
            &admin,
            "/api/admin/colab_set_endpoint",
            &[("url", &comfy.url())],
        )
        .await;
    assert_eq!(res.status(), 200);
    let overview = eventually(
        "the endpoint to be healthy",
        Duration::from_secs(5),
        || async {
            let overview: Value = app
                .call(&admin, "/api/admin/colab_overview", &[])
                .await
                .json()
                .await
                .unwrap();
            seen(overview, |o| o["current"]["state"] == "healthy")
        },
    )
    .await;
    let current = &overview["current"];
    assert_eq!(current["state"], "healthy", "{overview}");
    assert_eq!(current["gpu"], "Tesla T4");
    assert_eq!(current["source"], "admin");
    // The page never gets the whole URL unless it is revealed (and that is audited).
    assert!(!overview
        .to_string()
        .contains(&comfy.addr.port().to_string()));
    let id = current["id"].as_str().unwrap().to_owned();
    let revealed: String = app
        .call(&admin, "/api/admin/colab_reveal", &[("id", &id)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(revealed, comfy.url());
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.endpoint_revealed'")
            .await,
        1
    );
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.endpoint_set'")
            .await,
        1
    );

    assert_eq!(
        app.call(&admin, "/api/admin/colab_reverify", &[])
            .await
            .status(),
        200
    );
    comfy.set_mode(Mode::Cloudflare(530));
    let res = app.call(&admin, "/api/admin/colab_reverify", &[]).await;
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().contains("tunnel is gone"));

    let res = app
        .call(
            &admin,
            "/api/admin/colab_set_fallback",
            &[("url", "https://10.0.0.1")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        .call(
            &admin,
            "/api/admin/colab_set_fallback",
            &[("url", "https://spare-one.trycloudflare.com")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let overview: Value = app
        .call(&admin, "/api/admin/colab_overview", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(overview["fallback"], "https://spare-…");

    // Leads and creators: refused.
    for (email, role) in [
        ("lead@studio.test", "lead"),
        ("creator@studio.test", "creator"),
    ] {
        let client = app.signed_in(email, role).await;
        for path in [
            "/api/admin/colab_overview",
            "/api/admin/colab_rotate_secret",
            "/api/admin/colab_set_endpoint",
        ] {
            assert_eq!(
                app.call(&client, path, &[("url", "https://x.trycloudflare.com")])
                    .await
                    .status(),
                403,
                "{role} {path}"
            );
        }
        assert_eq!(
            client
                .get(app.url("/admin/colab"))
                .send()
                .await
                .unwrap()
                .status(),
            403
        );
    }
    app.stop().await;
}

/// A stand-in for cloudflared: answers `/quicktunnel` on the metrics address with a
/// quick-tunnel hostname, until it is terminated.
const FAKE_CLOUDFLARED: &str = r#"#!/usr/bin/env python3
import http.server, json, sys
addr = sys.argv[sys.argv.index("--metrics") + 1]
host, port = addr.rsplit(":", 1)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"hostname": "quiet-river-test.trycloudflare.com"}).encode()
        self.send_response(200 if self.path == "/quicktunnel" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer((host, int(port)), H).serve_forever()
"#;

#[tokio::test]
async fn the_generated_notebook_cell_reports_up_heartbeat_and_down() {
    let app = app().await;
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let rotated: Value = app
        .call(&admin, "/api/admin/colab_rotate_secret", &[])
        .await
        .json()
        .await
        .unwrap();
    let secret = rotated["secret"].as_str().unwrap();
    let cell = rotated["cell"].as_str().unwrap();
    assert!(cell.contains(secret) && cell.contains("/api/colab/endpoint"));
    assert_eq!(
        app.count("select count(*) from audit_log where action = 'colab.webhook_secret_rotated'")
            .await,
        1
    );

    let dir =
        std::env::temp_dir().join(format!("slate-notebook-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("cloudflared");
    std::fs::write(&fake, FAKE_CLOUDFLARED).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The cell, then a little time for one heartbeat; at exit it says `down`.
    let script = format!("{cell}\ntime.sleep(2.5)\n");
    std::fs::write(dir.join("cell.py"), script).unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("python3")
        .arg(dir.join("cell.py"))
        .env("PATH", path)
        .env("SLATE_WEBHOOK", app.url("/api/colab/endpoint"))
        .env("CLOUDFLARED_METRICS", metrics.to_string())
        .env("SLATE_HEARTBEAT_SECONDS", "1")
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reported to Slate: 202"), "{stdout}");
    assert!(!stdout.contains(secret), "the cell never prints the secret");

    let events: Vec<(String, String)> = sqlx::query_as(
        "select event, notebook_id from colab_webhook_events order by signed_at, received_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"up"));
    assert!(kinds.contains(&"heartbeat"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"down"), "{kinds:?}");
    assert!(events.iter().all(|(_, nb)| nb.starts_with("colab-")));
    let url: String = sqlx::query_scalar("select url from colab_endpoints")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(url, "https://quiet-river-test.trycloudflare.com/");
    let _ = std::fs::remove_dir_all(dir);
    app.stop().await;
}
