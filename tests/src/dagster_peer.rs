//! The real Dagster (1.13.27 from PyPI, `scripts/peers.d/dagster`) as a test peer: a
//! code server for `tests/peers/dagster/defs.py` (location `film`), a webserver and one
//! daemon, sharing a `DAGSTER_HOME` (SQLite storage, run monitoring on, telemetry off)
//! under `$SLATE_TEST_DAGSTER_DIR/state/<instance>/`.
//!
//! [`shared`] is the instance ordinary tests share: on fixed ports, started on first use
//! (or found running, when its code is the current `defs.py`), under a file lock so that
//! parallel test processes share it; it outlives the process and `scripts/peers stop`
//! stops it. [`private`] is an instance of a test's own, stopped when it drops. Each
//! process is started in a process group of its own with default signal handlers
//! (started from a script, a code server inherits SIGINT ignored and then ignores
//! SIGTERM too), its group id recorded in a `.pid` file, and stopped by that group only.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::OnceCell;

/// The webserver and code server ports of the shared instance.
pub const SHARED_WEB_PORT: u16 = 13300;
pub const SHARED_GRPC_PORT: u16 = 13301;
/// The code location the test code is loaded as.
pub const LOCATION: &str = "film";
/// Python starts slowly on two busy cores: a code server, a webserver and a daemon
/// together take 10–60 s.
const START: Duration = Duration::from_secs(240);

/// One running Dagster: code server, webserver and daemon.
pub struct DagsterPeer {
    pub web_port: u16,
    pub grpc_port: u16,
    state: PathBuf,
    private: bool,
}

/// The setup directory, from `SLATE_TEST_DAGSTER_DIR`; a test without it fails, saying
/// how to get it (it never passes silently).
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("SLATE_TEST_DAGSTER_DIR").unwrap_or_else(|| {
        panic!(
            "this test needs the real Dagster: run scripts/test, or `scripts/peers setup` and \
             set SLATE_TEST_DAGSTER_DIR to its directory (see `scripts/peers env`); \
             SLATE_TEST_SKIP_PEERS=dagster leaves these tests out locally"
        )
    });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("venv/.slate-pins").exists(),
        "SLATE_TEST_DAGSTER_DIR={} is not a finished Dagster setup (no venv/.slate-pins): run \
         `scripts/peers setup` or `scripts/peers.d/dagster setup {}`",
        dir.display(),
        dir.display()
    );
    dir
}

/// The test code location's file.
pub fn defs() -> PathBuf {
    crate::root().join("tests/peers/dagster/defs.py")
}

/// The shared instance, started on first use in this process (or found running).
pub async fn shared() -> &'static DagsterPeer {
    static SHARED: OnceCell<DagsterPeer> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let peer = DagsterPeer {
                web_port: SHARED_WEB_PORT,
                grpc_port: SHARED_GRPC_PORT,
                state: dir().join("state").join("shared"),
                private: false,
            };
            let lock_path = dir().join("state").join("shared.lock");
            std::fs::create_dir_all(lock_path.parent().expect("a parent")).expect("state dir");
            let lock = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::create(&lock_path).expect("the lock file");
                file.lock().expect("the shared Dagster's lock");
                file
            })
            .await
            .expect("the lock");
            if !peer.running_current().await {
                peer.stop_processes();
                peer.start().await;
            }
            drop(lock);
            peer
        })
        .await
}

/// An instance of the caller's own on free ports, stopped when the value drops.
pub async fn private() -> DagsterPeer {
    static N: AtomicU16 = AtomicU16::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let peer = DagsterPeer {
        web_port: free_port(),
        grpc_port: free_port(),
        state: dir()
            .join("state")
            .join(format!("private-{}-{n}", std::process::id())),
        private: true,
    };
    peer.start().await;
    peer
}

/// A port nobody listens on, from a range per process.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 13400 + (std::process::id() % 40) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < base + 400, "no free port for a Dagster near {base}");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn venv_bin(name: &str) -> PathBuf {
    dir().join("venv/bin").join(name)
}

/// The three processes, by the name of their PID file and log.
const PROCESSES: [&str; 3] = ["code-server", "webserver", "daemon"];

