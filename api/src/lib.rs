//! The `kubetask.io/v1alpha1` API: [`Task`] (what to do), [`Agent`] (how to do it) and
//! [`CronTask`] (Tasks on a schedule).
//!
//! These types are the single definition shared by the controller, the offline renderer and the
//! Rust plugins (including the built-in default plugin, which compiles them to WebAssembly).
#![forbid(unsafe_code)]

mod agent;
pub mod budget;
mod context;
mod cron_task;
pub mod egress;
pub mod json;
pub mod lifecycle;
pub mod names;
pub mod naming;
pub mod ownership;
pub mod syntax;
mod task;
pub mod task_trigger;
pub mod trigger_event;
pub mod workspace;

pub use agent::{Agent, AgentSpec, Credential, PodScheduling, SecretKeyRef, Toleration};
pub use budget::{
    Budget, BudgetSpec, BudgetStatus, Limits, OnExceed, Period, PeriodType, Reservation,
};
pub use context::{ConfigMapReference, Context, ContextType, FileContext, FileSource};
pub use cron_task::{
    ConcurrencyPolicy, CronTask, CronTaskSpec, CronTaskStatus, TaskReference, TaskTemplate,
    TemplateMetadata, cron_labels,
};
pub use egress::{Egress, EgressMode, EgressPolicy};
pub use lifecycle::{Attempt, Cancel, TaskResult, Usage};
pub use task::{PluginRef, Task, TaskPhase, TaskSpec, TaskStatus};
pub use task_trigger::{TaskTrigger, TaskTriggerSpec, TaskTriggerStatus};
pub use workspace::{Published, PullRequestRef, Workspace, WorkspaceStatus};

/// API group of the KubeTask resources.
pub const GROUP: &str = "kubetask.io";
/// API version of the KubeTask resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the KubeTask resources.
pub const API_VERSION: &str = "kubetask.io/v1alpha1";

/// Name of the Agent a Task uses when it sets no `spec.agentRef`.
pub const DEFAULT_AGENT_NAME: &str = "default";
/// Agent image used when no Agent sets `spec.agentImage` (overridable by a controller flag):
/// this project's Gemini CLI image (`agents/gemini`), of this release.
pub const DEFAULT_AGENT_IMAGE: &str =
    concat!("ghcr.io/kubetask/agent-gemini:v", env!("CARGO_PKG_VERSION"));

/// Most bytes a ConfigMap's data may hold (keys and values, as the API server counts them).
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

/// How cluster admins mark plugin ConfigMaps (in the controller's namespace only).
pub mod plugin_labels {
    /// Label that makes a ConfigMap a plugin (any value).
    pub const PLUGIN: &str = "kubetask.io/plugin";
    /// Annotation that makes a plugin a cluster policy, run for every Task; its value is the
    /// order (an integer; lower runs first).
    pub const POLICY_ORDER: &str = "kubetask.io/policy-order";
    /// Annotation pinning the component's sha256 (hex, optionally prefixed `sha256:`).
    pub const SHA256: &str = "kubetask.io/sha256";
    /// `binaryData` key of the raw component.
    pub const COMPONENT_KEY: &str = "plugin.wasm";
    /// `binaryData` key of the gzip-compressed component.
    pub const COMPONENT_GZIP_KEY: &str = "plugin.wasm.gz";
}

/// Labels KubeTask puts on every object it creates. They are applied after user labels, so a
/// user's `podLabels` cannot clobber them.
pub mod labels {
    /// `app.kubernetes.io/managed-by`, always [`MANAGED_BY_VALUE`].
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGED_BY_VALUE: &str = "kubetask";
    /// `kubetask.io/task`: the owning Task's name (its Job name when the Task name is too long
    /// for a label value; see [`crate::naming::job_name`]).
    pub const TASK: &str = "kubetask.io/task";
}
