//! A ComfyUI workflow in API format (the only form `POST /prompt` runs), as Slate
//! stores it: the graph, checked before it is kept (`parse_graph`), and its bindings,
//! the literal inputs a person fills in, each a template parameter (`Binding`).
//! Slate proposes the usual ones (`propose`), checks them against the graph and, when
//! one is known, against the endpoint's inventory (`check_bindings`), and binds a run's
//! values into the graph (`bind`). Decision 0014.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::inventory::{InputKind, Inventory};
use crate::pipelines::template::{ParamType, Parameter};

/// Largest workflow accepted, as JSON text.
pub const MAX_GRAPH_BYTES: usize = 4 * 1024 * 1024;
/// Most nodes in one workflow.
pub const MAX_NODES: usize = 2000;
/// Most bindings on one workflow.
pub const MAX_BINDINGS: usize = 64;

/// An API-format graph: node id → `{class_type, inputs, _meta?}`.
pub type Graph = Map<String, Value>;

/// What a person is told when they bring the editor's format.
pub const UI_FORMAT: &str = "This is ComfyUI's editor format (it has \"nodes\" and \"links\"), which ComfyUI cannot run as it is. Export the API format instead: in ComfyUI open the Workflow menu and choose \"Export (API)\" (in the legacy menu, turn on \"Enable dev mode options\" in the settings, then use \"Save (API Format)\"), and bring that file.";

/// Reads and checks a workflow's JSON. Accepts the API format itself or the body of a
/// `POST /prompt` (`{"prompt": {...}}`); refuses the editor's format with how to export
/// the API one, and any graph with a broken or cyclic link, naming the node and input.
pub fn parse_graph(text: &str) -> Result<Graph, String> {
    if text.len() > MAX_GRAPH_BYTES {
        return Err(format!(
            "The workflow is {} bytes; at most {} MiB is accepted.",
            text.len(),
            MAX_GRAPH_BYTES / (1024 * 1024)
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("This is not JSON ({e}); a workflow is the JSON ComfyUI exports."))?;
    graph_from_value(value)
}

/// As [`parse_graph`], from JSON already read.
pub fn graph_from_value(value: Value) -> Result<Graph, String> {
    let Value::Object(mut top) = value else {
        return Err(
            "A workflow is a JSON object keyed by node id; this JSON is not an object.".into(),
        );
    };
    if top.get("nodes").is_some_and(Value::is_array) {
        return Err(UI_FORMAT.into());
    }
    // The body of a `POST /prompt`, as scripts keep it.
    if top.len() <= 3 && top.get("prompt").is_some_and(is_api_graph) {
        if let Some(Value::Object(inner)) = top.remove("prompt") {
            top = inner;
        }
    }
    check_graph(&top)?;
    Ok(top)
}

fn is_api_graph(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        !o.is_empty()
            && o.values()
                .all(|n| n.get("class_type").is_some_and(Value::is_string))
    })
}

/// A link `["<node id>", <output index>]`, as inputs carry it.
pub fn as_link(value: &Value) -> Option<(&str, u64)> {
    match value.as_array()?.as_slice() {
        [Value::String(node), Value::Number(index)] => Some((node.as_str(), index.as_u64()?)),
        _ => None,
    }
}

fn node_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.'))
}

/// The structural checks: every node a class and inputs, every link to a node that
/// exists, no cycle.
pub fn check_graph(graph: &Graph) -> Result<(), String> {
    if graph.is_empty() {
        return Err("The workflow has no nodes.".into());
    }
    if graph.len() > MAX_NODES {
        return Err(format!(
            "The workflow has {} nodes; at most {MAX_NODES} are accepted.",
            graph.len()
        ));
    }
    for (id, node) in graph {
        if !node_id_ok(id) {
            return Err(format!("Node id \"{}\" is not a ComfyUI node id (letters, digits, ':', '_', '-' or '.', at most 64).", id.chars().take(80).collect::<String>()));
        }
        let Some(node) = node.as_object() else {
            return Err(format!(
                "Node {id} is not an object: this is not an API-format workflow."
            ));
        };
        match node.get("class_type") {
            Some(Value::String(c)) if !c.trim().is_empty() && c.len() <= 200 => {}
            _ => return Err(format!("Node {id} has no class_type: this is not an API-format workflow (export it with \"Export (API)\").")),
        }
        let Some(inputs) = node.get("inputs").and_then(Value::as_object) else {
            return Err(format!(
                "Node {id} ({}) has no inputs object.",
                class_of(graph, id)
            ));
        };
        for (input, value) in inputs {
            if let Some((from, _)) = as_link(value) {
                if !graph.contains_key(from) {
                    return Err(format!(
                        "Node {id} ({}), input \"{input}\": it is linked to node {from}, which is not in the workflow.",
                        class_of(graph, id)
                    ));
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        return Err(format!(
            "The workflow's links go round in a cycle through nodes {}: ComfyUI can only run a graph without cycles.",
            cycle.join(" → ")
        ));
    }
    Ok(())
}

/// A node's class, or "?" when it has none.
pub fn class_of<'a>(graph: &'a Graph, id: &str) -> &'a str {
    graph
        .get(id)
        .and_then(|n| n["class_type"].as_str())
        .unwrap_or("?")
}

/// A node's title (`_meta.title`), when the export gave one.
pub fn title_of<'a>(graph: &'a Graph, id: &str) -> Option<&'a str> {
    graph.get(id).and_then(|n| n["_meta"]["title"].as_str())
}

