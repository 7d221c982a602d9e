//! The kinds the fake API server knows: how a URL's (group, version, plural) maps to an
//! object's (apiVersion, kind), and which subresources each kind has.

/// One served resource.
#[derive(Debug)]
pub(crate) struct KindInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: writes to the main resource leave `status` alone.
    pub status: bool,
    /// Has a `/scale` subresource (reads and writes `spec.replicas`).
    pub scale: bool,
}

impl KindInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` / `pods`, as real servers name a resource in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    scale: bool,
) -> KindInfo {
    KindInfo {
        group,
        version,
        plural,
        kind,
        namespaced,
        status,
        scale,
    }
}

/// Every kind served. Namespaced unless marked otherwise.
pub(crate) static KINDS: &[KindInfo] = &[
    kind("", "v1", "pods", "Pod", true, true, false),
    kind("", "v1", "services", "Service", true, true, false),
    kind("", "v1", "configmaps", "ConfigMap", true, false, false),
    kind("", "v1", "secrets", "Secret", true, false, false),
    kind(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        true,
        false,
    ),
    kind("", "v1", "events", "Event", true, false, false),
    kind(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        false,
        false,
    ),
    kind("", "v1", "endpoints", "Endpoints", true, false, false),
    kind("", "v1", "namespaces", "Namespace", false, true, false),
    kind("", "v1", "nodes", "Node", false, true, false),
    kind(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        false,
        true,
        false,
    ),
    kind("apps", "v1", "deployments", "Deployment", true, true, true),
    kind(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        true,
        true,
    ),
    kind("apps", "v1", "replicasets", "ReplicaSet", true, true, true),
    kind(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        true,
        false,
        false,
    ),
    kind("apps", "v1", "daemonsets", "DaemonSet", true, true, false),
    kind("batch", "v1", "jobs", "Job", true, true, false),
    kind("batch", "v1", "cronjobs", "CronJob", true, true, false),
    kind(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        true,
        true,
        false,
    ),
    kind(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        true,
        false,
    ),
    kind(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        false,
        false,
    ),
    kind("events.k8s.io", "v1", "events", "Event", true, false, false),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        false,
        false,
    ),
    kind(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        false,
        false,
    ),
];

/// The kind served at `/{group}/{version}/{plural}`.
pub(crate) fn by_resource(group: &str, version: &str, plural: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// The kind with this `apiVersion` and `kind`.
pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}
