//! The Task resource: what an agent should do, and how far it got.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::Context;

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
    validation = Rule::new("self == oldSelf").message("Task spec is immutable: delete the Task and create a new one"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// Files the agent finds in its filesystem (usually under `/workspace`).
    #[schemars(length(max = 64))]
    pub contexts: Vec<Context>,
    /// Name of the Agent (in the Task's namespace) that runs this Task. Default: `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<String>,
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
}

/// A plugin that took part in rendering a Job.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct PluginRef {
    /// The plugin's name (`builtin-default`, or its ConfigMap's name).
    pub name: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
}
