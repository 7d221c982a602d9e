//! The ComfyUI client (used by the pipelines' ComfyUI executor): submit a
//! graph, follow it, fetch its outputs, upload inputs, cancel. Every request goes through
//! the probe's safety rules (own DNS resolution, no private addresses, no redirects,
//! timeouts, size caps), and every answer is parsed leniently, since Colab users often
//! run older builds (shared/reference/comfyui.md).
//!
//! Following here is by polling `/history/{id}` and `/queue`, the path that always
//! reconciles; live progress comes from ComfyUI's WebSocket (`super::socket`).
//!
//! Answers are capped by what real ones weigh (shared/reference/comfyui-workflows.md §9):
//! `/queue` embeds every queued graph, other clients' included (five 250 KB graphs made
//! it 1.25 MB), so it gets a cap of its own and only the ids are kept from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::probe::{parse_json, ProbeError, Prober, MAX_BODY, TOTAL_TIMEOUT};

/// Largest output file downloaded (a generated image or short clip).
pub const MAX_OUTPUT: usize = 512 * 1024 * 1024;
/// Largest input uploaded.
pub const MAX_UPLOAD: usize = 256 * 1024 * 1024;
/// Largest `/queue` answer read: it holds every queued graph of every client, so a busy
/// shared endpoint answers megabytes (a 250 KB graph is an ordinary UI export).
pub const MAX_QUEUE: usize = 64 * 1024 * 1024;
/// Largest `/history/{id}` answer read: one prompt's entry, which embeds its graph.
pub const MAX_HISTORY: usize = 16 * 1024 * 1024;
/// How long a cancelled prompt may stay listed before the cancel is called failed
/// (an interrupted prompt left the queue 1.1 to 2.5 s after the request on CPU).
pub const CANCEL_CONFIRM: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComfyError {
    #[error(transparent)]
    Endpoint(#[from] ProbeError),
    /// ComfyUI refused the graph (HTTP 400): its message and the nodes at fault, in its
    /// own words. Final: the same graph gets the same answer.
    #[error("ComfyUI refused the workflow: {message}")]
    Rejected { message: String, node_errors: Value },
    #[error("ComfyUI answered something unexpected: {0}")]
    Unexpected(String),
    /// A cancel that did not take: the prompt may still run on the endpoint.
    #[error("the cancel did not reach ComfyUI: {0}")]
    CancelFailed(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    /// Always the id ComfyUI returned.
    pub prompt_id: String,
    pub number: Option<i64>,
    /// Non-empty on a 200 when some outputs were invalid and dropped; the rest runs.
    pub node_errors: Value,
}

/// One output file, as `/view` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The node that wrote it (its id in the graph, `"12:5"` inside a subgraph).
    pub node: String,
    pub filename: String,
    pub subfolder: String,
    /// ComfyUI's folder: `output` (a deliverable), `temp` (a scratch preview), `input`.
    pub kind: String,
    #[serde(default)]
    pub media: Media,
}

/// What an output file is, from its extension (core nodes say nothing else: a video from
/// `SaveVideo` is listed under `images`, comfyui-workflows.md §5), and for `.webp` and
/// `.png` from the `animated` flags ComfyUI sets beside the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Image,
    AnimatedImage,
    Video,
    Audio,
    Model3d,
    #[default]
    Other,
}

impl Media {
    /// The kind of `filename`; `animated` is ComfyUI's flag for it (`SaveAnimatedWEBP`,
    /// `SaveAnimatedPNG` and `SaveVideo` set it).
    pub fn of(filename: &str, animated: bool) -> Media {
        let extension = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "png" | "webp" if animated => Media::AnimatedImage,
            "png" | "jpg" | "jpeg" | "webp" | "bmp" | "tif" | "tiff" => Media::Image,
            "gif" | "apng" => Media::AnimatedImage,
            "mp4" | "webm" | "mov" | "mkv" | "avi" | "m4v" => Media::Video,
            "flac" | "mp3" | "wav" | "ogg" | "opus" | "m4a" | "aac" => Media::Audio,
            "glb" | "gltf" | "obj" | "fbx" | "ply" | "stl" | "usdz" => Media::Model3d,
            _ => Media::Other,
        }
    }
}

