//! The real ComfyUI (0.3.64 on CPU, from ../shared/comfyui) as a test peer: a shared
//! instance on [`SHARED_PORT`] for ordinary tests, and private instances on ports of their
//! own for tests that kill ComfyUI and start it again.
//!
//! scripts/test sets ComfyUI up once (`scripts/peers setup`), exports
//! `SLATE_TEST_COMFYUI_DIR`, and at exit stops every instance under `$DIR/state/*`. The
//! shared instance is started here on first use (`start` is idempotent, so parallel test
//! processes share it) and outlives the process; a private one is stopped when its guard
//! drops, and its state directory removed. Every instance is started and stopped by the scripts, which act on the PID they
//! recorded only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::sync::OnceCell;

/// The port of the instance every ordinary test shares.
pub const SHARED_PORT: u16 = 18188;
/// The one checkpoint the peer has (random weights; the real `CheckpointLoaderSimple`
/// loads it as SD1.5).
pub const CHECKPOINT: &str = "tiny-sd15.safetensors";

/// One running ComfyUI.
pub struct ComfyPeer {
    pub port: u16,
    dir: PathBuf,
    /// Private instances are stopped when dropped; the shared one is not.
    private: bool,
}

/// The setup directory, from `SLATE_TEST_COMFYUI_DIR`; a test without it fails, saying
/// how to get it (it never passes silently).
pub fn dir() -> PathBuf {
    let dir = std::env::var_os("SLATE_TEST_COMFYUI_DIR").unwrap_or_else(|| {
        panic!(
            "this test needs the real ComfyUI: run scripts/test, or `scripts/peers setup` and \
             set SLATE_TEST_COMFYUI_DIR to its directory (see `scripts/peers env`); \
             SLATE_TEST_SKIP_PEERS=comfyui leaves these tests out locally"
        )
    });
    let dir = PathBuf::from(dir);
    assert!(
        dir.join(".ready").exists(),
        "SLATE_TEST_COMFYUI_DIR={} is not a finished ComfyUI setup (no .ready): run \
         `scripts/peers setup`",
        dir.display()
    );
    dir
}

/// Where the scripts are: `SLATE_TEST_SHARED_DIR` (scripts/test exports it), else
/// ../shared beside the repository.
fn scripts() -> PathBuf {
    std::env::var_os("SLATE_TEST_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("../shared"))
        .join("comfyui")
}

fn script(name: &str, dir: &Path, port: u16) -> Result<String, String> {
    let path = scripts().join(name);
    let out = Command::new(&path)
        .arg(dir)
        .arg(port.to_string())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{} {} {port} failed ({}):\n{}\n{}",
            path.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The shared instance, started on first use in this process (or found running).
pub async fn shared() -> &'static ComfyPeer {
    static SHARED: OnceCell<ComfyPeer> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let peer = ComfyPeer {
                port: SHARED_PORT,
                dir: dir(),
                private: false,
            };
            peer.start().await;
            peer
        })
        .await
}

/// A private instance on a free port of its own, stopped when the value drops.
pub async fn private() -> ComfyPeer {
    let peer = ComfyPeer {
        port: free_port(),
        dir: dir(),
        private: true,
    };
    peer.start().await;
    peer
}