/// The nodes a node takes links from.
fn sources<'a>(graph: &'a Graph, id: &str) -> impl Iterator<Item = &'a str> {
    graph
        .get(id)
        .and_then(|n| n["inputs"].as_object())
        .into_iter()
        .flat_map(|inputs| inputs.values())
        .filter_map(|v| as_link(v).map(|(from, _)| from))
}

/// The nodes of one cycle, when there is one (depth-first, iterative: a long chain
/// of nodes must not overflow the stack).
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = graph.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for start in graph.keys() {
        if mark[start.as_str()] != Mark::New {
            continue;
        }
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, sources(graph, start).collect())];
        mark.insert(start, Mark::Open);
        while let Some((node, next)) = stack.last_mut() {
            let node = *node;
            match next.pop() {
                Some(up) => match mark.get(up).copied() {
                    Some(Mark::New) => {
                        mark.insert(up, Mark::Open);
                        stack.push((up, sources(graph, up).collect()));
                    }
                    Some(Mark::Open) => {
                        let from = stack.iter().position(|(n, _)| *n == up).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[from..].iter().map(|(n, _)| (*n).to_owned()).collect();
                        cycle.push(up.to_owned());
                        return Some(cycle);
                    }
                    _ => {}
                },
                None => {
                    mark.insert(node, Mark::Done);
                    stack.pop();
                }
            }
        }
    }
    None
}

/// One literal input a person fills in: the node and input it sets, and the template
/// parameter it is (name, label, help, type and limits, required, default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub node: String,
    pub input: String,
    #[serde(flatten)]
    pub param: Parameter,
}

/// A workflow file bundled with Slate (`app/src/comfyui/builtin/*.json`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub graph: Graph,
    #[serde(default)]
    pub bindings: Vec<Binding>,
}

/// The workflows that ship with Slate.
pub const BUNDLED: [(&str, &str); 6] = [
    ("txt2img", include_str!("builtin/txt2img.json")),
    ("img2img", include_str!("builtin/img2img.json")),
    ("still-to-clip", include_str!("builtin/still-to-clip.json")),
    (
        "ltxv-image-to-video",
        include_str!("builtin/ltxv-image-to-video.json"),
    ),
    (
        "ltxv-text-to-video",
        include_str!("builtin/ltxv-text-to-video.json"),
    ),
    (
        "wan-text-to-video",
        include_str!("builtin/wan-text-to-video.json"),
    ),
];

/// Which kind of library asset an upload input takes (`LoadImage.image` an image,
/// `LoadVideo.file` a video), from the inventory's upload flag or, without one, the
/// core loader classes.
pub fn upload_kind(
    class: &str,
    input: &str,
    inventory: Option<&Inventory>,
) -> Option<&'static str> {
    let from_inventory = inventory
        .and_then(|i| i.nodes.get(class))
        .and_then(|n| n.inputs.iter().find(|i| i.name == input))
        .and_then(|i| match &i.kind {
            InputKind::Combo {
                upload: Some(u), ..
            } => Some(u.as_str()),
            _ => None,
        });
    match from_inventory {
        Some("image") => Some("image"),
        Some("video") => Some("video"),
        Some("audio") => Some("audio"),
        _ => match (class, input) {
            ("LoadImage" | "LoadImageMask" | "LoadImageOutput", "image") => Some("image"),
            ("LoadVideo", "file") => Some("video"),
            ("LoadAudio", "audio") => Some("audio"),
            _ => None,
        },
    }
}

