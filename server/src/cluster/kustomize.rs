//! A small reader for the subset of kustomize that `k8s/` uses: `namespace`,
//! `resources` (files, or directories with their own kustomization), `patches` (each a
//! strategic-merge patch file naming an existing object) and `images` (`newName`,
//! `newTag`, `digest`). Slate uses it to draw the desired state from the manifests built
//! into the binary; the manifest tests use it to check that every reference resolves.
//!
//! Strategic merge here follows kubectl for what the manifests need: maps merge, `null`
//! deletes a key, lists of objects keyed by `name` (containers, env, volumes, ports,
//! volumeMounts, …) merge element by element, an element with `$patch: delete` is
//! removed, and every other list is replaced.

use std::collections::BTreeMap;

use serde_json::Value;

/// The files of `k8s/`, by path relative to it (e.g. `base/slate.yaml`).
pub type Files = BTreeMap<String, String>;

/// The `k8s/` folder as it was when Slate was built.
pub fn embedded() -> Files {
    include!(concat!(env!("OUT_DIR"), "/manifests.rs"))
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect()
}

/// Reads a `k8s/` folder from disk (for tests and tools).
pub fn read_dir(root: &std::path::Path) -> std::io::Result<Files> {
    let mut files = Files::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let rel = path
                    .strip_prefix(root)
                    .map_err(std::io::Error::other)?
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(rel, std::fs::read_to_string(&path)?);
            }
        }
    }
    Ok(files)
}

