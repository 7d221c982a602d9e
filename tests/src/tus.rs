//! A small tus client for tests: create, patch, head, and wait for processing.

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, Response};
use sha2::Digest as _;

use crate::{eventually, seen, TestApp, ADMIN_EMAIL};

pub const OCTET: &str = "application/offset+octet-stream";

pub struct Tus<'a> {
    pub app: &'a TestApp,
    pub token: String,
    pub client: reqwest::Client,
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl<'a> Tus<'a> {
    pub async fn new(app: &'a TestApp) -> Tus<'a> {
        let token = app.create_token("uploader", "api", ADMIN_EMAIL).await;
        Tus {
            app,
            token,
            client: app.bare_client(),
        }
    }

    /// A client for a new user with this role, uploading with their own token.
    pub async fn as_new_user(app: &'a TestApp, email: &str, role: &str) -> Tus<'a> {
        app.create_user(email, role).await;
        let name = email.split('@').next().unwrap_or(email);
        Tus {
            app,
            token: app.create_token(name, "api", email).await,
            client: app.bare_client(),
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
            .header("tus-resumable", "1.0.0")
    }

    pub async fn create(&self, length: u64, name: &str) -> String {
        let res = self
            .req(Method::POST, "/api/uploads")
            .header("upload-length", length.to_string())
            .header(
                "upload-metadata",
                format!(
                    "filename {},filetype {}",
                    b64(name),
                    b64("application/octet-stream")
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        assert!(res.headers().contains_key("upload-expires"));
        res.headers()["location"].to_str().unwrap().to_owned()
    }

    /// A creation (POST without a body) with these headers.
    pub async fn post(&self, headers: &[(&str, &str)]) -> Response {
        let mut req = self.req(Method::POST, "/api/uploads");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.unwrap()
    }

    /// The URL of the upload a creation made (which must have succeeded).
    pub async fn created(&self, headers: &[(&str, &str)]) -> String {
        let res = self.post(headers).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.headers()["location"].to_str().unwrap().to_owned()
    }

    /// Creates an upload whose length is not known yet (`Upload-Defer-Length: 1`).
    pub async fn create_deferred(&self, name: &str) -> String {
        let metadata = format!("filename {}", b64(name));
        self.created(&[("upload-defer-length", "1"), ("upload-metadata", &metadata)])
            .await
    }

    /// Creates a partial upload (for concatenation) and sends `data` to it.
    pub async fn partial(&self, data: &[u8]) -> String {
        let length = data.len().to_string();
        let url = self
            .created(&[("upload-concat", "partial"), ("upload-length", &length)])
            .await;
        assert_eq!(self.patch(&url, 0, data.to_vec()).await.status(), 204);
        url
    }

    /// Ends an upload (DELETE) and returns the status.
    pub async fn terminate(&self, url: &str) -> reqwest::StatusCode {
        self.req(Method::DELETE, url).send().await.unwrap().status()
    }

    /// A PATCH whose body is streamed in small pieces with no Content-Length (chunked),
    /// so the server learns its size only as it arrives.
    pub async fn patch_streamed(&self, url: &str, offset: u64, body: Vec<u8>) -> Response {
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            body.chunks(100).map(|c| Ok(c.to_vec())).collect();
        self.req(Method::PATCH, url)
            .header("upload-offset", offset.to_string())
            .header("content-type", OCTET)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, url: &str, offset: u64, body: Vec<u8>) -> Response {
        self.req(Method::PATCH, url)
            .header("upload-offset", offset.to_string())
            .header("content-type", OCTET)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn offset(&self, url: &str) -> u64 {
        let res = self.req(Method::HEAD, url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        res.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Uploads `data` in one go and returns the asset id once processing has ended.
    pub async fn upload(&self, name: &str, data: &[u8]) -> (String, String) {
        let url = self.create(data.len() as u64, name).await;
        let res = self.patch(&url, 0, data.to_vec()).await;
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
        let asset = asset_of(self.app, &url).await;
        let state = wait_processed(self.app, &asset).await;
        (asset, state)
    }
}

pub async fn asset_of(app: &TestApp, url: &str) -> String {
    let id = uuid::Uuid::parse_str(url.rsplit('/').next().unwrap()).unwrap();
    let asset: uuid::Uuid = sqlx::query_scalar("select v.asset_id from uploads u join asset_versions v on v.id = u.version_id where u.id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    asset.to_string()
}

/// Waits for the asset's processing to end and returns its state (`ready` or `failed`).
pub async fn wait_processed(app: &TestApp, asset: &str) -> String {
    let id = uuid::Uuid::parse_str(asset).unwrap();
    eventually(
        &format!("asset {asset} to be processed"),
        Duration::from_secs(60),
        || async {
            let state: String = sqlx::query_scalar("select state from assets where id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
            seen(state, |s| s == "ready" || s == "failed")
        },
    )
    .await
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex_string(&sha2::Sha256::digest(data))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
