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
//! 20 s keeps it open. The stage's bar only moves forward within an attempt: queued,
//! running, the sampler's steps (most of the bar), then the downloads.
//!
//! Some ends are final, whatever attempts are left, because another attempt would only
//! repeat them: a workflow ComfyUI refuses (HTTP 400: the same graph gets the same
//! answer; the stage says which node and input, in ComfyUI's words) and a prompt
//! interrupted from outside Slate (someone pressed Cancel in ComfyUI's own page: the
//! stage says so, and a person decides whether to run it again). A cancel from Slate that
//! ComfyUI did not take is reported, not dropped.

mod graph;
mod prepare;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub use self::graph::bind as bind_values;
use self::graph::{bind_in, output_names};
use crate::comfyui::client::{ComfyClient, ComfyError, OutputFile, PromptState};
use crate::comfyui::probe::Prober;
use crate::comfyui::socket::{self, SocketEvent};
use crate::pipelines::attempt::Attempt;
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::outputs;
use crate::pipelines::queue::{Claim, Outcome};
use crate::pipelines::workspace::Workspace;
use app::pipelines::template::StageKind;

/// The queue of ComfyUI prompts (`SLATE_COMFYUI_PROMPTS` at once across replicas).
pub const QUEUE: &str = "comfyui";

/// Any ComfyUI stage is accepted: the endpoint comes and goes, and a stage waits for it.
pub fn admit() {}

/// An end that another attempt would only repeat (a refusal) or that someone chose (an
/// interrupt from outside): the stage fails now, with `reason`, and is not retried.
fn final_failure(reason: String) -> Outcome {
    Outcome::FailedForGood(reason)
}

/// Where the bar stands at each phase of a prompt: queued, running before any step is
/// heard of, then the sampler's steps take it to [`STEPS_END`]; the downloads fill the rest.
const QUEUED: f32 = 0.02;
const RUNNING: f32 = 0.05;
const STEPS_END: f32 = 0.95;

/// The stage's bar for one attempt: it only moves forward (a second sampler, or a
/// prompt queued again, starts its steps from 0; the bar waits until they pass it).
#[derive(Default)]
struct Bar(f32);

impl Bar {
    /// The fraction to show, or `None` to leave the bar where it is.
    fn at(&mut self, fraction: f32) -> Option<f32> {
        let fraction = fraction.clamp(0.0, 1.0);
        (fraction > self.0).then(|| {
            self.0 = fraction;
            fraction
        })
    }
}

pub struct ComfyExecutor {
    pub files: Workspace,
    pub prober: Prober,
    /// How many prompts may run at once.
    pub capacity: i64,
    /// How often a prompt is polled, and an absent endpoint looked for again.
    pub poll: Duration,
}

impl ComfyExecutor {
    pub fn from_config(config: &crate::config::Config, files: Workspace, prober: Prober) -> Self {
        ComfyExecutor {
            files,
            prober,
            capacity: config.comfyui_prompts,
            poll: Duration::from_millis(config.comfyui_poll_ms.max(50)),
        }
    }
}

impl ComfyExecutor {
    /// The prompt a lost earlier attempt of this stage left on ComfyUI: (prompt, endpoint).
    async fn left_behind(&self, attempt: &Attempt) -> Option<(String, Uuid)> {
        let (reference, _) = attempt.left_behind("comfyui").await?;
        let mut parts = reference.split_whitespace();
        let prompt = parts.next()?.to_owned();
        let endpoint = parts.next()?.strip_prefix("on:")?.parse().ok()?;
        Some((prompt, endpoint))
    }

