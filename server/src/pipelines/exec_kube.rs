//! The Kubernetes executor: each attempt of a `kubernetes` stage is one `batch/v1` Job.
//!
//! The Job carries labels tying it to its run, stage and attempt; requests and limits
//! (with `nvidia.com/gpu` when the stage asks for GPUs, plus the GPU nodes' toleration and
//! selector); the pipeline's volumes and the stage scripts' ConfigMap; `activeDeadlineSeconds` from the stage's timeout;
//! `ttlSecondsAfterFinished`; and `backoffLimit: 0`, because retries are Slate's (each
//! one a new attempt with its own Job and log).
//!
//! Files: a Job sees Slate's work directory at the same path (the claim and directory of
//! `SLATE_JOB_WORK_VOLUME` mounted there), so references resolve exactly as for local
//! stages: inputs are fetched into it by Slate, the Job writes into `${output}` (its
//! working directory), and Slate turns what it left into assets once the Job completes.
//!
//! Status comes from the cluster watchers (Jobs, Pods, Events), never from polling the
//! API. A pending stage says why in plain words (the scheduler's reason, an image that
//! cannot be pulled, a volume that cannot be mounted). The pod's log is followed while it
//! runs (lines go to `stage_logs` as they come) and, when the Job ends, read once more in
//! full and archived to storage, so the log outlives the pod. Cancelling deletes the Job
//! with background propagation (its pods go with it).
//!
//! After a restart, an attempt whose runner died is resumed from the cluster: the Job the
//! lost attempt created is followed (or its finished result collected) instead of a second
//! Job being started.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::exec_local::{record, Workspace};
use super::local::{Event, Stream};
use super::queue::{Claim, Outcome};
use super::{store, Executor};
use crate::cluster::objects::Objects;
use crate::cluster::Cluster;
use app::pipelines::template::Stage;

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

fn is_dns_label(name: &str) -> bool {
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
    if r.stage.gpu > 0 {
        amounts["nvidia.com/gpu"] = json!(r.stage.gpu.to_string());
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
            "image": r.stage.image.clone().unwrap_or_default(),
            "command": r.command,
            "workingDir": r.out.display().to_string(),
            "resources": {"requests": amounts.clone(), "limits": amounts},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    });
    if r.stage.gpu > 0 {
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

/// The API calls the executor makes (and nothing else): the Role in `k8s/` grants them.
#[derive(Clone)]
pub struct Jobs {
    pub client: kube::Client,
    pub namespace: String,
}

impl Jobs {
    fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates the Job; one that already exists (a retried request) is not an error.
    pub async fn create(&self, spec: &Value) -> Result<(), String> {
        let job: Job = serde_json::from_value(spec.clone()).map_err(|e| e.to_string())?;
        match self.jobs().create(&PostParams::default(), &job).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The Job now, from the API server (not the watcher): `None` when it is gone.
    pub async fn get(&self, name: &str) -> Result<Option<Job>, String> {
        self.jobs().get_opt(name).await.map_err(|e| e.to_string())
    }

    /// Deletes the Job and, in the background, its pods.
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        match self.jobs().delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The container's whole log.
    pub async fn log(&self, pod: &str) -> Result<String, String> {
        let params = LogParams {
            container: Some(CONTAINER.into()),
            ..Default::default()
        };
        self.pods()
            .logs(pod, &params)
            .await
            .map_err(|e| e.to_string())
    }

    /// Follows the container's log from its start, sending the lines after the first
    /// `skip` (those already had); returns when the stream ends.
    pub async fn follow_log(
        &self,
        pod: &str,
        skip: &AtomicUsize,
        lines: &mpsc::Sender<String>,
    ) -> Result<(), String> {
        let params = LogParams {
            container: Some(CONTAINER.into()),
            follow: true,
            ..Default::default()
        };
        let stream = self
            .pods()
            .log_stream(pod, &params)
            .await
            .map_err(|e| e.to_string())?;
        let mut read = stream.lines();
        let mut n = 0usize;
        while let Some(line) = read.next().await {
            let line = line.map_err(|e| e.to_string())?;
            n += 1;
            if n > skip.load(Ordering::SeqCst) {
                skip.store(n, Ordering::SeqCst);
                if lines.send(line).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Where a Job stands, as the watchers see it.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// Not in the watchers' view (not created yet, not listed yet, or gone).
    Absent,
    /// Waiting: why, in plain words.
    Pending(String),
    /// A pod runs: its name and node.
    Running { pod: String, node: String },
    /// Finished; `pod` is the one that ran, if it is still there.
    Finished {
        succeeded: bool,
        why: String,
        pod: Option<String>,
    },
}

/// The pods of a Job, newest first.
fn pods_of<'a>(objects: &'a Objects, job: &str) -> Vec<&'a Pod> {
    let mut pods: Vec<&Pod> = objects
        .pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            labels.and_then(|l| l.get("job-name")).map(String::as_str) == Some(job)
                || labels
                    .and_then(|l| l.get("batch.kubernetes.io/job-name"))
                    .map(String::as_str)
                    == Some(job)
        })
        .collect();
    pods.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    pods
}

/// The latest warning about an object (by kind and name), if any.
fn latest_warning<'a>(objects: &'a Objects, kind: &str, name: &str) -> Option<&'a KubeEvent> {
    objects
        .events
        .iter()
        .map(|e| e.as_ref())
        .filter(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .max_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
        })
}

