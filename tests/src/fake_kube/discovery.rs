//! The non-resource answers: `/version` and the minimal discovery documents (`/api`,
//! `/apis`, `/api/v1`, `/apis/{group}/{version}`) built from the kinds table.

use std::net::SocketAddr;

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::kinds::KINDS;
use super::server::{failure, respond};

pub(super) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "36",
        "gitVersion": "v1.36.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(super) fn core_versions(addr: &SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}],
    })
}

pub(super) fn groups() -> Value {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for kind in KINDS.iter().filter(|k| !k.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == kind.group) {
            Some((_, versions)) if !versions.contains(&kind.version) => versions.push(kind.version),
            Some(_) => {}
            None => groups.push((kind.group, vec![kind.version])),
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub(super) fn resources(group: &str, version: &str) -> Response {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for kind in KINDS
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        resources.push(json!({
            "name": kind.plural,
            "singularName": kind.kind.to_lowercase(),
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": verbs,
        }));
        let mut sub = |name: &str, group: &str, version: &str, sub_kind: &str, verbs: Value| {
            resources.push(json!({
                "name": format!("{}/{name}", kind.plural),
                "singularName": "",
                "namespaced": kind.namespaced,
                "group": group,
                "version": version,
                "kind": sub_kind,
                "verbs": verbs,
            }));
        };
        if kind.status {
            sub(
                "status",
                kind.group,
                kind.version,
                kind.kind,
                json!(["get", "patch", "update"]),
            );
        }
        if kind.scale {
            sub(
                "scale",
                "autoscaling",
                "v1",
                "Scale",
                json!(["get", "patch", "update"]),
            );
        }
        if kind.kind == "Pod" {
            sub("log", "", "v1", "Pod", json!(["get"]));
        }
    }
    if resources.is_empty() {
        return failure(404, "the server could not find the requested resource").into_response();
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    respond(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}
