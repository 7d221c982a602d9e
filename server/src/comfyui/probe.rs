//! Fetching from an endpoint that arrived over a webhook, safely: Slate resolves the
//! name itself and refuses private, loopback, link-local, unique-local and CGNAT
//! addresses, pins the connection to the addresses it checked, follows no redirect,
//! times out (5 s to connect, 10 s in all) and reads at most 1 MiB (the probes' answers
//! are a few hundred bytes; the client's calls that embed graphs set caps of their own).
//! On top of that: the ComfyUI calls the Colab issue needs, parsed leniently (old builds
//! lack fields).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use super::address::{forbidden, normalise, AddressError, HostRules};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a request to an endpoint failed, classified as the reference describes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Address(#[from] AddressError),
    #[error("the name does not resolve: {0}")]
    Dns(String),
    #[error("the name resolves to {0}, which is not a public address ({1})")]
    Private(IpAddr, &'static str),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("the tunnel is gone (HTTP {0}): the Colab runtime has probably stopped")]
    Gone(u16),
    #[error("the tunnel is up but ComfyUI does not answer (HTTP 502): it may be restarting")]
    Restarting,
    #[error("too many requests (HTTP 429): backing off")]
    Busy,
    #[error("ComfyUI took longer than Cloudflare waits (HTTP 524): slow, not dead")]
    Slow,
    #[error("a redirect (HTTP {0}) was refused: endpoints are never followed elsewhere")]
    Redirect(u16),
    #[error("HTTP {0}")]
    Status(u16),
    /// The answer passed the cap (in bytes) of its call.
    #[error("the answer is larger than {} KiB", .0 / 1024)]
    TooLarge(usize),
    #[error("this does not look like ComfyUI: {0}")]
    NotComfy(String),
}

impl ProbeError {
    /// Whether waiting may help (a fresh tunnel, a restart), as opposed to a wrong URL.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            ProbeError::Dns(_)
                | ProbeError::Connect(_)
                | ProbeError::Timeout(_)
                | ProbeError::Gone(_)
                | ProbeError::Restarting
                | ProbeError::Busy
                | ProbeError::Slow
        )
    }

    /// A short word for the history table and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            ProbeError::Address(_) | ProbeError::Private(..) => "refused",
            ProbeError::Dns(_) => "dns",
            ProbeError::Connect(_) => "connect",
            ProbeError::Timeout(_) => "timeout",
            ProbeError::Gone(_) => "gone",
            ProbeError::Restarting => "restarting",
            ProbeError::Busy => "busy",
            ProbeError::Slow => "slow",
            ProbeError::Redirect(_) => "redirect",
            ProbeError::Status(_) => "status",
            ProbeError::TooLarge(_) => "too-large",
            ProbeError::NotComfy(_) => "not-comfyui",
        }
    }
}

/// A JSON answer and how long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    pub json: Value,
    pub latency: Duration,
}

/// ComfyUI's WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Debug)]
pub struct Prober {
    pub rules: HostRules,
}

impl Prober {
    pub fn new(rules: HostRules) -> Prober {
        if rules.allow_loopback {
            tracing::warn!("SLATE_COLAB_ALLOW_LOOPBACK is on: Colab endpoints on http://127.0.0.1 are accepted. This is for tests only; never run a real Slate like this");
        }
        Prober { rules }
    }