    async fn endpoint(&self) -> Option<(Uuid, String)> {
        crate::comfyui::healthy_endpoint(&self.files.pool).await
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
        attempt: &Attempt,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let (claim, stage) = (&attempt.claim, &attempt.stage);
        let StageKind::Comfyui(comfy) = &stage.kind else {
            return Err("not a comfyui stage".into());
        };
        let version = prepare::version(&self.files.pool, attempt, &comfy.workflow).await?;
        let scope = self.files.scope(attempt).await?;
        let bound = bind_in(stage, &claim.params, &scope);
        let prefix = format!("slate_{}", claim.stage_id.simple());
        // Files the graph loads: fetched here, uploaded to whichever endpoint runs it.
        let uploads = prepare::uploads(attempt, &self.files, &version.bindings).await?;
        let mut resume = self.left_behind(attempt).await;
        let mut heard = Heard::default();
        loop {
            let Some((endpoint_id, url)) = self.endpoint().await else {
                attempt.status("Waiting for the ComfyUI endpoint: none is healthy (is the Colab notebook running?).", None).await;
                if self.pause(&mut cancel).await {
                    return Ok(Outcome::Cancelled);
                }
                continue;
            };
            let client = ComfyClient::new(self.prober.clone(), &url);
            let mut values = bound.clone();
            // The models it names, on this endpoint, now.
            let models = match prepare::models(&self.prober, &url, &version, &mut values).await {
                Ok(models) => models,
                Err(prepare::ModelProblem::Missing(why)) => {
                    tracing::warn!(stage = %claim.name, run = %claim.run_id, reason = %why, "a ComfyUI stage names a model the endpoint lacks");
                    return Ok(final_failure(format!("Not queued: {why}.")));
                }
                Err(prepare::ModelProblem::Endpoint(e)) => {
                    attempt
                        .status(&format!("Waiting for the ComfyUI endpoint: {e}."), None)
                        .await;
                    if self.pause(&mut cancel).await {
                        return Ok(Outcome::Cancelled);
                    }
                    continue;
                }
            };
            heard.socket = self.open_socket(&url, claim).await;
            heard.titles = version
                .graph
                .iter()
                .map(|(id, n)| {
                    let title = n["_meta"]["title"]
                        .as_str()
                        .or(n["class_type"].as_str())
                        .unwrap_or("?");
                    (id.clone(), title.to_owned())
                })
                .collect();
            let mut graph = prepare::graph(&version, &values, &prefix);
            let queued = match resume.take() {
                Some((prompt, on)) if on == endpoint_id => Ok(prompt),
                // Its files first (under the names this endpoint gives them), then the graph.
                _ => {
                    async {
                        for upload in &uploads {
                            let name = client
                                .upload_image(&upload.name, upload.bytes.clone())
                                .await?;
                            values.insert(upload.binding.clone(), json!(name));
                        }
                        graph = prepare::graph(&version, &values, &prefix);
                        client
                            .submit(&Value::Object(graph.clone()), &claim.attempt_id.to_string())
                            .await
                            .map(|s| s.prompt_id)
                    }
                    .await
                }
            };
            let prompt = match queued {
                Ok(prompt) => prompt,
                Err(ComfyError::Endpoint(e)) => {
                    attempt
                        .status(&format!("Waiting for the ComfyUI endpoint: {e}."), None)
                        .await;
                    if self.pause(&mut cancel).await {
                        return Ok(Outcome::Cancelled);
                    }
                    continue;
                }
                Err(e @ ComfyError::Rejected { .. }) => {
                    tracing::warn!(stage = %claim.name, run = %claim.run_id, error = %e, "ComfyUI refused the workflow; the stage fails without another attempt");
                    return Ok(final_failure(e.to_string()));
                }
                Err(e) => return Ok(Outcome::Failed(e.to_string())),
            };
            let graph = Value::Object(graph);
            attempt
                .started(
                    &format!("comfyui {prompt} on:{endpoint_id}"),
                    Some(json!({"graph": graph, "prompt_id": prompt,
                                "workflow": version.name, "workflow_version": version.version})),
                )
                .await;
            match self
                .follow(
                    attempt,
                    &client,
                    &prompt,
                    endpoint_id,
                    &mut cancel,
                    &mut heard,
                )
                .await?
            {
                Followed::Done(outcome) => return Ok(outcome),
                Followed::Outputs(files) => {
                    let made = Made {
                        graph: &graph,
                        prompt: &prompt,
                        version: &version,
                        values: &values,
                        models: &models,
                        endpoint: endpoint_id,
                    };
                    self.keep(attempt, &client, &files, &made, &mut heard.bar)
                        .await?;
                    return Ok(Outcome::Succeeded);
                }
                // Queue it again (on whichever endpoint is healthy now).
                Followed::Lost => continue,
            }
        }
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
        tokio::spawn(socket::read(socket, tx));
        Some(rx)
    }

