//! ComfyUI workflows as data through the API a script uses (decision 0014): added from
//! JSON or an image, versioned, bound, run from their generated template; refused with
//! the node and input named, nothing stored; a model that leaves the endpoint between
//! submission and execution named. Against the fake ComfyUI here; the real one in the
//! tests named `comfy_real`.

use std::time::Duration;

use serde_json::{json, Value};
use slate_tests::comfyui_peer::{self, CHECKPOINT};
use slate_tests::fake_comfy::{FakeComfy, Mode};
use slate_tests::{eventually, seen, spawn_app_with, TestApp};

const LEAD: &str = "lena@studio.test";

async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = app.bare_client();
    let req = match method {
        "GET" => client.get(app.url(path)),
        _ => client.post(app.url(path)),
    }
    .bearer_auth(token);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_bytes(
    app: &TestApp,
    token: &str,
    path: &str,
    bytes: Vec<u8>,
    mime: &str,
) -> (u16, Value) {
    let res = app
        .bare_client()
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A Slate with a lead's API token and `comfy` as its verified endpoint, its inventory
/// fetched.
async fn slate_with(
    url: &str,
    adjust: impl FnOnce(&mut server::config::Config),
) -> (TestApp, String) {
    let app = spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_check_seconds = 1;
        c.comfyui_poll_ms = 100;
        adjust(c);
    })
    .await;
    app.create_user(LEAD, "lead").await;
    let token = app.create_token("lena's script", "api", LEAD).await;
    let secret = slate_tests::colab_secret(&app).await;
    slate_tests::colab_up(&app, &secret, "wf-1", url).await;
    eventually("the endpoint's inventory", Duration::from_secs(120), || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from endpoint_inventories i join colab_endpoints e on e.id = i.endpoint_id
             where e.state = 'healthy' and i.fetched_at is not null",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        seen(n, |n| *n == 1)
    })
    .await;
    (app, token)
}

/// The bundled txt2img graph on `checkpoint`, as a person would export it.
fn exported(checkpoint: &str) -> Value {
    let bundle: Value =
        serde_json::from_str(include_str!("../../app/src/comfyui/builtin/txt2img.json")).unwrap();
    let mut graph = bundle["graph"].clone();
    graph["4"]["inputs"]["ckpt_name"] = json!(checkpoint);
    graph["6"]["inputs"]["text"] = json!("a lighthouse at dusk");
    graph["5"]["inputs"]["width"] = json!(64);
    graph["5"]["inputs"]["height"] = json!(64);
    graph["3"]["inputs"]["steps"] = json!(2);
    graph
}

async fn versions(app: &TestApp) -> i64 {
    app.count("select count(*) from workflows where origin <> 'bundled'")
        .await
}

async fn wait_run(app: &TestApp, token: &str, run: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        let (_, r) = call(app, token, "GET", &format!("/api/runs/{run}"), None).await;
        if matches!(
            r["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return r;
        }
        last = r;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the run did not finish: {last}");
}

/// A PNG holding `texts` as tEXt chunks, the way ComfyUI's SaveImage writes them.
fn png_with(texts: &[(&str, &str)]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&[0, 0, 0, 0]);
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
    for (k, v) in texts {
        chunk(&mut png, b"tEXt", format!("{k}\0{v}").as_bytes());
    }
    chunk(&mut png, b"IEND", b"");
    png
}

