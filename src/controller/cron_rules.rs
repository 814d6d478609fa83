//! What to do about a CronTask at a given time, from its spec, its status and its runs: a pure
//! function (the executor in `controller::cron_executor` carries it out), with CronJob's rules.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kubetask_api::{ConcurrencyPolicy, CronTask, CronTaskStatus, Task, TaskPhase, TaskReference};

use crate::cron::{Invalid, Schedule, check_name, scheduled_name};

/// One Task a CronTask created, as its decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub name: String,
    pub uid: String,
    pub created: Timestamp,
    pub state: RunState,
    /// When a completed run completed.
    pub completed_at: Option<Timestamp>,
    /// It has `spec.cancel` (a `Replace` already stopped it).
    pub cancelled: bool,
    /// It is being deleted.
    pub deleting: bool,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Active,
    Succeeded,
    Failed,
}

impl Run {
    /// A run as its Task shows it.
    pub fn of(task: &Task) -> Self {
        let phase = task.status.as_ref().and_then(|status| status.phase);
        let state = match phase {
            Some(TaskPhase::Completed) => RunState::Succeeded,
            Some(TaskPhase::Failed) => RunState::Failed,
            _ => RunState::Active,
        };
        Self {
            name: task.metadata.name.clone().unwrap_or_default(),
            uid: task.metadata.uid.clone().unwrap_or_default(),
            created: task
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |time| time.0),
            state,
            completed_at: task
                .status
                .as_ref()
                .and_then(|status| status.completion_time.as_ref())
                .map(|time| time.0),
            cancelled: task.spec.cancel.is_some(),
            deleting: task.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// A run to create: the Task named `name`, for the tick `scheduled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    pub scheduled: Timestamp,
}

/// An Event to publish on the CronTask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// The run to create, if a tick is due.
    pub create: Option<Planned>,
    /// Unfinished runs to cancel (`Replace`), with the lifecycle's cancel.
    pub cancel: Vec<String>,
    /// Finished runs past the history limits, oldest first.
    pub delete: Vec<String>,
    /// The status to write (if it differs from the current one).
    pub status: CronTaskStatus,
    pub notes: Vec<Note>,
    /// When to look again (the next tick), on the decision's clock; `None`: only when
    /// something changes.
    pub wake_at: Option<Timestamp>,
}

/// Condition type: whether the CronTask can schedule.
pub const READY: &str = "Ready";
/// Condition type: what happened at the latest tick.
pub const SCHEDULED: &str = "Scheduled";

