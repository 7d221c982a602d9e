//! The ComfyUI executor: a `comfyui` stage builds its workflow graph with the stage's
//! inputs bound (an image it starts from is uploaded to the endpoint first, under a name
//! tied to its asset), queues it on the current Colab endpoint through the ComfyUI client, follows
//! it by polling (`/history`, `/queue`), downloads the outputs into the stage's output
//! directory and turns each into an asset with its provenance (the exact graph and seed).
//!
//! While no endpoint is healthy the stage waits, saying so, and goes on when one is (after
//! a failover or a new `up`). A prompt lost with its runtime (the endpoint changed, or
//! ComfyUI forgot it) is queued again. After Slate restarts, an attempt whose runner died
//! is resumed from ComfyUI's own state: the prompt recorded by the lost attempt is looked
//! up on the same endpoint and followed (or its outputs fetched) rather than run twice.
//!
//! Progress comes from ComfyUI's WebSocket (opened before the prompt is queued, with the
//! attempt's id as client id): `progress {value, max}` moves the stage's bar, preview
//! frames and the images nodes write become the stage's "last image", and `executing`
//! with no node sends Slate to the history at once. The socket is a bonus, never the
//! truth: the history is polled all along, so a socket that drops (Cloudflare cuts idle
//! ones) or never opens (an old build, a proxy) costs only the fine progress. A ping every
//! 20 s keeps it open.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::queue::{Claim, Outcome};
use super::{outputs, store, Executor};
use crate::assets::Assets;
use crate::colab::client::{
    socket_binary, socket_text, ComfyClient, ComfyError, PromptState, SocketEvent,
};
use crate::colab::probe::Prober;
use app::pipelines::template::{Reference, Stage};

pub struct ComfyExecutor {
    pub pool: PgPool,
    pub assets: Assets,
    pub prober: Prober,
    pub work: PathBuf,
    /// How often a prompt is polled, and an absent endpoint looked for again.
    pub poll: Duration,
    /// The checkpoint the txt2img graph loads.
    pub checkpoint: String,
}

/// The graph of a built-in workflow with the stage's values bound.
pub fn graph(
    workflow: &str,
    values: &serde_json::Map<String, Value>,
    checkpoint: &str,
    prefix: &str,
) -> Option<Value> {
    let int = |k: &str, d: i64| values.get(k).and_then(Value::as_i64).unwrap_or(d);
    let num = |k: &str, d: f64| values.get(k).and_then(Value::as_f64).unwrap_or(d);
    let text = |k: &str| {
        values
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match workflow {
        "txt2img" => Some(json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {
                "width": int("width", 1024), "height": int("height", 576), "batch_size": int("count", 1)}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text("prompt"), "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": text("negative"), "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": int("seed", 0), "steps": int("steps", 25), "cfg": num("cfg", 7.0),
                "sampler_name": "euler", "scheduler": "normal", "denoise": num("denoise", 1.0),
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
        })),
        "img2img" => Some(json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
            "10": {"class_type": "LoadImage", "inputs": {"image": text("image")}},
            "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text("prompt"), "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": text("negative"), "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": int("seed", 0), "steps": int("steps", 25), "cfg": num("cfg", 7.0),
                "sampler_name": "euler", "scheduler": "normal", "denoise": num("denoise", 0.6),
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["11", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
        })),
        _ => None,
    }
}

/// The stage's inputs with `${params.…}` resolved to the run's values (an input that is
/// exactly one reference keeps the value's type).
fn bind(stage: &Stage, params: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in &stage.inputs {
        let bound = match value {
            Value::String(text) => {
                let refs = app::pipelines::template::references(text).unwrap_or_default();
                match refs.as_slice() {
                    [Reference::Param(p)] if text.trim() == format!("${{params.{p}}}") => {
                        params[p.as_str()].clone()
                    }
                    _ => {
                        let mut t = text.clone();
                        for r in refs {
                            if let Reference::Param(p) = r {
                                let v = match &params[p.as_str()] {
                                    Value::String(s) => s.clone(),
                                    Value::Null => String::new(),
                                    other => other.to_string(),
                                };
                                t = t.replace(&format!("${{params.{p}}}"), &v);
                            }
                        }
                        Value::String(t)
                    }
                }
            }
            other => other.clone(),
        };
        out.insert(name.clone(), bound);
    }
    out
}

impl ComfyExecutor {
    async fn status(&self, claim: &Claim, message: &str, progress: Option<f32>) {
        let _ = sqlx::query(
            "update run_stages set status_message = $2, progress = coalesce($3, progress)
             where id = $1 and state = 'running'",
        )
        .bind(claim.stage_id)
        .bind(message)
        .bind(progress)
        .execute(&self.pool)
        .await;
    }

