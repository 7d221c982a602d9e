//! What the endpoint's machine has (its nodes and models), fetched when it is verified
//! and on demand, shown over the API and on the Colab page, and the pre-flight of a graph
//! against it: against the fake ComfyUI (a node pack, a model list that changes, a
//! tunnel that goes away, who may refresh) and against the real one (`comfy_real`).

use std::time::Duration;

use app::comfyui::inventory::InputKind;
use serde_json::{json, Value};
use server::comfyui::address::HostRules;
use server::comfyui::probe::Prober;
use slate_tests::comfyui_peer::{self, CHECKPOINT};
use slate_tests::fake_comfy::{FakeComfy, Mode, DEFAULT_CHECKPOINT};
use slate_tests::{eventually, spawn_app_with, TestApp, ADMIN_EMAIL};

/// Verification and the inventory after it, against the fake (a few requests on
/// loopback).
const FAKE: Duration = Duration::from_secs(10);
/// ComfyUI on two shared cores starts in 5–30 s, then answers `/object_info` (0.5 MB).
const REAL: Duration = Duration::from_secs(180);

async fn slate(verify_seconds: u64) -> TestApp {
    spawn_app_with(|c| {
        c.colab_allow_loopback = true;
        c.colab_verify_seconds = verify_seconds;
    })
    .await
}

/// Reports `url` as the notebook would and waits until its inventory is kept; returns
/// the endpoint's id.
async fn endpoint_with_inventory(app: &TestApp, url: &str, within: Duration) -> String {
    let secret = slate_tests::colab_secret(app).await;
    slate_tests::colab_up(app, &secret, "inv-1", url).await;
    let id: uuid::Uuid = eventually("the endpoint's inventory to be kept", within, || async {
        sqlx::query_scalar::<_, uuid::Uuid>(
            "select i.endpoint_id from endpoint_inventories i join colab_endpoints e on e.id = i.endpoint_id
             where e.state = 'healthy' and i.fetched_at is not null",
        )
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    })
    .await;
    id.to_string()
}

