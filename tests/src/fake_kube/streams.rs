//! The long-lived answers: a watch (newline-delimited JSON events replayed from the
//! history, then live) and a followed pod log; both end when the fake stops.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::selector::{FieldSelector, LabelSelector};
use super::server::partial;
use super::store::{Change, ChangeType, Key};
use super::Inner;

/// What a watch selects and how it shows objects.
pub(super) struct Selection {
    pub api_version: String,
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub metadata_only: bool,
}

impl Selection {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }
}

/// The state of one watch response: what it selects, how far it has read the history,
/// and what it has yet to send.
pub(super) struct WatchStream {
    inner: Arc<Inner>,
    selection: Selection,
    /// Every change up to this resourceVersion has been considered.
    cursor: u64,
    /// The `expire_history` epoch the watch started in.
    epoch: u64,
    life_at_start: u64,
    changed: watch::Receiver<u64>,
    life: watch::Receiver<u64>,
    deadline: Option<Instant>,
    pending: String,
    /// End once `pending` is sent.
    ending: bool,
}

impl WatchStream {
    /// Starts a watch from `from` (a resourceVersion; `0` means "the current state as
    /// ADDED events first", as does `send_initial`, which then ends those with a BOOKMARK).
    pub fn start(
        inner: Arc<Inner>,
        selection: Selection,
        from: &str,
        send_initial: bool,
        timeout_seconds: Option<u64>,
    ) -> Result<Self, String> {
        let life = inner.life.subscribe();
        let life_at_start = *life.borrow();
        let mut stream = WatchStream {
            changed: inner.changed.subscribe(),
            inner: inner.clone(),
            selection,
            cursor: 0,
            epoch: 0,
            life_at_start,
            life,
            deadline: timeout_seconds.map(|s| Instant::now() + Duration::from_secs(s)),
            pending: String::new(),
            ending: false,
        };
        let state = inner.lock();
        stream.epoch = state.expiry_epoch;
        if from == "0" || send_initial {
            let selection = &stream.selection;
            let current = state.select(
                &selection.api_version,
                selection.kind,
                selection.namespace.as_deref(),
                |object| selection.selects(object),
            );
            for (_, object) in current {
                stream.push("ADDED", &object);
            }
            if send_initial {
                stream.push_bookmark(state.rv);
            }
            stream.cursor = state.rv;
        } else {
            let rv = from
                .parse::<u64>()
                .map_err(|_| format!("invalid resourceVersion {from:?}"))?;
            if rv < state.compacted {
                stream.push_expired(rv, state.compacted);
            } else {
                stream.cursor = rv;
            }
        }
        drop(state);
        Ok(stream)
    }

    fn push_line(&mut self, line: &Value) {
        self.pending.push_str(&line.to_string());
        self.pending.push('\n');
    }

    fn push(&mut self, event_type: &str, object: &Value) {
        let object = if self.selection.metadata_only {
            partial(object)
        } else {
            object.clone()
        };
        self.push_line(&json!({"type": event_type, "object": object}));
    }