/// The model folder a loader's file input lists, from the inventory or the core
/// loaders' table.
pub fn model_folder(class: &str, input: &str, inventory: Option<&Inventory>) -> Option<String> {
    // A combo whose choices are exactly one folder's files lists that folder.
    let options = inventory
        .and_then(|i| i.nodes.get(class))
        .and_then(|n| n.inputs.iter().find(|i| i.name == input))
        .and_then(|i| match &i.kind {
            InputKind::Combo {
                options,
                upload: None,
                ..
            } if !options.is_empty() => Some(options),
            _ => None,
        });
    if let (Some(options), Some(inventory)) = (options, inventory) {
        if let Some((folder, _)) = inventory.models.iter().find(|(_, files)| *files == options) {
            return Some(folder.clone());
        }
    }
    let folder = match (class, input) {
        (
            "CheckpointLoaderSimple" | "ImageOnlyCheckpointLoader" | "CheckpointLoader",
            "ckpt_name",
        ) => "checkpoints",
        ("LoraLoader" | "LoraLoaderModelOnly", "lora_name") => "loras",
        ("VAELoader", "vae_name") => "vae",
        ("CLIPLoader" | "DualCLIPLoader" | "TripleCLIPLoader", i) if i.starts_with("clip_name") => {
            "text_encoders"
        }
        ("UNETLoader", "unet_name") => "diffusion_models",
        ("ControlNetLoader" | "DiffControlNetLoader", "control_net_name") => "controlnet",
        ("UpscaleModelLoader", "model_name") => "upscale_models",
        ("CLIPVisionLoader", "clip_name") => "clip_vision",
        ("StyleModelLoader", "style_model_name") => "style_models",
        _ => return None,
    };
    Some(folder.to_owned())
}

/// The literal inputs of a node (not links), in name order.
pub fn literals(graph: &Graph, id: &str) -> Vec<(String, Value)> {
    graph
        .get(id)
        .and_then(|n| n["inputs"].as_object())
        .into_iter()
        .flatten()
        .filter(|(_, v)| as_link(v).is_none())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Node ids in a readable order: numbers by value, then the rest.
pub fn node_order(graph: &Graph) -> Vec<String> {
    let mut ids: Vec<String> = graph.keys().cloned().collect();
    ids.sort_by(|a, b| match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        _ => a.cmp(b),
    });
    ids
}

/// The template parameter type of an input: from the endpoint's spec when known, from
/// the literal otherwise.
fn typed(class: &str, input: &str, literal: &Value, inventory: Option<&Inventory>) -> ParamType {
    if let Some(kind) = upload_kind(class, input, inventory) {
        return ParamType::Asset { kind: kind.into() };
    }
    if let Some(folder) = model_folder(class, input, inventory) {
        return ParamType::Model { folder };
    }
    if matches!(input, "seed" | "noise_seed") {
        return ParamType::Seed;
    }
    let spec = inventory
        .and_then(|i| i.nodes.get(class))
        .and_then(|n| n.inputs.iter().find(|i| i.name == input));
    let clamp = |v: Option<i128>| v.and_then(|v| i64::try_from(v).ok());
    match spec.map(|s| &s.kind) {
        Some(InputKind::Int { min, max, .. }) => ParamType::Integer {
            min: clamp(*min),
            max: clamp(*max),
        },
        Some(InputKind::Float { min, max, .. }) => ParamType::Float {
            min: *min,
            max: *max,
        },
        Some(InputKind::String { multiline, .. }) => {
            if *multiline {
                ParamType::Text {
                    max_length: Some(20_000),
                }
            } else {
                ParamType::String {
                    max_length: Some(2_000),
                }
            }
        }
        Some(InputKind::Boolean { .. }) => ParamType::Boolean,
        Some(InputKind::Combo { options, .. }) if !options.is_empty() => ParamType::Enum {
            options: options.clone(),
        },
        _ => match literal {
            Value::Bool(_) => ParamType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => ParamType::Integer {
                min: None,
                max: None,
            },
            Value::Number(_) => ParamType::Float {
                min: None,
                max: None,
            },
            Value::String(s) if s.contains('\n') || matches!(input, "text" | "prompt") => {
                ParamType::Text {
                    max_length: Some(20_000),
                }
            }
            _ => ParamType::String {
                max_length: Some(2_000),
            },
        },
    }
}

/// The inputs people usually fill in.
fn usual(input: &str) -> bool {
    matches!(
        input,
        "text"
            | "prompt"
            | "seed"
            | "noise_seed"
            | "steps"
            | "cfg"
            | "sampler_name"
            | "scheduler"
            | "denoise"
            | "width"
            | "height"
            | "batch_size"
            | "length"
            | "frames"
            | "frame_count"
            | "num_frames"
            | "fps"
            | "frame_rate"
    )
}

