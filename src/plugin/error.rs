//! What can go wrong when loading or calling a plugin.

use std::time::Duration;

use thiserror::Error;

/// A plugin failure. Every variant names the plugin and its digest (the first 12 hex digits).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The bytes are not a valid WebAssembly component.
    #[error("plugin {name} ({digest}) is not a valid WebAssembly component: {message}")]
    Compile {
        name: String,
        digest: String,
        message: String,
    },
    /// The component imports or exports something outside the `kubetask:plugin` world.
    #[error(
        "plugin {name} ({digest}) does not fit the kubetask:plugin@0.1.0 world: {message}. \
         Plugins may import only kubetask:plugin/host (no WASI) and must export `render`"
    )]
    WrongWorld {
        name: String,
        digest: String,
        message: String,
    },
    /// The plugin could not be instantiated (for example, too many plugin calls at once).
    #[error("plugin {name} ({digest}) could not be instantiated: {message}")]
    Instantiate {
        name: String,
        digest: String,
        message: String,
    },
    /// The plugin trapped (a panic, an unreachable, ...).
    #[error("plugin {name} ({digest}) crashed: {message}")]
    Trap {
        name: String,
        digest: String,
        message: String,
    },
    /// The plugin ran past its deadline.
    #[error("plugin {name} ({digest}) ran longer than its deadline of {deadline:?}")]
    Timeout {
        name: String,
        digest: String,
        deadline: Duration,
    },
    /// The plugin asked for more memory than allowed.
    #[error("plugin {name} ({digest}) exceeded its memory limit of {limit_bytes} bytes")]
    Memory {
        name: String,
        digest: String,
        limit_bytes: usize,
    },
    /// The plugin returned something that is not a usable draft.
    #[error("plugin {name} ({digest}) returned invalid output: {message}")]
    InvalidOutput {
        name: String,
        digest: String,
        message: String,
    },
    /// The plugin rejected the Task or Agent: the user must fix `field` of `object`.
    #[error("{object}: {field}: {message}")]
    InvalidInput {
        name: String,
        object: String,
        field: String,
        message: String,
    },
    /// A policy plugin denied the Task.
    #[error("denied by plugin {name} ({digest}): {reason}")]
    Denied {
        name: String,
        digest: String,
        reason: String,
    },
    /// The plugin reported an internal error of its own.
    #[error("plugin {name} ({digest}) failed: {message}")]
    Internal {
        name: String,
        digest: String,
        message: String,
    },
}
