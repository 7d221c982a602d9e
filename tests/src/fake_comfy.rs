//! A fake ComfyUI on 127.0.0.1 for the Colab tests: it answers `/system_stats`,
//! `/prompt` and `/queue` like a current build or like a mid-2024 one, and misbehaves on
//! cue the way a Colab runtime behind a Cloudflare quick tunnel does (HTML error pages,
//! 530/502/429/524, slow answers, redirects, dying mid-check), and on cue does what the
//! real one will not (ignoring an interrupt). It counts requests. What it has
//! (`/object_info`, `/models`) is a few core nodes and one checkpoint until told more.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::task::JoinHandle;

/// An orange 64×36 PNG (made with ffmpeg's `color` source), served for every output.
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAEAAAAAkCAIAAAC2bqvFAAAACXBIWXMAAAABAAAAAQBPJcTWAAAAUUlEQVR4nO3PQQkAMAzAwPrXMZ2jIvY4BoEIuMw983Ve0IAWNKAFDWhBA1rQgBY0oAUNaEEDWtCAFjSgBQ1oQQNa0IAWNKAFDWhBA1rQgBY8tj2kstMuUPuIAAAAAElFTkSuQmCC";

/// How the fake answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// A current build on a T4.
    Current,
    /// A mid-2024 build: no comfyui_version, no RAM fields, string errors.
    Mid2024,
    /// Cloudflare's HTML error page with this status (530 = tunnel gone, 502 = ComfyUI
    /// down, 429 = too many requests, 524 = too slow).
    Cloudflare(u16),
    /// A 200 with an HTML page (a captive portal, a wrong service).
    Html,
    /// A 200 with JSON that is not ComfyUI's.
    NotComfy,
    /// Answers after this long.
    Slow(Duration),
    /// Redirects every request to this URL.
    Redirect(String),
    /// A body larger than any sane answer.
    Huge,
    /// Starts answering, then the connection dies half-way through the body (Colab
    /// killed mid-check).
    DiesMidAnswer,
}

/// A prompt the fake has accepted. It runs when first asked about and finishes when
/// asked again (so following it sees pending/running, then the outcome).
#[derive(Clone, Debug)]
pub struct Prompt {
    pub id: String,
    pub graph: serde_json::Value,
    pub client_id: Option<String>,
    polls: usize,
    /// Told over a socket: its history appears once the socket has said it finished.
    telling: bool,
    /// Stopped by `POST /interrupt`: it leaves the queue, its history says so.
    interrupted: bool,
}

struct Inner {
    mode: Mutex<Mode>,
    prompts: Mutex<Vec<Prompt>>,
    /// What POST /interrupt and POST /queue received.
    pub_requests: Mutex<Vec<(String, serde_json::Value)>>,
    /// Requests answered badly before the mode applies (a tunnel warming up).
    warming: Mutex<(usize, u16)>,
    hits: AtomicUsize,
    queue: AtomicUsize,
    /// Open sockets by client id.
    sockets: Mutex<std::collections::HashMap<String, tokio::sync::mpsc::UnboundedSender<Frame>>>,
    /// Frames sent on a socket before it is dropped (none: never).
    drop_after: Mutex<Option<usize>>,
    /// Sockets that were opened, by client id.
    opened: Mutex<Vec<String>>,
    /// While true, prompts told over a socket stop before their last step.
    hold: tokio::sync::watch::Sender<bool>,
    /// Whether `POST /interrupt` is answered 200 and ignored (a cancel that never takes).
    deaf: std::sync::atomic::AtomicBool,
    /// Node classes `/object_info` lists besides the core ones (node packs).
    extra_nodes: Mutex<serde_json::Map<String, serde_json::Value>>,
    /// Model files by folder, as `/models/{folder}` lists them.
    models: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
}

/// What the fake sends on a socket.
#[derive(Debug)]
enum Frame {
    Text(serde_json::Value),
    Binary(Vec<u8>),
    Close,
}

/// The one checkpoint the fake has at start (the old default of `SLATE_COMFYUI_CHECKPOINT`).
pub const DEFAULT_CHECKPOINT: &str = "sd_xl_base_1.0.safetensors";

/// Steps of the fake's sampler.
pub const STEPS: u64 = 4;

