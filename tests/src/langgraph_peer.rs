//! The real LangGraph server (`langgraph dev`, langgraph-api 0.16.7 on the in-memory
//! runtime, from PyPI) as a test peer: a shared instance for ordinary tests, private ones
//! for tests that stop and start the server.
//!
//! `scripts/peers.d/langgraph setup DIR` makes the venv once; scripts/test exports
//! `SLATE_TEST_LANGGRAPH_DIR=DIR`. Each instance runs in its own directory,
//! `DIR/state/<port>/`, holding a copy of the real shot planner and its auth
//! (k8s/langgraph) and of the test graphs and their `langgraph.json`
//! (tests/peers/langgraph), with the bearer token [`TOKEN`] required by the custom auth.
//! The server is started as the leader of its own process group, its PID recorded in
//! `langgraph.pid`; a private instance's group is killed when its guard drops, and
//! `scripts/peers stop` ends the shared one (and any left behind).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::sync::OnceCell;

/// The bearer token every instance's auth.py checks (`LANGGRAPH_AUTH_TOKEN`).
pub const TOKEN: &str = "slate-test-langgraph-token";
/// The port of the instance every ordinary test shares.
pub const SHARED_PORT: u16 = 12124;

/// One running LangGraph server.
pub struct LanggraphPeer {
    pub port: u16,
    state: PathBuf,
    /// Private instances are stopped when dropped; the shared one is not.
    private: bool,
}

/// The setup directory, from `SLATE_TEST_LANGGRAPH_DIR`; a test without it fails, saying
/// how to get it (it never passes silently).
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("SLATE_TEST_LANGGRAPH_DIR").unwrap_or_else(|| {
        panic!(
            "this test needs the real LangGraph server: run scripts/test, or \
             `scripts/peers setup` and set SLATE_TEST_LANGGRAPH_DIR to its directory (see \
             `scripts/peers env`); SLATE_TEST_SKIP_PEERS=langgraph leaves these tests out locally"
        )
    });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join(".ready").exists() && dir.join("venv/bin/langgraph").exists(),
        "SLATE_TEST_LANGGRAPH_DIR={} is not a finished LangGraph setup (no .ready or \
         venv/bin/langgraph): run `scripts/peers setup`",
        dir.display()
    );
    dir
}

/// The shared instance, started on first use in this process (or found running: test
/// processes running at once share it).
pub async fn shared() -> &'static LanggraphPeer {
    static SHARED: OnceCell<LanggraphPeer> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let peer = LanggraphPeer {
                port: SHARED_PORT,
                state: dir().join("state").join(SHARED_PORT.to_string()),
                private: false,
            };
            peer.start().await;
            peer
        })
        .await
}

/// A private instance on a free port of its own, stopped when the value drops.
pub async fn private() -> LanggraphPeer {
    let port = free_port();
    let peer = LanggraphPeer {
        port,
        state: dir().join("state").join(port.to_string()),
        private: true,
    };
    let _ = std::fs::remove_dir_all(&peer.state);
    peer.start().await;
    peer
}

/// A port nobody listens on, from a range per process (so parallel test processes rarely
/// try the same one).
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 12200 + (std::process::id() % 40) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            port < base + 400,
            "no free port for a LangGraph server near {base}"
        );
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Copies the files of `from` (not its subdirectories) into `to`.
fn copy_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("a directory entry");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// Sends `signal` to the process group `pid` leads.
fn signal_group(pid: &str, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = pid.parse::<i32>() {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), signal);
    }
}

fn pid_alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

impl LanggraphPeer {
    /// The base URL Slate is given (`SLATE_LANGGRAPH_URL`).
    pub fn url(&self) -> url::Url {
        format!("http://127.0.0.1:{}/", self.port)
            .parse()
            .expect("a URL")
    }

    fn pid_file(&self) -> PathBuf {
        self.state.join("langgraph.pid")
    }