/// A port nobody listens on, from a range per process (so parallel test processes rarely
/// try the same one) above the shared instance's.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 18200 + (std::process::id() % 40) as u16 * 20;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < base + 400, "no free port for a ComfyUI near {base}");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl ComfyPeer {
    /// The endpoint as a notebook reports it (http on loopback: only the test switch
    /// `colab_allow_loopback` accepts it).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// This instance's state directory: `input/`, `output/`, its log and PID.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state").join(self.port.to_string())
    }

    /// Starts it (or finds it running) and waits until it answers.
    pub async fn start(&self) {
        let (dir, port) = (self.dir.clone(), self.port);
        let started = tokio::task::spawn_blocking(move || script("start", &dir, port))
            .await
            .expect("the start script ran");
        if let Err(e) = started {
            panic!("{e}\nComfyUI's log:\n{}", self.log_tail());
        }
    }

    /// Stops it (SIGTERM to its recorded PID) and waits until the port is free.
    pub async fn stop(&self) {
        let (dir, port) = (self.dir.clone(), self.port);
        let stopped = tokio::task::spawn_blocking(move || script("stop", &dir, port))
            .await
            .expect("the stop script ran");
        if let Err(e) = stopped {
            panic!("{e}");
        }
    }

    /// Kills it at once (SIGKILL to its recorded PID), as the kernel's OOM killer does on
    /// Colab; private instances only. Returns once the port is free.
    pub async fn kill(&self) {
        assert!(self.private, "only a private ComfyUI may be killed");
        let pid = std::fs::read_to_string(self.state().join("comfyui.pid"))
            .expect("the start script recorded the PID");
        let pid = pid.trim().to_owned();
        let killed = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success(), "kill -KILL {pid}");
        crate::eventually(
            "the killed ComfyUI to free its port",
            std::time::Duration::from_secs(30),
            || async { TcpListener::bind(("127.0.0.1", self.port)).is_ok() },
        )
        .await;
    }

    /// The end of ComfyUI's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.state().join("comfyui.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Calls ComfyUI's API directly, as another client would (ComfyUI's own page, a
    /// script): a JSON POST; the answer's JSON (`null` for an empty body).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let res = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path}: {status}: {text}");
        if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
        }
    }

    /// A GET of ComfyUI's API, as raw bytes.
    pub async fn get(&self, path: &str) -> Vec<u8> {
        let res = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.bytes().await.expect("the body").to_vec()
    }

    /// The ids running and pending, as `GET /queue` lists them.
    pub async fn queue(&self) -> (Vec<String>, Vec<String>) {
        let q: serde_json::Value =
            serde_json::from_slice(&self.get("/queue").await).expect("/queue is JSON");
        let ids = |key: &str| {
            q[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e[1].as_str().map(str::to_owned))
                .collect()
        };
        (ids("queue_running"), ids("queue_pending"))
    }

    /// The history entry of a prompt (`{}` until it is done, or when it never ran).
    pub async fn history(&self, prompt: &str) -> serde_json::Value {
        serde_json::from_slice(&self.get(&format!("/history/{prompt}")).await)
            .expect("/history is JSON")
    }

    /// Queues a graph as another client; returns its prompt id.
    pub async fn submit(&self, graph: serde_json::Value) -> String {
        let answer = self
            .post(
                "/prompt",
                &serde_json::json!({"prompt": graph, "client_id": "another-client"}),
            )
            .await;
        answer["prompt_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no prompt_id in {answer}"))
            .to_owned()
    }
}

impl Drop for ComfyPeer {
    fn drop(&mut self) {
        if self.private {
            match script("stop", &self.dir, self.port) {
                // Its inputs, outputs and database are of no use to anyone else.
                Ok(_) => {
                    let _ = std::fs::remove_dir_all(self.state());
                }
                Err(e) => eprintln!("{e}"),
            }
        }
    }
}

/// The smallest txt2img graph on [`CHECKPOINT`]: `size`×`size`, `steps` steps, its
/// output saved under `prefix` (vary `seed` for a new image: an identical graph is
/// answered from ComfyUI's cache).
pub fn txt2img(size: u32, steps: u32, seed: u64, prefix: &str) -> serde_json::Value {
    serde_json::json!({
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 7.0,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
            "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
    })
}

/// A graph that needs no model and weighs about `bytes` (a long `_meta` title, which
/// ComfyUI ignores but echoes in `/queue`): what a large UI export from another client
/// costs Slate when it reads the queue.
pub fn heavy_graph(bytes: usize, color: u32) -> serde_json::Value {
    serde_json::json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
              "_meta": {"title": "x".repeat(bytes)}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    })
}
