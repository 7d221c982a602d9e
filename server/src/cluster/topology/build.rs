//! Building the topology: boxes, edges and health from the objects (desired or live).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use app::architecture::{EdgeKind, Health, Layer, Source, TopoEdge, TopoNode, Topology};
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;

use super::fold::{fold, FOLD_ABOVE};
use super::spec::{
    claims, config_refs, controller_uid, images, labels, names_service, plain_values,
    selector_matches, wants_gpu, workload_layer,
};
use super::workloads::workloads;
use super::{External, CONSUMER_LABEL, ENDPOINT_SECRET, EXTERNAL_ID, LAYER_LABEL};
use crate::cluster::health;
use crate::cluster::objects::Objects;

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
