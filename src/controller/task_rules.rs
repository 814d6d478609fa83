//! The rules of a Task's life, as one pure function: `decide(task, snapshot, now) -> Plan`.
//! The snapshot is what the controller knows about the Task (observed from watch-fed indexes
//! and, for misses, the API server); the plan is what to do about it: create the Job, the
//! status to write, the Event to emit, and when to look again. The executor (`reconcile`)
//! carries a plan out; nothing here does I/O.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kubetask_api::lifecycle::format_duration;
use kubetask_api::{PluginRef, Task, TaskPhase, TaskStatus};

use super::failure::{Class, Failure, LONGEST_RETRY, VISIBLE_AFTER};
use super::pod_attempts;
use super::status::{self, Condition, reason};
use crate::egress::enforcement::{self, Enforcement};
use crate::render::lifecycle::job_timeout;

/// The object that has (or would have) the Task's Job name.
#[derive(Debug, Clone, PartialEq)]
pub enum Child {
    /// No such object.
    Absent,
    /// The Task's own Job.
    Owned(Box<Job>),
    /// A Job or ConfigMap of a deleted Task with the same name, which the garbage collector
    /// has not removed yet.
    Previous { kind: &'static str, name: String },
    /// An object of someone else's.
    Foreign {
        kind: &'static str,
        name: String,
        owner: String,
    },
}

/// How far the Task is from having a Job (looked at only while it has none).
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Not looked at: the Task has a Job, is finished, or is being deleted.
    NotChecked,
    /// It waits for something a user or an admin provides (an Agent, a ConfigMap or key, a
    /// plugin, a policy that loads).
    Waiting {
        reason: &'static str,
        message: String,
    },
    /// Everything it needs is there: render and create.
    Ready,
    /// An earlier attempt failed permanently and nothing it depends on has changed since.
    Blocked(Failure),
    /// This reconcile's attempt failed; `attempts` in a row so far.
    Failed { attempts: u32, failure: Failure },
    /// The Job was just created (it is in `Snapshot::job`), rendered by these plugins.
    Created { rendered_by: Vec<PluginRef> },
}

/// What the controller knows about one Task.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The status as this replica last wrote it, else as the watch cache has it.
    pub status: TaskStatus,
    pub job: Child,
    pub start: Start,
    /// The Job's pods, when they were listed for this reconcile (a Job status change, or a
    /// stop): they update `status.attempts`, and the last one's report the result.
    pub pods: Option<Vec<Pod>>,
    /// How long the Task is kept once finished (its TTL), if at all.
    pub ttl: Option<Duration>,
    /// Whether its pod's egress is what its policy says, when egress is on and it has a Job
    /// (the `EgressEnforced` condition).
    pub egress: Option<Enforcement>,
    /// With the model gateway on: what it metered so far (`status.usage`, its ledger, which
    /// the controller never writes: an agent's own report of its usage is not kept).
    pub metered_usage: Option<kubetask_api::Usage>,
}

/// Why the controller stops a running agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Cancelled,
    BudgetExceeded,
}

/// When to reconcile the Task again (besides a change to something it depends on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Only when something changes.
    OnChange,
    /// After the backoff for this many consecutive failures (the executor adds jitter).
    Backoff {
        attempts: u32,
        retry_after: Option<std::time::Duration>,
    },
    /// After a fixed delay.
    After(std::time::Duration),
}

/// An Event about the Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// What to do about a Task.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Render and create the Task's ConfigMaps and Job.
    pub create: bool,
    /// The status to write; `None` when it does not change.
    pub status: Option<TaskStatus>,
    /// The Event of a transition (a new phase or reason).
    pub event: Option<Note>,
    /// A warning about the agent's report (its result could not be read).
    pub report_warning: Option<Note>,
    /// Stop the Job's agent (keeping its pod and logs) before the status is written.
    pub stop: Option<Stop>,
    /// Delete the Task (its TTL after finishing has passed).
    pub delete: bool,
    pub retry: Retry,
}

impl Plan {
    fn idle() -> Self {
        Self {
            create: false,
            status: None,
            event: None,
            report_warning: None,
            stop: None,
            delete: false,
            retry: Retry::OnChange,
        }
    }
}