pub struct FakeComfy {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeComfy {
    pub async fn start(mode: Mode) -> FakeComfy {
        let inner = Arc::new(Inner {
            mode: Mutex::new(mode),
            prompts: Mutex::new(Vec::new()),
            pub_requests: Mutex::new(Vec::new()),
            warming: Mutex::new((0, 502)),
            hits: AtomicUsize::new(0),
            queue: AtomicUsize::new(0),
            sockets: Mutex::default(),
            drop_after: Mutex::new(None),
            opened: Mutex::default(),
            hold: tokio::sync::watch::channel(false).0,
            deaf: std::sync::atomic::AtomicBool::new(false),
            extra_nodes: Mutex::default(),
            models: Mutex::new(
                [
                    ("checkpoints", vec![DEFAULT_CHECKPOINT.to_owned()]),
                    ("loras", vec![]),
                    ("vae", vec![]),
                    ("custom_nodes", vec!["example_node.py.example".to_owned()]),
                ]
                .into_iter()
                .map(|(f, files)| (f.to_owned(), files))
                .collect(),
            ),
        });
        let app = Router::new()
            .route("/system_stats", get(system_stats))
            .route("/api/system_stats", get(system_stats))
            .route("/prompt", get(prompt).post(submit))
            .route("/queue", get(queue).post(queue_change))
            .route("/history/{id}", get(history))
            .route("/interrupt", axum::routing::post(interrupt))
            .route("/upload/image", axum::routing::post(upload))
            .route("/view", get(view))
            .route("/ws", get(socket))
            .route("/object_info", get(object_info))
            .route("/models", get(model_folders))
            .route("/models/{folder}", get(model_files))
            .fallback(not_found)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeComfy { addr, inner, task }
    }

    /// The endpoint as the notebook would report it (http: only the test switch accepts it).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// The next `count` requests get `status` (as a fresh tunnel does) before the mode applies.
    pub fn warm_up(&self, count: usize, status: u16) {
        *self.inner.warming.lock().unwrap() = (count, status);
    }

    pub fn set_queue(&self, n: usize) {
        self.inner.queue.store(n, Ordering::SeqCst);
    }

    /// The prompts accepted so far.
    pub fn prompts(&self) -> Vec<Prompt> {
        self.inner.prompts.lock().unwrap().clone()
    }

    /// What POST /interrupt, POST /queue and POST /upload/image received, as (path, body;
    /// for an upload, the file's name and the request's size).
    pub fn controls(&self) -> Vec<(String, serde_json::Value)> {
        self.inner.pub_requests.lock().unwrap().clone()
    }

    /// ComfyUI restarted: every prompt is forgotten (history and queue empty).
    pub fn forget(&self) {
        self.inner.prompts.lock().unwrap().clear();
    }

    /// Sockets drop after `frames` frames from now on (Cloudflare cutting them).
    pub fn drop_sockets_after(&self, frames: usize) {
        *self.inner.drop_after.lock().unwrap() = Some(frames);
    }

    /// Prompts told over a socket stop before their last step until [`FakeComfy::release`].
    pub fn hold(&self) {
        self.inner.hold.send_replace(true);
    }

    pub fn release(&self) {
        self.inner.hold.send_replace(false);
    }

    /// From now on `POST /interrupt` answers 200 and changes nothing: a cancel that does
    /// not take (the prompt stays listed as running).
    pub fn ignore_interrupts(&self) {
        self.inner.deaf.store(true, Ordering::SeqCst);
    }

    /// The client ids of the sockets opened so far.
    pub fn sockets_opened(&self) -> Vec<String> {
        self.inner.opened.lock().unwrap().clone()
    }

    /// `/object_info` lists these classes too (`{class: spec}`, e.g. a node pack's, its
    /// `python_module` `custom_nodes.<pack>`).
    pub fn add_nodes(&self, nodes: serde_json::Value) {
        if let serde_json::Value::Object(nodes) = nodes {
            self.inner.extra_nodes.lock().unwrap().extend(nodes);
        }
    }

