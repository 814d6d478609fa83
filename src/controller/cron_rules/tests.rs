//! The table tests of [`super`]: each case a situation and the decision it must give.

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