/// The files one node's output lists (an `outputs[node]` of `/history`, or the `output`
/// of an `executed` message), temp previews included: every list-valued key whose items
/// are objects with a `filename` (`images`, `gifs` from VideoHelperSuite, `audio`, `3d`,
/// and keys of node packs Slate has never seen), in the order given. `animated` is
/// parallel to `images`.
pub fn node_outputs(node: &str, output: &Value) -> Vec<OutputFile> {
    let mut files = Vec::new();
    let Some(output) = output.as_object() else {
        return files;
    };
    for (key, list) in output {
        let Some(items) = list.as_array() else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(filename) = item.get("filename").and_then(Value::as_str) else {
                continue;
            };
            let animated = key == "images"
                && output
                    .get("animated")
                    .and_then(|a| a.get(i))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            files.push(OutputFile {
                node: node.to_owned(),
                filename: filename.to_owned(),
                subfolder: item
                    .get("subfolder")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                kind: item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("output")
                    .to_owned(),
                media: Media::of(filename, animated),
            });
        }
    }
    files
}

/// The deliverables of a finished prompt (its history entry's `outputs`): every node's
/// files but the temp previews, nodes in id order (`"4"` before `"10"`; subgraph paths
/// `"12:5"` by their parts; other ids after, as given).
pub fn prompt_outputs(outputs: &Value) -> Vec<OutputFile> {
    let mut nodes: Vec<(&String, &Value)> = outputs
        .as_object()
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    nodes.sort_by_key(|(id, _)| {
        let parts: Option<Vec<u64>> = id.split(':').map(|p| p.parse().ok()).collect();
        (parts.is_none(), parts.unwrap_or_default())
    });
    nodes
        .into_iter()
        .flat_map(|(id, output)| node_outputs(id, output))
        .filter(|f| f.kind != "temp")
        .collect()
}

/// Where a prompt is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PromptState {
    Pending,
    Running,
    Succeeded {
        outputs: Vec<OutputFile>,
    },
    Failed {
        message: String,
    },
    /// Stopped by an interrupt (`POST /interrupt`): from Slate's cancel, or from another
    /// client (the Cancel button of ComfyUI's own page). ComfyUI records it as an error
    /// with `execution_interrupted` and no `execution_error`.
    Interrupted {
        /// The node that was running (id and class), when ComfyUI says.
        node: Option<String>,
    },
    /// Neither in the queue nor in the history: ComfyUI restarted and forgot it. It must
    /// be submitted again.
    Lost,
}

#[derive(Clone, Debug)]
pub struct ComfyClient {
    pub prober: Prober,
    pub endpoint: String,
}

/// ComfyUI's words for a refusal: its message, then each node at fault with its class,
/// the input and ComfyUI's own detail (`ckpt_name: 'x' not in ['tiny-sd15.safetensors']`),
/// on one line. Node errors hold the reason on current builds (the top message is only
/// "Prompt outputs failed validation").
pub fn refusal(error: &Value, node_errors: &Value) -> String {
    let mut text = rejected_message(error);
    let mut nodes: Vec<(&String, &Value)> = node_errors
        .as_object()
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    // Numeric ids in numeric order ("4" before "10"), others after.
    nodes.sort_by_key(|(id, _)| (id.parse::<u64>().unwrap_or(u64::MAX), (*id).clone()));
    for (id, node) in nodes {
        let class = node["class_type"].as_str().unwrap_or("?");
        let errors = node["errors"].as_array().cloned().unwrap_or_default();
        if errors.is_empty() {
            text.push_str(&format!("; node {id} ({class})"));
        }
        for e in errors {
            let message = e["message"].as_str().unwrap_or("refused").trim();
            let details = e["details"].as_str().unwrap_or_default().trim();
            let input = e["extra_info"]["input_name"].as_str().unwrap_or_default();
            // The detail usually starts with the input's name already, or is just it.
            let detail = if input.is_empty() || details.starts_with(&format!("{input}:")) {
                details.to_owned()
            } else if details.is_empty() || details == input {
                format!("input {input}")
            } else {
                format!("input {input}: {details}")
            };
            text.push_str(&format!("; node {id} ({class}): {message}"));
            if !detail.is_empty() {
                text.push_str(&format!(": {detail}"));
            }
        }
    }
    text.replace(['\n', '\r'], " ")
}

