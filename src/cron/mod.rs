//! CronTask schedules: when a schedule's runs fall ([`Schedule`]) and the Task each run creates
//! ([`task_for_run`]). Shared by the controller (whose rules for a CronTask are
//! `controller::cron_rules`), `kubetask trigger cron` and `kubetask render`.

pub mod clock;

use std::collections::BTreeMap;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kubetask_api::{API_VERSION, CronTask, CronTaskSpec, Task, cron_labels, naming};

pub use clock::Clock;

/// Longest name a Task may have (a DNS subdomain).
const MAX_TASK_NAME: usize = 253;

/// Why a CronTask cannot schedule: the field to fix and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The condition reason (`InvalidSchedule`, `InvalidTimeZone`, `NameTooLong`).
    pub reason: &'static str,
    /// The field, as `kubectl explain` names it.
    pub field: &'static str,
    pub message: String,
}

/// A parsed `spec.schedule` read in `spec.timeZone`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// Parses the schedule and time zone of `spec`.
    pub fn of(spec: &CronTaskSpec) -> Result<Self, Invalid> {
        let zone_name = spec.time_zone.as_deref().unwrap_or("UTC");
        let zone = TimeZone::get(zone_name).map_err(|_| Invalid {
            reason: "InvalidTimeZone",
            field: "spec.timeZone",
            message: format!(
                "{zone_name:?} is not a time zone of the IANA database (for example \"Europe/Berlin\", \"UTC\")"
            ),
        })?;
        let cron = parse(&spec.schedule).map_err(|message| Invalid {
            reason: "InvalidSchedule",
            field: "spec.schedule",
            message,
        })?;
        let schedule = Self { cron, zone };
        // A pattern no date matches (`0 0 31 2 *`) is refused like a malformed one.
        if schedule.next_after(Timestamp::UNIX_EPOCH).is_none() {
            return Err(Invalid {
                reason: "InvalidSchedule",
                field: "spec.schedule",
                message: format!("{:?} matches no date", spec.schedule),
            });
        }
        Ok(schedule)
    }

    /// The latest scheduled time at or before `now`.
    pub fn latest_at_or_before(&self, now: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&now.to_zoned(self.zone.clone()), true)
            .ok()
            .map(|zoned| zoned.timestamp())
    }

    /// The first scheduled time after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&after.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|zoned| zoned.timestamp())
    }
}

