//! What kube-apiserver validates in an object, in its own words: names and label syntax
//! ([`names`]), metadata ([`metadata`]), and a custom resource against its CRD's structural
//! schema and CEL rules ([`schema`]), and a CRD's own rules: valid `fieldPath`s and the server's
//! CEL cost budget ([`crd_rules`], estimated by [`cel_cost`]).
//!
//! One implementation serves the offline checks of `kubetask render`, the controller's check
//! of what it reads, and the project's test API server, so all three refuse the same objects
//! with the same field paths.
#![forbid(unsafe_code)]

pub mod cel_cost;
pub mod crd_rules;
pub mod metadata;
pub mod names;
pub mod schema;

/// One failed field, as in a `422 Invalid` response's `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
    /// Path of the field (`spec.contexts[0].file`).
    pub field: String,
    /// The server's message.
    pub message: String,
}

/// Shorthand for a [`Cause`].
pub fn cause(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Cause {
    Cause {
        reason: reason.to_owned(),
        field: field.into(),
        message: message.into(),
    }
}