fn condition<'a>(
    job: &'a Job,
    kind: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind && c.status == "True"))
}

/// How the stage's container ended, in words.
fn how_it_ended(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let status = statuses.iter().find(|s| s.name == CONTAINER)?;
    let ended = status.state.as_ref()?.terminated.as_ref()?;
    let mut text = format!("the container exited with status {}", ended.exit_code);
    match ended.reason.as_deref() {
        Some("OOMKilled") => text.push_str(" (out of memory: it needs a larger memory limit)"),
        Some(r) if r != "Error" && r != "Completed" => text.push_str(&format!(" ({r})")),
        _ => {}
    }
    if let Some(m) = ended.message.as_deref().filter(|m| !m.trim().is_empty()) {
        text.push_str(&format!(": {}", m.trim()));
    }
    Some(text)
}

/// The image the stage's container ran, by digest, when the kubelet reported it.
fn image_digest(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == CONTAINER)
        .map(|s| s.image_id.clone())
        .filter(|id| !id.is_empty())
}

/// Reads a Job's state from the watched objects.
pub fn look(objects: &Objects, name: &str, deadline: u64) -> Seen {
    let Some(job) = objects
        .jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(name))
    else {
        return Seen::Absent;
    };
    let pods = pods_of(objects, name);
    let pod = pods.first().copied();
    let pod_name = pod.and_then(|p| p.metadata.name.clone());
    if condition(job, "Complete").is_some() || condition(job, "SuccessCriteriaMet").is_some() {
        return Seen::Finished {
            succeeded: true,
            why: String::new(),
            pod: pod_name,
        };
    }
    if let Some(c) = condition(job, "Failed") {
        let why = match c.reason.as_deref() {
            Some("DeadlineExceeded") => {
                format!("the Job ran longer than its {deadline} s deadline and was stopped")
            }
            _ => pod.and_then(how_it_ended).unwrap_or_else(|| {
                format!(
                    "the Job failed: {}",
                    c.message
                        .as_deref()
                        .or(c.reason.as_deref())
                        .unwrap_or("no reason given")
                )
            }),
        };
        return Seen::Finished {
            succeeded: false,
            why,
            pod: pod_name,
        };
    }
    if job.metadata.deletion_timestamp.is_some() {
        return Seen::Pending("The Job is being deleted.".into());
    }
    let Some(pod) = pod else {
        return Seen::Pending(match latest_warning(objects, "Job", name) {
            Some(e) => format!(
                "Kubernetes cannot create the pod: {}",
                e.message.as_deref().unwrap_or("no reason given").trim()
            ),
            None => "Waiting for Kubernetes to create the pod.".into(),
        });
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") | Some("Succeeded") | Some("Failed") => Seen::Running {
            pod: pod_name.unwrap_or_default(),
            node,
        },
        _ => {
            let (_, reason) = crate::cluster::health::pod(pod);
            if let Some(reason) = reason.filter(|r| r != "Pending") {
                return Seen::Pending(format!("{}.", reason.trim_end_matches('.')));
            }
            let warning = latest_warning(objects, "Pod", pod_name.as_deref().unwrap_or(""));
            Seen::Pending(match warning {
                Some(e) if e.reason.as_deref() == Some("FailedMount") => format!(
                    "Cannot mount a volume: {}",
                    e.message.as_deref().unwrap_or_default().trim()
                ),
                Some(e) => format!(
                    "Not started yet: {}",
                    e.message.as_deref().unwrap_or_default().trim()
                ),
                None if node.is_empty() => "Waiting for the scheduler to place the pod.".into(),
                None => format!("Starting on {node}: pulling the image and mounting volumes."),
            })
        }
    }
}