/// Parses a 5-field expression or an `@` nickname, with the field named in the message.
fn parse(schedule: &str) -> Result<Cron, String> {
    let text = schedule.trim();
    if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
        return Err(format!(
            "{schedule:?}: a time zone in the schedule is not supported; set spec.timeZone"
        ));
    }
    let text = if text.eq_ignore_ascii_case("@midnight") {
        "@daily"
    } else {
        text
    };
    if text.starts_with('@') && CronParser::new().parse(text).is_err() {
        return Err(format!(
            "{schedule:?}: unknown nickname; use @yearly, @monthly, @weekly, @daily or @hourly"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(text)
        .map_err(|error| {
            format!("{schedule:?} is not a cron expression (minute hour day-of-month month day-of-week): {error}")
        })
}

/// The name of the run scheduled for `at`: `<cron task>-<minutes since the epoch>`, as CronJob
/// names its Jobs, so that a restart or a second replica never creates a run twice.
pub fn scheduled_name(cron_task: &str, at: Timestamp) -> String {
    format!("{cron_task}-{}", at.as_second().div_euclid(60))
}

/// The name of a run triggered by hand at `now`: `<cron task>-manual-<seconds since the epoch>`.
pub fn manual_name(cron_task: &str, now: Timestamp) -> String {
    format!("{cron_task}-manual-{}", now.as_second())
}

/// Refuses a run name longer than a Task name may be.
pub fn check_name(name: &str) -> Result<(), Invalid> {
    if name.len() <= MAX_TASK_NAME {
        return Ok(());
    }
    Err(Invalid {
        reason: "NameTooLong",
        field: "metadata.name",
        message: format!(
            "the Tasks it creates would be named {name:?}, longer than {MAX_TASK_NAME} characters: use a shorter CronTask name"
        ),
    })
}

/// How a run came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// By the schedule, for this time.
    Scheduled(Timestamp),
    /// By hand (`kubetask trigger cron`).
    Manual,
}

/// The Task of one run: the template's labels, annotations and spec, named `name`, labelled
/// with its CronTask and owned by it (deleting the CronTask deletes its Tasks).
pub fn task_for_run(cron_task: &CronTask, name: String, trigger: Trigger) -> Task {
    let template = &cron_task.spec.task_template;
    let cron_name = cron_task.metadata.name.clone().unwrap_or_default();
    let mut labels = template.metadata.labels.clone();
    labels.insert(
        cron_labels::CRON_TASK.to_owned(),
        naming::job_name(&cron_name),
    );
    let mut annotations: BTreeMap<String, String> = template.metadata.annotations.clone();
    match trigger {
        Trigger::Scheduled(at) => {
            annotations.insert(cron_labels::SCHEDULED_TIME.to_owned(), at.to_string());
        }
        Trigger::Manual => {
            annotations.insert(cron_labels::TRIGGER.to_owned(), "manual".to_owned());
        }
    }
    Task {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cron_task.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(cron_task)]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The controller owner reference to `cron_task`.
fn owner_reference(cron_task: &CronTask) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.to_owned(),
        kind: "CronTask".to_owned(),
        name: cron_task.metadata.name.clone().unwrap_or_default(),
        uid: cron_task.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `task` is a run of the CronTask with this uid (its controller owner).
pub fn is_run_of(task: &Task, cron_task_uid: &str) -> bool {
    task.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| {
            owner.controller == Some(true)
                && owner.kind == "CronTask"
                && owner.api_version == API_VERSION
                && owner.uid == cron_task_uid
        })
}

/// The CronTask that owns `task`, if any: `(name, uid)`.
pub fn owner_of(task: &Task) -> Option<(&str, &str)> {
    task.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| {
            owner.controller == Some(true)
                && owner.kind == "CronTask"
                && owner.api_version == API_VERSION
        })
        .map(|owner| (owner.name.as_str(), owner.uid.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schedule: &str, zone: Option<&str>) -> CronTaskSpec {
        CronTaskSpec {
            schedule: schedule.to_owned(),
            time_zone: zone.map(str::to_owned),
            ..CronTaskSpec::default()
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn five_fields_and_nicknames_parse() {
        for ok in [
            "0 3 * * *",
            "*/15 * * * 1-5",
            "0 0 1 JAN *",
            "@hourly",
            "@daily",
            "@midnight",
            "@weekly",
            "@monthly",
            "@yearly",
            "@annually",
        ] {
            assert!(Schedule::of(&spec(ok, None)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn bad_schedules_and_zones_name_their_field() {
        for (bad, reason) in [
            ("0 3 * *", "InvalidSchedule"),
            ("0 0 3 * * *", "InvalidSchedule"),
            ("61 * * * *", "InvalidSchedule"),
            ("@every 5m", "InvalidSchedule"),
            ("TZ=Europe/Berlin 0 3 * * *", "InvalidSchedule"),
            ("0 0 31 2 *", "InvalidSchedule"),
        ] {
            let error = Schedule::of(&spec(bad, None)).expect_err(bad);
            assert_eq!(
                (error.reason, error.field),
                (reason, "spec.schedule"),
                "{bad}"
            );
            assert!(error.message.contains(bad), "{}", error.message);
        }
        let error = Schedule::of(&spec("0 3 * * *", Some("Mars/Olympus"))).expect_err("zone");
        assert_eq!(
            (error.reason, error.field),
            ("InvalidTimeZone", "spec.timeZone")
        );
        assert!(
            error
                .to_string()
                .starts_with("spec.timeZone: \"Mars/Olympus\"")
        );
    }

    #[test]
    fn times_are_read_in_the_time_zone() {
        let schedule = Schedule::of(&spec("0 3 * * *", Some("Europe/Berlin"))).expect("valid");
        // 03:00 in Berlin in winter is 02:00 UTC.
        assert_eq!(
            schedule.latest_at_or_before(at("2026-12-05T12:00:00Z")),
            Some(at("2026-12-05T02:00:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-12-05T02:00:00Z")),
            Some(at("2026-12-06T02:00:00Z"))
        );
        // At the very tick, the tick is the latest.
        assert_eq!(
            schedule.latest_at_or_before(at("2026-12-05T02:00:00Z")),
            Some(at("2026-12-05T02:00:00Z"))
        );
    }

    #[test]
    fn names_are_per_minute_and_bounded() {
        assert_eq!(
            scheduled_name("nightly", at("2026-12-05T02:00:00Z")),
            format!("nightly-{}", at("2026-12-05T02:00:00Z").as_second() / 60)
        );
        assert_eq!(
            manual_name("nightly", at("2026-12-05T02:00:07Z")),
            format!("nightly-manual-{}", at("2026-12-05T02:00:07Z").as_second())
        );
        assert!(check_name(&"a".repeat(253)).is_ok());
        assert_eq!(
            check_name(&"a".repeat(254)).map_err(|e| e.reason),
            Err("NameTooLong")
        );
    }

    #[test]
    fn a_run_is_the_template_owned_by_its_cron_task() {
        let cron: CronTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "CronTask",
            "metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"},
            "spec": {"schedule": "@daily", "taskTemplate": {
                "metadata": {"labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {"agentRef": "claude", "contexts": []}}},
        }))
        .expect("a CronTask");
        let when = at("2026-12-05T00:00:00Z");
        let task = task_for_run(
            &cron,
            scheduled_name("nightly", when),
            Trigger::Scheduled(when),
        );
        assert_eq!(task.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(task.spec.agent_ref.as_deref(), Some("claude"));
        let labels = task.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        assert_eq!(
            labels.get(cron_labels::CRON_TASK).map(String::as_str),
            Some("nightly")
        );
        let annotations = task.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get(cron_labels::SCHEDULED_TIME)
                .map(String::as_str),
            Some("2026-12-05T00:00:00Z")
        );
        assert!(is_run_of(&task, "u-1"));
        assert!(!is_run_of(&task, "u-2"));
        assert_eq!(owner_of(&task), Some(("nightly", "u-1")));
        let manual = task_for_run(&cron, manual_name("nightly", when), Trigger::Manual);
        assert_eq!(
            manual
                .metadata
                .annotations
                .unwrap_or_default()
                .get(cron_labels::TRIGGER)
                .map(String::as_str),
            Some("manual")
        );
    }
}
