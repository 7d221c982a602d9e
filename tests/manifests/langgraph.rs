//! The LangGraph server's manifests: the agents' image built from k8s/langgraph (its
//! langgraph.json, the shot planner, auth.py, and the Dockerfile `langgraph dockerfile`
//! writes for them), its database, Redis, licence and bearer token from Secrets, health
//! checks on `/ok`, and run webhooks allowed to reach Slate's Service over in-cluster http.

use k8s_openapi::api::core::v1::EnvVar;
use serde_json::Value;

use super::{built, name, pod_spec, root, OVERLAYS};

/// The image `langgraph build` makes from k8s/langgraph.
const IMAGE: &str = "ghcr.io/slate-film/langgraph-agents";

fn agents_dir() -> std::path::PathBuf {
    root().join("langgraph")
}

fn langgraph_json() -> Value {
    let text = std::fs::read_to_string(agents_dir().join("langgraph.json"))
        .expect("k8s/langgraph/langgraph.json");
    serde_json::from_str(&text).expect("langgraph.json is JSON")
}

/// The langgraph container's env in overlay `dir`.
fn env(dir: &str) -> (String, Vec<EnvVar>) {
    let docs = built(dir);
    let doc = docs
        .iter()
        .find(|d| name(d) == "Deployment langgraph")
        .unwrap_or_else(|| panic!("{dir}: no Deployment langgraph"));
    let spec = pod_spec(doc).expect("a pod spec");
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "langgraph")
        .expect("the langgraph container");
    (
        c.image.clone().unwrap_or_default(),
        c.env.clone().unwrap_or_default(),
    )
}

fn secret_ref(env: &[EnvVar], var: &str) -> Option<(String, String, bool)> {
    let e = env.iter().find(|e| e.name == var)?;
    let s = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((s.name.clone(), s.key.clone(), s.optional.unwrap_or(false)))
}

fn value(env: &[EnvVar], var: &str) -> Option<String> {
    env.iter().find(|e| e.name == var)?.value.clone()
}

#[test]
fn the_langgraph_server_runs_the_agents_image_built_from_k8s_langgraph() {
    for dir in OVERLAYS {
        let (image, _) = env(dir);
        let tag = image
            .strip_prefix(&format!("{IMAGE}:"))
            .unwrap_or_else(|| panic!("{dir}: the langgraph image is {image}, not {IMAGE}:TAG"));
        assert!(!tag.is_empty() && tag != "latest", "{dir}: {image}");
    }
    // What the image is built from: the planner Slate's template names, its auth.
    let config = langgraph_json();
    let planner = config["graphs"]["shot_planner"]
        .as_str()
        .expect("langgraph.json names the shot_planner graph");
    let file = planner.split(':').next().unwrap_or_default();
    assert!(agents_dir().join(file).is_file(), "{planner}");
    let auth = config["auth"]["path"].as_str().expect("custom auth");
    assert!(
        agents_dir()
            .join(auth.split(':').next().unwrap_or_default())
            .is_file(),
        "{auth}"
    );
    // The Dockerfile is what `langgraph dockerfile` writes for this langgraph.json.
    let dockerfile = std::fs::read_to_string(agents_dir().join("Dockerfile")).unwrap();
    let from = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM "))
        .unwrap_or_default();
    assert_eq!(from, "FROM langchain/langgraph-api:3.11");
    for (var, want) in [
        ("LANGSERVE_GRAPHS", "shot_planner.py:graph"),
        ("LANGGRAPH_AUTH", "auth.py:auth"),
        ("LANGGRAPH_WEBHOOKS", "require_https"),
    ] {
        assert!(
            dockerfile
                .lines()
                .any(|l| l.starts_with(&format!("ENV {var}=")) && l.contains(want)),
            "the Dockerfile sets no {var} with {want}"
        );
    }
    // Left without a name of its own, the package would be named after the directory,
    // "langgraph", and replace the real library in the image.
    let pyproject = std::fs::read_to_string(agents_dir().join("pyproject.toml")).unwrap();
    let project = pyproject
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .expect("a project name");
    assert_ne!(project.trim_matches('"'), "langgraph");
}