/// Blender's progress from its log (`Fra:12 …`) over the frame range of its command.
pub fn blender_progress(line: &str, command: &[String]) -> Option<f64> {
    let frame: i64 = line
        .strip_prefix("Fra:")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let value = |flags: &[&str]| {
        command
            .windows(2)
            .find(|w| flags.contains(&w[0].as_str()))
            .and_then(|w| w[1].parse::<i64>().ok())
    };
    let first = value(&["--frame-start", "-s"])?;
    let last = value(&["--frame-end", "-e"])?;
    if last < first {
        return None;
    }
    Some(((frame - first) as f64 / (last - first + 1) as f64).clamp(0.0, 1.0))
}

pub struct KubeExecutor {
    pub files: Workspace,
    pub cluster: Cluster,
    pub jobs: Jobs,
    pub settings: Arc<JobSettings>,
}

impl KubeExecutor {
    /// Says what the stage waits for or does (pages hear of it through the table's
    /// trigger, so only a change is written).
    async fn status(&self, claim: &Claim, message: &str) {
        let _ = sqlx::query(
            "update run_stages set status_message = $2 where id = $1 and state = 'running'
                 and status_message is distinct from $2",
        )
        .bind(claim.stage_id)
        .bind(message)
        .execute(&self.files.pool)
        .await;
    }

    /// The Job a lost earlier attempt of this stage started: (Job, that attempt's number).
    async fn left_behind(&self, claim: &Claim) -> Option<(String, i32)> {
        let row: Option<(String, i32)> = sqlx::query_as(
            "select executor_ref, number from stage_attempts
             where stage_id = $1 and state = 'lost' and executor_ref like 'job %'
             order by number desc limit 1",
        )
        .bind(claim.stage_id)
        .fetch_optional(&self.files.pool)
        .await
        .ok()
        .flatten();
        let (reference, number) = row?;
        Some((reference.strip_prefix("job ")?.to_owned(), number))
    }