/// The reasons under which a Pending Task waits for a user or an admin to act: they count as
/// errors in the metrics and their Events are warnings.
fn is_waiting_on_a_fix(why: &str) -> bool {
    matches!(
        why,
        reason::AGENT_NOT_FOUND
            | reason::CONFIG_MAP_NOT_FOUND
            | reason::CONFIG_MAP_KEY_NOT_FOUND
            | reason::PLUGIN_NOT_FOUND
            | reason::PLUGIN_UNAVAILABLE
            | reason::FORBIDDEN
            | reason::REJECTED
            | reason::API_UNAVAILABLE
            | reason::PLUGIN_TIMEOUT
    )
}

/// Decides what to do about `task` given what the controller knows (`snapshot`) at `now`.
pub fn decide(task: &Task, snapshot: &Snapshot, now: &Time) -> Plan {
    if task.metadata.deletion_timestamp.is_some() {
        return Plan::idle();
    }
    if status::is_finished(&snapshot.status) {
        return after_finishing(snapshot, now);
    }
    let job_name =
        || kubetask_api::naming::job_name(task.metadata.name.as_deref().unwrap_or_default());
    let cancelled = |why: &str| {
        let reason = task
            .spec
            .cancel
            .as_ref()
            .and_then(|c| c.reason.as_deref())
            .filter(|r| !r.is_empty())
            .map_or_else(String::new, |r| format!(": {r}"));
        Condition::failed(reason::CANCELLED, format!("cancelled {why}{reason}"))
    };
    let (condition, retry) = match (&snapshot.job, &snapshot.start) {
        (_, Start::Failed { attempts, failure }) => {
            return on_failure(task, snapshot, *attempts, failure, now);
        }
        (Child::Owned(job), _) => {
            let condition = status::of_job(job, &job_name());
            // A pod that failed in a workspace step says which, and why.
            let condition = match snapshot
                .pods
                .as_deref()
                .and_then(pod_attempts::workspace_failure)
            {
                Some((reason, message)) if condition.phase == TaskPhase::Failed => Condition {
                    start_time: condition.start_time,
                    completion_time: condition.completion_time,
                    ..Condition::failed(reason, message)
                },
                _ => condition,
            };
            // A publish step that found nothing to publish says so.
            let published = snapshot.pods.as_deref().and_then(pod_attempts::published);
            let condition = match published {
                Some(published)
                    if published.no_changes && condition.phase == TaskPhase::Completed =>
                {
                    Condition {
                        reason: reason::NO_CHANGES,
                        message: "the agent succeeded and left no changes: nothing was pushed and no pull request opened".to_owned(),
                        ..condition
                    }
                }
                _ => condition,
            };
            let running = !matches!(condition.phase, TaskPhase::Completed | TaskPhase::Failed);
            let deadline = deadline(job);
            let timed_out = !running
                && condition.phase == TaskPhase::Failed
                && deadline
                    .as_ref()
                    .is_some_and(|(at, _)| match snapshot.pods.as_deref() {
                        // The kubelet stopped a pod at its deadline (the safety net fired first).
                        Some(pods) => pods
                            .iter()
                            .any(|p| pod_attempts::attempt_of(p).reason == "DeadlineExceeded"),
                        None => now.0 >= at.0,
                    });
            match deadline {
                Some((_, timeout)) if timed_out => {
                    let condition = Condition {
                        start_time: condition.start_time,
                        completion_time: condition.completion_time,
                        ..Condition::failed(
                            reason::TIMEOUT,
                            format!(
                                "the Task ran longer than its timeout of {}; the kubelet stopped the agent and its logs are kept",
                                format_duration(timeout)
                            ),
                        )
                    };
                    (condition, Retry::OnChange)
                }
                _ if running
                    && let Some(why) = over_budget(job, snapshot.metered_usage.as_ref()) =>
                {
                    let condition = Condition {
                        start_time: condition.start_time,
                        ..Condition::failed(
                            reason::BUDGET_EXCEEDED,
                            format!(
                                "{why}; the gateway refused its next call, the agent was stopped and its logs are kept"
                            ),
                        )
                    };
                    return stop(task, snapshot, Stop::BudgetExceeded, condition, now);
                }
                _ if running && task.spec.cancel.is_some() => {
                    let condition = Condition {
                        start_time: condition.start_time,
                        ..cancelled("while it ran; the agent was stopped and its logs are kept")
                    };
                    return stop(task, snapshot, Stop::Cancelled, condition, now);
                }
                Some((at, timeout)) if running && now.0 >= at.0 => {
                    let condition = Condition {
                        start_time: condition.start_time,
                        ..Condition::failed(
                            reason::TIMEOUT,
                            format!(
                                "the Task ran longer than its timeout of {} (its Job was created at {}); the agent was stopped and its logs are kept",
                                format_duration(timeout),
                                job.metadata
                                    .creation_timestamp
                                    .as_ref()
                                    .map_or_else(String::new, |t| t.0.to_string())
                            ),
                        )
                    };
                    return stop(task, snapshot, Stop::Timeout, condition, now);
                }
                Some((at, _)) if running => {
                    let left = at.0.duration_since(now.0).unsigned_abs();
                    (condition, Retry::After(left + Duration::from_millis(100)))
                }
                _ => (condition, Retry::OnChange),
            }
        }
        _ if task.spec.cancel.is_some() && snapshot.status.job_name.is_none() => (
            cancelled("before it started; no Job was created"),
            Retry::OnChange,
        ),
        (Child::Previous { kind, name }, _) => (
            Condition::pending(
                reason::PREVIOUS_TASK_CLEANUP,
                format!(
                    "{kind} {name:?} belongs to a deleted Task of the same name; the Task starts when Kubernetes has deleted it"
                ),
            ),
            Retry::OnChange,
        ),
        (Child::Foreign { kind, name, owner }, _) => (
            Condition::failed(
                reason::NAME_CONFLICT,
                format!(
                    "{kind} {name:?} already exists and is not controlled by this Task (controller: {owner}); delete or rename it"
                ),
            ),
            Retry::OnChange,
        ),
        (Child::Absent, _) if snapshot.status.job_name.is_some() => (
            Condition::failed(
                reason::JOB_MISSING,
                format!(
                    "Job {:?} was deleted before it finished",
                    snapshot.status.job_name.as_deref().unwrap_or_default()
                ),
            ),
            Retry::OnChange,
        ),
        (Child::Absent, Start::Waiting { reason, message }) => {
            let rechecked = [
                reason::QUEUED,
                reason::PUBLISH_LOCKED,
                reason::BUDGET_EXHAUSTED,
            ];
            let retry = if rechecked.contains(reason) {
                Retry::After(super::admission::RECHECK)
            } else {
                Retry::OnChange
            };
            (Condition::pending(reason, message.clone()), retry)
        }
        (Child::Absent, Start::Blocked(failure)) => (
            Condition::pending(failure.reason, failure.message.clone()),
            Retry::After(LONGEST_RETRY),
        ),
        (Child::Absent, Start::Ready) => {
            return Plan {
                create: true,
                ..Plan::idle()
            };
        }
        (Child::Absent, Start::NotChecked | Start::Created { .. }) => return Plan::idle(),
    };
    let rendered_by = match &snapshot.start {
        Start::Created { rendered_by } => Some(rendered_by.as_slice()),
        _ => None,
    };
    transition(task, snapshot, condition, rendered_by, retry, now)
}

