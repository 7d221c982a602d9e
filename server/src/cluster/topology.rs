//! From objects to the topology the diagram draws: one box per workload (its ReplicaSets
//! and pods folded into counts, Jobs grouped by app), Service, Ingress, PVC and the
//! ConfigMaps and Secrets that something uses, plus the external Colab endpoint; edges
//! as shared/reference/kubernetes.md defines them; health per box as the worst of the
//! object and its pods.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use app::architecture::{
    ConditionRow, ContainerRow, EdgeKind, EventRow, Health, Layer, NodeDetail, PodRow, Source,
    TopoEdge, TopoNode, Topology,
};
use app::error::AppError;
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;

use super::health::{self, Verdict};
use super::objects::Objects;

pub const LAYER_LABEL: &str = "slate.dev/layer";
pub const EXTERNAL_ID: &str = "External/comfyui-colab";
/// The Secret Slate publishes the Colab endpoint into (see the Colab issue).
pub const ENDPOINT_SECRET: &str = "comfyui-endpoint";
pub const CONSUMER_LABEL: &str = "slate.dev/comfyui-consumer";

/// What Slate knows of the external ComfyUI endpoint (from its own probe).
#[derive(Clone, Debug, PartialEq)]
pub struct External {
    pub health: Health,
    pub reason: Option<String>,
    pub facts: Vec<String>,
}

impl Default for External {
    fn default() -> Self {
        External {
            health: Health::Unknown,
            reason: Some("No endpoint reported by the Colab notebook yet".into()),
            facts: vec!["Colab GPU · Cloudflare tunnel".into()],
        }
    }
}

/// One drawn workload with what the builder needs about it.
struct Workload<'a> {
    id: String,
    kind: &'static str,
    name: String,
    meta: &'a ObjectMeta,
    template: Option<&'a PodTemplateSpec>,
    verdict: Verdict,
    desired: Option<i32>,
    ready: Option<i32>,
    pods: Vec<&'a Pod>,
    facts: Vec<String>,
    /// UIDs whose pods fold into this box (the workload, its ReplicaSets, its Jobs).
    uids: BTreeSet<String>,
}

fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

fn wants_gpu(spec: &PodSpec) -> bool {
    containers(spec).any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            [&r.limits, &r.requests]
                .into_iter()
                .flatten()
                .any(|m| m.keys().any(|k| k.ends_with("/gpu")))
        })
    })
}

fn images(spec: &PodSpec) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &spec.containers {
        if let Some(i) = &c.image {
            if !out.contains(i) {
                out.push(i.clone());
            }
        }
    }
    out
}