    /// Uses what the socket said: progress, the last image. Returns true when the prompt
    /// is said to be finished (its history is worth reading now).
    async fn heard(
        &self,
        attempt: &Attempt,
        client: &ComfyClient,
        prompt: &str,
        event: SocketEvent,
        heard: &mut Heard,
    ) -> bool {
        match event {
            SocketEvent::Progress {
                prompt: p,
                value,
                max,
            } if p == prompt || p.is_empty() => {
                heard.steps = true;
                let step = value.min(max) as f32 / max.max(1) as f32;
                // With several nodes at work, the bar is the share of nodes done.
                let node_states = heard.node_states;
                let (fraction, node) = match (&heard.node, heard.titles.len()) {
                    (Some(node), total) if total > 1 && node_states => (
                        RUNNING
                            + (STEPS_END - RUNNING)
                                * ((heard.nodes_done as f32 + step) / total as f32).min(1.0),
                        format!(
                            "node {node} ({}), ",
                            heard.titles.get(node).map(String::as_str).unwrap_or("?")
                        ),
                    ),
                    (Some(node), _) => (
                        RUNNING + (STEPS_END - RUNNING) * step,
                        format!(
                            "node {node} ({}), ",
                            heard.titles.get(node).map(String::as_str).unwrap_or("?")
                        ),
                    ),
                    _ => (RUNNING + (STEPS_END - RUNNING) * step, String::new()),
                };
                let done = if node_states && heard.titles.len() > 1 {
                    format!(
                        " {} of {} nodes done.",
                        heard.nodes_done,
                        heard.titles.len()
                    )
                } else {
                    String::new()
                };
                attempt
                    .status(
                        &format!("Generating on ComfyUI: {node}step {value} of {max}.{done}"),
                        heard.bar.at(fraction),
                    )
                    .await;
                false
            }
            SocketEvent::Executing { prompt: p, node } if p == prompt => {
                heard.node = Some(node);
                false
            }
            SocketEvent::NodeProgress { prompt: p, nodes } if p == prompt => {
                heard.node_states = true;
                heard.nodes_done = nodes.iter().filter(|n| n.state == "finished").count();
                if let Some(running) = nodes.iter().find(|n| n.state == "running") {
                    heard.node = Some(
                        running
                            .display_node
                            .clone()
                            .unwrap_or_else(|| running.node.clone()),
                    );
                }
                false
            }
            SocketEvent::Preview { mime, bytes } => {
                // At most one preview a second: they can come with every step.
                let last_preview = &mut heard.last_preview;
                if last_preview.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    *last_preview = Some(tokio::time::Instant::now());
                    attempt.preview(mime, bytes).await;
                }
                false
            }
            SocketEvent::Executed {
                prompt: p, images, ..
            } if p == prompt => {
                // A still is the stage's last image; a clip, a sound or a model is not.
                let still = images.iter().rev().find(|f| {
                    let name = f.filename.to_ascii_lowercase();
                    f.media == crate::comfyui::client::Media::Image
                        && [".png", ".jpg", ".jpeg", ".webp"]
                            .iter()
                            .any(|e| name.ends_with(e))
                });
                if let Some(image) = still {
                    if let Ok(bytes) = client.download(image).await {
                        let name = image.filename.to_ascii_lowercase();
                        let mime = if name.ends_with(".png") {
                            "image/png"
                        } else if name.ends_with(".webp") {
                            "image/webp"
                        } else {
                            "image/jpeg"
                        };
                        attempt.preview(mime, bytes).await;
                    }
                }
                false
            }
            SocketEvent::Finished { prompt: p }
            | SocketEvent::Error { prompt: p, .. }
            | SocketEvent::Interrupted { prompt: p } => p == prompt,
            _ => false,
        }
    }

    /// Waits `poll` while listening to the socket; says whether the run was cancelled.
    async fn wait(
        &self,
        attempt: &Attempt,
        client: &ComfyClient,
        prompt: &str,
        cancel: &mut watch::Receiver<bool>,
        heard: &mut Heard,
    ) -> bool {
        let until = tokio::time::Instant::now() + self.poll;
        loop {
            let event = match heard.socket.as_mut() {
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
                    if self.heard(attempt, client, prompt, event, heard).await {
                        return *cancel.borrow();
                    }
                }
                None => {
                    // The socket dropped: polling alone from here.
                    tracing::info!("ComfyUI's socket closed; following by polling");
                    heard.socket = None;
                }
            }
        }
    }

    async fn follow(
        &self,
        attempt: &Attempt,
        client: &ComfyClient,
        prompt: &str,
        endpoint: Uuid,
        cancel: &mut watch::Receiver<bool>,
        heard: &mut Heard,
    ) -> Result<Followed, String> {
        heard.steps = false;
        loop {
            if *cancel.borrow() {
                return Ok(Followed::Done(self.cancel(attempt, client, prompt).await));
            }
            match client.state(prompt).await {
                Ok(PromptState::Pending) => {
                    attempt
                        .status("Queued on ComfyUI.", heard.bar.at(QUEUED))
                        .await
                }
                // The socket's steps are finer than this, once it has given any.
                Ok(PromptState::Running) if !heard.steps => {
                    attempt
                        .status("Generating on ComfyUI.", heard.bar.at(RUNNING))
                        .await
                }
                Ok(PromptState::Running) => {}
                Ok(PromptState::Succeeded { outputs }) => return Ok(Followed::Outputs(outputs)),
                Ok(PromptState::Failed { message }) => {
                    return Ok(Followed::Done(Outcome::Failed(format!(
                        "ComfyUI: {message}"
                    ))))
                }
                // Slate's own cancel never gets here (it ends the attempt at once): this
                // interrupt came from another client, a person at ComfyUI's page.
                Ok(PromptState::Interrupted { node }) => {
                    let reason = format!(
                        "Interrupted in ComfyUI, not by Slate (someone pressed Cancel in ComfyUI's page, or another client sent POST /interrupt){}; not retried: run the stage again to go on.",
                        node.map(|n| format!(" while node {n} ran")).unwrap_or_default()
                    );
                    tracing::warn!(stage = %attempt.claim.name, run = %attempt.claim.run_id, prompt, "a ComfyUI prompt was interrupted from outside Slate");
                    return Ok(Followed::Done(final_failure(reason)));
                }
                Ok(PromptState::Lost) => {
                    attempt
                        .status(
                            "ComfyUI restarted and forgot the prompt; queueing it again.",
                            None,
                        )
                        .await;
                    return Ok(Followed::Lost);
                }
                Err(ComfyError::Endpoint(e)) => {
                    // The runtime may be gone: a new endpoint means the prompt went with it.
                    if self.endpoint().await.map(|(id, _)| id) != Some(endpoint) {
                        attempt
                            .status(
                                "The ComfyUI endpoint changed; queueing the prompt on the new one.",
                                None,
                            )
                            .await;
                        return Ok(Followed::Lost);
                    }
                    attempt
                        .status(&format!("Waiting for the ComfyUI endpoint: {e}."), None)
                        .await;
                }
                Err(e) => return Ok(Followed::Done(Outcome::Failed(e.to_string()))),
            }
            if self.wait(attempt, client, prompt, cancel, heard).await {
                return Ok(Followed::Done(self.cancel(attempt, client, prompt).await));
            }
        }
    }

    /// Cancels the prompt on ComfyUI. A cancel that did not take (the endpoint cannot be
    /// asked, or still lists the prompt) fails the attempt saying so, since the prompt
    /// may still be running there; the run stays cancelled.
    async fn cancel(&self, attempt: &Attempt, client: &ComfyClient, prompt: &str) -> Outcome {
        attempt
            .status("Cancelling: asking ComfyUI to stop the prompt.", None)
            .await;
        match client.cancel(prompt).await {
            Ok(()) => Outcome::Cancelled,
            Err(e) => {
                tracing::warn!(stage = %attempt.claim.name, run = %attempt.claim.run_id, prompt, error = %e, "a ComfyUI prompt could not be cancelled");
                Outcome::Failed(format!(
                    "Cancelled in Slate, but {e}: the prompt may still be running on the endpoint"
                ))
            }
        }
    }

    /// Downloads the outputs into the stage's output directory (each also under
    /// `by-node/<node>/`, for `${stages.NAME.outputs.NODE}`) and records them as assets
    /// with their provenance: the workflow version, the exact graph as sent, the bound
    /// values and seeds, the models, and the endpoint's ComfyUI version and node packs.
    async fn keep(
        &self,
        attempt: &Attempt,
        client: &ComfyClient,
        files: &[OutputFile],
        made: &Made<'_>,
        bar: &mut Bar,
    ) -> Result<(), String> {
        let (claim, stored) = (&attempt.claim, &attempt.stored);
        let stage_dir = self.files.stage_dir(claim);
        let (out, by_node) = (stage_dir.join("out"), stage_dir.join("by-node"));
        for dir in [&out, &by_node] {
            let _ = tokio::fs::remove_dir_all(dir).await;
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| format!("cannot keep the outputs: {e}"))?;
        }
        let endpoint = crate::comfyui::inventory::load(&self.files.pool, made.endpoint)
            .await
            .ok()
            .flatten()
            .map(|(inventory, _)| {
                json!({"id": made.endpoint, "comfyui_version": inventory.comfyui_version,
                       "packs": inventory.packs()})
            })
            .unwrap_or_else(|| json!({"id": made.endpoint}));
        let deliverables: Vec<&OutputFile> = files.iter().filter(|f| f.kind != "temp").collect();
        let short = claim.run_id.simple().to_string();
        let short = &short[short.len() - 8..];
        let mut per_node: std::collections::BTreeMap<&str, usize> = Default::default();
        for (i, file) in deliverables.iter().enumerate() {
            let done = STEPS_END + (1.0 - STEPS_END) * (i as f32 / deliverables.len() as f32);
            attempt
                .status(
                    &format!(
                        "Downloading the outputs: {} of {}.",
                        i + 1,
                        deliverables.len()
                    ),
                    bar.at(done),
                )
                .await;
            let bytes = client
                .download(file)
                .await
                .map_err(|e| format!("cannot download {}: {e}", file.filename))?;
            let n = per_node.entry(file.node.as_str()).or_default();
            let (on_disk, name) = output_names(short, &claim.name, &file.node, *n, &file.filename);
            *n += 1;
            let path = out.join(&on_disk);
            tokio::fs::write(&path, bytes)
                .await
                .map_err(|e| format!("cannot keep {name}: {e}"))?;
            if let Some(node_dir) = node_dir(&by_node, &file.node) {
                let _ = tokio::fs::create_dir_all(&node_dir).await;
                let _ = tokio::fs::hard_link(&path, node_dir.join(&on_disk)).await;
            }
            let provenance = json!({
                "template": stored.name,
                "template_version": stored.version,
                "stage": claim.name,
                "attempt": claim.attempt,
                "params": claim.params,
                "executor": "comfyui",
                "workflow": made.version.name,
                "workflow_version": made.version.version,
                "prompt_id": made.prompt,
                "graph": made.graph,
                "values": made.values,
                "seeds": prepare::seeds(made.version, made.values),
                "seed": prepare::seeds(made.version, made.values).as_object()
                    .and_then(|s| s.values().next().cloned()),
                "models": made.models,
                "endpoint": endpoint,
                "node": file.node,
                "node_class": made.graph[&file.node]["class_type"],
                "media": file.media,
                "comfyui_file": {"filename": file.filename, "subfolder": file.subfolder},
            });
            outputs::ingest(&self.files.assets, claim, &path, &name, &provenance).await?;
        }
        Ok(())
    }
}

