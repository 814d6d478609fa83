//! Why a stage produced no draft (the WIT `render-error` variant).

use std::fmt;

/// Why a stage produced no draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A field of the Task or Agent is not acceptable; the user must fix it. Terminal.
    Invalid {
        /// The object holding the field, as `Kind/name`, e.g. `Task/fix-bug`.
        object: String,
        /// Path of the field, e.g. `spec.contexts[2].file.filePath`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A policy refuses the Task; the text is the reason the user sees. Terminal.
    Denied(String),
    /// The plugin failed for a reason that is not the user's (a bug in the plugin).
    Internal(String),
}

impl Error {
    /// [`Error::Invalid`] from anything string-like.
    pub fn invalid(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// [`Error::Denied`] from anything string-like.
    pub fn denied(reason: impl Into<String>) -> Self {
        Self::Denied(reason.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid {
                object,
                field,
                message,
            } => write!(f, "{object}: {field}: {message}"),
            Self::Denied(reason) => write!(f, "denied: {reason}"),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {}
