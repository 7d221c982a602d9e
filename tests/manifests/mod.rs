//! The `k8s/` manifests: every object parses into its k8s-openapi type with no unknown
//! field, every kustomize reference resolves, and the pipeline's rules hold in the base
//! and in each overlay (labels, resources, probes, pinned images, no Secret values, GPU
//! only where intended). The Role is checked against Slate's real calls in
//! tests/cluster (it needs the fake API server).

mod dagster;
mod langgraph;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;
use server::cluster::kustomize::{self, Files};

const OVERLAYS: [&str; 3] = ["base", "overlays/dev", "overlays/prod"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../k8s")
}

fn files() -> Files {
    kustomize::read_dir(&root()).expect("k8s/ is readable")
}

fn built(dir: &str) -> Vec<Value> {
    kustomize::build(&files(), dir).unwrap_or_else(|e| panic!("{dir}: {e}"))
}

/// Parses `doc` as `T`, failing on any field the type does not know.
fn strict<T: DeserializeOwned + k8s_openapi::Resource>(doc: &Value) -> Result<T, String> {
    let mut unknown = Vec::new();
    let parsed: T = serde_ignored::deserialize(doc.clone(), |path| unknown.push(path.to_string()))
        .map_err(|e| e.to_string())?;
    if !unknown.is_empty() {
        return Err(format!("unknown fields {unknown:?}"));
    }
    if doc["apiVersion"] != T::API_VERSION {
        return Err(format!("apiVersion should be {}", T::API_VERSION));
    }
    Ok(parsed)
}

fn check_type(doc: &Value) -> Result<(), String> {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => strict::<Namespace>(doc).map(drop),
        "PersistentVolumeClaim" => strict::<PersistentVolumeClaim>(doc).map(drop),
        "StatefulSet" => strict::<StatefulSet>(doc).map(drop),
        "Deployment" => strict::<Deployment>(doc).map(drop),
        "Service" => strict::<Service>(doc).map(drop),
        "ConfigMap" => strict::<ConfigMap>(doc).map(drop),
        "HorizontalPodAutoscaler" => strict::<HorizontalPodAutoscaler>(doc).map(drop),
        "ServiceAccount" => strict::<ServiceAccount>(doc).map(drop),
        "Role" => strict::<Role>(doc).map(drop),
        "RoleBinding" => strict::<RoleBinding>(doc).map(drop),
        "Ingress" => strict::<Ingress>(doc).map(drop),
        other => Err(format!("kind {other:?} has no check here; add it")),
    }
}

