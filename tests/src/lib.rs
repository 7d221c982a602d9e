//! Test harness: a real Slate started in-process on port 0 with a fresh, migrated
//! database per test, plus helpers to act as its users.
//!
//! The PostgreSQL server comes from `SLATE_TEST_DATABASE_URL` (scripts/test starts a
//! throwaway one); each test creates its own database on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub mod comfyui_peer;
pub mod dagster_peer;
pub mod fake_comfy;
pub mod fake_kube;
pub mod kube_fixtures;
pub mod langgraph_peer;
pub mod realkube;
pub mod tus;
pub mod wait;
pub mod webhook_receiver;

pub use wait::{eventually, seen};

use clap::{CommandFactory as _, FromArgMatches as _};
use reqwest::header::{HeaderMap, HeaderValue, ORIGIN};
use server::cli::Cli;
use server::config::Config;
use server::startup::Application;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgPool};
use tokio::sync::oneshot;

pub const ADMIN_EMAIL: &str = "admin@studio.test";
pub const PASSWORD: &str = "correct horse battery";

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs ffmpeg quietly (test media is made with its lavfi sources); panics with its error.
pub fn ffmpeg(args: &[&str]) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn site_dir() -> PathBuf {
    root().join("target/site")
}

fn server_url() -> String {
    std::env::var("SLATE_TEST_DATABASE_URL").expect(
        "SLATE_TEST_DATABASE_URL is not set: run the suite with scripts/test, which starts a \
         throwaway PostgreSQL, or point it at a server where this user may create databases",
    )
}

