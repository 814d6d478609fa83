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
use super::runs;
use super::status::{self, Condition, reason};
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
}

/// Why the controller stops a running agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Cancelled,
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
                            .any(|p| runs::attempt_of(p).reason == "DeadlineExceeded"),
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
            let retry = if *reason == reason::QUEUED {
                Retry::After(super::queue::RECHECK)
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

/// Whether the controller must stop the Job's agent now (cancelled, or past its deadline).
pub fn stop_due(task: &Task, job: &Job, now: &Time) -> bool {
    !status::job_finished(job)
        && (task.spec.cancel.is_some() || deadline(job).is_some_and(|(at, _)| now.0 >= at.0))
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
        };
        runs::stopped(&mut next.attempts, label, now);
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
    next.attempts = runs::merge(&snapshot.status.attempts, pods);
    if !status::is_finished(next) {
        return None;
    }
    match runs::report(pods) {
        Ok(Some((result, usage))) => {
            next.result = Some(result);
            next.usage = usage;
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
    }
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
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
    use kubetask_api::TaskSpec;

    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    fn task() -> Task {
        let mut task = Task::new("t", TaskSpec::default());
        task.metadata.generation = Some(1);
        task.metadata.namespace = Some("n".into());
        task
    }

    fn job(status: JobStatus) -> Child {
        Child::Owned(Box::new(Job {
            status: Some(status),
            ..Job::default()
        }))
    }

    fn job_condition(kind: &str, at: i64) -> JobCondition {
        JobCondition {
            type_: kind.to_owned(),
            status: "True".to_owned(),
            reason: Some("BackoffLimitExceeded".to_owned()),
            message: Some("Job has reached the specified backoff limit".to_owned()),
            last_transition_time: Some(time(at)),
            ..JobCondition::default()
        }
    }

    /// A Job started at 10 whose pod is ready.
    fn ready_status() -> JobStatus {
        JobStatus {
            start_time: Some(time(10)),
            active: Some(1),
            ready: Some(1),
            ..JobStatus::default()
        }
    }

    /// A Job started at 10 that completed at 20.
    fn complete_status() -> JobStatus {
        JobStatus {
            start_time: Some(time(10)),
            completion_time: Some(time(20)),
            conditions: Some(vec![job_condition("Complete", 20)]),
            ..JobStatus::default()
        }
    }

    /// A Job started at 10 whose one attempt failed it at 30.
    fn failed_status() -> JobStatus {
        JobStatus {
            start_time: Some(time(10)),
            failed: Some(1),
            conditions: Some(vec![job_condition("Failed", 30)]),
            ..JobStatus::default()
        }
    }

    /// The status `decide` writes for this observation of a Task whose status was `status`.
    fn after(status: &TaskStatus, job: Child, start: Start) -> TaskStatus {
        let snapshot = Snapshot {
            pods: None,
            ttl: None,
            status: status.clone(),
            job,
            start,
        };
        decide(&task(), &snapshot, &time(1))
            .status
            .expect("a status is written")
    }

    /// The reason constants by value (test rows name reasons as strings).
    fn reason_static(why: &str) -> &'static str {
        [
            reason::JOB_CREATED,
            reason::RUNNING,
            reason::COMPLETED,
            reason::JOB_FAILED,
            reason::JOB_MISSING,
            reason::AGENT_NOT_FOUND,
            reason::CONFIG_MAP_NOT_FOUND,
            reason::CONFIG_MAP_KEY_NOT_FOUND,
            reason::INVALID_SPEC,
            reason::POLICY_DENIED,
            reason::PLUGIN_ERROR,
            reason::PLUGIN_NOT_FOUND,
            reason::PLUGIN_UNAVAILABLE,
            reason::PLUGIN_TIMEOUT,
            reason::PREVIOUS_TASK_CLEANUP,
            reason::NAME_CONFLICT,
            reason::FORBIDDEN,
            reason::REJECTED,
            reason::API_UNAVAILABLE,
            reason::QUEUED,
            reason::TIMEOUT,
            reason::CANCELLED,
            reason::RETRYING,
        ]
        .into_iter()
        .find(|r| *r == why)
        .unwrap_or_else(|| panic!("unknown reason {why}"))
    }

    fn transient(why: &'static str) -> Failure {
        Failure {
            class: Class::Transient {
                retry_after: None,
                give_up_after: None,
            },
            reason: why,
            message: "the API server answered 503".into(),
        }
    }

    fn permanent(class: Class, why: &'static str) -> Failure {
        Failure {
            class,
            reason: why,
            message: format!("{why}: what to fix"),
        }
    }

    /// What a row expects: create?, the phase and reason written (None: no write), an Event
    /// (None: none; Some(warning)), and the retry.
    struct Expect {
        create: bool,
        written: Option<(TaskPhase, &'static str)>,
        event: Option<bool>,
        retry: Retry,
    }

    const ON_CHANGE: Retry = Retry::OnChange;

    fn expect(
        create: bool,
        written: Option<(TaskPhase, &'static str)>,
        event: Option<bool>,
        retry: Retry,
    ) -> Expect {
        Expect {
            create,
            written,
            event,
            retry,
        }
    }

    #[test]
    fn every_phase_and_observation() {
        use TaskPhase::*;
        let none = TaskStatus::default();
        let waiting = |why: &'static str| Start::Waiting {
            reason: why,
            message: format!("{why}: waiting"),
        };
        let failed_now = |attempts: u32, failure: Failure| Start::Failed { attempts, failure };
        let pending_created = after(
            &none,
            job(JobStatus::default()),
            Start::Created {
                rendered_by: vec![],
            },
        );
        let waiting_agent = after(&none, Child::Absent, waiting(reason::AGENT_NOT_FOUND));
        let forbidden = after(
            &none,
            Child::Absent,
            failed_now(1, permanent(Class::Blocked, reason::FORBIDDEN)),
        );
        let retrying = after(
            &none,
            Child::Absent,
            failed_now(3, transient(reason::API_UNAVAILABLE)),
        );
        let started = JobStatus {
            ready: None,
            ..ready_status()
        };
        let (ready, complete, failed) = (ready_status(), complete_status(), failed_status());
        let running = after(&pending_created, job(ready.clone()), Start::NotChecked);
        let completed = after(&running, job(complete.clone()), Start::NotChecked);
        let job_failed = after(&running, job(failed.clone()), Start::NotChecked);
        let backoff = |attempts| Retry::Backoff {
            attempts,
            retry_after: None,
        };
        let rows: Vec<(&str, TaskStatus, Child, Start, Expect)> = vec![
            // A new Task.
            (
                "new, ready",
                none.clone(),
                Child::Absent,
                Start::Ready,
                expect(true, None, None, ON_CHANGE),
            ),
            (
                "new, Agent missing",
                none.clone(),
                Child::Absent,
                waiting(reason::AGENT_NOT_FOUND),
                expect(
                    false,
                    Some((Pending, reason::AGENT_NOT_FOUND)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "new, ConfigMap missing",
                none.clone(),
                Child::Absent,
                waiting(reason::CONFIG_MAP_NOT_FOUND),
                expect(
                    false,
                    Some((Pending, reason::CONFIG_MAP_NOT_FOUND)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "new, key missing",
                none.clone(),
                Child::Absent,
                waiting(reason::CONFIG_MAP_KEY_NOT_FOUND),
                expect(
                    false,
                    Some((Pending, reason::CONFIG_MAP_KEY_NOT_FOUND)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "new, plugin missing",
                none.clone(),
                Child::Absent,
                waiting(reason::PLUGIN_NOT_FOUND),
                expect(
                    false,
                    Some((Pending, reason::PLUGIN_NOT_FOUND)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "new, policy broken",
                none.clone(),
                Child::Absent,
                waiting(reason::PLUGIN_UNAVAILABLE),
                expect(
                    false,
                    Some((Pending, reason::PLUGIN_UNAVAILABLE)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "waiting, still waiting",
                waiting_agent.clone(),
                Child::Absent,
                waiting(reason::AGENT_NOT_FOUND),
                expect(false, None, None, ON_CHANGE),
            ),
            (
                "waiting, now ready",
                waiting_agent.clone(),
                Child::Absent,
                Start::Ready,
                expect(true, None, None, ON_CHANGE),
            ),
            // Children that are not the Task's.
            (
                "old child",
                none.clone(),
                Child::Previous {
                    kind: "ConfigMap",
                    name: "t-contexts".into(),
                },
                Start::NotChecked,
                expect(
                    false,
                    Some((Pending, reason::PREVIOUS_TASK_CLEANUP)),
                    Some(false),
                    ON_CHANGE,
                ),
            ),
            (
                "foreign Job",
                none.clone(),
                Child::Foreign {
                    kind: "Job",
                    name: "t".into(),
                    owner: "none".into(),
                },
                Start::NotChecked,
                expect(
                    false,
                    Some((Failed, reason::NAME_CONFLICT)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            // Creating.
            (
                "created",
                none.clone(),
                job(JobStatus::default()),
                Start::Created {
                    rendered_by: vec![],
                },
                expect(
                    false,
                    Some((Pending, reason::JOB_CREATED)),
                    Some(false),
                    ON_CHANGE,
                ),
            ),
            (
                "create failed once",
                none.clone(),
                Child::Absent,
                failed_now(1, transient(reason::API_UNAVAILABLE)),
                expect(false, None, None, backoff(1)),
            ),
            (
                "create failed 3 times",
                none.clone(),
                Child::Absent,
                failed_now(3, transient(reason::API_UNAVAILABLE)),
                expect(
                    false,
                    Some((Pending, reason::API_UNAVAILABLE)),
                    Some(true),
                    backoff(3),
                ),
            ),
            (
                "retrying, failed again",
                retrying.clone(),
                Child::Absent,
                failed_now(4, transient(reason::API_UNAVAILABLE)),
                expect(
                    false,
                    Some((Pending, reason::API_UNAVAILABLE)),
                    None,
                    backoff(4),
                ),
            ),
            (
                "retrying, now ready",
                retrying.clone(),
                Child::Absent,
                Start::Ready,
                expect(true, None, None, ON_CHANGE),
            ),
            (
                "plugin timed out once",
                none.clone(),
                Child::Absent,
                failed_now(1, transient(reason::PLUGIN_TIMEOUT)),
                expect(false, None, None, backoff(1)),
            ),
            (
                "403",
                none.clone(),
                Child::Absent,
                failed_now(1, permanent(Class::Blocked, reason::FORBIDDEN)),
                expect(
                    false,
                    Some((Pending, reason::FORBIDDEN)),
                    Some(true),
                    Retry::After(LONGEST_RETRY),
                ),
            ),
            (
                "403, nothing changed",
                forbidden.clone(),
                Child::Absent,
                Start::Blocked(permanent(Class::Blocked, reason::FORBIDDEN)),
                expect(false, None, None, Retry::After(LONGEST_RETRY)),
            ),
            (
                "403, then ready",
                forbidden.clone(),
                Child::Absent,
                Start::Ready,
                expect(true, None, None, ON_CHANGE),
            ),
            (
                "422",
                none.clone(),
                Child::Absent,
                failed_now(1, permanent(Class::Blocked, reason::REJECTED)),
                expect(
                    false,
                    Some((Pending, reason::REJECTED)),
                    Some(true),
                    Retry::After(LONGEST_RETRY),
                ),
            ),
            (
                "invalid spec",
                none.clone(),
                Child::Absent,
                failed_now(1, permanent(Class::Fatal, reason::INVALID_SPEC)),
                expect(
                    false,
                    Some((Failed, reason::INVALID_SPEC)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "denied",
                none.clone(),
                Child::Absent,
                failed_now(1, permanent(Class::Fatal, reason::POLICY_DENIED)),
                expect(
                    false,
                    Some((Failed, reason::POLICY_DENIED)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "plugin crashed",
                none.clone(),
                Child::Absent,
                failed_now(1, permanent(Class::Fatal, reason::PLUGIN_ERROR)),
                expect(
                    false,
                    Some((Failed, reason::PLUGIN_ERROR)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            // The Job's life.
            (
                "Job pending",
                pending_created.clone(),
                job(JobStatus::default()),
                Start::NotChecked,
                expect(false, None, None, ON_CHANGE),
            ),
            (
                "Job started, pod not ready",
                pending_created.clone(),
                job(started.clone()),
                Start::NotChecked,
                expect(false, None, None, ON_CHANGE),
            ),
            (
                "pod ready",
                pending_created.clone(),
                job(ready.clone()),
                Start::NotChecked,
                expect(
                    false,
                    Some((Running, reason::RUNNING)),
                    Some(false),
                    ON_CHANGE,
                ),
            ),
            (
                "running, still",
                running.clone(),
                job(ready.clone()),
                Start::NotChecked,
                expect(false, None, None, ON_CHANGE),
            ),
            (
                "running, complete",
                running.clone(),
                job(complete.clone()),
                Start::NotChecked,
                expect(
                    false,
                    Some((Completed, reason::COMPLETED)),
                    Some(false),
                    ON_CHANGE,
                ),
            ),
            (
                "running, failed",
                running.clone(),
                job(failed.clone()),
                Start::NotChecked,
                expect(
                    false,
                    Some((Failed, reason::JOB_FAILED)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "pending, complete at once",
                pending_created.clone(),
                job(complete.clone()),
                Start::NotChecked,
                expect(
                    false,
                    Some((Completed, reason::COMPLETED)),
                    Some(false),
                    ON_CHANGE,
                ),
            ),
            (
                "running, Job deleted",
                running.clone(),
                Child::Absent,
                Start::NotChecked,
                expect(
                    false,
                    Some((Failed, reason::JOB_MISSING)),
                    Some(true),
                    ON_CHANGE,
                ),
            ),
            (
                "running, API down",
                running.clone(),
                Child::Absent,
                failed_now(3, transient(reason::API_UNAVAILABLE)),
                expect(
                    false,
                    Some((Running, reason::API_UNAVAILABLE)),
                    Some(true),
                    backoff(3),
                ),
            ),
            // Finished Tasks stay as they are.
            (
                "completed",
                completed.clone(),
                Child::Absent,
                Start::NotChecked,
                expect(false, None, None, ON_CHANGE),
            ),
            (
                "failed",
                job_failed.clone(),
                job(ready.clone()),
                Start::NotChecked,
                expect(false, None, None, ON_CHANGE),
            ),
        ];
        for (name, status, child, start, expected) in rows {
            let snapshot = Snapshot {
                pods: None,
                ttl: None,
                status: status.clone(),
                job: child,
                start,
            };
            let plan = decide(&task(), &snapshot, &time(100));
            assert_eq!(plan.create, expected.create, "{name}: create");
            let written = plan.status.as_ref().map(|s| {
                (
                    s.phase.unwrap(),
                    reason_static(status::condition_reason(s).unwrap()),
                )
            });
            assert_eq!(written, expected.written, "{name}: status");
            assert_eq!(
                plan.event.as_ref().map(|e| e.warning),
                expected.event,
                "{name}: event"
            );
            assert_eq!(plan.retry, expected.retry, "{name}: retry");
            if let Some(written) = &plan.status {
                assert_eq!(written.observed_generation, Some(1), "{name}");
                assert_eq!(written.conditions.len(), 1, "{name}");
            }
        }
    }

    #[test]
    fn times_come_from_the_job_and_only_once_it_runs() {
        let snapshot = |status: TaskStatus, job_status: JobStatus| Snapshot {
            pods: None,
            ttl: None,
            status,
            job: job(job_status),
            start: Start::NotChecked,
        };
        let pending = after(
            &TaskStatus::default(),
            job(JobStatus::default()),
            Start::Created {
                rendered_by: vec![],
            },
        );
        let started = JobStatus {
            start_time: Some(time(10)),
            ..JobStatus::default()
        };
        assert_eq!(
            decide(
                &task(),
                &snapshot(pending.clone(), started.clone()),
                &time(11)
            )
            .status,
            None,
            "a startTime alone while Pending is not written"
        );
        let running = decide(
            &task(),
            &snapshot(
                pending,
                JobStatus {
                    ready: Some(1),
                    ..started
                },
            ),
            &time(12),
        )
        .status
        .unwrap();
        assert_eq!(running.start_time, Some(time(10)));
        let done = decide(
            &task(),
            &snapshot(
                running.clone(),
                JobStatus {
                    start_time: Some(time(10)),
                    completion_time: Some(time(20)),
                    conditions: Some(vec![job_condition("Complete", 21)]),
                    ..JobStatus::default()
                },
            ),
            &time(30),
        )
        .status
        .unwrap();
        assert_eq!(
            (done.start_time, done.completion_time),
            (Some(time(10)), Some(time(20)))
        );
        assert_eq!(
            running.conditions[0].last_transition_time,
            time(1),
            "Unknown → Unknown keeps its time"
        );
        assert_eq!(done.conditions[0].last_transition_time, time(30));
        let failed = decide(
            &task(),
            &snapshot(
                running.clone(),
                JobStatus {
                    conditions: Some(vec![job_condition("Failed", 30)]),
                    ..JobStatus::default()
                },
            ),
            &time(40),
        )
        .status
        .unwrap();
        assert_eq!(
            failed.completion_time,
            Some(time(30)),
            "the Failed condition's time"
        );
        assert!(
            failed.conditions[0]
                .message
                .contains("BackoffLimitExceeded: Job has reached")
        );
    }

    #[test]
    fn a_created_job_records_its_plugins_and_later_statuses_keep_them() {
        let plugins = vec![PluginRef {
            name: "builtin-default".into(),
            digest: "sha256:x".into(),
        }];
        let created = Snapshot {
            pods: None,
            ttl: None,
            status: TaskStatus::default(),
            job: job(JobStatus::default()),
            start: Start::Created {
                rendered_by: plugins.clone(),
            },
        };
        let first = decide(&task(), &created, &time(1)).status.unwrap();
        assert_eq!(first.rendered_by, plugins);
        assert_eq!(first.job_name.as_deref(), Some("t"));
        let later = Snapshot {
            pods: None,
            ttl: None,
            status: first,
            job: job(JobStatus {
                ready: Some(1),
                ..JobStatus::default()
            }),
            start: Start::NotChecked,
        };
        assert_eq!(
            decide(&task(), &later, &time(2))
                .status
                .unwrap()
                .rendered_by,
            plugins
        );
    }

    #[test]
    fn deleted_and_newer_generations() {
        let mut deleted = task();
        deleted.metadata.deletion_timestamp = Some(time(5));
        let snapshot = Snapshot {
            pods: None,
            ttl: None,
            status: TaskStatus::default(),
            job: Child::Absent,
            start: Start::Ready,
        };
        assert_eq!(decide(&deleted, &snapshot, &time(6)), Plan::idle());
        let mut newer = task();
        newer.metadata.generation = Some(2);
        let running = after(
            &TaskStatus::default(),
            job(JobStatus {
                ready: Some(1),
                ..JobStatus::default()
            }),
            Start::NotChecked,
        );
        let finished = Snapshot {
            pods: None,
            ttl: None,
            status: after(
                &running,
                job(JobStatus {
                    conditions: Some(vec![job_condition("Complete", 3)]),
                    ..JobStatus::default()
                }),
                Start::NotChecked,
            ),
            job: job(JobStatus::default()),
            start: Start::NotChecked,
        };
        assert_eq!(
            decide(&newer, &finished, &time(6)),
            Plan::idle(),
            "a finished status is final, also for a newer generation (spec.cancel added late)"
        );
    }

    /// A Job created at `created` with a `timeout_seconds` fixed on it, in `status`.
    fn timed_job(created: i64, timeout_seconds: Option<u64>, status: JobStatus) -> Child {
        let mut job = Job {
            status: Some(status),
            ..Job::default()
        };
        job.metadata.creation_timestamp = Some(time(created));
        if let Some(seconds) = timeout_seconds {
            job.metadata.annotations = Some(
                [(
                    crate::render::lifecycle::TIMEOUT_ANNOTATION.to_owned(),
                    seconds.to_string(),
                )]
                .into(),
            );
        }
        Child::Owned(Box::new(job))
    }

    fn pod(name: &str, phase: &str, reason: Option<&str>, message: Option<&str>) -> Pod {
        let state = if phase == "Running" {
            serde_json::json!({"running": {}})
        } else {
            serde_json::json!({"terminated": {"exitCode": if phase == "Succeeded" { 0 } else { 1 }, "message": message, "finishedAt": "1970-01-01T00:00:20Z"}})
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"phase": phase, "reason": reason, "startTime": "1970-01-01T00:00:10Z",
                "containerStatuses": [{"name": "agent", "image": "i", "ready": false, "restartCount": 0, "state": state}]},
        }))
        .unwrap()
    }

    /// One row per lifecycle rule: cancel, timeout, queue, retries, reports, TTL.
    #[test]
    fn lifecycle_rules() {
        use TaskPhase::*;
        let mut cancelled = task();
        cancelled.spec.cancel = Some(kubetask_api::Cancel {
            reason: Some("wrong repo".into()),
        });
        let plain = task();
        let none = TaskStatus::default();
        let running_status = after(
            &none,
            job(JobStatus {
                ready: Some(1),
                start_time: Some(time(10)),
                ..JobStatus::default()
            }),
            Start::NotChecked,
        );
        let (ready, complete, failed) = (ready_status(), complete_status(), failed_status());
        let finished = after(&running_status, job(complete.clone()), Start::NotChecked);
        let good = r#"{"summary": "done", "usage": {"cost": "0.10"}}"#;
        struct Row {
            name: &'static str,
            task: Task,
            status: TaskStatus,
            job: Child,
            pods: Option<Vec<Pod>>,
            ttl: Option<u64>,
            now: i64,
            written: Option<(TaskPhase, &'static str)>,
            stop: Option<Stop>,
            delete: bool,
            retry: Retry,
        }
        let row = |name, task: &Task, status: &TaskStatus, job, now| Row {
            name,
            task: task.clone(),
            status: status.clone(),
            job,
            pods: None,
            ttl: None,
            now,
            written: None,
            stop: None,
            delete: false,
            retry: Retry::OnChange,
        };
        let rows = vec![
            Row {
                written: Some((Failed, reason::CANCELLED)),
                ..row(
                    "cancelled before a Job",
                    &cancelled,
                    &none,
                    Child::Absent,
                    1,
                )
            },
            Row {
                written: Some((Failed, reason::CANCELLED)),
                stop: Some(Stop::Cancelled),
                ..row(
                    "cancelled while running",
                    &cancelled,
                    &running_status,
                    timed_job(5, None, ready.clone()),
                    30,
                )
            },
            row(
                "cancelled after finishing",
                &cancelled,
                &finished,
                job(complete.clone()),
                30,
            ),
            Row {
                retry: Retry::After(Duration::from_millis(5100)),
                ..row(
                    "running, deadline ahead",
                    &plain,
                    &running_status,
                    timed_job(5, Some(30), ready.clone()),
                    30,
                )
            },
            Row {
                written: Some((Failed, reason::TIMEOUT)),
                stop: Some(Stop::Timeout),
                ..row(
                    "running, deadline passed",
                    &plain,
                    &running_status,
                    timed_job(5, Some(30), ready.clone()),
                    35,
                )
            },
            Row {
                written: Some((Failed, reason::TIMEOUT)),
                pods: Some(vec![pod("p", "Failed", Some("DeadlineExceeded"), None)]),
                ..row(
                    "the kubelet's deadline stopped the pod",
                    &plain,
                    &running_status,
                    timed_job(5, Some(30), failed.clone()),
                    34,
                )
            },
            Row {
                written: Some((Failed, reason::JOB_FAILED)),
                pods: Some(vec![pod("p", "Failed", None, None)]),
                ..row(
                    "failed before its deadline",
                    &plain,
                    &running_status,
                    timed_job(5, Some(30), failed.clone()),
                    34,
                )
            },
            Row {
                written: Some((Pending, reason::QUEUED)),
                ..row(
                    "suspended by a queue: no deadline",
                    &plain,
                    &none,
                    {
                        let Child::Owned(mut job) = timed_job(5, Some(30), JobStatus::default())
                        else {
                            unreachable!()
                        };
                        job.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
                            suspend: Some(true),
                            ..Default::default()
                        });
                        Child::Owned(job)
                    },
                    100,
                )
            },
            Row {
                written: Some((Running, reason::RETRYING)),
                ..row(
                    "an attempt failed, retries left",
                    &plain,
                    &running_status,
                    job(JobStatus {
                        active: Some(1),
                        failed: Some(1),
                        start_time: Some(time(10)),
                        ..JobStatus::default()
                    }),
                    30,
                )
            },
            Row {
                written: Some((Completed, reason::COMPLETED)),
                pods: Some(vec![pod("p", "Succeeded", None, Some(good))]),
                ..row(
                    "completed with a report",
                    &plain,
                    &running_status,
                    job(complete.clone()),
                    30,
                )
            },
            Row {
                written: Some((Completed, reason::COMPLETED)),
                pods: Some(vec![pod("p", "Succeeded", None, Some("{bad"))]),
                ..row(
                    "completed with a bad report",
                    &plain,
                    &running_status,
                    job(complete.clone()),
                    30,
                )
            },
            Row {
                written: Some((Completed, reason::COMPLETED)),
                ttl: Some(60),
                retry: Retry::After(Duration::from_secs(60)),
                ..row(
                    "completed, TTL starts",
                    &plain,
                    &running_status,
                    job(complete.clone()),
                    30,
                )
            },
            Row {
                written: Some((Failed, reason::JOB_FAILED)),
                ttl: Some(60),
                retry: Retry::After(Duration::from_secs(60)),
                pods: Some(vec![pod("p", "Failed", None, None)]),
                ..row(
                    "failed, TTL starts",
                    &plain,
                    &running_status,
                    timed_job(5, Some(30), failed.clone()),
                    34,
                )
            },
            Row {
                ttl: Some(60),
                retry: Retry::After(Duration::from_millis(50_100)),
                ..row(
                    "finished, TTL ahead",
                    &plain,
                    &finished,
                    job(complete.clone()),
                    30,
                )
            },
            Row {
                ttl: Some(5),
                delete: true,
                ..row(
                    "finished, TTL passed",
                    &plain,
                    &finished,
                    job(complete.clone()),
                    30,
                )
            },
        ];
        for row in rows {
            let snapshot = Snapshot {
                status: row.status.clone(),
                job: row.job,
                start: Start::NotChecked,
                pods: row.pods,
                ttl: row.ttl.map(Duration::from_secs),
            };
            let plan = decide(&row.task, &snapshot, &time(row.now));
            let written = plan.status.as_ref().map(|s| {
                (
                    s.phase.expect("a phase"),
                    reason_static(status::condition_reason(s).unwrap_or_default()),
                )
            });
            assert_eq!(written, row.written, "{}: written", row.name);
            assert_eq!(plan.stop, row.stop, "{}: stop", row.name);
            assert_eq!(plan.delete, row.delete, "{}: delete", row.name);
            assert_eq!(plan.retry, row.retry, "{}: retry", row.name);
            assert!(!plan.create, "{}", row.name);
            let next = plan.status.unwrap_or_default();
            match row.name {
                "completed with a report" => {
                    assert_eq!(
                        next.result.as_ref().map(|r| r.summary.as_str()),
                        Some("done")
                    );
                    assert_eq!(next.usage.and_then(|u| u.cost).as_deref(), Some("0.10"));
                    assert_eq!(next.attempts.len(), 1);
                    assert!(plan.report_warning.is_none());
                }
                "completed with a bad report" => {
                    assert!(next.result.is_none());
                    let warning = plan.report_warning.expect("a warning Event");
                    assert_eq!(warning.reason, reason::INVALID_RESULT);
                    assert!(
                        next.conditions
                            .iter()
                            .any(|c| c.type_ == status::REPORT_CONDITION)
                    );
                }
                "cancelled while running" | "cancelled before a Job" => {
                    let message = &next.conditions[0].message;
                    assert!(message.contains("wrong repo"), "{message}");
                }
                _ => {}
            }
        }
        // A Task that fails before it has a Job waits for its TTL too.
        let invalid = Snapshot {
            status: none.clone(),
            job: Child::Absent,
            start: Start::Failed {
                attempts: 1,
                failure: permanent(Class::Fatal, reason::INVALID_SPEC),
            },
            pods: None,
            ttl: Some(Duration::from_secs(60)),
        };
        let plan = decide(&plain, &invalid, &time(30));
        assert_eq!(plan.retry, Retry::After(Duration::from_secs(60)));
        assert_eq!(plan.status.and_then(|s| s.phase), Some(Failed));
    }
}
