//! The agent's runs, read from the Job's pods: one `status.attempts` entry per pod, and the
//! result and usage the last one reported in its termination message. Pure functions.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubetask_api::lifecycle::{InvalidReport, parse_report};
use kubetask_api::{Attempt, TaskResult, Usage, workspace};

use super::status::reason;

use crate::egress::canary::{self, Probe};
use crate::render::lifecycle::AGENT_CONTAINER;

/// Most attempts kept in the status (the oldest are dropped first).
const MAX_ATTEMPTS: usize = 32;

/// The attempt a pod is.
pub fn attempt_of(pod: &Pod) -> Attempt {
    let status = pod.status.clone().unwrap_or_default();
    let terminated = agent_terminated(pod);
    let disrupted = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True");
    let reason = match status.phase.as_deref() {
        Some("Succeeded") => "Succeeded",
        Some("Failed") if disrupted => "Disrupted",
        Some("Failed") if status.reason.as_deref() == Some("DeadlineExceeded") => {
            "DeadlineExceeded"
        }
        Some("Failed") => "Failed",
        Some("Running") => "Running",
        _ => "Pending",
    };
    Attempt {
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        start_time: status.start_time,
        completion_time: terminated.and_then(|t| t.finished_at.clone()),
        reason: reason.to_owned(),
        exit_code: terminated.map(|t| t.exit_code),
    }
}

fn agent_terminated(pod: &Pod) -> Option<&ContainerStateTerminated> {
    terminated(pod, AGENT_CONTAINER)
}

/// The container `name` of `pod`, once it has terminated.
fn terminated<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// What the publish step of the newest pod that published said it did.
pub fn published(pods: &[Pod]) -> Option<workspace::Published> {
    newest_first(pods).into_iter().find_map(|pod| {
        let published = terminated(pod, workspace::PUBLISH_CONTAINER)?;
        (published.exit_code == 0)
            .then(|| {
                published
                    .message
                    .as_deref()
                    .and_then(workspace::Published::parse)
            })
            .flatten()
    })
}

/// The init container `name` of `pod`, once it has terminated.
fn init_terminated<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// The pods, newest first.
fn newest_first(pods: &[Pod]) -> Vec<&Pod> {
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by_key(|pod| std::cmp::Reverse(pod.metadata.creation_timestamp.clone()));
    pods
}

/// The commit the newest pod's clone step checked out.
pub fn workspace_commit(pods: &[Pod]) -> Option<String> {
    newest_first(pods).into_iter().find_map(|pod| {
        let cloned = init_terminated(pod, workspace::CLONE_CONTAINER)?;
        (cloned.exit_code == 0)
            .then(|| cloned.message.as_deref().and_then(workspace::commit_of))
            .flatten()
    })
}

/// What the egress canary of the newest pod that ran one saw.
pub fn canary_probe(pods: &[Pod]) -> Option<Probe> {
    newest_first(pods).into_iter().find_map(|pod| {
        init_terminated(pod, canary::CONTAINER)?
            .message
            .as_deref()
            .and_then(Probe::parse)
    })
}

