//! The resumable upload client that runs in the browser: tus 1.0 over XMLHttpRequest
//! (for upload progress events), in 8 MiB chunks, with pause, resume, cancel, retries
//! with backoff after network errors, and resume after a reload (the upload URL is kept
//! in localStorage under the file's fingerprint; re-selecting the file continues it).
//!
//! The queue belongs to the app, not to a page: [`Uploads`] is made once by the root
//! component and every item's signals are created under the root's owner, so leaving the
//! page an upload started on disposes nothing and the upload goes on (the shell's tray
//! shows it). The state is plain signals so the tray renders the same on the server
//! (empty) and in the browser; only the driver touches browser APIs.

use leptos::prelude::*;
#[cfg(feature = "hydrate")]
use uuid::Uuid;

#[cfg(feature = "hydrate")]
use super::PendingUpload;

#[derive(Clone, Debug, PartialEq)]
pub enum UploadStatus {
    Uploading,
    Paused,
    /// Waiting before the next attempt after a network error or a busy server.
    Retrying {
        attempt: usize,
        /// Why, for people: "Connection lost", "The server is busy".
        why: &'static str,
    },
    Done,
    Failed(String),
}

impl UploadStatus {
    /// Still on its way: a reload or a closed tab would drop it.
    pub fn unfinished(&self) -> bool {
        matches!(
            self,
            UploadStatus::Uploading | UploadStatus::Paused | UploadStatus::Retrying { .. }
        )
    }

    /// The state as a word, for `data-status` (styles and tests).
    pub fn as_str(&self) -> &'static str {
        match self {
            UploadStatus::Uploading => "uploading",
            UploadStatus::Paused => "paused",
            UploadStatus::Retrying { .. } => "retrying",
            UploadStatus::Done => "done",
            UploadStatus::Failed(_) => "failed",
        }
    }
}

#[derive(Clone)]
pub struct UploadItem {
    pub key: u64,
    pub name: String,
    pub size: f64,
    pub status: RwSignal<UploadStatus>,
    pub sent: RwSignal<f64>,
    /// Bytes per second, smoothed.
    pub speed: RwSignal<f64>,
    /// Where the upload resumed from after a reload, when it did.
    pub resumed_from: RwSignal<Option<f64>>,
    /// Where the server keeps it (`/api/uploads/{id}`), once known.
    pub url: RwSignal<Option<String>>,
    #[cfg(feature = "hydrate")]
    handle: StoredValue<browser::Handle, LocalStorage>,
}

impl UploadItem {
    /// 0–1.
    pub fn fraction(&self) -> f64 {
        if self.size <= 0.0 {
            1.0
        } else {
            (self.sent.get() / self.size).clamp(0.0, 1.0)
        }
    }

    /// Seconds left at the current speed.
    pub fn eta(&self) -> Option<f64> {
        let speed = self.speed.get();
        (speed > 1.0).then(|| (self.size - self.sent.get()).max(0.0) / speed)
    }
}

/// The upload queue of the app, shared through the context (see [`provide_uploads`]).
#[derive(Clone, Copy)]
pub struct Uploads {
    pub items: RwSignal<Vec<UploadItem>>,
    #[cfg_attr(
        not(feature = "hydrate"),
        expect(dead_code, reason = "files are added only in the browser")
    )]
    next_key: StoredValue<u64>,
    /// The root's owner, under which items are created (whatever page adds them). Kept
    /// only in the browser: on the server it would keep each request's owner alive.
    #[cfg(feature = "hydrate")]
    owner: StoredValue<Option<Owner>>,
}

/// Makes the app's upload queue (call once, in the root component) and, in the browser,
/// has the page ask before a reload or a closed tab drops an unfinished upload.
pub fn provide_uploads() -> Uploads {
    let uploads = Uploads {
        items: RwSignal::new(Vec::new()),
        next_key: StoredValue::new(0),
        #[cfg(feature = "hydrate")]
        owner: StoredValue::new(Owner::current()),
    };
    provide_context(uploads);
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| browser::guard_unload(uploads));
    uploads
}