    /// The healthy endpoint now: (its row id, its URL).
    async fn endpoint(&self) -> Option<(Uuid, String)> {
        sqlx::query_as(
            "select id, url from colab_endpoints where state = 'healthy'
             order by verified_at desc nulls last limit 1",
        )
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten()
    }

    /// The prompt a lost earlier attempt of this stage left on ComfyUI: (prompt, endpoint).
    async fn left_behind(&self, claim: &Claim) -> Option<(String, Uuid)> {
        let reference: Option<String> = sqlx::query_scalar(
            "select executor_ref from stage_attempts
             where stage_id = $1 and state = 'lost' and executor_ref like 'comfyui %'
             order by number desc limit 1",
        )
        .bind(claim.stage_id)
        .fetch_optional(&self.pool)
        .await
        .ok()
        .flatten();
        let reference = reference?;
        let mut parts = reference.split_whitespace().skip(1);
        let prompt = parts.next()?.to_owned();
        let endpoint = parts.next()?.strip_prefix("on:")?.parse().ok()?;
        Some((prompt, endpoint))
    }

    /// Waits `poll`, or less when cancelled; says whether it was cancelled.
    async fn pause(&self, cancel: &mut watch::Receiver<bool>) -> bool {
        let cancelled = tokio::select! {
            _ = tokio::time::sleep(self.poll) => None,
            r = cancel.wait_for(|c| *c) => Some(r.is_ok()),
        };
        cancelled.unwrap_or_else(|| *cancel.borrow())
    }

    async fn attempt(
        &self,
        claim: &Claim,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let (stored, stage) = store::claimed_stage(&self.pool, claim).await?;
        let workflow = stage.workflow.clone().unwrap_or_default();
        let mut values = bind(&stage, &claim.params);
        let prefix = format!("slate_{}", claim.stage_id.simple());
        // Images the graph starts from: fetched here, uploaded to whichever endpoint runs it.
        let images = self.images(claim, &stored.template, &stage).await?;
        for (input, file) in &images {
            values.insert(input.clone(), json!(file.name));
        }
        let mut graph = graph(&workflow, &values, &self.checkpoint, &prefix)
            .ok_or_else(|| format!("unknown workflow {workflow}"))?;
        let mut resume = self.left_behind(claim).await;
        loop {
            let Some((endpoint_id, url)) = self.endpoint().await else {
                self.status(claim, "Waiting for the ComfyUI endpoint: none is healthy (is the Colab notebook running?).", Some(0.0)).await;
                if self.pause(&mut cancel).await {
                    return Ok(Outcome::Cancelled);
                }
                continue;
            };
            let client = ComfyClient::new(self.prober.clone(), &url);
            let mut socket = self.open_socket(&url, claim).await;
            let queued = match resume.take() {
                Some((prompt, on)) if on == endpoint_id => Ok(prompt),
                // Its images first (under the names this endpoint gives them), then the graph.
                _ => {
                    async {
                        self.upload(&client, &images, &mut values).await?;
                        if let Some(bound) =
                            self::graph(&workflow, &values, &self.checkpoint, &prefix)
                        {
                            graph = bound;
                        }
                        client
                            .submit(&graph, &claim.attempt_id.to_string())
                            .await
                            .map(|s| s.prompt_id)
                    }
                    .await
                }
            };
            let prompt = match queued {
                Ok(prompt) => prompt,
                Err(ComfyError::Endpoint(e)) => {
                    self.status(
                        claim,
                        &format!("Waiting for the ComfyUI endpoint: {e}."),
                        None,
                    )
                    .await;
                    if self.pause(&mut cancel).await {
                        return Ok(Outcome::Cancelled);
                    }
                    continue;
                }
                Err(e) => return Ok(Outcome::Failed(e.to_string())),
            };
            let _ = sqlx::query(
                "update stage_attempts set executor_ref = $2, detail = $3 where id = $1",
            )
            .bind(claim.attempt_id)
            .bind(format!("comfyui {prompt} on:{endpoint_id}"))
            .bind(json!({"graph": graph, "prompt_id": prompt}))
            .execute(&self.pool)
            .await;
            match self
                .follow(
                    claim,
                    &client,
                    &prompt,
                    endpoint_id,
                    &mut cancel,
                    &mut socket,
                )
                .await?
            {
                Followed::Done(outcome) => return Ok(outcome),
                Followed::Outputs(files) => {
                    self.keep(claim, &stored, &client, &files, &graph, &prompt)
                        .await?;
                    return Ok(Outcome::Succeeded);
                }
                // Queue it again (on whichever endpoint is healthy now).
                Followed::Lost => continue,
            }
        }
    }

