//! Publishes the topology: the current one for new readers and page renders, and each
//! change (serialised once) for every open event stream, with a short history so that a
//! browser reconnecting with `Last-Event-ID` gets only what it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use app::architecture::{Topology, TopologyChange};
use tokio::sync::broadcast;

/// Changes kept for resuming streams.
const HISTORY: usize = 256;

/// One change as sent to browsers: its version and its JSON.
#[derive(Debug)]
pub struct Published {
    pub from_version: u64,
    pub version: u64,
    pub json: String,
}

/// What a new event stream starts with.
pub enum Start {
    /// The whole topology (first connection, or too far behind).
    Snapshot(Arc<Topology>, String),
    /// The changes since the stream's last event, oldest first (possibly none).
    Resume(Vec<Arc<Published>>),
}

struct State {
    current: Arc<Topology>,
    current_json: String,
    history: VecDeque<Arc<Published>>,
}

pub struct Hub {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Published>>,
}

impl Hub {
    pub fn new(mut first: Topology) -> Hub {
        first.version = first.version.max(1);
        let current_json = serde_json::to_string(&first).unwrap_or_default();
        Hub {
            state: Mutex::new(State {
                current: Arc::new(first),
                current_json,
                history: VecDeque::new(),
            }),
            changes: broadcast::channel(1024).0,
        }
    }

    pub fn current(&self) -> Arc<Topology> {
        self.lock().current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `next` if it differs from the current topology. Returns the change.
    pub fn publish(&self, mut next: Topology) -> Option<Arc<Published>> {
        let mut state = self.lock();
        next.version = state.current.version + 1;
        let change: TopologyChange = state.current.diff(&next)?;
        let published = Arc::new(Published {
            from_version: change.from_version,
            version: change.version,
            json: serde_json::to_string(&change).unwrap_or_default(),
        });
        state.current_json = serde_json::to_string(&next).unwrap_or_default();
        state.current = Arc::new(next);
        state.history.push_back(published.clone());
        while state.history.len() > HISTORY {
            state.history.pop_front();
        }
        // Sent under the lock, so a subscriber sees either the old snapshot and this
        // change, or the new snapshot and not this change.
        let _ = self.changes.send(published.clone());
        Some(published)
    }

    /// Starts a stream: what to send first, and the receiver of later changes.
    pub fn subscribe(
        &self,
        last_event_id: Option<u64>,
    ) -> (Start, broadcast::Receiver<Arc<Published>>) {
        let state = self.lock();
        let rx = self.changes.subscribe();
        let start = match last_event_id {
            Some(seen) if seen == state.current.version => Start::Resume(vec![]),
            Some(seen)
                if seen < state.current.version
                    && state
                        .history
                        .front()
                        .is_some_and(|c| c.from_version <= seen) =>
            {
                Start::Resume(
                    state
                        .history
                        .iter()
                        .filter(|c| c.from_version >= seen)
                        .cloned()
                        .collect(),
                )
            }
            _ => Start::Snapshot(state.current.clone(), state.current_json.clone()),
        };
        (start, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::architecture::{Health, Layer, Source, TopoNode};

    fn topo(health: Health) -> Topology {
        Topology {
            version: 0,
            namespace: "ai-film".into(),
            source: Source::Live {
                unreachable_since: None,
                synced: true,
                unwatched: Vec::new(),
            },
            generated_at: chrono::Utc::now(),
            objects: 1,
            folded: false,
            nodes: vec![TopoNode {
                id: "Deployment/a".into(),
                kind: "Deployment".into(),
                name: "a".into(),
                layer: Layer::Application,
                health,
                reason: None,
                ready: None,
                desired: None,
                pods: 0,
                gpu: false,
                images: vec![],
                facts: vec![],
            }],
            edges: vec![],
        }
    }

    #[test]
    fn streams_resume_from_their_last_event_or_start_over() {
        let hub = Hub::new(topo(Health::Healthy));
        assert_eq!(hub.current().version, 1);
        assert!(
            hub.publish(topo(Health::Healthy)).is_none(),
            "no change, nothing published"
        );
        let (start, mut rx) = hub.subscribe(None);
        assert!(matches!(start, Start::Snapshot(t, _) if t.version == 1));
        let c = hub.publish(topo(Health::Degraded)).expect("a change");
        assert_eq!((c.from_version, c.version), (1, 2));
        assert_eq!(rx.try_recv().unwrap().version, 2);
        hub.publish(topo(Health::Healthy)).expect("a change");

        match hub.subscribe(Some(1)).0 {
            Start::Resume(missed) => {
                assert_eq!(missed.iter().map(|c| c.version).collect::<Vec<_>>(), [2, 3])
            }
            Start::Snapshot(..) => panic!("should resume"),
        }
        assert!(matches!(hub.subscribe(Some(3)).0, Start::Resume(m) if m.is_empty()));
        // From the future, or from before the history: a snapshot.
        assert!(matches!(hub.subscribe(Some(99)).0, Start::Snapshot(..)));
        for _ in 0..HISTORY + 2 {
            hub.publish(topo(Health::Degraded));
            hub.publish(topo(Health::Healthy));
        }
        assert!(matches!(hub.subscribe(Some(2)).0, Start::Snapshot(..)));
    }
}
