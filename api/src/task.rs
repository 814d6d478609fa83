//! The Task resource: what an agent should do, and how far it got.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::Context;
use crate::budget::Limits;
use crate::egress::Egress;
use crate::lifecycle::{Attempt, Cancel, DURATION_PATTERN, MAX_RETRIES, TaskResult, Usage};
use crate::syntax::{MAX_SUBDOMAIN, SUBDOMAIN_PATTERN};
use crate::workspace::{Workspace, WorkspaceStatus};

/// Every `spec` field but `cancel` keeps its value (and its presence) on update.
const IMMUTABLE_BUT_CANCEL: &str = "self.contexts == oldSelf.contexts \
    && has(self.agentRef) == has(oldSelf.agentRef) && (!has(self.agentRef) || self.agentRef == oldSelf.agentRef) \
    && has(self.timeout) == has(oldSelf.timeout) && (!has(self.timeout) || self.timeout == oldSelf.timeout) \
    && has(self.retries) == has(oldSelf.retries) && (!has(self.retries) || self.retries == oldSelf.retries) \
    && has(self.ttlSecondsAfterFinished) == has(oldSelf.ttlSecondsAfterFinished) \
    && (!has(self.ttlSecondsAfterFinished) || self.ttlSecondsAfterFinished == oldSelf.ttlSecondsAfterFinished) \
    && has(self.egress) == has(oldSelf.egress) && (!has(self.egress) || self.egress == oldSelf.egress) \
    && has(self.workspace) == has(oldSelf.workspace) && (!has(self.workspace) || self.workspace == oldSelf.workspace) \
    && has(self.budget) == has(oldSelf.budget) && (!has(self.budget) || self.budget == oldSelf.budget)";

/// One run of an agent: the context files it gets and the Agent that runs it.
#[derive(CustomResource, Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "kubetask.io",
    version = "v1alpha1",
    kind = "Task",
    namespaced,
    derive = "PartialEq",
    status = "TaskStatus",
    shortname = "tk",
    category = "kubetask",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agentRef"}"#,
    printcolumn = r#"{"name":"Job","type":"string","jsonPath":".status.jobName"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Succeeded\")].reason"}"#,
    printcolumn = r#"{"name":"Summary","type":"string","priority":1,"jsonPath":".status.result.summary"}"#,
    printcolumn = r#"{"name":"Pull Request","type":"string","priority":1,"jsonPath":".status.result.pullRequest.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "A Task: the context files an AI agent gets, and the Agent that runs it as a Job.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[x_kube(
    validation = Rule::new(IMMUTABLE_BUT_CANCEL).message("Task spec is immutable (except adding spec.cancel): delete the Task and create a new one"),
    validation = Rule::new("!has(oldSelf.cancel) || (has(self.cancel) && self.cancel == oldSelf.cancel)").message("spec.cancel cannot be changed or removed once set"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Files the agent finds in its filesystem (usually under `/workspace`).
    #[schemars(length(max = 64))]
    pub contexts: Vec<Context>,
    /// Name of the Agent (in the Task's namespace) that runs this Task. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub agent_ref: Option<String>,
    /// Longest the Task may run, counted from the creation of its Job (`90s`, `30m`, `2h`,
    /// `1h30m`); it then ends `Failed/Timeout`, its agent stopped and its logs kept. Default:
    /// the Agent's `defaultTimeout`; capped by the controller's `--max-task-timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    pub timeout: Option<String>,
    /// Set to stop the Task: a pending Task never gets a Job, a running agent gets SIGTERM and
    /// its grace period, and the Task ends `Failed/Cancelled` with its logs kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<Cancel>,
    /// How many times a failed attempt runs again (0–10). Default: the Agent's `retries`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_RETRIES))]
    pub retries: Option<i32>,
    /// Delete the Task (and its Job and ConfigMaps) this long after it finished. Default: the
    /// Agent's, else the controller's `--default-ttl-seconds-after-finished`, else never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Where the agent may connect; may only narrow its Agent's `spec.egress`
    /// (docs/security.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// The repository the agent works in, cloned at a ref, with a setup command run in the
    /// checkout before the agent (docs/workspaces.md). Default: the Agent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// The most the agent's model calls may spend, metered by the model gateway: past it the
    /// gateway refuses the next call and the Task ends `Failed/BudgetExceeded` with its logs
    /// kept (docs/budgets.md). Default: the Agent's `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Limits>,
}

/// Where a Task is in its life.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskPhase {
    /// Accepted; the Job is not running yet (or the Task waits for something it needs).
    Pending,
    /// The agent pod runs.
    Running,
    /// The Job succeeded.
    Completed,
    /// The Job failed, or the Task cannot run.
    Failed,
}

impl TaskPhase {
    /// Every phase, in the order a Task goes through them.
    pub const ALL: [TaskPhase; 4] = [Self::Pending, Self::Running, Self::Completed, Self::Failed];

    /// The phase's name, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }
}

/// Observed state of a Task, written by the controller.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// Execution phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    /// Name of the Job running this Task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When the Job started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Detailed state (`Ready`, `Succeeded`, ...), with reasons such as `AgentNotFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The plugins that rendered the Job, in order, with the sha256 of each component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rendered_by: Vec<PluginRef>,
    /// Each run of the agent pod, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// What the agent reported in its termination message (docs/agent-image.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// What the agent reported it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The workspace as checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceStatus>,
}

/// A plugin that took part in rendering a Job.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct PluginRef {
    /// The plugin's name (`builtin-default`, or its ConfigMap's name).
    pub name: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_their_serialized_form() {
        for phase in TaskPhase::ALL {
            assert_eq!(
                serde_json::to_value(phase).ok(),
                Some(serde_json::Value::from(phase.as_str()))
            );
        }
    }
}