/// What a prompt was made of, for its outputs' provenance.
struct Made<'a> {
    graph: &'a Value,
    prompt: &'a str,
    version: &'a crate::comfyui::workflows::store::Version,
    values: &'a serde_json::Map<String, Value>,
    models: &'a [Value],
    endpoint: Uuid,
}

/// `by-node/<node>`, for a node id that is safe as one path segment (ComfyUI's own ids
/// are digits, `:` inside subgraphs).
fn node_dir(by_node: &std::path::Path, node: &str) -> Option<std::path::PathBuf> {
    let safe = !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'));
    safe.then(|| by_node.join(node))
}

/// The endpoint's socket (`None`: following by polling alone), what it has given while
/// a prompt is followed, and the attempt's bar.
#[derive(Default)]
struct Heard {
    socket: Option<mpsc::Receiver<SocketEvent>>,
    /// When the last preview was kept (they are kept at most once a second).
    last_preview: Option<tokio::time::Instant>,
    /// Whether it gave steps for this prompt (then they, not the coarse polling, move
    /// the bar).
    steps: bool,
    bar: Bar,
    /// Node titles of the graph, to say which node is at work.
    titles: std::collections::BTreeMap<String, String>,
    /// The node at work and how many have finished (from `progress_state`).
    node: Option<String>,
    nodes_done: usize,
    /// Whether the endpoint sends `progress_state` (then the bar is the share of nodes
    /// done; older builds give only the sampler's steps).
    node_states: bool,
}

