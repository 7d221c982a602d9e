//! Health of each kind, after Argo CD's rules with the two corrections in
//! shared/reference/kubernetes.md: an unschedulable pod is Degraded with the scheduler's
//! reason in plain words, and an Ingress without a load-balancer address is Unknown.
//! Every verdict other than Healthy comes with a reason a person can act on. Workloads,
//! claims, Services, Ingresses and Jobs here; pods (and the scheduler's words) in `pods`.

mod pods;
#[cfg(test)]
mod tests;

pub use pods::{plain_scheduler_message, pod, pod_label, pod_ready, restarts};

use app::architecture::Health;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;

pub type Verdict = (Health, Option<String>);

fn healthy() -> Verdict {
    (Health::Healthy, None)
}

fn verdict(health: Health, reason: impl Into<String>) -> Verdict {
    (health, Some(reason.into()))
}

fn deleting(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Verdict> {
    meta.deletion_timestamp
        .as_ref()
        .map(|_| verdict(Health::Progressing, "Being deleted"))
}

pub fn deployment(d: &Deployment) -> Verdict {
    if let Some(v) = deleting(&d.metadata) {
        return v;
    }
    let spec = d.spec.clone().unwrap_or_default();
    if spec.paused == Some(true) {
        return verdict(Health::Suspended, "Rollout paused");
    }
    let Some(status) = &d.status else {
        return verdict(Health::Progressing, "No status reported yet");
    };
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return verdict(
            Health::Progressing,
            "Waiting for the controller to see the change",
        );
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        return verdict(
            Health::Degraded,
            format!(
                "Rollout stalled: {}",
                c.message.as_deref().unwrap_or("progress deadline exceeded")
            ),
        );
    }
    let desired = spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return verdict(
            Health::Progressing,
            format!("Rolling out: {updated} of {desired} replicas updated"),
        );
    }
    if replicas > updated {
        return verdict(
            Health::Progressing,
            format!(
                "Rolling out: {} old replicas pending termination",
                replicas - updated
            ),
        );
    }
    if available < updated {
        return verdict(
            Health::Progressing,
            format!("{available} of {updated} updated replicas available"),
        );
    }
    healthy()
}

pub fn statefulset(s: &StatefulSet) -> Verdict {
    if let Some(v) = deleting(&s.metadata) {
        return v;
    }
    let spec = s.spec.clone().unwrap_or_default();
    let Some(status) = &s.status else {
        return verdict(Health::Progressing, "No status reported yet");
    };
    if s.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return verdict(
            Health::Progressing,
            "Waiting for the controller to see the change",
        );
    }
    let desired = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    if ready < desired {
        return verdict(
            Health::Progressing,
            format!("{ready} of {desired} replicas ready"),
        );
    }
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    if rolling
        && status.update_revision.is_some()
        && status.update_revision != status.current_revision
    {
        return verdict(Health::Progressing, "Rolling update in progress");
    }
    healthy()
}

pub fn pvc(p: &PersistentVolumeClaim) -> Verdict {
    if let Some(v) = deleting(&p.metadata) {
        return v;
    }
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Bound") => healthy(),
        Some("Lost") => verdict(Health::Degraded, "The bound volume is lost"),
        _ => verdict(Health::Progressing, "Waiting for a volume to be bound"),
    }
}

pub fn service(s: &Service) -> Verdict {
    if let Some(v) = deleting(&s.metadata) {
        return v;
    }
    let lb = s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let has_ingress = s
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if lb && !has_ingress {
        return verdict(Health::Progressing, "Waiting for a load-balancer address");
    }
    healthy()
}

/// Correction 2: many ingress controllers never fill the status, so an empty one says
/// nothing either way.
pub fn ingress(i: &Ingress) -> Verdict {
    if let Some(v) = deleting(&i.metadata) {
        return v;
    }
    let has_address = i
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());
    if has_address {
        healthy()
    } else {
        verdict(
            Health::Unknown,
            "No address reported by the ingress controller",
        )
    }
}

pub fn job(j: &Job) -> Verdict {
    if let Some(v) = deleting(&j.metadata) {
        return v;
    }
    let condition = |kind: &str| {
        j.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == "True"))
    };
    if condition("Complete").is_some() {
        return healthy();
    }
    if let Some(c) = condition("Failed") {
        return verdict(
            Health::Degraded,
            format!(
                "Job failed: {}",
                c.message
                    .as_deref()
                    .or(c.reason.as_deref())
                    .unwrap_or("no reason given")
            ),
        );
    }
    if j.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        return verdict(Health::Suspended, "Job suspended");
    }
    verdict(Health::Progressing, "Running")
}
