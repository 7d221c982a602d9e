//! ComfyUI's WebSocket: the frames a stage cares about (steps, each node's progress, the
//! node running, previews, files written, the end of a prompt), read leniently, and a
//! reader task that keeps the socket open. The shapes are comfyui-workflows.md §7.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::client::{node_outputs, OutputFile};
use super::probe::Socket;

/// Reads ComfyUI's socket into `tx` until it closes (or nobody listens), pinging every
/// 20 s so that an idle tunnel does not cut it.
pub async fn read(socket: Socket, tx: mpsc::Sender<SocketEvent>) {
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

/// What ComfyUI's WebSocket said, as far as a stage cares.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    /// A step of a node of `prompt`: `value` of `max`.
    Progress {
        prompt: String,
        value: u64,
        max: u64,
    },
    /// Where every started node of `prompt` is (`progress_state`, current builds), in
    /// node order.
    NodeProgress {
        prompt: String,
        nodes: Vec<NodeProgress>,
    },
    /// `node` of `prompt` started.
    Executing { prompt: String, node: String },
    /// `node` of `prompt` wrote these files (of every kind, temp previews included:
    /// the history, not this, says what a prompt delivered).
    Executed {
        prompt: String,
        node: String,
        images: Vec<OutputFile>,
    },
    /// `prompt` is done (`executing` with no node): its history is (about to be) there.
    Finished { prompt: String },
    /// `prompt` failed.
    Error { prompt: String, message: String },
    /// `prompt` was interrupted (by Slate's cancel or by another client).
    Interrupted { prompt: String },
    /// A preview of the image being made (`image/jpeg` or `image/png`).
    Preview { mime: &'static str, bytes: Vec<u8> },
    /// Anything else (status, cached nodes, unknown messages of newer builds).
    Other,
}

/// Reads a text frame (`{type, data}`), leniently: unknown types and missing fields are
/// `Other`.
pub fn socket_text(text: &str) -> SocketEvent {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return SocketEvent::Other;
    };
    let data = &message["data"];
    let prompt = data["prompt_id"].as_str().unwrap_or_default().to_owned();
    match message["type"].as_str().unwrap_or_default() {
        "progress" => match (data["value"].as_u64(), data["max"].as_u64()) {
            (Some(value), Some(max)) if max > 0 => SocketEvent::Progress { prompt, value, max },
            _ => SocketEvent::Other,
        },
        "executing" if !prompt.is_empty() => match data.get("node") {
            Some(Value::Null) => SocketEvent::Finished { prompt },
            Some(node) => match node_id(node) {
                Some(node) => SocketEvent::Executing { prompt, node },
                None => SocketEvent::Other,
            },
            None => SocketEvent::Other,
        },
        "progress_state" if !prompt.is_empty() => SocketEvent::NodeProgress {
            nodes: node_progress(&data["nodes"]),
            prompt,
        },
        "executed" => {
            let node = data.get("node").and_then(node_id).unwrap_or_default();
            let images = node_outputs(&node, &data["output"]);
            SocketEvent::Executed {
                prompt,
                node,
                images,
            }
        }
        "execution_error" => SocketEvent::Error {
            prompt,
            message: format!(
                "{}: {}",
                data["node_type"].as_str().unwrap_or("a node"),
                data["exception_message"]
                    .as_str()
                    .unwrap_or("no message")
                    .trim()
            ),
        },
        "execution_interrupted" => SocketEvent::Interrupted { prompt },
        _ => SocketEvent::Other,
    }
}

/// One node's progress in a `progress_state` message.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeProgress {
    /// Its id in the graph as run (`"12:5"` inside a subgraph).
    pub node: String,
    /// The node the editor shows for it, when ComfyUI says.
    pub display_node: Option<String>,
    pub value: u64,
    pub max: u64,
    /// `running`, `finished`, `error`, or whatever newer builds say.
    pub state: String,
}

/// A node id as ComfyUI sends it: a string, or a number from odd builds.
fn node_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A count ComfyUI sends as an integer or a float (`0.0` of `1.0` for a node without
/// steps): whole, never negative.
fn count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f.round() as u64)
    })
}

