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

mod job;
mod jobs;
mod seen;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use app::error::AppError;
use app::pipelines::template::{JobStage, StageKind};
use async_trait::async_trait;
use serde_json::json;
use tokio::sync::{mpsc, watch};

pub use self::job::{job_name, job_spec, JobRequest, JobSettings, CONTAINER, SCRIPTS};
pub use self::jobs::Jobs;
use self::seen::image_digest;
pub use self::seen::{blender_progress, look, Seen};
use crate::cluster::Cluster;
use crate::pipelines::attempt::{Attempt, Report, Stream};
use crate::pipelines::executor::{Executor, Queue};
use crate::pipelines::queue::Outcome;
use crate::pipelines::workspace::Workspace;

/// The queues of Jobs without a GPU and of those with one, each with its own limit
/// (`SLATE_JOB_STAGES`, `SLATE_GPU_JOBS`: GPUs are few).
pub const QUEUE: &str = "kubernetes";
pub const GPU_QUEUE: &str = "kubernetes-gpu";

/// The queue a Job stage waits in.
pub fn queue_of(job: &JobStage) -> &'static str {
    if job.gpu > 0 {
        GPU_QUEUE
    } else {
        QUEUE
    }
}

/// Refuses a Job stage when Slate is not connected to a cluster (it would wait forever).
pub fn admit(stage: &str, connected: bool) -> Result<(), AppError> {
    if connected {
        return Ok(());
    }
    Err(AppError::Conflict(format!(
        "Stage \"{stage}\" runs as a Kubernetes Job, and Slate is not connected to a cluster."
    )))
}

pub struct KubeExecutor {
    pub files: Workspace,
    pub cluster: Cluster,
    pub jobs: Jobs,
    pub settings: Arc<JobSettings>,
    /// How many Jobs without and with a GPU may run at once.
    pub capacity: i64,
    pub gpu_capacity: i64,
}

impl KubeExecutor {
    pub fn from_config(
        config: &crate::config::Config,
        files: Workspace,
        cluster: &Cluster,
        client: kube::Client,
    ) -> Result<Self, String> {
        Ok(KubeExecutor {
            files,
            cluster: cluster.clone(),
            jobs: Jobs {
                client,
                namespace: cluster.namespace().to_owned(),
            },
            settings: Arc::new(JobSettings::from_config(config)?),
            capacity: config.job_stages,
            gpu_capacity: config.gpu_jobs,
        })
    }

    /// The Job a lost earlier attempt of this stage started: (Job, that attempt's number).
    async fn left_behind(&self, attempt: &Attempt) -> Option<(String, i32)> {
        attempt.left_behind("job").await
    }

    async fn attempt(
        &self,
        attempt: &Attempt,
        mut cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        let (claim, stored, stage) = (&attempt.claim, &attempt.stored, &attempt.stage);
        let StageKind::Kubernetes(job) = &stage.kind else {
            return Err("not a kubernetes stage".into());
        };
        let stage_dir = self.files.stage_dir(claim);
        // A Job left by a lost attempt is followed rather than started again.
        let adopted = match self.left_behind(attempt).await {
            Some((name, number)) => match self.jobs.get(&name).await {
                Ok(Some(_)) => Some((name, number)),
                _ => None,
            },
            None => None,
        };
        let number = adopted.as_ref().map_or(claim.attempt, |(_, n)| *n);
        let workdir = stage_dir.join(number.to_string());
        let out = workdir.join("out");
        let (command, inputs) = self.files.arguments(attempt, &job.command, &out).await?;
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
                stage,
                job,
                template: &template,
                command: &command,
                out: &out,
                work: &self.files.work,
            },
        );
        attempt
            .started(
                &format!("job {name}"),
                Some(json!({"job": spec, "adopted": adopted.is_some()})),
            )
            .await;
        if adopted.is_some() {
            attempt
                .status(
                    &format!("Following Job {name}, started before Slate restarted."),
                    None,
                )
                .await;
        } else {
            attempt.status(&format!("Creating Job {name}."), None).await;
            self.jobs
                .create(&spec)
                .await
                .map_err(|e| format!("cannot create Job {name}: {e}"))?;
        }

        // The log: lines from the follower into `stage_logs`, the whole of it kept.
        let (events, recorder) = attempt.record::<Report>();
        // Lines of the current pod already recorded. A pod that is replaced (deleted,
        // evicted) keeps the lines followed from it, and the next one starts at zero.
        let mut skip = Arc::new(AtomicUsize::new(0));
        let mut follower: Option<(String, tokio::task::JoinHandle<()>)> = None;
        let mut feed = self.cluster.feed();
        let mut absent_since = tokio::time::Instant::now();
        let mut seen_once = false;
        let image = job.image.clone();
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
                                attempt
                                    .status(
                                        &format!("Waiting for the cluster to answer: {e}."),
                                        None,
                                    )
                                    .await
                            }
                        }
                    }
                }
                Seen::Pending(why) => {
                    seen_once = true;
                    attempt.status(&why, None).await;
                }
                Seen::Running { pod, node } => {
                    seen_once = true;
                    if follower.as_ref().map(|(p, _)| p) != Some(&pod) {
                        if let Some((before, task)) = follower.take() {
                            task.abort();
                            skip = Arc::new(AtomicUsize::new(0));
                            let _ = events
                                .send(Report::Log {
                                    stream: Stream::Stderr,
                                    line: format!("# pod {before} was replaced by pod {pod}"),
                                })
                                .await;
                        }
                        let task = self.follow(pod.clone(), skip.clone(), events.clone(), &command);
                        follower = Some((pod, task));
                    }
                    let on = if node.is_empty() {
                        String::new()
                    } else {
                        format!(" on {node}")
                    };
                    attempt
                        .status(&format!("Running in Job {name}{on}."), None)
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
                        .send(Report::Log {
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
            .archive_log(attempt, &workdir, &text, &format!("job {name}"))
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
                    .outputs(attempt, &final_out, &inputs, how)
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
        events: mpsc::Sender<Report>,
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
                            let _ = events.send(Report::Progress(p)).await;
                        }
                        let _ = events
                            .send(Report::Log {
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
    fn queues(&self) -> Vec<Queue> {
        vec![
            Queue {
                name: QUEUE,
                capacity: self.capacity,
            },
            Queue {
                name: GPU_QUEUE,
                capacity: self.gpu_capacity,
            },
        ]
    }

    async fn run(
        &self,
        attempt: &Attempt,
        cancel: watch::Receiver<bool>,
    ) -> Result<Outcome, String> {
        self.attempt(attempt, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::job::is_dns_label;
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