    /// Folder `folder` holds `files` from now on (the loaders' choices follow, as in
    /// ComfyUI).
    pub fn set_models(&self, folder: &str, files: &[&str]) {
        self.inner.models.lock().unwrap().insert(
            folder.to_owned(),
            files.iter().map(|f| (*f).to_owned()).collect(),
        );
    }

    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Stops answering at all (Colab died): connections are refused from now on.
    pub fn kill(&self) {
        self.task.abort();
    }
}

fn cloudflare_page(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = format!(
        "<!DOCTYPE html><html><head><title>{status} | trycloudflare.com</title></head><body><h1>Error {}</h1></body></html>",
        if status == 530 { "1033".to_owned() } else { status.to_string() }
    );
    (
        code,
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::SERVER, "cloudflare"),
        ],
        body,
    )
        .into_response()
}

/// Applies warm-up and misbehaviour; `None` means answer normally.
async fn misbehave(inner: &Inner) -> Option<Response> {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    {
        let mut warming = inner.warming.lock().unwrap();
        if warming.0 > 0 {
            warming.0 -= 1;
            return Some(cloudflare_page(warming.1));
        }
    }
    let mode = inner.mode.lock().unwrap().clone();
    match mode {
        Mode::Current | Mode::Mid2024 | Mode::NotComfy => None,
        Mode::Cloudflare(status) => Some(cloudflare_page(status)),
        Mode::Html => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Sign in to continue</body></html>",
            )
                .into_response(),
        ),
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Mode::Redirect(to) => {
            Some((StatusCode::FOUND, [(header::LOCATION, to)], "").into_response())
        }
        Mode::Huge => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!("[{}0]", "0,".repeat(1_000_000)),
            )
                .into_response(),
        ),
        Mode::DiesMidAnswer => {
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(bytes::Bytes::from_static(
                    b"{\"system\": {\"os\": \"posix\", ",
                )),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "the runtime died",
                )),
            ];
            let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
            Some(
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response(),
            )
        }
    }
}

async fn system_stats(State(inner): State<Arc<Inner>>) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let mode = inner.mode.lock().unwrap().clone();
    match mode {
        Mode::Mid2024 => Json(json!({
            "system": {"os": "posix", "python_version": "3.10.12 (main, Nov 20 2023) [GCC 11.4.0]", "embedded_python": false},
            "devices": [{"name": "cuda:0 Tesla T4 : cudaMallocAsync", "type": "cuda", "index": 0,
                "vram_total": 15_835_660_288_i64, "vram_free": 15_470_428_160_i64, "torch_vram_total": 0, "torch_vram_free": 0}]
        })).into_response(),
        Mode::NotComfy => Json(json!({"status": "ok", "version": "1.0"})).into_response(),
        _ => Json(json!({
            "system": {"os": "posix", "ram_total": 13_609_443_328_i64, "ram_free": 11_000_000_000_i64,
                "comfyui_version": "0.3.40", "python_version": "3.11.13 (main, Jun  4 2025) [GCC 11.4.0]",
                "pytorch_version": "2.6.0+cu124", "embedded_python": false, "argv": ["main.py"]},
            "devices": [{"name": "cuda:0 Tesla T4 : cudaMallocAsync", "type": "cuda", "index": 0,
                "vram_total": 15_828_320_256_i64, "vram_free": 15_420_000_000_i64, "torch_vram_total": 0, "torch_vram_free": 0}]
        })).into_response(),
    }
}

async fn prompt(State(inner): State<Arc<Inner>>) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    Json(json!({"exec_info": {"queue_remaining": inner.queue.load(Ordering::SeqCst)}}))
        .into_response()
}

async fn queue(State(inner): State<Arc<Inner>>) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let prompts = inner.prompts.lock().unwrap();
    let waiting: Vec<&Prompt> = prompts.iter().filter(|p| p.polls < 2).collect();
    let entry = |(n, p): (usize, &&Prompt)| json!([n, p.id, p.graph, {}, []]);
    let running: Vec<_> = waiting.iter().take(1).enumerate().map(entry).collect();
    let pending: Vec<_> = waiting.iter().skip(1).enumerate().map(entry).collect();
    Json(json!({"queue_running": running, "queue_pending": pending})).into_response()
}