/// The app's upload queue.
pub fn use_uploads() -> Uploads {
    expect_context::<Uploads>()
}

impl Uploads {
    fn find(&self, key: u64) -> Option<UploadItem> {
        self.items
            .with_untracked(|items| items.iter().find(|i| i.key == key).cloned())
    }

    /// Whether any upload is still on its way (read when the page is about to go).
    pub fn unfinished_now(&self) -> bool {
        self.items
            .try_with_untracked(|items| {
                items.iter().any(|i| {
                    i.status
                        .try_with_untracked(UploadStatus::unfinished)
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    }

    /// Whether the upload the server keeps at `url` is in this tab's queue (tracked).
    pub fn holds(&self, url: &str) -> bool {
        self.items
            .with(|items| items.iter().any(|i| i.url.get().as_deref() == Some(url)))
    }

    /// Bytes sent of all unfinished uploads, 0–1, and how many there are (tracked).
    pub fn overall(&self) -> (f64, usize) {
        self.items.with(|items| {
            let (mut sent, mut size, mut count) = (0.0, 0.0, 0);
            for item in items
                .iter()
                .filter(|i| i.status.with(UploadStatus::unfinished))
            {
                sent += item.sent.get().min(item.size);
                size += item.size;
                count += 1;
            }
            (if size > 0.0 { sent / size } else { 0.0 }, count)
        })
    }

    pub fn pause(&self, key: u64) {
        #[cfg(feature = "hydrate")]
        if let Some(item) = self.find(key) {
            browser::pause(&item);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = self.find(key);
    }

    pub fn resume(&self, key: u64) {
        #[cfg(feature = "hydrate")]
        if let Some(item) = self.find(key) {
            browser::start(item);
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = self.find(key);
    }

    pub fn cancel(&self, key: u64) {
        #[cfg(feature = "hydrate")]
        if let Some(item) = self.find(key) {
            browser::cancel(&item);
        }
        self.items.update(|items| items.retain(|i| i.key != key));
    }

    pub fn clear_finished(&self) {
        self.items
            .update(|items| items.retain(|i| i.status.get_untracked() != UploadStatus::Done));
    }

    /// Queues and starts files; `asset` makes each a new version of that asset.
    #[cfg(feature = "hydrate")]
    pub fn add(&self, files: web_sys::FileList, asset: Option<Uuid>) {
        for index in 0..files.length() {
            if let Some(file) = files.get(index) {
                self.push(file, asset, None);
            }
        }
    }

    /// Continues an upload the server still has (cut off by a reload or a crash) with
    /// the file chosen again. The upload's address is remembered under the file's
    /// fingerprint, as a reload in this browser would have left it, so the usual resume
    /// finds it; a file of another name or size is refused.
    #[cfg(feature = "hydrate")]
    pub fn continue_interrupted(
        &self,
        file: web_sys::File,
        pending: &PendingUpload,
        asset: Uuid,
    ) -> Result<(), String> {
        if !could_be_the_file(&file.name(), file.size(), pending) {
            return Err(format!(
                "That is not the file this upload was made from: choose {} ({}).",
                pending.file_name,
                pending
                    .length
                    .map(|l| super::format_bytes(l as u64))
                    .unwrap_or_else(|| "the same size".into())
            ));
        }
        let asset = (pending.version > 1).then_some(asset);
        let url = pending.url();
        browser::remember(&file, asset, &url);
        self.push(file, asset, Some(url));
        Ok(())
    }

    #[cfg(feature = "hydrate")]
    fn push(&self, file: web_sys::File, asset: Option<Uuid>, url: Option<String>) {
        let key = self.next_key.get_value();
        self.next_key.set_value(key + 1);
        let make = move || UploadItem {
            key,
            name: file.name(),
            size: file.size(),
            status: RwSignal::new(UploadStatus::Uploading),
            sent: RwSignal::new(0.0),
            speed: RwSignal::new(0.0),
            resumed_from: RwSignal::new(None),
            url: RwSignal::new(url),
            handle: StoredValue::new_local(browser::Handle::new(file, asset)),
        };
        let item = match self.owner.get_value() {
            Some(owner) => owner.with(make),
            None => make(),
        };
        self.items.update(|items| items.push(item.clone()));
        browser::start(item);
    }
}

#[cfg(feature = "hydrate")]
mod browser {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::base64_lite::encode;
    use leptos::prelude::*;
    use uuid::Uuid;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast as _;
    use web_sys::{Blob, File, ProgressEvent, XmlHttpRequest};

    use super::{UploadItem, UploadStatus};

    const CHUNK: f64 = 8.0 * 1024.0 * 1024.0;
    const BACKOFF_MS: [i32; 6] = [1_000, 2_000, 4_000, 8_000, 16_000, 30_000];

    pub struct Handle {
        file: File,
        asset: Option<Uuid>,
        xhr: Option<XmlHttpRequest>,
        /// Bumped by pause and cancel: a driver that sees another generation stops.
        generation: u32,
    }

    impl Handle {
        pub fn new(file: File, asset: Option<Uuid>) -> Self {
            Self {
                file,
                asset,
                xhr: None,
                generation: 0,
            }
        }
    }

    fn fingerprint(h: &Handle) -> String {
        fingerprint_of(&h.file, h.asset)
    }

    fn fingerprint_of(file: &File, asset: Option<Uuid>) -> String {
        format!(
            "slate-upload:{}:{}:{}:{}",
            file.name(),
            file.size(),
            file.last_modified(),
            asset.map(|a| a.to_string()).unwrap_or_default()
        )
    }

    /// Remembers where the upload of `file` is kept, as starting it would have.
    pub fn remember(file: &File, asset: Option<Uuid>, url: &str) {
        if let Some(s) = storage() {
            let _ = s.set_item(&fingerprint_of(file, asset), url);
        }
    }

    /// Has the browser ask before the page goes (reload, closed tab, a link out of the
    /// app) while an upload is unfinished: the queue lives in this page only.
    pub fn guard_unload(uploads: super::Uploads) {
        let Some(window) = web_sys::window() else {
            return;
        };
        let listener = Closure::<dyn Fn(web_sys::Event)>::new(move |event: web_sys::Event| {
            if uploads.unfinished_now() {
                event.prevent_default();
                // Browsers before the standard ask only when returnValue is set.
                let _ = js_sys::Reflect::set(
                    &event,
                    &"returnValue".into(),
                    &"An upload is still running.".into(),
                );
            }
        });
        let _ = window
            .add_event_listener_with_callback("beforeunload", listener.as_ref().unchecked_ref());
        // Kept for the page's life, as the app is.
        listener.forget();
    }

    fn storage() -> Option<web_sys::Storage> {
        web_sys::window()?.local_storage().ok()?
    }

    fn now_ms() -> f64 {
        web_sys::window()
            .and_then(|w| w.performance())
            .map(|p| p.now())
            .unwrap_or(0.0)
    }

    async fn sleep(ms: i32) {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }

    pub fn pause(item: &UploadItem) {
        item.handle.update_value(|h| {
            h.generation += 1;
            if let Some(xhr) = h.xhr.take() {
                let _ = xhr.abort();
            }
        });
        item.status.set(UploadStatus::Paused);
        item.speed.set(0.0);
    }

    pub fn cancel(item: &UploadItem) {
        pause(item);
        let url = item.url.get_untracked();
        let key = item.handle.with_value(fingerprint);
        if let Some(s) = storage() {
            let _ = s.remove_item(&key);
        }
        if let Some(url) = url {
            leptos::task::spawn_local(async move {
                let _ = request("DELETE", &url, &[], None, None, None).await;
            });
        }
    }

    pub fn start(item: UploadItem) {
        let generation = item.handle.with_value(|h| h.generation);
        item.status.set(UploadStatus::Uploading);
        leptos::task::spawn_local(async move {
            let result = drive(&item, generation).await;
            let current = item.handle.with_value(|h| h.generation);
            if current != generation {
                return; // paused or cancelled meanwhile
            }
            match result {
                Ok(()) => {
                    item.status.set(UploadStatus::Done);
                    item.speed.set(0.0);
                }
                Err(message) => item.status.set(UploadStatus::Failed(message)),
            }
        });
    }

    struct Reply {
        status: u16,
        offset: Option<f64>,
        location: Option<String>,
        text: String,
    }

    enum NetError {
        /// Aborted on purpose (pause, cancel).
        Aborted,
        /// The network failed; worth retrying.
        Failed,
    }

    /// One request; resolves when it ends, however it ends.
    async fn request(
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&Blob>,
        progress: Option<Rc<dyn Fn(f64)>>,
        item: Option<&UploadItem>,
    ) -> Result<Reply, NetError> {
        let xhr = XmlHttpRequest::new().map_err(|_| NetError::Failed)?;
        xhr.open_with_async(method, url, true)
            .map_err(|_| NetError::Failed)?;
        let _ = xhr.set_request_header("Tus-Resumable", "1.0.0");
        for (name, value) in headers {
            let _ = xhr.set_request_header(name, value);
        }
        let outcome = Rc::new(Cell::new(0u8)); // 1 done, 2 failed, 3 aborted
        let promise = {
            let xhr = xhr.clone();
            let outcome = outcome.clone();
            js_sys::Promise::new(&mut move |resolve, _| {
                for (event, code) in [("load", 1u8), ("error", 2), ("timeout", 2), ("abort", 3)] {
                    let resolve = resolve.clone();
                    let outcome = outcome.clone();
                    let cb = Closure::once_into_js(move || {
                        outcome.set(code);
                        let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
                    });
                    let _ = xhr.add_event_listener_with_callback(event, cb.unchecked_ref());
                }
            })
        };
        let progress_cb = progress
            .map(|f| Closure::<dyn Fn(ProgressEvent)>::new(move |e: ProgressEvent| f(e.loaded())));
        if let (Some(cb), Ok(upload)) = (&progress_cb, xhr.upload()) {
            upload.set_onprogress(Some(cb.as_ref().unchecked_ref()));
        }
        if let Some(item) = item {
            item.handle.update_value(|h| h.xhr = Some(xhr.clone()));
        }
        let sent = match body {
            Some(blob) => xhr.send_with_opt_blob(Some(blob)),
            None => xhr.send(),
        };
        if sent.is_err() {
            return Err(NetError::Failed);
        }
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        drop(progress_cb);
        if let Some(item) = item {
            item.handle.update_value(|h| h.xhr = None);
        }
        match outcome.get() {
            1 => Ok(Reply {
                status: xhr.status().unwrap_or(0),
                offset: xhr
                    .get_response_header("Upload-Offset")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse().ok()),
                location: xhr.get_response_header("Location").ok().flatten(),
                text: xhr.response_text().ok().flatten().unwrap_or_default(),
            }),
            3 => Err(NetError::Aborted),
            _ => Err(NetError::Failed),
        }
    }

    fn refusal(reply: &Reply) -> String {
        let text = reply.text.trim();
        if text.is_empty() {
            format!("The server refused the upload ({}).", reply.status)
        } else {
            text.to_owned()
        }
    }

    /// The upload URL to continue, and its stored offset: a remembered one when the
    /// server still has it, else a new upload.
    async fn open(item: &UploadItem) -> Result<(String, f64), Option<String>> {
        let (key, name, size, asset) = item
            .handle
            .with_value(|h| (fingerprint(h), h.file.name(), h.file.size(), h.asset));
        if let Some(url) = storage().and_then(|s| s.get_item(&key).ok().flatten()) {
            match request("HEAD", &url, &[], None, None, Some(item)).await {
                Ok(reply) if reply.status == 200 => {
                    let offset = reply.offset.unwrap_or(0.0);
                    if offset > 0.0 {
                        item.resumed_from.set(Some(offset));
                    }
                    return Ok((url, offset));
                }
                Ok(_) => {
                    if let Some(s) = storage() {
                        let _ = s.remove_item(&key);
                    }
                }
                Err(NetError::Aborted) => return Err(None),
                Err(NetError::Failed) => return Err(Some("The server cannot be reached.".into())),
            }
        }
        let mut metadata = format!(
            "filename {},filetype {}",
            encode(&name),
            encode(&item.handle.with_value(|h| h.file.type_()))
        );
        if let Some(asset) = asset {
            metadata.push_str(&format!(",asset {}", encode(&asset.to_string())));
        }
        let headers = [
            ("Upload-Length", format!("{size}")),
            ("Upload-Metadata", metadata),
        ];
        match request("POST", "/api/uploads", &headers, None, None, Some(item)).await {
            Ok(reply) if reply.status == 201 => {
                let url = reply
                    .location
                    .ok_or_else(|| Some("The server did not say where to upload.".to_owned()))?;
                if let Some(s) = storage() {
                    let _ = s.set_item(&key, &url);
                }
                Ok((url, 0.0))
            }
            Ok(reply) => Err(Some(refusal(&reply))),
            Err(NetError::Aborted) => Err(None),
            Err(NetError::Failed) => Err(Some("The server cannot be reached.".into())),
        }
    }

    async fn drive(item: &UploadItem, generation: u32) -> Result<(), String> {
        let live = || item.handle.with_value(|h| h.generation) == generation;
        let mut attempt = 0usize;
        let (url, mut offset) = loop {
            match open(item).await {
                Ok(found) => break found,
                Err(None) => return Ok(()),
                Err(Some(message))
                    if attempt < BACKOFF_MS.len() && message.contains("cannot be reached") =>
                {
                    item.status.set(UploadStatus::Retrying {
                        attempt: attempt + 1,
                        why: "Connection lost",
                    });
                    sleep(BACKOFF_MS[attempt]).await;
                    attempt += 1;
                    if !live() {
                        return Ok(());
                    }
                }
                Err(Some(message)) => return Err(message),
            }
        };
        item.url.set(Some(url.clone()));
        item.sent.set(offset);
        let size = item.size;
        let file = item.handle.with_value(|h| h.file.clone());
        let mut window = (now_ms(), offset);
        while offset < size || size == 0.0 {
            if !live() {
                return Ok(());
            }
            item.status.set(UploadStatus::Uploading);
            let end = (offset + CHUNK).min(size);
            let blob = file
                .slice_with_f64_and_f64(offset, end)
                .map_err(|_| "The file cannot be read.".to_owned())?;
            let base = offset;
            let progress: Rc<dyn Fn(f64)> = {
                let item = item.clone();
                let window = Rc::new(Cell::new(window));
                Rc::new(move |loaded: f64| {
                    let sent = base + loaded;
                    item.sent.set(sent);
                    let (t0, b0) = window.get();
                    let now = now_ms();
                    if now - t0 > 500.0 {
                        let rate = (sent - b0) / ((now - t0) / 1000.0);
                        let old = item.speed.get_untracked();
                        item.speed.set(if old > 0.0 {
                            old * 0.6 + rate * 0.4
                        } else {
                            rate
                        });
                        window.set((now, sent));
                    }
                })
            };
            let headers = [
                ("Upload-Offset", format!("{offset}")),
                ("Content-Type", "application/offset+octet-stream".to_owned()),
            ];
            match request(
                "PATCH",
                &url,
                &headers,
                Some(&blob),
                Some(progress),
                Some(item),
            )
            .await
            {
                Ok(reply) if reply.status == 204 => {
                    offset = reply.offset.unwrap_or(end);
                    item.sent.set(offset);
                    attempt = 0;
                    window = (now_ms(), offset);
                    if size == 0.0 {
                        break;
                    }
                }
                Ok(reply) if matches!(reply.status, 409 | 423) || reply.status >= 500 => {
                    // Out of step or busy: find out what the server has and go on from there.
                    if attempt >= BACKOFF_MS.len() {
                        return Err(refusal(&reply));
                    }
                    item.status.set(UploadStatus::Retrying {
                        attempt: attempt + 1,
                        why: match reply.status {
                            423 => "The server is still storing the last piece",
                            409 => "Out of step with the server",
                            _ => "The server is having trouble",
                        },
                    });
                    sleep(BACKOFF_MS[attempt]).await;
                    attempt += 1;
                    offset = resync(&url, offset).await;
                }
                Ok(reply) if matches!(reply.status, 404 | 410) => {
                    if let Some(s) = storage() {
                        let _ = s.remove_item(&item.handle.with_value(fingerprint));
                    }
                    return Err(
                        "The server no longer has this upload (it expired); add the file again."
                            .into(),
                    );
                }
                Ok(reply) => return Err(refusal(&reply)),
                Err(NetError::Aborted) => return Ok(()),
                Err(NetError::Failed) => {
                    if attempt >= BACKOFF_MS.len() {
                        return Err("The network kept failing; press Resume to try again.".into());
                    }
                    item.status.set(UploadStatus::Retrying {
                        attempt: attempt + 1,
                        why: "Connection lost",
                    });
                    item.speed.set(0.0);
                    sleep(BACKOFF_MS[attempt]).await;
                    attempt += 1;
                    offset = resync(&url, offset).await;
                    item.sent.set(offset);
                }
            }
        }
        if let Some(s) = storage() {
            let _ = s.remove_item(&item.handle.with_value(fingerprint));
        }
        Ok(())
    }

    async fn resync(url: &str, fallback: f64) -> f64 {
        match request("HEAD", url, &[], None, None, None).await {
            Ok(reply) if reply.status == 200 => reply.offset.unwrap_or(fallback),
            _ => fallback,
        }
    }
}

/// Outside the browser module so that its test runs with the ordinary `cargo test`.
#[cfg_attr(
    all(not(feature = "hydrate"), not(test)),
    expect(dead_code, reason = "metadata is encoded only in the browser")
)]
mod base64_lite {
    /// Standard base64, for Upload-Metadata values.
    pub fn encode(input: &str) -> String {
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = input.as_bytes();
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Whether a file chosen again could be the one an unfinished upload was made from: the
/// same size to the byte and the same name (as the server keeps it: trimmed, and cut
/// with an ellipsis when very long).
#[cfg_attr(
    all(not(feature = "hydrate"), not(test)),
    expect(dead_code, reason = "files are chosen only in the browser")
)]
pub fn could_be_the_file(name: &str, size: f64, pending: &super::PendingUpload) -> bool {
    let same_size = pending.length.is_none_or(|length| size == length as f64)
        && size >= pending.received as f64;
    let kept = pending.file_name.trim();
    let name = name.trim();
    let same_name = match kept.strip_suffix('…') {
        Some(start) => name.starts_with(start),
        None => name == kept,
    };
    same_size && same_name
}

/// `1.2 MiB/s`.
pub fn format_speed(bytes_per_second: f64) -> String {
    format!(
        "{}/s",
        super::format_bytes(bytes_per_second.max(0.0) as u64)
    )
}

/// `2 min 05 s`, `45 s`.
pub fn format_eta(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_file_continues_an_upload() {
        let pending = super::super::PendingUpload {
            upload_id: uuid::Uuid::nil(),
            uploader: uuid::Uuid::nil(),
            file_name: "plate_4k.exr".into(),
            received: 100,
            length: Some(1000),
            version: 1,
        };
        assert!(could_be_the_file("plate_4k.exr", 1000.0, &pending));
        assert!(!could_be_the_file("plate_4k.exr", 999.0, &pending));
        assert!(!could_be_the_file("plate_5k.exr", 1000.0, &pending));
        let long = super::super::PendingUpload {
            file_name: "a_very_long_na…".into(),
            length: None,
            ..pending
        };
        assert!(could_be_the_file("a_very_long_name.mov", 50_000.0, &long));
        assert!(!could_be_the_file("a_very_long_name.mov", 10.0, &long));
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64_lite::encode("hello.txt"), "aGVsbG8udHh0");
        assert_eq!(base64_lite::encode("ab"), "YWI=");
    }

    #[test]
    fn speeds_and_etas_read_naturally() {
        assert_eq!(format_speed(1.5 * 1024.0 * 1024.0), "1.5 MiB/s");
        assert_eq!(format_eta(125.0), "2 min 05 s");
        assert_eq!(format_eta(4.4), "4 s");
    }
}
