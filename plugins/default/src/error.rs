//! Why the default renderer refuses an input.

use std::fmt;

/// A render failure. Every variant names what the user has to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A field of the Task or Agent is not acceptable.
    Invalid {
        /// The object holding the field, as `Kind/name`.
        object: String,
        /// Path of the field, e.g. `spec.contexts[2].file.filePath`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The renderer itself failed (a bug, not the user's input).
    Internal(String),
}

impl RenderError {
    pub(crate) fn invalid(
        object: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            object: object.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid {
                object,
                field,
                message,
            } => write!(f, "{object}: {field}: {message}"),
            Self::Internal(message) => {
                write!(f, "internal error in the default renderer: {message}")
            }
        }
    }
}

impl std::error::Error for RenderError {}