    /// The stage's inputs that are image assets: (input, the file), fetched into the run's
    /// inputs.
    async fn images(
        &self,
        claim: &Claim,
        template: &app::pipelines::template::Template,
        stage: &Stage,
    ) -> Result<Vec<(String, Image)>, String> {
        let files = super::exec_local::Workspace {
            pool: self.pool.clone(),
            assets: self.assets.clone(),
            work: self.work.clone(),
        };
        let mut out = Vec::new();
        for (input, raw) in &stage.inputs {
            let Some(param) = raw
                .as_str()
                .and_then(|r| r.trim().strip_prefix("${params."))
                .and_then(|r| r.strip_suffix('}'))
                .and_then(|p| template.parameter(p))
            else {
                continue;
            };
            if !matches!(param.ty, app::pipelines::template::ParamType::Asset { .. }) {
                continue;
            }
            let Some(asset) = claim.params[param.name.as_str()]
                .as_str()
                .and_then(|a| a.parse::<Uuid>().ok())
            else {
                continue;
            };
            let fetched = files.input(claim.run_id, asset).await?;
            let bytes = tokio::fs::read(&fetched.path)
                .await
                .map_err(|e| format!("cannot read the input {}: {e}", fetched.name))?;
            out.push((
                input.clone(),
                Image {
                    name: upload_name(asset, &fetched.name),
                    bytes,
                },
            ));
        }
        Ok(out)
    }

    /// Uploads the images to the endpoint, binding the names it gave them.
    async fn upload(
        &self,
        client: &ComfyClient,
        images: &[(String, Image)],
        values: &mut serde_json::Map<String, Value>,
    ) -> Result<(), ComfyError> {
        for (input, image) in images {
            let name = client
                .upload_image(&image.name, image.bytes.clone())
                .await?;
            values.insert(input.clone(), json!(name));
        }
        Ok(())
    }