impl DagsterPeer {
    /// The webserver, as `SLATE_DAGSTER_URL` names it.
    pub fn url(&self) -> url::Url {
        format!("http://127.0.0.1:{}/", self.web_port)
            .parse()
            .expect("a URL")
    }

    /// Its `DAGSTER_HOME`.
    pub fn home(&self) -> PathBuf {
        self.state.join("home")
    }

    /// Whether it runs already, with the code of the current `defs.py`.
    async fn running_current(&self) -> bool {
        let stamp = std::fs::read(self.state.join("defs.stamp")).unwrap_or_default();
        let current = std::fs::read(defs()).unwrap_or_default();
        let groups_alive = PROCESSES.iter().all(|p| self.group(p).is_some_and(alive));
        if stamp != current || !groups_alive {
            return false;
        }
        self.location_loaded().await
    }

    fn group(&self, process: &str) -> Option<i32> {
        std::fs::read_to_string(self.state.join(format!("{process}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Starts the three processes afresh and waits until the webserver lists the
    /// location's jobs.
    pub async fn start(&self) {
        let _ = std::fs::remove_dir_all(&self.state);
        let home = self.home();
        std::fs::create_dir_all(&home).expect("DAGSTER_HOME");
        std::fs::write(
            home.join("dagster.yaml"),
            "telemetry:\n  enabled: false\n\
             run_monitoring:\n  enabled: true\n  poll_interval_seconds: 5\n\
             run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n  config:\n    dequeue_interval_seconds: 1\n",
        )
        .expect("dagster.yaml");
        let workspace = home.join("workspace.yaml");
        std::fs::write(
            &workspace,
            format!(
                "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {}\n      location_name: {LOCATION}\n",
                self.grpc_port
            ),
        )
        .expect("workspace.yaml");
        // The storage is made once before the three open it: made by all at once, SQLite's
        // migrations race ("more than one head").
        let home_for_migrate = home.clone();
        let migrated = tokio::task::spawn_blocking(move || {
            Command::new(venv_bin("dagster"))
                .args(["instance", "migrate"])
                .env("DAGSTER_HOME", &home_for_migrate)
                .output()
        })
        .await
        .expect("the migration ran")
        .expect("dagster instance migrate starts");
        assert!(
            migrated.status.success(),
            "dagster instance migrate: {}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        std::fs::write(
            self.state.join("defs.stamp"),
            std::fs::read(defs()).unwrap_or_default(),
        )
        .expect("the stamp");
        let grpc = self.grpc_port.to_string();
        let web = self.web_port.to_string();
        let defs = defs();
        self.spawn(
            "code-server",
            "dagster",
            &[
                "code-server",
                "start",
                "-h",
                "127.0.0.1",
                "-p",
                &grpc,
                "-f",
                defs.to_str().expect("a UTF-8 path"),
                "--location-name",
                LOCATION,
            ],
        );
        crate::eventually("the Dagster code server to listen", START, || async {
            std::net::TcpStream::connect(("127.0.0.1", self.grpc_port)).is_ok()
        })
        .await;
        let health = Command::new(venv_bin("dagster"))
            .args(["api", "grpc-health-check", "-h", "127.0.0.1", "-p", &grpc])
            .output()
            .expect("the health check runs");
        assert!(
            health.status.success(),
            "the code server is not healthy: {}\n{}",
            String::from_utf8_lossy(&health.stdout),
            self.log_tail("code-server")
        );
        let workspace = workspace.to_str().expect("a UTF-8 path").to_owned();
        self.spawn(
            "webserver",
            "dagster-webserver",
            &["-h", "127.0.0.1", "-p", &web, "-w", &workspace],
        );
        self.spawn("daemon", "dagster-daemon", &["run", "-w", &workspace]);
        let loaded = crate::wait::try_eventually(
            "the Dagster webserver to list the film location",
            START,
            || async { self.location_loaded().await },
        )
        .await;
        if let Err(e) = loaded {
            panic!(
                "{e}\nwebserver:\n{}\ncode server:\n{}",
                self.log_tail("webserver"),
                self.log_tail("code-server")
            );
        }
    }

    /// Starts one process in a group of its own, with default signal handlers.
    fn spawn(&self, name: &str, program: &str, args: &[&str]) {
        let log = std::fs::File::create(self.state.join(format!("{name}.log"))).expect("a log");
        let child = Command::new("env")
            .arg("--default-signal=INT,TERM,HUP")
            .arg(venv_bin(program))
            .args(args)
            .env("DAGSTER_HOME", self.home())
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(&self.state)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        std::fs::write(
            self.state.join(format!("{name}.pid")),
            child.id().to_string(),
        )
        .expect("the PID file");
        // Reaped by a thread of its own, so a stopped process leaves no zombie behind.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
    }

    /// Whether the webserver answers and lists the test location's jobs.
    async fn location_loaded(&self) -> bool {
        let query = "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { location { name } jobs { name } } } } }";
        let Ok(data) = self.try_graphql(query, json!({})).await else {
            return false;
        };
        data["repositoriesOrError"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|n| {
                n["location"]["name"] == LOCATION
                    && n["jobs"]
                        .as_array()
                        .is_some_and(|j| j.iter().any(|j| j["name"] == "shot_job"))
            })
    }

    /// `GET /server_info`: Dagster's three versions.
    pub async fn server_info(&self) -> Value {
        reqwest::get(self.url().join("server_info").expect("a URL"))
            .await
            .expect("the webserver answers")
            .json()
            .await
            .expect("JSON")
    }

    async fn try_graphql(&self, query: &str, variables: Value) -> Result<Value, String> {
        let res = reqwest::Client::new()
            .post(self.url().join("graphql").expect("a URL"))
            .json(&json!({"query": query, "variables": variables}))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() || body.get("errors").is_some_and(|e| !e.is_null()) {
            return Err(format!("{status}: {body}"));
        }
        Ok(body["data"].clone())
    }

    /// A GraphQL call as another client (Dagster's UI, a script) makes it; its `data`.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.try_graphql(query, variables)
            .await
            .unwrap_or_else(|e| panic!("Dagster GraphQL: {e}\n{query}"))
    }

    /// The runs with tag `key=value`, newest first: (run id, status, tags).
    pub async fn runs_tagged(&self, key: &str, value: &str) -> Vec<(String, String, Value)> {
        let data = self
            .graphql(
                "query($f: RunsFilter) { runsOrError(filter: $f) { __typename ... on Runs { results { runId status tags { key value } } } } }",
                json!({"f": {"tags": [{"key": key, "value": value}]}}),
            )
            .await;
        data["runsOrError"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let tags: serde_json::Map<String, Value> = r["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        (
                            t["key"].as_str().unwrap_or_default().to_owned(),
                            t["value"].clone(),
                        )
                    })
                    .collect();
                (
                    r["runId"].as_str().unwrap_or_default().to_owned(),
                    r["status"].as_str().unwrap_or_default().to_owned(),
                    Value::Object(tags),
                )
            })
            .collect()
    }