    /// The endpoint's base URL and the addresses its name resolves to, each checked.
    async fn addresses(&self, endpoint: &str) -> Result<(Url, Vec<SocketAddr>), ProbeError> {
        let base = normalise(endpoint, &self.rules)?;
        let host = base.host_str().unwrap_or_default().to_owned();
        let port = base.port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            // Only the test switch lets an IP literal through `normalise`.
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::lookup_host((host.as_str(), port)),
            )
            .await
            .map_err(|_| ProbeError::Timeout(CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| ProbeError::Dns(e.to_string()))?
            .collect(),
        };
        if addrs.is_empty() {
            return Err(ProbeError::Dns("no addresses".into()));
        }
        if !self.rules.allow_loopback {
            if let Some((ip, why)) = addrs
                .iter()
                .find_map(|a| forbidden(a.ip()).map(|w| (a.ip(), w)))
            {
                return Err(ProbeError::Private(ip, why));
            }
        }
        Ok((base, addrs))
    }

    /// A client pinned to the endpoint's checked addresses, and the endpoint's base URL.
    pub async fn connect(
        &self,
        endpoint: &str,
        total: Duration,
    ) -> Result<(reqwest::Client, Url), ProbeError> {
        let (base, addrs) = self.addresses(endpoint).await?;
        let host = base.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(total)
            .no_proxy()
            .resolve_to_addrs(&host, &addrs)
            .build()
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
        Ok((client, base))
    }

    /// Opens ComfyUI's WebSocket (`/ws?clientId=`) on a checked address of the endpoint
    /// (the same rules as every request: no private address, no redirect), over TLS for
    /// an https endpoint.
    pub async fn websocket(&self, endpoint: &str, client_id: &str) -> Result<Socket, ProbeError> {
        let (base, addrs) = self.addresses(endpoint).await?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| ProbeError::Timeout(CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| ProbeError::Connect(e.to_string()))?;
        let mut url = base
            .join(&format!("ws?clientId={client_id}"))
            .map_err(|_| AddressError::NotAUrl)?;
        let tls = url.scheme() == "https";
        let _ = url.set_scheme(if tls { "wss" } else { "ws" });
        let connector = if tls {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ProbeError::Connect(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config))
        } else {
            tokio_tungstenite::Connector::Plain
        };
        let handshake = tokio_tungstenite::client_async_tls_with_config(
            url.as_str(),
            tcp,
            None,
            Some(connector),
        );
        let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
            .await
            .map_err(|_| ProbeError::Timeout(CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| ProbeError::Connect(format!("the socket: {e}")))?;
        Ok(socket)
    }

    /// Sends a request built by `build` and reads at most `cap` bytes of a 2xx answer.
    /// Non-2xx answers are classified, except the statuses in `pass` (returned as is).
    pub async fn send(
        &self,
        endpoint: &str,
        path: &str,
        total: Duration,
        cap: usize,
        pass: &[u16],
        build: impl FnOnce(&reqwest::Client, Url) -> reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>, Duration), ProbeError> {
        let (client, base) = self.connect(endpoint, total).await?;
        let url: Url = base
            .join(path.trim_start_matches('/'))
            .map_err(|_| AddressError::NotAUrl)?;
        let started = Instant::now();
        let mut res = build(&client, url).send().await.map_err(transport)?;
        let status = res.status().as_u16();
        if !pass.contains(&status) {
            match status {
                200..=299 => {}
                300..=399 => return Err(ProbeError::Redirect(status)),
                530 => return Err(ProbeError::Gone(status)),
                502 => return Err(ProbeError::Restarting),
                429 => return Err(ProbeError::Busy),
                524 => return Err(ProbeError::Slow),
                // Cloudflare's "1033" page comes with 530 or sometimes 404.
                404 if res
                    .headers()
                    .get("server")
                    .is_some_and(|s| s == "cloudflare") =>
                {
                    return Err(ProbeError::Gone(status))
                }
                other => return Err(ProbeError::Status(other)),
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(transport)? {
            body.extend_from_slice(&chunk);
            if body.len() > cap {
                return Err(ProbeError::TooLarge(cap));
            }
        }
        Ok((status, body, started.elapsed()))
    }

    /// GET `path` on the endpoint and parse JSON, with every safety rule applied.
    pub async fn get_json(&self, endpoint: &str, path: &str) -> Result<Answer, ProbeError> {
        let (_, body, latency) = self
            .send(endpoint, path, TOTAL_TIMEOUT, MAX_BODY, &[], |c, url| {
                c.get(url)
            })
            .await?;
        Ok(Answer {
            json: parse_json(&body)?,
            latency,
        })
    }

    /// `GET /system_stats`: accepted only when it looks like ComfyUI.
    pub async fn system_stats(
        &self,
        endpoint: &str,
    ) -> Result<(SystemStats, Duration), ProbeError> {
        let answer = self.get_json(endpoint, "/system_stats").await?;
        Ok((SystemStats::parse(&answer.json)?, answer.latency))
    }

    /// `GET /prompt`: the cheap liveness check; returns the queue length.
    pub async fn queue(&self, endpoint: &str) -> Result<(Option<i64>, Duration), ProbeError> {
        let answer = self.get_json(endpoint, "/prompt").await?;
        let remaining = answer
            .json
            .pointer("/exec_info/queue_remaining")
            .and_then(Value::as_i64);
        if answer.json.get("exec_info").is_none() {
            return Err(ProbeError::NotComfy("GET /prompt has no exec_info".into()));
        }
        Ok((remaining, answer.latency))
    }

    /// Verification before an endpoint is accepted: `/system_stats` until it answers
    /// like ComfyUI, retrying transient failures (a fresh tunnel takes a while to become
    /// reachable) every `every` until `within` has passed.
    pub async fn verify(
        &self,
        endpoint: &str,
        within: Duration,
        every: Duration,
    ) -> Result<(SystemStats, Duration), ProbeError> {
        let deadline = Instant::now() + within;
        loop {
            match self.system_stats(endpoint).await {
                Ok(found) => return Ok(found),
                Err(e) if e.transient() && Instant::now() + every < deadline => {
                    tracing::debug!(error = %e, "endpoint not reachable yet; retrying");
                    tokio::time::sleep(every).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// JSON, or a word on what came instead.
pub fn parse_json(body: &[u8]) -> Result<Value, ProbeError> {
    serde_json::from_slice::<Value>(body).map_err(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_lowercase();
        ProbeError::NotComfy(if text.contains("<html") || text.contains("<!doctype") {
            "the answer is an HTML page, not JSON".into()
        } else {
            "the answer is not JSON".into()
        })
    })
}

fn transport(e: reqwest::Error) -> ProbeError {
    if e.is_timeout() {
        ProbeError::Timeout(TOTAL_TIMEOUT.as_secs())
    } else {
        // Without the URL: it is a credential.
        ProbeError::Connect(e.without_url().to_string())
    }
}

/// What `/system_stats` says about the machine (fields may be missing on old builds).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SystemStats {
    pub gpu: Option<String>,
    pub vram_total: Option<i64>,
    pub vram_free: Option<i64>,
    pub comfyui_version: Option<String>,
    pub python_version: Option<String>,
    pub pytorch_version: Option<String>,
}

impl SystemStats {
    pub fn parse(json: &Value) -> Result<SystemStats, ProbeError> {
        let device = json
            .get("devices")
            .and_then(Value::as_array)
            .and_then(|d| d.iter().find(|d| d.get("vram_total").is_some()))
            .ok_or_else(|| {
                ProbeError::NotComfy("/system_stats lists no device with vram_total".into())
            })?;
        let text = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        // "cuda:0 Tesla T4 : cudaMallocAsync" → "Tesla T4"
        let gpu = text(device.get("name")).map(|n| {
            let n = n
                .split_once(' ')
                .filter(|(head, _)| head.contains(':'))
                .map_or(n.as_str(), |(_, rest)| rest);
            n.split(" : ").next().unwrap_or(n).trim().to_owned()
        });
        let system = json.get("system");
        Ok(SystemStats {
            gpu,
            vram_total: device.get("vram_total").and_then(Value::as_i64),
            vram_free: device.get("vram_free").and_then(Value::as_i64),
            comfyui_version: text(system.and_then(|s| s.get("comfyui_version"))),
            python_version: text(system.and_then(|s| s.get("python_version")))
                .map(|v| v.split_whitespace().next().unwrap_or(&v).to_owned()),
            pytorch_version: text(system.and_then(|s| s.get("pytorch_version"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn system_stats_are_read_from_new_and_old_builds() {
        let new = json!({"system": {"os": "posix", "python_version": "3.11.9 (main) [GCC 11.4.0]", "comfyui_version": "0.3.40", "pytorch_version": "2.5.1+cu121", "ram_total": 1},
            "devices": [{"name": "cuda:0 Tesla T4 : cudaMallocAsync", "type": "cuda", "index": 0, "vram_total": 15_828_320_256_i64, "vram_free": 15_000_000_000_i64}]});
        let s = SystemStats::parse(&new).unwrap();
        assert_eq!(s.gpu.as_deref(), Some("Tesla T4"));
        assert_eq!(s.vram_total, Some(15_828_320_256));
        assert_eq!(s.comfyui_version.as_deref(), Some("0.3.40"));
        assert_eq!(s.python_version.as_deref(), Some("3.11.9"));
        let old = json!({"system": {"os": "posix", "python_version": "3.10.12"}, "devices": [{"name": "cuda:0 NVIDIA A100-SXM4-40GB : native", "vram_total": 42_000_000_000_i64}]});
        let s = SystemStats::parse(&old).unwrap();
        assert_eq!(
            (s.gpu.as_deref(), s.comfyui_version),
            (Some("NVIDIA A100-SXM4-40GB"), None)
        );
        assert!(matches!(
            SystemStats::parse(&json!({"devices": [{"name": "x"}]})),
            Err(ProbeError::NotComfy(_))
        ));
        assert!(matches!(
            SystemStats::parse(&json!({"status": "ok"})),
            Err(ProbeError::NotComfy(_))
        ));
    }
}