async fn get(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, Value) {
    let res = client.get(app.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, client: &reqwest::Client, path: &str, body: &Value) -> (u16, Value) {
    let res = client.post(app.url(path)).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Two classes of VideoHelperSuite, as a node pack lists them.
fn video_helper_suite() -> Value {
    json!({
        "VHS_VideoCombine": {
            "input": {"required": {"images": ["IMAGE"], "frame_rate": ["FLOAT", {"default": 8, "min": 1, "step": 1}],
                "format": [["image/gif", "video/h264-mp4"], {}]}, "hidden": {"prompt": "PROMPT"}},
            "output": ["VHS_FILENAMES"], "output_node": true, "category": "Video Helper Suite 🎥🅥🅗🅢",
            "python_module": "custom_nodes.comfyui-videohelpersuite"
        },
        "VHS_LoadVideo": {
            "input": {"required": {"video": [["clip.mp4"], {"video_upload": true}], "force_rate": ["FLOAT", {"default": 0, "min": 0, "max": 60}]}},
            "output": ["IMAGE", "INT", "AUDIO"], "python_module": "custom_nodes.comfyui-videohelpersuite"
        }
    })
}

#[tokio::test]
async fn inventory_of_an_endpoint_tells_packs_apart_and_a_refresh_follows_its_model_list() {
    let comfy = FakeComfy::start(Mode::Current).await;
    comfy.add_nodes(video_helper_suite());
    let app = slate(5).await;
    let id = endpoint_with_inventory(&app, &comfy.url(), FAKE).await;

    let creator = app.signed_in("maya@studio.test", "creator").await;
    let (status, current) = get(&app, &creator, "/api/endpoints/current/inventory").await;
    assert_eq!(status, 200, "{current}");
    assert_eq!(current["endpoint"], id.as_str());
    assert_eq!(current["comfyui_version"], "0.3.40");
    assert_eq!(current["core_nodes"], 10, "{}", current["packs"]);
    assert_eq!(current["packs"], json!({"comfyui-videohelpersuite": 2}));
    assert_eq!(
        current["nodes"]["VHS_VideoCombine"]["pack"],
        "comfyui-videohelpersuite"
    );
    assert!(current["nodes"]["KSampler"]["pack"].is_null());
    assert_eq!(
        current["models"],
        json!({"checkpoints": [DEFAULT_CHECKPOINT], "loras": [], "vae": []}),
        "every folder but custom_nodes (not models)"
    );
    assert!(current["error"].is_null(), "{}", current["error"]);
    let (status, same) = get(&app, &creator, &format!("/api/endpoints/{id}/inventory")).await;
    assert_eq!(status, 200);
    assert_eq!(same, current);

    // The machine changes: two checkpoints now, a LoRA. A creator may not ask again…
    comfy.set_models("checkpoints", &["a.safetensors", "b.safetensors"]);
    comfy.set_models("loras", &["style.safetensors"]);
    let refresh = format!("/api/endpoints/{id}/inventory/refresh");
    let (status, refused) = post(&app, &creator, &refresh, &json!({})).await;
    assert_eq!(status, 403, "{refused}");
    let (_, unchanged) = get(&app, &creator, "/api/endpoints/current/inventory").await;
    assert_eq!(
        unchanged["models"]["checkpoints"],
        json!([DEFAULT_CHECKPOINT])
    );
    let res = app
        .call(
            &creator,
            "/api/lead/colab_refresh_inventory",
            &[("id", &id)],
        )
        .await;
    assert_eq!(res.status(), 403, "nor through the page's server function");

    // …a lead may, and sees the new lists, the loader's choices with them.
    let lead = app.signed_in("lee@studio.test", "lead").await;
    let (status, fresh) = post(&app, &lead, &refresh, &json!({})).await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(
        fresh["models"]["checkpoints"],
        json!(["a.safetensors", "b.safetensors"])
    );
    assert_eq!(fresh["models"]["loras"], json!(["style.safetensors"]));
    assert_eq!(
        fresh["nodes"]["CheckpointLoaderSimple"]["inputs"][0]["kind"]["options"],
        json!(["a.safetensors", "b.safetensors"])
    );
    let (_, current) = get(&app, &creator, "/api/endpoints/current/inventory").await;
    assert_eq!(current["models"], fresh["models"]);
    // The page's Refresh button (a server function) does the same for a lead.
    let res = app
        .call(&lead, "/api/lead/colab_refresh_inventory", &[("id", &id)])
        .await;
    assert_eq!(res.status(), 200);

    // Audited, as the person who asked (only the ones that were allowed).
    let audit: Vec<(String, Option<String>, Value)> = sqlx::query_as(
        "select actor_label, target, detail from audit_log where action = 'endpoint.inventory_refresh'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a.0 == "lee@studio.test"), "{audit:?}");
    assert_eq!(audit[0].0, "lee@studio.test");
    assert_eq!(audit[0].2["ok"], true);
    assert_eq!(audit[0].2["endpoint_id"], id.as_str());
    assert!(
        !audit[0]
            .1
            .clone()
            .unwrap_or_default()
            .contains(&comfy.addr.port().to_string()),
        "the URL is a credential: only its redacted form is kept"
    );

    // The admin page shows the same.
    let overview: Value = app
        .as_admin("/api/admin/colab_overview", &[])
        .await
        .json()
        .await
        .unwrap();
    let shown = &overview["inventory"];
    assert_eq!(shown["core_nodes"], 10, "{shown}");
    assert_eq!(shown["packs"], json!([["comfyui-videohelpersuite", 2]]));
    assert_eq!(
        shown["models"][0],
        json!(["checkpoints", ["a.safetensors", "b.safetensors"]])
    );
    app.stop().await;
}

#[tokio::test]
async fn inventory_refresh_of_a_tunnel_that_went_away_keeps_the_last_one_and_says_why() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let app = slate(5).await;
    let id = endpoint_with_inventory(&app, &comfy.url(), FAKE).await;
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;

    comfy.set_mode(Mode::Cloudflare(530));
    let (status, refused) = post(
        &app,
        &admin,
        &format!("/api/endpoints/{id}/inventory/refresh"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("the tunnel is gone"),
        "{refused}"
    );
    // What was fetched before stays, with what went wrong since.
    comfy.set_mode(Mode::Current);
    let (status, kept) = get(&app, &admin, &format!("/api/endpoints/{id}/inventory")).await;
    assert_eq!(status, 200);
    assert_eq!(kept["models"]["checkpoints"], json!([DEFAULT_CHECKPOINT]));
    assert!(
        kept["error"].as_str().unwrap().contains("GET /object_info"),
        "{}",
        kept["error"]
    );
    let detail: Value = sqlx::query_scalar(
        "select detail from audit_log where action = 'endpoint.inventory_refresh'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(detail["ok"], false, "a refused refresh is audited too");

    // Unknown and ended endpoints.
    let nobody = uuid::Uuid::now_v7();
    let (status, _) = get(&app, &admin, &format!("/api/endpoints/{nobody}/inventory")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&app, &admin, "/api/endpoints/not-an-id/inventory").await;
    assert_eq!(status, 404);
    sqlx::query("update colab_endpoints set state = 'down', ended_at = now()")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, refused) = post(
        &app,
        &admin,
        &format!("/api/endpoints/{id}/inventory/refresh"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    let (status, _) = get(&app, &admin, "/api/endpoints/current/inventory").await;
    assert_eq!(status, 409, "no healthy endpoint");
    let (status, refused) = post(
        &app,
        &admin,
        "/api/comfyui/preflight",
        &json!({"graph": {"1": {"class_type": "SaveImage", "inputs": {}}}}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"]
        .as_str()
        .unwrap()
        .contains("no healthy endpoint"));
    // Not signed in.
    let res = app
        .bare_client()
        .get(app.url("/api/endpoints/current/inventory"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn inventory_preflight_names_missing_nodes_and_models_and_refuses_what_is_not_a_graph() {
    let comfy = FakeComfy::start(Mode::Current).await;
    let app = slate(5).await;
    let id = endpoint_with_inventory(&app, &comfy.url(), FAKE).await;
    let creator = app.signed_in("maya@studio.test", "creator").await;

    let mut graph = comfyui_peer::txt2img(64, 1, 7, "pf");
    graph["4"]["inputs"]["ckpt_name"] = json!(DEFAULT_CHECKPOINT);
    let (status, fine) = post(
        &app,
        &creator,
        "/api/comfyui/preflight",
        &json!({"graph": graph}),
    )
    .await;
    assert_eq!(status, 200, "{fine}");
    assert_eq!(fine["endpoint"], id.as_str());
    assert_eq!(fine["gaps"], json!([]), "{fine}");

    graph["4"]["inputs"]["ckpt_name"] = json!("x.safetensors");
    graph["5"]["inputs"]["width"] = json!(99999);
    graph["12"] =
        json!({"class_type": "VHS_VideoCombine", "inputs": {"images": ["8", 0], "frame_rate": 8}});
    let (status, answer) = post(
        &app,
        &creator,
        "/api/comfyui/preflight",
        &json!({"graph": graph}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["messages"],
        json!([
            "node 12 uses VHS_VideoCombine, which this endpoint does not have (a custom node, or one from a newer ComfyUI)",
            "node 4 (CheckpointLoaderSimple): model file \"x.safetensors\" is not in checkpoints on this endpoint",
            "node 5 (EmptyLatentImage): width is 99999, but this endpoint takes from 16 to 16384",
        ])
    );
    assert_eq!(answer["gaps"][0]["gap"], "missing_node");
    assert_eq!(answer["gaps"][1]["folder"], "checkpoints");

    // Once the pack is installed (and the inventory refreshed), only the model is missing.
    comfy.add_nodes(video_helper_suite());
    let admin = app.signed_in(ADMIN_EMAIL, "admin").await;
    let (status, _) = post(
        &app,
        &admin,
        &format!("/api/endpoints/{id}/inventory/refresh"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, answer) = post(
        &app,
        &creator,
        "/api/comfyui/preflight",
        &json!({"graph": graph}),
    )
    .await;
    assert_eq!(
        answer["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["gap"].clone())
            .collect::<Vec<_>>(),
        [
            json!("missing_model"),
            json!("out_of_range"),
            json!("missing_input")
        ],
        "{answer}"
    );
    assert_eq!(
        answer["gaps"][2]["input"], "format",
        "VHS_VideoCombine needs its format"
    );

    // Bodies that are not graphs: 422 with the reason; nothing is asked of the endpoint.
    let hits = comfy.hits();
    for (body, reason) in [
        (json!({"nodes": []}), "needs a \"graph\""),
        (json!({"graph": "text"}), "object of nodes"),
        (json!({"graph": {"nodes": [], "links": []}}), "Export (API)"),
        (
            json!({"graph": {"3": {"inputs": {}}}}),
            "Node 3 has no class_type",
        ),
    ] {
        let (status, refused) = post(&app, &creator, "/api/comfyui/preflight", &body).await;
        assert_eq!(status, 422, "{body}: {refused}");
        assert!(
            refused["message"].as_str().unwrap().contains(reason),
            "{refused}"
        );
    }
    let res = creator
        .post(app.url("/api/comfyui/preflight"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(comfy.hits(), hits);
    app.stop().await;
}

fn loopback() -> Prober {
    Prober::new(HostRules::parse("", true))
}

#[tokio::test]
async fn comfy_real_inventory_lists_its_checkpoint_and_core_nodes_and_preflight_matches_it() {
    let peer = comfyui_peer::shared().await;
    // The fetch itself: everything answers.
    let (fetched, problems) = server::comfyui::inventory::fetch(&loopback(), &peer.url())
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(fetched.comfyui_version.as_deref(), Some("0.3.64"));

    let app = slate(120).await;
    let id = endpoint_with_inventory(&app, &peer.url(), REAL).await;
    let (endpoint, inventory, _) = server::comfyui::inventory::current(&app.pool)
        .await
        .expect("the current endpoint's inventory");
    assert_eq!(endpoint.to_string(), id);
    assert_eq!(
        inventory.models.get("checkpoints"),
        Some(&vec![CHECKPOINT.to_owned()])
    );
    assert!(
        inventory.core_nodes() >= 400,
        "{} core nodes",
        inventory.core_nodes()
    );
    assert!(inventory.packs().is_empty(), "{:?}", inventory.packs());
    let seed = inventory.nodes["KSampler"].input("seed").unwrap();
    assert!(
        matches!(seed.kind, InputKind::Int { min: Some(0), max: Some(max), .. } if max == 18_446_744_073_709_551_615),
        "{seed:?}"
    );
    assert!(matches!(
        &inventory.nodes["LoadImage"].input("image").unwrap().kind,
        InputKind::Combo { upload: Some(u), .. } if u == "image"
    ));
    assert!(matches!(
        &inventory.nodes["LoadVideo"].input("file").unwrap().kind,
        InputKind::Combo { upload: Some(u), .. } if u == "video"
    ));
    assert_eq!(
        inventory.model_folder("CheckpointLoaderSimple", "ckpt_name"),
        Some("checkpoints")
    );

    // Graphs the real ComfyUI runs have no gaps (pre-flight refuses nothing it accepts)…
    let creator = app.signed_in("maya@studio.test", "creator").await;
    for graph in [
        comfyui_peer::txt2img(64, 1, 7, "pf"),
        comfyui_peer::heavy_graph(10, 0xff8800),
    ] {
        let (status, answer) = post(
            &app,
            &creator,
            "/api/comfyui/preflight",
            &json!({"graph": graph}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["gaps"], json!([]), "{answer}");
    }
    // …and one with a missing model and a missing class names both, as the real
    // ComfyUI would refuse them (it names only the first missing class).
    let mut graph = comfyui_peer::txt2img(64, 1, 7, "pf");
    graph["4"]["inputs"]["ckpt_name"] = json!("no-such-model.safetensors");
    graph["12"] =
        json!({"class_type": "VHS_VideoCombine", "inputs": {"images": ["8", 0], "frame_rate": 8}});
    let (status, answer) = post(
        &app,
        &creator,
        "/api/comfyui/preflight",
        &json!({"graph": graph}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["messages"],
        json!([
            "node 12 uses VHS_VideoCombine, which this endpoint does not have (a custom node, or one from a newer ComfyUI)",
            "node 4 (CheckpointLoaderSimple): model file \"no-such-model.safetensors\" is not in checkpoints on this endpoint",
        ])
    );
    let refused = reqwest::Client::new()
        .post(format!("{}prompt", peer.url()))
        .json(&json!({"prompt": graph}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("VHS_VideoCombine"),
        "the real ComfyUI refuses the same graph: {refused}"
    );
    app.stop().await;
}