/// Slate's proposal of bindings for a graph: prompt texts (the one a sampler takes as
/// `negative` named so), seed, steps, cfg, sampler, scheduler, size, batch and frame
/// count, the files to load and each loader's model, typed from the inventory when one
/// is given.
pub fn propose(graph: &Graph, inventory: Option<&Inventory>) -> Vec<Binding> {
    // The text encoders a sampler takes as its negative conditioning.
    let negatives: BTreeSet<&str> = graph
        .values()
        .filter_map(|n| n["inputs"].get("negative").and_then(as_link))
        .map(|(from, _)| from)
        .collect();
    let mut taken = BTreeSet::new();
    let mut out = Vec::new();
    for id in node_order(graph) {
        let class = class_of(graph, &id).to_owned();
        for (input, literal) in literals(graph, &id) {
            let ty = typed(&class, &input, &literal, inventory);
            let wanted =
                usual(&input) || matches!(ty, ParamType::Asset { .. } | ParamType::Model { .. });
            if !wanted {
                continue;
            }
            let base = match input.as_str() {
                "text" | "prompt" if negatives.contains(id.as_str()) => "negative".to_owned(),
                "text" | "prompt" => "prompt".to_owned(),
                "noise_seed" => "seed".to_owned(),
                "sampler_name" => "sampler".to_owned(),
                "batch_size" => "count".to_owned(),
                "length" | "num_frames" | "frame_count" => "frames".to_owned(),
                "frame_rate" => "fps".to_owned(),
                "ckpt_name" => "checkpoint".to_owned(),
                "unet_name" => "diffusion_model".to_owned(),
                "vae_name" => "vae".to_owned(),
                "lora_name" => "lora".to_owned(),
                "clip_name" | "clip_name1" => "text_encoder".to_owned(),
                "file" | "audio" => match &ty {
                    ParamType::Asset { kind } => kind.clone(),
                    _ => param_name(&input),
                },
                other => param_name(other),
            };
            let name = if taken.contains(&base) {
                format!("{base}_{}", param_name(&id))
            } else {
                base
            };
            if taken.contains(&name) {
                continue;
            }
            taken.insert(name.clone());
            let default = match &ty {
                ParamType::Seed | ParamType::Asset { .. } => None,
                ParamType::Model { .. } => literal
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.into())),
                _ => Some(literal.clone()),
            };
            let title = title_of(graph, &id).unwrap_or(&class).to_owned();
            let required =
                !matches!(ty, ParamType::Seed | ParamType::Model { .. }) && name != "negative";
            out.push(Binding {
                node: id.clone(),
                input: input.clone(),
                param: Parameter {
                    label: Some(label_for(&name)),
                    help: Some(format!("{title} (node {id}), input {input}.")),
                    name,
                    ty,
                    required,
                    default,
                },
            });
        }
    }
    out.truncate(MAX_BINDINGS);
    out
}

/// A parameter name made from an input or node name: lower-case letters, digits, `_`.
pub fn param_name(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'n');
    }
    s
}

