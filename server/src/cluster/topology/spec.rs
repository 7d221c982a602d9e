//! Reading pod specs and object metadata: labels, owners, images, GPUs, the layer a
//! workload belongs to, and the configuration, claims and Services a pod refers to.

use std::collections::{BTreeMap, BTreeSet};

use app::architecture::Layer;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::LAYER_LABEL;

pub(super) fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

pub(super) fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

pub(super) fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

pub(super) fn wants_gpu(spec: &PodSpec) -> bool {
    containers(spec).any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            [&r.limits, &r.requests]
                .into_iter()
                .flatten()
                .any(|m| m.keys().any(|k| k.ends_with("/gpu")))
        })
    })
}

pub(super) fn images(spec: &PodSpec) -> Vec<String> {
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
pub(super) fn workload_layer(meta: &ObjectMeta, spec: Option<&PodSpec>) -> Layer {
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

pub(super) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Every ConfigMap and Secret a pod spec reads, as `(kind, name)`.
pub(super) fn config_refs(spec: &PodSpec) -> BTreeSet<(&'static str, String)> {
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

pub(super) fn claims(spec: &PodSpec) -> BTreeSet<String> {
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
pub(super) fn names_service(value: &str, service: &str, namespace: &str) -> bool {
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

pub(super) fn plain_values(spec: &PodSpec) -> Vec<&str> {
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

pub(super) fn quantity_text(
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