/// The layer of a workload: its label, else a guess from its name and images.
fn workload_layer(meta: &ObjectMeta, spec: Option<&PodSpec>) -> Layer {
    if let Some(l) = labels(meta).get(LAYER_LABEL).and_then(|v| Layer::parse(v)) {
        return l;
    }
    let mut words = meta.name.clone().unwrap_or_default();
    if let Some(spec) = spec {
        for i in images(spec) {
            words.push(' ');
            words.push_str(&i);
        }
        if wants_gpu(spec) {
            return Layer::Processing;
        }
    }
    let words = words.to_ascii_lowercase();
    let any = |list: &[&str]| list.iter().any(|w| words.contains(w));
    if any(&[
        "postgres",
        "mysql",
        "mariadb",
        "redis",
        "mongo",
        "minio",
        "kafka",
        "rabbitmq",
        "elasticsearch",
        "etcd",
        "valkey",
        "memcached",
    ]) {
        Layer::Data
    } else if any(&[
        "comfy",
        "blender",
        "ffmpeg",
        "opencv",
        "render",
        "diffusion",
        "whisper",
        "encode",
        "transcode",
    ]) {
        Layer::Processing
    } else {
        Layer::Application
    }
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Every ConfigMap and Secret a pod spec reads, as `(kind, name)`.
fn config_refs(spec: &PodSpec) -> BTreeSet<(&'static str, String)> {
    let mut out = BTreeSet::new();
    for c in containers(spec) {
        for from in c.env_from.iter().flatten() {
            if let Some(cm) = &from.config_map_ref {
                out.insert(("ConfigMap", cm.name.clone()));
            }
            if let Some(s) = &from.secret_ref {
                out.insert(("Secret", s.name.clone()));
            }
        }
        for env in c.env.iter().flatten() {
            if let Some(v) = &env.value_from {
                if let Some(cm) = &v.config_map_key_ref {
                    out.insert(("ConfigMap", cm.name.clone()));
                }
                if let Some(s) = &v.secret_key_ref {
                    out.insert(("Secret", s.name.clone()));
                }
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            out.insert(("ConfigMap", cm.name.clone()));
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            out.insert(("Secret", s));
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                out.insert(("ConfigMap", cm.name.clone()));
            }
            if let Some(s) = &source.secret {
                out.insert(("Secret", s.name.clone()));
            }
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        out.insert(("Secret", s.name.clone()));
    }
    out
}

fn claims(spec: &PodSpec) -> BTreeSet<String> {
    spec.volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect()
}

/// Whether an environment value names `service` by a cluster DNS name.
fn names_service(value: &str, service: &str, namespace: &str) -> bool {
    value
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .map(|t| t.trim_end_matches('.'))
        .any(|token| {
            token == service
                || token
                    .strip_prefix(service)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|rest| {
                        rest == namespace
                            || rest
                                .strip_prefix(namespace)
                                .is_some_and(|r| r == ".svc" || r == ".svc.cluster.local")
                    })
        })
}

fn plain_values(spec: &PodSpec) -> Vec<&str> {
    containers(spec)
        .flat_map(|c| {
            c.env
                .iter()
                .flatten()
                .filter_map(|e| e.value.as_deref())
                .chain(c.args.iter().flatten().map(String::as_str))
                .chain(c.command.iter().flatten().map(String::as_str))
        })
        .collect()
}

fn quantity_text(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> String {
    match map {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k} {}", v.0))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "—".to_owned(),
    }
}

/// The topology of `objects`. `live` false means the objects are the desired state, so
/// statuses are absent and health is not judged.
pub fn build(
    objects: &Objects,
    namespace: &str,
    source: Source,
    external: &External,
    generated_at: DateTime<Utc>,
) -> Topology {
    let live = matches!(source, Source::Live { .. });
    let workloads = workloads(objects, live);
    let mut nodes: Vec<TopoNode> = Vec::new();
    let mut edges: BTreeSet<TopoEdge> = BTreeSet::new();
    let edge = |from: &str, to: &str, kind| TopoEdge {
        from: from.to_owned(),
        to: to.to_owned(),
        kind,
    };

    // Workloads.
    let mut layer_of: HashMap<String, Layer> = HashMap::new();
    for w in &workloads {
        let spec = w.template.and_then(|t| t.spec.as_ref());
        let layer = workload_layer(w.meta, spec);
        layer_of.insert(w.id.clone(), layer);
        let (health, reason) = if live {
            let worst_pod = w
                .pods
                .iter()
                .map(|p| health::pod(p))
                .max_by_key(|(h, _)| *h);
            match worst_pod {
                Some((h, r)) if h > w.verdict.0 => (h, r),
                _ => w.verdict.clone(),
            }
        } else {
            (Health::Unknown, None)
        };
        nodes.push(TopoNode {
            id: w.id.clone(),
            kind: w.kind.to_owned(),
            name: w.name.clone(),
            layer,
            health,
            reason,
            ready: if live { w.ready } else { None },
            desired: w.desired,
            pods: w.pods.len() as u32,
            gpu: spec.is_some_and(wants_gpu),
            images: spec.map(images).unwrap_or_default(),
            facts: w.facts.clone(),
        });
    }

    // Services select workloads.
    for s in &objects.services {
        let id = format!("Service/{}", s.name_any());
        let selector = s
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let mut selected_layer = None;
        for w in &workloads {
            let template_labels = w
                .template
                .and_then(|t| t.metadata.as_ref())
                .map(labels)
                .unwrap_or_else(|| labels(w.meta));
            if selector_matches(&selector, template_labels) {
                edges.insert(edge(&id, &w.id, EdgeKind::Selects));
                selected_layer = selected_layer.or_else(|| layer_of.get(&w.id).copied());
            }
        }
        let layer = labels(&s.metadata)
            .get(LAYER_LABEL)
            .and_then(|v| Layer::parse(v))
            .or(selected_layer)
            .unwrap_or(Layer::Application);
        let spec = s.spec.clone().unwrap_or_default();
        let mut fact = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
        if spec.cluster_ip.as_deref() == Some("None") {
            fact = "headless".into();
        }
        let ports: Vec<String> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| format!(":{}", p.port))
            .collect();
        if !ports.is_empty() {
            fact.push(' ');
            fact.push_str(&ports.join(" "));
        }
        let (health, reason) = if live {
            health::service(s)
        } else {
            (Health::Unknown, None)
        };
        layer_of.insert(id.clone(), layer);
        nodes.push(TopoNode {
            id,
            kind: "Service".into(),
            name: s.name_any(),
            layer,
            health,
            reason,
            ready: None,
            desired: None,
            pods: 0,
            gpu: false,
            images: vec![],
            facts: vec![fact],
        });
    }

    // Ingresses route to Services.
    let service_names: BTreeSet<String> = objects.services.iter().map(|s| s.name_any()).collect();
    for i in &objects.ingresses {
        let id = format!("Ingress/{}", i.name_any());
        let spec = i.spec.clone().unwrap_or_default();
        let mut backends: BTreeSet<String> = BTreeSet::new();
        if let Some(s) = spec
            .default_backend
            .as_ref()
            .and_then(|b| b.service.as_ref())
        {
            backends.insert(s.name.clone());
        }
        for rule in spec.rules.iter().flatten() {
            for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                if let Some(s) = &path.backend.service {
                    backends.insert(s.name.clone());
                }
            }
        }
        for b in backends {
            edges.insert(edge(&id, &format!("Service/{b}"), EdgeKind::Routes));
            if !service_names.contains(&b) {
                edges.remove(&edge(&id, &format!("Service/{b}"), EdgeKind::Routes));
            }
        }
        let hosts: Vec<String> = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.host.clone())
            .collect();
        let (health, reason) = if live {
            health::ingress(i)
        } else {
            (Health::Unknown, None)
        };
        nodes.push(TopoNode {
            id,
            kind: "Ingress".into(),
            name: i.name_any(),
            layer: labels(&i.metadata)
                .get(LAYER_LABEL)
                .and_then(|v| Layer::parse(v))
                .unwrap_or(Layer::Application),
            health,
            reason,
            ready: None,
            desired: None,
            pods: 0,
            gpu: false,
            images: vec![],
            facts: hosts,
        });
    }

    // PVCs, and who mounts them.
    let mut pvc_names = BTreeSet::new();
    for p in &objects.pvcs {
        let id = format!("PersistentVolumeClaim/{}", p.name_any());
        pvc_names.insert(p.name_any());
        let spec = p.spec.clone().unwrap_or_default();
        let size = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default();
        let modes = spec
            .access_modes
            .unwrap_or_default()
            .iter()
            .map(|m| match m.as_str() {
                "ReadWriteOnce" => "RWO",
                "ReadWriteMany" => "RWX",
                "ReadOnlyMany" => "ROX",
                "ReadWriteOncePod" => "RWOP",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut facts = vec![format!("{size} {modes}").trim().to_owned()];
        if let Some(class) = spec.storage_class_name {
            facts.push(class);
        }
        let (health, reason) = if live {
            health::pvc(p)
        } else {
            (Health::Unknown, None)
        };
        nodes.push(TopoNode {
            id,
            kind: "PersistentVolumeClaim".into(),
            name: p.name_any(),
            layer: Layer::Storage,
            health,
            reason,
            ready: None,
            desired: None,
            pods: 0,
            gpu: false,
            images: vec![],
            facts,
        });
    }

    // Mounts, configuration and declared (DNS) edges from each workload.
    let mut config_users: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
    let mut external_users: Vec<String> = Vec::new();
    for w in &workloads {
        let Some(spec) = w.template.and_then(|t| t.spec.as_ref()) else {
            continue;
        };
        for claim in claims(spec) {
            if pvc_names.contains(&claim) {
                edges.insert(edge(
                    &w.id,
                    &format!("PersistentVolumeClaim/{claim}"),
                    EdgeKind::Mounts,
                ));
            }
        }
        for reference in config_refs(spec) {
            if reference == ("Secret", ENDPOINT_SECRET.to_owned()) {
                external_users.push(w.id.clone());
            }
            config_users
                .entry(reference)
                .or_default()
                .push(w.id.clone());
        }
        let values = plain_values(spec);
        if values.iter().any(|v| v.contains("trycloudflare.com")) {
            external_users.push(w.id.clone());
        }
        for s in &objects.services {
            let sid = format!("Service/{}", s.name_any());
            if edges.contains(&edge(&sid, &w.id, EdgeKind::Selects)) {
                continue;
            }
            if values
                .iter()
                .any(|v| names_service(v, &s.name_any(), namespace))
            {
                edges.insert(edge(&w.id, &sid, EdgeKind::Declared));
            }
        }
        if labels(w.meta).get(CONSUMER_LABEL).map(String::as_str) == Some("true") {
            external_users.push(w.id.clone());
        }
    }

    // ConfigMaps and Secrets: drawn when something reads them or they are labelled part
    // of the pipeline; a reference to one that does not exist is drawn as Missing.
    let part_of = |meta: &ObjectMeta| labels(meta).contains_key("app.kubernetes.io/part-of");
    let mut config_nodes: BTreeMap<(&'static str, String), (Option<&ObjectMeta>, String)> =
        BTreeMap::new();
    for cm in &objects.configmaps {
        let keys = cm.data.as_ref().map_or(0, BTreeMap::len)
            + cm.binary_data.as_ref().map_or(0, BTreeMap::len);
        config_nodes.insert(
            ("ConfigMap", cm.name_any()),
            (Some(&cm.metadata), format!("{keys} keys")),
        );
    }
    for s in &objects.secrets {
        config_nodes.insert(
            ("Secret", s.metadata.name.clone().unwrap_or_default()),
            (Some(&s.metadata), "values not read".into()),
        );
    }
    for reference in config_users.keys() {
        config_nodes
            .entry(reference.clone())
            .or_insert((None, String::new()));
    }
    for ((kind, name), (meta, fact)) in config_nodes {
        let users = config_users.get(&(kind, name.clone()));
        if users.is_none() && !meta.is_some_and(part_of) {
            continue;
        }
        let id = format!("{kind}/{name}");
        for user in users.into_iter().flatten() {
            edges.insert(edge(user, &id, EdgeKind::Config));
        }
        let layer = meta
            .and_then(|m| labels(m).get(LAYER_LABEL))
            .and_then(|v| Layer::parse(v))
            .or_else(|| {
                users
                    .and_then(|u| u.first())
                    .and_then(|u| layer_of.get(u).copied())
            })
            .unwrap_or(Layer::Data);
        let (health, reason, fact) = match (meta, live) {
            (Some(_), true) => (Health::Healthy, None, fact),
            (Some(_), false) => (Health::Unknown, None, fact),
            (None, true) => (
                Health::Missing,
                Some("Referenced but not in the namespace".to_owned()),
                String::new(),
            ),
            (None, false) => (
                Health::Unknown,
                Some(if name == ENDPOINT_SECRET {
                    "Written by Slate when the Colab endpoint changes".to_owned()
                } else {
                    "Created by hand, not in the manifests (see k8s/README.md)".to_owned()
                }),
                "not in the manifests".into(),
            ),
        };
        nodes.push(TopoNode {
            id,
            kind: kind.to_owned(),
            name,
            layer,
            health,
            reason,
            ready: None,
            desired: None,
            pods: 0,
            gpu: false,
            images: vec![],
            facts: if fact.is_empty() { vec![] } else { vec![fact] },
        });
    }

    // The external ComfyUI on Colab, behind its tunnel.
    nodes.push(TopoNode {
        id: EXTERNAL_ID.into(),
        kind: "External".into(),
        name: "ComfyUI on Colab".into(),
        layer: Layer::External,
        health: external.health,
        reason: external.reason.clone(),
        ready: None,
        desired: None,
        pods: 0,
        gpu: true,
        images: vec![],
        facts: external.facts.clone(),
    });
    external_users.sort();
    external_users.dedup();
    for user in external_users {
        edges.insert(edge(&user, EXTERNAL_ID, EdgeKind::Declared));
    }

    // Ownership between drawn objects (e.g. a Job owned by a drawn workload).
    let uid_to_id: HashMap<&str, &str> = workloads
        .iter()
        .filter_map(|w| w.meta.uid.as_deref().map(|u| (u, w.id.as_str())))
        .collect();
    for w in &workloads {
        if let Some(owner) = controller_uid(w.meta).and_then(|u| uid_to_id.get(u)) {
            if *owner != w.id {
                edges.insert(edge(owner, &w.id, EdgeKind::Owns));
            }
        }
    }

    let folded = nodes.len() > FOLD_ABOVE;
    if folded {
        fold(&mut nodes, &mut edges);
    }
    nodes.sort_by(|a, b| (a.layer, &a.id).cmp(&(b.layer, &b.id)));
    let ids: BTreeSet<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let edges: Vec<TopoEdge> = edges
        .into_iter()
        .filter(|e| ids.contains(e.from.as_str()) && ids.contains(e.to.as_str()))
        .collect();
    Topology {
        version: 0,
        namespace: namespace.to_owned(),
        source,
        generated_at,
        objects: objects.len(),
        folded,
        nodes,
        edges,
    }
}

/// Above this many boxes, configuration and single-workload Services are folded into
/// the workloads that use them, so that a large namespace stays readable.
pub const FOLD_ABOVE: usize = 80;

fn fold(nodes: &mut Vec<TopoNode>, edges: &mut BTreeSet<TopoEdge>) {
    let by_id: HashMap<String, TopoNode> =
        nodes.iter().map(|n| (n.id.clone(), n.clone())).collect();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let mut facts: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    // Existing ConfigMaps and Secrets become counts on their readers (missing ones stay
    // drawn: they are a problem to see).
    for n in by_id.values() {
        if (n.kind == "ConfigMap" || n.kind == "Secret") && n.health != Health::Missing {
            let readers: Vec<&TopoEdge> = edges
                .iter()
                .filter(|e| e.kind == EdgeKind::Config && e.to == n.id)
                .collect();
            if readers.is_empty() {
                continue;
            }
            for e in readers {
                let label = if n.kind == "Secret" {
                    "Secrets"
                } else {
                    "ConfigMaps"
                };
                *facts
                    .entry(e.from.clone())
                    .or_default()
                    .entry(label)
                    .or_default() += 1;
            }
            gone.insert(n.id.clone());
        }
    }
    // A healthy Service in front of exactly one workload folds into it.
    let mut moved: HashMap<String, String> = HashMap::new();
    for n in by_id
        .values()
        .filter(|n| n.kind == "Service" && n.health == Health::Healthy)
    {
        let selected: Vec<&TopoEdge> = edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Selects && e.from == n.id)
            .collect();
        if let [only] = selected.as_slice() {
            moved.insert(n.id.clone(), only.to.clone());
            *facts
                .entry(only.to.clone())
                .or_default()
                .entry("Service")
                .or_default() += 1;
            gone.insert(n.id.clone());
        }
    }
    let old = std::mem::take(edges);
    for mut e in old {
        if gone.contains(&e.from) && !moved.contains_key(&e.from) {
            continue;
        }
        if let Some(w) = moved.get(&e.to) {
            e.to = w.clone();
        }
        if let Some(w) = moved.get(&e.from) {
            if e.kind == EdgeKind::Selects {
                continue;
            }
            e.from = w.clone();
        }
        if gone.contains(&e.to) || e.from == e.to {
            continue;
        }
        edges.insert(e);
    }
    nodes.retain(|n| !gone.contains(&n.id));
    for n in nodes.iter_mut() {
        if let Some(counts) = facts.get(&n.id) {
            let text = counts
                .iter()
                .map(|(label, count)| match (*label, count) {
                    ("Service", _) => "Service".to_owned(),
                    (label, 1) => format!("1 {}", label.trim_end_matches('s')),
                    (label, c) => format!("{c} {label}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            n.facts.push(format!("+ {text}"));
        }
    }
}

/// The drawn workloads: Deployments, StatefulSets, Jobs grouped by app, and the
/// ReplicaSets and pods that nothing drawn owns.
fn workloads(o: &Objects, live: bool) -> Vec<Workload<'_>> {
    let rs_owner: HashMap<&str, &str> = o
        .replicasets
        .iter()
        .filter_map(|rs| Some((rs.metadata.uid.as_deref()?, controller_uid(&rs.metadata)?)))
        .collect();
    let mut pods_by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    let mut orphan_pods = Vec::new();
    for p in &o.pods {
        match controller_uid(&p.metadata) {
            Some(owner) => {
                let top = rs_owner.get(owner).copied().unwrap_or(owner);
                pods_by_owner.entry(top).or_default().push(p);
            }
            None => orphan_pods.push(p.as_ref()),
        }
    }
    let pods_of = |meta: &ObjectMeta| -> Vec<&Pod> {
        meta.uid
            .as_deref()
            .and_then(|u| pods_by_owner.get(u).cloned())
            .unwrap_or_default()
    };
    let hpa_fact = |kind: &str, name: &str| -> Option<String> {
        o.hpas
            .iter()
            .find(|h| h.spec.scale_target_ref.kind == kind && h.spec.scale_target_ref.name == name)
            .map(|h| &h.spec)
            .map(|s| {
                format!(
                    "autoscaled {}–{}",
                    s.min_replicas.unwrap_or(1),
                    s.max_replicas
                )
            })
    };

    let mut out = Vec::new();
    for d in &o.deployments {
        let name = d.name_any();
        let spec = d.spec.as_ref();
        let hpa = hpa_fact("Deployment", &name);
        let desired = spec.and_then(|s| s.replicas).or(if hpa.is_some() && !live {
            None
        } else {
            Some(1)
        });
        let mut uids: BTreeSet<String> = d.metadata.uid.iter().cloned().collect();
        uids.extend(
            o.replicasets
                .iter()
                .filter(|rs| controller_uid(&rs.metadata) == d.metadata.uid.as_deref())
                .filter_map(|rs| rs.metadata.uid.clone()),
        );
        out.push(Workload {
            id: format!("Deployment/{name}"),
            kind: "Deployment",
            name: name.clone(),
            meta: &d.metadata,
            template: spec.map(|s| &s.template),
            verdict: health::deployment(d),
            desired: if live {
                d.status
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .map(|r| r.max(spec.and_then(|s| s.replicas).unwrap_or(r)))
                    .or(desired)
            } else {
                desired
            },
            ready: d.status.as_ref().map(|s| s.ready_replicas.unwrap_or(0)),
            pods: pods_of(&d.metadata),
            facts: hpa.into_iter().collect(),
            uids,
        });
    }
    for s in &o.statefulsets {
        let name = s.name_any();
        out.push(Workload {
            id: format!("StatefulSet/{name}"),
            kind: "StatefulSet",
            name,
            meta: &s.metadata,
            template: s.spec.as_ref().map(|s| &s.template),
            verdict: health::statefulset(s),
            desired: Some(s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
            ready: s.status.as_ref().map(|s| s.ready_replicas.unwrap_or(0)),
            pods: pods_of(&s.metadata),
            facts: vec![],
            uids: s.metadata.uid.iter().cloned().collect(),
        });
    }
    // Jobs: one box per app (Slate starts one Job per stage attempt; drawing each would
    // drown the diagram). The box shows the newest Job's health and the counts.
    let mut groups: BTreeMap<String, Vec<&k8s_openapi::api::batch::v1::Job>> = BTreeMap::new();
    for j in &o.jobs {
        let key = labels(&j.metadata)
            .get("app.kubernetes.io/name")
            .cloned()
            .unwrap_or_else(|| j.name_any());
        groups.entry(key).or_default().push(j);
    }
    for (key, mut jobs) in groups {
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let newest = jobs.last().copied().expect("a group has a member");
        let (running, failed, done) =
            jobs.iter()
                .fold((0, 0, 0), |(r, f, d), j| match health::job(j).0 {
                    Health::Healthy => (r, f, d + 1),
                    Health::Degraded => (r, f + 1, d),
                    _ => (r + 1, f, d),
                });
        let mut pods = Vec::new();
        let mut uids = BTreeSet::new();
        for j in &jobs {
            pods.extend(pods_of(&j.metadata));
            uids.extend(j.metadata.uid.clone());
        }
        let facts = if jobs.len() == 1 {
            vec![]
        } else {
            vec![format!(
                "{} jobs: {running} active, {done} done, {failed} failed",
                jobs.len()
            )]
        };
        out.push(Workload {
            id: format!("Job/{key}"),
            kind: "Job",
            name: key,
            meta: &newest.metadata,
            template: newest.spec.as_ref().map(|s| &s.template),
            verdict: health::job(newest),
            desired: None,
            ready: None,
            pods,
            facts,
            uids,
        });
    }
    let claimed: BTreeSet<String> = out.iter().flat_map(|w| w.uids.iter().cloned()).collect();
    for rs in &o.replicasets {
        let owned = controller_uid(&rs.metadata).is_some();
        if owned
            || rs
                .metadata
                .uid
                .as_deref()
                .is_some_and(|u| claimed.contains(u))
        {
            continue;
        }
        let name = rs.name_any();
        out.push(Workload {
            id: format!("ReplicaSet/{name}"),
            kind: "ReplicaSet",
            name,
            meta: &rs.metadata,
            template: rs.spec.as_ref().and_then(|s| s.template.as_ref()),
            verdict: (Health::Healthy, None),
            desired: rs.spec.as_ref().and_then(|s| s.replicas),
            ready: rs.status.as_ref().map(|s| s.ready_replicas.unwrap_or(0)),
            pods: pods_of(&rs.metadata),
            facts: vec![],
            uids: rs.metadata.uid.iter().cloned().collect(),
        });
    }
    for p in orphan_pods {
        let name = p.name_any();
        out.push(Workload {
            id: format!("Pod/{name}"),
            kind: "Pod",
            name,
            meta: &p.metadata,
            template: None,
            verdict: health::pod(p),
            desired: None,
            ready: None,
            pods: vec![p],
            facts: vec![],
            uids: BTreeSet::new(),
        });
    }
    out
}

/// The `type`, `status`, `reason` and `message` of any kind's conditions.
fn condition_rows<T: serde::Serialize>(conditions: &Option<Vec<T>>) -> Option<Vec<ConditionRow>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use app::architecture::Source;

    #[test]
    fn a_large_namespace_folds_services_and_configuration_into_workloads() {
        let mut docs = Vec::new();
        for i in 0..60 {
            let name = format!("app{i}");
            let labels = serde_json::json!({"app.kubernetes.io/name": name});
            docs.push(serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": format!("{name}-cfg")}}],
                        "env": [{"name": "NEXT", "value": format!("http://app{}:80", (i + 1) % 60)}]}]}}}}));
            docs.push(serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"selector": labels}}));
            docs.push(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-cfg")}}));
        }
        docs.push(serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
            "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "app0", "port": {"number": 80}}}}]}}]}}));
        let objects = Objects::from_documents(&docs).unwrap();
        let live = Source::Live {
            unreachable_since: None,
            synced: true,
        };
        let t = build(&objects, "ai-film", live, &External::default(), Utc::now());
        assert!(t.folded);
        // 60 workloads, the Ingress and the external endpoint.
        assert_eq!(t.nodes.len(), 62);
        let app0 = t.node("Deployment/app0").unwrap();
        assert!(
            app0.facts.iter().any(|f| f == "+ 1 ConfigMap, Service"),
            "{:?}",
            app0.facts
        );
        let has = |from: &str, kind, to: &str| {
            t.edges
                .iter()
                .any(|e| e.from == from && e.kind == kind && e.to == to)
        };
        // Edges that went to a folded Service now go to its workload.
        assert!(has("Ingress/web", EdgeKind::Routes, "Deployment/app0"));
        assert!(has(
            "Deployment/app0",
            EdgeKind::Declared,
            "Deployment/app1"
        ));
        assert!(t
            .edges
            .iter()
            .all(|e| t.node(&e.from).is_some() && t.node(&e.to).is_some()));
    }

    #[test]
    fn service_names_are_found_in_environment_values() {
        assert!(names_service("redis://redis:6379/0", "redis", "ai-film"));
        assert!(names_service(
            "http://comfyui.ai-film.svc.cluster.local:8188",
            "comfyui",
            "ai-film"
        ));
        assert!(names_service("postgres.ai-film", "postgres", "ai-film"));
        assert!(names_service(
            "host=postgres port=5432",
            "postgres",
            "ai-film"
        ));
        assert!(!names_service(
            "http://postgres-exporter:9187",
            "postgres",
            "ai-film"
        ));
        assert!(!names_service("comfyui.other.svc", "comfyui", "ai-film"));
        assert!(!names_service("myredis", "redis", "ai-film"));
    }

    #[test]
    fn selectors_are_subsets_of_labels() {
        let l: BTreeMap<String, String> = [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]
        .into();
        let sel = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector_matches(&sel(&[("a", "1")]), &l));
        assert!(!selector_matches(&sel(&[("a", "2")]), &l));
        assert!(
            !selector_matches(&sel(&[]), &l),
            "an empty selector selects nothing"
        );
    }
}
