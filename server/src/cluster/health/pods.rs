//! A pod's health: its phase, its containers' waiting and terminated states, and an
//! unschedulable pod's reason in plain words.

use app::architecture::Health;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt as _;

use super::{deleting, healthy, verdict, Verdict};

fn is_bad_waiting(reason: &str) -> bool {
    reason.starts_with("Err") || reason.ends_with("Error") || reason.ends_with("BackOff")
}

pub fn pod(p: &Pod) -> Verdict {
    if let Some(v) = deleting(&p.metadata) {
        return v;
    }
    let Some(status) = &p.status else {
        return verdict(Health::Progressing, "Pending");
    };
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in statuses.clone() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            if let Some(reason) = w.reason.as_deref().filter(|r| is_bad_waiting(r)) {
                let mut text = format!("Container {}: {reason}", cs.name);
                if cs.restart_count > 0 {
                    text.push_str(&format!(" (restarted {} times)", cs.restart_count));
                }
                if let Some(m) = w.message.as_deref().filter(|m| !m.is_empty()) {
                    text.push_str(&format!(": {}", first_line(m)));
                } else if let Some(t) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                    text.push_str(&format!(
                        ": last exit code {}{}",
                        t.exit_code,
                        t.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ));
                }
                return verdict(Health::Degraded, text);
            }
        }
    }
    let conditions = status.conditions.iter().flatten();
    match status.phase.as_deref() {
        Some("Pending") | None => {
            // Correction 1: a pod the scheduler cannot place will not start by waiting.
            if let Some(c) = conditions.clone().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            }) {
                return verdict(
                    Health::Degraded,
                    plain_scheduler_message(c.message.as_deref().unwrap_or_default()),
                );
            }
            verdict(Health::Progressing, "Pending")
        }
        Some("Failed") => verdict(
            Health::Degraded,
            format!(
                "Pod failed: {}",
                status
                    .message
                    .as_deref()
                    .or(status.reason.as_deref())
                    .unwrap_or("no reason given")
            ),
        ),
        Some("Succeeded") => healthy(),
        Some("Running") => {
            let ready = conditions
                .clone()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return healthy();
            }
            let restarted = statuses.clone().any(|cs| {
                cs.last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
            });
            if restarted {
                verdict(Health::Degraded, "Running but not ready after a restart")
            } else {
                verdict(Health::Progressing, "Starting: not ready yet")
            }
        }
        Some(other) => verdict(Health::Unknown, format!("Pod phase {other}")),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text).trim()
}

/// Turns the scheduler's "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2
/// node(s) had untolerated taint {…}. preemption: …" into a sentence.
pub fn plain_scheduler_message(message: &str) -> String {
    let message = message.trim();
    let (head, rest) = match message.split_once(": ") {
        Some((h, r)) if h.contains("nodes are available") => (h, r),
        _ => {
            return if message.is_empty() {
                "Cannot be scheduled on any node".to_owned()
            } else {
                format!("Cannot be scheduled: {message}")
            };
        }
    };
    let total = head
        .split_once('/')
        .and_then(|(_, t)| t.split_whitespace().next())
        .and_then(|t| t.parse::<u32>().ok());
    // The list ends at the first ". " (what follows is preemption advice).
    let list = rest
        .split(". ")
        .next()
        .unwrap_or(rest)
        .trim_end_matches('.');
    let mut reasons = Vec::new();
    for part in list.split(", ") {
        let part = part.trim();
        let (count, what) = match part.split_once(' ') {
            Some((n, w)) if n.parse::<u32>().is_ok() => (n.parse::<u32>().unwrap_or(0), w),
            _ => (0, part),
        };
        let nodes = if count == 1 {
            "1 node".to_owned()
        } else {
            format!("{count} nodes")
        };
        let sentence = if let Some(resource) = what.strip_prefix("Insufficient ") {
            match resource {
                "nvidia.com/gpu" | "amd.com/gpu" => format!("{nodes} without a free GPU"),
                "cpu" => format!("{nodes} without enough free CPU"),
                "memory" => format!("{nodes} without enough free memory"),
                other => format!("{nodes} without enough {other}"),
            }
        } else if what.contains("untolerated taint") {
            format!("{nodes} with a taint the pod does not tolerate")
        } else if what.contains("didn't match Pod's node affinity/selector") {
            format!("{nodes} not matching the pod's node selector")
        } else if what.contains("unbound immediate PersistentVolumeClaims") {
            format!("{nodes} waiting for a volume claim to be bound")
        } else {
            format!("{nodes}: {what}")
        };
        reasons.push(sentence.replace("0 nodes: ", ""));
    }
    let gpu = list.contains("nvidia.com/gpu") || list.contains("amd.com/gpu");
    let lead = match (gpu, total) {
        (true, Some(t)) => format!("Waiting for a free GPU: no node of {t} can run it"),
        (true, None) => "Waiting for a free GPU".to_owned(),
        (false, Some(t)) => format!("Cannot be scheduled: no node of {t} fits"),
        (false, None) => "Cannot be scheduled".to_owned(),
    };
    if reasons.is_empty() {
        lead
    } else {
        format!("{lead} ({})", reasons.join("; "))
    }
}

/// The name of a pod's first container whose state explains the verdict, for the panel.
pub fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A short label for a pod's name in messages.
pub fn pod_label(p: &Pod) -> String {
    p.name_any()
}