/// Parses every YAML document of one file (empty documents skipped).
pub fn documents(path: &str, text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| format!("{path}: document {}: {e}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

fn join(dir: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = if dir.is_empty() {
        vec![]
    } else {
        dir.split('/').collect()
    };
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Identity of an object: apiVersion group, kind, name.
pub fn identity(object: &Value) -> (String, String, String) {
    let group = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .rsplit_once('/')
        .map_or("", |(g, _)| g)
        .to_owned();
    (
        group,
        object["kind"].as_str().unwrap_or_default().to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

const CLUSTER_SCOPED: [&str; 6] = [
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
];

/// Builds the objects of the kustomization in folder `dir` (e.g. `overlays/dev`).
pub fn build(files: &Files, dir: &str) -> Result<Vec<Value>, String> {
    build_depth(files, dir, 0)
}

fn build_depth(files: &Files, dir: &str, depth: usize) -> Result<Vec<Value>, String> {
    if depth > 8 {
        return Err(format!("{dir}: kustomizations nest too deep"));
    }
    let kpath = ["kustomization.yaml", "kustomization.yml"]
        .iter()
        .map(|f| join(dir, f))
        .find(|p| files.contains_key(p))
        .ok_or_else(|| format!("{dir}: no kustomization.yaml"))?;
    let k: Value = serde_yaml::from_str(&files[&kpath]).map_err(|e| format!("{kpath}: {e}"))?;
    let known = [
        "apiVersion",
        "kind",
        "namespace",
        "resources",
        "patches",
        "images",
    ];
    if let Some(map) = k.as_object() {
        if let Some(other) = map.keys().find(|key| !known.contains(&key.as_str())) {
            return Err(format!(
                "{kpath}: `{other}` is not supported by Slate's reader"
            ));
        }
    }

    let mut objects = Vec::new();
    for r in k["resources"].as_array().into_iter().flatten() {
        let rel = r
            .as_str()
            .ok_or_else(|| format!("{kpath}: a resource is not a path"))?;
        let path = join(dir, rel);
        if let Some(text) = files.get(&path) {
            objects.extend(documents(&path, text)?);
        } else if files.keys().any(|f| f.starts_with(&format!("{path}/"))) {
            objects.extend(build_depth(files, &path, depth + 1)?);
        } else {
            return Err(format!("{kpath}: resource {rel} does not exist"));
        }
    }

    for p in k["patches"].as_array().into_iter().flatten() {
        let rel = p["path"]
            .as_str()
            .ok_or_else(|| format!("{kpath}: only `patches: - path: file` is supported"))?;
        let path = join(dir, rel);
        let text = files
            .get(&path)
            .ok_or_else(|| format!("{kpath}: patch {rel} does not exist"))?;
        for patch in documents(&path, text)? {
            let id = identity(&patch);
            let target = objects
                .iter_mut()
                .find(|o| identity(o) == id)
                .ok_or_else(|| {
                    format!(
                        "{path}: patches {} {} which no resource defines",
                        id.1, id.2
                    )
                })?;
            strategic_merge(target, &patch);
        }
    }

    for image in k["images"].as_array().into_iter().flatten() {
        let name = image["name"]
            .as_str()
            .ok_or_else(|| format!("{kpath}: an image has no name"))?;
        let mut used = false;
        for o in &mut objects {
            for_each_image(o, &mut |reference: &mut String| {
                let (repo, _) = split_image(reference);
                if repo == name {
                    used = true;
                    let repo = image["newName"].as_str().unwrap_or(name).to_owned();
                    *reference = match (image["digest"].as_str(), image["newTag"].as_str()) {
                        (Some(d), _) => format!("{repo}@{d}"),
                        (None, Some(t)) => format!("{repo}:{t}"),
                        (None, None) => match split_image(reference).1 {
                            Some(tag) => format!("{repo}{tag}"),
                            None => repo,
                        },
                    };
                }
            });
        }
        if !used {
            return Err(format!(
                "{kpath}: image {name} is not used by any container"
            ));
        }
    }

    if let Some(ns) = k["namespace"].as_str() {
        for o in &mut objects {
            let kind = o["kind"].as_str().unwrap_or_default().to_owned();
            if !CLUSTER_SCOPED.contains(&kind.as_str()) {
                o["metadata"]["namespace"] = Value::String(ns.to_owned());
            }
            if kind == "RoleBinding" || kind == "ClusterRoleBinding" {
                for s in o["subjects"].as_array_mut().into_iter().flatten() {
                    if s["kind"] == "ServiceAccount" {
                        s["namespace"] = Value::String(ns.to_owned());
                    }
                }
            }
        }
    }
    Ok(objects)
}

/// Splits `repo[:tag|@digest]` into the repository and the `:tag`/`@digest` suffix.
pub fn split_image(reference: &str) -> (String, Option<String>) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo.to_owned(), Some(format!("@{digest}")));
    }
    let last = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last..].rfind(':') {
        Some(i) => (
            reference[..last + i].to_owned(),
            Some(reference[last + i..].to_owned()),
        ),
        None => (reference.to_owned(), None),
    }
}

/// Calls `f` on every container image reference of an object with a pod template.
pub fn for_each_image(object: &mut Value, f: &mut dyn FnMut(&mut String)) {
    let spec = if object["kind"] == "Pod" {
        object.get_mut("spec")
    } else if object["kind"] == "CronJob" {
        object.pointer_mut("/spec/jobTemplate/spec/template/spec")
    } else {
        object.pointer_mut("/spec/template/spec")
    };
    let Some(spec) = spec else { return };
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if let Some(Value::String(image)) = c.get_mut("image") {
                f(image);
            }
        }
    }
}

