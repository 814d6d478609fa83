//! The Task's status: one condition, `Succeeded` (Unknown while pending or running, True when
//! the Job completed, False when the Task failed), whose reason says why; the phase and times
//! beside it. Pure functions; `decide` chooses the condition.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubetask_api::{PluginRef, TaskPhase, TaskStatus};

/// The type of the Task's single condition.
pub const CONDITION: &str = "Succeeded";

/// Condition reasons, one per situation a user may see.
pub mod reason {
    /// The Job exists; its pod does not run yet.
    pub const JOB_CREATED: &str = "JobCreated";
    /// The agent pod runs.
    pub const RUNNING: &str = "Running";
    /// The Job completed.
    pub const COMPLETED: &str = "Completed";
    /// The Job failed.
    pub const JOB_FAILED: &str = "JobFailed";
    /// The Job was deleted before it finished.
    pub const JOB_MISSING: &str = "JobMissing";
    /// The explicit `spec.agentRef` names no Agent (yet).
    pub const AGENT_NOT_FOUND: &str = "AgentNotFound";
    /// A referenced ConfigMap does not exist (yet).
    pub const CONFIG_MAP_NOT_FOUND: &str = "ConfigMapNotFound";
    /// A referenced ConfigMap lacks the key (yet).
    pub const CONFIG_MAP_KEY_NOT_FOUND: &str = "ConfigMapKeyNotFound";
    /// The Task (or its Agent) is invalid.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A policy plugin refused the Task.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// A plugin failed (trap, timeout, memory, invalid output).
    pub const PLUGIN_ERROR: &str = "PluginError";
    /// A plugin named by the Agent is not installed (yet).
    pub const PLUGIN_NOT_FOUND: &str = "PluginNotFound";
    /// An installed plugin or cluster policy cannot be loaded (bad bytes, pin, order); the
    /// Task waits, failing closed, until it is fixed or removed.
    pub const PLUGIN_UNAVAILABLE: &str = "PluginUnavailable";
    /// A plugin missed its deadline (retried with backoff; after several misses in a row the
    /// Task fails with `PluginError`).
    pub const PLUGIN_TIMEOUT: &str = "PluginTimeout";
    /// The API server forbids the controller what the Task needs (RBAC, admission).
    pub const FORBIDDEN: &str = "Forbidden";
    /// The API server rejected the Job or ConfigMap (400/422), naming the fields.
    pub const REJECTED: &str = "Rejected";
    /// The API server is unreachable, overloaded or failing (retried with backoff).
    pub const API_UNAVAILABLE: &str = "ApiUnavailable";
    /// The Job or ConfigMap name is still used by a deleted Task of the same name.
    pub const PREVIOUS_TASK_CLEANUP: &str = "PreviousTaskCleanup";
    /// An object with the Job's or ConfigMap's name exists and belongs to something else.
    pub const NAME_CONFLICT: &str = "NameConflict";
    /// The Job is suspended (by a queue such as Kueue): the Task waits and its timeout does
    /// not run.
    pub const QUEUED: &str = "Queued";
    /// The Task ran longer than its timeout; the agent was stopped, its logs kept.
    pub const TIMEOUT: &str = "Timeout";
    /// `spec.cancel` was set.
    pub const CANCELLED: &str = "Cancelled";
    /// The model gateway metered the Task's budget spent; the agent was stopped, its logs
    /// kept. Or a Budget that governs it had too little left for it and its `onExceed` is
    /// `Stop`: it never started.
    pub const BUDGET_EXCEEDED: &str = "BudgetExceeded";
    /// A Budget that governs the Task has too little left for it this period (its
    /// `onExceed` is `Queue`): the Task starts when enough is.
    pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
    /// An attempt failed and the Job runs the next one.
    pub const RETRYING: &str = "Retrying";
    /// The agent's termination message is not a valid report (condition `ResultReported`).
    pub const INVALID_RESULT: &str = "InvalidResult";
    /// The workspace's clone step failed (the repository, its ref or its credentials).
    pub const CLONE_FAILED: &str = "CloneFailed";
    /// The workspace's setup command failed or ran out of time.
    pub const SETUP_FAILED: &str = "SetupFailed";
    /// Another Task publishes to the same repository and branch: this one waits its turn.
    pub const PUBLISH_LOCKED: &str = "PublishLocked";
    /// The workspace's publish step failed (a push refused, the provider's API).
    pub const PUBLISH_FAILED: &str = "PublishFailed";
    /// The agent succeeded and left no changes: nothing was pushed, no pull request opened.
    pub const NO_CHANGES: &str = "NoChanges";
}

