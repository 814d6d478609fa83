//! The CronTask resource: Tasks created on a cron schedule, with CronJob's semantics.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::TaskSpec;
use crate::syntax::{
    LABEL_KEYS_MESSAGE, LABEL_KEYS_RULE, LABEL_VALUE_PATTERN, MAX_LABEL_VALUE, MAX_LABELS,
};

/// A 5-field cron expression or one of the `@` nicknames (checked in full by the controller,
/// which names the field when it cannot parse one).
pub const SCHEDULE_PATTERN: &str = r"^ *(@[a-zA-Z]+|[^ ]+( +[^ ]+){4}) *$";
/// An IANA time-zone name (`Europe/Berlin`, `UTC`, `America/Argentina/Buenos_Aires`).
pub const TIME_ZONE_PATTERN: &str = r"^[A-Za-z][-+_A-Za-z0-9]*(/[-+_A-Za-z0-9]+)*$";
/// Finished Tasks kept by default: successful, failed (CronJob's defaults).
pub const DEFAULT_SUCCESSFUL_HISTORY: i32 = 3;
/// See [`DEFAULT_SUCCESSFUL_HISTORY`].
pub const DEFAULT_FAILED_HISTORY: i32 = 1;

/// Runs a Task from a template on a cron schedule.
#[derive(CustomResource, Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kubetask.io",
    version = "v1alpha1",
    kind = "CronTask",
    namespaced,
    derive = "PartialEq",
    status = "CronTaskStatus",
    shortname = "ctk",
    category = "kubetask",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Timezone","type":"string","priority":1,"jsonPath":".spec.timeZone"}"#,
    printcolumn = r#"{"name":"Suspend","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Active","type":"string","description":"The oldest unfinished run (a column shows one value; status.active lists them all)","jsonPath":".status.active[0].name"}"#,
    printcolumn = r#"{"name":"Last Schedule","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "A CronTask: creates a Task from its template on a cron schedule.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[x_kube(crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde"))]
#[serde(rename_all = "camelCase")]
pub struct CronTaskSpec {
    /// When to run: 5 fields (minute hour day-of-month month day-of-week, as cron reads them)
    /// or `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`).
    #[schemars(regex(pattern = SCHEDULE_PATTERN), length(max = 256))]
    pub schedule: String,
    /// The IANA time zone the schedule is read in. Default: `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TIME_ZONE_PATTERN), length(max = 64))]
    pub time_zone: Option<String>,
    /// The Tasks it creates.
    pub task_template: TaskTemplate,
    /// What a run does while an earlier run's Task is unfinished. Default: `Allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// A run missed by more than this many seconds (the controller was down, the CronTask
    /// suspended) is skipped, not run late. Default: a missed run starts as soon as it can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// No new runs while true (running Tasks go on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Completed Tasks kept; older ones are deleted. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub successful_tasks_history_limit: Option<i32>,
    /// Failed Tasks kept; older ones are deleted. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub failed_tasks_history_limit: Option<i32>,
}

impl CronTaskSpec {
    /// `spec.suspend`, false when unset.
    pub fn suspended(&self) -> bool {
        self.suspend == Some(true)
    }

    /// `spec.concurrencyPolicy` with its default.
    pub fn concurrency(&self) -> ConcurrencyPolicy {
        self.concurrency_policy.unwrap_or_default()
    }

    /// Completed Tasks kept.
    pub fn successful_history(&self) -> usize {
        history_limit(
            self.successful_tasks_history_limit,
            DEFAULT_SUCCESSFUL_HISTORY,
        )
    }

    /// Failed Tasks kept.
    pub fn failed_history(&self) -> usize {
        history_limit(self.failed_tasks_history_limit, DEFAULT_FAILED_HISTORY)
    }
}

fn history_limit(limit: Option<i32>, default: i32) -> usize {
    usize::try_from(limit.unwrap_or(default)).unwrap_or(0)
}

/// `spec.concurrencyPolicy`.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    #[default]
    Allow,
    /// A run is skipped while an earlier one is unfinished.
    Forbid,
    /// The unfinished run is cancelled (its logs kept) and the new one starts.
    Replace,
}

/// The Tasks a CronTask creates: their labels and annotations, and their spec (validated as a
/// Task's, but editable: the template is not a Task).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct TaskTemplate {
    #[serde(default)]
    pub metadata: TemplateMetadata,
    #[schemars(transform = editable)]
    pub spec: TaskSpec,
}

/// Drops the Task's update rules (`oldSelf`: a Task's spec is immutable) from the template's
/// schema, where they would make the template immutable; its other rules still apply.
fn editable(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(serde_json::Value::Array(rules)) = object.get_mut("x-kubernetes-validations") else {
        return;
    };
    rules.retain(|rule| {
        !rule
            .get("rule")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|text| text.contains("oldSelf"))
    });
    if rules.is_empty() {
        object.remove("x-kubernetes-validations");
    }
}

/// Labels and annotations of the Tasks a CronTask creates.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[x_kube(crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde"))]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = MAX_LABELS, "additionalProperties" = {"type": "string", "pattern": LABEL_VALUE_PATTERN, "maxLength": MAX_LABEL_VALUE}))]
    #[x_kube(validation = Rule::new(LABEL_KEYS_RULE).message(LABEL_KEYS_MESSAGE))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 65536}))]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state of a CronTask, written by the controller.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CronTaskStatus {
    /// Its unfinished Tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<TaskReference>,
    /// The scheduled time of the latest run created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the latest run to complete completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The scheduled time of the latest run skipped (see the `Scheduled` condition's reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skipped_time: Option<Time>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (can it schedule: `Scheduling`, `Suspended`, `InvalidSchedule`, ...) and
    /// `Scheduled` (the latest tick: `RunCreated`, `ConcurrencyForbidden`,
    /// `MissedStartingDeadline`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A Task a CronTask created.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct TaskReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// How KubeTask marks the Tasks a CronTask creates.
pub mod cron_labels {
    /// Label on each Task a CronTask created: the CronTask's name (shortened with a hash past
    /// 63 characters, like [`crate::naming::job_name`]).
    pub const CRON_TASK: &str = "kubetask.io/cron-task";
    /// Annotation on a scheduled run: the time it was scheduled for (RFC 3339, UTC).
    pub const SCHEDULED_TIME: &str = "kubetask.io/scheduled-time";
    /// Annotation on a run created by `kubetask trigger cron`: `manual`.
    pub const TRIGGER: &str = "kubetask.io/trigger";
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_core::CustomResourceExt;

    #[test]
    fn the_template_keeps_the_task_rules_but_not_its_immutability() {
        let crd = serde_json::to_value(CronTask::crd()).expect("CRD");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["taskTemplate"]["properties"]["spec"];
        assert!(spec["properties"]["contexts"].is_object(), "{spec}");
        let text = spec.to_string();
        assert!(!text.contains("oldSelf"), "{text}");
        // A context's own rules (for example a file's source) are kept.
        assert!(
            spec["properties"]["contexts"]["items"]
                .to_string()
                .contains("x-kubernetes-validations")
        );
    }

    #[test]
    fn defaults_are_cron_jobs() {
        let spec = CronTaskSpec::default();
        assert_eq!(spec.concurrency(), ConcurrencyPolicy::Allow);
        assert_eq!((spec.successful_history(), spec.failed_history()), (3, 1));
        assert!(!spec.suspended());
        let spec = CronTaskSpec {
            successful_tasks_history_limit: Some(-1),
            ..CronTaskSpec::default()
        };
        assert_eq!(spec.successful_history(), 0);
    }
}
