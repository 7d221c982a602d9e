//! The drawn workloads: Deployments, StatefulSets, Jobs grouped by app, and what
//! nothing drawn owns.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use app::architecture::Health;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;

use super::spec::{controller_uid, labels};
use super::Workload;
use crate::cluster::health;
use crate::cluster::objects::Objects;

/// The drawn workloads: Deployments, StatefulSets, Jobs grouped by app, and the
/// ReplicaSets and pods that nothing drawn owns.
pub(super) fn workloads(o: &Objects, live: bool) -> Vec<Workload<'_>> {
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