    /// A run's status and its steps' (`runOrError`).
    pub async fn run(&self, run: &str) -> Value {
        let data = self
            .graphql(
                "query($r: ID!) { runOrError(runId: $r) { __typename ... on Run { runId status stepStats { stepKey status } tags { key value } } } }",
                json!({"r": run}),
            )
            .await;
        data["runOrError"].clone()
    }

    /// The end of one process's log, for failure messages.
    pub fn log_tail(&self, process: &str) -> String {
        let log =
            std::fs::read_to_string(self.state.join(format!("{process}.log"))).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Stops the three processes (SIGTERM to each group, SIGKILL to what is left after
    /// 10 s); the shared one is stopped by `scripts/peers stop`, not here.
    fn stop_processes(&self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let groups: Vec<i32> = PROCESSES.iter().filter_map(|p| self.group(p)).collect();
        for g in &groups {
            let _ = killpg(Pid::from_raw(*g), Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while groups.iter().any(|g| alive(*g)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        for g in &groups {
            let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
        }
        for p in PROCESSES {
            let _ = std::fs::remove_file(self.state.join(format!("{p}.pid")));
        }
    }
}

/// Whether any process of group `g` is alive.
fn alive(g: i32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g), None).is_ok()
}

impl Drop for DagsterPeer {
    fn drop(&mut self) {
        if self.private {
            self.stop_processes();
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}
