//! What a ComfyUI endpoint has: its node classes (from `/object_info`, each with its
//! inputs typed and the node pack it comes from) and its model files by folder (from
//! `/models`), and the pre-flight check of a bound graph against them.
//!
//! Decision 0014; the shapes parsed are in shared/reference/comfyui-workflows.md §2–3.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Everything Slate knows about one endpoint's machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// `system.comfyui_version` from `/system_stats`, when it says.
    pub comfyui_version: Option<String>,
    /// Node classes by class name.
    pub nodes: BTreeMap<String, NodeSpec>,
    /// Model files by folder (`checkpoints`, `loras`, …), each folder's list as `/models/{folder}` gave it.
    pub models: BTreeMap<String, Vec<String>>,
}

/// One node class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub class: String,
    pub display_name: Option<String>,
    pub category: Option<String>,
    /// The custom node pack it comes from (`custom_nodes.<pack>` in `python_module`),
    /// `None` for ComfyUI's own nodes (`nodes`, `comfy_extras.*`, `comfy_api_nodes.*`).
    pub pack: Option<String>,
    /// Required then optional inputs, in `input_order` when given (hidden ones left out).
    pub inputs: Vec<InputSpec>,
    /// Output types, in order (a link's index is into this list).
    pub outputs: Vec<String>,
    pub output_node: bool,
}

impl NodeSpec {
    pub fn input(&self, name: &str) -> Option<&InputSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }
}

/// One input of a node class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub required: bool,
    pub kind: InputKind,
    pub tooltip: Option<String>,
}

/// What an input takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputKind {
    /// `INT`. Bounds exactly as ComfyUI states them: a seed's max is 2^64 − 1, which
    /// neither `i64` nor `f64` holds exactly, so they are `i128`.
    Int {
        #[serde(default, with = "wide")]
        default: Option<i128>,
        #[serde(default, with = "wide")]
        min: Option<i128>,
        #[serde(default, with = "wide")]
        max: Option<i128>,
        #[serde(default, with = "wide")]
        step: Option<i128>,
    },
    Float {
        default: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        step: Option<f64>,
    },
    String {
        default: Option<String>,
        multiline: bool,
    },
    Boolean {
        default: Option<bool>,
    },
    /// A choice (both the legacy list shape and `["COMBO", {"options"}]`). `upload` is
    /// `image`, `video` or `audio` when the input takes an uploaded file
    /// (`image_upload`, `video_upload`, `audio_upload`).
    Combo {
        options: Vec<String>,
        default: Option<String>,
        upload: Option<String>,
    },
    /// A data type only a link can give (`MODEL`, `IMAGE`, `LATENT`, …), or an input with
    /// `forceInput`.
    Link {
        ty: String,
    },
}

/// `i128` bounds as plain JSON numbers: serde_json's `Value` neither writes nor reads
/// `i128` (the database hands jsonb over as a `Value`), though every bound ComfyUI states
/// fits `u64` or `i64`; beyond those (never seen) a float.
mod wide {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Number {
        U(u64),
        I(i64),
        F(f64),
    }

    pub fn serialize<S: Serializer>(v: &Option<i128>, s: S) -> Result<S::Ok, S::Error> {
        v.map(|v| {
            u64::try_from(v)
                .map(Number::U)
                .or_else(|_| i64::try_from(v).map(Number::I))
                .unwrap_or(Number::F(v as f64))
        })
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
        Ok(Option::<Number>::deserialize(d)?.and_then(|n| match n {
            Number::U(u) => Some(i128::from(u)),
            Number::I(i) => Some(i128::from(i)),
            Number::F(f) => f.is_finite().then_some(f as i128),
        }))
    }
}

/// What ComfyUI's own repository puts in `custom_nodes/` (the `SaveImageWebsocket`
/// example): on every machine, so not a pack anyone installed.
const SHIPPED_WITH_COMFYUI: &[&str] = &["websocket_image_save"];

/// The custom node pack of a `python_module`: `custom_nodes.<pack>` (and anything below
/// it); ComfyUI's own modules (`nodes`, `comfy_extras.*`, `comfy_api_nodes.*`, …, and the
/// example it ships in `custom_nodes/`) have none.
pub fn pack_of(python_module: &str) -> Option<String> {
    let rest = python_module.strip_prefix("custom_nodes.")?;
    let pack = rest.split('.').next().unwrap_or(rest).trim();
    (!pack.is_empty() && !SHIPPED_WITH_COMFYUI.contains(&pack)).then(|| pack.to_owned())
}

