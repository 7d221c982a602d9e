//! Publishing the Colab endpoint into the cluster: the Secret (created, then patched),
//! consumers restarted with exactly `kubectl rollout restart`'s patch, paused ones refused.

use base64::Engine as _;
use serde_json::json;
use server::colab::publish::{Publisher, Target};
use slate_tests::fake_kube::FakeKube;
use slate_tests::kube_fixtures::apply_settled_base;

fn publisher(fake: &FakeKube, target: Target) -> Publisher {
    Publisher {
        client: fake.client(),
        namespace: "ai-film".into(),
        target,
    }
}

#[tokio::test]
async fn the_endpoint_is_written_and_its_consumers_restarted_like_kubectl_does() {
    let fake = FakeKube::start().await;
    apply_settled_base(&fake);
    // A second consumer that is paused: refused, not restarted.
    let mut paused = fake
        .get("apps/v1", "Deployment", "ai-film", "blender")
        .unwrap();
    paused["metadata"]["labels"]["slate.dev/comfyui-consumer"] = json!("true");
    paused["spec"]["paused"] = json!(true);
    fake.apply(paused);
    fake.clear_requests();

    let p = publisher(&fake, Target::Secret("comfyui-endpoint".into()));
    let url = "https://quiet-river.trycloudflare.com/";
    let publication = p.publish(url).await.unwrap();
    assert_eq!(publication.object, "Secret/comfyui-endpoint");
    assert!(publication.created);
    assert_eq!(publication.restarted, ["comfyui"]);
    assert_eq!(publication.refused.len(), 1);
    assert_eq!(publication.refused[0].0, "blender");

    let secret = fake
        .get("v1", "Secret", "ai-film", "comfyui-endpoint")
        .expect("the Secret");
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["COMFYUI_URL"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, url.as_bytes());
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "slate"
    );

    // The restart: one strategic-merge patch of the pod template's restartedAt, as
    // `kubectl rollout restart deployment/comfyui` sends it.
    let patches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == "patch" && r.resource == "deployments")
        .collect();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].name.as_deref(), Some("comfyui"));
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body = patches[0].body.clone().unwrap();
    let at = body["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .as_str()
        .unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "nothing else in the patch: {body}"
    );
    let comfy = fake
        .get("apps/v1", "Deployment", "ai-film", "comfyui")
        .unwrap();
    assert_eq!(
        comfy["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        at
    );
    let blender = fake
        .get("apps/v1", "Deployment", "ai-film", "blender")
        .unwrap();
    assert!(blender["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_null());

    // Secret values are never read back: only metadata is asked for.
    for r in fake
        .requests()
        .into_iter()
        .filter(|r| r.resource == "secrets" && r.verb == "get")
    {
        assert!(r
            .accept
            .unwrap_or_default()
            .contains("as=PartialObjectMetadata"));
    }

    // The second time patches the Secret in place.
    let second = p
        .publish("https://bright-lake.trycloudflare.com/")
        .await
        .unwrap();
    assert!(!second.created);
    let secret = fake
        .get("v1", "Secret", "ai-film", "comfyui-endpoint")
        .unwrap();
    let stored = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["COMFYUI_URL"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, b"https://bright-lake.trycloudflare.com/");
}

#[tokio::test]
async fn a_configmap_can_be_the_target() {
    let fake = FakeKube::start().await;
    let p = publisher(&fake, Target::ConfigMap("comfyui-endpoint".into()));
    let publication = p
        .publish("https://quiet-river.trycloudflare.com/")
        .await
        .unwrap();
    assert_eq!(publication.object, "ConfigMap/comfyui-endpoint");
    assert!(publication.restarted.is_empty());
    let cm = fake
        .get("v1", "ConfigMap", "ai-film", "comfyui-endpoint")
        .unwrap();
    assert_eq!(
        cm["data"]["COMFYUI_URL"],
        "https://quiet-river.trycloudflare.com/"
    );
}
