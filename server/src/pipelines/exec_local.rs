//! The local executor: a `local` stage's program runs on this machine through
//! [`super::local`], with its references resolved to files and values:
//! `${params.NAME}` (a value, or an asset's file), `${stages.NAME.outputs}` (that stage's
//! output directory) and `${output}` (this attempt's). Logs go to `stage_logs` as they
//! come and to storage in full at the end; progress to the stage; every file the stage
//! leaves in its output directory becomes an asset with its provenance.
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
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::local::{self, Allowed, Event, Expected, RunAs, Spec, Stream};
use super::queue::{Claim, Outcome};
use super::{store, Executor};
use crate::assets::Assets;
use app::pipelines::template::{host_path, ParamType, Reference, Template};

pub struct LocalExecutor {
    pub files: Workspace,
    pub allowed: Arc<Allowed>,
    /// Whom the programs run as (the stage user when Slate is root).
    pub run_as: RunAs,
}

/// The work directory the stages of runs share (see the module documentation): inputs
/// fetched from storage, references resolved to paths in it, outputs kept as assets, logs
/// archived. The Kubernetes executor uses the same layout on a volume its Jobs mount.
#[derive(Clone)]
pub struct Workspace {
    pub pool: PgPool,
    pub assets: Assets,
    pub work: PathBuf,
}

/// An asset given to a run: its file on this machine, and what provenance records.
pub struct Input {
    pub path: PathBuf,
    /// The asset's name, as people see it (never a path).
    pub name: String,
    pub version: Uuid,
    duration_us: Option<u64>,
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
        claim: &Claim,
        template: &Template,
        raw: &[String],
        out: &Path,
    ) -> Result<(Vec<String>, Vec<(Uuid, Input)>), String> {
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
        let refuse_absolute = template
            .stage(&claim.name)
            .is_some_and(|s| s.executor == "local");
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
                        inside(run_dir.join(s).join("out"))?,
                    ),
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

#[async_trait]
impl Executor for LocalExecutor {
    async fn run(&self, claim: &Claim, cancel: watch::Receiver<bool>) -> Outcome {
        match self.attempt(claim, cancel).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        }
    }
}

impl LocalExecutor {
    async fn attempt(
        &self,
        claim: &Claim,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let (stored, stage) = store::claimed_stage(&self.files.pool, claim).await?;
        let template = &stored.template;
        let stage_dir = self.files.stage_dir(claim);
        let workdir = stage_dir.join(claim.attempt.to_string());
        let out = workdir.join("out");
        let (args, inputs) = self
            .files
            .arguments(claim, template, &stage.args, &out)
            .await?;
        let program = stage.program.clone().unwrap_or_default();
        let expected = inputs
            .iter()
            .find_map(|(_, i)| i.duration_us)
            .map(Expected::DurationMicros);
        let spec = Spec {
            program: program.clone(),
            args: args.clone(),
            workdir: workdir.clone(),
            timeout: Duration::from_secs(stage.timeout_seconds.max(1)),
            expected,
            run_as: self.run_as.clone(),
        };
        let (tx, rx) = mpsc::channel(1024);
        let recorder = tokio::spawn(record(self.files.pool.clone(), claim.clone(), rx));
        let result = local::run(&self.allowed, &spec, tx, cancel).await;
        let log = recorder.await.unwrap_or_default();
        let text = format!("$ {program} {}\n{log}", args.join(" "));
        self.files
            .archive_log(claim, &workdir, &text, &program)
            .await;
        let outcome = match result {
            Err(e) => return Err(e.to_string()),
            Ok(local::Outcome::Succeeded) => Outcome::Succeeded,
            Ok(local::Outcome::Cancelled) => Outcome::Cancelled,
            Ok(local::Outcome::TimedOut) => Outcome::Failed(format!(
                "{program} ran longer than {} s and was stopped",
                stage.timeout_seconds
            )),
            Ok(local::Outcome::Failed {
                exit_code,
                signal,
                stderr_tail,
            }) => {
                let last = stderr_tail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .replace(&workdir.display().to_string(), ".");
                Outcome::Failed(match (exit_code, signal) {
                    (Some(code), _) => format!("{program} exited with status {code}: {last}"),
                    (_, Some(sig)) => format!("{program} was killed by signal {sig}: {last}"),
                    _ => format!("{program} failed: {last}"),
                })
            }
        };
        if outcome == Outcome::Succeeded {
            let final_out = stage_dir.join("out");
            let _ = tokio::fs::remove_dir_all(&final_out).await;
            tokio::fs::rename(&out, &final_out)
                .await
                .map_err(|e| format!("cannot keep the outputs: {e}"))?;
            let how = json!({"executor": "local", "program": program, "args": args});
            self.files
                .outputs(claim, &stored, &final_out, &inputs, how)
                .await?;
        }
        Ok(outcome)
    }
}

