//! The bundled ComfyUI workflows (app/src/comfyui/builtin/*.json) against the real
//! ComfyUI (0.3.64 on CPU, `slate_tests::comfyui_peer`): every class and literal input
//! they name exists there with the values they give, only the inputs a binding fills
//! are refused as they stand, and the model-free still-to-clip workflow makes a real
//! H.264 MP4 through Slate's ComfyUI client. Test names hold `comfy_real`, so that
//! `SLATE_TEST_SKIP_PEERS=comfyui` leaves them out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use server::comfyui::address::HostRules;
use server::comfyui::client::{ComfyClient, ComfyError, Media, PromptState};
use server::comfyui::probe::Prober;
use slate_tests::comfyui_peer;

/// A few frames at 64×48 on two shared cores, with everything else building beside it.
const PROMPT: Duration = Duration::from_secs(240);

/// Every bundled workflow file: its name and its JSON.
fn bundled() -> Vec<(String, Value)> {
    let dir = slate_tests::root().join("app/src/comfyui/builtin");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the bundled workflows: {files:?}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let doc: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_stem().unwrap().to_string_lossy().into_owned(), doc)
        })
        .collect()
}

fn is_link(v: &Value) -> bool {
    matches!(
        v.as_array().map(Vec::as_slice),
        Some([Value::String(_), Value::Number(_)])
    )
}

/// The declaration of `input` on a class of `/object_info` (`[TYPE, options?]`).
fn declared<'a>(class: &'a Value, input: &str) -> Option<&'a Value> {
    ["required", "optional"]
        .iter()
        .find_map(|part| class["input"][part].get(input))
}

