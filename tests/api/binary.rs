//! The built `slate` binary on an empty data directory, with its embedded PostgreSQL.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use slate_tests::eventually;
use slate_tests::wait::eventually_blocking;

fn slate_binary() -> PathBuf {
    let path = slate_tests::root().join("target/debug/slate");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p server`",
        path.display()
    );
    path
}

fn slate(data: &Path, port: u16) -> Command {
    let mut cmd = Command::new(slate_binary());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLATE_DATA_DIR", data)
        .env("SLATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLATE_SITE_DIR", slate_tests::site_dir())
        .env("SLATE_LOG", "warn");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(base: &str, child: &mut Child) {
    let ready = format!("{base}/readyz");
    eventually("slate serve to be ready", Duration::from_secs(30), || {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("slate serve exited early with {status}");
        }
        let ready = &ready;
        async move {
            match reqwest::get(ready).await {
                Ok(res) if res.status() == 200 => Ok(()),
                Ok(res) => Err(format!("status {}", res.status())),
                Err(err) => Err(err.to_string()),
            }
        }
    })
    .await;
}

fn stop(child: &mut Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let child = KillIfStuck(child);
    eventually_blocking(
        "slate to stop after SIGTERM",
        Duration::from_secs(30),
        || child.0.try_wait().unwrap(),
    )
}

/// Kills the child if the wait for it to stop fails, so no server outlives the test.
struct KillIfStuck<'a>(&'a mut Child);

impl Drop for KillIfStuck<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.kill();
        }
    }
}

fn postgres_running(data: &Path) -> bool {
    data.join("postgres/postmaster.pid").exists()
}

#[tokio::test]
async fn the_binary_runs_on_an_empty_data_dir_and_keeps_its_data() {
    let data = std::env::temp_dir().join(format!("slate-bin-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&data).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    // `user create` before any server runs: starts the database for itself, then stops it.
    let mut create = slate(&data, port)
        .args([
            "user",
            "create",
            "--email",
            "first@studio.test",
            "--role",
            "admin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    create
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long enough password\n")
        .unwrap();
    let out = create.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created first@studio.test (admin)"));
    assert!(
        !postgres_running(&data),
        "the command stopped the database it started"
    );

    let mut serve = slate(&data, port)
        .arg("serve")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&base, &mut serve).await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("# TYPE slate_http_requests_total counter"));
    let login = reqwest::get(format!("{base}/login"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login.contains("/pkg/slate.js"),
        "server-rendered HTML loads the wasm"
    );

    // A CLI command while the server runs shares its database and leaves it running.
    let token = slate(&data, port)
        .args([
            "token",
            "create",
            "--name",
            "ci",
            "--scope",
            "api",
            "--user",
            "first@studio.test",
        ])
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let secret = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/dashboard"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let status = stop(&mut serve);
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(!postgres_running(&data), "no PostgreSQL left behind");

    let mut again = slate(&data, port)
        .arg("serve")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(&base, &mut again).await;
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let res = c
        .post(format!("{base}/api/public/login"))
        .header("origin", &base)
        .header("accept", "application/json")
        .form(&[
            ("email", "first@studio.test"),
            ("password", "a long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the same users after a restart");
    stop(&mut again);
    assert!(!postgres_running(&data));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn help_documents_every_setting_with_its_default() {
    let out = Command::new(slate_binary()).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "SLATE_LISTEN",
        "SLATE_DATA_DIR",
        "DATABASE_URL",
        "SLATE_PUBLIC_URL",
        "SLATE_LOG_FORMAT",
    ] {
        assert!(help.contains(var), "{var} missing from --help");
    }
    assert!(help.contains("[default: 127.0.0.1:3000]") && help.contains("[default: ./.slate]"));
}

#[test]
fn a_missing_database_is_a_clear_error_and_a_failing_exit() {
    let port = free_port();
    let out = Command::new(slate_binary())
        .args(["serve", "--db-wait-seconds", "1"])
        .env(
            "DATABASE_URL",
            format!("postgres://slate:pw@127.0.0.1:{port}/slate"),
        )
        .env("SLATE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach PostgreSQL"), "{err}");
}