/// Why the newest pod failed in a workspace step, if it did: `(reason, message)`.
pub fn workspace_failure(pods: &[Pod]) -> Option<(&'static str, String)> {
    let pod = *newest_first(pods).first()?;
    let said = |t: &ContainerStateTerminated| {
        t.message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map_or_else(String::new, |m| format!(": {m}"))
    };
    if let Some(clone) =
        init_terminated(pod, workspace::CLONE_CONTAINER).filter(|t| t.exit_code != 0)
    {
        let why = if clone.exit_code == workspace::CREDENTIALS_EXIT_CODE {
            "the repository refused the credentials of spec.workspace.credentialsRef (or needs some); not retried"
        } else {
            "the repository or its ref could not be fetched"
        };
        return Some((
            reason::CLONE_FAILED,
            format!(
                "the workspace's clone step exited with {}: {why}{}",
                clone.exit_code,
                said(clone)
            ),
        ));
    }
    if let Some(publish) =
        terminated(pod, workspace::PUBLISH_CONTAINER).filter(|t| t.exit_code != 0)
    {
        let why = if publish.exit_code == workspace::PUBLISH_REFUSED_EXIT_CODE {
            "what it was asked cannot be done as asked; not retried"
        } else {
            "the repository or the provider's API failed"
        };
        return Some((
            reason::PUBLISH_FAILED,
            format!(
                "the workspace's publish step exited with {}: {why}; its log is kept (kubectl logs {} -c {}){}",
                publish.exit_code,
                pod.metadata.name.as_deref().unwrap_or_default(),
                workspace::PUBLISH_CONTAINER,
                said(publish)
            ),
        ));
    }
    let setup = init_terminated(pod, workspace::SETUP_CONTAINER).filter(|t| t.exit_code != 0)?;
    let why = if setup.exit_code == workspace::TIMED_OUT_EXIT_CODE {
        "it ran longer than spec.workspace.setup.timeout".to_owned()
    } else {
        format!("it exited with {}", setup.exit_code)
    };
    Some((
        reason::SETUP_FAILED,
        format!(
            "the workspace's setup command failed ({why}); its log is kept (kubectl logs {} -c {}){}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            workspace::SETUP_CONTAINER,
            said(setup)
        ),
    ))
}

/// `recorded` updated with what the pods show now: a pod already listed is updated, a new
/// one appended (oldest first); a recorded pod that is gone keeps its entry.
pub fn merge(recorded: &[Attempt], pods: &[Pod]) -> Vec<Attempt> {
    let mut attempts = recorded.to_vec();
    let mut seen: Vec<Attempt> = pods.iter().map(attempt_of).collect();
    seen.sort_by(|a, b| {
        let key = |x: &Attempt| x.start_time.as_ref().map(|t| t.0);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.pod_name.cmp(&b.pod_name))
    });
    for attempt in seen {
        match attempts.iter_mut().find(|a| a.pod_name == attempt.pod_name) {
            Some(known) => *known = attempt,
            None => attempts.push(attempt),
        }
    }
    if attempts.len() > MAX_ATTEMPTS {
        attempts.drain(..attempts.len() - MAX_ATTEMPTS);
    }
    attempts
}

/// Marks the running or pending attempts as stopped by the controller (`Timeout` or
/// `Cancelled`) at `now`.
pub fn stopped(attempts: &mut [Attempt], reason: &str, now: &Time) {
    for attempt in attempts
        .iter_mut()
        .filter(|a| matches!(a.reason.as_str(), "Running" | "Pending"))
    {
        attempt.reason = reason.to_owned();
        attempt.completion_time = Some(now.clone());
    }
}

/// Whether `recorded` (a status's attempts) already shows every pod `job`'s status counts, in
/// the state it counts them: listing the pods would add nothing (e.g. after a restart, which
/// otherwise lists the pods of every running Job once). A finished Job is never accounted for:
/// its pods hold the agent's report.
pub fn accounted_for(recorded: &[Attempt], job: &Job) -> bool {
    if super::status::job_finished(job) {
        return false;
    }
    let counts = job.status.clone().unwrap_or_default();
    let count = |reasons: &[&str]| {
        recorded
            .iter()
            .filter(|a| reasons.contains(&a.reason.as_str()))
            .count()
    };
    let counted = |n: Option<i32>| usize::try_from(n.unwrap_or(0)).unwrap_or(usize::MAX);
    // Disrupted pods do not count against the Job's retries (its pod failure policy).
    count(&["Running", "Pending"]) == counted(counts.active)
        && count(&["Succeeded"]) == counted(counts.succeeded)
        && count(&["Failed", "DeadlineExceeded"]) == counted(counts.failed)
        && (count(&["Running"]) > 0) == (counted(counts.ready) > 0)
}