/// Decides about `cron_task` at `now`, given all its runs.
pub fn decide(cron_task: &CronTask, runs: &[Run], now: Timestamp) -> Decision {
    let spec = &cron_task.spec;
    let previous = cron_task.status.clone().unwrap_or_default();
    let generation = cron_task.metadata.generation;
    let mut decision = Decision::default();
    let mut status = CronTaskStatus {
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        ..previous.clone()
    };

    let mut active: Vec<&Run> = runs
        .iter()
        .filter(|run| run.state == RunState::Active)
        .collect();
    active.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    status.active = active
        .iter()
        .map(|run| TaskReference {
            name: run.name.clone(),
            uid: run.uid.clone(),
        })
        .collect();
    let latest_success = runs
        .iter()
        .filter(|run| run.state == RunState::Succeeded)
        .filter_map(|run| run.completed_at)
        .max();
    status.last_successful_time = [
        previous.last_successful_time.as_ref().map(|time| time.0),
        latest_success,
    ]
    .into_iter()
    .flatten()
    .max()
    .map(Time);
    decision.delete = past_history(runs, RunState::Succeeded, spec.successful_history());
    decision
        .delete
        .extend(past_history(runs, RunState::Failed, spec.failed_history()));

    let mut set = |type_: &'static str, ready: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            Condition {
                type_: type_.to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                reason: reason.to_owned(),
                message,
                last_transition_time: Time(now),
                observed_generation: generation,
            },
        );
    };

    let cron_name = cron_task.metadata.name.clone().unwrap_or_default();
    let schedule = match Schedule::of(spec)
        .and_then(|schedule| check_name(&scheduled_name(&cron_name, now)).map(|()| schedule))
    {
        Ok(schedule) => schedule,
        Err(Invalid {
            reason,
            field,
            message,
        }) => {
            set(READY, false, reason, format!("{field}: {message}"));
            decision.status = status;
            return decision;
        }
    };
    if spec.suspended() {
        set(
            READY,
            false,
            "Suspended",
            "spec.suspend is true: no new runs until it is false".to_owned(),
        );
        decision.status = status;
        return decision;
    }
    decision.wake_at = schedule.next_after(now);
    let next = decision
        .wake_at
        .map_or_else(|| "none".to_owned(), |at| at.to_string());
    set(READY, true, "Scheduling", format!("next run at {next}"));

    // The latest tick since the last one acted on (run or skipped), or since creation: runs
    // missed while the controller was down or the CronTask suspended count once.
    let acted_on = [
        previous.last_schedule_time.as_ref().map(|time| time.0),
        previous.last_skipped_time.as_ref().map(|time| time.0),
        cron_task
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|time| time.0),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(Timestamp::UNIX_EPOCH);
    let Some(tick) = schedule
        .latest_at_or_before(now)
        .filter(|tick| *tick > acted_on)
    else {
        decision.status = status;
        return decision;
    };
    let name = scheduled_name(&cron_name, tick);
    let late = now.duration_since(tick);
    let deadline = spec
        .starting_deadline_seconds
        .map(SignedDuration::from_secs);
    let skip = if deadline.is_some_and(|deadline| late > deadline) {
        Some((
            "MissedStartingDeadline",
            format!(
                "the run of {tick} was missed by {}s, more than spec.startingDeadlineSeconds ({}s): skipped",
                late.as_secs(),
                spec.starting_deadline_seconds.unwrap_or_default()
            ),
        ))
    } else if spec.concurrency() == ConcurrencyPolicy::Forbid
        && !active.is_empty()
        && !active.iter().any(|run| run.name == name)
    {
        Some((
            "ConcurrencyForbidden",
            format!(
                "the run of {tick} was skipped: {} is unfinished and spec.concurrencyPolicy is Forbid",
                active
                    .iter()
                    .map(|run| run.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    } else {
        None
    };
    if let Some((reason, message)) = skip {
        status.last_skipped_time = Some(Time(tick));
        set(SCHEDULED, false, reason, message.clone());
        decision.notes.push(Note {
            warning: true,
            reason: "RunSkipped",
            message,
        });
        decision.status = status;
        return decision;
    }
    if !runs.iter().any(|run| run.name == name) {
        if spec.concurrency() == ConcurrencyPolicy::Replace {
            decision.cancel = active
                .iter()
                .filter(|run| !run.cancelled)
                .map(|run| run.name.clone())
                .collect();
            for cancelled in &decision.cancel {
                decision.notes.push(Note {
                    warning: false,
                    reason: "RunReplaced",
                    message: format!("cancelled {cancelled}: replaced by the run of {tick}"),
                });
            }
        }
        decision.create = Some(Planned {
            name: name.clone(),
            scheduled: tick,
        });
        status.active.push(TaskReference {
            name: name.clone(),
            uid: String::new(),
        });
        decision.notes.push(Note {
            warning: false,
            reason: "RunCreated",
            message: format!("created Task {name} for {tick}"),
        });
    }
    status.last_schedule_time = Some(Time(tick));
    set(
        SCHEDULED,
        true,
        "RunCreated",
        format!("Task {name} runs for {tick}"),
    );
    decision.status = status;
    decision
}

/// The finished runs in `state` beyond the newest `keep`, oldest first (runs already being
/// deleted are neither counted nor deleted again).
fn past_history(runs: &[Run], state: RunState, keep: usize) -> Vec<String> {
    let mut finished: Vec<&Run> = runs
        .iter()
        .filter(|run| run.state == state && !run.deleting)
        .collect();
    finished.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let excess = finished.len().saturating_sub(keep);
    finished[..excess]
        .iter()
        .map(|run| run.name.clone())
        .collect()
}

/// Sets a condition, keeping its transition time when its status does not change.
fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        if existing.status == condition.status {
            condition.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = condition;
    } else {
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests;