fn label_for(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// Every problem with a workflow's bindings, naming the binding, node and input: names
/// unique and well formed, each on a literal input that exists, of a type that fits it
/// and, with an inventory, within the endpoint's range.
pub fn check_bindings(
    graph: &Graph,
    bindings: &[Binding],
    inventory: Option<&Inventory>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if bindings.len() > MAX_BINDINGS {
        problems.push(format!(
            "{} bindings; at most {MAX_BINDINGS} are accepted.",
            bindings.len()
        ));
    }
    let mut names = BTreeSet::new();
    let mut targets = BTreeSet::new();
    for b in bindings {
        let name = &b.param.name;
        let at = format!(
            "binding \"{name}\" (node {}, input \"{}\")",
            b.node, b.input
        );
        let ident = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ident {
            problems.push(format!(
                "{at}: a name is lower-case letters, digits and '_', starting with a letter."
            ));
        }
        if !names.insert(name.clone()) {
            problems.push(format!("{at}: the name \"{name}\" is used twice."));
        }
        if !targets.insert((b.node.clone(), b.input.clone())) {
            problems.push(format!("{at}: another binding already sets this input."));
        }
        let Some(node) = graph.get(&b.node) else {
            problems.push(format!("{at}: the workflow has no node {}.", b.node));
            continue;
        };
        let class = class_of(graph, &b.node);
        let Some(value) = node["inputs"].get(&b.input) else {
            problems.push(format!(
                "{at}: node {} ({class}) has no input \"{}\".",
                b.node, b.input
            ));
            continue;
        };
        if as_link(value).is_some() {
            problems.push(format!("{at}: input \"{}\" of node {} ({class}) is linked to another node, not a value a person fills in.", b.input, b.node));
            continue;
        }
        let spec = inventory
            .and_then(|i| i.nodes.get(class))
            .and_then(|n| n.inputs.iter().find(|i| i.name == b.input));
        let wants_upload = upload_kind(class, &b.input, inventory);
        match (&b.param.ty, wants_upload) {
            (ParamType::Asset { kind }, Some(takes)) if kind != takes => problems.push(format!(
                "{at}: {class}.{} takes {} files, not {kind}.",
                b.input,
                article(takes)
            )),
            (ParamType::Asset { .. }, None) => problems.push(format!(
                "{at}: {class}.{} does not load a file, so it cannot take an asset.",
                b.input
            )),
            (ParamType::Assets { .. }, _) => problems.push(format!(
                "{at}: an input takes one file; several assets cannot be bound to it."
            )),
            (ty, Some(takes)) if !matches!(ty, ParamType::Asset { .. }) => problems.push(format!(
                "{at}: {class}.{} loads {} file: bind it as an asset of kind {takes}.",
                b.input,
                article(takes)
            )),
            _ => {}
        }
        let Some(spec) = spec else { continue };
        let fits = match (&b.param.ty, &spec.kind) {
            (
                ParamType::Integer { min, max },
                InputKind::Int {
                    min: lo, max: hi, ..
                },
            ) => {
                let below = |v: Option<i64>| match (v, lo) {
                    (Some(v), Some(lo)) => i128::from(v) < *lo,
                    _ => false,
                };
                let above = |v: Option<i64>| match (v, hi) {
                    (Some(v), Some(hi)) => i128::from(v) > *hi,
                    _ => false,
                };
                if below(*min) || above(*max) || below(*max) || above(*min) {
                    problems.push(format!(
                        "{at}: the limits {}–{} are outside what the endpoint takes ({}–{}).",
                        show(min),
                        show(max),
                        show(lo),
                        show(hi)
                    ));
                }
                true
            }
            (ParamType::Seed, InputKind::Int { .. }) => true,
            (
                ParamType::Float { min, max },
                InputKind::Float {
                    min: lo, max: hi, ..
                },
            ) => {
                let out = |v: Option<f64>| match v {
                    Some(v) => lo.is_some_and(|lo| v < lo) || hi.is_some_and(|hi| v > hi),
                    None => false,
                };
                if out(*min) || out(*max) {
                    problems.push(format!(
                        "{at}: the limits {}–{} are outside what the endpoint takes ({}–{}).",
                        show(min),
                        show(max),
                        show(lo),
                        show(hi)
                    ));
                }
                true
            }
            (ParamType::Integer { .. }, InputKind::Float { .. }) => true,
            (ParamType::String { .. } | ParamType::Text { .. }, InputKind::String { .. }) => true,
            (ParamType::Boolean, InputKind::Boolean { .. }) => true,
            (
                ParamType::Enum { options },
                InputKind::Combo {
                    options: offered, ..
                },
            ) => {
                let missing: Vec<&String> =
                    options.iter().filter(|o| !offered.contains(o)).collect();
                if !missing.is_empty() && !offered.is_empty() {
                    problems.push(format!(
                        "{at}: the endpoint does not offer {}.",
                        missing
                            .iter()
                            .map(|m| format!("\"{m}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                true
            }
            (
                ParamType::Model { .. } | ParamType::Asset { .. } | ParamType::String { .. },
                InputKind::Combo { .. },
            ) => true,
            (_, InputKind::Link { ty }) => {
                problems.push(format!(
                    "{at}: {class}.{} takes a {ty} from a link, not a value.",
                    b.input
                ));
                true
            }
            _ => false,
        };
        if !fits {
            problems.push(format!(
                "{at}: a {} parameter does not fit {class}.{}, which takes {}.",
                type_word(&b.param.ty),
                b.input,
                spec_word(&spec.kind)
            ));
        }
    }
    problems
}

fn show<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "any".into())
}

fn article(kind: &str) -> String {
    match kind {
        "image" => "image".into(),
        "audio" => "audio".into(),
        other => other.into(),
    }
}

pub fn type_word(ty: &ParamType) -> &'static str {
    match ty {
        ParamType::String { .. } => "string",
        ParamType::Text { .. } => "text",
        ParamType::Integer { .. } => "integer",
        ParamType::Float { .. } => "float",
        ParamType::Enum { .. } => "enum",
        ParamType::Boolean => "boolean",
        ParamType::Seed => "seed",
        ParamType::Asset { .. } => "asset",
        ParamType::Assets { .. } => "assets",
        ParamType::Model { .. } => "model",
    }
}

fn spec_word(kind: &InputKind) -> &'static str {
    match kind {
        InputKind::Int { .. } => "an integer",
        InputKind::Float { .. } => "a number",
        InputKind::String { .. } => "text",
        InputKind::Boolean { .. } => "true or false",
        InputKind::Combo { .. } => "one of a list",
        InputKind::Link { .. } => "a link",
    }
}

/// The graph with a run's values set on the bound inputs. A value left out (null) keeps
/// the graph's own literal.
pub fn bind(graph: &Graph, bindings: &[Binding], values: &Map<String, Value>) -> Graph {
    let mut out = graph.clone();
    for b in bindings {
        let Some(value) = values.get(&b.param.name).filter(|v| !v.is_null()) else {
            continue;
        };
        if let Some(inputs) = out
            .get_mut(&b.node)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
        {
            inputs.insert(b.input.clone(), value.clone());
        }
    }
    out
}

/// The inputs of the graph that save files, whose `filename_prefix` Slate sets so that
/// a run's files are told apart on the endpoint.
pub fn set_prefixes(graph: &mut Graph, prefix: &str) {
    for node in graph.values_mut() {
        if let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut) {
            if let Some(Value::String(current)) = inputs.get("filename_prefix") {
                // Keep the subfolder the author chose (`video/x` → `video/<prefix>`).
                let folder = current
                    .rsplit_once('/')
                    .map(|(f, _)| f)
                    .filter(|f| !f.contains("..") && !f.starts_with('/'))
                    .map(|f| format!("{f}/"))
                    .unwrap_or_default();
                inputs.insert(
                    "filename_prefix".into(),
                    Value::String(format!("{folder}{prefix}")),
                );
            }
        }
    }
}

/// What changed from one version to the next, in words.
pub fn diff(
    old: &Graph,
    old_bindings: &[Binding],
    new: &Graph,
    new_bindings: &[Binding],
) -> Vec<String> {
    let mut out = Vec::new();
    for id in node_order(new) {
        let class = class_of(new, &id);
        match old.get(&id) {
            None => out.push(format!("+ node {id} ({class}) added")),
            Some(_) if class_of(old, &id) != class => out.push(format!(
                "~ node {id}: {} became {class}",
                class_of(old, &id)
            )),
            Some(before) => {
                let empty = Map::new();
                let was = before["inputs"].as_object().unwrap_or(&empty);
                let now = new[&id]["inputs"].as_object().unwrap_or(&empty);
                let keys: BTreeSet<&String> = was.keys().chain(now.keys()).collect();
                for k in keys {
                    match (was.get(k), now.get(k)) {
                        (Some(a), Some(b)) if a != b => out.push(format!(
                            "~ node {id} ({class}) {k}: {} → {}",
                            brief(a),
                            brief(b)
                        )),
                        (None, Some(b)) => {
                            out.push(format!("+ node {id} ({class}) {k}: {}", brief(b)))
                        }
                        (Some(_), None) => out.push(format!("- node {id} ({class}) {k} removed")),
                        _ => {}
                    }
                }
            }
        }
    }
    for id in node_order(old) {
        if !new.contains_key(&id) {
            out.push(format!("- node {id} ({}) removed", class_of(old, &id)));
        }
    }
    let by_name = |bs: &[Binding]| -> BTreeMap<String, Binding> {
        bs.iter()
            .map(|b| (b.param.name.clone(), b.clone()))
            .collect()
    };
    let (was, now) = (by_name(old_bindings), by_name(new_bindings));
    for (name, b) in &now {
        match was.get(name) {
            None => out.push(format!("+ binding {name} (node {}, {})", b.node, b.input)),
            Some(a) if a != b => out.push(format!("~ binding {name} changed")),
            _ => {}
        }
    }
    for name in was.keys().filter(|n| !now.contains_key(*n)) {
        out.push(format!("- binding {name} removed"));
    }
    out
}

fn brief(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

/// `NAME` or `NAME@N` as a stage writes it.
pub fn parse_reference(text: &str) -> Option<(&str, Option<i32>)> {
    let (name, version) = match text.split_once('@') {
        Some((n, v)) => (n, Some(v.parse::<i32>().ok().filter(|v| *v > 0)?)),
        None => (text, None),
    };
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    ok.then_some((name, version))
}

/// A workflow name as people choose it: lower-case letters, digits, `-` and `_`.
pub fn name_problem(name: &str) -> Option<String> {
    parse_reference(name)
        .filter(|(_, v)| v.is_none())
        .is_none()
        .then(|| {
            format!("The name \"{name}\" must be 1 to 64 lower-case letters, digits, '-' or '_'.")
        })
}

/// The template Slate generates for running a workflow directly.
pub fn template_name(workflow: &str) -> String {
    format!("workflow-{workflow}")
}

/// A workflow's latest version, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSummary {
    pub id: Uuid,
    pub name: String,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub nodes: usize,
    pub bindings: usize,
    pub bundled: bool,
    pub created_by: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// One node as the workflow page lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub id: String,
    pub class: String,
    pub title: Option<String>,
    /// The custom node pack, when the endpoint's inventory says.
    pub pack: Option<String>,
    /// Literal inputs and their values (as JSON text).
    pub literals: Vec<(String, String)>,
    /// Linked inputs: (input, from node, output index).
    pub links: Vec<(String, String, u64)>,
}

/// A workflow version as its page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDetail {
    pub summary: WorkflowSummary,
    pub origin: String,
    /// Every version: (version, when, by whom).
    pub versions: Vec<(i32, chrono::DateTime<chrono::Utc>, Option<String>)>,
    pub nodes: Vec<NodeRow>,
    pub bindings: Vec<Binding>,
    /// Slate's proposal (shown when there are no bindings yet, or to add from).
    pub proposed: Vec<Binding>,
    /// Changes from the previous version.
    pub changes: Vec<String>,
    /// What the current endpoint lacks for it, in words; `None` when no endpoint
    /// inventory is known.
    pub gaps: Option<Vec<String>>,
    /// The template that runs it, once it has bindings saved.
    pub template: Option<String>,
    pub graph_json: String,
    pub can_edit: bool,
}