/// Reads `/object_info` leniently: a class or input of a shape Slate does not know is
/// left out (custom packs publish odd ones), never an error.
pub fn parse_object_info(json: &Value) -> BTreeMap<String, NodeSpec> {
    let Some(classes) = json.as_object() else {
        return BTreeMap::new();
    };
    classes
        .iter()
        .filter_map(|(class, spec)| Some((class.clone(), parse_node(class, spec)?)))
        .collect()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn parse_node(class: &str, spec: &Value) -> Option<NodeSpec> {
    let spec = spec.as_object()?;
    let input = spec.get("input").and_then(Value::as_object);
    let order = spec.get("input_order").and_then(Value::as_object);
    let mut inputs = Vec::new();
    for (section, required) in [("required", true), ("optional", false)] {
        let Some(given) = input
            .and_then(|i| i.get(section))
            .and_then(Value::as_object)
        else {
            continue;
        };
        // `input_order` first (ComfyUI's own order: serde_json's map is sorted), then
        // whatever it left out.
        let mut names: Vec<&str> = order
            .and_then(|o| o.get(section))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|n| given.contains_key(*n))
            .collect();
        let listed: BTreeSet<&str> = names.iter().copied().collect();
        names.extend(
            given
                .keys()
                .map(String::as_str)
                .filter(|n| !listed.contains(n)),
        );
        let mut seen = BTreeSet::new();
        for name in names {
            if !seen.insert(name) {
                continue;
            }
            if let Some(spec) = given.get(name).and_then(|s| parse_input(name, required, s)) {
                inputs.push(spec);
            }
        }
    }
    let outputs = spec
        .get("output")
        .and_then(Value::as_array)
        .map(|o| {
            o.iter()
                .map(|t| match t {
                    Value::String(s) => s.clone(),
                    // A list of choices as an output type: a combo's value.
                    _ => "COMBO".to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(NodeSpec {
        class: class.to_owned(),
        display_name: text(spec.get("display_name")),
        category: text(spec.get("category")),
        pack: spec
            .get("python_module")
            .and_then(Value::as_str)
            .and_then(pack_of),
        inputs,
        outputs,
        output_node: spec
            .get("output_node")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// An integer bound or default as ComfyUI wrote it (up to 2^64 − 1 and beyond).
fn int(v: Option<&Value>) -> Option<i128> {
    let v = v?;
    if let Some(i) = v.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = v.as_u64() {
        return Some(i128::from(u));
    }
    // Past u64 serde_json keeps a float; the cast saturates.
    v.as_f64().filter(|f| f.is_finite()).map(|f| f as i128)
}

fn float(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|f| f.is_finite())
}

/// A combo choice as text: ComfyUI lists strings, sometimes numbers.
fn choice(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_input(name: &str, required: bool, spec: &Value) -> Option<InputSpec> {
    // `[TYPE, options?]`; a bare string is a type without options.
    let (head, opts) = match spec {
        Value::Array(a) => (a.first()?, a.get(1).and_then(Value::as_object)),
        Value::String(_) => (spec, None),
        _ => return None,
    };
    let empty = Map::new();
    let o = opts.unwrap_or(&empty);
    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    let upload = [
        ("image_upload", "image"),
        ("video_upload", "video"),
        ("audio_upload", "audio"),
    ]
    .into_iter()
    .find(|(k, _)| flag(k))
    .map(|(_, kind)| kind.to_owned());
    let combo = |options: &Vec<Value>| InputKind::Combo {
        options: options.iter().filter_map(choice).collect(),
        default: o.get("default").and_then(choice),
        upload: upload.clone(),
    };
    let kind = match head {
        Value::Array(options) => combo(options),
        Value::String(ty) if flag("forceInput") => InputKind::Link { ty: ty.clone() },
        Value::String(ty) => match ty.as_str() {
            "COMBO" => match o.get("options").and_then(Value::as_array) {
                Some(options) => combo(options),
                None => combo(&Vec::new()),
            },
            "INT" => InputKind::Int {
                default: int(o.get("default")),
                min: int(o.get("min")),
                max: int(o.get("max")),
                step: int(o.get("step")),
            },
            "FLOAT" => InputKind::Float {
                default: float(o.get("default")),
                min: float(o.get("min")),
                max: float(o.get("max")),
                step: float(o.get("step")),
            },
            "STRING" => InputKind::String {
                default: o.get("default").and_then(Value::as_str).map(str::to_owned),
                multiline: flag("multiline"),
            },
            "BOOLEAN" => InputKind::Boolean {
                default: o.get("default").and_then(Value::as_bool),
            },
            "" => return None,
            other => InputKind::Link {
                ty: other.to_owned(),
            },
        },
        _ => return None,
    };
    Some(InputSpec {
        name: name.to_owned(),
        required,
        kind,
        tooltip: text(o.get("tooltip")),
    })
}

/// Which `/models` folder the core loaders' file inputs list.
const MODEL_INPUTS: &[(&str, &str, &str)] = &[
    ("CheckpointLoaderSimple", "ckpt_name", "checkpoints"),
    ("CheckpointLoader", "ckpt_name", "checkpoints"),
    ("CheckpointLoader", "config_name", "configs"),
    ("ImageOnlyCheckpointLoader", "ckpt_name", "checkpoints"),
    ("unCLIPCheckpointLoader", "ckpt_name", "checkpoints"),
    ("LoraLoader", "lora_name", "loras"),
    ("LoraLoaderModelOnly", "lora_name", "loras"),
    ("VAELoader", "vae_name", "vae"),
    ("CLIPLoader", "clip_name", "text_encoders"),
    ("DualCLIPLoader", "clip_name1", "text_encoders"),
    ("DualCLIPLoader", "clip_name2", "text_encoders"),
    ("TripleCLIPLoader", "clip_name1", "text_encoders"),
    ("TripleCLIPLoader", "clip_name2", "text_encoders"),
    ("TripleCLIPLoader", "clip_name3", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name1", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name2", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name3", "text_encoders"),
    ("QuadrupleCLIPLoader", "clip_name4", "text_encoders"),
    ("UNETLoader", "unet_name", "diffusion_models"),
    ("ControlNetLoader", "control_net_name", "controlnet"),
    ("DiffControlNetLoader", "control_net_name", "controlnet"),
    ("UpscaleModelLoader", "model_name", "upscale_models"),
    ("CLIPVisionLoader", "clip_name", "clip_vision"),
    ("StyleModelLoader", "style_model_name", "style_models"),
    ("GLIGENLoader", "gligen_name", "gligen"),
    ("HypernetworkLoader", "hypernetwork_name", "hypernetworks"),
    ("PhotoMakerLoader", "photomaker_model_name", "photomaker"),
    ("DiffusersLoader", "model_path", "diffusers"),
    ("ModelPatchLoader", "name", "model_patches"),
    ("AudioEncoderLoader", "audio_encoder_name", "audio_encoders"),
];

/// Entries loaders put in front of the files ("no LoRA"), not files themselves.
fn placeholder(option: &str) -> bool {
    matches!(option, "" | "None" | "none")
}

impl Inventory {
    pub fn node(&self, class: &str) -> Option<&NodeSpec> {
        self.nodes.get(class)
    }

    /// Custom node packs and how many classes each brings.
    pub fn packs(&self) -> BTreeMap<String, usize> {
        let mut packs = BTreeMap::new();
        for pack in self.nodes.values().filter_map(|n| n.pack.as_ref()) {
            *packs.entry(pack.clone()).or_insert(0) += 1;
        }
        packs
    }

    /// How many classes are ComfyUI's own.
    pub fn core_nodes(&self) -> usize {
        self.nodes.values().filter(|n| n.pack.is_none()).count()
    }

    /// The `/models` folder whose files `class`'s `input` offers: the core loaders by a
    /// table, any other combo when its files (placeholders like "None" aside) are exactly
    /// one folder's.
    pub fn model_folder(&self, class: &str, input: &str) -> Option<&str> {
        if let Some((_, _, folder)) = MODEL_INPUTS
            .iter()
            .find(|(c, i, _)| *c == class && *i == input)
        {
            return Some(folder);
        }
        let InputKind::Combo { options, .. } = &self.node(class)?.input(input)?.kind else {
            return None;
        };
        let offered: BTreeSet<&str> = options
            .iter()
            .map(String::as_str)
            .filter(|o| !placeholder(o))
            .collect();
        if offered.is_empty() {
            return None;
        }
        self.models
            .iter()
            .find(|(_, files)| {
                !files.is_empty()
                    && files.iter().map(String::as_str).collect::<BTreeSet<_>>() == offered
            })
            .map(|(folder, _)| folder.as_str())
    }
}

/// Something a graph needs that the endpoint does not have or will not take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "gap", rename_all = "snake_case")]
pub enum Gap {
    /// A node class the endpoint does not have, with every node that uses it.
    MissingNode { class: String, nodes: Vec<String> },
    /// A loader's file that is not in its folder on the endpoint.
    MissingModel {
        node: String,
        class: String,
        input: String,
        folder: String,
        file: String,
    },
    /// A choice the endpoint does not offer; `offered` is the start of its list.
    NotOffered {
        node: String,
        class: String,
        input: String,
        value: String,
        offered: Vec<String>,
    },
    /// A number outside the endpoint's bounds for the input.
    OutOfRange {
        node: String,
        class: String,
        input: String,
        value: String,
        min: Option<String>,
        max: Option<String>,
    },
    /// A literal of the wrong kind (`want` is INT, FLOAT, BOOLEAN, STRING or COMBO).
    WrongType {
        node: String,
        class: String,
        input: String,
        want: String,
        got: String,
    },
    /// A required input the graph does not give.
    MissingInput {
        node: String,
        class: String,
        input: String,
    },
}

/// How many choices a [`Gap::NotOffered`] carries.
const OFFERED_SHOWN: usize = 12;

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gap::MissingNode { class, nodes } => {
                let (word, verb) = if nodes.len() == 1 {
                    ("node", "uses")
                } else {
                    ("nodes", "use")
                };
                write!(
                    f,
                    "{word} {} {verb} {class}, which this endpoint does not have (a custom node, or one from a newer ComfyUI)",
                    nodes.join(", ")
                )
            }
            Gap::MissingModel {
                node,
                class,
                folder,
                file,
                ..
            } => write!(
                f,
                "node {node} ({class}): model file \"{file}\" is not in {folder} on this endpoint"
            ),
            Gap::NotOffered {
                node,
                class,
                input,
                value,
                offered,
            } => {
                write!(
                    f,
                    "node {node} ({class}): {input} \"{value}\" is not one of the choices this endpoint offers"
                )?;
                if offered.is_empty() {
                    write!(f, " (it offers none)")
                } else {
                    write!(f, " ({}", offered.join(", "))?;
                    if offered.len() == OFFERED_SHOWN {
                        write!(f, ", …")?;
                    }
                    write!(f, ")")
                }
            }
            Gap::OutOfRange {
                node,
                class,
                input,
                value,
                min,
                max,
            } => {
                let bounds = match (min, max) {
                    (Some(lo), Some(hi)) => format!("from {lo} to {hi}"),
                    (Some(lo), None) => format!("at least {lo}"),
                    (None, Some(hi)) => format!("at most {hi}"),
                    (None, None) => "within its range".to_owned(),
                };
                write!(
                    f,
                    "node {node} ({class}): {input} is {value}, but this endpoint takes {bounds}"
                )
            }
            Gap::WrongType {
                node,
                class,
                input,
                want,
                got,
            } => {
                let want = match want.as_str() {
                    "INT" => "a whole number",
                    "FLOAT" => "a number",
                    "BOOLEAN" => "true or false",
                    "STRING" => "text",
                    "COMBO" => "one of its choices",
                    other => other,
                };
                write!(
                    f,
                    "node {node} ({class}): {input} must be {want}, not {got}"
                )
            }
            Gap::MissingInput { node, class, input } => write!(
                f,
                "node {node} ({class}): the required input {input} is missing"
            ),
        }
    }
}

/// Each gap in plain words.
pub fn messages(gaps: &[Gap]) -> Vec<String> {
    gaps.iter().map(Gap::to_string).collect()
}

/// A node id's place in messages: numbers in numeric order, then the rest (subgraph
/// paths like `12:5`) by text.
fn id_order(id: &str) -> (u64, &str) {
    (id.parse().unwrap_or(u64::MAX), id)
}

/// Whether an input's value is a link `["<node id>", <output index>]`.
fn is_link(v: &Value) -> bool {
    matches!(v.as_array().map(Vec::as_slice), Some([Value::String(_), n]) if n.is_u64())
}

/// A value shown in a message (short).
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// A number as ComfyUI would convert it (`int()`/`float()` take numeric text too).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn integer(v: &Value) -> Option<i128> {
    match v {
        Value::Number(_) => int(Some(v)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>()
                .ok()
                .or_else(|| number(&Value::String(s.to_owned())).map(|f| f as i128))
        }
        _ => None,
    }
}

/// Checks an API-format graph (`{id: {class_type, inputs}}`) against what an endpoint
/// has: every class it lacks (each once, with the nodes using it), then, node by node,
/// model files not in their folder, choices not offered, numbers out of range, literals
/// of the wrong kind and missing required inputs. Linked inputs are not checked (their
/// values exist only when the graph runs), nor uploaded files (Slate uploads them just
/// before queueing). Nodes that are not objects with a `class_type` are the workflow
/// check's business and skipped here.
pub fn preflight(graph: &Map<String, Value>, inventory: &Inventory) -> Vec<Gap> {
    let mut ids: Vec<&String> = graph.keys().collect();
    ids.sort_by(|a, b| id_order(a).cmp(&id_order(b)));
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut gaps = Vec::new();
    for id in ids {
        let node = &graph[id.as_str()];
        let Some(class) = node.get("class_type").and_then(Value::as_str) else {
            continue;
        };
        let Some(spec) = inventory.node(class) else {
            missing.entry(class).or_default().push(id.clone());
            continue;
        };
        let empty = Map::new();
        let given = node
            .get("inputs")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for input in &spec.inputs {
            let Some(value) = given.get(&input.name) else {
                if input.required {
                    gaps.push(Gap::MissingInput {
                        node: id.clone(),
                        class: class.to_owned(),
                        input: input.name.clone(),
                    });
                }
                continue;
            };
            if is_link(value) {
                continue;
            }
            if let Some(gap) = check_literal(id, class, input, value, inventory) {
                gaps.push(gap);
            }
        }
    }
    let mut all: Vec<Gap> = missing
        .into_iter()
        .map(|(class, nodes)| Gap::MissingNode {
            class: class.to_owned(),
            nodes,
        })
        .collect();
    all.extend(gaps);
    all
}

fn check_literal(
    id: &str,
    class: &str,
    input: &InputSpec,
    value: &Value,
    inventory: &Inventory,
) -> Option<Gap> {
    // The export writes list-valued widgets as `{"__value__": [...]}`: not a literal
    // Slate can judge.
    if value.get("__value__").is_some() {
        return None;
    }
    let wrong = |want: &str| Gap::WrongType {
        node: id.to_owned(),
        class: class.to_owned(),
        input: input.name.clone(),
        want: want.to_owned(),
        got: shown(value),
    };
    let out_of_range = |value: String, min: Option<String>, max: Option<String>| Gap::OutOfRange {
        node: id.to_owned(),
        class: class.to_owned(),
        input: input.name.clone(),
        value,
        min,
        max,
    };
    match &input.kind {
        InputKind::Int { min, max, .. } => {
            let Some(v) = integer(value) else {
                return Some(wrong("INT"));
            };
            let below = min.is_some_and(|m| v < m);
            let above = max.is_some_and(|m| v > m);
            (below || above).then(|| {
                out_of_range(
                    v.to_string(),
                    min.map(|m| m.to_string()),
                    max.map(|m| m.to_string()),
                )
            })
        }
        InputKind::Float { min, max, .. } => {
            let Some(v) = number(value) else {
                return Some(wrong("FLOAT"));
            };
            let below = min.is_some_and(|m| v < m);
            let above = max.is_some_and(|m| v > m);
            (below || above).then(|| {
                out_of_range(
                    v.to_string(),
                    min.map(|m| m.to_string()),
                    max.map(|m| m.to_string()),
                )
            })
        }
        InputKind::Boolean { .. } => (!value.is_boolean()).then(|| wrong("BOOLEAN")),
        // ComfyUI turns any scalar into text.
        InputKind::String { .. } => {
            (value.is_array() || value.is_object() || value.is_null()).then(|| wrong("STRING"))
        }
        // Uploaded files are put on the endpoint just before the prompt is queued, and
        // ComfyUI takes paths below `input/` that its list does not show.
        InputKind::Combo {
            upload: Some(_), ..
        } => None,
        InputKind::Combo { options, .. } => {
            // A multi-select combo's value is a list: not judged.
            if value.is_array() {
                return None;
            }
            let Some(v) = choice(value) else {
                return Some(wrong("COMBO"));
            };
            if options.contains(&v) {
                return None;
            }
            Some(match inventory.model_folder(class, &input.name) {
                Some(folder) => Gap::MissingModel {
                    node: id.to_owned(),
                    class: class.to_owned(),
                    input: input.name.clone(),
                    folder: folder.to_owned(),
                    file: v,
                },
                None => Gap::NotOffered {
                    node: id.to_owned(),
                    class: class.to_owned(),
                    input: input.name.clone(),
                    value: v,
                    offered: options.iter().take(OFFERED_SHOWN).cloned().collect(),
                },
            })
        }
        InputKind::Link { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small `/object_info` in the shapes a real one has (written for this test).
    fn sample() -> Value {
        json!({
            "KSampler": {
                "input": {
                    "required": {
                        "model": ["MODEL", {"tooltip": "The model used for denoising."}],
                        "seed": ["INT", {"default": 0, "min": 0, "max": 18446744073709551615_u64, "control_after_generate": true}],
                        "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                        "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
                        "sampler_name": [["euler", "euler_ancestral", "dpmpp_2m"], {"tooltip": "How noise is removed."}],
                        "scheduler": ["COMBO", {"options": ["simple", "karras"], "default": "simple"}],
                        "positive": ["CONDITIONING"],
                        "negative": ["CONDITIONING"],
                        "latent_image": ["LATENT"],
                        "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}]
                    }
                },
                "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image", "denoise"]},
                "output": ["LATENT"], "output_is_list": [false], "output_name": ["LATENT"],
                "name": "KSampler", "display_name": "KSampler", "category": "sampling",
                "output_node": false, "python_module": "nodes"
            },
            "CheckpointLoaderSimple": {
                "input": {"required": {"ckpt_name": [["tiny-sd15.safetensors"], {}]}},
                "output": ["MODEL", "CLIP", "VAE"], "output_node": false,
                "display_name": "Load Checkpoint", "category": "loaders", "python_module": "nodes"
            },
            "CLIPTextEncode": {
                "input": {"required": {"text": ["STRING", {"multiline": true, "dynamicPrompts": true}], "clip": ["CLIP"]}},
                "output": ["CONDITIONING"], "python_module": "nodes"
            },
            "EmptyLatentImage": {
                "input": {"required": {
                    "width": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                    "height": ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}],
                    "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]
                }},
                "input_order": {"required": ["width", "height", "batch_size"]},
                "output": ["LATENT"], "python_module": "nodes"
            },
            "SaveImage": {
                "input": {
                    "required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
                },
                "output": [], "output_node": true, "python_module": "nodes"
            },
            "LoadImage": {
                "input": {"required": {"image": [["a.png", "b.png"], {"image_upload": true}]}},
                "output": ["IMAGE", "MASK"], "python_module": "nodes"
            },
            "LoadVideo": {
                "input": {"required": {"file": ["COMBO", {"options": ["clip.mp4"], "video_upload": true}]}},
                "output": ["VIDEO"], "python_module": "comfy_extras.nodes_video"
            },
            "LoadAudio": {
                "input": {"required": {"audio": [["take.wav"], {"audio_upload": true}]}},
                "output": ["AUDIO"], "python_module": "comfy_extras.nodes_audio"
            },
            "SaveAnimatedWEBP": {
                "input": {
                    "required": {"images": ["IMAGE"], "lossless": ["BOOLEAN", {"default": true}]},
                    "optional": {"fps": ["FLOAT", {"default": 6.0, "min": 0.01}]}
                },
                "output": [], "output_node": true, "python_module": "comfy_extras.nodes_images"
            },
            "LoraLoader": {
                "input": {"required": {"model": ["MODEL"], "clip": ["CLIP"], "lora_name": [[], {}],
                    "strength_model": ["FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0}]}},
                "output": ["MODEL", "CLIP"], "python_module": "nodes"
            },
            "FluxProUltraImageNode": {
                "input": {"required": {"prompt": ["STRING", {"multiline": true, "default": ""}]}},
                "output": ["IMAGE"], "python_module": "comfy_api_nodes.nodes_bfl"
            },
            "VHS_VideoCombine": {
                "input": {
                    "required": {"images": ["IMAGE"], "frame_rate": ["FLOAT", {"default": 8, "min": 1, "step": 1}],
                        "format": [["image/gif", "video/h264-mp4"], {}]},
                    "optional": {"audio": ["AUDIO"]},
                    "hidden": ["PROMPT"]
                },
                "output": ["VHS_FILENAMES"], "output_node": true,
                "python_module": "custom_nodes.comfyui-videohelpersuite"
            },
            "VHS_LoadVideo": {
                "input": {"required": {"video": [["x.mp4"], {"video_upload": true}], "force_rate": ["FLOAT", {"forceInput": true}]}},
                "output": ["IMAGE", "INT"], "python_module": "custom_nodes.comfyui-videohelpersuite.videohelpersuite.nodes"
            },
            "UpscalerByFiles": {
                "input": {"required": {"upscaler": [["None", "4x.pth", "2x.pth"], {}]}},
                "output": ["UPSCALE_MODEL"], "python_module": "custom_nodes.upscalers"
            },
            "Odd": "not an object",
            "Odder": {"input": {"required": {"x": 5, "y": [], "z": [{"weird": true}], "ok": ["INT"]}}}
        })
    }

    fn inventory() -> Inventory {
        Inventory {
            comfyui_version: Some("0.3.64".into()),
            nodes: parse_object_info(&sample()),
            models: BTreeMap::from([
                ("checkpoints".into(), vec!["tiny-sd15.safetensors".into()]),
                ("loras".into(), vec![]),
                (
                    "upscale_models".into(),
                    vec!["2x.pth".into(), "4x.pth".into()],
                ),
            ]),
        }
    }

    #[test]
    fn object_info_is_parsed_into_typed_inputs() {
        let nodes = parse_object_info(&sample());
        // Unknown shapes are left out, never an error; a class with nothing readable stays.
        assert!(!nodes.contains_key("Odd"));
        let odder = &nodes["Odder"];
        assert_eq!(
            odder
                .inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["ok"]
        );

        let ks = &nodes["KSampler"];
        let names: Vec<&str> = ks.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "model",
                "seed",
                "steps",
                "cfg",
                "sampler_name",
                "scheduler",
                "positive",
                "negative",
                "latent_image",
                "denoise"
            ],
            "input_order is kept"
        );
        assert_eq!(
            ks.input("seed").unwrap().kind,
            InputKind::Int {
                default: Some(0),
                min: Some(0),
                max: Some(18_446_744_073_709_551_615),
                step: None
            }
        );
        assert_eq!(
            ks.input("cfg").unwrap().kind,
            InputKind::Float {
                default: Some(8.0),
                min: Some(0.0),
                max: Some(100.0),
                step: Some(0.1)
            }
        );
        assert_eq!(
            ks.input("sampler_name").unwrap().kind,
            InputKind::Combo {
                options: vec!["euler".into(), "euler_ancestral".into(), "dpmpp_2m".into()],
                default: None,
                upload: None
            }
        );
        assert_eq!(
            ks.input("sampler_name").unwrap().tooltip.as_deref(),
            Some("How noise is removed.")
        );
        assert_eq!(
            ks.input("scheduler").unwrap().kind,
            InputKind::Combo {
                options: vec!["simple".into(), "karras".into()],
                default: Some("simple".into()),
                upload: None
            }
        );
        assert_eq!(
            ks.input("model").unwrap().kind,
            InputKind::Link { ty: "MODEL".into() }
        );
        assert!(ks.inputs.iter().all(|i| i.required));
        assert_eq!(ks.outputs, ["LATENT"]);
        assert_eq!(ks.category.as_deref(), Some("sampling"));
        assert_eq!(ks.pack, None);

        assert_eq!(
            nodes["CLIPTextEncode"].input("text").unwrap().kind,
            InputKind::String {
                default: None,
                multiline: true
            }
        );
        let save = &nodes["SaveImage"];
        assert!(save.output_node);
        assert_eq!(
            save.inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["filename_prefix", "images"],
            "hidden inputs are left out (no input_order: by name)"
        );
        let webp = &nodes["SaveAnimatedWEBP"];
        assert_eq!(
            webp.input("lossless").unwrap().kind,
            InputKind::Boolean {
                default: Some(true)
            }
        );
        assert!(!webp.input("fps").unwrap().required, "optional inputs");
        assert_eq!(webp.pack, None, "comfy_extras is core");
        assert_eq!(
            nodes["FluxProUltraImageNode"].pack, None,
            "API nodes are core"
        );

        for (class, input, kind) in [
            ("LoadImage", "image", "image"),
            ("LoadVideo", "file", "video"),
            ("LoadAudio", "audio", "audio"),
        ] {
            match &nodes[class].input(input).unwrap().kind {
                InputKind::Combo { upload, .. } => {
                    assert_eq!(upload.as_deref(), Some(kind), "{class}")
                }
                other => panic!("{class}: {other:?}"),
            }
        }
        let vhs = &nodes["VHS_VideoCombine"];
        assert_eq!(vhs.pack.as_deref(), Some("comfyui-videohelpersuite"));
        assert_eq!(
            vhs.inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>(),
            ["format", "frame_rate", "images", "audio"],
            "required first, then optional; the new-style hidden list is left out"
        );
        let load = &nodes["VHS_LoadVideo"];
        assert_eq!(
            load.pack.as_deref(),
            Some("comfyui-videohelpersuite"),
            "a module below the pack"
        );
        assert_eq!(
            load.input("force_rate").unwrap().kind,
            InputKind::Link { ty: "FLOAT".into() },
            "forceInput makes a link"
        );

        assert!(parse_object_info(&json!([1, 2])).is_empty());
        assert!(parse_object_info(&json!(null)).is_empty());
    }

    #[test]
    fn a_seed_bound_survives_serialisation() {
        let inv = inventory();
        let back: Inventory = serde_json::from_value(serde_json::to_value(&inv).unwrap()).unwrap();
        assert_eq!(back, inv);
        let json = serde_json::to_string(&inv.nodes["KSampler"]).unwrap();
        assert!(json.contains("18446744073709551615"), "{json}");
    }

    #[test]
    fn packs_are_told_apart_from_core_nodes() {
        assert_eq!(pack_of("nodes"), None);
        assert_eq!(pack_of("comfy_extras.nodes_video"), None);
        assert_eq!(pack_of("comfy_api_nodes.nodes_bfl"), None);
        assert_eq!(pack_of("custom_nodes"), None);
        assert_eq!(pack_of("custom_nodes."), None);
        assert_eq!(
            pack_of("custom_nodes.websocket_image_save"),
            None,
            "ComfyUI ships it"
        );
        assert_eq!(
            pack_of("custom_nodes.rgthree-comfy"),
            Some("rgthree-comfy".into())
        );
        let inv = inventory();
        assert_eq!(
            inv.packs(),
            BTreeMap::from([
                ("comfyui-videohelpersuite".to_owned(), 2),
                ("upscalers".to_owned(), 1)
            ])
        );
        assert_eq!(inv.core_nodes(), inv.nodes.len() - 3);
    }

    #[test]
    fn loaders_name_their_model_folder() {
        let inv = inventory();
        assert_eq!(
            inv.model_folder("CheckpointLoaderSimple", "ckpt_name"),
            Some("checkpoints")
        );
        assert_eq!(inv.model_folder("LoraLoader", "lora_name"), Some("loras"));
        assert_eq!(
            inv.model_folder("DualCLIPLoader", "clip_name2"),
            Some("text_encoders")
        );
        assert_eq!(
            inv.model_folder("UNETLoader", "unet_name"),
            Some("diffusion_models")
        );
        // A custom loader whose list (less "None") is exactly one folder's files.
        assert_eq!(
            inv.model_folder("UpscalerByFiles", "upscaler"),
            Some("upscale_models")
        );
        assert_eq!(inv.model_folder("KSampler", "sampler_name"), None);
        assert_eq!(inv.model_folder("KSampler", "steps"), None);
        assert_eq!(inv.model_folder("Nope", "x"), None);
    }

    fn graph(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The smallest txt2img graph, as ComfyUI's export writes it.
    fn txt2img() -> Value {
        json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": 18446744073709551615_u64, "steps": 20, "cfg": 8, "sampler_name": "euler",
                "scheduler": "karras", "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}, "_meta": {"title": "Positive"}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "slate", "images": ["8", 0]}},
            "10": {"class_type": "LoadImage", "inputs": {"image": "slate/abc/f.png"}}
        })
    }

    #[test]
    fn a_graph_the_endpoint_can_run_has_no_gaps() {
        assert_eq!(preflight(&graph(txt2img()), &inventory()), vec![]);
    }

    #[test]
    fn preflight_names_every_missing_class_and_model() {
        let mut g = txt2img();
        g["4"]["inputs"]["ckpt_name"] = json!("x.safetensors");
        g["12"] = json!({"class_type": "SomePackNode", "inputs": {"images": ["8", 0]}});
        g["11"] = json!({"class_type": "SomePackNode", "inputs": {}});
        g["20"] = json!({"class_type": "AnotherMissing", "inputs": {}});
        g["13"] = json!({"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors", "strength_model": 1, "model": ["4", 0], "clip": ["4", 1]}});
        g["14"] = json!({"class_type": "UpscalerByFiles", "inputs": {"upscaler": "8x.pth"}});
        let gaps = preflight(&graph(g), &inventory());
        assert_eq!(
            gaps,
            vec![
                Gap::MissingNode {
                    class: "AnotherMissing".into(),
                    nodes: vec!["20".into()]
                },
                Gap::MissingNode {
                    class: "SomePackNode".into(),
                    nodes: vec!["11".into(), "12".into()]
                },
                Gap::MissingModel {
                    node: "4".into(),
                    class: "CheckpointLoaderSimple".into(),
                    input: "ckpt_name".into(),
                    folder: "checkpoints".into(),
                    file: "x.safetensors".into()
                },
                Gap::MissingModel {
                    node: "13".into(),
                    class: "LoraLoader".into(),
                    input: "lora_name".into(),
                    folder: "loras".into(),
                    file: "style.safetensors".into()
                },
                Gap::MissingModel {
                    node: "14".into(),
                    class: "UpscalerByFiles".into(),
                    input: "upscaler".into(),
                    folder: "upscale_models".into(),
                    file: "8x.pth".into()
                },
            ]
        );
        let words = messages(&gaps);
        assert_eq!(
            words[1],
            "nodes 11, 12 use SomePackNode, which this endpoint does not have (a custom node, or one from a newer ComfyUI)"
        );
        assert_eq!(
            words[2],
            "node 4 (CheckpointLoaderSimple): model file \"x.safetensors\" is not in checkpoints on this endpoint"
        );
    }

    #[test]
    fn preflight_checks_choices_ranges_types_and_required_inputs() {
        let mut g = txt2img();
        g["3"]["inputs"]["sampler_name"] = json!("not_a_sampler");
        g["3"]["inputs"]["steps"] = json!("many");
        g["3"]["inputs"]["cfg"] = json!(150.5);
        g["5"]["inputs"]["width"] = json!(99999);
        g["5"]["inputs"]["height"] = json!("640"); // ComfyUI converts numeric text
        g["5"]["inputs"]
            .as_object_mut()
            .unwrap()
            .remove("batch_size");
        g["6"]["inputs"]["text"] = json!({"no": "text"});
        g["15"] = json!({"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["8", 0], "lossless": "yes"}});
        // Uploads are not judged (Slate uploads them just before queueing), nor links.
        g["16"] = json!({"class_type": "LoadVideo", "inputs": {"file": "not-listed.mp4"}});
        g["17"] = json!({"class_type": "LoadImage", "inputs": {"image": ["10", 0]}});
        let gaps = preflight(&graph(g), &inventory());
        let n = |s: &str| s.to_owned();
        assert_eq!(
            gaps,
            vec![
                Gap::WrongType {
                    node: n("3"),
                    class: n("KSampler"),
                    input: n("steps"),
                    want: n("INT"),
                    got: n("\"many\"")
                },
                Gap::OutOfRange {
                    node: n("3"),
                    class: n("KSampler"),
                    input: n("cfg"),
                    value: n("150.5"),
                    min: Some(n("0")),
                    max: Some(n("100"))
                },
                Gap::NotOffered {
                    node: n("3"),
                    class: n("KSampler"),
                    input: n("sampler_name"),
                    value: n("not_a_sampler"),
                    offered: vec![n("euler"), n("euler_ancestral"), n("dpmpp_2m")]
                },
                Gap::OutOfRange {
                    node: n("5"),
                    class: n("EmptyLatentImage"),
                    input: n("width"),
                    value: n("99999"),
                    min: Some(n("16")),
                    max: Some(n("16384"))
                },
                Gap::MissingInput {
                    node: n("5"),
                    class: n("EmptyLatentImage"),
                    input: n("batch_size")
                },
                Gap::WrongType {
                    node: n("6"),
                    class: n("CLIPTextEncode"),
                    input: n("text"),
                    want: n("STRING"),
                    got: n("{\"no\":\"text\"}")
                },
                Gap::WrongType {
                    node: n("15"),
                    class: n("SaveAnimatedWEBP"),
                    input: n("lossless"),
                    want: n("BOOLEAN"),
                    got: n("\"yes\"")
                },
            ]
        );
        let words = messages(&gaps);
        assert_eq!(
            words[0],
            "node 3 (KSampler): steps must be a whole number, not \"many\""
        );
        assert_eq!(
            words[2],
            "node 3 (KSampler): sampler_name \"not_a_sampler\" is not one of the choices this endpoint offers (euler, euler_ancestral, dpmpp_2m)"
        );
        assert_eq!(
            words[3],
            "node 5 (EmptyLatentImage): width is 99999, but this endpoint takes from 16 to 16384"
        );
        assert_eq!(
            words[4],
            "node 5 (EmptyLatentImage): the required input batch_size is missing"
        );
    }

    #[test]
    fn a_seed_above_the_endpoints_max_is_out_of_range() {
        let mut g = txt2img();
        g["3"]["inputs"]["seed"] = json!(-1);
        let gaps = preflight(&graph(g.clone()), &inventory());
        assert!(
            matches!(&gaps[..], [Gap::OutOfRange { input, .. }] if input == "seed"),
            "{gaps:?}"
        );
        // Past 2^64 − 1 (serde_json keeps a float).
        g["3"]["inputs"]["seed"] = json!(1e20);
        let gaps = preflight(&graph(g), &inventory());
        assert_eq!(
            messages(&gaps),
            ["node 3 (KSampler): seed is 100000000000000000000, but this endpoint takes from 0 to 18446744073709551615"]
        );
    }

    #[test]
    fn gaps_travel_as_tagged_json() {
        let gap = Gap::MissingNode {
            class: "VHS_VideoCombine".into(),
            nodes: vec!["12".into()],
        };
        let v = serde_json::to_value(&gap).unwrap();
        assert_eq!(
            v,
            json!({"gap": "missing_node", "class": "VHS_VideoCombine", "nodes": ["12"]})
        );
        assert_eq!(serde_json::from_value::<Gap>(v).unwrap(), gap);
        assert_eq!(
            gap.to_string(),
            "node 12 uses VHS_VideoCombine, which this endpoint does not have (a custom node, or one from a newer ComfyUI)"
        );
    }
}