/// Whether the controller must stop the Job's agent now (cancelled, past its deadline, or
/// over its budget by the gateway's meter `usage`).
pub fn stop_due(task: &Task, job: &Job, usage: Option<&kubetask_api::Usage>, now: &Time) -> bool {
    !status::job_finished(job)
        && (task.spec.cancel.is_some()
            || deadline(job).is_some_and(|(at, _)| now.0 >= at.0)
            || over_budget(job, usage).is_some())
}

/// Why the gateway's meter (`usage`, with the gateway on) is at or past the budget fixed on
/// the Job, if it is.
fn over_budget(job: &Job, usage: Option<&kubetask_api::Usage>) -> Option<String> {
    crate::render::lifecycle::job_budget(job)?.exceeded(usage?)
}

/// When the Job's agent must have finished: its creation (or, for a Job created suspended,
/// its start) plus the timeout fixed on it. `None`: no timeout, or a Job still suspended.
fn deadline(job: &Job) -> Option<(Time, Duration)> {
    let timeout = job_timeout(job)?;
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    let started = job.status.as_ref().and_then(|s| s.start_time.clone());
    let from = match (started, suspended) {
        (_, true) => return None,
        (Some(started), false) if status::was_queued(job) => started,
        (_, false) => job.metadata.creation_timestamp.clone()?,
    };
    let signed = k8s_openapi::jiff::SignedDuration::try_from(timeout).ok()?;
    Some((Time(from.0.checked_add(signed).ok()?), timeout))
}