/// The node rows of a graph.
pub fn node_rows(graph: &Graph, inventory: Option<&Inventory>) -> Vec<NodeRow> {
    node_order(graph)
        .into_iter()
        .map(|id| {
            let inputs = graph[&id]["inputs"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let class = class_of(graph, &id).to_owned();
            NodeRow {
                pack: inventory
                    .and_then(|i| i.nodes.get(&class))
                    .and_then(|n| n.pack.clone()),
                title: title_of(graph, &id).map(str::to_owned),
                literals: inputs
                    .iter()
                    .filter(|(_, v)| as_link(v).is_none())
                    .map(|(k, v)| (k.clone(), brief(v)))
                    .collect(),
                links: inputs
                    .iter()
                    .filter_map(|(k, v)| as_link(v).map(|(f, i)| (k.clone(), f.to_owned(), i)))
                    .collect(),
                id,
                class,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn small() -> Graph {
        graph_from_value(json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                  "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
            "10": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}
        }))
        .unwrap()
    }

    #[test]
    fn the_editor_format_is_refused_with_how_to_export() {
        let ui = json!({"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [[1, 4, 0, 3, 0, "MODEL"]], "version": 0.4});
        let e = graph_from_value(ui).unwrap_err();
        assert!(e.contains("Export (API)"), "{e}");
        assert!(parse_graph("[1, 2]").unwrap_err().contains("not an object"));
        assert!(parse_graph("{\"a\": 1").unwrap_err().contains("not JSON"));
        let e = parse_graph(r#"{"1": {"inputs": {}}}"#).unwrap_err();
        assert!(e.contains("Node 1 has no class_type"), "{e}");
    }

    #[test]
    fn broken_links_cycles_and_sizes_are_named() {
        let e = graph_from_value(
            json!({"1": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0]}}}),
        )
        .unwrap_err();
        assert!(
            e.contains("Node 1 (VAEDecode), input \"samples\"") && e.contains("node 9"),
            "{e}"
        );
        let e = graph_from_value(json!({
            "1": {"class_type": "A", "inputs": {"x": ["2", 0]}},
            "2": {"class_type": "B", "inputs": {"y": ["3", 0]}},
            "3": {"class_type": "C", "inputs": {"z": ["1", 0]}},
            "4": {"class_type": "D", "inputs": {"w": ["1", 0]}}
        }))
        .unwrap_err();
        assert!(
            e.contains("cycle") && e.contains('1') && e.contains('3'),
            "{e}"
        );
        let big = format!(
            "{{\"1\": {{\"class_type\": \"A\", \"inputs\": {{\"t\": \"{}\"}}}}}}",
            "x".repeat(MAX_GRAPH_BYTES)
        );
        assert!(parse_graph(&big).unwrap_err().contains("at most 4 MiB"));
        // A long chain is fine (and does not overflow the stack).
        let mut chain = Map::new();
        chain.insert("0".into(), json!({"class_type": "A", "inputs": {}}));
        for i in 1..MAX_NODES {
            chain.insert(
                i.to_string(),
                json!({"class_type": "A", "inputs": {"x": [(i - 1).to_string(), 0]}}),
            );
        }
        assert!(check_graph(&chain).is_ok());
        // The body of a POST /prompt is taken as its graph.
        let body = json!({"prompt": {"1": {"class_type": "A", "inputs": {}}}, "client_id": "x"});
        assert_eq!(graph_from_value(body).unwrap().len(), 1);
    }

    #[test]
    fn the_usual_inputs_are_proposed_and_named() {
        let proposed = propose(&small(), None);
        let by: BTreeMap<&str, &Binding> = proposed
            .iter()
            .map(|b| (b.param.name.as_str(), b))
            .collect();
        assert_eq!(by["prompt"].node, "6");
        assert_eq!(
            by["negative"].node, "7",
            "the sampler's negative input names it"
        );
        assert!(!by["negative"].param.required);
        assert_eq!(by["seed"].param.ty, ParamType::Seed);
        assert_eq!(
            by["checkpoint"].param.ty,
            ParamType::Model {
                folder: "checkpoints".into()
            }
        );
        assert_eq!(
            by["image"].param.ty,
            ParamType::Asset {
                kind: "image".into()
            }
        );
        assert_eq!(by["count"].input, "batch_size");
        assert_eq!(by["cfg"].param.default, Some(json!(7.5)));
        assert!(!by.contains_key("filename_prefix"));
        assert!(
            check_bindings(&small(), &proposed, None).is_empty(),
            "{:?}",
            check_bindings(&small(), &proposed, None)
        );
    }

    #[test]
    fn bad_bindings_name_node_and_input() {
        let g = small();
        let mut b = propose(&g, None);
        b.push(Binding {
            node: "3".into(),
            input: "model".into(),
            param: Parameter {
                name: "m".into(),
                label: None,
                help: None,
                ty: ParamType::String { max_length: None },
                required: true,
                default: None,
            },
        });
        b.push(Binding {
            node: "3".into(),
            input: "nope".into(),
            param: Parameter {
                name: "n".into(),
                label: None,
                help: None,
                ty: ParamType::String { max_length: None },
                required: true,
                default: None,
            },
        });
        b.push(Binding {
            node: "10".into(),
            input: "image".into(),
            param: Parameter {
                name: "clip".into(),
                label: None,
                help: None,
                ty: ParamType::Asset {
                    kind: "video".into(),
                },
                required: true,
                default: None,
            },
        });
        let problems = check_bindings(&g, &b, None).join("\n");
        assert!(
            problems.contains("input \"model\" of node 3 (KSampler) is linked"),
            "{problems}"
        );
        assert!(
            problems.contains("node 3 (KSampler) has no input \"nope\""),
            "{problems}"
        );
        assert!(
            problems.contains("LoadImage.image takes image files, not video"),
            "{problems}"
        );
        assert!(
            problems.contains("another binding already sets this input"),
            "{problems}"
        );
    }

    #[test]
    fn values_are_bound_and_prefixes_set() {
        let g = small();
        let b = propose(&g, None);
        let mut values = Map::new();
        values.insert("prompt".into(), json!("a dog"));
        values.insert("steps".into(), json!(3));
        values.insert("negative".into(), Value::Null);
        let mut bound = bind(&g, &b, &values);
        assert_eq!(bound["6"]["inputs"]["text"], "a dog");
        assert_eq!(bound["3"]["inputs"]["steps"], 3);
        assert_eq!(bound["7"]["inputs"]["text"], "", "null keeps the literal");
        assert_eq!(bound["3"]["inputs"]["model"], json!(["4", 0]));
        set_prefixes(&mut bound, "slate_x");
        assert_eq!(bound["9"]["inputs"]["filename_prefix"], "slate_x");
        let mut video = graph_from_value(
            json!({"1": {"class_type": "SaveVideo", "inputs": {"filename_prefix": "video/clip"}}}),
        )
        .unwrap();
        set_prefixes(&mut video, "slate_y");
        assert_eq!(video["1"]["inputs"]["filename_prefix"], "video/slate_y");
    }

    #[test]
    fn a_diff_says_what_changed() {
        let a = small();
        let mut b = a.clone();
        b["3"]["inputs"]["steps"] = json!(30);
        b.remove("10");
        let changes = diff(&a, &[], &b, &propose(&b, None)[..1]);
        assert!(
            changes
                .iter()
                .any(|c| c == "~ node 3 (KSampler) steps: 20 → 30"),
            "{changes:?}"
        );
        assert!(
            changes.iter().any(|c| c == "- node 10 (LoadImage) removed"),
            "{changes:?}"
        );
        assert!(
            changes.iter().any(|c| c.starts_with("+ binding")),
            "{changes:?}"
        );
    }

    #[test]
    fn references_name_a_version_or_the_latest() {
        assert_eq!(parse_reference("txt2img"), Some(("txt2img", None)));
        assert_eq!(parse_reference("my-flow@3"), Some(("my-flow", Some(3))));
        assert_eq!(parse_reference("x@0"), None);
        assert_eq!(parse_reference("../x"), None);
        assert!(name_problem("ok-name").is_none());
        assert!(name_problem("a@1").is_some());
    }

    #[test]
    fn the_bundled_workflows_are_valid() {
        for (name, text) in BUNDLED {
            let bundle: Bundle =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(bundle.name, name);
            check_graph(&bundle.graph).unwrap_or_else(|e| panic!("{name}: {e}"));
            let problems = check_bindings(&bundle.graph, &bundle.bindings, None);
            assert!(problems.is_empty(), "{name}: {problems:?}");
        }
    }
}