/// The type of the condition that says the agent's report could not be read.
pub const REPORT_CONDITION: &str = "ResultReported";

/// The Task's condition as the rules decide it, with the times the Job reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub phase: TaskPhase,
    /// The `Succeeded` condition's status: `Unknown`, `True` or `False`.
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
    /// When the Job started (used once the Task runs or has finished).
    pub start_time: Option<Time>,
    /// When the Job finished; a finished Task without one finished now.
    pub completion_time: Option<Time>,
}

impl Condition {
    /// A Pending Task (`Unknown`).
    pub fn pending(reason: &'static str, message: String) -> Self {
        Self {
            phase: TaskPhase::Pending,
            status: "Unknown",
            reason,
            message,
            start_time: None,
            completion_time: None,
        }
    }

    /// A failed Task (`False`).
    pub fn failed(reason: &'static str, message: String) -> Self {
        Self {
            phase: TaskPhase::Failed,
            status: "False",
            ..Self::pending(reason, message)
        }
    }
}

/// Whether the Job has finished (a `Complete` or `Failed` condition that is true): what
/// [`of_job`] would call `Completed` or `Failed`, without building its message.
pub fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// The condition a Job's status implies.
pub fn of_job(job: &Job, job_name: &str) -> Condition {
    let job_status = job.status.clone().unwrap_or_default();
    let true_condition = |kind: &str| {
        job_status.conditions.as_ref().and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.type_ == kind && c.status == "True")
                .cloned()
        })
    };
    let start_time = job_status.start_time.clone();
    if let Some(complete) = true_condition("Complete") {
        Condition {
            phase: TaskPhase::Completed,
            status: "True",
            reason: reason::COMPLETED,
            message: format!("Job {job_name:?} completed"),
            start_time,
            completion_time: job_status
                .completion_time
                .clone()
                .or(complete.last_transition_time),
        }
    } else if let Some(failed) = true_condition("Failed") {
        let why = [failed.reason.as_deref(), failed.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        Condition {
            start_time,
            completion_time: failed.last_transition_time.clone(),
            ..Condition::failed(
                reason::JOB_FAILED,
                format!("Job {job_name:?} failed: {why}"),
            )
        }
    } else if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
        Condition::pending(
            reason::QUEUED,
            format!(
                "Job {job_name:?} is suspended (queued, e.g. by Kueue); the Task waits, and its timeout does not run, until it is resumed"
            ),
        )
    } else if job_status.ready.unwrap_or(0) > 0 {
        Condition {
            phase: TaskPhase::Running,
            start_time,
            ..Condition::pending(
                reason::RUNNING,
                format!("the agent runs in Job {job_name:?}"),
            )
        }
    } else if job_status.failed.unwrap_or(0) > 0 {
        let failed = job_status.failed.unwrap_or(0);
        let limit = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(0);
        Condition {
            phase: TaskPhase::Running,
            start_time,
            ..Condition::pending(
                reason::RETRYING,
                format!(
                    "{failed} attempt(s) of Job {job_name:?} failed; retrying ({} of {limit} retries left)",
                    (limit + 1 - failed).max(0)
                ),
            )
        }
    } else {
        Condition::pending(
            reason::JOB_CREATED,
            format!("Job {job_name:?} created; waiting for its pod to run"),
        )
    }
}

/// Whether the Job was suspended at some point (its timeout then counts from its start).
pub fn was_queued(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Suspended"))
}

