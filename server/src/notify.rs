//! One `LISTEN` connection per process for every channel Slate uses (PostgreSQL `NOTIFY`
//! from any replica), its notifications fanned out to the subscribers of each channel.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;

/// The channels Slate notifies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// An asset or one of its versions changed (payload: the asset's id).
    AssetChanges,
    /// The deploy history changed.
    DeployChanges,
    /// A run, a stage, its progress or its log changed (payload: the run's id).
    RunChanges,
    /// A stage was queued (payload: its executor kind).
    StageQueued,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::AssetChanges,
        Channel::DeployChanges,
        Channel::RunChanges,
        Channel::StageQueued,
    ];

    /// The PostgreSQL channel's name.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::AssetChanges => "asset_changes",
            Channel::DeployChanges => "deploy_changes",
            Channel::RunChanges => "run_changes",
            Channel::StageQueued => "stage_queued",
        }
    }

    /// How many notifications a subscriber may fall behind before it misses some (and
    /// then sees `RecvError::Lagged`).
    const fn capacity(self) -> usize {
        match self {
            Channel::RunChanges => 1024,
            _ => 256,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The fan-out: cheap to clone; `listen` is the task that feeds it.
#[derive(Clone, Debug)]
pub struct Notifications {
    senders: [broadcast::Sender<String>; 4],
}

impl Default for Notifications {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifications {
    pub fn new() -> Self {
        Self {
            senders: Channel::ALL.map(|c| broadcast::channel(c.capacity()).0),
        }
    }

    /// The payloads of `channel`'s notifications from now on. Notifications sent while
    /// the connection was down are not seen.
    pub fn subscribe(&self, channel: Channel) -> broadcast::Receiver<String> {
        self.senders[channel.index()].subscribe()
    }

    /// Hands a payload to `channel`'s subscribers as if it had been notified.
    pub fn publish(&self, channel: Channel, payload: String) {
        let _ = self.senders[channel.index()].send(payload);
    }

    /// Listens on every channel and forwards what arrives, reconnecting with backoff
    /// (1 s doubling to 30 s) whenever the connection fails. Never returns.
    pub async fn listen(self, pool: PgPool) {
        let names = Channel::ALL.map(Channel::name);
        let mut delay = Duration::from_secs(1);
        loop {
            match PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen_all(names).await {
                    Ok(()) => {
                        delay = Duration::from_secs(1);
                        while let Ok(n) = listener.recv().await {
                            if let Some(c) = Channel::ALL.iter().find(|c| c.name() == n.channel()) {
                                self.publish(*c, n.payload().to_owned());
                            }
                        }
                    }
                    Err(err) => tracing::debug!(error = %err, "change listener cannot listen"),
                },
                Err(err) => tracing::debug!(error = %err, "change listener cannot connect"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_reaches_only_its_subscribers() {
        let n = Notifications::new();
        let mut runs = n.subscribe(Channel::RunChanges);
        let mut queued = n.subscribe(Channel::StageQueued);
        n.publish(Channel::RunChanges, "r1".into());
        assert_eq!(runs.try_recv().ok().as_deref(), Some("r1"));
        assert!(queued.try_recv().is_err());
        for (i, c) in Channel::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
