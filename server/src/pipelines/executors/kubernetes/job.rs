//! The Job of an attempt as sent to the API server: its name, labels, resources (GPUs
//! with the GPU nodes' toleration and selector), volumes, deadline and clean-up.

use std::path::Path;

use app::pipelines::template::{JobStage, Stage};
use serde_json::{json, Value};

use crate::pipelines::queue::Claim;

/// The container every stage Job runs (its log is the stage's log).
pub const CONTAINER: &str = "stage";

/// Where the stage scripts' ConfigMap is mounted in Jobs.
pub const SCRIPTS: &str = "/opt/slate";

/// How Jobs are shaped here (from the settings).
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Claims mounted into every Job: (claim, mount path).
    pub volumes: Vec<(String, String)>,
    /// The claim holding the work directory, and the directory inside it.
    pub work_claim: String,
    pub work_subpath: String,
    /// The ConfigMap of stage scripts, mounted at [`SCRIPTS`].
    pub scripts: Option<String>,
    pub ttl_seconds: i32,
    pub cpu: String,
    pub memory: String,
}

impl JobSettings {
    /// From `SLATE_JOB_VOLUMES` (`claim=/path,…`), `SLATE_JOB_WORK_VOLUME` (`claim/dir`)
    /// and the rest; refuses a malformed setting with what is wrong.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, String> {
        let mut volumes = Vec::new();
        for item in config.job_volumes.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let (claim, path) = item
                .split_once('=')
                .ok_or_else(|| format!("SLATE_JOB_VOLUMES: {item:?} is not claim=/path"))?;
            if !is_dns_label(claim.trim()) || !path.trim().starts_with('/') {
                return Err(format!(
                    "SLATE_JOB_VOLUMES: {item:?} needs a claim name and an absolute path"
                ));
            }
            volumes.push((claim.trim().to_owned(), path.trim().to_owned()));
        }
        let (work_claim, work_subpath) = match config.job_work_volume.split_once('/') {
            Some((c, d)) => (c.to_owned(), d.trim_matches('/').to_owned()),
            None => (config.job_work_volume.clone(), String::new()),
        };
        if !is_dns_label(&work_claim) {
            return Err(format!(
                "SLATE_JOB_WORK_VOLUME: {:?} does not start with a claim name",
                config.job_work_volume
            ));
        }
        Ok(JobSettings {
            volumes,
            work_claim,
            work_subpath,
            scripts: Some(config.job_scripts.trim().to_owned()).filter(|s| !s.is_empty()),
            ttl_seconds: config.job_ttl_seconds.max(0),
            cpu: config.job_cpu.clone(),
            memory: config.job_memory.clone(),
        })
    }
}

pub(super) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The Job of an attempt: `slate-<stage>-<12 hex of the attempt id>` (at most 63
/// characters, a valid label value for the `job-name` label Kubernetes adds to pods).
pub fn job_name(stage: &str, attempt: uuid::Uuid) -> String {
    let mut cleaned: String = stage
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    cleaned.truncate(40);
    let cleaned = cleaned.trim_matches('-');
    let id = attempt.simple().to_string();
    format!("slate-{cleaned}-{}", &id[id.len() - 12..])
}

/// What a Job is made from.
pub struct JobRequest<'a> {
    pub name: &'a str,
    pub claim: &'a Claim,
    pub stage: &'a Stage,
    pub job: &'a JobStage,
    /// `name@version` of the template.
    pub template: &'a str,
    pub command: &'a [String],
    /// The attempt's output directory (the container's working directory).
    pub out: &'a Path,
    /// The work directory, as Slate and the Job both see it.
    pub work: &'a Path,
}

/// The Job for an attempt, as sent to the API server.
pub fn job_spec(settings: &JobSettings, r: &JobRequest) -> Value {
    let labels = json!({
        "app.kubernetes.io/name": "slate-stage",
        "app.kubernetes.io/part-of": "ai-film",
        "app.kubernetes.io/managed-by": "slate",
        "slate.dev/layer": "processing",
        "slate.dev/run": r.claim.run_id.to_string(),
        "slate.dev/stage": label_value(&r.claim.name),
        "slate.dev/attempt": r.claim.attempt.to_string(),
    });
    let mut amounts = json!({"cpu": settings.cpu, "memory": settings.memory});
    if r.job.gpu > 0 {
        amounts["nvidia.com/gpu"] = json!(r.job.gpu.to_string());
    }
    let mut mounts = vec![json!({
        "name": "work",
        "mountPath": r.work.display().to_string(),
        "subPath": settings.work_subpath,
    })];
    let mut volumes = vec![json!({
        "name": "work",
        "persistentVolumeClaim": {"claimName": settings.work_claim},
    })];
    for (claim, path) in &settings.volumes {
        mounts.push(json!({"name": format!("pvc-{claim}"), "mountPath": path}));
        volumes.push(json!({
            "name": format!("pvc-{claim}"),
            "persistentVolumeClaim": {"claimName": claim},
        }));
    }
    if let Some(scripts) = &settings.scripts {
        mounts.push(json!({"name": "scripts", "mountPath": SCRIPTS, "readOnly": true}));
        volumes.push(json!({"name": "scripts", "configMap": {"name": scripts}}));
    }
    if settings.work_subpath.is_empty() {
        mounts[0].as_object_mut().map(|m| m.remove("subPath"));
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "containers": [{
            "name": CONTAINER,
            "image": r.job.image.clone(),
            "command": r.command,
            "workingDir": r.out.display().to_string(),
            "resources": {"requests": amounts.clone(), "limits": amounts},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    });
    if r.job.gpu > 0 {
        pod["nodeSelector"] = json!({"nvidia.com/gpu.present": "true"});
        pod["tolerations"] =
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": r.name,
            "labels": labels,
            "annotations": {
                "slate.dev/template": r.template,
                "slate.dev/attempt-id": r.claim.attempt_id.to_string(),
            },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": r.stage.timeout_seconds.max(1),
            "ttlSecondsAfterFinished": settings.ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn label_value(text: &str) -> String {
    let mut v: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    v.truncate(63);
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}