enum Followed {
    Done(Outcome),
    Outputs(Vec<OutputFile>),
    Lost,
}

#[async_trait]
impl Executor for ComfyExecutor {
    fn queues(&self) -> Vec<Queue> {
        vec![Queue {
            name: QUEUE,
            capacity: self.capacity,
        }]
    }

    async fn run(
        &self,
        attempt: &Attempt,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        self.attempt(attempt, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_file_names_never_become_paths_here() {
        assert_eq!(
            output_names("0a1b2c3d", "keyframes", "9", 0, "slate_00001_.png"),
            (
                "keyframes_9_0001.png".into(),
                "0a1b2c3d-keyframes-9-0001.png".into()
            )
        );
        let (on_disk, name) = output_names(
            "0a1b2c3d",
            "keyframes",
            "12:5",
            1,
            "../../../../etc/cron.d/x.webp",
        );
        assert_eq!(on_disk, "keyframes_12-5_0002.webp");
        assert_eq!(name, "0a1b2c3d-keyframes-12-5-0002.webp");
        for hostile in ["/etc/passwd", "a/b.sh;rm", "x.PHP5/..", ".."] {
            let (on_disk, _) = output_names("r", "s", "../..", 2, hostile);
            assert!(
                on_disk.starts_with("s_") && !on_disk.contains(['/', '\\']),
                "{hostile}: {on_disk}"
            );
        }
        assert!(node_dir(std::path::Path::new("/x"), "../9").is_none());
        assert!(node_dir(std::path::Path::new("/x"), "9").is_some());
    }

    #[test]
    fn the_bar_only_moves_forward() {
        let mut bar = Bar::default();
        assert_eq!(bar.at(QUEUED), Some(QUEUED));
        assert_eq!(bar.at(RUNNING), Some(RUNNING));
        // The first step of a second sampler (or of a prompt queued again) is behind.
        assert_eq!(bar.at(0.5), Some(0.5));
        assert_eq!(bar.at(0.16), None);
        assert_eq!(bar.at(RUNNING), None);
        assert_eq!(bar.at(0.6), Some(0.6));
        assert_eq!(bar.at(7.0), Some(1.0), "never past the end");
    }

    #[test]
    fn upload_names_keep_only_safe_characters() {
        use super::graph::upload_name;
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
