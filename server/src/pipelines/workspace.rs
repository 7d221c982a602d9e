//! The work directory the stages of runs share, laid out the same for every executor
//! that works with files (local stages here, Jobs on a volume that shows it at the same
//! path): inputs fetched from storage, references resolved to paths in it, logs
//! archived and outputs kept as assets.
//!
//! Layout under the work directory: `<run>/inputs/<asset>/input.<ext>` (inputs, fetched
//! once per run), `<run>/<stage>/<attempt>/` (the attempt's working directory, with
//! `out/`), and `<run>/<stage>/out` (the outputs of the attempt that succeeded, for the
//! stages after it). Every name in it is Slate's: ids, stage names (identifiers, checked
//! when the template is saved) and `input` with an extension of at most eight lower-case
//! letters or digits taken from the asset's name. A name a person gave (an asset's, an
//! output's) never becomes a path, and every path handed to a stage is checked to be
//! inside its run's directory, links resolved; anything else fails the stage.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use std::collections::{BTreeMap, HashMap};

use app::pipelines::template::{host_path, json_at, stage_texts, ParamType, Reference, Template};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use super::attempt::Attempt;
use super::queue::Claim;
use crate::assets::Assets;

/// The work directory the stages of runs share (see the module documentation): inputs
/// fetched from storage, references resolved to paths in it, outputs kept as assets, logs
/// archived. The Kubernetes executor uses the same layout on a volume its Jobs mount.
#[derive(Clone)]
pub struct Workspace {
    pub pool: PgPool,
    pub assets: Assets,
    pub work: PathBuf,
}

/// What references resolve to besides parameters and places: the item of an instance of a
/// fanned-out stage, and the values upstream stages ended with (a fanned-out stage's: the
/// list of its instances' values, in item order).
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub item: Option<Value>,
    pub values: HashMap<String, Value>,
}

impl Scope {
    /// The JSON a parameter, values or item reference stands for (`None` for places, and
    /// for a path that leads nowhere).
    pub fn value(&self, reference: &Reference, params: &Value) -> Option<Value> {
        match reference {
            Reference::Param(p) => params.get(p.as_str()).cloned(),
            Reference::Values(stage, path) => json_at(self.values.get(stage)?, path).cloned(),
            Reference::Item(path) => json_at(self.item.as_ref()?, path).cloned(),
            Reference::Outputs(_) | Reference::NodeOutputs(..) | Reference::Output => None,
        }
    }
}

/// The text of a reference inside a longer text.
fn reference_text(reference: &Reference) -> String {
    match reference {
        Reference::Param(p) => format!("${{params.{p}}}"),
        Reference::Outputs(s) => format!("${{stages.{s}.outputs}}"),
        Reference::NodeOutputs(s, node) => format!("${{stages.{s}.outputs.{node}}}"),
        Reference::Values(s, path) if path.is_empty() => format!("${{stages.{s}.values}}"),
        Reference::Values(s, path) => format!("${{stages.{s}.values.{}}}", path.join(".")),
        Reference::Item(path) if path.is_empty() => "${item}".to_owned(),
        Reference::Item(path) => format!("${{item.{}}}", path.join(".")),
        Reference::Output => "${output}".to_owned(),
    }
}