    /// Opens the endpoint's socket and reads it in a task; `None` when it cannot be opened
    /// (the stage is then followed by polling alone).
    async fn open_socket(&self, url: &str, claim: &Claim) -> Option<mpsc::Receiver<SocketEvent>> {
        let socket = match self
            .prober
            .websocket(url, &claim.attempt_id.to_string())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(error = %e, "ComfyUI's socket cannot be opened; following by polling");
                return None;
            }
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(read_socket(socket, tx));
        Some(rx)
    }

    /// Uses what the socket said: progress, the last image. Returns true when the prompt
    /// is said to be finished (its history is worth reading now).
    async fn heard(
        &self,
        claim: &Claim,
        client: &ComfyClient,
        prompt: &str,
        event: SocketEvent,
        last_preview: &mut Option<tokio::time::Instant>,
    ) -> bool {
        match event {
            SocketEvent::Progress {
                prompt: p,
                value,
                max,
            } if p == prompt || p.is_empty() => {
                let fraction = 0.05 + 0.9 * (value.min(max) as f32 / max as f32);
                self.status(
                    claim,
                    &format!("Generating on ComfyUI: step {value} of {max}."),
                    Some(fraction),
                )
                .await;
                false
            }
            SocketEvent::Preview { mime, bytes } => {
                // At most one preview a second: they can come with every step.
                if last_preview.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last_preview = Some(tokio::time::Instant::now());
                    self.preview(claim, mime, bytes).await;
                }
                false
            }
            SocketEvent::Executed { prompt: p, images } if p == prompt => {
                if let Some(image) = images.last() {
                    if let Ok(bytes) = client.download(image).await {
                        let mime = if image.filename.to_ascii_lowercase().ends_with(".png") {
                            "image/png"
                        } else {
                            "image/jpeg"
                        };
                        self.preview(claim, mime, bytes).await;
                    }
                }
                false
            }
            SocketEvent::Finished { prompt: p } | SocketEvent::Error { prompt: p, .. } => {
                p == prompt
            }
            _ => false,
        }
    }

    /// Keeps the stage's last image (small: previews are a few tens of kB).
    async fn preview(&self, claim: &Claim, mime: &str, bytes: Vec<u8>) {
        if bytes.len() > 8 * 1024 * 1024 {
            return;
        }
        let _ = sqlx::query(
            "update run_stages set preview = $2, preview_type = $3, preview_at = now()
             where id = $1 and state = 'running'",
        )
        .bind(claim.stage_id)
        .bind(bytes)
        .bind(mime)
        .execute(&self.pool)
        .await;
    }

    /// Waits `poll` while listening to the socket; says whether the run was cancelled.
    async fn wait(
        &self,
        claim: &Claim,
        client: &ComfyClient,
        prompt: &str,
        cancel: &mut watch::Receiver<bool>,
        socket: &mut Option<mpsc::Receiver<SocketEvent>>,
        heard: &mut Heard,
    ) -> bool {
        let until = tokio::time::Instant::now() + self.poll;
        loop {
            let event = match socket.as_mut() {
                Some(rx) => {
                    let got = tokio::select! {
                        _ = tokio::time::sleep_until(until) => None,
                        c = cancel.wait_for(|c| *c) => Some(Err(c.is_ok())),
                        e = rx.recv() => Some(Ok(e)),
                    };
                    match got {
                        None => return *cancel.borrow(),
                        Some(Err(cancelled)) => return cancelled,
                        Some(Ok(e)) => e,
                    }
                }
                None => return self.pause(cancel).await,
            };
            match event {
                Some(event) => {
                    heard.steps |= matches!(&event, SocketEvent::Progress { .. });
                    if self
                        .heard(claim, client, prompt, event, &mut heard.last_preview)
                        .await
                    {
                        return *cancel.borrow();
                    }
                }
                None => {
                    // The socket dropped: polling alone from here.
                    tracing::info!("ComfyUI's socket closed; following by polling");
                    *socket = None;
                }
            }
        }
    }

    async fn follow(
        &self,
        claim: &Claim,
        client: &ComfyClient,
        prompt: &str,
        endpoint: Uuid,
        cancel: &mut watch::Receiver<bool>,
        socket: &mut Option<mpsc::Receiver<SocketEvent>>,
    ) -> Result<Followed, String> {
        let mut heard = Heard::default();
        loop {
            if *cancel.borrow() {
                let _ = client.cancel(prompt).await;
                return Ok(Followed::Done(Outcome::Cancelled));
            }
            match client.state(prompt).await {
                Ok(PromptState::Pending) => {
                    self.status(claim, "Queued on ComfyUI.", Some(0.05)).await
                }
                // The socket's steps are finer than this, once it has given any.
                Ok(PromptState::Running) if !heard.steps => {
                    self.status(claim, "Generating on ComfyUI.", Some(0.5))
                        .await
                }
                Ok(PromptState::Running) => {}
                Ok(PromptState::Succeeded { outputs }) => return Ok(Followed::Outputs(outputs)),
                Ok(PromptState::Failed { message }) => {
                    return Ok(Followed::Done(Outcome::Failed(format!(
                        "ComfyUI: {message}"
                    ))))
                }
                Ok(PromptState::Lost) => {
                    self.status(
                        claim,
                        "ComfyUI restarted and forgot the prompt; queueing it again.",
                        Some(0.0),
                    )
                    .await;
                    return Ok(Followed::Lost);
                }
                Err(ComfyError::Endpoint(e)) => {
                    // The runtime may be gone: a new endpoint means the prompt went with it.
                    if self.endpoint().await.map(|(id, _)| id) != Some(endpoint) {
                        self.status(
                            claim,
                            "The ComfyUI endpoint changed; queueing the prompt on the new one.",
                            Some(0.0),
                        )
                        .await;
                        return Ok(Followed::Lost);
                    }
                    self.status(
                        claim,
                        &format!("Waiting for the ComfyUI endpoint: {e}."),
                        None,
                    )
                    .await;
                }
                Err(e) => return Ok(Followed::Done(Outcome::Failed(e.to_string()))),
            }
            if self
                .wait(claim, client, prompt, cancel, socket, &mut heard)
                .await
            {
                let _ = client.cancel(prompt).await;
                return Ok(Followed::Done(Outcome::Cancelled));
            }
        }
    }

    /// Downloads the outputs into the stage's output directory and records them as
    /// assets with the exact graph and seed.
    async fn keep(
        &self,
        claim: &Claim,
        stored: &store::Stored,
        client: &ComfyClient,
        files: &[crate::colab::client::OutputFile],
        graph: &Value,
        prompt: &str,
    ) -> Result<(), String> {
        let out = self
            .work
            .join(claim.run_id.to_string())
            .join(&claim.name)
            .join("out");
        let _ = tokio::fs::remove_dir_all(&out).await;
        tokio::fs::create_dir_all(&out)
            .await
            .map_err(|e| format!("cannot keep the outputs: {e}"))?;
        let provenance = json!({
            "template": stored.name,
            "template_version": stored.version,
            "stage": claim.name,
            "attempt": claim.attempt,
            "params": claim.params,
            "executor": "comfyui",
            "prompt_id": prompt,
            "graph": graph,
            "seed": graph["3"]["inputs"]["seed"],
        });
        for (i, file) in files.iter().enumerate() {
            let bytes = client
                .download(file)
                .await
                .map_err(|e| format!("cannot download {}: {e}", file.filename))?;
            let (on_disk, name) = output_names(&claim.name, i, &file.filename);
            let path = out.join(on_disk);
            tokio::fs::write(&path, bytes)
                .await
                .map_err(|e| format!("cannot keep {name}: {e}"))?;
            outputs::ingest(&self.assets, claim, &path, &name, &provenance).await?;
        }
        Ok(())
    }
}

