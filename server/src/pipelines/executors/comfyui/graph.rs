//! A `comfyui` stage's values bound from the run's parameters, and the names files get
//! on the way to and from the endpoint (never a path here).

use serde_json::Value;
use uuid::Uuid;

use app::pipelines::template::Stage;

use crate::pipelines::workspace::Scope;

/// The stage's inputs with `${params.…}` resolved to the run's values (an input that is
/// exactly one reference keeps the value's type), and the item and upstream values when
/// `scope` has them.
pub fn bind(stage: &Stage, params: &Value) -> serde_json::Map<String, Value> {
    bind_in(stage, params, &Scope::default())
}

/// [`bind`] with the item and upstream values of `scope`.
pub fn bind_in(stage: &Stage, params: &Value, scope: &Scope) -> serde_json::Map<String, Value> {
    crate::pipelines::workspace::bind_inputs(&stage.inputs, params, scope)
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

/// Where the `index`th file a node gave a stage is kept, and the asset's name: on disk
/// always `<stage>_<node>_<n>.<ext>` (the endpoint's file name is its own, and never a
/// path here), the extension kept when it is one to eight lower-case letters or digits;
/// the asset is named for the run (its id's last eight digits), the stage and the node:
/// `<run>-<stage>-<node>-<n>.<ext>`.
pub(super) fn output_names(
    run: &str,
    stage: &str,
    node: &str,
    index: usize,
    filename: &str,
) -> (String, String) {
    let extension =
        crate::pipelines::workspace::safe_extension(filename).unwrap_or_else(|| "png".to_owned());
    let node: String = node
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(32)
        .collect();
    let on_disk = format!("{stage}_{node}_{:04}.{extension}", index + 1);
    let name = format!("{run}-{stage}-{node}-{:04}.{extension}", index + 1);
    (on_disk, name)
}
