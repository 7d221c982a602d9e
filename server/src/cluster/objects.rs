//! The namespace's objects at one moment, whether read live from the watchers' stores or
//! parsed from the `k8s/` manifests: the one input the topology is built from.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::PartialObjectMeta;
use serde_json::Value;

#[derive(Clone, Default)]
pub struct Objects {
    pub deployments: Vec<Arc<Deployment>>,
    pub statefulsets: Vec<Arc<StatefulSet>>,
    pub replicasets: Vec<Arc<ReplicaSet>>,
    pub pods: Vec<Arc<Pod>>,
    pub services: Vec<Arc<Service>>,
    pub ingresses: Vec<Arc<Ingress>>,
    pub pvcs: Vec<Arc<PersistentVolumeClaim>>,
    pub configmaps: Vec<Arc<ConfigMap>>,
    /// Metadata only: Slate never reads Secret values.
    pub secrets: Vec<Arc<PartialObjectMeta<Secret>>>,
    pub jobs: Vec<Arc<Job>>,
    pub hpas: Vec<Arc<HorizontalPodAutoscaler>>,
    pub events: Vec<Arc<Event>>,
    /// StatefulSets' revisions (for the deploy history; not drawn).
    pub controller_revisions: Vec<Arc<ControllerRevision>>,
}

impl Objects {
    pub fn len(&self) -> usize {
        self.deployments.len()
            + self.statefulsets.len()
            + self.replicasets.len()
            + self.pods.len()
            + self.services.len()
            + self.ingresses.len()
            + self.pvcs.len()
            + self.configmaps.len()
            + self.secrets.len()
            + self.jobs.len()
            + self.hpas.len()
            + self.events.len()
            + self.controller_revisions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts objects from parsed documents into their kinds. Kinds the topology does not
    /// draw (Namespace, RBAC, ServiceAccount) are skipped; a Secret keeps only its
    /// metadata. Fails on a document that does not parse as its kind.
    pub fn from_documents(docs: &[Value]) -> Result<Objects, String> {
        fn parse<T: serde::de::DeserializeOwned>(doc: &Value) -> Result<Arc<T>, String> {
            serde_json::from_value(doc.clone())
                .map(Arc::new)
                .map_err(|e| {
                    format!(
                        "{} {}: {e}",
                        doc["kind"].as_str().unwrap_or("?"),
                        doc["metadata"]["name"].as_str().unwrap_or("?")
                    )
                })
        }
        let mut o = Objects::default();
        for doc in docs {
            match doc["kind"].as_str().unwrap_or_default() {
                "Deployment" => o.deployments.push(parse(doc)?),
                "StatefulSet" => o.statefulsets.push(parse(doc)?),
                "ReplicaSet" => o.replicasets.push(parse(doc)?),
                "Pod" => o.pods.push(parse(doc)?),
                "Service" => o.services.push(parse(doc)?),
                "Ingress" => o.ingresses.push(parse(doc)?),
                "PersistentVolumeClaim" => o.pvcs.push(parse(doc)?),
                "ConfigMap" => o.configmaps.push(parse(doc)?),
                "Secret" => {
                    let secret: Secret =
                        serde_json::from_value(doc.clone()).map_err(|e| format!("Secret: {e}"))?;
                    o.secrets.push(Arc::new(PartialObjectMeta {
                        types: None,
                        metadata: secret.metadata,
                        _phantom: Default::default(),
                    }));
                }
                "Job" => o.jobs.push(parse(doc)?),
                "HorizontalPodAutoscaler" => o.hpas.push(Arc::new(
                    hpa_as_v2(doc.clone()).map_err(|e| format!("HorizontalPodAutoscaler: {e}"))?,
                )),
                "Event" => o.events.push(parse(doc)?),
                "ControllerRevision" => o.controller_revisions.push(parse(doc)?),
                _ => {}
            }
        }
        Ok(o)
    }
}

/// A HorizontalPodAutoscaler of `autoscaling/v2`, `v2beta2` or `v1` in the v2 type, which
/// the topology reads. v2beta2 has v2's shape; v1's single CPU target becomes v2's
/// Resource metric, as the API server itself converts it.
pub fn hpa_as_v2(mut object: Value) -> Result<HorizontalPodAutoscaler, serde_json::Error> {
    if object["apiVersion"] == "autoscaling/v1" {
        if let Some(spec) = object["spec"].as_object_mut() {
            if let Some(cpu) = spec.remove("targetCPUUtilizationPercentage") {
                spec.insert(
                    "metrics".into(),
                    serde_json::json!([{"type": "Resource", "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu},
                    }}]),
                );
            }
        }
        if let Some(status) = object["status"].as_object_mut() {
            status.remove("currentCPUUtilizationPercentage");
        }
    }
    object["apiVersion"] = Value::String("autoscaling/v2".into());
    serde_json::from_value(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscalers_of_every_served_version_read_as_v2() {
        let v1 = serde_json::json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "ffmpeg"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ffmpeg"},
                     "minReplicas": 1, "maxReplicas": 8, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 91}
        });
        let hpa = hpa_as_v2(v1).unwrap();
        assert_eq!((hpa.spec.min_replicas, hpa.spec.max_replicas), (Some(1), 8));
        let metric = &hpa.spec.metrics.as_ref().unwrap()[0];
        assert_eq!(
            metric.resource.as_ref().unwrap().target.average_utilization,
            Some(70)
        );
        assert_eq!(hpa.status.unwrap().desired_replicas, 3);

        let v2beta2 = serde_json::json!({
            "apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "ffmpeg"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "ffmpeg"}, "maxReplicas": 4}
        });
        assert_eq!(hpa_as_v2(v2beta2).unwrap().spec.max_replicas, 4);
    }
}