    /// The BOOKMARK that ends the initial events of a streaming list.
    fn push_bookmark(&mut self, rv: u64) {
        let (api_version, kind) = if self.selection.metadata_only {
            ("meta.k8s.io/v1".to_owned(), "PartialObjectMetadata")
        } else {
            (self.selection.api_version.clone(), self.selection.kind)
        };
        self.push_line(&json!({"type": "BOOKMARK", "object": {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "resourceVersion": rv.to_string(),
                "annotations": {"k8s.io/initial-events-end": "true"},
            },
        }}));
    }

    /// What a real API server sends a watch from a compacted resourceVersion, then ends.
    fn push_expired(&mut self, rv: u64, oldest: u64) {
        self.push_line(&json!({"type": "ERROR", "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {rv} ({oldest})"),
            "reason": "Expired",
            "code": 410,
        }}));
        self.ending = true;
    }

    /// How a change shows to this watch: objects entering the selection are ADDED,
    /// leaving it DELETED, as on a real server.
    fn event_type(&self, change: &Change) -> Option<&'static str> {
        let (api_version, kind, namespace, _) = &change.key;
        let selection = &self.selection;
        if *api_version != selection.api_version
            || kind != selection.kind
            || selection.namespace.as_ref().is_some_and(|n| n != namespace)
        {
            return None;
        }
        let now = selection.selects(&change.object);
        let before = change
            .previous
            .as_ref()
            .is_some_and(|p| selection.selects(p));
        match (change.change, before, now) {
            (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => Some("ADDED"),
            (ChangeType::Modified, true, true) => Some("MODIFIED"),
            (ChangeType::Modified, true, false) | (ChangeType::Deleted, _, true) => Some("DELETED"),
            _ => None,
        }
    }

    /// Queues the changes after the cursor, or a 410 when they are gone.
    fn catch_up(&mut self) {
        let inner = self.inner.clone();
        let caught_up = {
            let state = inner.lock();
            let result = match state.changes_after(self.cursor) {
                Some(changes) if state.expiry_epoch == self.epoch => {
                    let events: Vec<(&'static str, Value)> = changes
                        .filter_map(|change| {
                            Some((self.event_type(change)?, change.object.clone()))
                        })
                        .collect();
                    Ok((events, state.rv))
                }
                _ => Err(state.compacted),
            };
            result
        };
        match caught_up {
            Ok((events, rv)) => {
                self.cursor = self.cursor.max(rv);
                for (event_type, object) in events {
                    self.push(event_type, &object);
                }
            }
            Err(compacted) => self.push_expired(self.cursor, compacted),
        }
    }

    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if !self.pending.is_empty() {
                return Some(Bytes::from(std::mem::take(&mut self.pending)));
            }
            if self.ending || *self.life.borrow() != self.life_at_start {
                return None;
            }
            self.changed.borrow_and_update();
            self.catch_up();
            if !self.pending.is_empty() || self.ending {
                continue;
            }
            let deadline = self.deadline;
            tokio::select! {
                _ = self.changed.changed() => {}
                _ = self.life.changed() => {}
                () = sleep_until(deadline) => return None,
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A `follow=true` log: sends what is appended until the pod and its log are gone.
pub(super) struct LogStream {
    inner: Arc<Inner>,
    pod: Key,
    container: Option<String>,
    /// Bytes of the log already sent (or skipped by `tailLines`).
    sent: usize,
    pending: String,
    ending: bool,
    life_at_start: u64,
    changed: watch::Receiver<u64>,
    life: watch::Receiver<u64>,
}

impl LogStream {
    /// Follows a log of which `sent` bytes are already accounted for and `pending` is
    /// still to send.
    pub fn new(
        inner: Arc<Inner>,
        pod: Key,
        container: Option<String>,
        sent: usize,
        pending: String,
    ) -> Self {
        let life = inner.life.subscribe();
        let life_at_start = *life.borrow();
        Self {
            changed: inner.changed.subscribe(),
            inner,
            pod,
            container,
            sent,
            pending,
            ending: false,
            life_at_start,
            life,
        }
    }

    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if !self.pending.is_empty() {
                return Some(Bytes::from(std::mem::take(&mut self.pending)));
            }
            if self.ending || *self.life.borrow() != self.life_at_start {
                return None;
            }
            self.changed.borrow_and_update();
            {
                let state = self.inner.lock();
                let (_, _, namespace, pod) = &self.pod;
                let log = state
                    .log_for(namespace, pod, self.container.as_deref())
                    .and_then(|key| state.logs.get(&key));
                if let Some(text) = log {
                    let fresh = text.get(self.sent..).unwrap_or(text);
                    self.pending.push_str(fresh);
                    self.sent = text.len();
                }
                self.ending = log.is_none() && !state.objects.contains_key(&self.pod);
            }
            if !self.pending.is_empty() || self.ending {
                continue;
            }
            tokio::select! {
                _ = self.changed.changed() => {}
                _ = self.life.changed() => {}
            }
        }
    }
}