/// Creates an empty database for one test and returns its URL.
pub async fn fresh_database() -> String {
    let base: PgConnectOptions = server_url().parse().expect("valid SLATE_TEST_DATABASE_URL");
    let name = format!("test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = base
        .clone()
        .database("postgres")
        .connect()
        .await
        .expect("connect to the test server");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    let mut url = url::Url::parse(&server_url()).expect("url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The binary's defaults, as its command line defines them, but with every setting's
/// environment variable (`SLATE_*`, `DATABASE_URL`) disconnected: clap reads the
/// variable of any flag not given, so a variable in the caller's shell would otherwise
/// change every test's configuration.
pub fn default_config() -> Config {
    let command = Cli::command().mut_args(|arg| arg.env(None));
    let matches = command
        .try_get_matches_from(["slate"])
        .expect("the defaults parse");
    Config::from_arg_matches(&matches).expect("the defaults make a configuration")
}

/// A configuration like the binary's defaults, with no environment leaking in.
pub fn test_config(database_url: &str) -> Config {
    let mut config = default_config();
    config.database_url = Some(database_url.to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.site_dir = site_dir();
    config.public_url = None;
    config.admin_email = Some(ADMIN_EMAIL.to_owned());
    config.admin_password = Some(PASSWORD.to_owned());
    config.db_wait_seconds = 5;
    // Never a real cluster by accident: cluster tests point at their fake API server.
    config.kube = server::config::KubeMode::Off;
    config.kubeconfig = None;
    config.data_dir = test_data_root().join(uuid::Uuid::now_v7().simple().to_string());
    config
}

/// Where this test process keeps its apps' data directories: `slate-tests/<pid>` under
/// the temporary directory. A test app's directory outlives the app (a test may restart
/// it on the same directory), so nothing is removed per test; instead, the first call in
/// each process removes the directories of test processes that are no longer running.
pub fn test_data_root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let parent = std::env::temp_dir().join("slate-tests");
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let finished = entry
                    .file_name()
                    .to_str()
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if finished {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        parent.join(std::process::id().to_string())
    })
    .clone()
}

/// Runs one `#[ignore]`d test of this test binary in a child process with `env` added to
/// its environment; returns what it printed, and fails if it failed. For tests that need
/// process-wide settings (environment variables) without changing them for the other
/// tests running on this process's threads.
pub fn in_child_process(test: &str, env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{test} failed in its child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run in its child process:\n{stdout}"
    );
    stdout
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub pool: PgPool,
    pub database_url: String,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let database_url = fresh_database().await;
    let mut config = test_config(&database_url);
    adjust(&mut config);
    start(config).await
}

pub async fn start(config: Config) -> TestApp {
    let database_url = config
        .database_url
        .clone()
        .expect("tests use an explicit database");
    let kept = config.clone();
    let app = Application::build(&config).await.expect("Slate starts");
    let addr = app.addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let pool = PgPool::connect(&database_url).await.expect("test pool");
    TestApp {
        addr,
        base: format!("http://{addr}"),
        pool,
        database_url,
        config: kept,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser-like client: keeps cookies, does not follow redirects, and sends the
    /// Origin header a page of this site would send.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_str(&self.base).expect("origin"));
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// A client with no cookies and no Origin (a script).
    pub fn bare_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// Calls a server function the way the browser does (form-encoded POST).
    pub async fn call(
        &self,
        client: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        client
            .post(self.url(path))
            .header("accept", "application/json")
            .form(form)
            .send()
            .await
            .expect("request")
    }

    pub async fn login(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.call(
            client,
            "/api/public/login",
            &[("email", email), ("password", password)],
        )
        .await
    }

    /// A signed-in client for a new user with this role.
    pub async fn signed_in(&self, email: &str, role: &str) -> reqwest::Client {
        if email != ADMIN_EMAIL {
            self.create_user(email, role).await;
        }
        let client = self.client();
        let res = self.login(&client, email, PASSWORD).await;
        assert!(
            res.status().is_success(),
            "login as {email}: {}",
            res.status()
        );
        client
    }

    /// Calls a server function as the first admin, with a fresh session.
    pub async fn as_admin(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let admin = self.client();
        assert!(self
            .login(&admin, ADMIN_EMAIL, PASSWORD)
            .await
            .status()
            .is_success());
        self.call(&admin, path, form).await
    }

    pub async fn create_user(&self, email: &str, role: &str) {
        let res = self
            .as_admin(
                "/api/admin/create_user",
                &[("email", email), ("role", role), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(
            res.status(),
            200,
            "create {email}: {}",
            res.text().await.unwrap_or_default()
        );
    }

    /// Creates a token through the admin API and returns its secret.
    pub async fn create_token(&self, name: &str, scope: &str, owner: &str) -> String {
        let res = self
            .as_admin(
                "/api/admin/create_token",
                &[("name", name), ("scope", scope), ("owner", owner)],
            )
            .await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.expect("json");
        body["secret"].as_str().expect("secret").to_owned()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect("count query")
    }

    /// Ends the server abruptly, as a crash would: in-flight requests are cut off.
    pub fn kill(mut self) -> Config {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.config.clone()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A new Colab webhook secret (as `slate colab rotate-secret` makes one).
pub async fn colab_secret(app: &TestApp) -> String {
    let colab = server::colab::Colab::new(
        app.pool.clone(),
        server::comfyui::address::HostRules::parse("", true),
        std::time::Duration::from_secs(2),
    );
    colab
        .rotate_secret(&server::audit::Who::cli())
        .await
        .expect("a webhook secret")
}

/// Reports `url` as the notebook's new tunnel (a signed `up`), as the notebook does;
/// asserts it was accepted (202).
pub async fn colab_up(app: &TestApp, secret: &str, event_id: &str, url: &str) {
    let body =
        serde_json::json!({"event": "up", "event_id": event_id, "notebook_id": "nb", "url": url})
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
        .expect("the webhook answers");
    assert_eq!(res.status(), 202);
}

/// A clip for tests, made with ffmpeg's lavfi sources in the app's data directory:
/// `seconds` of the test pattern at 640×360, 25 fps, MPEG-4 in a QuickTime file.
pub fn test_clip(app: &TestApp, name: &str, seconds: u32) -> PathBuf {
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).expect("a fixtures directory");
    let clip = dir.join(name);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=duration={seconds}:size=640x360:rate=25"),
        "-c:v",
        "mpeg4",
        clip.to_str().expect("a UTF-8 path"),
    ]);
    clip
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
