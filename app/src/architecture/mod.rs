//! The pipeline's architecture as Slate sees it: a topology of workloads, services,
//! storage and configuration with their health, drawn as a diagram in swimlanes and
//! exported as SVG, Mermaid or ASCII. The server builds the topology from the cluster
//! (or from the `k8s/` manifests when there is none); everything here is pure data and
//! drawing, shared by the server render, the browser and the exports.

pub mod api;
pub mod diagram;
pub mod export;
pub mod layout;
pub mod pages;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use api::*;
pub use pages::ArchitecturePage;

/// Health, ordered best to worst (Argo CD's order): a group takes its worst member's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Suspended,
    Progressing,
    Missing,
    Degraded,
    Unknown,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Suspended => "Suspended",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
            Health::Unknown => "Unknown",
        }
    }

    /// A glyph so that colour is never the only signal.
    pub fn icon(self) -> &'static str {
        match self {
            Health::Healthy => "✓",
            Health::Suspended => "⏸",
            Health::Progressing => "↻",
            Health::Missing => "∅",
            Health::Degraded => "✕",
            Health::Unknown => "?",
        }
    }

    /// Fill, stroke and text colours, written into the SVG so exports look the same.
    pub fn colours(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Health::Healthy => ("#e7f6ec", "#2f8a4c", "#1d5c31"),
            Health::Suspended => ("#eef0f3", "#6b7280", "#374151"),
            Health::Progressing => ("#e6f0fb", "#2f6db5", "#1e4a7d"),
            Health::Missing => ("#fdf5e3", "#b7791f", "#7a4f0f"),
            Health::Degraded => ("#fdecec", "#c53030", "#8b1c1c"),
            Health::Unknown => ("#f3f0fa", "#7c5cbf", "#4c3680"),
        }
    }

    pub fn worst(items: impl IntoIterator<Item = Health>) -> Health {
        items.into_iter().max().unwrap_or(Health::Healthy)
    }
}

/// The swimlanes, top to bottom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Application,
    Processing,
    Data,
    Storage,
    External,
}

impl Layer {
    pub const ALL: [Layer; 5] = [
        Layer::Application,
        Layer::Processing,
        Layer::Data,
        Layer::Storage,
        Layer::External,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Layer::Application => "Application",
            Layer::Processing => "Processing",
            Layer::Data => "Data",
            Layer::Storage => "Storage",
            Layer::External => "External",
        }
    }

    pub fn parse(value: &str) -> Option<Layer> {
        match value.trim().to_ascii_lowercase().as_str() {
            "application" | "app" => Some(Layer::Application),
            "processing" => Some(Layer::Processing),
            "data" => Some(Layer::Data),
            "storage" => Some(Layer::Storage),
            "external" => Some(Layer::External),
            _ => None,
        }
    }
}

/// How two objects relate (see shared/reference/kubernetes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// ownerReferences (a workload owning another drawn object).
    Owns,
    /// A Service whose selector matches a workload's pods.
    Selects,
    /// An Ingress sending traffic to a Service.
    Routes,
    /// A workload mounting a PVC.
    Mounts,
    /// A workload reading a ConfigMap or Secret.
    Config,
    /// An environment value naming a Service (or the external endpoint) by address.
    Declared,
}

impl EdgeKind {
    pub const ALL: [EdgeKind; 6] = [
        EdgeKind::Owns,
        EdgeKind::Selects,
        EdgeKind::Routes,
        EdgeKind::Mounts,
        EdgeKind::Config,
        EdgeKind::Declared,
    ];

    pub fn label(self) -> &'static str {
        match self {
            EdgeKind::Owns => "owns",
            EdgeKind::Selects => "selects",
            EdgeKind::Routes => "routes",
            EdgeKind::Mounts => "mounts",
            EdgeKind::Config => "config",
            EdgeKind::Declared => "declared",
        }
    }

    /// Stroke colour and dash pattern (empty for solid).
    pub fn stroke(self) -> (&'static str, &'static str) {
        match self {
            EdgeKind::Owns => ("#4b5563", ""),
            EdgeKind::Selects => ("#2563eb", ""),
            EdgeKind::Routes => ("#0f766e", ""),
            EdgeKind::Mounts => ("#a16207", "2 3"),
            EdgeKind::Config => ("#7c3aed", "1 3"),
            EdgeKind::Declared => ("#6b7280", "6 4"),
        }
    }
}

