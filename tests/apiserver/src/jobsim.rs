//! The Job simulator: plays the Job controller and kubelet for `batch/v1` Jobs. After
//! `start_delay` a new Job is active (its pod pending), after another `start_delay` the pod
//! runs (`ready: 1`), and after `run_time` the Job completes or fails with the conditions,
//! counts and times the real Job controller writes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::meta::{self, text};
use crate::server::{ServerEvents, Shared, lock};
use crate::state::EventType;

/// How a simulated Job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// `Complete` with `succeeded: 1`.
    Succeed,
    /// `Failed` (`BackoffLimitExceeded`) with `failed: backoffLimit + 1`.
    Fail,
    /// Stays active forever.
    Hang,
}

/// The label a test can put on a Job (or its pod template) to choose its outcome:
/// `succeed`, `fail` or `hang`.
pub const OUTCOME_LABEL: &str = "simulator.kubetask.io/outcome";

/// Chooses the outcome of a Job from the Job object.
pub type OutcomeFn = Arc<dyn Fn(&Value) -> JobOutcome + Send + Sync>;

/// Job simulator settings.
#[derive(Clone)]
pub struct JobSimulator {
    pub start_delay: Duration,
    pub run_time: Duration,
    pub outcome: OutcomeFn,
}

impl std::fmt::Debug for JobSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSimulator")
            .field("start_delay", &self.start_delay)
            .field("run_time", &self.run_time)
            .finish_non_exhaustive()
    }
}

impl Default for JobSimulator {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(50),
            run_time: Duration::from_millis(200),
            outcome: Arc::new(outcome_from_label),
        }
    }
}

/// The default outcome rule: [`OUTCOME_LABEL`] on the Job or its pod template, else success.
pub fn outcome_from_label(job: &Value) -> JobOutcome {
    let label = job
        .pointer("/metadata/labels")
        .and_then(|l| l.get(OUTCOME_LABEL))
        .or_else(|| {
            job.pointer("/spec/template/metadata/labels")
                .and_then(|l| l.get(OUTCOME_LABEL))
        })
        .and_then(Value::as_str);
    match label {
        Some("fail") => JobOutcome::Fail,
        Some("hang") => JobOutcome::Hang,
        _ => JobOutcome::Succeed,
    }
}

const JOBS: &str = "batch/jobs";

/// Runs the simulator until the server shuts down.
pub async fn run(shared: Arc<Shared>, simulator: JobSimulator) {
    // Jobs whose events are missed by falling behind do not run (logged).
    let mut events = ServerEvents::subscribe(&shared, "job simulator");
    while let Some(event) = events.next().await {
        if event.storage_key != JOBS || event.event_type != EventType::Added {
            continue;
        }
        if event.object.pointer("/spec/suspend") == Some(&json!(true)) {
            continue;
        }
        let namespace = event.namespace.clone();
        let name = text(&event.object, "name").to_owned();
        let uid = text(&event.object, "uid").to_owned();
        let outcome = (simulator.outcome)(&event.object);
        let backoff_limit = event
            .object
            .pointer("/spec/backoffLimit")
            .and_then(Value::as_i64)
            .unwrap_or(6);
        let shared = shared.clone();
        let simulator = simulator.clone();
        tokio::spawn(async move {
            tokio::time::sleep(simulator.start_delay).await;
            let started = write(&shared, &namespace, &name, &uid, |status| {
                status["startTime"] = json!(meta::now());
                status["active"] = json!(1);
                status["ready"] = json!(0);
                status["terminating"] = json!(0);
                status["uncountedTerminatedPods"] = json!({});
            });
            if !started {
                return;
            }
            // The pod is scheduled and pulled, then runs (and is ready: agents have no probes).
            tokio::time::sleep(simulator.start_delay).await;
            let running = write(&shared, &namespace, &name, &uid, |status| {
                status["ready"] = json!(1);
            });
            if !running || outcome == JobOutcome::Hang {
                return;
            }
            tokio::time::sleep(simulator.run_time).await;
            write(&shared, &namespace, &name, &uid, |status| {
                let now = meta::now();
                if let Some(object) = status.as_object_mut() {
                    object.remove("active");
                }
                status["ready"] = json!(0);
                if outcome == JobOutcome::Succeed {
                    status["succeeded"] = json!(1);
                    status["completionTime"] = json!(now);
                    status["conditions"] = json!([
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                    ]);
                } else {
                    status["failed"] = json!(backoff_limit + 1);
                    status["conditions"] = json!([
                        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit", "lastProbeTime": now, "lastTransitionTime": now},
                    ]);
                }
            });
        });
    }
}

/// Updates the status of the Job if it is still the same object (same uid).
fn write(
    shared: &Shared,
    namespace: &str,
    name: &str,
    uid: &str,
    change: impl FnOnce(&mut Value),
) -> bool {
    let mut state = lock(&shared.state);
    state.server_status_write(JOBS, namespace, name, |job| {
        if text(job, "uid") != uid {
            return;
        }
        if !job.get("status").is_some_and(Value::is_object) {
            job["status"] = json!({});
        }
        change(&mut job["status"]);
    })
}