#[test]
fn the_langgraph_server_takes_its_database_redis_licence_and_token_from_secrets() {
    for dir in OVERLAYS {
        let (_, env) = env(dir);
        let database = value(&env, "DATABASE_URI").unwrap_or_default();
        assert!(
            database.starts_with("postgres://") && database.contains("@postgres:5432/langgraph"),
            "{dir}: DATABASE_URI {database}"
        );
        // The password comes from the Secret, by reference, defined before it is used.
        let user = env.iter().position(|e| e.name == "POSTGRES_PASSWORD");
        let uri = env.iter().position(|e| e.name == "DATABASE_URI");
        assert!(
            user < uri && user.is_some(),
            "{dir}: POSTGRES_PASSWORD after DATABASE_URI"
        );
        assert_eq!(
            secret_ref(&env, "POSTGRES_PASSWORD").map(|s| s.0),
            Some("postgres-credentials".to_owned())
        );
        let redis = value(&env, "REDIS_URI").unwrap_or_default();
        assert!(
            redis.starts_with("redis://redis:6379"),
            "{dir}: REDIS_URI {redis}"
        );
        // The licence: either key, from a Secret, never a value.
        for key in ["LANGGRAPH_CLOUD_LICENSE_KEY", "LANGSMITH_API_KEY"] {
            assert_eq!(
                secret_ref(&env, key),
                Some(("langgraph-credentials".into(), key.into(), true)),
                "{dir}: {key}"
            );
            assert!(value(&env, key).is_none(), "{dir}: {key} has a value");
        }
        // The bearer token auth.py checks: required, from the Secret Slate reads too.
        assert_eq!(
            secret_ref(&env, "LANGGRAPH_AUTH_TOKEN"),
            Some(("langgraph-auth".into(), "token".into(), false)),
            "{dir}"
        );
    }
    let auth = std::fs::read_to_string(agents_dir().join("auth.py")).unwrap();
    assert!(
        auth.contains("LANGGRAPH_AUTH_TOKEN") && auth.contains("compare_digest"),
        "auth.py checks the token from the environment, in constant time"
    );
}

#[test]
fn the_langgraph_server_is_checked_on_ok_and_its_webhooks_may_reach_slate_over_http() {
    let config = langgraph_json();
    for dir in OVERLAYS {
        let docs = built(dir);
        let doc = docs
            .iter()
            .find(|d| name(d) == "Deployment langgraph")
            .unwrap();
        let spec = pod_spec(doc).unwrap();
        let c = &spec.containers[0];
        for (which, probe) in [
            ("liveness", &c.liveness_probe),
            ("readiness", &c.readiness_probe),
        ] {
            let path = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone());
            assert_eq!(path.as_deref(), Some("/ok"), "{dir}: {which} probe");
        }
        // The manifest's webhooks block is langgraph.json's: in-cluster http to Slate.
        let (_, env) = env(dir);
        let webhooks: Value =
            serde_json::from_str(&value(&env, "LANGGRAPH_WEBHOOKS").expect("LANGGRAPH_WEBHOOKS"))
                .expect("LANGGRAPH_WEBHOOKS is JSON");
        assert_eq!(webhooks, config["webhooks"], "{dir}");
        assert_eq!(webhooks["url"]["require_https"], false);
        let allowed: Vec<&str> = webhooks["url"]["allowed_domains"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(allowed.contains(&"slate"), "{dir}: {allowed:?}");
        assert!(
            docs.iter().any(|d| name(d) == "Service slate"),
            "{dir}: the webhooks' target"
        );
        assert!(
            docs.iter().any(|d| name(d) == "Service langgraph"),
            "{dir}: Slate reaches LangGraph through its Service"
        );
    }
}