/// The nodes of a `progress_state` (`{id: {value, max, state, node_id, display_node_id,
/// ...}}`), in node id order; entries that are not objects are skipped, `value` is at
/// most `max`.
fn node_progress(nodes: &Value) -> Vec<NodeProgress> {
    let mut out: Vec<NodeProgress> = nodes
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, n)| {
            let n = n.as_object()?;
            let max = n.get("max").and_then(count).unwrap_or(0);
            Some(NodeProgress {
                node: n
                    .get("node_id")
                    .and_then(node_id)
                    .unwrap_or_else(|| key.clone()),
                display_node: n.get("display_node_id").and_then(node_id),
                value: n.get("value").and_then(count).unwrap_or(0).min(max),
                max,
                state: n
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    out.sort_by_key(|p| {
        let parts: Option<Vec<u64>> = p.node.split(':').map(|x| x.parse().ok()).collect();
        (parts.is_none(), parts.unwrap_or_default(), p.node.clone())
    });
    out
}

/// Reads a binary frame: a 4-byte big-endian type (1: a preview image), then for
/// previews a 4-byte format (1 JPEG, 2 PNG) and the image.
pub fn socket_binary(bytes: &[u8]) -> SocketEvent {
    let word = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (word(0), word(4)) {
        (Some(1), Some(format)) if bytes.len() > 8 => SocketEvent::Preview {
            mime: if format == 2 {
                "image/png"
            } else {
                "image/jpeg"
            },
            bytes: bytes[8..].to_vec(),
        },
        _ => SocketEvent::Other,
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;

    #[test]
    fn socket_frames_are_read_leniently() {
        assert_eq!(
            socket_text(
                r#"{"type":"progress","data":{"value":3,"max":20,"prompt_id":"p1","node":"3"}}"#
            ),
            SocketEvent::Progress {
                prompt: "p1".into(),
                value: 3,
                max: 20
            }
        );
        assert_eq!(
            socket_text(r#"{"type":"executing","data":{"node":null,"prompt_id":"p1"}}"#),
            SocketEvent::Finished {
                prompt: "p1".into()
            }
        );
        assert_eq!(
            socket_text(
                r#"{"type":"executing","data":{"node":"3","display_node":"3","prompt_id":"p1"}}"#
            ),
            SocketEvent::Executing {
                prompt: "p1".into(),
                node: "3".into()
            }
        );
        assert_eq!(
            socket_text(r#"{"type":"executing","data":{"node":"3"}}"#),
            SocketEvent::Other,
            "no prompt: nothing to tell it to"
        );
        assert_eq!(
            socket_text(
                r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}}}}"#
            ),
            SocketEvent::Other
        );
        assert_eq!(socket_text("not json"), SocketEvent::Other);
        assert_eq!(
            socket_text(
                r#"{"type":"execution_interrupted","data":{"prompt_id":"p1","node_id":"3","node_type":"KSampler","executed":[]}}"#
            ),
            SocketEvent::Interrupted {
                prompt: "p1".into()
            }
        );
        let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 2];
        frame.extend_from_slice(b"\x89PNG");
        assert_eq!(
            socket_binary(&frame),
            SocketEvent::Preview {
                mime: "image/png",
                bytes: b"\x89PNG".to_vec()
            }
        );
        assert_eq!(socket_binary(&[0, 0, 0, 3]), SocketEvent::Other);
    }

    #[test]
    fn each_nodes_progress_is_read_from_progress_state() {
        // As ComfyUI 0.3.64 sends it while KSampler runs, its loaders done; floats for
        // nodes without steps.
        let frame = r#"{"type": "progress_state", "data": {"prompt_id": "p1", "nodes": {
            "4": {"value": 1.0, "max": 1.0, "state": "finished", "node_id": "4", "prompt_id": "p1",
                  "display_node_id": "4", "parent_node_id": null, "real_node_id": "4"},
            "12:5": {"value": 0.0, "max": 1.0, "state": "running", "node_id": "12:5", "prompt_id": "p1",
                  "display_node_id": "12", "parent_node_id": "12", "real_node_id": "5"},
            "3": {"value": 7, "max": 20, "state": "running", "node_id": "3", "prompt_id": "p1",
                  "display_node_id": "3", "parent_node_id": null, "real_node_id": "3"},
            "10": {"value": 30, "max": 20, "state": "running"},
            "odd": "not an object"}}}"#;
        let node = |node: &str, display: Option<&str>, value, max, state: &str| NodeProgress {
            node: node.into(),
            display_node: display.map(str::to_owned),
            value,
            max,
            state: state.into(),
        };
        assert_eq!(
            socket_text(frame),
            SocketEvent::NodeProgress {
                prompt: "p1".into(),
                nodes: vec![
                    node("3", Some("3"), 7, 20, "running"),
                    node("4", Some("4"), 1, 1, "finished"),
                    node("10", None, 20, 20, "running"),
                    node("12:5", Some("12"), 0, 1, "running"),
                ]
            }
        );
        assert_eq!(
            socket_text(r#"{"type":"progress_state","data":{"prompt_id":"p1","nodes":{}}}"#),
            SocketEvent::NodeProgress {
                prompt: "p1".into(),
                nodes: vec![]
            }
        );
        assert_eq!(
            socket_text(r#"{"type":"progress_state","data":{"nodes":{}}}"#),
            SocketEvent::Other
        );
    }

    #[test]
    fn executed_lists_every_file_of_the_node() {
        let frame = r#"{"type": "executed", "data": {"node": "9", "display_node": "9", "prompt_id": "p1",
            "output": {"images": [{"filename": "clip_00001_.mp4", "subfolder": "video", "type": "output"}],
                       "animated": [true]}}}"#;
        let SocketEvent::Executed {
            prompt,
            node,
            images,
        } = socket_text(frame)
        else {
            panic!("not executed")
        };
        assert_eq!((prompt.as_str(), node.as_str()), ("p1", "9"));
        assert_eq!(
            images,
            [OutputFile {
                node: "9".into(),
                filename: "clip_00001_.mp4".into(),
                subfolder: "video".into(),
                kind: "output".into(),
                media: super::super::client::Media::Video,
            }]
        );
    }
}