/// The `ResultReported=False` condition for an unreadable report.
pub fn report_condition(
    message: &str,
    status: &TaskStatus,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let at = status
        .completion_time
        .clone()
        .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: REPORT_CONDITION.to_owned(),
        status: "False".to_owned(),
        reason: reason::INVALID_RESULT.to_owned(),
        message: message.to_owned(),
        observed_generation: status.observed_generation,
        last_transition_time: at,
    }
}

/// The Task's status with `condition`: transition times are kept while the condition's
/// status does not change, `now` stamps new transitions, and times never go backwards.
pub fn build(
    previous: &TaskStatus,
    generation: Option<i64>,
    job_name: Option<String>,
    rendered_by: Option<&[PluginRef]>,
    condition: &Condition,
    now: &Time,
) -> TaskStatus {
    let finished = matches!(condition.phase, TaskPhase::Completed | TaskPhase::Failed);
    let started = finished || condition.phase == TaskPhase::Running;
    let start_time = previous
        .start_time
        .clone()
        .or_else(|| started.then(|| condition.start_time.clone()).flatten());
    let completion_time = finished.then(|| {
        condition
            .completion_time
            .clone()
            .unwrap_or_else(|| now.clone())
    });
    let unchanged = previous
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION)
        .filter(|c| c.status == condition.status)
        .map(|c| c.last_transition_time.clone());
    TaskStatus {
        phase: Some(condition.phase),
        job_name,
        start_time,
        completion_time,
        observed_generation: generation,
        conditions: vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
            type_: CONDITION.to_owned(),
            status: condition.status.to_owned(),
            reason: condition.reason.to_owned(),
            message: condition.message.clone(),
            observed_generation: generation,
            last_transition_time: unchanged.unwrap_or_else(|| now.clone()),
        }],
        rendered_by: rendered_by.map_or_else(|| previous.rendered_by.clone(), <[_]>::to_vec),
        attempts: previous.attempts.clone(),
        result: previous.result.clone(),
        usage: previous.usage.clone(),
        workspace: previous.workspace.clone(),
    }
}

/// Whether the Task has finished: nothing more happens to it but its TTL (a finished
/// status is final; the only spec change allowed, adding `spec.cancel`, does not undo it).
pub fn is_finished(status: &TaskStatus) -> bool {
    matches!(status.phase, Some(TaskPhase::Completed | TaskPhase::Failed))
}

/// The condition's reason, if any.
pub fn condition_reason(status: &TaskStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};

    use super::*;

    fn job(conditions: &[(&str, &str)], spec: JobSpec, ready: i32, failed: i32) -> Job {
        let conditions = conditions
            .iter()
            .map(|(kind, status)| JobCondition {
                type_: (*kind).to_owned(),
                status: (*status).to_owned(),
                ..JobCondition::default()
            })
            .collect();
        Job {
            spec: Some(spec),
            status: Some(JobStatus {
                conditions: Some(conditions),
                ready: Some(ready),
                failed: Some(failed),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn job_finished_is_what_of_job_calls_completed_or_failed() {
        let suspended = JobSpec {
            suspend: Some(true),
            ..JobSpec::default()
        };
        let jobs = [
            Job::default(),
            job(&[], JobSpec::default(), 0, 0),
            job(&[("Complete", "True")], JobSpec::default(), 0, 0),
            job(&[("Failed", "True")], JobSpec::default(), 0, 2),
            job(&[("Failed", "False")], JobSpec::default(), 1, 1),
            job(&[("Complete", "Unknown")], JobSpec::default(), 0, 0),
            job(&[("Suspended", "True")], suspended, 0, 0),
            job(&[("FailureTarget", "True")], JobSpec::default(), 0, 1),
            job(&[], JobSpec::default(), 0, 1),
        ];
        let finished: Vec<bool> = jobs.iter().map(job_finished).collect();
        let by_phase: Vec<bool> = jobs
            .iter()
            .map(|job| {
                matches!(
                    of_job(job, "j").phase,
                    TaskPhase::Completed | TaskPhase::Failed
                )
            })
            .collect();
        assert_eq!(finished, by_phase);
        assert_eq!(finished.iter().filter(|f| **f).count(), 2);
    }
}