    async fn answers(&self) -> bool {
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/ok", self.port))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Starts it (or finds it running) and waits until `/ok` answers.
    pub async fn start(&self) {
        let lock_path = self.state.with_extension("lock");
        std::fs::create_dir_all(&self.state).expect("the state directory");
        // One start at a time per instance, across test processes.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .expect("a lock file");
        let lock = tokio::task::spawn_blocking(move || {
            lock.lock().expect("the instance's lock");
            lock
        })
        .await
        .expect("the lock");
        let running = std::fs::read_to_string(self.pid_file())
            .ok()
            .is_some_and(|pid| pid_alive(pid.trim()));
        if !(running && self.answers().await) {
            self.spawn();
        }
        let log = self.state.join("langgraph.log");
        crate::eventually(
            "the LangGraph server to answer /ok",
            Duration::from_secs(120),
            || async {
                if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
                    assert!(
                        pid_alive(pid.trim()),
                        "the LangGraph server exited:\n{}",
                        tail(&log)
                    );
                }
                self.answers().await
            },
        )
        .await;
        drop(lock);
    }

    fn spawn(&self) {
        let root = crate::root();
        copy_files(&root.join("k8s/langgraph"), &self.state);
        copy_files(&root.join("tests/peers/langgraph"), &self.state);
        let venv = dir().join("venv");
        let log = std::fs::File::create(self.state.join("langgraph.log")).expect("a log file");
        let err = log.try_clone().expect("the log again");
        let mut command = Command::new(venv.join("bin/langgraph"));
        command
            .args([
                "dev",
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--no-browser",
                "--no-reload",
                "--n-jobs-per-worker",
                "20",
            ])
            .current_dir(&self.state)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", venv.join("bin").display()),
            )
            .env("LANGSMITH_TRACING", "false")
            .env("LANGGRAPH_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // Its own process group, so that it and the workers it starts go together.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("langgraph dev starts");
        std::fs::write(self.pid_file(), child.id().to_string()).expect("the PID file");
        // Reaped by whoever stops it; the handle is not needed.
        std::mem::forget(child);
    }

    /// Stops it: SIGTERM to its process group, SIGKILL after 10 s; returns once it is gone.
    pub async fn stop(&self) {
        let Ok(pid) = std::fs::read_to_string(self.pid_file()) else {
            return;
        };
        let pid = pid.trim().to_owned();
        signal_group(&pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..40 {
            if !pid_alive(&pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        signal_group(&pid, nix::sys::signal::Signal::SIGKILL);
        let _ = std::fs::remove_file(self.pid_file());
        crate::eventually(
            "the stopped LangGraph server to free its port",
            Duration::from_secs(30),
            || async { TcpListener::bind(("127.0.0.1", self.port)).is_ok() },
        )
        .await;
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.state.join("langgraph.log"))
    }

    /// Calls the server's API as another client would, with the token: the status and the
    /// answer's JSON (`null` when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        let json = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, json)
    }

    /// The runs of a thread, as LangGraph lists them.
    pub async fn runs(&self, thread: &str) -> Vec<serde_json::Value> {
        let (status, runs) = self
            .call(
                reqwest::Method::GET,
                &format!("/threads/{thread}/runs"),
                None,
            )
            .await;
        assert_eq!(status, 200, "runs of {thread}: {runs}");
        runs.as_array().cloned().unwrap_or_default()
    }

    /// A thread as LangGraph has it.
    pub async fn thread(&self, thread: &str) -> serde_json::Value {
        let (status, t) = self
            .call(reqwest::Method::GET, &format!("/threads/{thread}"), None)
            .await;
        assert_eq!(status, 200, "thread {thread}: {t}");
        t
    }
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

impl Drop for LanggraphPeer {
    fn drop(&mut self) {
        if !self.private {
            return;
        }
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            signal_group(pid.trim(), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&self.state);
        let _ = std::fs::remove_file(self.state.with_extension("lock"));
    }
}