/// Merges `patch` into `target` (see the module comment for the rules).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                    continue;
                }
                match t.get_mut(key) {
                    Some(existing) => strategic_merge(existing, value),
                    None => {
                        let mut fresh = value.clone();
                        strip_directives(&mut fresh);
                        t.insert(key.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if is_named_list(t) && is_named_list(p) => {
            for item in p {
                let name = &item["name"];
                let position = t.iter().position(|x| &x["name"] == name);
                let delete = item["$patch"] == "delete";
                match (position, delete) {
                    (Some(i), true) => {
                        t.remove(i);
                    }
                    (Some(i), false) => strategic_merge(&mut t[i], item),
                    (None, true) => {}
                    (None, false) => {
                        let mut fresh = item.clone();
                        strip_directives(&mut fresh);
                        t.push(fresh);
                    }
                }
            }
        }
        (target, patch) => {
            let mut fresh = patch.clone();
            strip_directives(&mut fresh);
            *target = fresh;
        }
    }
}

fn is_named_list(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, v| !k.starts_with("$patch") && !v.is_null());
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_named_lists_merge_by_name_and_null_deletes() {
        let mut target = json!({"spec": {"replicas": 2, "nodeSelector": {"gpu": "true"}, "containers": [
            {"name": "a", "image": "a:1", "resources": {"limits": {"cpu": "1", "nvidia.com/gpu": "1"}}},
            {"name": "b", "image": "b:1"}
        ], "args": ["x", "y"]}});
        let patch = json!({"spec": {"replicas": 1, "nodeSelector": null, "containers": [
            {"name": "a", "resources": {"limits": {"nvidia.com/gpu": null}}},
            {"name": "b", "$patch": "delete"},
            {"name": "c", "image": "c:1"}
        ], "args": ["z"]}});
        strategic_merge(&mut target, &patch);
        assert_eq!(
            target,
            json!({"spec": {"replicas": 1, "containers": [
                {"name": "a", "image": "a:1", "resources": {"limits": {"cpu": "1"}}},
                {"name": "c", "image": "c:1"}
            ], "args": ["z"]}})
        );
    }

    #[test]
    fn image_references_split_at_the_tag_not_the_port() {
        assert_eq!(
            split_image("redis:7.4"),
            ("redis".into(), Some(":7.4".into()))
        );
        assert_eq!(
            split_image("localhost:5000/x"),
            ("localhost:5000/x".into(), None)
        );
        assert_eq!(
            split_image("localhost:5000/x:1"),
            ("localhost:5000/x".into(), Some(":1".into()))
        );
        assert_eq!(
            split_image("x@sha256:ab"),
            ("x".into(), Some("@sha256:ab".into()))
        );
    }

    fn files(list: &[(&str, &str)]) -> Files {
        list.iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn overlays_resolve_bases_patches_images_and_namespace() {
        let f = files(&[
            ("base/kustomization.yaml", "namespace: ns\nresources: [app.yaml]\n"),
            ("base/app.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 2, template: {spec: {containers: [{name: app, image: 'reg/app:1'}]}}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n"),
            ("over/kustomization.yaml", "resources: [../base]\npatches: [{path: p.yaml}]\nimages: [{name: reg/app, newTag: '2'}]\n"),
            ("over/p.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec: {replicas: 1}\n"),
        ]);
        let objects = build(&f, "over").unwrap();
        assert_eq!(objects[0]["spec"]["replicas"], 1);
        assert_eq!(objects[0]["metadata"]["namespace"], "ns");
        assert_eq!(
            objects[0]["spec"]["template"]["spec"]["containers"][0]["image"],
            "reg/app:2"
        );
        assert!(objects[1]["metadata"].get("namespace").is_none());
    }

    #[test]
    fn broken_references_are_errors() {
        let base = ("base/kustomization.yaml", "resources: [app.yaml]\n");
        let app = (
            "base/app.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        );
        let missing = build(&files(&[base]), "base").unwrap_err();
        assert!(
            missing.contains("resource app.yaml does not exist"),
            "{missing}"
        );
        let bad_patch = build(
            &files(&[
                base,
                app,
                (
                    "o/kustomization.yaml",
                    "resources: [../base]\npatches: [{path: p.yaml}]\n",
                ),
                (
                    "o/p.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
                ),
            ]),
            "o",
        )
        .unwrap_err();
        assert!(
            bad_patch.contains("patches ConfigMap other which no resource defines"),
            "{bad_patch}"
        );
        let unused_image = build(
            &files(&[
                base,
                app,
                (
                    "o/kustomization.yaml",
                    "resources: [../base]\nimages: [{name: nope, newTag: '1'}]\n",
                ),
            ]),
            "o",
        )
        .unwrap_err();
        assert!(
            unused_image.contains("image nope is not used"),
            "{unused_image}"
        );
        let unsupported = build(
            &files(&[("b/kustomization.yaml", "commonLabels: {a: b}\n")]),
            "b",
        )
        .unwrap_err();
        assert!(unsupported.contains("commonLabels"), "{unsupported}");
    }
}