/// Stops the running agent and ends the Task with `condition`.
fn stop(task: &Task, snapshot: &Snapshot, why: Stop, condition: Condition, now: &Time) -> Plan {
    let mut plan = transition(task, snapshot, condition, None, Retry::OnChange, now);
    if let Some(next) = plan.status.as_mut() {
        let label = match why {
            Stop::Timeout => "Timeout",
            Stop::Cancelled => "Cancelled",
            Stop::BudgetExceeded => "BudgetExceeded",
        };
        pod_attempts::stopped(&mut next.attempts, label, now);
    }
    Plan {
        stop: Some(why),
        ..plan
    }
}

/// Updates the attempts from the listed pods and, once the Task has finished, reads the
/// agent's report; returns the warning if the report is invalid.
fn report(next: &mut TaskStatus, snapshot: &Snapshot) -> Option<Note> {
    let pods = snapshot.pods.as_deref()?;
    next.attempts = pod_attempts::merge(&snapshot.status.attempts, pods);
    if let Some(commit) = pod_attempts::workspace_commit(pods) {
        next.workspace.get_or_insert_default().commit = Some(commit);
    }
    if !status::is_finished(next) {
        return None;
    }
    let published = pod_attempts::published(pods);
    let note = match pod_attempts::report(pods) {
        Ok(Some((result, usage))) => {
            next.result = Some(result);
            // With the gateway on, status.usage is its ledger alone.
            if snapshot.metered_usage.is_none() {
                next.usage = usage;
            }
            None
        }
        Ok(None) => None,
        Err(error) => {
            let message = format!(
                "{error}; the Task's result is left empty (see docs/agent-image.md for the format)"
            );
            next.conditions
                .push(status::report_condition(&message, next));
            Some(Note {
                warning: true,
                reason: reason::INVALID_RESULT.to_owned(),
                message,
            })
        }
    };
    if let Some(published) = published {
        // Only the publish step names a pull request: an agent's report cannot.
        if let Some(pull_request) = published.pull_request.clone() {
            next.result.get_or_insert_default().pull_request = Some(pull_request);
        }
        next.workspace.get_or_insert_default().published = Some(published);
    }
    note
}

/// Sets the `EgressEnforced` condition from the policies' answer and what the newest pod's
/// canary saw (when its pods were listed), or keeps the one written before (a finished Task
/// keeps its last answer). A canary's verdict stands until pods are listed again (the newest
/// pod's canary ran once, at its start); its transition time moves only when its status does.
fn egress_condition(next: &mut TaskStatus, snapshot: &Snapshot, now: &Time) {
    let previous = snapshot
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == enforcement::CONDITION);
    let by_canary = |reason: &str| previous.is_some_and(|c| c.reason == reason);
    let canary = snapshot
        .pods
        .as_deref()
        .and_then(pod_attempts::canary_probe);
    let condition = match (&snapshot.egress, &canary) {
        (None, _) => previous.cloned(),
        (Some(_), None) if by_canary(enforcement::CANARY_REACHED) => previous.cloned(),
        (Some(Enforcement::Enforced), None) if by_canary(enforcement::CANARY_BLOCKED) => {
            previous.cloned()
        }
        (Some(answer), probe) => {
            let (status, reason, message) = enforcement::condition(answer, probe.as_ref());
            let since = previous
                .filter(|c| c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: enforcement::CONDITION.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                observed_generation: next.observed_generation,
                last_transition_time: since,
            })
        }
    };
    let Some(condition) = condition else {
        return;
    };
    next.conditions
        .retain(|c| c.type_ != enforcement::CONDITION);
    next.conditions.push(condition);
}