async fn submit(State(inner): State<Arc<Inner>>, Json(body): Json<serde_json::Value>) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let graph = body["prompt"].clone();
    if graph.as_object().is_none_or(|g| g.is_empty()) {
        let mid2024 = *inner.mode.lock().unwrap() == Mode::Mid2024;
        let error = if mid2024 {
            json!("Prompt has no outputs")
        } else {
            json!({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}})
        };
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "node_errors": {}})),
        )
            .into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    let mut telling = false;
    if let Some(client) = body["client_id"].as_str() {
        if let Some(tx) = inner.sockets.lock().unwrap().get(client).cloned() {
            telling = true;
            tokio::spawn(tell(inner.clone(), tx, id.clone()));
        }
    }
    let mut prompts = inner.prompts.lock().unwrap();
    prompts.push(Prompt {
        id: id.clone(),
        graph,
        client_id: body["client_id"].as_str().map(str::to_owned),
        polls: 0,
        telling,
        interrupted: false,
    });
    Json(json!({"prompt_id": id, "number": prompts.len(), "node_errors": {}})).into_response()
}

async fn history(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let mut prompts = inner.prompts.lock().unwrap();
    let Some(p) = prompts.iter_mut().find(|p| p.id == id) else {
        return Json(json!({})).into_response();
    };
    if p.telling {
        return Json(json!({})).into_response();
    }
    p.polls += 1;
    if p.polls < 2 {
        return Json(json!({})).into_response();
    }
    let broken = p.graph.to_string().contains("\"Broken\"");
    let entry = if p.interrupted {
        json!({"prompt": [], "outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [
            ["execution_start", {"prompt_id": id}],
            ["execution_interrupted", {"prompt_id": id, "node_id": "3", "node_type": "KSampler", "executed": []}]
        ]}})
    } else if broken {
        json!({"prompt": [], "outputs": {}, "status": {"status_str": "error", "completed": false, "messages": [
            ["execution_start", {"prompt_id": id}],
            ["execution_error", {"prompt_id": id, "node_id": "7", "node_type": "Broken", "exception_message": "CUDA out of memory\n", "exception_type": "torch.OutOfMemoryError"}]
        ]}})
    } else if p.graph.to_string().contains("\"MixedOutputs\"") {
        // Every kind of output at once, as the nodes of §5 of comfyui-workflows.md list
        // them: stills, an animated WebP, a video, VideoHelperSuite's `gifs`, audio, and
        // a temp preview.
        json!({"prompt": [], "status": {"status_str": "success", "completed": true, "messages": []}, "outputs": {
            "10": {"images": [{"filename": "anim_00001_.webp", "subfolder": "", "type": "output"}], "animated": [true]},
            "9": {"images": [{"filename": "still_00001_.png", "subfolder": "", "type": "output"},
                             {"filename": "still_00002_.png", "subfolder": "", "type": "output"}]},
            "12": {"images": [{"filename": "clip_00001_.mp4", "subfolder": "video", "type": "output"}], "animated": [true]},
            "13": {"gifs": [{"filename": "vhs_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4", "frame_rate": 8.0}]},
            "14": {"audio": [{"filename": "take_00001_.flac", "subfolder": "audio", "type": "output"}]},
            "15": {"images": [{"filename": "ComfyUI_temp_abcd_00001_.png", "subfolder": "", "type": "temp"}]}
        }})
    } else {
        json!({"prompt": [], "outputs": {"9": {"images": [{"filename": "slate_00001_.png", "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": true, "messages": []}})
    };
    Json(json!({ id: entry })).into_response()
}

async fn queue_change(
    State(inner): State<Arc<Inner>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    inner
        .pub_requests
        .lock()
        .unwrap()
        .push(("/queue".into(), body.clone()));
    let deleted: Vec<String> = body["delete"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    inner
        .prompts
        .lock()
        .unwrap()
        .retain(|p| !deleted.contains(&p.id));
    StatusCode::OK.into_response()
}

async fn interrupt(
    State(inner): State<Arc<Inner>>,
    Json(body): Json<serde_json::Value>,
) -> Response {
    inner
        .pub_requests
        .lock()
        .unwrap()
        .push(("/interrupt".into(), body.clone()));
    if !inner.deaf.load(Ordering::SeqCst) {
        // The running prompt (the first still waiting) stops; the id, when given, must be it.
        let mut prompts = inner.prompts.lock().unwrap();
        if let Some(p) = prompts.iter_mut().find(|p| p.polls < 2) {
            if body["prompt_id"].as_str().is_none_or(|id| id == p.id) {
                p.interrupted = true;
                p.telling = false;
                p.polls = 2;
            }
        }
    }
    StatusCode::OK.into_response()
}

async fn upload(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let text = String::from_utf8_lossy(&body);
    let name = text
        .split("filename=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("upload.png")
        .to_owned();
    inner.pub_requests.lock().unwrap().push((
        "/upload/image".into(),
        json!({"name": name, "bytes": body.len()}),
    ));
    Json(json!({"name": name, "subfolder": "", "type": "input"})).into_response()
}

async fn view(
    State(inner): State<Arc<Inner>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let name = q.get("filename").cloned().unwrap_or_default();
    if name.contains("..") || name.starts_with('/') {
        return (StatusCode::BAD_REQUEST, "invalid filename").into_response();
    }
    // A real 64×36 PNG, so that what is made from outputs (an animatic) can decode it.
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, TINY_PNG)
        .expect("a valid PNG");
    ([(header::CONTENT_TYPE, "image/png")], bytes).into_response()
}

async fn not_found(State(inner): State<Arc<Inner>>) -> Response {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    (StatusCode::NOT_FOUND, "404: Not Found").into_response()
}

async fn socket(
    State(inner): State<Arc<Inner>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let client = q.get("clientId").cloned().unwrap_or_default();
    upgrade.on_upgrade(move |mut ws| async move {
        use axum::extract::ws::Message;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        inner.opened.lock().unwrap().push(client.clone());
        inner.sockets.lock().unwrap().insert(client.clone(), tx);
        let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client}});
        let _ = ws.send(Message::Text(hello.to_string().into())).await;
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let message = match frame {
                        Some(Frame::Text(v)) => Message::Text(v.to_string().into()),
                        Some(Frame::Binary(b)) => Message::Binary(b.into()),
                        Some(Frame::Close) | None => break,
                    };
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
                incoming = ws.recv() => {
                    if !matches!(incoming, Some(Ok(_))) {
                        break;
                    }
                }
            }
        }
        inner.sockets.lock().unwrap().remove(&client);
    })
}