/// The name an input image is uploaded to ComfyUI under (it becomes a file on the
/// endpoint): the asset's id, then its name with anything but ASCII letters, digits,
/// `.`, `_` and `-` replaced, never starting with a dot, at most 100 characters.
fn upload_name(asset: Uuid, asset_name: &str) -> String {
    let safe: String = asset_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("slate_{}_{}", asset.simple(), safe.trim_start_matches('.'))
}

/// Where the `index`th image ComfyUI gave a stage is kept, and the asset's name: on disk
/// always `<stage>_<n>.<ext>` (the endpoint's file name is its own, and never a path
/// here), the extension kept when it is one to eight lower-case letters or digits; the
/// asset is named that way for a PNG, after the endpoint's name otherwise.
fn output_names(stage: &str, index: usize, filename: &str) -> (String, String) {
    let extension = super::exec_local::safe_extension(filename).unwrap_or_else(|| "png".to_owned());
    let on_disk = format!("{stage}_{:04}.{extension}", index + 1);
    let name = if extension == "png" {
        on_disk.clone()
    } else {
        crate::assets::clean_name(filename)
    };
    (on_disk, name)
}

/// An image a graph starts from: the name it is uploaded under, and its bytes (an image
/// for a graph is small).
struct Image {
    name: String,
    bytes: Vec<u8>,
}

/// What the socket has given while a prompt is followed.
#[derive(Default)]
struct Heard {
    /// When the last preview was kept (they are kept at most once a second).
    last_preview: Option<tokio::time::Instant>,
    /// Whether it gave steps (then they, not the coarse polling, move the bar).
    steps: bool,
}

enum Followed {
    Done(Outcome),
    Outputs(Vec<crate::colab::client::OutputFile>),
    Lost,
}

#[async_trait]
impl Executor for ComfyExecutor {
    async fn run(&self, claim: &Claim, cancel: watch::Receiver<bool>) -> Outcome {
        match self.attempt(claim, cancel).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        }
    }
}

/// Reads ComfyUI's socket into `tx` until it closes (or nobody listens), pinging every
/// 20 s so that an idle tunnel does not cut it.
async fn read_socket(socket: crate::colab::probe::Socket, tx: mpsc::Sender<SocketEvent>) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut write, mut read) = socket.split();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if write.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            message = read.next() => {
                let event = match message {
                    Some(Ok(Message::Text(text))) => socket_text(text.as_str()),
                    Some(Ok(Message::Binary(bytes))) => socket_binary(&bytes),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return,
                };
                if event != SocketEvent::Other && tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_file_names_never_become_paths_here() {
        assert_eq!(
            output_names("keyframes", 0, "slate_00001_.png"),
            ("keyframes_0001.png".into(), "keyframes_0001.png".into())
        );
        let (on_disk, name) = output_names("keyframes", 1, "../../../../etc/cron.d/x.webp");
        assert_eq!(on_disk, "keyframes_0002.webp");
        assert_eq!(
            name, "../../../../etc/cron.d/x.webp",
            "a name, shown as such"
        );
        for hostile in ["/etc/passwd", "a/b.sh;rm", "x.PHP5/..", ".."] {
            let (on_disk, _) = output_names("s", 2, hostile);
            assert!(
                on_disk.starts_with("s_0003.") && !on_disk[1..].contains(['/', '\\']),
                "{hostile}: {on_disk}"
            );
        }
    }

    #[test]
    fn upload_names_keep_only_safe_characters() {
        let asset = Uuid::nil();
        assert_eq!(
            upload_name(asset, "board_012.png"),
            format!("slate_{}_board_012.png", asset.simple())
        );
        let name = upload_name(asset, "../../x/é y.png");
        assert!(!name.contains('/'), "{name}");
        assert!(name.ends_with("_.._x___y.png"), "{name}");
    }
}
