//! The `kubetask.io/v1alpha1` API: [`Task`] (what to do) and [`Agent`] (how to do it).
//!
//! These types are the single definition shared by the controller, the offline renderer and the
//! Rust plugins (including the built-in default plugin, which compiles them to WebAssembly).
#![forbid(unsafe_code)]

mod agent;
mod context;
pub mod json;
pub mod naming;
pub mod ownership;
mod task;

pub use agent::{Agent, AgentSpec, Credential, PodScheduling, SecretKeyRef};
pub use context::{ConfigMapReference, Context, ContextType, FileContext, FileSource};
pub use task::{Task, TaskPhase, TaskSpec, TaskStatus};

/// API group of the KubeTask resources.
pub const GROUP: &str = "kubetask.io";
/// API version of the KubeTask resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the KubeTask resources.
pub const API_VERSION: &str = "kubetask.io/v1alpha1";

/// Name of the Agent a Task uses when it sets no `spec.agentRef`.
pub const DEFAULT_AGENT_NAME: &str = "default";
/// Agent image used when no Agent sets `spec.agentImage` (overridable by a controller flag).
pub const DEFAULT_AGENT_IMAGE: &str = "quay.io/zhaoxue/kubetask-agent-gemini:latest";

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