    async fn attempt(
        &self,
        claim: &Claim,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let (stored, stage) = store::claimed_stage(&self.files.pool, claim).await?;
        let stage_dir = self.files.stage_dir(claim);
        // A Job left by a lost attempt is followed rather than started again.
        let adopted = match self.left_behind(claim).await {
            Some((name, number)) => match self.jobs.get(&name).await {
                Ok(Some(_)) => Some((name, number)),
                _ => None,
            },
            None => None,
        };
        let number = adopted.as_ref().map_or(claim.attempt, |(_, n)| *n);
        let workdir = stage_dir.join(number.to_string());
        let out = workdir.join("out");
        let (command, inputs) = self
            .files
            .arguments(claim, &stored.template, &stage.command, &out)
            .await?;
        let name = match &adopted {
            Some((name, _)) => name.clone(),
            None => {
                let _ = tokio::fs::remove_dir_all(&out).await;
                tokio::fs::create_dir_all(&out)
                    .await
                    .map_err(|e| format!("cannot prepare the output directory: {e}"))?;
                job_name(&claim.name, claim.attempt_id)
            }
        };
        let template = format!("{}@{}", stored.name, stored.version);
        let spec = job_spec(
            &self.settings,
            &JobRequest {
                name: &name,
                claim,
                stage: &stage,
                template: &template,
                command: &command,
                out: &out,
                work: &self.files.work,
            },
        );
        let _ =
            sqlx::query("update stage_attempts set executor_ref = $2, detail = $3 where id = $1")
                .bind(claim.attempt_id)
                .bind(format!("job {name}"))
                .bind(json!({"job": spec, "adopted": adopted.is_some()}))
                .execute(&self.files.pool)
                .await;
        if adopted.is_some() {
            self.status(
                claim,
                &format!("Following Job {name}, started before Slate restarted."),
            )
            .await;
        } else {
            self.status(claim, &format!("Creating Job {name}.")).await;
            self.jobs
                .create(&spec)
                .await
                .map_err(|e| format!("cannot create Job {name}: {e}"))?;
        }

        // The log: lines from the follower into `stage_logs`, the whole of it kept.
        let (events, rx) = mpsc::channel(1024);
        let recorder = tokio::spawn(record(self.files.pool.clone(), claim.clone(), rx));
        let skip = Arc::new(AtomicUsize::new(0));
        let mut follower: Option<(String, tokio::task::JoinHandle<()>)> = None;
        let mut feed = self.cluster.feed();
        let mut absent_since = tokio::time::Instant::now();
        let mut seen_once = false;
        let image = stage.image.clone().unwrap_or_default();
        let ended = loop {
            if *cancel.borrow() {
                break Ended::Cancelled;
            }
            let seen = look(&feed.borrow_and_update(), &name, stage.timeout_seconds);
            match seen {
                Seen::Absent => {
                    // Not listed yet, or gone: the API server says which.
                    if absent_since.elapsed() > Duration::from_secs(10) {
                        absent_since = tokio::time::Instant::now();
                        match self.jobs.get(&name).await {
                            Ok(None) => {
                                break Ended::Gone(if seen_once {
                                    format!("Job {name} was deleted before it finished")
                                } else {
                                    format!("Job {name} disappeared before Slate saw it run")
                                })
                            }
                            Ok(Some(_)) => {}
                            Err(e) => {
                                self.status(
                                    claim,
                                    &format!("Waiting for the cluster to answer: {e}."),
                                )
                                .await
                            }
                        }
                    }
                }
                Seen::Pending(why) => {
                    seen_once = true;
                    self.status(claim, &why).await;
                }
                Seen::Running { pod, node } => {
                    seen_once = true;
                    if follower.as_ref().map(|(p, _)| p) != Some(&pod) {
                        if let Some((_, task)) = follower.take() {
                            task.abort();
                        }
                        let task = self.follow(pod.clone(), skip.clone(), events.clone(), &command);
                        follower = Some((pod, task));
                    }
                    let on = if node.is_empty() {
                        String::new()
                    } else {
                        format!(" on {node}")
                    };
                    self.status(claim, &format!("Running in Job {name}{on}."))
                        .await;
                }
                Seen::Finished {
                    succeeded,
                    why,
                    pod,
                } => {
                    break Ended::Finished {
                        succeeded,
                        why,
                        pod,
                    }
                }
            }
            let feed_closed = tokio::select! {
                changed = feed.changed() => changed.is_err(),
                _ = cancel.wait_for(|c| *c) => false,
                _ = tokio::time::sleep(Duration::from_secs(5)) => false,
            };
            if feed_closed {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        if let Some((_, task)) = follower.take() {
            task.abort();
        }
        // The whole log, from the pod while it is there: what the follower missed is
        // recorded too, and the archive holds all of it.
        let pod = match &ended {
            Ended::Finished { pod, .. } => pod.clone(),
            _ => None,
        };
        let mut digest = None;
        if let Some(pod) = &pod {
            if let Ok(text) = self.jobs.log(pod).await {
                let had = skip.load(Ordering::SeqCst);
                for line in text.lines().skip(had) {
                    let _ = events
                        .send(Event::Log {
                            stream: Stream::Stdout,
                            line: line.to_owned(),
                        })
                        .await;
                }
            }
            digest = self
                .cluster
                .feed()
                .borrow()
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                .and_then(|p| image_digest(p));
        }
        drop(events);
        let log = recorder.await.unwrap_or_default();
        let text = format!(
            "# Job {name}, image {image}\n$ {}\n{log}",
            command.join(" ")
        );
        self.files
            .archive_log(claim, &workdir, &text, &format!("job {name}"))
            .await;
        match ended {
            Ended::Cancelled => {
                self.jobs
                    .delete(&name)
                    .await
                    .map_err(|e| format!("cannot delete Job {name}: {e}"))?;
                Ok(Outcome::Cancelled)
            }
            Ended::Gone(why) => Ok(Outcome::Failed(why)),
            Ended::Finished {
                succeeded: false,
                why,
                ..
            } => {
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| format!("; its last line: {}", l.trim()))
                    .unwrap_or_default();
                Ok(Outcome::Failed(format!("{why}{last}")))
            }
            Ended::Finished {
                succeeded: true, ..
            } => {
                let final_out = stage_dir.join("out");
                let _ = tokio::fs::remove_dir_all(&final_out).await;
                tokio::fs::rename(&out, &final_out)
                    .await
                    .map_err(|e| format!("cannot keep the outputs: {e}"))?;
                let how = json!({
                    "executor": "kubernetes",
                    "job": name,
                    "image": image,
                    "image_digest": digest,
                    "command": command,
                });
                self.files
                    .outputs(claim, &stored, &final_out, &inputs, how)
                    .await?;
                Ok(Outcome::Succeeded)
            }
        }
    }

    /// Follows a pod's log into `events` (with Blender's frame progress), reconnecting
    /// while the stream breaks; the caller aborts it when the Job ends.
    fn follow(
        &self,
        pod: String,
        skip: Arc<AtomicUsize>,
        events: mpsc::Sender<Event>,
        command: &[String],
    ) -> tokio::task::JoinHandle<()> {
        let jobs = self.jobs.clone();
        let command = command.to_vec();
        tokio::spawn(async move {
            let (lines_tx, mut lines_rx) = mpsc::channel::<String>(256);
            let forward = {
                let events = events.clone();
                async move {
                    while let Some(line) = lines_rx.recv().await {
                        if let Some(p) = blender_progress(&line, &command) {
                            let _ = events.send(Event::Progress(p)).await;
                        }
                        let _ = events
                            .send(Event::Log {
                                stream: Stream::Stdout,
                                line,
                            })
                            .await;
                    }
                }
            };
            let read = async move {
                loop {
                    if let Err(e) = jobs.follow_log(&pod, &skip, &lines_tx).await {
                        tracing::debug!(error = %e, pod, "the log stream broke; following again");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            tokio::join!(forward, read);
        })
    }
}

enum Ended {
    Cancelled,
    Gone(String),
    Finished {
        succeeded: bool,
        why: String,
        pod: Option<String>,
    },
}

#[async_trait]
impl Executor for KubeExecutor {
    async fn run(&self, claim: &Claim, cancel: watch::Receiver<bool>) -> Outcome {
        match self.attempt(claim, cancel).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_labels_unique_per_attempt() {
        let a = uuid::Uuid::now_v7();
        let name = job_name("Render Frames!", a);
        assert!(name.starts_with("slate-render-frames-"), "{name}");
        assert!(name.len() <= 63);
        assert!(is_dns_label(&name), "{name}");
        let long = job_name(&"x".repeat(100), a);
        assert!(long.len() <= 63 && is_dns_label(&long), "{long}");
        assert_ne!(
            job_name("render", a),
            job_name("render", uuid::Uuid::now_v7())
        );
    }

    #[test]
    fn blender_frames_become_progress_over_the_range() {
        let command: Vec<String> = ["blender", "--frame-start", "1", "--frame-end", "48"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            blender_progress("Fra:1 Mem:12M | Rendering", &command),
            Some(0.0)
        );
        assert_eq!(blender_progress("Fra:25 Mem:12M", &command), Some(0.5));
        assert_eq!(blender_progress("Saved: frame_0001.png", &command), None);
        assert_eq!(blender_progress("Fra:3", &["blender".to_string()]), None);
    }
}
