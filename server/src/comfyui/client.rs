//! The ComfyUI client (used by the pipelines' ComfyUI executor): submit a
//! graph, follow it, fetch its outputs, upload inputs, cancel. Every request goes through
//! the probe's safety rules (own DNS resolution, no private addresses, no redirects,
//! timeouts, size caps), and every answer is parsed leniently, since Colab users often
//! run older builds (shared/reference/comfyui.md).
//!
//! Following here is by polling `/history/{id}` and `/queue`, the path that always
//! reconciles; live progress comes from ComfyUI's WebSocket (`super::socket`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::probe::{parse_json, ProbeError, Prober, MAX_BODY, TOTAL_TIMEOUT};

/// Largest output file downloaded (a generated image or short clip).
pub const MAX_OUTPUT: usize = 512 * 1024 * 1024;
/// Largest input uploaded.
pub const MAX_UPLOAD: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComfyError {
    #[error(transparent)]
    Endpoint(#[from] ProbeError),
    /// ComfyUI refused the graph (HTTP 400): its message and the nodes at fault.
    #[error("ComfyUI refused the workflow: {message}")]
    Rejected { message: String, node_errors: Value },
    #[error("ComfyUI answered something unexpected: {0}")]
    Unexpected(String),
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
    pub node: String,
    pub filename: String,
    pub subfolder: String,
    pub kind: String,
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
    /// Neither in the queue nor in the history: ComfyUI restarted and forgot it. It must
    /// be submitted again.
    Lost,
}

#[derive(Clone, Debug)]
pub struct ComfyClient {
    pub prober: Prober,
    pub endpoint: String,
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
            return Err(ComfyError::Rejected {
                message: rejected_message(&answer["error"]),
                node_errors: answer.get("node_errors").cloned().unwrap_or(Value::Null),
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

    /// The ids running and pending.
    pub async fn queue(&self) -> Result<(Vec<String>, Vec<String>), ComfyError> {
        let q = self.prober.get_json(&self.endpoint, "/queue").await?.json;
        let ids = |key: &str| -> Vec<String> {
            q[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|item| item.get(1).and_then(Value::as_str).map(str::to_owned))
                .collect()
        };
        Ok((ids("queue_running"), ids("queue_pending")))
    }

    /// Where the prompt is: finished (from the history), running, pending, or lost.
    pub async fn state(&self, prompt_id: &str) -> Result<PromptState, ComfyError> {
        let history = self
            .prober
            .get_json(
                &self.endpoint,
                &format!("/history/{}", urlencode(prompt_id)),
            )
            .await?
            .json;
        if let Some(entry) = history.get(prompt_id) {
            let status = &entry["status"];
            let failed = status["status_str"].as_str() == Some("error");
            if failed {
                let message = status["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| m.get(0).and_then(Value::as_str) == Some("execution_error"))
                    .and_then(|m| m.get(1))
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
            let mut outputs = Vec::new();
            for (node, output) in entry["outputs"].as_object().into_iter().flatten() {
                for key in ["images", "gifs", "videos", "audio"] {
                    for f in output[key].as_array().into_iter().flatten() {
                        if let Some(filename) = f["filename"].as_str() {
                            outputs.push(OutputFile {
                                node: node.clone(),
                                filename: filename.to_owned(),
                                subfolder: f["subfolder"].as_str().unwrap_or_default().to_owned(),
                                kind: f["type"].as_str().unwrap_or("output").to_owned(),
                            });
                        }
                    }
                }
            }
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
            let again = self
                .prober
                .get_json(
                    &self.endpoint,
                    &format!("/history/{}", urlencode(prompt_id)),
                )
                .await?
                .json;
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
            if matches!(
                state,
                PromptState::Succeeded { .. } | PromptState::Failed { .. } | PromptState::Lost
            ) {
                return Ok(state);
            }
            last = Some(state);
            tokio::time::sleep(every).await;
        }
    }

    /// Cancels a prompt: removed from the queue when pending; interrupted when running
    /// (checked first: old builds interrupt whatever runs).
    pub async fn cancel(&self, prompt_id: &str) -> Result<(), ComfyError> {
        let (running, pending) = self.queue().await?;
        if pending.iter().any(|id| id == prompt_id) {
            self.post_json("/queue", &json!({ "delete": [prompt_id] }), &[])
                .await?;
        } else if running.iter().any(|id| id == prompt_id) {
            self.post_json("/interrupt", &json!({ "prompt_id": prompt_id }), &[])
                .await?;
        }
        Ok(())
    }

    /// Uploads an input image; returns the name to use in a `LoadImage` node.
    pub async fn upload_image(&self, filename: &str, bytes: Vec<u8>) -> Result<String, ComfyError> {
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
        answer["name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ComfyError::Unexpected("the upload answer has no name".into()))
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
}