fn name(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

#[test]
fn every_object_parses_into_its_type_with_no_unknown_fields() {
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in OVERLAYS {
        for doc in built(dir) {
            count += 1;
            if let Err(e) = check_type(&doc) {
                failures.push(format!("{dir}: {}: {e}", name(&doc)));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(count > 3 * 30, "only {count} objects");
}

#[test]
fn the_strict_parser_notices_a_misspelt_field() {
    let doc = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replica": 2, "selector": {}, "template": {"spec": {"containers": [{"name": "c", "imagePullPolicy": "Always", "imag": "x:1"}]}}}});
    let err = check_type(&doc).unwrap_err();
    assert!(
        err.contains("replica\"") && err.contains(".imag\""),
        "{err}"
    );
}

#[test]
fn every_manifest_file_is_used_and_every_overlay_builds() {
    let files = files();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for dir in OVERLAYS {
        built(dir);
        // Every file named by a kustomization on the way (resources and patches).
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            let kpath = format!("{d}/kustomization.yaml");
            used.insert(kpath.clone());
            let k: Value = serde_yaml::from_str(&files[&kpath]).unwrap();
            let entries = k["resources"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .chain(
                    k["patches"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["path"].as_str()),
                );
            for rel in entries {
                let path = normalise(&format!("{d}/{rel}"));
                if files.contains_key(&path) {
                    used.insert(path);
                } else {
                    stack.push(path);
                }
            }
        }
    }
    let unused: Vec<&String> = files.keys().filter(|f| !used.contains(*f)).collect();
    assert!(unused.is_empty(), "files no kustomization uses: {unused:?}");
}

fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            ".." => {
                parts.pop();
            }
            "." | "" => {}
            p => parts.push(p),
        }
    }
    parts.join("/")
}

fn pod_spec(doc: &Value) -> Option<PodSpec> {
    let spec = doc.pointer("/spec/template/spec")?;
    serde_json::from_value(spec.clone()).ok()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

#[test]
fn every_object_follows_the_pipeline_rules() {
    let mut problems = Vec::new();
    for dir in OVERLAYS {
        let docs = built(dir);
        for doc in &docs {
            let what = format!("{dir}: {}", name(doc));
            let kind = doc["kind"].as_str().unwrap_or_default();
            let l = labels(&doc["metadata"]["labels"]);
            if l.get("app.kubernetes.io/part-of").map(String::as_str) != Some("ai-film") {
                problems.push(format!("{what}: no app.kubernetes.io/part-of: ai-film"));
            }
            if kind != "Namespace" {
                if !l.contains_key("app.kubernetes.io/name") {
                    problems.push(format!("{what}: no app.kubernetes.io/name"));
                }
                match l.get("slate.dev/layer").map(String::as_str) {
                    Some("application" | "processing" | "data" | "storage") => {}
                    other => problems.push(format!("{what}: slate.dev/layer is {other:?}")),
                }
                if doc["metadata"]["namespace"] != "ai-film" {
                    problems.push(format!("{what}: not in namespace ai-film"));
                }
            }
            if kind == "PersistentVolumeClaim"
                && l.get("slate.dev/layer").map(String::as_str) != Some("storage")
            {
                problems.push(format!("{what}: PVCs are in the storage layer"));
            }
            let Some(spec) = pod_spec(doc) else { continue };
            let template = labels(&doc["spec"]["template"]["metadata"]["labels"]);
            for key in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/part-of",
                "slate.dev/layer",
            ] {
                if template.get(key) != l.get(key) {
                    problems.push(format!(
                        "{what}: pod template label {key} differs from the object's"
                    ));
                }
            }
            let selector = labels(&doc["spec"]["selector"]["matchLabels"]);
            if selector.is_empty() || selector.iter().any(|(k, v)| template.get(k) != Some(v)) {
                problems.push(format!(
                    "{what}: the selector does not match the pod template"
                ));
            }
            for c in spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
            {
                let cw = format!("{what}: container {}", c.name);
                let r = c.resources.clone().unwrap_or_default();
                for (side, map) in [("requests", &r.requests), ("limits", &r.limits)] {
                    for res in ["cpu", "memory"] {
                        if !map.as_ref().is_some_and(|m| m.contains_key(res)) {
                            problems.push(format!("{cw}: no {side}.{res}"));
                        }
                    }
                }
                let is_init = spec
                    .init_containers
                    .iter()
                    .flatten()
                    .any(|i| i.name == c.name);
                if !is_init && (c.liveness_probe.is_none() || c.readiness_probe.is_none()) {
                    problems.push(format!("{cw}: needs liveness and readiness probes"));
                }
                let image = c.image.clone().unwrap_or_default();
                let (_, tag) = kustomize::split_image(&image);
                match tag.as_deref() {
                    None => problems.push(format!("{cw}: image {image} has no tag")),
                    Some(":latest") => problems.push(format!("{cw}: image {image} is :latest")),
                    _ => {}
                }
                for env in c.env.iter().flatten() {
                    let upper = env.name.to_ascii_uppercase();
                    let sensitive = ["PASSWORD", "TOKEN", "SECRET", "API_KEY", "DATABASE_URL"]
                        .iter()
                        .any(|w| upper.contains(w));
                    if sensitive && env.value.as_deref().is_some_and(|v| !v.is_empty()) {
                        problems.push(format!(
                            "{cw}: {} is set in plain text; use a secretKeyRef",
                            env.name
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn no_secret_values_are_in_the_repository() {
    for (path, text) in files() {
        for doc in kustomize::documents(&path, &text).unwrap() {
            assert_ne!(
                doc["kind"], "Secret",
                "{path}: Secrets are created by hand or by Slate, never committed"
            );
            assert!(
                doc.get("stringData").is_none()
                    && (doc["kind"] != "Secret" || doc.get("data").is_none()),
                "{path}"
            );
        }
    }
}

fn gpu_workloads(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| {
            pod_spec(d).is_some_and(|s| {
                s.containers.iter().any(|c| {
                    c.resources.as_ref().is_some_and(|r| {
                        [&r.requests, &r.limits]
                            .into_iter()
                            .flatten()
                            .any(|m| m.contains_key("nvidia.com/gpu"))
                    })
                })
            })
        })
        .map(name)
        .collect()
}

#[test]
fn the_gpu_goes_only_to_comfyui_and_not_in_dev() {
    for dir in ["base", "overlays/prod"] {
        let docs = built(dir);
        assert_eq!(gpu_workloads(&docs), ["Deployment comfyui"], "{dir}");
        let comfy = docs
            .iter()
            .find(|d| name(d) == "Deployment comfyui")
            .unwrap();
        assert_eq!(comfy["spec"]["replicas"], 1);
        let spec = pod_spec(comfy).unwrap();
        let c = &spec.containers[0];
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "1");
        assert!(spec
            .tolerations
            .unwrap()
            .iter()
            .any(|t| t.key.as_deref() == Some("nvidia.com/gpu")));
        assert!(
            !spec.node_selector.unwrap_or_default().is_empty(),
            "{dir}: GPU node selector"
        );
        // It reads the endpoint Slate publishes.
        let reads_endpoint = c.env.iter().flatten().any(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|s| s.name == "comfyui-endpoint" && s.key == "COMFYUI_URL")
        });
        assert!(
            reads_endpoint,
            "{dir}: ComfyUI reads COMFYUI_URL from the comfyui-endpoint Secret"
        );
    }
    let dev = built("overlays/dev");
    assert!(
        gpu_workloads(&dev).is_empty(),
        "dev has no GPU: {:?}",
        gpu_workloads(&dev)
    );
    let comfy = dev
        .iter()
        .find(|d| name(d) == "Deployment comfyui")
        .unwrap();
    let spec = pod_spec(comfy).unwrap();
    assert!(spec.tolerations.is_none() && spec.node_selector.is_none());
}

#[test]
fn the_pipeline_has_its_parts() {
    let docs = built("base");
    let find = |n: &str| {
        docs.iter()
            .find(|d| name(d) == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };
    for (pvc, size) in [
        ("dagster", "10Gi"),
        ("images", "50Gi"),
        ("videos", "100Gi"),
        ("models", "50Gi"),
    ] {
        assert_eq!(
            find(&format!("PersistentVolumeClaim {pvc}"))["spec"]["resources"]["requests"]
                ["storage"],
            size
        );
    }
    for n in [
        "Namespace ai-film",
        "StatefulSet postgres",
        "Service postgres",
        "Deployment redis",
        "Service redis",
        "Deployment comfyui",
        "Deployment blender",
        "Deployment opencv",
        "Deployment ffmpeg",
        "HorizontalPodAutoscaler ffmpeg",
        "Deployment dagster-webserver",
        "Deployment dagster-daemon",
        "Deployment langgraph",
        "Deployment slate",
        "Service slate",
        "ServiceAccount slate",
        "Role slate",
        "RoleBinding slate",
        "Ingress slate",
    ] {
        find(n);
    }
    // PostgreSQL's credentials come from a Secret that is not in the repository.
    let pg = pod_spec(find("StatefulSet postgres")).unwrap();
    assert!(pg.containers[0].env.iter().flatten().any(|e| e
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .is_some_and(|s| s.name == "postgres-credentials")));
    // The autoscaler scales FFmpeg.
    let hpa: HorizontalPodAutoscaler =
        serde_json::from_value(find("HorizontalPodAutoscaler ffmpeg").clone()).unwrap();
    assert_eq!(
        (
            hpa.spec.scale_target_ref.kind.as_str(),
            hpa.spec.scale_target_ref.name.as_str()
        ),
        ("Deployment", "ffmpeg")
    );
    // Slate: two replicas, its own service account, the health endpoints, not root.
    let slate = find("Deployment slate");
    assert_eq!(slate["spec"]["replicas"], 2);
    let spec = pod_spec(slate).unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("slate"));
    let c = &spec.containers[0];
    assert!(c
        .image
        .as_deref()
        .unwrap()
        .starts_with("ghcr.io/slate-film/slate:"));
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    let non_root = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root)
        == Some(true)
        || c.security_context.as_ref().and_then(|s| s.run_as_non_root) == Some(true);
    assert!(non_root);
    // The RoleBinding gives the Role to Slate's service account.
    let binding: RoleBinding = serde_json::from_value(find("RoleBinding slate").clone()).unwrap();
    assert_eq!(
        (
            binding.role_ref.kind.as_str(),
            binding.role_ref.name.as_str()
        ),
        ("Role", "slate")
    );
    assert!(binding
        .subjects
        .unwrap()
        .iter()
        .any(|s| s.kind == "ServiceAccount" && s.name == "slate"));
    // The Dockerfile the manifests refer to builds a non-root image.
    let dockerfile = std::fs::read_to_string(root().join("../Dockerfile")).expect("a Dockerfile");
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && user.trim() != "USER 0", "{user}");
}

#[test]
fn every_reference_between_objects_resolves() {
    for dir in OVERLAYS {
        let docs = built(dir);
        let names: BTreeSet<String> = docs.iter().map(name).collect();
        for doc in &docs {
            let what = format!("{dir}: {}", name(doc));
            if let Some(spec) = pod_spec(doc) {
                for v in spec.volumes.iter().flatten() {
                    if let Some(c) = &v.persistent_volume_claim {
                        assert!(
                            names.contains(&format!("PersistentVolumeClaim {}", c.claim_name)),
                            "{what}: claim {}",
                            c.claim_name
                        );
                    }
                    if let Some(cm) = &v.config_map {
                        assert!(
                            names.contains(&format!("ConfigMap {}", cm.name)),
                            "{what}: ConfigMap {}",
                            cm.name
                        );
                    }
                }
                if let Some(sa) = &spec.service_account_name {
                    assert!(
                        names.contains(&format!("ServiceAccount {sa}")),
                        "{what}: ServiceAccount {sa}"
                    );
                }
            }
            if doc["kind"] == "Ingress" {
                let ingress: Ingress = serde_json::from_value(doc.clone()).unwrap();
                for rule in ingress.spec.unwrap().rules.unwrap_or_default() {
                    for p in rule.http.unwrap().paths {
                        let svc = p.backend.service.unwrap().name;
                        assert!(
                            names.contains(&format!("Service {svc}")),
                            "{what}: routes to missing Service {svc}"
                        );
                    }
                }
            }
            if doc["kind"] == "Service" {
                let selector = labels(&doc["spec"]["selector"]);
                let selects_something = docs.iter().any(|d| {
                    let t = labels(&d["spec"]["template"]["metadata"]["labels"]);
                    !selector.is_empty() && selector.iter().all(|(k, v)| t.get(k) == Some(v))
                });
                assert!(selects_something, "{what}: selects no workload");
            }
        }
    }
}

#[test]
fn without_a_cluster_slate_draws_the_base() {
    let objects = server::cluster::desired_objects("ai-film");
    let t = server::cluster::topology::build(
        &objects,
        "ai-film",
        app::architecture::Source::Desired { why: "test".into() },
        &Default::default(),
        chrono::Utc::now(),
    );
    let ids: BTreeSet<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
    for id in [
        "Deployment/slate",
        "Deployment/comfyui",
        "StatefulSet/postgres",
        "PersistentVolumeClaim/models",
        "Ingress/slate",
        "Secret/comfyui-endpoint",
        "External/comfyui-colab",
    ] {
        assert!(ids.contains(id), "{id} missing from {ids:?}");
    }
    let has = |from: &str, kind: app::architecture::EdgeKind, to: &str| {
        t.edges
            .iter()
            .any(|e| e.from == from && e.to == to && e.kind == kind)
    };
    use app::architecture::EdgeKind::*;
    assert!(has("Service/slate", Selects, "Deployment/slate"));
    assert!(has("Ingress/slate", Routes, "Service/slate"));
    assert!(has(
        "Deployment/comfyui",
        Mounts,
        "PersistentVolumeClaim/models"
    ));
    assert!(has("Deployment/comfyui", Config, "Secret/comfyui-endpoint"));
    assert!(has(
        "Deployment/comfyui",
        Declared,
        "External/comfyui-colab"
    ));
    assert!(t.node("Deployment/comfyui").unwrap().gpu);
    assert_eq!(t.node("Deployment/slate").unwrap().desired, Some(2));
    // Layers come from the labels.
    assert_eq!(
        t.node("StatefulSet/postgres").unwrap().layer,
        app::architecture::Layer::Data
    );
}

/// Compares `actual` with the committed snapshot `tests/snapshots/<name>`; with
/// `SLATE_UPDATE_SNAPSHOTS=1` writes it instead (then review the diff before committing).
fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("snapshots")
        .join(name);
    if std::env::var_os("SLATE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}: run with SLATE_UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from its snapshot from line {}:\n  expected: {:?}\n  actual:   {:?}\n(SLATE_UPDATE_SNAPSHOTS=1 rewrites it)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn the_base_diagram_and_its_exports_match_their_snapshots() {
    use chrono::TimeZone as _;
    let at = chrono::Utc
        .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
        .unwrap();
    let objects = server::cluster::desired_objects("ai-film");
    let mut t = server::cluster::topology::build(
        &objects,
        "ai-film",
        app::architecture::Source::Desired {
            why: "no cluster".into(),
        },
        &Default::default(),
        at,
    );
    t.version = 1;
    let svg = app::architecture::diagram::render_svg(&t, false, None);
    // Well-formed XML: every element opened is closed.
    let opened =
        svg.matches('<').count() - svg.matches("</").count() * 2 - svg.matches("/>").count();
    assert_eq!(opened, 0, "unbalanced tags in the SVG");
    snapshot("base.svg", &(svg.replace("><", ">\n<") + "\n"));
    snapshot("base.txt", &app::architecture::export::ascii(&t));
    snapshot("base.mmd", &app::architecture::export::mermaid(&t));
}