fn rejected_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        Value::Object(o) => {
            let message = o
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("invalid prompt");
            match o
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                Some(details) => format!("{message}: {details}"),
                None => message.to_owned(),
            }
        }
        Value::Null => "invalid prompt".to_owned(),
        other => other.to_string(),
    }
}

impl ComfyClient {
    pub fn new(prober: Prober, endpoint: &str) -> ComfyClient {
        ComfyClient {
            prober,
            endpoint: endpoint.to_owned(),
        }
    }

    async fn post_json(
        &self,
        path: &str,
        body: &Value,
        pass: &[u16],
    ) -> Result<(u16, Value), ProbeError> {
        let body = body.clone();
        let (status, bytes, _) = self
            .prober
            .send(
                &self.endpoint,
                path,
                TOTAL_TIMEOUT,
                MAX_BODY,
                pass,
                move |c, url| c.post(url).json(&body),
            )
            .await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((status, Value::Null));
        }
        Ok((status, parse_json(&bytes)?))
    }

    /// Queues a graph (API format) under `client_id`.
    pub async fn submit(&self, graph: &Value, client_id: &str) -> Result<Submitted, ComfyError> {
        let (status, answer) = self
            .post_json(
                "/prompt",
                &json!({ "prompt": graph, "client_id": client_id }),
                &[400],
            )
            .await?;
        if status == 400 {
            let node_errors = answer.get("node_errors").cloned().unwrap_or(Value::Null);
            return Err(ComfyError::Rejected {
                message: refusal(&answer["error"], &node_errors),
                node_errors,
            });
        }
        let prompt_id = answer["prompt_id"]
            .as_str()
            .ok_or_else(|| ComfyError::Unexpected("POST /prompt returned no prompt_id".into()))?
            .to_owned();
        Ok(Submitted {
            prompt_id,
            number: answer["number"].as_i64(),
            node_errors: answer.get("node_errors").cloned().unwrap_or(json!({})),
        })
    }

    /// The ids running and pending. Only the ids are kept: the graphs each entry embeds
    /// are skipped while parsing, so a large queue costs its bytes, not a tree of them.
    pub async fn queue(&self) -> Result<(Vec<String>, Vec<String>), ComfyError> {
        let (_, body, _) = self
            .prober
            .send(
                &self.endpoint,
                "/queue",
                TOTAL_TIMEOUT,
                MAX_QUEUE,
                &[],
                |c, url| c.get(url),
            )
            .await?;
        let q: QueueIds = serde_json::from_slice(&body).map_err(|_| {
            parse_json(&body).err().map_or_else(
                || ComfyError::Unexpected("GET /queue is not a queue".into()),
                ComfyError::Endpoint,
            )
        })?;
        let ids = |entries: Vec<QueueEntry>| entries.into_iter().filter_map(|e| e.0).collect();
        Ok((ids(q.queue_running), ids(q.queue_pending)))
    }

    async fn history(&self, prompt_id: &str) -> Result<Value, ComfyError> {
        let path = format!("/history/{}", urlencode(prompt_id));
        let (_, body, _) = self
            .prober
            .send(
                &self.endpoint,
                &path,
                TOTAL_TIMEOUT,
                MAX_HISTORY,
                &[],
                |c, url| c.get(url),
            )
            .await?;
        Ok(parse_json(&body)?)
    }

    /// Where the prompt is: finished (from the history), running, pending, or lost.
    pub async fn state(&self, prompt_id: &str) -> Result<PromptState, ComfyError> {
        let history = self.history(prompt_id).await?;
        if let Some(entry) = history.get(prompt_id) {
            let status = &entry["status"];
            let failed = status["status_str"].as_str() == Some("error");
            let message = |kind: &str| {
                status["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| m.get(0).and_then(Value::as_str) == Some(kind))
                    .and_then(|m| m.get(1))
                    .cloned()
            };
            // "error" without an execution_error is an interrupt, not a failure.
            if failed && message("execution_error").is_none() {
                if let Some(stopped) = message("execution_interrupted") {
                    let node =
                        stopped["node_id"]
                            .as_str()
                            .map(|id| match stopped["node_type"].as_str() {
                                Some(class) => format!("{id} ({class})"),
                                None => id.to_owned(),
                            });
                    return Ok(PromptState::Interrupted { node });
                }
            }
            if failed {
                let message = message("execution_error")
                    .as_ref()
                    .map(|d| {
                        format!(
                            "{} in node {} ({})",
                            d["exception_message"].as_str().unwrap_or("error").trim(),
                            d["node_id"].as_str().unwrap_or("?"),
                            d["node_type"].as_str().unwrap_or("?")
                        )
                    })
                    .unwrap_or_else(|| "the workflow failed".into());
                return Ok(PromptState::Failed { message });
            }
            let outputs = prompt_outputs(&entry["outputs"]);
            return Ok(PromptState::Succeeded { outputs });
        }
        let (running, pending) = self.queue().await?;
        Ok(if running.iter().any(|id| id == prompt_id) {
            PromptState::Running
        } else if pending.iter().any(|id| id == prompt_id) {
            PromptState::Pending
        } else {
            // Finished between the two calls? Ask the history once more before calling
            // it lost (success is announced before the history entry is written).
            let again = self.history(prompt_id).await?;
            if again.get(prompt_id).is_some() {
                return Box::pin(self.state(prompt_id)).await;
            }
            PromptState::Lost
        })
    }

    /// Polls until the prompt finishes (or is lost), calling `seen` on every change.
    pub async fn follow(
        &self,
        prompt_id: &str,
        every: Duration,
        mut seen: impl FnMut(&PromptState),
    ) -> Result<PromptState, ComfyError> {
        let mut last = None;
        loop {
            let state = self.state(prompt_id).await?;
            if last.as_ref() != Some(&state) {
                seen(&state);
            }
            if !matches!(state, PromptState::Pending | PromptState::Running) {
                return Ok(state);
            }
            last = Some(state);
            tokio::time::sleep(every).await;
        }
    }

    /// Cancels a prompt: removed from the queue when pending; interrupted when running
    /// (checked first: old builds interrupt whatever runs). Both calls answer 200 even
    /// for unknown ids, so the queue is read again until the prompt has left it; a
    /// prompt still listed after [`CANCEL_CONFIRM`], or an endpoint that cannot be
    /// asked, is a failed cancel (the prompt may still run there).
    pub async fn cancel(&self, prompt_id: &str) -> Result<(), ComfyError> {
        self.cancel_within(prompt_id, CANCEL_CONFIRM).await
    }

    /// [`ComfyClient::cancel`], giving ComfyUI `within` to let the prompt go.
    pub async fn cancel_within(&self, prompt_id: &str, within: Duration) -> Result<(), ComfyError> {
        let failed = |e: ComfyError| ComfyError::CancelFailed(e.to_string());
        let deadline = tokio::time::Instant::now() + within;
        // What was asked last: to delete it (pending) or to interrupt it (running).
        let mut asked: Option<bool> = None;
        loop {
            let (running, pending) = self.queue().await.map_err(failed)?;
            let is_pending = pending.iter().any(|id| id == prompt_id);
            let is_running = running.iter().any(|id| id == prompt_id);
            if !is_pending && !is_running {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ComfyError::CancelFailed(format!(
                    "ComfyUI still lists the prompt as {} {} s after it was asked to stop it",
                    if is_running { "running" } else { "pending" },
                    within.as_secs_f32()
                )));
            }
            // Asked once, and again only if it started running in between.
            if asked != Some(is_running) {
                let (path, body) = if is_running {
                    ("/interrupt", json!({ "prompt_id": prompt_id }))
                } else {
                    ("/queue", json!({ "delete": [prompt_id] }))
                };
                self.post_json(path, &body, &[])
                    .await
                    .map_err(|e| failed(e.into()))?;
                asked = Some(is_running);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Uploads an input image; returns the name to use in a `LoadImage` node. The same
    /// as [`ComfyClient::upload_file`].
    pub async fn upload_image(&self, filename: &str, bytes: Vec<u8>) -> Result<String, ComfyError> {
        self.upload_file(filename, bytes).await
    }

    /// Uploads an input file of any kind into ComfyUI's `input/` folder, replacing one of
    /// the same name (`/upload/image` stores videos and audio as they are,
    /// comfyui-workflows.md §4); returns the name to give the loader (`LoadImage.image`,
    /// `LoadVideo.file`, `LoadAudio.audio`): `subfolder/name` when ComfyUI put it in one.
    pub async fn upload_file(&self, filename: &str, bytes: Vec<u8>) -> Result<String, ComfyError> {
        if bytes.len() > MAX_UPLOAD {
            return Err(ComfyError::Unexpected(format!(
                "{filename} is larger than the upload limit"
            )));
        }
        let name = filename.to_owned();
        let (_, body, _) = self
            .prober
            .send(
                &self.endpoint,
                "/upload/image",
                Duration::from_secs(300),
                MAX_BODY,
                &[],
                move |c, url| {
                    let part = reqwest::multipart::Part::bytes(bytes).file_name(name);
                    let form = reqwest::multipart::Form::new()
                        .part("image", part)
                        .text("type", "input")
                        .text("overwrite", "true");
                    c.post(url).multipart(form)
                },
            )
            .await?;
        let answer = parse_json(&body)?;
        let name = answer["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ComfyError::Unexpected("the upload answer has no name".into()))?;
        Ok(
            match answer["subfolder"].as_str().filter(|s| !s.is_empty()) {
                Some(subfolder) => format!("{}/{name}", subfolder.trim_end_matches('/')),
                None => name.to_owned(),
            },
        )
    }

    /// Downloads one output file.
    pub async fn download(&self, file: &OutputFile) -> Result<Vec<u8>, ComfyError> {
        let path = format!(
            "/view?filename={}&subfolder={}&type={}",
            urlencode(&file.filename),
            urlencode(&file.subfolder),
            urlencode(&file.kind)
        );
        let (_, body, _) = self
            .prober
            .send(
                &self.endpoint,
                &path,
                Duration::from_secs(300),
                MAX_OUTPUT,
                &[],
                |c, url| c.get(url),
            )
            .await?;
        Ok(body)
    }
}

/// What Slate reads of `/queue`: the ids, nothing of the graphs.
#[derive(Deserialize, Default)]
#[serde(default)]
struct QueueIds {
    queue_running: Vec<QueueEntry>,
    queue_pending: Vec<QueueEntry>,
}

/// One `/queue` entry, `[number, prompt_id, graph, extra, outputs]`: the id kept, the
/// rest skipped unparsed (entries of any length, or odd ones, are accepted).
struct QueueEntry(Option<String>);

impl<'de> Deserialize<'de> for QueueEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = QueueEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a queue entry")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<QueueEntry, A::Error> {
                use serde::de::IgnoredAny;
                let _number: Option<IgnoredAny> = seq.next_element()?;
                let id = match seq.next_element::<Value>()? {
                    Some(Value::String(id)) => Some(id),
                    _ => None,
                };
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(QueueEntry(id))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<QueueEntry, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(QueueEntry(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_read_new_and_old_error_shapes() {
        assert_eq!(
            rejected_message(&json!("Prompt has no outputs")),
            "Prompt has no outputs"
        );
        assert_eq!(
            rejected_message(
                &json!({"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}})
            ),
            "Prompt has no outputs"
        );
        assert_eq!(
            rejected_message(
                &json!({"type": "invalid_prompt", "message": "Cannot execute", "details": "node 3 missing"})
            ),
            "Cannot execute: node 3 missing"
        );
    }

    #[test]
    fn a_refusal_names_the_node_the_input_and_comfyuis_words() {
        // As ComfyUI 0.3.64 answers a checkpoint it does not have.
        let error = json!({"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}});
        let node_errors = json!({"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
            "details": "ckpt_name: 'x.safetensors' not in ['tiny-sd15.safetensors']",
            "extra_info": {"input_name": "ckpt_name", "received_value": "x.safetensors"}}],
            "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"},
            "10": {"errors": [{"type": "value_bigger_than_max", "message": "Value 99999 bigger than max of 16384",
            "details": "width", "extra_info": {"input_name": "width"}}], "class_type": "EmptyLatentImage"}});
        assert_eq!(
            refusal(&error, &node_errors),
            "Prompt outputs failed validation; \
             node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'x.safetensors' not in ['tiny-sd15.safetensors']; \
             node 10 (EmptyLatentImage): Value 99999 bigger than max of 16384: input width"
        );
        let missing = json!({"type": "invalid_prompt", "message": "Cannot execute because node VHS_VideoCombine does not exist.", "details": "Node ID '#1'", "extra_info": {}});
        assert_eq!(
            refusal(&missing, &json!({})),
            "Cannot execute because node VHS_VideoCombine does not exist.: Node ID '#1'"
        );
        let no_detail = json!({"3": {"errors": [{"message": "Required input is missing", "extra_info": {"input_name": "model"}}], "class_type": "KSampler"}});
        assert_eq!(
            refusal(&json!("invalid prompt"), &no_detail),
            "invalid prompt; node 3 (KSampler): Required input is missing: input model"
        );
    }

    #[test]
    fn media_is_told_by_extension_and_the_animated_flag() {
        assert_eq!(Media::of("a_00001_.png", false), Media::Image);
        assert_eq!(Media::of("a_00001_.PNG", true), Media::AnimatedImage);
        assert_eq!(Media::of("a_00001_.webp", true), Media::AnimatedImage);
        assert_eq!(Media::of("a_00001_.jpeg", true), Media::Image);
        assert_eq!(Media::of("a.gif", false), Media::AnimatedImage);
        assert_eq!(Media::of("a_00001_.mp4", true), Media::Video);
        assert_eq!(Media::of("a.webm", false), Media::Video);
        assert_eq!(Media::of("take_00001_.flac", false), Media::Audio);
        assert_eq!(Media::of("mesh_00001_.glb", false), Media::Model3d);
        assert_eq!(Media::of("latent_00001_.latent", false), Media::Other);
        assert_eq!(Media::of("no-extension", false), Media::Other);
        assert_eq!(
            serde_json::to_value([Media::AnimatedImage, Media::Model3d]).unwrap(),
            json!(["animatedimage", "model3d"])
        );
    }

    #[test]
    fn every_files_list_of_every_node_is_read_in_node_order_without_temp_previews() {
        let outputs = json!({
            "10": {"audio": [{"filename": "take_00001_.flac", "subfolder": "audio", "type": "output"}]},
            "9": {"images": [{"filename": "a_00001_.webp", "subfolder": "", "type": "output"},
                             {"filename": "a_00002_.webp", "subfolder": "", "type": "output"}],
                  "animated": [false, true]},
            "12:5": {"images": [{"filename": "v_00001_.mp4", "subfolder": "video", "type": "output"}], "animated": [true]},
            "12:40": {"3d": [{"filename": "mesh_00001_.glb", "subfolder": "mesh", "type": "output"}]},
            "2": {"images": [{"filename": "ComfyUI_temp_x_00001_.png", "subfolder": "", "type": "temp"}]},
            "save": {"gifs": [{"filename": "clip_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4", "frame_rate": 8.0}],
                     "text": ["not a file"], "latents": [{"no": "filename"}]},
            "odd": "not an object"
        });
        let got: Vec<(String, String, Media)> = prompt_outputs(&outputs)
            .into_iter()
            .map(|f| (f.node, f.filename, f.media))
            .collect();
        let want = [
            ("9", "a_00001_.webp", Media::Image),
            ("9", "a_00002_.webp", Media::AnimatedImage),
            ("10", "take_00001_.flac", Media::Audio),
            ("12:5", "v_00001_.mp4", Media::Video),
            ("12:40", "mesh_00001_.glb", Media::Model3d),
            ("save", "clip_00001.mp4", Media::Video),
        ];
        assert_eq!(got, want.map(|(n, f, m)| (n.to_owned(), f.to_owned(), m)));
        // A node's own list keeps its temp files (the socket's previews).
        let preview = node_outputs("2", &outputs["2"]);
        assert_eq!(preview.len(), 1);
        assert_eq!(
            (preview[0].kind.as_str(), preview[0].media),
            ("temp", Media::Image)
        );
    }

    #[test]
    fn only_the_ids_are_read_from_the_queue() {
        let q: QueueIds = serde_json::from_value(json!({
            "queue_running": [[0, "a", {"1": {"class_type": "X", "inputs": {}}}, {}, ["9"]]],
            "queue_pending": [[1, "b", {}, {}, []], [2, 3], {"odd": true}, [4]],
            "something_new": 1
        }))
        .unwrap();
        let ids = |e: Vec<QueueEntry>| e.into_iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(ids(q.queue_running), [Some("a".to_owned())]);
        assert_eq!(
            ids(q.queue_pending),
            [Some("b".to_owned()), None, None, None]
        );
    }
}
