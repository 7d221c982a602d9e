//! The workflow graphs Slate builds for a `comfyui` stage, with the stage's values bound,
//! and the names files get on the way to and from the endpoint (never a path here).

use serde_json::{json, Value};
use uuid::Uuid;

use app::pipelines::template::{Reference, Stage};

/// The graph of a built-in workflow with the stage's values bound.
pub fn graph(
    workflow: &str,
    values: &serde_json::Map<String, Value>,
    checkpoint: &str,
    prefix: &str,
) -> Option<Value> {
    let int = |k: &str, d: i64| values.get(k).and_then(Value::as_i64).unwrap_or(d);
    let num = |k: &str, d: f64| values.get(k).and_then(Value::as_f64).unwrap_or(d);
    let text = |k: &str| {
        values
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match workflow {
        "txt2img" => Some(json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {
                "width": int("width", 1024), "height": int("height", 576), "batch_size": int("count", 1)}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text("prompt"), "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": text("negative"), "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": int("seed", 0), "steps": int("steps", 25), "cfg": num("cfg", 7.0),
                "sampler_name": "euler", "scheduler": "normal", "denoise": num("denoise", 1.0),
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
        })),
        "img2img" => Some(json!({
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
            "10": {"class_type": "LoadImage", "inputs": {"image": text("image")}},
            "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text("prompt"), "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": text("negative"), "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": int("seed", 0), "steps": int("steps", 25), "cfg": num("cfg", 7.0),
                "sampler_name": "euler", "scheduler": "normal", "denoise": num("denoise", 0.6),
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["11", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
        })),
        _ => None,
    }
}

/// The stage's inputs with `${params.…}` resolved to the run's values (an input that is
/// exactly one reference keeps the value's type).
pub(super) fn bind(stage: &Stage, params: &Value) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in &stage.inputs {
        let bound = match value {
            Value::String(text) => {
                let refs = app::pipelines::template::references(text).unwrap_or_default();
                match refs.as_slice() {
                    [Reference::Param(p)] if text.trim() == format!("${{params.{p}}}") => {
                        params[p.as_str()].clone()
                    }
                    _ => {
                        let mut t = text.clone();
                        for r in refs {
                            if let Reference::Param(p) = r {
                                let v = match &params[p.as_str()] {
                                    Value::String(s) => s.clone(),
                                    Value::Null => String::new(),
                                    other => other.to_string(),
                                };
                                t = t.replace(&format!("${{params.{p}}}"), &v);
                            }
                        }
                        Value::String(t)
                    }
                }
            }
            other => other.clone(),
        };
        out.insert(name.clone(), bound);
    }
    out
}

/// The name an input image is uploaded to ComfyUI under (it becomes a file on the
/// endpoint): the asset's id, then its name with anything but ASCII letters, digits,
/// `.`, `_` and `-` replaced, never starting with a dot, at most 100 characters.
pub(super) fn upload_name(asset: Uuid, asset_name: &str) -> String {
    let safe: String = asset_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    format!("slate_{}_{}", asset.simple(), safe.trim_start_matches('.'))
}

/// Where the `index`th image ComfyUI gave a stage is kept, and the asset's name: on disk
/// always `<stage>_<n>.<ext>` (the endpoint's file name is its own, and never a path
/// here), the extension kept when it is one to eight lower-case letters or digits; the
/// asset is named that way for a PNG, after the endpoint's name otherwise.
pub(super) fn output_names(stage: &str, index: usize, filename: &str) -> (String, String) {
    let extension =
        crate::pipelines::workspace::safe_extension(filename).unwrap_or_else(|| "png".to_owned());
    let on_disk = format!("{stage}_{:04}.{extension}", index + 1);
    let name = if extension == "png" {
        on_disk.clone()
    } else {
        crate::assets::clean_name(filename)
    };
    (on_disk, name)
}