/// One box in the diagram: a workload with its pods folded into counts, or a Service,
/// Ingress, PVC, ConfigMap, Secret, or the external endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopoNode {
    /// `Kind/name`, unique in the namespace.
    pub id: String,
    pub kind: String,
    pub name: String,
    pub layer: Layer,
    pub health: Health,
    /// Why the health is what it is, in plain words (empty when healthy).
    pub reason: Option<String>,
    /// Ready and desired replicas for workloads.
    pub ready: Option<i32>,
    pub desired: Option<i32>,
    /// Pods folded into this box.
    pub pods: u32,
    /// Requests or limits `nvidia.com/gpu`.
    pub gpu: bool,
    /// Container images (`repo:tag`).
    pub images: Vec<String>,
    /// Short facts shown under the name (e.g. "10Gi", "HPA 1–8", "ClusterIP").
    pub facts: Vec<String>,
}

impl TopoNode {
    /// The tag of the first image, what the box shows.
    pub fn image_tag(&self) -> Option<&str> {
        let image = self.images.first()?;
        let last = image.rsplit('/').next().unwrap_or(image);
        if let Some((_, digest)) = last.split_once('@') {
            return Some(&digest[..digest.len().min(19)]);
        }
        last.split_once(':').map(|(_, tag)| tag)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopoEdge {
    pub from: String,
    pub to: String,
    pub kind: EdgeKind,
}

/// Where the topology comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Source {
    /// Live from the cluster's API server.
    Live {
        /// Set while the API server cannot be reached; the state shown is the last known.
        unreachable_since: Option<DateTime<Utc>>,
        /// False until every watched kind has listed once.
        synced: bool,
        /// Kinds left out of the view, each with the reason (the API server does not
        /// serve it, or Slate may not read it); everything else is still live.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unwatched: Vec<Unwatched>,
    },
    /// Parsed from the `k8s/` manifests built into Slate: what should run, not what runs.
    Desired { why: String },
}

/// A kind the live view does not watch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unwatched {
    /// The resource's plural name, as the API server spells it (`horizontalpodautoscalers`).
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Increases with every published change.
    pub version: u64,
    pub namespace: String,
    pub source: Source,
    pub generated_at: DateTime<Utc>,
    /// How many objects the topology was built from (before folding).
    pub objects: usize,
    /// True when the namespace is large and Services and configuration are folded into
    /// the workloads that use them.
    #[serde(default)]
    pub folded: bool,
    /// Sorted by layer, then id.
    pub nodes: Vec<TopoNode>,
    /// Sorted, without duplicates.
    pub edges: Vec<TopoEdge>,
}

impl Topology {
    pub fn node(&self, id: &str) -> Option<&TopoNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn layer_health(&self, layer: Layer) -> Option<Health> {
        let members: Vec<Health> = self
            .nodes
            .iter()
            .filter(|n| n.layer == layer)
            .map(|n| n.health)
            .collect();
        (!members.is_empty()).then(|| Health::worst(members))
    }

    /// Counts of nodes by health, for the summary line.
    pub fn health_counts(&self) -> BTreeMap<Health, usize> {
        let mut counts = BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.health).or_insert(0) += 1;
        }
        counts
    }

    /// What changed from `self` to `next`, or None when nothing did.
    pub fn diff(&self, next: &Topology) -> Option<TopologyChange> {
        let old: BTreeMap<&str, &TopoNode> =
            self.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let new_ids: std::collections::BTreeSet<&str> =
            next.nodes.iter().map(|n| n.id.as_str()).collect();
        let upserted: Vec<TopoNode> = next
            .nodes
            .iter()
            .filter(|n| old.get(n.id.as_str()) != Some(n))
            .cloned()
            .collect();
        let removed: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| !new_ids.contains(n.id.as_str()))
            .map(|n| n.id.clone())
            .collect();
        let edges = (self.edges != next.edges).then(|| next.edges.clone());
        let source = (self.source != next.source).then(|| next.source.clone());
        if upserted.is_empty()
            && removed.is_empty()
            && edges.is_none()
            && source.is_none()
            && self.objects == next.objects
            && self.folded == next.folded
        {
            return None;
        }
        Some(TopologyChange {
            from_version: self.version,
            version: next.version,
            generated_at: next.generated_at,
            objects: next.objects,
            folded: next.folded,
            source,
            upserted,
            removed,
            edges,
        })
    }

    /// Applies a change made against this version. Returns false (and changes nothing)
    /// when the change does not follow this version: the caller should resynchronise.
    pub fn apply(&mut self, change: &TopologyChange) -> bool {
        if change.from_version != self.version {
            return false;
        }
        self.nodes.retain(|n| !change.removed.contains(&n.id));
        for node in &change.upserted {
            match self.nodes.iter_mut().find(|n| n.id == node.id) {
                Some(existing) => *existing = node.clone(),
                None => self.nodes.push(node.clone()),
            }
        }
        self.nodes
            .sort_by(|a, b| (a.layer, &a.id).cmp(&(b.layer, &b.id)));
        if let Some(edges) = &change.edges {
            self.edges = edges.clone();
        }
        if let Some(source) = &change.source {
            self.source = source.clone();
        }
        self.version = change.version;
        self.generated_at = change.generated_at;
        self.objects = change.objects;
        self.folded = change.folded;
        true
    }
}

