//! What to do about a CronTask at a given time, from its spec, its status and its runs: a pure
//! function (the executor in `controller::cron` carries it out), with CronJob's rules.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kubetask_api::{ConcurrencyPolicy, CronTask, CronTaskStatus, Task, TaskPhase, TaskReference};

use super::{Invalid, Schedule, check_name, scheduled_name};

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
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    /// A CronTask created at midnight UTC on 2026-12-01, with `spec` merged over a daily-at-3
    /// schedule and `status` as its status.
    fn cron(spec: serde_json::Value, status: serde_json::Value) -> CronTask {
        let mut full = json!({"schedule": "0 3 * * *", "taskTemplate": {"spec": {"contexts": []}}});
        if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            full.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "CronTask",
            "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u", "generation": 1,
                "creationTimestamp": "2026-12-01T00:00:00Z"},
            "spec": full, "status": status,
        }))
        .expect("a CronTask")
    }

    fn run(name: &str, created: &str, state: RunState) -> Run {
        Run {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            created: at(created),
            state,
            completed_at: (state != RunState::Active)
                .then(|| at(created) + SignedDuration::from_mins(5)),
            cancelled: false,
            deleting: false,
        }
    }

    fn name_at(text: &str) -> String {
        scheduled_name("nightly", at(text))
    }

    fn reason(decision: &Decision, type_: &str) -> String {
        decision
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| c.reason.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_due_tick_creates_its_run_and_wakes_at_the_next() {
        let decision = decide(&cron(json!({}), json!({})), &[], at("2026-12-01T03:00:20Z"));
        assert_eq!(
            decision.create,
            Some(Planned {
                name: name_at("2026-12-01T03:00:00Z"),
                scheduled: at("2026-12-01T03:00:00Z")
            })
        );
        assert_eq!(
            decision.status.last_schedule_time,
            Some(Time(at("2026-12-01T03:00:00Z")))
        );
        assert_eq!(decision.status.active.len(), 1);
        assert_eq!(decision.wake_at, Some(at("2026-12-02T03:00:00Z")));
        assert_eq!(reason(&decision, READY), "Scheduling");
        assert_eq!(reason(&decision, SCHEDULED), "RunCreated");
    }

    #[test]
    fn before_the_first_tick_nothing_runs() {
        let decision = decide(&cron(json!({}), json!({})), &[], at("2026-12-01T02:59:59Z"));
        assert_eq!(decision.create, None);
        assert_eq!(decision.wake_at, Some(at("2026-12-01T03:00:00Z")));
    }

    #[test]
    fn a_tick_acted_on_is_not_run_again() {
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let runs = [run(
            &name_at("2026-12-01T03:00:00Z"),
            "2026-12-01T03:00:01Z",
            RunState::Active,
        )];
        let decision = decide(&cron(json!({}), status), &runs, at("2026-12-01T04:00:00Z"));
        assert_eq!(decision.create, None);
        // Nor one that was skipped.
        let status = json!({"lastSkippedTime": "2026-12-01T03:00:00Z"});
        let decision = decide(&cron(json!({}), status), &[], at("2026-12-01T04:00:00Z"));
        assert_eq!(decision.create, None);
    }

    #[test]
    fn a_run_created_before_a_crash_is_recorded_not_created_again() {
        let runs = [run(
            &name_at("2026-12-01T03:00:00Z"),
            "2026-12-01T03:00:01Z",
            RunState::Active,
        )];
        let decision = decide(
            &cron(json!({}), json!({})),
            &runs,
            at("2026-12-01T03:00:30Z"),
        );
        assert_eq!(decision.create, None);
        assert_eq!(
            decision.status.last_schedule_time,
            Some(Time(at("2026-12-01T03:00:00Z")))
        );
    }

    #[test]
    fn missed_ticks_after_an_outage_count_once() {
        // Down from before the tick of the 2nd to after the tick of the 5th: one run, for the
        // latest missed tick.
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let decision = decide(&cron(json!({}), status), &[], at("2026-12-05T10:00:00Z"));
        assert_eq!(
            decision.create.map(|p| p.scheduled),
            Some(at("2026-12-05T03:00:00Z"))
        );
    }

    #[test]
    fn past_the_starting_deadline_a_missed_tick_is_skipped() {
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let spec = json!({"startingDeadlineSeconds": 600});
        let decision = decide(
            &cron(spec.clone(), status.clone()),
            &[],
            at("2026-12-05T03:11:00Z"),
        );
        assert_eq!(decision.create, None);
        assert_eq!(reason(&decision, SCHEDULED), "MissedStartingDeadline");
        assert_eq!(
            decision.status.last_skipped_time,
            Some(Time(at("2026-12-05T03:00:00Z")))
        );
        assert!(
            decision
                .notes
                .iter()
                .any(|n| n.warning && n.reason == "RunSkipped")
        );
        // Within the deadline it runs late.
        let decision = decide(&cron(spec, status), &[], at("2026-12-05T03:09:00Z"));
        assert_eq!(
            decision.create.map(|p| p.scheduled),
            Some(at("2026-12-05T03:00:00Z"))
        );
    }

    #[test]
    fn forbid_skips_while_a_run_is_unfinished() {
        let spec = json!({"concurrencyPolicy": "Forbid"});
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let runs = [run(
            &name_at("2026-12-01T03:00:00Z"),
            "2026-12-01T03:00:01Z",
            RunState::Active,
        )];
        let decision = decide(
            &cron(spec.clone(), status.clone()),
            &runs,
            at("2026-12-02T03:00:05Z"),
        );
        assert_eq!(decision.create, None);
        assert_eq!(reason(&decision, SCHEDULED), "ConcurrencyForbidden");
        assert_eq!(
            decision.status.last_skipped_time,
            Some(Time(at("2026-12-02T03:00:00Z")))
        );
        // Once it finished, the next tick runs; the skipped one is not run late.
        let runs = [run(
            &name_at("2026-12-01T03:00:00Z"),
            "2026-12-01T03:00:01Z",
            RunState::Succeeded,
        )];
        let skipped = json!({"lastScheduleTime": "2026-12-01T03:00:00Z", "lastSkippedTime": "2026-12-02T03:00:00Z"});
        let decision = decide(
            &cron(spec.clone(), skipped.clone()),
            &runs,
            at("2026-12-02T09:00:00Z"),
        );
        assert_eq!(decision.create, None);
        let decision = decide(&cron(spec, skipped), &runs, at("2026-12-03T03:00:00Z"));
        assert_eq!(
            decision.create.map(|p| p.scheduled),
            Some(at("2026-12-03T03:00:00Z"))
        );
    }

    #[test]
    fn allow_overlaps() {
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let runs = [run(
            &name_at("2026-12-01T03:00:00Z"),
            "2026-12-01T03:00:01Z",
            RunState::Active,
        )];
        let decision = decide(&cron(json!({}), status), &runs, at("2026-12-02T03:00:05Z"));
        assert!(decision.create.is_some());
        assert!(decision.cancel.is_empty());
        assert_eq!(decision.status.active.len(), 2);
    }

    #[test]
    fn replace_cancels_the_unfinished_run_and_starts_the_new_one() {
        let spec = json!({"concurrencyPolicy": "Replace"});
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let mut already = run("nightly-manual-1", "2026-12-01T05:00:00Z", RunState::Active);
        already.cancelled = true;
        let runs = [
            run(
                &name_at("2026-12-01T03:00:00Z"),
                "2026-12-01T03:00:01Z",
                RunState::Active,
            ),
            already,
        ];
        let decision = decide(&cron(spec, status), &runs, at("2026-12-02T03:00:05Z"));
        assert_eq!(decision.cancel, vec![name_at("2026-12-01T03:00:00Z")]);
        assert!(decision.create.is_some());
        assert!(decision.notes.iter().any(|n| n.reason == "RunReplaced"));
    }

    #[test]
    fn history_limits_delete_the_oldest_finished_runs() {
        let runs = [
            run("s1", "2026-12-01T03:00:00Z", RunState::Succeeded),
            run("s2", "2026-12-02T03:00:00Z", RunState::Succeeded),
            run("s3", "2026-12-03T03:00:00Z", RunState::Succeeded),
            run("s4", "2026-12-04T03:00:00Z", RunState::Succeeded),
            run("f1", "2026-12-01T04:00:00Z", RunState::Failed),
            run("f2", "2026-12-02T04:00:00Z", RunState::Failed),
            run("a", "2026-12-04T05:00:00Z", RunState::Active),
        ];
        let status = json!({"lastScheduleTime": "2026-12-04T03:00:00Z"});
        let decision = decide(
            &cron(json!({}), status.clone()),
            &runs,
            at("2026-12-04T06:00:00Z"),
        );
        assert_eq!(decision.delete, ["s1", "f1"]);
        assert_eq!(
            decision.status.last_successful_time,
            Some(Time(at("2026-12-04T03:05:00Z")))
        );
        let limits = json!({"successfulTasksHistoryLimit": 1, "failedTasksHistoryLimit": 0});
        let decision = decide(
            &cron(limits, status.clone()),
            &runs,
            at("2026-12-04T06:00:00Z"),
        );
        assert_eq!(decision.delete, ["s1", "s2", "s3", "f1", "f2"]);
        // Runs already being deleted are neither counted nor deleted again.
        let mut deleting = runs.to_vec();
        deleting[0].deleting = true;
        let decision = decide(
            &cron(json!({}), status),
            &deleting,
            at("2026-12-04T06:00:00Z"),
        );
        assert_eq!(decision.delete, ["f1"]);
    }

    #[test]
    fn suspended_no_new_runs_then_the_latest_missed_one_unless_past_the_deadline() {
        let status = json!({"lastScheduleTime": "2026-12-01T03:00:00Z"});
        let decision = decide(
            &cron(json!({"suspend": true}), status.clone()),
            &[],
            at("2026-12-03T04:00:00Z"),
        );
        assert_eq!(decision.create, None);
        assert_eq!(decision.wake_at, None);
        assert_eq!(reason(&decision, READY), "Suspended");
        // Resumed: the latest tick missed while suspended runs late...
        let decision = decide(
            &cron(json!({"suspend": false}), status.clone()),
            &[],
            at("2026-12-03T04:00:00Z"),
        );
        assert_eq!(
            decision.create.map(|p| p.scheduled),
            Some(at("2026-12-03T03:00:00Z"))
        );
        // ... unless it is past the starting deadline.
        let spec = json!({"suspend": false, "startingDeadlineSeconds": 300});
        let decision = decide(&cron(spec, status), &[], at("2026-12-03T04:00:00Z"));
        assert_eq!(decision.create, None);
        assert_eq!(reason(&decision, SCHEDULED), "MissedStartingDeadline");
    }

    #[test]
    fn an_invalid_schedule_or_zone_is_a_condition_naming_the_field() {
        let decision = decide(
            &cron(json!({"schedule": "0 3 * *"}), json!({})),
            &[],
            at("2026-12-03T04:00:00Z"),
        );
        assert_eq!(decision.create, None);
        assert_eq!(decision.wake_at, None);
        assert_eq!(reason(&decision, READY), "InvalidSchedule");
        let message = &decision.status.conditions[0].message;
        assert!(message.starts_with("spec.schedule: "), "{message}");
        let decision = decide(
            &cron(json!({"timeZone": "Nowhere/Land"}), json!({})),
            &[],
            at("2026-12-03T04:00:00Z"),
        );
        assert_eq!(reason(&decision, READY), "InvalidTimeZone");
    }

    #[test]
    fn a_name_too_long_for_its_runs_is_a_condition() {
        let mut cron_task = cron(json!({}), json!({}));
        cron_task.metadata.name = Some("n".repeat(250));
        let decision = decide(&cron_task, &[], at("2026-12-03T04:00:00Z"));
        assert_eq!(decision.create, None);
        assert_eq!(reason(&decision, READY), "NameTooLong");
    }

    #[test]
    fn daylight_saving_changes_in_the_time_zone() {
        let cron = |spec: serde_json::Value, status: serde_json::Value| {
            let mut cron_task = cron(spec, status);
            cron_task.metadata.creation_timestamp = Some(Time(at("2026-01-01T00:00:00Z")));
            cron_task
        };
        // Berlin springs forward on 2026-03-29 at 02:00 (to 03:00): 02:30 does not exist that
        // day, and the run happens at the first instant after the gap (03:00 CEST, 01:00 UTC).
        let spec = json!({"schedule": "30 2 * * *", "timeZone": "Europe/Berlin"});
        let status = json!({"lastScheduleTime": "2026-03-28T01:30:00Z"});
        let decision = decide(&cron(spec.clone(), status), &[], at("2026-03-29T01:10:00Z"));
        assert_eq!(
            decision.create.map(|p| p.scheduled),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // It falls back on 2026-10-25 at 03:00 (to 02:00): 02:30 happens twice, the run once.
        let status = json!({"lastScheduleTime": "2026-10-25T00:30:00Z"});
        let decision = decide(&cron(spec.clone(), status), &[], at("2026-10-25T01:40:00Z"));
        assert_eq!(decision.create, None, "the second 02:30 is not a run");
        assert_eq!(decision.wake_at, Some(at("2026-10-26T01:30:00Z")));
        // In summer 03:00 CEST is 01:00 UTC; in winter 02:00 UTC.
        let daily = json!({"schedule": "0 3 * * *", "timeZone": "Europe/Berlin"});
        let status = json!({"lastScheduleTime": "2026-07-01T01:00:00Z"});
        let decision = decide(&cron(daily, status), &[], at("2026-07-02T01:00:00Z"));
        assert_eq!(
            decision.create.map(|p| p.scheduled),
            Some(at("2026-07-02T01:00:00Z"))
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_their_status_holds() {
        let first = decide(&cron(json!({}), json!({})), &[], at("2026-12-01T01:00:00Z"));
        let mut cron_task = cron(json!({}), json!({}));
        cron_task.status = Some(first.status.clone());
        let second = decide(&cron_task, &[], at("2026-12-01T02:00:00Z"));
        let ready = |d: &Decision| {
            d.status
                .conditions
                .iter()
                .find(|c| c.type_ == READY)
                .map(|c| c.last_transition_time.clone())
        };
        assert_eq!(ready(&first), ready(&second));
        assert_eq!(ready(&first), Some(Time(at("2026-12-01T01:00:00Z"))));
    }
}