/// The result and usage reported by the last pod that ran to the end.
pub fn report(pods: &[Pod]) -> Result<Option<(TaskResult, Option<Usage>)>, InvalidReport> {
    let last = pods
        .iter()
        .filter_map(|pod| agent_terminated(pod).map(|t| (t.finished_at.as_ref().map(|f| f.0), t)))
        .max_by_key(|(finished, _)| *finished);
    match last.and_then(|(_, t)| t.message.as_deref()) {
        Some(message) => parse_report(message),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, phase: &str, exit: Option<i32>, message: Option<&str>, at: i64) -> Pod {
        let state = match exit {
            Some(code) => json!({"terminated": {"exitCode": code, "message": message,
                "finishedAt": format!("2026-01-01T00:00:{:02}Z", at + 1)}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"phase": phase, "startTime": format!("2026-01-01T00:00:{at:02}Z"),
                "containerStatuses": [{"name": "agent", "image": "i", "ready": false, "restartCount": 0, "state": state}]},
        }))
        .unwrap()
    }

    #[test]
    fn pods_become_attempts_in_order() {
        let first = pod("p-1", "Failed", Some(1), None, 1);
        let mut disrupted = pod("p-2", "Failed", Some(137), None, 2);
        disrupted.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True"})).unwrap(),
        ]);
        let running = pod("p-3", "Running", None, None, 3);
        let attempts = merge(&[], &[running.clone(), first, disrupted]);
        let summary: Vec<_> = attempts
            .iter()
            .map(|a| (a.pod_name.as_str(), a.reason.as_str(), a.exit_code))
            .collect();
        assert_eq!(
            summary,
            [
                ("p-1", "Failed", Some(1)),
                ("p-2", "Disrupted", Some(137)),
                ("p-3", "Running", None)
            ]
        );
        // p-1 and p-2 were garbage collected; p-3 finished: entries kept and updated.
        let done = pod("p-3", "Succeeded", Some(0), None, 3);
        let later = merge(&attempts, &[done]);
        assert_eq!(later.len(), 3);
        assert_eq!(later[2].reason, "Succeeded");
        let mut stopped_now = merge(&[], &[running]);
        stopped(
            &mut stopped_now,
            "Cancelled",
            &Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(stopped_now[0].reason, "Cancelled");
    }

    #[test]
    fn attempts_account_for_a_job_only_when_they_show_every_pod_it_counts() {
        let job = |status: serde_json::Value| -> Job {
            serde_json::from_value(json!({"status": status})).unwrap()
        };
        let failed = pod("p-1", "Failed", Some(1), None, 1);
        let mut disrupted = pod("p-2", "Failed", Some(137), None, 2);
        disrupted.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True"})).unwrap(),
        ]);
        let running = pod("p-3", "Running", None, None, 3);
        let recorded = merge(&[], &[failed.clone(), disrupted, running]);
        let cases = [
            (
                "as recorded",
                json!({"active": 1, "ready": 1, "failed": 1}),
                true,
            ),
            (
                "a new failure",
                json!({"active": 1, "ready": 1, "failed": 2}),
                false,
            ),
            (
                "the pod no longer ready",
                json!({"active": 1, "ready": 0, "failed": 1}),
                false,
            ),
            (
                "a pod more",
                json!({"active": 2, "ready": 1, "failed": 1}),
                false,
            ),
            (
                "finished",
                json!({"succeeded": 1, "failed": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
                false,
            ),
        ];
        for (case, status, expected) in cases {
            assert_eq!(accounted_for(&recorded, &job(status)), expected, "{case}");
        }
        // A new Job without pods needs no list; one with a pod the status does not show does.
        assert!(accounted_for(&[], &job(json!({}))));
        assert!(!accounted_for(&[], &job(json!({"active": 1}))));
        let pending = merge(&[], &[pod("p-4", "Pending", None, None, 4)]);
        assert!(accounted_for(&pending, &job(json!({"active": 1}))));
        assert!(!accounted_for(
            &merge(&[], &[failed]),
            &job(json!({"active": 1, "failed": 1}))
        ));
    }

    #[test]
    fn the_last_pod_reports() {
        let old = pod("a", "Failed", Some(1), Some(r#"{"summary": "old"}"#), 1);
        let new = pod("b", "Succeeded", Some(0), Some(r#"{"summary": "new"}"#), 5);
        let (result, _) = report(&[new.clone(), old]).unwrap().unwrap();
        assert_eq!(result.summary, "new");
        let bad = pod("c", "Succeeded", Some(0), Some("{oops"), 9);
        assert!(report(&[new, bad]).is_err());
        let quiet = pod("d", "Succeeded", Some(0), None, 1);
        assert_eq!(report(&[quiet]), Ok(None));
    }
}