/// A finished Task waits for its TTL, then is deleted.
fn after_finishing(snapshot: &Snapshot, now: &Time) -> Plan {
    let (Some(ttl), Some(finished)) = (snapshot.ttl, snapshot.status.completion_time.as_ref())
    else {
        return Plan::idle();
    };
    let Ok(signed) = k8s_openapi::jiff::SignedDuration::try_from(ttl) else {
        return Plan::idle();
    };
    let Some(due) = finished.0.checked_add(signed).ok() else {
        return Plan::idle();
    };
    if now.0 >= due {
        return Plan {
            delete: true,
            ..Plan::idle()
        };
    }
    Plan {
        retry: Retry::After(due.duration_since(now.0).unsigned_abs() + Duration::from_millis(100)),
        ..Plan::idle()
    }
}

/// The plan after a failed attempt to act.
fn on_failure(
    task: &Task,
    snapshot: &Snapshot,
    attempts: u32,
    failure: &Failure,
    now: &Time,
) -> Plan {
    match failure.class {
        Class::Transient { retry_after, .. } => {
            let retry = Retry::Backoff {
                attempts,
                retry_after,
            };
            if attempts < VISIBLE_AFTER {
                return Plan {
                    retry,
                    ..Plan::idle()
                };
            }
            let mut condition = Condition::pending(
                failure.reason,
                format!(
                    "{} (attempt {attempts}; retrying with backoff, at most every 5 minutes)",
                    failure.message
                ),
            );
            // A Task with a Job keeps its phase while the controller cannot reach the server.
            if let Some(phase) = snapshot.status.phase {
                condition.phase = phase;
            }
            transition(task, snapshot, condition, None, retry, now)
        }
        Class::Blocked => transition(
            task,
            snapshot,
            Condition::pending(failure.reason, failure.message.clone()),
            None,
            Retry::After(LONGEST_RETRY),
            now,
        ),
        Class::Fatal => transition(
            task,
            snapshot,
            Condition::failed(failure.reason, failure.message.clone()),
            None,
            Retry::OnChange,
            now,
        ),
    }
}

/// The status after `condition`, and the Event if the phase or reason changed.
fn transition(
    task: &Task,
    snapshot: &Snapshot,
    condition: Condition,
    rendered_by: Option<&[PluginRef]>,
    retry: Retry,
    now: &Time,
) -> Plan {
    let previous = &snapshot.status;
    let job_name = match &snapshot.job {
        Child::Owned(_) => Some(kubetask_api::naming::job_name(
            task.metadata.name.as_deref().unwrap_or_default(),
        )),
        _ => previous.job_name.clone(),
    };
    let mut next = status::build(
        previous,
        task.metadata.generation,
        job_name,
        rendered_by,
        &condition,
        now,
    );
    let report_warning = report(&mut next, snapshot);
    egress_condition(&mut next, snapshot, now);
    let event = {
        let before = (previous.phase, status::condition_reason(previous));
        let after = (next.phase, status::condition_reason(&next));
        (before != after).then(|| Note {
            warning: matches!(next.phase, Some(TaskPhase::Failed))
                || is_waiting_on_a_fix(condition.reason),
            reason: condition.reason.to_owned(),
            message: condition.message.clone(),
        })
    };
    // A Task that finishes now (whatever the reason) waits for its TTL.
    let retry = match snapshot.ttl {
        Some(ttl) if status::is_finished(&next) && !status::is_finished(previous) => {
            Retry::After(ttl)
        }
        _ => retry,
    };
    Plan {
        status: (next != *previous).then_some(next),
        event,
        report_warning,
        retry,
        ..Plan::idle()
    }
}

#[cfg(test)]
mod tests;
