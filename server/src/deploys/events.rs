//! `GET /api/lead/deploys/events`: tells open deploy pages to refresh. A `changed` event
//! follows any write to the history (PostgreSQL `NOTIFY deploy_changes`, from whichever
//! replica) and any change of a Deployment or StatefulSet (rollout status), gathered for
//! 250 ms. Changes of other kinds (Events, Pods) wake the stream but send nothing.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::broadcast;

use crate::cluster::objects::Objects;
use crate::cluster::Cluster;
use crate::notify::{Channel, Notifications};
use crate::tasks::Shutdown;

pub const PATH: &str = "/api/lead/deploys/events";
/// How long changes are gathered into one event.
pub const GATHER: Duration = Duration::from_millis(250);

pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Cluster: FromRef<S>,
    Notifications: FromRef<S>,
    Shutdown: FromRef<S>,
{
    Router::new().route(PATH, get(events))
}

/// What the rollout status is made of: every Deployment's and StatefulSet's name and
/// resourceVersion.
fn workloads(objects: &Objects) -> Vec<(String, String)> {
    let key = |m: &ObjectMeta| {
        (
            m.name.clone().unwrap_or_default(),
            m.resource_version.clone().unwrap_or_default(),
        )
    };
    objects
        .deployments
        .iter()
        .map(|d| key(&d.metadata))
        .chain(objects.statefulsets.iter().map(|s| key(&s.metadata)))
        .collect()
}

async fn events(
    State(cluster): State<Cluster>,
    State(notifications): State<Notifications>,
    State(shutdown): State<Shutdown>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let history = notifications.subscribe(Channel::DeployChanges);
    let feed = cluster.feed();
    let seen = workloads(&feed.borrow());
    let stream = futures::stream::unfold(
        (history, feed, seen),
        |(mut history, mut feed, mut seen)| async move {
            loop {
                // Whether the history changed (else a workload may have).
                let mut history_changed = tokio::select! {
                    r = history.recv() => match r {
                        Err(broadcast::error::RecvError::Closed) => return None,
                        _ => true,
                    },
                    r = feed.changed() => match r {
                        Ok(()) => false,
                        // Without a cluster the feed never changes: wait on the history.
                        Err(_) => match history.recv().await {
                            Err(broadcast::error::RecvError::Closed) => return None,
                            _ => true,
                        },
                    },
                };
                tokio::time::sleep(GATHER).await;
                while history.try_recv().is_ok() {
                    history_changed = true;
                }
                let now = workloads(&feed.borrow_and_update());
                if now == seen && !history_changed {
                    continue;
                }
                seen = now;
                let event = Event::default().event("changed").data("deploys");
                return Some((event, (history, feed, seen)));
            }
        },
    );
    crate::sse::respond(stream, &shutdown)
}
