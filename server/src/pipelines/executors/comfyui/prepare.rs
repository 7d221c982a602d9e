//! Making the graph a stage sends: its workflow version (fixed when the run was
//! submitted), the stage's values bound into it, the files it loads (library assets or
//! an upstream stage's outputs) fetched to be uploaded, and the model files it names
//! checked against the endpoint's folders just before the prompt is queued (models
//! change between submission and execution; a missing one is named, not discovered by
//! ComfyUI's refusal).

use std::path::PathBuf;

use app::comfyui::workflow::{self as wf, Binding, Graph};
use app::pipelines::template::{ParamType, Reference};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::graph::upload_name;
use crate::comfyui::probe::Prober;
use crate::comfyui::workflows::store::{self, Version};
use crate::pipelines::attempt::Attempt;
use crate::pipelines::workspace::Workspace;

/// A file a graph loads: the binding it is for, the name it is uploaded under, its bytes.
pub struct Upload {
    pub binding: String,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Largest file uploaded for one input.
const MAX_INPUT: u64 = crate::comfyui::client::MAX_UPLOAD as u64;

/// The workflow version the stage runs: the one fixed at submission, else (a run
/// submitted before workflows were stored) the one its template names now.
pub async fn version(
    pool: &sqlx::PgPool,
    attempt: &Attempt,
    reference: &str,
) -> Result<Version, String> {
    let fixed: Option<Option<Uuid>> =
        sqlx::query_scalar("select workflow_id from run_stages where id = $1")
            .bind(attempt.claim.stage_id)
            .fetch_optional(pool)
            .await
            .map_err(|e| format!("cannot read the stage: {e}"))?;
    if let Some(id) = fixed.flatten() {
        return store::by_id(pool, id)
            .await
            .map_err(|e| format!("cannot read the workflow: {e}"))?
            .ok_or_else(|| "the stage's workflow version is gone".to_owned());
    }
    store::resolve(pool, reference)
        .await
        .map_err(|e| e.to_string())
}

/// The kind of a file by its extension, as the library names kinds.
fn kind_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" | "jpg" | "jpeg" | "webp" | "bmp" | "tif" | "tiff" | "gif" => "image",
        "mp4" | "webm" | "mov" | "mkv" | "avi" | "m4v" => "video",
        "wav" | "flac" | "mp3" | "ogg" | "opus" | "m4a" | "aac" => "audio",
        _ => "other",
    }
}

