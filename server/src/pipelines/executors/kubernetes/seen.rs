//! Where a Job stands, read from the cluster watchers' objects (never by polling the
//! API): pending and why in plain words, running where, or finished and how; and
//! Blender's frame progress from its log.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};

use super::job::CONTAINER;
use crate::cluster::objects::Objects;

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
pub(super) fn image_digest(pod: &Pod) -> Option<String> {
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
