//! From objects to the topology the diagram draws: one box per workload (its ReplicaSets
//! and pods folded into counts, Jobs grouped by app), Service, Ingress, PVC and the
//! ConfigMaps and Secrets that something uses, plus the external Colab endpoint; edges
//! as shared/reference/kubernetes.md defines them; health per box as the worst of the
//! object and its pods.

mod build;
mod detail;
mod fold;
mod spec;
mod workloads;

use std::collections::BTreeSet;

use app::architecture::Health;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::health::Verdict;

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

pub use build::build;
pub use detail::detail;
pub use fold::FOLD_ABOVE;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use app::architecture::EdgeKind;
    use chrono::Utc;

    use super::spec::{names_service, selector_matches};
    use super::*;
    use crate::cluster::objects::Objects;
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
            unwatched: Vec::new(),
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
