//! A webhook receiver for the tests: an HTTP server on 127.0.0.1 that checks each
//! delivery's Standard Webhooks signature itself (its own HMAC-SHA256 over SHA-256, so it
//! shares no code with Slate's signer), records what arrived, and can be told to fail
//! the next N deliveries or to answer slowly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// How far a delivery's timestamp may be from the receiver's clock.
const TOLERANCE_SECONDS: i64 = 5 * 60;

/// One delivery as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub content_type: String,
    /// Whether the signature matched the secret the receiver was given.
    pub verified: bool,
    pub body: serde_json::Value,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

#[derive(Default)]
struct Shared {
    secret: Mutex<Option<Vec<u8>>>,
    fail_next: AtomicUsize,
    delay_ms: AtomicU64,
    got: Mutex<Vec<Received>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/{*path}", post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    /// The URL a subscription points at.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/slate", self.addr)
    }

    /// The allow-list entry that lets Slate reach this receiver.
    pub fn allow(&self) -> String {
        self.addr.to_string()
    }

    /// The secret (`whsec_...`) signatures are checked against.
    pub fn set_secret(&self, secret: &str) {
        let bytes = STANDARD
            .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
            .expect("base64");
        *self.shared.secret.lock().unwrap() = Some(bytes);
    }

    /// Answers the next `n` deliveries with 500.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Waits this long before answering each delivery.
    pub fn answer_after(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.got.lock().unwrap().clone()
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or(0);
    let signature = header("webhook-signature");
    let secret = shared.secret.lock().unwrap().clone();
    let verified = secret.is_some_and(|key| verify(&key, &id, timestamp, &body, &signature))
        && (chrono::Utc::now().timestamp() - timestamp).abs() <= TOLERANCE_SECONDS;
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let (status, answer) = if !verified {
        (StatusCode::UNAUTHORIZED, "bad signature".to_owned())
    } else if failing {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the receiver was told to fail".to_owned(),
        )
    } else {
        (StatusCode::OK, format!("thanks for {id}"))
    };
    shared.got.lock().unwrap().push(Received {
        id,
        timestamp,
        signature,
        content_type: header("content-type"),
        verified,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        status: status.as_u16(),
    });
    (status, answer)
}

/// Whether any `v1,` signature in the header is HMAC-SHA256(key, "{id}.{ts}.{body}").
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let expected = STANDARD.encode(hmac_sha256(key, &message));
    header
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_checks_the_standard_webhooks_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            good
        ));
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &format!("v1,bm90IHRoaXM= {good}")
        ));
        assert!(!verify(&key, "msg_other", 1614265330, body, good));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body,
            good
        ));
    }
}
