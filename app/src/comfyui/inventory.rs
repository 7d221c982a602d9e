//! What a ComfyUI endpoint has: its node classes (from `/object_info`, each with its
//! inputs typed and the node pack it comes from) and its model files by folder (from
//! `/models`), and the pre-flight check of a bound graph against them.
//!
//! Decision 0014; the shapes parsed are in shared/reference/comfyui-workflows.md §2–3.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    /// `INT`. Bounds as ComfyUI states them (a seed's max is 2^64 − 1, hence `u64`/`i128`-safe `f64`? no: kept exact as i128).
    Int {
        default: Option<i128>,
        min: Option<i128>,
        max: Option<i128>,
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
    Link { ty: String },
}