impl Workspace {
    /// `<work>/<run>/<stage>`.
    pub fn stage_dir(&self, claim: &Claim) -> PathBuf {
        self.work.join(claim.run_id.to_string()).join(&claim.name)
    }

    /// Stores the attempt's whole log (written to `workdir` first) and links it to the
    /// attempt, with what the executor calls the work when it has no better name.
    pub async fn archive_log(&self, claim: &Claim, workdir: &Path, text: &str, reference: &str) {
        let _ = tokio::fs::create_dir_all(workdir).await;
        let path = workdir.join("slate-attempt.log");
        let key = format!("logs/{}/{}.log", claim.run_id, claim.attempt_id);
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
            let _ = sqlx::query(
                "update stage_attempts set log_key = $2, executor_ref = coalesce(executor_ref, $3) where id = $1",
            )
            .bind(claim.attempt_id)
            .bind(&key)
            .bind(reference)
            .execute(&self.pool)
            .await;
        }
    }

    /// Every file the stage left in its outputs becomes an asset of the submitter, linked
    /// to the run with its provenance (`how`: the executor and what it ran, merged in),
    /// and goes through the usual processing (kind, facts, thumbnail, proxy).
    pub async fn outputs(
        &self,
        claim: &Claim,
        stored: &store::Stored,
        dir: &Path,
        inputs: &[(Uuid, Input)],
        how: Value,
    ) -> Result<(), String> {
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

/// Writes log lines (in batches) and progress (as it changes) while the process runs;
/// returns the whole log for the archive.
pub async fn record(pool: PgPool, claim: Claim, mut rx: mpsc::Receiver<Event>) -> String {
    let mut log = String::new();
    let mut batch: Vec<(&'static str, String)> = Vec::new();
    let mut last_flush = tokio::time::Instant::now();
    loop {
        let event = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
        let done = matches!(event, Ok(None));
        match event {
            Ok(Some(Event::Log { stream, line })) => {
                log.push_str(&line);
                log.push('\n');
                let stream = match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                };
                batch.push((stream, line));
            }
            Ok(Some(Event::Progress(p))) => {
                let _ = sqlx::query(
                    "update run_stages set progress = $2 where id = $1 and state = 'running'",
                )
                .bind(claim.stage_id)
                .bind(p as f32)
                .execute(&pool)
                .await;
            }
            Ok(Some(Event::Started { pid })) => {
                let _ = sqlx::query("update stage_attempts set executor_ref = $2 where id = $1")
                    .bind(claim.attempt_id)
                    .bind(format!("pid {pid}"))
                    .execute(&pool)
                    .await;
            }
            _ => {}
        }
        if !batch.is_empty()
            && (done || batch.len() >= 200 || last_flush.elapsed() > Duration::from_millis(500))
        {
            let (streams, lines): (Vec<&str>, Vec<String>) = batch.drain(..).unzip();
            let _ = sqlx::query(
                "insert into stage_logs (attempt_id, stream, line) select $1, * from unnest($2::text[], $3::text[])",
            )
            .bind(claim.attempt_id)
            .bind(&streams)
            .bind(&lines)
            .execute(&pool)
            .await;
            let _ = sqlx::query("select pg_notify('run_changes', $1)")
                .bind(claim.run_id.to_string())
                .execute(&pool)
                .await;
            last_flush = tokio::time::Instant::now();
        }
        if done {
            return log;
        }
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
