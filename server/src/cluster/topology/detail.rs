//! The detail of one box: its pods, conditions, events and containers.

use std::collections::BTreeSet;

use app::architecture::{
    ConditionRow, ContainerRow, EventRow, NodeDetail, PodRow, Source, Topology,
};
use app::error::AppError;
use chrono::{DateTime, Utc};
use kube::ResourceExt as _;

use super::spec::{containers, quantity_text};
use super::workloads::workloads;
use crate::cluster::health;
use crate::cluster::objects::Objects;

/// The `type`, `status`, `reason` and `message` of any kind's conditions.
pub(super) fn condition_rows<T: serde::Serialize>(
    conditions: &Option<Vec<T>>,
) -> Option<Vec<ConditionRow>> {
    let value = serde_json::to_value(conditions.as_ref()?).ok()?;
    let text = |c: &serde_json::Value, k: &str| c[k].as_str().map(str::to_owned);
    Some(
        value
            .as_array()?
            .iter()
            .map(|c| ConditionRow {
                kind: text(c, "type").unwrap_or_default(),
                status: text(c, "status").unwrap_or_default(),
                reason: text(c, "reason"),
                message: text(c, "message"),
            })
            .collect(),
    )
}

/// Pods, conditions, events and containers of the box `id`.
pub fn detail(objects: &Objects, topology: &Topology, id: &str) -> Result<NodeDetail, AppError> {
    let node = topology
        .node(id)
        .cloned()
        .ok_or_else(|| AppError::NotFound(format!("Nothing called {id} in the diagram.")))?;
    let live = matches!(topology.source, Source::Live { .. });
    let workloads = workloads(objects, live);
    let workload = workloads.iter().find(|w| w.id == id);

    let mut pods: Vec<PodRow> = workload
        .map(|w| {
            w.pods
                .iter()
                .map(|p| PodRow {
                    name: p.name_any(),
                    phase: p
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_else(|| "Unknown".into()),
                    ready: health::pod_ready(p),
                    restarts: health::restarts(p),
                    node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                    reason: health::pod(p).1,
                })
                .collect()
        })
        .unwrap_or_default();
    pods.sort_by(|a, b| a.name.cmp(&b.name));

    let (kind, name) = id.split_once('/').unwrap_or(("", id));
    // Every kind's conditions have the same four fields; read them through JSON rather
    // than once per type.
    let conditions: Vec<ConditionRow> = match kind {
        "Deployment" => objects
            .deployments
            .iter()
            .find(|d| d.name_any() == name)
            .and_then(|d| condition_rows(&d.status.as_ref()?.conditions)),
        "StatefulSet" => objects
            .statefulsets
            .iter()
            .find(|d| d.name_any() == name)
            .and_then(|d| condition_rows(&d.status.as_ref()?.conditions)),
        "Job" => workload
            .and_then(|w| {
                objects
                    .jobs
                    .iter()
                    .find(|j| Some(&j.metadata) == Some(w.meta))
            })
            .and_then(|j| condition_rows(&j.status.as_ref()?.conditions)),
        "PersistentVolumeClaim" => objects
            .pvcs
            .iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| condition_rows(&p.status.as_ref()?.conditions)),
        _ => None,
    }
    .unwrap_or_default();

    // Events about the object itself, its ReplicaSets / Jobs, or its pods.
    let mut about: BTreeSet<String> = workload.map(|w| w.uids.clone()).unwrap_or_default();
    if let Some(w) = workload {
        about.extend(w.pods.iter().filter_map(|p| p.metadata.uid.clone()));
    }
    let pod_names: BTreeSet<String> = workload
        .map(|w| w.pods.iter().map(|p| p.name_any()).collect())
        .unwrap_or_default();
    let mut events: Vec<EventRow> = objects
        .events
        .iter()
        .filter(|e| {
            let io = &e.involved_object;
            io.uid.as_ref().is_some_and(|u| about.contains(u))
                || (io.kind.as_deref() == Some(kind) && io.name.as_deref() == Some(name))
                || (io.kind.as_deref() == Some("Pod")
                    && io.name.as_ref().is_some_and(|n| pod_names.contains(n)))
        })
        .map(|e| EventRow {
            at: e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.as_second(), 0)),
            kind: e.type_.clone().unwrap_or_else(|| "Normal".into()),
            reason: e.reason.clone().unwrap_or_default(),
            object: format!(
                "{}/{}",
                e.involved_object.kind.clone().unwrap_or_default(),
                e.involved_object.name.clone().unwrap_or_default()
            ),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
        })
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    events.truncate(20);

    let containers = workload
        .and_then(|w| w.template)
        .and_then(|t| t.spec.as_ref())
        .map(|spec| {
            containers(spec)
                .map(|c| ContainerRow {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    requests: quantity_text(c.resources.as_ref().and_then(|r| r.requests.as_ref())),
                    limits: quantity_text(c.resources.as_ref().and_then(|r| r.limits.as_ref())),
                })
                .collect()
        })
        .unwrap_or_default();

    let related = topology
        .edges
        .iter()
        .filter_map(|e| {
            if e.from == id {
                Some(("→".to_owned(), e.kind, e.to.clone()))
            } else if e.to == id {
                Some(("←".to_owned(), e.kind, e.from.clone()))
            } else {
                None
            }
        })
        .collect();

    Ok(NodeDetail {
        node,
        pods,
        conditions,
        events,
        containers,
        related,
    })
}