#[tokio::test]
async fn workflows_are_added_versioned_bound_and_run_through_the_api() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let (app, lead) = slate_with(&comfy.url(), |_| {}).await;
    let graph = exported("sd_xl_base_1.0.safetensors");
    let add = json!({"name": "lighthouse", "title": "Lighthouse", "workflow": graph});
    let (status, made) = call(&app, &lead, "POST", "/api/workflows", Some(add.clone())).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["version"], 1);
    // The same graph again makes no version; a changed one makes the next.
    let (_, again) = call(&app, &lead, "POST", "/api/workflows", Some(add.clone())).await;
    assert_eq!(again["version"], 1, "{again}");
    let mut changed = add.clone();
    changed["workflow"]["3"]["inputs"]["steps"] = json!(3);
    let (_, v2) = call(&app, &lead, "POST", "/api/workflows", Some(changed)).await;
    assert_eq!(v2["version"], 2, "{v2}");

    let (status, shown) = call(&app, &lead, "GET", "/api/workflows/lighthouse", None).await;
    assert_eq!(status, 200, "{shown}");
    let changes: Vec<&str> = shown["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(changes, ["~ node 3 (KSampler) steps: 2 → 3"]);
    assert_eq!(
        shown["gaps"],
        json!([]),
        "the fake has every node and model: {shown}"
    );
    let proposed: Vec<&str> = shown["proposed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    for usual in [
        "prompt",
        "negative",
        "seed",
        "steps",
        "cfg",
        "sampler",
        "scheduler",
        "width",
        "height",
        "count",
        "checkpoint",
    ] {
        assert!(proposed.contains(&usual), "{usual} proposed: {proposed:?}");
    }
    // Typed from the endpoint's /object_info: the sampler's choices are the fake's own.
    let sampler = shown["proposed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "sampler")
        .unwrap();
    assert_eq!(sampler["type"], "enum");
    assert_eq!(
        sampler["options"],
        json!(["euler", "euler_ancestral", "dpmpp_2m"])
    );
    let width = shown["proposed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "width")
        .unwrap();
    assert_eq!(
        (width["min"].clone(), width["max"].clone()),
        (json!(16), json!(16384))
    );

    // Two inputs bound: the prompt and the steps.
    let bindings = json!({"bindings": [
        {"name": "prompt", "node": "6", "input": "text", "label": "Prompt", "type": "text"},
        {"name": "steps", "node": "3", "input": "steps", "type": "integer", "min": 1, "max": 50, "default": 4}
    ]});
    let (status, bound) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows/lighthouse/bindings",
        Some(bindings),
    )
    .await;
    assert_eq!(status, 201, "{bound}");
    assert_eq!(bound["version"], 3);
    assert_eq!(bound["template"], "workflow-lighthouse");
    let (_, listed) = call(&app, &lead, "GET", "/api/workflows", None).await;
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "lighthouse")
        .unwrap();
    assert_eq!(
        (row["version"].clone(), row["bindings"].clone()),
        (json!(3), json!(2))
    );
    let (_, pre) = call(
        &app,
        &lead,
        "GET",
        "/api/workflows/lighthouse/preflight",
        None,
    )
    .await;
    assert_eq!(pre["endpoint_known"], true);
    assert_eq!(pre["gaps"], json!([]));

    // Run from the generated template: a value out of the binding's limits is refused.
    let (status, err) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(
            json!({"template": "workflow-lighthouse", "params": {"prompt": "a fox", "steps": 99}}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    let (status, run) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(json!({"template": "workflow-lighthouse", "params": {"prompt": "a fox at dawn"}})),
    )
    .await;
    assert_eq!(status, 201, "{run}");
    let done = wait_run(&app, &lead, run["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let sent = comfy
        .prompts()
        .last()
        .cloned()
        .expect("a prompt reached the fake");
    let sent = sent.graph;
    assert_eq!(sent["6"]["inputs"]["text"], "a fox at dawn");
    assert_eq!(sent["3"]["inputs"]["steps"], 4, "the binding's default");
    assert_eq!(
        sent["3"]["inputs"]["cfg"], 7.0,
        "unbound inputs keep the graph's values"
    );
    let (asset, provenance): (uuid::Uuid, Value) = sqlx::query_as(
        "select o.asset_id, o.provenance from run_outputs o where o.run_id = $1::uuid",
    )
    .bind(run["id"].as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(provenance["workflow"], "lighthouse");
    assert_eq!(provenance["workflow_version"], 3);
    assert_eq!(provenance["values"]["prompt"], "a fox at dawn");
    assert_eq!(provenance["node"], "9");
    assert_eq!(
        provenance["models"],
        json!([{"node": "4", "folder": "checkpoints", "file": "sd_xl_base_1.0.safetensors"}])
    );
    assert_eq!(provenance["graph"], sent, "the exact graph as sent");
    let name: String = sqlx::query_scalar("select name from assets where id = $1")
        .bind(asset)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        name.contains("-render-9-0001."),
        "named for the run, stage and node: {name}"
    );
    let audited = app.count("select count(*) from audit_log where action = 'workflow.save' and actor_label like 'lena%'").await;
    assert_eq!(audited, 3, "every version is audited");
    app.stop().await;
}

#[tokio::test]
async fn workflows_bad_input_is_refused_with_the_node_and_input_and_nothing_is_stored() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let (app, lead) = slate_with(&comfy.url(), |_| {}).await;
    app.create_user("cleo@studio.test", "creator").await;
    let cleo = app
        .create_token("cleo's script", "api", "cleo@studio.test")
        .await;
    let graph = exported("sd_xl_base_1.0.safetensors");
    let refused = |status: u16, body: &Value, want: &str| {
        assert!((400..500).contains(&status), "{status}: {body}");
        assert!(body.to_string().contains(want), "{want}: {body}");
    };
    let add = |name: &str, workflow: Value| json!({"name": name, "workflow": workflow});
    let ui = json!({"last_node_id": 9, "last_link_id": 9, "nodes": [{"id": 3, "type": "KSampler", "widgets_values": [1, "fixed", 20]}],
                    "links": [[1, 4, 0, 3, 0, "MODEL"]], "groups": [], "version": 0.4});
    let (s, b) = call(&app, &lead, "POST", "/api/workflows", Some(add("ui", ui))).await;
    refused(s, &b, "Export (API)");
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("text", json!("not json {"))),
    )
    .await;
    refused(s, &b, "not JSON");
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("list", json!([1, 2]))),
    )
    .await;
    refused(s, &b, "not an object");
    let mut broken = graph.clone();
    broken["8"]["inputs"]["samples"] = json!(["42", 0]);
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("broken", broken)),
    )
    .await;
    refused(
        s,
        &b,
        "Node 8 (VAEDecode), input \\\"samples\\\": it is linked to node 42",
    );
    let mut cycle = graph.clone();
    cycle["4"]["inputs"]["ckpt_name"] = json!(["8", 0]);
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("cycle", cycle)),
    )
    .await;
    refused(s, &b, "cycle");
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("Bad Name", graph.clone())),
    )
    .await;
    refused(s, &b, "lower-case");
    let huge = json!({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "x".repeat(5 * 1024 * 1024)}}});
    let (s, _) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("huge", huge)),
    )
    .await;
    assert_eq!(s, 413, "over the limit");
    let (s, b) = call(
        &app,
        &cleo,
        "POST",
        "/api/workflows",
        Some(add("cleos", graph.clone())),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    // An image with only the editor's workflow in it; one with no workflow at all.
    let (s, b) = post_bytes(
        &app,
        &lead,
        "/api/workflows/shot/versions",
        png_with(&[("workflow", "{\"nodes\": []}")]),
        "image/png",
    )
    .await;
    refused(s, &b, "only the editor's workflow");
    let (s, b) = post_bytes(
        &app,
        &lead,
        "/api/workflows/shot/versions",
        png_with(&[]),
        "image/png",
    )
    .await;
    refused(s, &b, "holds no workflow");
    assert_eq!(versions(&app).await, 0, "nothing stored");

    // An image ComfyUI saved, with the API graph in its `prompt` chunk.
    let text = graph.to_string();
    let (s, b) = post_bytes(
        &app,
        &lead,
        "/api/workflows/shot/versions?title=From%20an%20image",
        png_with(&[("prompt", &text), ("workflow", "{\"nodes\": []}")]),
        "image/png",
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let origin: String = sqlx::query_scalar("select origin from workflows where name = 'shot'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(origin, "image");

    // Bindings: to a linked input, to an input that does not exist, a video asset on an
    // image loader, a range wider than the endpoint's.
    let bad = json!({"bindings": [
        {"name": "model", "node": "3", "input": "model", "type": "string"},
        {"name": "nope", "node": "3", "input": "nope", "type": "string"},
        {"name": "ghost", "node": "77", "input": "text", "type": "text"},
        {"name": "width", "node": "5", "input": "width", "type": "integer", "min": 0, "max": 99999}
    ]});
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows/shot/bindings",
        Some(bad),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let said = b.to_string();
    for want in [
        "input \\\"model\\\" of node 3 (KSampler) is linked",
        "node 3 (KSampler) has no input \\\"nope\\\"",
        "the workflow has no node 77",
        "outside what the endpoint takes (16–16384)",
    ] {
        assert!(said.contains(want), "{want}: {said}");
    }
    let mut with_image = graph.clone();
    with_image["10"] = json!({"class_type": "LoadImage", "inputs": {"image": "x.png"}});
    let (s, _) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(add("shot", with_image)),
    )
    .await;
    assert_eq!(s, 201);
    let (s, b) = call(&app, &lead, "POST", "/api/workflows/shot/bindings",
        Some(json!({"bindings": [{"name": "clip", "node": "10", "input": "image", "type": "asset", "kind": "video"}]}))).await;
    assert_eq!(s, 422);
    assert!(
        b.to_string()
            .contains("LoadImage.image takes image files, not video"),
        "{b}"
    );
    let (s, _) = call(
        &app,
        &cleo,
        "POST",
        "/api/workflows/shot/bindings",
        Some(json!({"bindings": []})),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(versions(&app).await, 2, "only the two good versions");

    // A template naming a workflow that does not exist, or an input it does not bind.
    let (who, _) = super::admin(&app).await;
    let missing =
        "name: t\ntitle: t\nstages:\n  - name: s\n    executor: comfyui\n    workflow: nowhere\n";
    let e = server::pipelines::store::save(&app.pool, &who, missing, false)
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("there is no workflow \\\"nowhere\\\""),
        "{e:?}"
    );
    let unbound = "name: t\ntitle: t\nstages:\n  - name: s\n    executor: comfyui\n    workflow: shot\n    inputs: {colour: 3}\n";
    let wrong_type = "name: t\ntitle: t\nparameters:\n  - {name: clip, type: asset, kind: video}\nstages:\n  - name: s\n    executor: comfyui\n    workflow: txt2img\n    inputs:\n      steps: ${params.clip}\n";
    let e = server::pipelines::store::save(&app.pool, &who, wrong_type, false)
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("input \\\"steps\\\" sets node 3 (KSampler) steps, which takes an integer, but ${params.clip} is video files"),
        "{e:?}"
    );
    let e = server::pipelines::store::save(&app.pool, &who, unbound, false)
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("has no binding \\\"colour\\\""),
        "{e:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn workflows_a_model_removed_between_submission_and_execution_is_named() {
    let comfy = FakeComfy::start(Mode::Current).await;
    comfy.set_models(
        "checkpoints",
        &["dream-v1.safetensors", "dream-v2.safetensors"],
    );
    let (app, lead) = slate_with(&comfy.url(), |c| c.comfyui_prompts = 1).await;
    let add = json!({"name": "dream", "workflow": exported("dream-v1.safetensors")});
    assert_eq!(
        call(&app, &lead, "POST", "/api/workflows", Some(add))
            .await
            .0,
        201
    );
    let bind = json!({"bindings": [
        {"name": "prompt", "node": "6", "input": "text", "type": "text"},
        {"name": "checkpoint", "node": "4", "input": "ckpt_name", "type": "model", "folder": "checkpoints", "required": false}
    ]});
    assert_eq!(
        call(
            &app,
            &lead,
            "POST",
            "/api/workflows/dream/bindings",
            Some(bind)
        )
        .await
        .0,
        201
    );
    // A model the endpoint never had is refused at submission, by name.
    let (s, b) = call(&app, &lead, "POST", "/api/runs",
        Some(json!({"template": "workflow-dream", "params": {"prompt": "x", "checkpoint": "nightmare.safetensors"}}))).await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b.to_string().contains("nightmare.safetensors") && b.to_string().contains("checkpoints"),
        "{b}"
    );
    // The only slot is taken by a held prompt; the next run is accepted (the model is
    // there), then the model leaves before its turn.
    comfy.hold();
    let (_, first) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(json!({"template": "workflow-dream", "params": {"prompt": "first"}})),
    )
    .await;
    let (s, second) = call(&app, &lead, "POST", "/api/runs",
        Some(json!({"template": "workflow-dream", "params": {"prompt": "second", "checkpoint": "dream-v2.safetensors"}}))).await;
    assert_eq!(s, 201, "{second}");
    eventually(
        "the first prompt to reach the fake",
        Duration::from_secs(30),
        || async { seen(comfy.prompts().len(), |n| *n >= 1) },
    )
    .await;
    comfy.set_models("checkpoints", &["dream-v1.safetensors"]);
    comfy.release();
    let first = wait_run(&app, &lead, first["id"].as_str().unwrap()).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    let second = wait_run(&app, &lead, second["id"].as_str().unwrap()).await;
    assert_eq!(second["state"], "failed", "{second}");
    assert!(
        second
            .to_string()
            .contains("no model file \\\"dream-v2.safetensors\\\" in checkpoints"),
        "named: {second}"
    );
    assert_eq!(
        comfy.prompts().len(),
        1,
        "the second prompt was never queued"
    );
    // Left empty, the endpoint's first checkpoint is used and recorded.
    comfy.set_models("checkpoints", &["dream-v1.safetensors"]);
    let (_, third) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(json!({"template": "workflow-dream", "params": {"prompt": "third"}})),
    )
    .await;
    let third = wait_run(&app, &lead, third["id"].as_str().unwrap()).await;
    assert_eq!(third["state"], "succeeded", "{third}");
    let sent = comfy.prompts().last().unwrap().graph.clone();
    assert_eq!(sent["4"]["inputs"]["ckpt_name"], "dream-v1.safetensors");
    // Run again exactly is refused once the endpoint no longer has the model it used.
    comfy.set_models("checkpoints", &["dream-v3.safetensors"]);
    let endpoint: uuid::Uuid =
        sqlx::query_scalar("select id from colab_endpoints where state = 'healthy'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        &format!("/api/endpoints/{endpoint}/inventory/refresh"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        &format!("/api/runs/{}/resubmit", third["id"].as_str().unwrap()),
        Some(json!({"params": {}})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b.to_string()
            .contains("no longer has model file \\\"dream-v1.safetensors\\\" in checkpoints"),
        "{b}"
    );
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_workflows_an_exported_workflow_is_imported_bound_and_run() {
    let peer = comfyui_peer::shared().await;
    let (app, lead) = slate_with(&peer.url(), |c| c.comfyui_poll_ms = 200).await;
    // What "Export (API)" gives for the harness's graph, titles and all.
    let mut graph = comfyui_peer::txt2img(64, 2, 1, "ComfyUI");
    for (id, title) in [("3", "KSampler"), ("6", "Positive"), ("7", "Negative")] {
        graph[id]["_meta"] = json!({"title": title});
    }
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(json!({"name": "fox", "workflow": graph})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, shown) = call(&app, &lead, "GET", "/api/workflows/fox", None).await;
    assert_eq!(shown["gaps"], json!([]), "{shown}");
    // Slate's proposal, as the real /object_info types it, bound as it is.
    let proposed = shown["proposed"].clone();
    let seed = proposed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "seed")
        .unwrap();
    assert_eq!(seed["type"], "seed");
    let checkpoint = proposed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "checkpoint")
        .unwrap();
    assert_eq!(checkpoint["type"], "model");
    assert_eq!(checkpoint["folder"], "checkpoints");
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows/fox/bindings",
        Some(json!({"bindings": proposed})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // The run form's model choices are the endpoint's files.
    let (s, run) = call(&app, &lead, "POST", "/api/runs",
        Some(json!({"template": "workflow-fox", "params": {"prompt": "a red fox in snow", "width": 64, "height": 64, "steps": 2}}))).await;
    assert_eq!(s, 201, "{run}");
    let done = wait_run(&app, &lead, run["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let provenance: Value =
        sqlx::query_scalar("select provenance from run_outputs where run_id = $1::uuid")
            .bind(run["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        provenance["models"],
        json!([{"node": "4", "folder": "checkpoints", "file": CHECKPOINT}])
    );
    assert!(
        provenance["seeds"]["seed"].is_u64(),
        "a drawn seed is recorded: {provenance}"
    );
    assert_eq!(
        provenance["graph"]["3"]["inputs"]["seed"],
        provenance["seeds"]["seed"]
    );
    assert!(
        provenance["endpoint"]["comfyui_version"].is_string(),
        "{provenance}"
    );
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_workflows_a_missing_model_and_node_type_are_refused_at_submission() {
    let peer = comfyui_peer::shared().await;
    let (app, lead) = slate_with(&peer.url(), |_| {}).await;
    let mut graph = comfyui_peer::txt2img(64, 2, 1, "x");
    graph["4"]["inputs"]["ckpt_name"] = json!("no-such-model.safetensors");
    graph["20"] =
        json!({"class_type": "VHS_VideoCombine", "inputs": {"images": ["8", 0], "frame_rate": 8}});
    call(
        &app,
        &lead,
        "POST",
        "/api/workflows",
        Some(json!({"name": "needs-more", "workflow": graph})),
    )
    .await;
    let bind =
        json!({"bindings": [{"name": "prompt", "node": "6", "input": "text", "type": "text"}]});
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/workflows/needs-more/bindings",
        Some(bind),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, pre) = call(
        &app,
        &lead,
        "GET",
        "/api/workflows/needs-more/preflight",
        None,
    )
    .await;
    let gaps = pre["gaps"].to_string();
    assert!(
        gaps.contains("VHS_VideoCombine") && gaps.contains("no-such-model.safetensors"),
        "{pre}"
    );
    let (s, b) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(json!({"template": "workflow-needs-more", "params": {"prompt": "x"}})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let said = b.to_string();
    assert!(
        said.contains("VHS_VideoCombine") && said.contains("no-such-model.safetensors"),
        "both named: {said}"
    );
    assert_eq!(
        app.count("select count(*) from runs").await,
        0,
        "nothing submitted"
    );
    // The bundled video workflows say what the endpoint lacks.
    let (_, ltxv) = call(
        &app,
        &lead,
        "GET",
        "/api/workflows/ltxv-image-to-video/preflight",
        None,
    )
    .await;
    assert!(
        ltxv["gaps"].to_string().contains("ltx"),
        "the LTX-Video checkpoint is named: {ltxv}"
    );
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_workflows_a_still_becomes_a_playable_clip_with_a_proxy() {
    let peer = comfyui_peer::shared().await;
    let (app, lead) = slate_with(&peer.url(), |c| c.comfyui_poll_ms = 200).await;
    let dir = app.config.data_dir.join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let still = dir.join("key.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x96",
        "-frames:v",
        "1",
        still.to_str().unwrap(),
    ]);
    let (image, state) = slate_tests::tus::Tus::new(&app)
        .await
        .upload("key.png", &std::fs::read(&still).unwrap())
        .await;
    assert_eq!(state, "ready");
    let (s, run) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(json!({"template": "workflow-still-to-clip",
        "params": {"image": image, "frames": 12, "fps": 12, "width": 128, "height": 96}})),
    )
    .await;
    assert_eq!(s, 201, "{run}");
    let done = wait_run(&app, &lead, run["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let (asset, name, provenance): (uuid::Uuid, String, Value) = sqlx::query_as(
        "select o.asset_id, a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id where o.run_id = $1::uuid",
    )
    .bind(run["id"].as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(name.ends_with(".mp4"), "{name}");
    assert_eq!(provenance["media"], "video");
    assert_eq!(
        slate_tests::tus::wait_processed(&app, &asset.to_string()).await,
        "ready"
    );
    let (kind, probe, proxy): (String, Option<Value>, Option<String>) = sqlx::query_as(
        "select a.kind, v.probe, v.proxy_key from assets a join asset_versions v on v.id = a.current_version_id where a.id = $1",
    )
    .bind(asset)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(kind, "video", "{probe:?}");
    assert!(proxy.is_some(), "a proxy was made: {probe:?}");
    let video = probe.unwrap_or_default().to_string();
    assert!(video.contains("h264"), "a playable H.264 stream: {video}");
    app.stop().await;
}

#[tokio::test]
async fn comfy_real_workflows_a_keyframe_from_one_stage_is_animated_by_the_next() {
    let peer = comfyui_peer::shared().await;
    let (app, lead) = slate_with(&peer.url(), |c| c.comfyui_poll_ms = 200).await;
    // The keyframe stage's node 9 (SaveImage) feeds the clip stage's image.
    let source = "name: key-and-clip\ntitle: Key and clip\nparameters:\n  - {name: prompt, type: text}\n  - {name: seed, type: seed}\nstages:\n  - name: keyframe\n    executor: comfyui\n    workflow: txt2img\n    inputs:\n      prompt: ${params.prompt}\n      seed: ${params.seed}\n      width: 64\n      height: 64\n      steps: 2\n  - name: clip\n    executor: comfyui\n    workflow: still-to-clip\n    inputs:\n      image: ${stages.keyframe.outputs.9}\n      frames: 6\n      fps: 6\n      width: 64\n      height: 64\n";
    super::save_template(&app, source).await;
    let (s, run) = call(
        &app,
        &lead,
        "POST",
        "/api/runs",
        Some(json!({"template": "key-and-clip", "params": {"prompt": "a paper boat"}})),
    )
    .await;
    assert_eq!(s, 201, "{run}");
    let done = wait_run(&app, &lead, run["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "select a.name, o.provenance from run_outputs o join assets a on a.id = o.asset_id
         where o.run_id = $1::uuid order by a.name",
    )
    .bind(run["id"].as_str().unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(
        names.iter().any(|n| n.contains("-clip-5-0001.mp4")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("-keyframe-9-0001.png")),
        "{names:?}"
    );
    let clip = &rows.iter().find(|r| r.0.ends_with(".mp4")).unwrap().1;
    let loaded = clip["graph"]["1"]["inputs"]["image"]
        .as_str()
        .unwrap_or_default();
    assert!(
        loaded.contains("keyframe_9_0001.png"),
        "the keyframe was uploaded and bound: {clip}"
    );
    app.stop().await;
}