/// The files the graph loads, read for upload: for each asset binding, the library
/// asset its parameter names or the first file of the kind in the upstream stage's
/// outputs (or one node's).
pub async fn uploads(
    attempt: &Attempt,
    files: &Workspace,
    bindings: &[Binding],
) -> Result<Vec<Upload>, String> {
    let (claim, stage) = (&attempt.claim, &attempt.stage);
    let template = &attempt.stored.template;
    let mut out = Vec::new();
    for b in bindings {
        let ParamType::Asset { kind } = &b.param.ty else {
            continue;
        };
        let Some(raw) = stage.inputs.get(&b.param.name).and_then(Value::as_str) else {
            continue;
        };
        let refs = app::pipelines::template::references(raw).unwrap_or_default();
        let (name, path) = match refs.as_slice() {
            [Reference::Param(p)] => {
                let Some(asset) = template
                    .parameter(p)
                    .and_then(|_| claim.params[p.as_str()].as_str())
                    .and_then(|a| a.parse::<Uuid>().ok())
                else {
                    continue;
                };
                let fetched = files.input(claim.run_id, asset).await?;
                (upload_name(asset, &fetched.name), fetched.path)
            }
            [Reference::Outputs(up)] | [Reference::NodeOutputs(up, _)] => {
                let node = match &refs[0] {
                    Reference::NodeOutputs(_, node) => Some(node.as_str()),
                    _ => None,
                };
                let dir = files.outputs_of(attempt, up, node).await?;
                let path = first_of_kind(&dir, kind).await.ok_or_else(|| {
                    format!(
                        "stage \"{up}\" left no {kind} file for input \"{}\"",
                        b.param.name
                    )
                })?;
                let file = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("input")
                    .to_owned();
                (upload_name(claim.stage_id, &file), path)
            }
            _ => continue,
        };
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| format!("cannot read the input for {}: {e}", b.param.name))?;
        if !meta.is_file() || meta.len() > MAX_INPUT {
            return Err(format!(
                "the input for {} is not a regular file of at most {} MiB",
                b.param.name,
                MAX_INPUT / (1024 * 1024)
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("cannot read the input for {}: {e}", b.param.name))?;
        out.push(Upload {
            binding: b.param.name.clone(),
            name,
            bytes,
        });
    }
    Ok(out)
}

/// The first regular file of `kind` in `dir`, by name.
async fn first_of_kind(dir: &std::path::Path, kind: &str) -> Option<PathBuf> {
    let mut entries = tokio::fs::read_dir(dir).await.ok()?;
    let mut found = Vec::new();
    while let Ok(Some(e)) = entries.next_entry().await {
        let name = e.file_name().to_string_lossy().into_owned();
        let regular = tokio::fs::symlink_metadata(e.path())
            .await
            .is_ok_and(|m| m.is_file());
        if regular && kind_of(&name) == kind {
            found.push(e.path());
        }
    }
    found.sort();
    found.into_iter().next()
}

/// The model files the bound values name, checked against the endpoint's folders now;
/// a model binding left empty takes the folder's first file. Returns the values to
/// bind and the models used (`[{folder, file, node}]`), or why the stage cannot run
/// there (final: another attempt would find the same folder).
pub async fn models(
    prober: &Prober,
    url: &str,
    version: &Version,
    values: &mut Map<String, Value>,
) -> Result<Vec<Value>, ModelProblem> {
    let mut listed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut used = Vec::new();
    // Every loader input of the graph, bound or literal.
    let mut wanted: Vec<(String, String, String, Option<String>)> = Vec::new();
    for id in wf::node_order(&version.graph) {
        let class = wf::class_of(&version.graph, &id).to_owned();
        for (input, literal) in wf::literals(&version.graph, &id) {
            let Some(folder) = wf::model_folder(&class, &input, None) else {
                continue;
            };
            let binding = version
                .bindings
                .iter()
                .find(|b| b.node == id && b.input == input);
            let file = match binding {
                Some(b) => match values.get(&b.param.name) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                },
                None => literal
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            };
            wanted.push((
                id.clone(),
                folder,
                binding.map(|b| b.param.name.clone()).unwrap_or_default(),
                file,
            ));
        }
    }
    for (node, folder, binding, file) in wanted {
        if !listed.contains_key(&folder) {
            let files = prober
                .get_json(url, &format!("/models/{folder}"))
                .await
                .map_err(|e| ModelProblem::Endpoint(e.to_string()))?
                .json
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            listed.insert(folder.clone(), files);
        }
        let files = &listed[&folder];
        let file = match file {
            Some(f) if files.contains(&f) => f,
            Some(f) => {
                return Err(ModelProblem::Missing(format!(
                    "the endpoint has no model file \"{f}\" in {folder} (node {node} needs it); it has {}",
                    if files.is_empty() { "none".to_owned() } else { files.join(", ") }
                )))
            }
            None => match files.first() {
                Some(first) if !binding.is_empty() => {
                    values.insert(binding.clone(), json!(first));
                    first.clone()
                }
                _ => {
                    return Err(ModelProblem::Missing(format!(
                        "the endpoint has no model file in {folder} for node {node}"
                    )))
                }
            },
        };
        used.push(json!({"node": node, "folder": folder, "file": file}));
    }
    Ok(used)
}

pub enum ModelProblem {
    /// The endpoint could not be asked (it may be away): wait, as for any request.
    Endpoint(String),
    /// A model is not there: final.
    Missing(String),
}

/// The graph to send: the version's graph with the values and the uploaded names
/// bound, its save nodes' prefixes set.
pub fn graph(version: &Version, values: &Map<String, Value>, prefix: &str) -> Graph {
    let mut graph = wf::bind(&version.graph, &version.bindings, values);
    wf::set_prefixes(&mut graph, prefix);
    graph
}

/// The seeds of the bound values (every seed binding), for provenance.
pub fn seeds(version: &Version, values: &Map<String, Value>) -> Value {
    Value::Object(
        version
            .bindings
            .iter()
            .filter(|b| b.param.ty == ParamType::Seed)
            .filter_map(|b| {
                values
                    .get(&b.param.name)
                    .map(|v| (b.param.name.clone(), v.clone()))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_extension() {
        assert_eq!(kind_of("a.PNG"), "image");
        assert_eq!(kind_of("clip_0001.mp4"), "video");
        assert_eq!(kind_of("take.flac"), "audio");
        assert_eq!(kind_of("model.glb"), "other");
        assert_eq!(kind_of("noextension"), "other");
    }
}