/// One published change, sent to browsers over SSE after the first snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyChange {
    pub from_version: u64,
    pub version: u64,
    pub generated_at: DateTime<Utc>,
    pub objects: usize,
    #[serde(default)]
    pub folded: bool,
    pub source: Option<Source>,
    pub upserted: Vec<TopoNode>,
    pub removed: Vec<String>,
    /// The whole edge list when it changed (edges are small).
    pub edges: Option<Vec<TopoEdge>>,
}

/// Everything the side panel shows for one box.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    pub node: TopoNode,
    pub pods: Vec<PodRow>,
    pub conditions: Vec<ConditionRow>,
    pub events: Vec<EventRow>,
    pub containers: Vec<ContainerRow>,
    /// Related objects (the other end of every edge), as `(direction, kind, id)`.
    pub related: Vec<(String, EdgeKind, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodRow {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    pub node: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionRow {
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub at: Option<DateTime<Utc>>,
    pub kind: String,
    pub reason: String,
    pub object: String,
    pub message: String,
    pub count: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerRow {
    pub name: String,
    pub image: String,
    pub requests: String,
    pub limits: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, health: Health) -> TopoNode {
        TopoNode {
            id: id.into(),
            kind: "Deployment".into(),
            name: id.into(),
            layer: Layer::Application,
            health,
            reason: None,
            ready: Some(1),
            desired: Some(1),
            pods: 1,
            gpu: false,
            images: vec!["ghcr.io/x/slate:0.1.0".into()],
            facts: vec![],
        }
    }

    fn topo(version: u64, nodes: Vec<TopoNode>) -> Topology {
        Topology {
            version,
            namespace: "ai-film".into(),
            source: Source::Live {
                unreachable_since: None,
                synced: true,
                unwatched: Vec::new(),
            },
            generated_at: Utc::now(),
            objects: nodes.len(),
            folded: false,
            nodes,
            edges: vec![],
        }
    }

    #[test]
    fn health_orders_from_best_to_worst() {
        assert_eq!(
            Health::worst([Health::Healthy, Health::Degraded, Health::Progressing]),
            Health::Degraded
        );
        assert_eq!(
            Health::worst([Health::Unknown, Health::Degraded]),
            Health::Unknown
        );
        assert_eq!(Health::worst([]), Health::Healthy);
    }

    #[test]
    fn a_diff_applied_to_the_old_topology_gives_the_new_one() {
        let old = topo(
            1,
            vec![node("a", Health::Healthy), node("b", Health::Healthy)],
        );
        let mut new = topo(
            2,
            vec![node("a", Health::Degraded), node("c", Health::Healthy)],
        );
        new.edges.push(TopoEdge {
            from: "a".into(),
            to: "c".into(),
            kind: EdgeKind::Selects,
        });
        let change = old.diff(&new).expect("a change");
        assert_eq!(change.removed, vec!["b".to_owned()]);
        assert_eq!(change.upserted.len(), 2);
        let mut patched = old.clone();
        assert!(patched.apply(&change));
        assert_eq!(patched, new);
        // A change that does not follow the current version is refused.
        assert!(!patched.apply(&change));
        assert_eq!(patched, new);
        // No change, no diff.
        assert!(new.diff(&new.clone()).is_none());
    }

    #[test]
    fn image_tags_are_read_from_references() {
        let mut n = node("a", Health::Healthy);
        assert_eq!(n.image_tag(), Some("0.1.0"));
        n.images = vec!["localhost:5000/slate:1.2".into()];
        assert_eq!(n.image_tag(), Some("1.2"));
        n.images = vec!["registry:5000/slate".into()];
        assert_eq!(n.image_tag(), None);
    }
}
