//! Why a Task could not be rendered.

use thiserror::Error;

use crate::plugin::PluginError;

/// Why a Task could not be rendered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A plugin failed or refused the Task.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The Task or Agent could not be encoded as JSON (never expected for parsed objects).
    #[error("cannot encode the {kind} for the plugins: {message}")]
    Encode { kind: &'static str, message: String },
    /// A lifecycle field (timeout) is invalid.
    #[error(transparent)]
    Lifecycle(#[from] super::lifecycle::InvalidLifecycle),
    /// `spec.egress` cannot be enforced, or asks for more than the Agent allows.
    #[error(transparent)]
    Egress(#[from] kubetask_api::egress::InvalidEgress),
}