/// A combo's choices, in the legacy shape (`[[...], {...}]`) or the new one
/// (`["COMBO", {"options": [...]}]`).
fn choices(decl: &Value) -> Option<Vec<String>> {
    let list = match &decl[0] {
        Value::Array(list) => list,
        Value::String(t) if t == "COMBO" => decl[1]["options"].as_array()?,
        _ => return None,
    };
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

#[test]
fn every_bundled_workflow_file_reads_as_slate_reads_bundles() {
    use app::comfyui::workflow::{check_bindings, check_graph, Bundle};
    for (file, doc) in bundled() {
        let bundle: Bundle = serde_json::from_value(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(bundle.name, file);
        check_graph(&bundle.graph).unwrap_or_else(|e| panic!("{file}: {e}"));
        let problems = check_bindings(&bundle.graph, &bundle.bindings, None);
        assert!(problems.is_empty(), "{file}: {problems:?}");
        // Each says what it makes frames of, where the model has a rule for them.
        if let Some(frames) = bundle.bindings.iter().find(|b| b.param.name == "frames") {
            let help = frames.param.help.as_deref().unwrap_or_default();
            if file.starts_with("ltxv") {
                assert!(help.contains("8n+1"), "{file}: {help}");
            } else if file.starts_with("wan") {
                assert!(help.contains("4n+1"), "{file}: {help}");
            }
        }
    }
}

#[tokio::test]
async fn comfy_real_every_bundled_workflow_names_only_what_the_real_comfyui_has() {
    let peer = comfyui_peer::shared().await;
    let info: Value = serde_json::from_slice(&peer.get("/object_info").await).unwrap();
    let folders: Value = serde_json::from_slice(&peer.get("/models").await).unwrap();
    let mut checked = BTreeMap::<String, usize>::new();
    for (file, doc) in bundled() {
        assert_eq!(
            doc["name"].as_str(),
            Some(file.as_str()),
            "{file}: its name"
        );
        assert!(
            doc["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}"
        );
        let graph = doc["graph"].as_object().expect("a graph");
        let bindings = doc["bindings"].as_array().expect("bindings");
        // Which literal inputs a binding fills, and with what type.
        let bound: BTreeMap<(String, String), &Value> = bindings
            .iter()
            .map(|b| {
                let key = (
                    b["node"].as_str().unwrap().to_owned(),
                    b["input"].as_str().unwrap().to_owned(),
                );
                (key, b)
            })
            .collect();
        assert_eq!(bound.len(), bindings.len(), "{file}: one binding an input");

        for (id, node) in graph {
            let class_name = node["class_type"].as_str().unwrap();
            let class = info
                .get(class_name)
                .unwrap_or_else(|| panic!("{file}: node {id}: no class {class_name} on ComfyUI"));
            *checked.entry(class_name.to_owned()).or_default() += 1;
            for (input, value) in node["inputs"].as_object().unwrap() {
                let decl = declared(class, input).unwrap_or_else(|| {
                    panic!("{file}: node {id}: {class_name} has no input {input}")
                });
                if is_link(value) {
                    // A link names a node of the graph and an output of its type.
                    let from = value[0].as_str().unwrap();
                    let index = value[1].as_u64().unwrap() as usize;
                    let source = &graph[from];
                    let outputs = &info[source["class_type"].as_str().unwrap()]["output"];
                    let given = outputs[index].as_str().unwrap_or_else(|| {
                        panic!("{file}: node {id}.{input}: {from} has no output {index}")
                    });
                    if let Some(wanted) = decl[0].as_str().filter(|t| *t != "COMBO" && *t != "*") {
                        assert_eq!(given, wanted, "{file}: node {id}.{input} from {from}");
                    }
                    continue;
                }
                let binding = bound.get(&(id.clone(), input.clone()));
                let ty = binding.and_then(|b| b["type"].as_str());
                if let Some(options) = choices(decl) {
                    // Loader files and uploads are the endpoint's business (pre-flight);
                    // every other choice must be one ComfyUI offers.
                    if !matches!(ty, Some("model" | "asset")) {
                        let v = value.as_str().unwrap();
                        assert!(
                            options.iter().any(|o| o == v),
                            "{file}: node {id}.{input} = {v:?}, not in {options:?}"
                        );
                    }
                } else {
                    let (min, max) = (decl[1]["min"].as_f64(), decl[1]["max"].as_f64());
                    if let Some(v) = value.as_f64() {
                        assert!(
                            min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m),
                            "{file}: node {id}.{input} = {v}"
                        );
                    }
                }
            }
        }

        for b in bindings {
            let name = b["name"].as_str().unwrap();
            let (id, input) = (b["node"].as_str().unwrap(), b["input"].as_str().unwrap());
            let value = &graph
                .get(id)
                .unwrap_or_else(|| panic!("{file}: binding {name}: no node {id}"))["inputs"][input];
            assert!(
                !value.is_null() && !is_link(value),
                "{file}: binding {name}: {id}.{input} is not a literal"
            );
            let decl = declared(&info[graph[id]["class_type"].as_str().unwrap()], input).unwrap();
            match b["type"].as_str().unwrap() {
                "model" => {
                    let folder = b["folder"].as_str().unwrap();
                    assert!(
                        folders.as_array().unwrap().iter().any(|f| f == folder),
                        "{file}: binding {name}: no folder {folder}"
                    );
                    assert!(
                        choices(decl).is_some(),
                        "{file}: binding {name}: not a file choice"
                    );
                }
                "enum" => {
                    let offered = choices(decl).unwrap();
                    for o in b["options"].as_array().unwrap() {
                        assert!(
                            offered.iter().any(|x| x == o),
                            "{file}: binding {name}: {o} is not offered"
                        );
                    }
                }
                "integer" | "float" => {
                    let wanted = if b["type"] == "integer" {
                        "INT"
                    } else {
                        "FLOAT"
                    };
                    assert_eq!(decl[0].as_str(), Some(wanted), "{file}: binding {name}");
                    let (min, max) = (decl[1]["min"].as_f64(), decl[1]["max"].as_f64());
                    let (bmin, bmax) = (b["min"].as_f64().unwrap(), b["max"].as_f64().unwrap());
                    assert!(
                        min.is_none_or(|m| bmin >= m) && max.is_none_or(|m| bmax <= m),
                        "{file}: binding {name}: {bmin}..{bmax} outside {min:?}..{max:?}"
                    );
                }
                "seed" => assert_eq!(decl[0].as_str(), Some("INT"), "{file}: binding {name}"),
                "text" | "string" => {
                    assert_eq!(decl[0].as_str(), Some("STRING"), "{file}: binding {name}")
                }
                "asset" => assert!(
                    decl[1]["image_upload"] == json!(true)
                        || decl[1]["video_upload"] == json!(true)
                        || decl[1]["audio_upload"] == json!(true),
                    "{file}: binding {name}: not an upload"
                ),
                other => panic!("{file}: binding {name}: type {other}"),
            }
            if let Some(default) = b.get("default") {
                assert_eq!(
                    default, value,
                    "{file}: binding {name}: the graph holds its default"
                );
            }
        }

        // With an upload that is not there (an empty name passes: it names the input
        // folder itself), ComfyUI's own validation refuses only the inputs a model or
        // asset binding fills (the models this peer lacks, the empty checkpoint name):
        // links, types and every other value pass, and nothing runs.
        let mut graph = doc["graph"].clone();
        for b in bindings.iter().filter(|b| b["type"] == "asset") {
            graph[b["node"].as_str().unwrap()]["inputs"][b["input"].as_str().unwrap()] =
                json!("slate-no-such-upload.png");
        }
        let answer = reqwest::Client::new()
            .post(format!("{}prompt", peer.url()))
            .json(&json!({"prompt": graph, "client_id": "bundled-check"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{file}: refused as it stands");
        let answer: Value = answer.json().await.unwrap();
        let errors = answer["node_errors"]
            .as_object()
            .unwrap_or_else(|| panic!("{file}: {answer}"));
        assert!(!errors.is_empty(), "{file}: {answer}");
        for (id, node) in errors {
            for e in node["errors"].as_array().unwrap() {
                let input = e["extra_info"]["input_name"].as_str().unwrap_or_default();
                let b = bound.get(&(id.clone(), input.to_owned()));
                assert!(
                    b.is_some_and(|b| matches!(b["type"].as_str(), Some("model" | "asset"))),
                    "{file}: node {id}: ComfyUI refuses an input no model or asset binding fills: {e}"
                );
            }
        }
    }
    for class in [
        "CheckpointLoaderSimple",
        "KSampler",
        "LoadImage",
        "ImageScale",
        "RepeatImageBatch",
        "CreateVideo",
        "SaveVideo",
        "CLIPLoader",
        "LTXVConditioning",
        "EmptyLTXVLatentVideo",
        "LTXVImgToVideo",
        "LTXVPreprocess",
        "LTXVScheduler",
        "SamplerCustom",
        "KSamplerSelect",
        "PrimitiveFloat",
        "UNETLoader",
        "VAELoader",
        "EmptyHunyuanLatentVideo",
        "ModelSamplingSD3",
    ] {
        assert!(
            checked.contains_key(class),
            "{class} was checked: {checked:?}"
        );
    }
}

/// Sets each binding's input to the value given for its name (the lead's binding code
/// does this for runs; here it is done by hand).
fn bind(doc: &Value, values: &[(&str, Value)]) -> Value {
    let mut graph = doc["graph"].clone();
    for (name, value) in values {
        let b = doc["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == *name)
            .unwrap_or_else(|| panic!("no binding {name}"));
        let (node, input) = (b["node"].as_str().unwrap(), b["input"].as_str().unwrap());
        graph[node]["inputs"][input] = value.clone();
    }
    graph
}

#[tokio::test]
async fn comfy_real_a_still_becomes_an_h264_clip_through_the_client() {
    let peer = comfyui_peer::shared().await;
    let client = ComfyClient::new(Prober::new(HostRules::parse("", true)), &peer.url());
    let dir = slate_tests::test_data_root()
        .join(format!("still-to-clip-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let still = dir.join("still.png");
    slate_tests::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=80x60",
        "-frames:v",
        "1",
        still.to_str().unwrap(),
    ]);
    // A new name each time: an identical graph is answered from ComfyUI's cache.
    let name = format!("slate_{}_still.png", uuid::Uuid::new_v4().simple());
    let uploaded = client
        .upload_file(&name, std::fs::read(&still).unwrap())
        .await
        .unwrap();
    assert_eq!(uploaded, name);

    let (_, doc) = bundled()
        .into_iter()
        .find(|(f, _)| f == "still-to-clip")
        .unwrap();
    let graph = bind(
        &doc,
        &[
            ("image", json!(uploaded)),
            ("frames", json!(7)),
            ("fps", json!(12.0)),
            ("width", json!(64)),
            ("height", json!(48)),
        ],
    );
    let submitted = client.submit(&graph, "slate-still-to-clip").await.unwrap();
    let done = tokio::time::timeout(
        PROMPT,
        client.follow(&submitted.prompt_id, Duration::from_millis(250), |_| {}),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the clip within {PROMPT:?}; ComfyUI's log:\n{}",
            peer.log_tail()
        )
    })
    .unwrap();
    let PromptState::Succeeded { outputs } = done else {
        panic!("{done:?}\n{}", peer.log_tail())
    };
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    let clip = &outputs[0];
    assert_eq!(
        (
            clip.node.as_str(),
            clip.subfolder.as_str(),
            clip.kind.as_str()
        ),
        ("5", "video", "output")
    );
    assert!(
        clip.filename.starts_with("slate_") && clip.filename.ends_with(".mp4"),
        "{clip:?}"
    );
    assert_eq!(clip.media, Media::Video);
    // ComfyUI lists it under `images`, flagged animated (comfyui-workflows.md §5).
    let history = peer.history(&submitted.prompt_id).await;
    let output = &history[&submitted.prompt_id]["outputs"]["5"];
    assert_eq!(output["images"][0]["filename"], json!(clip.filename));
    assert_eq!(output["animated"], json!([true]));

    let bytes = client.download(clip).await.unwrap();
    let file = dir.join("clip.mp4");
    std::fs::write(&file, bytes).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,r_frame_rate,pix_fmt",
            "-of",
            "json",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe is installed");
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264", "{probe}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(64), Some(48))
    );
    assert_eq!(
        stream["nb_read_frames"], "7",
        "the still held for 7 frames: {probe}"
    );
    assert_eq!(stream["r_frame_rate"], "12/1");
    assert_eq!(stream["pix_fmt"], "yuv420p");

    // A file ComfyUI refuses (the graph names an upload that is not there) is a refusal,
    // named by node and input, not a failed run.
    let missing = bind(&doc, &[("image", json!("no-such-still.png"))]);
    let err = client
        .submit(&missing, "slate-still-to-clip")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ComfyError::Rejected { message, .. } if message.contains("node 1 (LoadImage)") && message.contains("image")),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