/// What ComfyUI says on the socket while it runs prompt `id`.
async fn tell(inner: Arc<Inner>, tx: tokio::sync::mpsc::UnboundedSender<Frame>, id: String) {
    let drop_after = *inner.drop_after.lock().unwrap();
    let mut hold = inner.hold.subscribe();
    let png = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, TINY_PNG)
        .expect("a valid PNG");
    let mut preview = vec![0, 0, 0, 1, 0, 0, 0, 2];
    preview.extend_from_slice(&png);
    let mut frames = vec![
        Frame::Text(json!({"type": "execution_start", "data": {"prompt_id": id}})),
        Frame::Text(json!({"type": "executing", "data": {"node": "3", "prompt_id": id}})),
    ];
    for step in 1..=STEPS {
        frames.push(Frame::Text(json!({"type": "progress", "data": {"value": step, "max": STEPS, "prompt_id": id, "node": "3"}})));
        if step == 2 {
            frames.push(Frame::Binary(preview.clone()));
        }
    }
    frames.push(Frame::Text(json!({"type": "executed", "data": {"node": "9", "prompt_id": id,
        "output": {"images": [{"filename": "slate_00001_.png", "subfolder": "", "type": "output"}]}}})));
    frames.push(Frame::Text(
        json!({"type": "executing", "data": {"node": null, "prompt_id": id}}),
    ));
    let last_step = frames.len() - 3;
    for (n, frame) in frames.into_iter().enumerate() {
        if drop_after == Some(n) {
            let _ = tx.send(Frame::Close);
            break;
        }
        if n == last_step {
            // Held before the last step while the test looks.
            let _ = hold.wait_for(|held| !*held).await;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
        if tx.send(frame).is_err() {
            break;
        }
    }
    // The run goes on without the socket; its history is written at the end.
    let _ = hold.wait_for(|held| !*held).await;
    if let Some(p) = inner
        .prompts
        .lock()
        .unwrap()
        .iter_mut()
        .find(|p| p.id == id && !p.interrupted)
    {
        p.telling = false;
        p.polls = 1;
    }
}

