//! ComfyUI's WebSocket: the frames a stage cares about (steps, previews, images written,
//! the end of a prompt), read leniently, and a reader task that keeps the socket open.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::client::OutputFile;
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
    /// A node of `prompt` wrote these images.
    Executed {
        prompt: String,
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
        "executing" if data.get("node").is_some_and(Value::is_null) && !prompt.is_empty() => {
            SocketEvent::Finished { prompt }
        }
        "executed" => {
            let node = data["node"].as_str().unwrap_or_default();
            let images = data["output"]["images"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    Some(OutputFile {
                        node: node.to_owned(),
                        filename: i["filename"].as_str()?.to_owned(),
                        subfolder: i["subfolder"].as_str().unwrap_or_default().to_owned(),
                        kind: i["type"].as_str().unwrap_or("output").to_owned(),
                    })
                })
                .collect();
            SocketEvent::Executed { prompt, images }
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
            socket_text(r#"{"type":"executing","data":{"node":"3","prompt_id":"p1"}}"#),
            SocketEvent::Other
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
}