/// A stage's inputs with parameter, values and item references resolved: an input that is
/// exactly one reference keeps the value's JSON type, references inside a longer text
/// become text. Places (outputs) stay as written: the executor resolves those.
pub fn bind_inputs(
    inputs: &BTreeMap<String, Value>,
    params: &Value,
    scope: &Scope,
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in inputs {
        let bound = match value {
            Value::String(text) => {
                let refs = app::pipelines::template::references(text).unwrap_or_default();
                match refs.as_slice() {
                    [r] if text.trim() == reference_text(r) && !is_place(r) => {
                        scope.value(r, params).unwrap_or(Value::Null)
                    }
                    _ => {
                        let mut t = text.clone();
                        for r in refs.iter().filter(|r| !is_place(r)) {
                            let v = scalar_text(&scope.value(r, params).unwrap_or(Value::Null));
                            t = t.replace(&reference_text(r), &v);
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

fn is_place(r: &Reference) -> bool {
    matches!(
        r,
        Reference::Outputs(_) | Reference::NodeOutputs(..) | Reference::Output
    )
}

/// An asset given to a run: its file on this machine, and what provenance records.
pub struct Input {
    pub path: PathBuf,
    /// The asset's name, as people see it (never a path).
    pub name: String,
    pub version: Uuid,
    pub duration_us: Option<u64>,
}

/// The file name an input is placed under: `input`, with the extension of the asset's
/// name when it is one to eight lower-case letters or digits (tools such as Blender look
/// at it); nothing else of the name is used.
pub fn input_file_name(asset_name: &str) -> String {
    match safe_extension(asset_name) {
        Some(e) => format!("input.{e}"),
        None => "input".to_owned(),
    }
}

/// The extension of `name` in lower case, when it is one to eight ASCII letters or
/// digits (`mov`, `blend`, `png`); anything else is no extension.
pub fn safe_extension(name: &str) -> Option<String> {
    name.rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .filter(|e| {
            (1..=8).contains(&e.len())
                && e.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Whether `path` lies under `base` by its components alone: no `..`, no root, no
/// prefix after `base`.
fn lexically_inside(base: &Path, path: &Path) -> bool {
    path.strip_prefix(base).is_ok_and(|rest| {
        rest.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    })
}

/// Refuses `path` unless it is inside `base` once both are resolved (links followed):
/// whatever a name or a link says, a stage only gets places under its run's directory.
/// The path itself is kept as it is (Jobs see the work directory at this same path).
async fn resolved_inside(base: &Path, path: &Path) -> Result<(), String> {
    let refused = || format!("{} is outside the run's directory; refused", path.display());
    if !lexically_inside(base, path) {
        return Err(refused());
    }
    let base = tokio::fs::canonicalize(base)
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", base.display()))?;
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    if real.starts_with(&base) {
        Ok(())
    } else {
        Err(refused())
    }
}

impl Workspace {
    /// The asset's current file in the run's inputs (fetched once per run).
    pub async fn input(&self, run: Uuid, asset: Uuid) -> Result<Input, String> {
        let row: Option<(Uuid, String, Option<String>, Option<Value>)> = sqlx::query_as(
            "select v.id, a.name, v.blob_key, v.probe from assets a join asset_versions v on v.id = a.current_version_id
             where a.id = $1 and a.deleted_at is null",
        )
        .bind(asset)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| format!("cannot read asset {asset}: {e}"))?;
        let Some((version, name, Some(key), probe)) = row else {
            return Err(format!("asset {asset} is gone or has no stored file"));
        };
        let run_dir = self.work.join(run.to_string());
        let dir = run_dir.join("inputs").join(asset.to_string());
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| format!("cannot prepare the inputs: {e}"))?;
        let path = dir.join(input_file_name(&name));
        if tokio::fs::symlink_metadata(&path).await.is_err() {
            // Stages of one run may fetch the same input at once, and the file may be a
            // hard link to the stored blob: each fetch is made under its own name and
            // renamed into place, so no writer ever opens a path another stage (or the
            // store) reads from.
            let own = Uuid::now_v7();
            let scratch = dir.join(format!(".download-{own}"));
            let staged = dir.join(format!(".staged-{own}"));
            let local = self
                .assets
                .storage
                .local_copy(&key, &scratch)
                .await
                .map_err(|e| format!("cannot fetch asset {asset}: {e}"))?;
            // Hard-link the stored blob when it is on this disk and readable by the stage
            // user; else copy it (readable, as a download is).
            let placed = async {
                let readable = tokio::fs::metadata(&local)
                    .await
                    .is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
                if !readable || tokio::fs::hard_link(&local, &staged).await.is_err() {
                    tokio::fs::copy(&local, &staged).await?;
                    tokio::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o644))
                        .await?;
                }
                tokio::fs::rename(&staged, &path).await
            }
            .await;
            let _ = tokio::fs::remove_file(&scratch).await;
            let _ = tokio::fs::remove_file(&staged).await;
            placed.map_err(|e| format!("cannot fetch asset {asset}: {e}"))?;
        }
        resolved_inside(&run_dir, &path).await?;
        let duration_us = probe
            .as_ref()
            .and_then(|p| {
                p["duration_seconds"]
                    .as_f64()
                    .or_else(|| p["duration"].as_f64())
            })
            .map(|s| (s * 1_000_000.0) as u64);
        Ok(Input {
            path,
            name,
            version,
            duration_us,
        })
    }

    /// `raw` (a stage's arguments or command) with every reference resolved, and the
    /// inputs used.
    pub async fn arguments(
        &self,
        attempt: &Attempt,
        raw: &[String],
        out: &Path,
    ) -> Result<(Vec<String>, Vec<(Uuid, Input)>), String> {
        let claim = &attempt.claim;
        let template: &Template = &attempt.stored.template;
        let run_dir = self.work.join(claim.run_id.to_string());
        // Stage names are identifiers, so these stay in the run; checked all the same.
        let inside = |path: PathBuf| {
            if lexically_inside(&run_dir, &path) {
                Ok(path.display().to_string())
            } else {
                Err(format!(
                    "{} is outside the run's directory; refused",
                    path.display()
                ))
            }
        };
        let refuse_absolute = attempt.stage.kind.runs_on_host();
        let scope = self.scope(attempt).await?;
        let mut inputs: Vec<(Uuid, Input)> = Vec::new();
        let mut args = Vec::new();
        for raw in raw {
            // Checked when the template is saved; again here for versions saved before.
            if let Some(why) = host_path(raw, refuse_absolute) {
                return Err(format!("the argument \"{raw}\" {why}; refused"));
            }
            let refs = app::pipelines::template::references(raw)?;
            // An argument that is exactly a list of assets becomes one argument each.
            let mut expanded: Option<Vec<String>> = None;
            let mut text = raw.clone();
            for r in refs {
                let (pattern, value) = match &r {
                    Reference::Output => ("${output}".to_owned(), inside(out.to_owned())?),
                    Reference::Outputs(s) => (
                        format!("${{stages.{s}.outputs}}"),
                        inside(self.outputs_of(attempt, s, None).await?)?,
                    ),
                    // Checked to be a node id (no separator, no dot) when parsed.
                    Reference::NodeOutputs(s, node) => (
                        format!("${{stages.{s}.outputs.{node}}}"),
                        inside(self.outputs_of(attempt, s, Some(node)).await?)?,
                    ),
                    Reference::Values(..) | Reference::Item(_) => {
                        // Someone's text too (a planner's prompt): it may not name a place.
                        let text =
                            scalar_text(&scope.value(&r, &claim.params).unwrap_or(Value::Null));
                        if let Some(why) = host_path(&text, refuse_absolute) {
                            return Err(format!(
                                "the value of {}, \"{text}\", {why}; refused",
                                reference_text(&r)
                            ));
                        }
                        (reference_text(&r), text)
                    }
                    Reference::Param(p) => {
                        let param = template
                            .parameter(p)
                            .ok_or_else(|| format!("unknown parameter {p}"))?;
                        let value = &claim.params[p.as_str()];
                        let pattern = format!("${{params.{p}}}");
                        match &param.ty {
                            ParamType::Asset { .. } | ParamType::Assets { .. } => {
                                let mut paths = Vec::new();
                                for id in asset_ids(value) {
                                    let input = self.input(claim.run_id, id).await?;
                                    paths.push(input.path.display().to_string());
                                    inputs.push((id, input));
                                }
                                if raw.trim() == pattern {
                                    expanded = Some(paths.clone());
                                }
                                (pattern, paths.join(" "))
                            }
                            _ => {
                                // A value is someone's text: it may not name a place
                                // either (as the template's own text may not).
                                let text = scalar_text(value);
                                if let Some(why) = host_path(&text, refuse_absolute) {
                                    return Err(format!(
                                        "the value of {p}, \"{text}\", {why}; refused"
                                    ));
                                }
                                (pattern, text)
                            }
                        }
                    }
                };
                text = text.replace(&pattern, &value);
            }
            match expanded {
                Some(list) => args.extend(list),
                None => args.push(text),
            }
        }
        Ok((args, inputs))
    }
}

fn asset_ids(value: &Value) -> Vec<Uuid> {
    match value {
        Value::String(s) => s.parse().into_iter().collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str()?.parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Workspace {
    /// The values and item the stage's references may name (see [`Scope`]).
    pub async fn scope(&self, attempt: &Attempt) -> Result<Scope, String> {
        let claim = &attempt.claim;
        let mut scope = Scope {
            item: claim.item.as_ref().map(|(_, item)| item.clone()),
            values: HashMap::new(),
        };
        for text in stage_texts(&attempt.stage) {
            for r in app::pipelines::template::references(&text).unwrap_or_default() {
                if let Reference::Values(stage, _) = r {
                    if let std::collections::hash_map::Entry::Vacant(entry) =
                        scope.values.entry(stage)
                    {
                        let values = self.values_of(claim.run_id, entry.key()).await?;
                        entry.insert(values);
                    }
                }
            }
        }
        Ok(scope)
    }

    /// The values stage `stage` of `run` ended with: a fanned-out stage's are the list of
    /// its instances' values, in item order.
    pub async fn values_of(&self, run: Uuid, stage: &str) -> Result<Value, String> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| format!("cannot read the values of stage {stage}: {e}"))?;
        super::queue::stage_values(&mut conn, run, stage)
            .await
            .map_err(|e| format!("cannot read the values of stage {stage}: {e}"))
    }

    /// The directory holding what stage `stage` left (all of it, or one node's): its
    /// `out/` (or `by-node/<node>/`). For a fanned-out stage it is made once, when first
    /// asked for, from its instances' in item order: each file linked as
    /// `<index, five digits>-<its name>`, so that a glob or a sorted listing reads them in
    /// order.
    pub async fn outputs_of(
        &self,
        attempt: &Attempt,
        stage: &str,
        node: Option<&str>,
    ) -> Result<PathBuf, String> {
        let run = attempt.claim.run_id;
        let run_dir = self.work.join(run.to_string());
        let sub: PathBuf = match node {
            Some(node) => Path::new("by-node").join(node),
            None => PathBuf::from("out"),
        };
        let target = run_dir.join(stage).join(&sub);
        let fanned = attempt
            .stored
            .template
            .stage(stage)
            .is_some_and(|s| s.for_each.is_some());
        if !fanned || tokio::fs::symlink_metadata(&target).await.is_ok() {
            return Ok(target);
        }
        let instances: Vec<(i32, String)> = sqlx::query_as(
            "select item_index, name from run_stages
             where run_id = $1 and fan_of = $2 and state = 'succeeded' order by item_index",
        )
        .bind(run)
        .bind(stage)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| format!("cannot list the instances of stage {stage}: {e}"))?;
        let parent = target
            .parent()
            .ok_or("the outputs have no parent directory")?
            .to_owned();
        let scratch = parent.join(format!(".gather-{}", Uuid::now_v7()));
        let gathered = async {
            tokio::fs::create_dir_all(&scratch).await?;
            for (index, name) in &instances {
                let from = run_dir.join(name).join(&sub);
                let Ok(mut entries) = tokio::fs::read_dir(&from).await else {
                    continue;
                };
                let mut files = Vec::new();
                while let Some(entry) = entries.next_entry().await? {
                    // Files only, links never followed: as for any stage's outputs.
                    if entry.file_type().await?.is_file() {
                        files.push(entry.file_name());
                    }
                }
                files.sort();
                for file in files {
                    let to = scratch.join(format!("{index:05}-{}", file.to_string_lossy()));
                    tokio::fs::hard_link(from.join(&file), to).await?;
                }
            }
            // Another stage may have gathered it meanwhile: either copy is the same.
            if tokio::fs::rename(&scratch, &target).await.is_err() {
                let _ = tokio::fs::remove_dir_all(&scratch).await;
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = gathered {
            let _ = tokio::fs::remove_dir_all(&scratch).await;
            return Err(format!("cannot gather the outputs of stage {stage}: {e}"));
        }
        resolved_inside(&run_dir, &target).await?;
        Ok(target)
    }

    /// `<work>/<run>/<stage>`.
    pub fn stage_dir(&self, claim: &Claim) -> PathBuf {
        self.work.join(claim.run_id.to_string()).join(&claim.name)
    }

    /// Stores the attempt's whole log (written to `workdir` first) and links it to the
    /// attempt, with what the executor calls the work when it has no better name.
    pub async fn archive_log(
        &self,
        attempt: &Attempt,
        workdir: &Path,
        text: &str,
        reference: &str,
    ) {
        let _ = tokio::fs::create_dir_all(workdir).await;
        let path = workdir.join("slate-attempt.log");
        let key = attempt.log_key();
        // The stage may have left something under that name (a link to follow): the log
        // is only ever written as a new file.
        let _ = tokio::fs::remove_file(&path).await;
        let written = async {
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await?;
            file.write_all(text.as_bytes()).await?;
            file.flush().await
        }
        .await;
        if written.is_ok() && self.assets.storage.put_file(&key, &path).await.is_ok() {
            attempt.archived(&key, reference).await;
        }
    }

    /// Every file the stage left in its outputs becomes an asset of the submitter, linked
    /// to the run with its provenance (`how`: the executor and what it ran, merged in),
    /// and goes through the usual processing (kind, facts, thumbnail, proxy).
    pub async fn outputs(
        &self,
        attempt: &Attempt,
        dir: &Path,
        inputs: &[(Uuid, Input)],
        how: Value,
    ) -> Result<(), String> {
        let (claim, stored) = (&attempt.claim, &attempt.stored);
        // What a stage left as its outputs must be a directory of its run, not a link
        // to somewhere else; the files in it are taken as they are, links never followed.
        let is_dir = tokio::fs::symlink_metadata(dir)
            .await
            .is_ok_and(|m| m.is_dir());
        if !is_dir {
            return Err(format!(
                "the outputs {} are not a directory; refused",
                dir.display()
            ));
        }
        resolved_inside(&self.work.join(claim.run_id.to_string()), dir).await?;
        let mut entries = tokio::fs::read_dir(dir)
            .await
            .map_err(|e| format!("cannot list the outputs: {e}"))?;
        let mut files = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_type().await.is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
        files.sort();
        let mut provenance = json!({
            "template": stored.name,
            "template_version": stored.version,
            "stage": claim.name,
            "attempt": claim.attempt,
            "params": claim.params,
            "inputs": inputs.iter().map(|(a, i)| json!({"asset": a, "version": i.version})).collect::<Vec<_>>(),
        });
        if let (Some(all), Value::Object(how)) = (provenance.as_object_mut(), how) {
            all.extend(how);
        }
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            super::outputs::ingest(&self.assets, claim, &file, &name, &provenance)
                .await
                .map_err(|e| format!("cannot store output {name}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_is_placed_under_a_fixed_name_whatever_the_asset_is_called() {
        assert_eq!(input_file_name("shot_020.MOV"), "input.mov");
        assert_eq!(input_file_name("scene.blend"), "input.blend");
        for hostile in [
            "../../../../tmp/slate-pwn",
            "/etc/passwd",
            "x.mp4/../../a",
            "a.sh;rm -rf",
            "clip.thisistoolong",
            "..",
            "",
        ] {
            assert_eq!(input_file_name(hostile), "input", "{hostile}");
        }
    }

    #[test]
    fn paths_inside_the_run_are_checked_by_their_components() {
        let run = Path::new("/work/run");
        assert!(lexically_inside(
            run,
            Path::new("/work/run/inputs/a/input.mov")
        ));
        assert!(!lexically_inside(run, Path::new("/work/run/../other/out")));
        assert!(!lexically_inside(run, Path::new("/work/other")));
        assert!(!lexically_inside(run, Path::new("/work/runaway/x")));
    }
}