/// A few core classes in the shapes of ComfyUI 0.3.64 (both combo shapes, a 64-bit seed,
/// hidden inputs), the loaders' choices from the fake's folders, then the added ones.
async fn object_info(State(inner): State<Arc<Inner>>) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let models = inner.models.lock().unwrap().clone();
    let files = |folder: &str| json!(models.get(folder).cloned().unwrap_or_default());
    let core = |input: serde_json::Value, output: serde_json::Value, output_node: bool| json!({"input": input, "output": output, "output_node": output_node, "python_module": "nodes", "category": "core"});
    let mut nodes = serde_json::Map::new();
    for (class, spec) in [
        (
            "CheckpointLoaderSimple",
            core(
                json!({"required": {"ckpt_name": [files("checkpoints"), {"tooltip": "The checkpoint to load."}]}}),
                json!(["MODEL", "CLIP", "VAE"]),
                false,
            ),
        ),
        (
            "LoraLoader",
            core(
                json!({"required": {"model": ["MODEL"], "clip": ["CLIP"], "lora_name": [files("loras"), {}],
            "strength_model": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}],
            "strength_clip": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}]}}),
                json!(["MODEL", "CLIP"]),
                false,
            ),
        ),
        (
            "CLIPTextEncode",
            core(
                json!({"required": {"text": ["STRING", {"multiline": true, "dynamicPrompts": true}], "clip": ["CLIP"]}}),
                json!(["CONDITIONING"]),
                false,
            ),
        ),
        (
            "EmptyLatentImage",
            core(
                json!({"required": {"width": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
            "height": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}], "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]}}),
                json!(["LATENT"]),
                false,
            ),
        ),
        (
            "KSampler",
            core(
                json!({"required": {"model": ["MODEL"],
            "seed": ["INT", {"default": 0, "min": 0, "max": 18_446_744_073_709_551_615_u64, "control_after_generate": true}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}], "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [["euler", "euler_ancestral", "dpmpp_2m"], {}], "scheduler": ["COMBO", {"options": ["simple", "normal", "karras"], "default": "simple"}],
            "positive": ["CONDITIONING"], "negative": ["CONDITIONING"], "latent_image": ["LATENT"], "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}]}}),
                json!(["LATENT"]),
                false,
            ),
        ),
        (
            "VAEDecode",
            core(
                json!({"required": {"samples": ["LATENT"], "vae": ["VAE"]}}),
                json!(["IMAGE"]),
                false,
            ),
        ),
        (
            "VAEEncode",
            core(
                json!({"required": {"pixels": ["IMAGE"], "vae": ["VAE"]}}),
                json!(["LATENT"]),
                false,
            ),
        ),
        (
            "LoadImage",
            core(
                json!({"required": {"image": [["example.png"], {"image_upload": true}]}, "hidden": {"unique_id": "UNIQUE_ID"}}),
                json!(["IMAGE", "MASK"]),
                false,
            ),
        ),
        (
            "ImageScale",
            core(
                json!({"required": {"image": ["IMAGE"], "upscale_method": [["nearest-exact", "bilinear", "area", "bicubic", "lanczos"], {}],
            "width": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}], "height": ["INT", {"default": 512, "min": 0, "max": 16384, "step": 1}],
            "crop": [["disabled", "center"], {}]}}),
                json!(["IMAGE"]),
                false,
            ),
        ),
        (
            "SaveImage",
            core(
                json!({"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}),
                json!([]),
                true,
            ),
        ),
    ] {
        nodes.insert(class.to_owned(), spec);
    }
    nodes.extend(inner.extra_nodes.lock().unwrap().clone());
    Json(serde_json::Value::Object(nodes)).into_response()
}

async fn model_folders(State(inner): State<Arc<Inner>>) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    let folders: Vec<String> = inner.models.lock().unwrap().keys().cloned().collect();
    Json(folders).into_response()
}

async fn model_files(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(folder): axum::extract::Path<String>,
) -> Response {
    if let Some(r) = misbehave(&inner).await {
        return r;
    }
    match inner.models.lock().unwrap().get(&folder) {
        Some(files) => Json(files.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "404: Not Found").into_response(),
    }
}
