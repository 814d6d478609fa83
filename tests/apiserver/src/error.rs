//! API errors rendered as `metav1.Status` bodies, as kube-apiserver does.

use serde_json::{Value, json};

pub use kubetask_validation::{Cause, cause};

/// A failed request: HTTP code, `reason`, message and `details`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Box<Details>,
}

/// `metav1.StatusDetails`: the object concerned, causes, and a retry hint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    fn about(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details.group = group.to_owned();
        self.details.kind = kind.to_owned();
        self.details.name = name.to_owned();
        self
    }

    /// `404 NotFound`: `<resource>.<group> "<name>" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .about(group, resource, name)
    }

    /// `409 AlreadyExists`.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .about(group, resource, name)
    }

    /// `409 Conflict` for a stale `resourceVersion`.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
        )
        .about(group, resource, name)
    }

    /// `409 Conflict` from server-side apply: fields owned by other managers.
    pub fn apply_conflict(group: &str, resource: &str, name: &str, causes: Vec<Cause>) -> Self {
        let fields: Vec<String> = causes.iter().map(|c| c.message.clone()).collect();
        let mut error = Self::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflicts: {}",
                causes.len(),
                fields.join(", ")
            ),
        )
        .about(group, resource, name);
        error.details.causes = causes;
        error
    }

    /// `422 Invalid`: `<Kind>.<group> "<name>" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let text: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let subject = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let message = match text.as_slice() {
            [one] => format!("{subject} \"{name}\" is invalid: {one}"),
            _ => format!("{subject} \"{name}\" is invalid: [{}]", text.join(", ")),
        };
        let mut error = Self::new(422, "Invalid", message).about(group, kind, name);
        error.details.causes = causes;
        error
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `405 MethodNotAllowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type}"
            ),
        )
    }

    /// `410 Expired`: the requested resourceVersion is older than the watch history.
    pub fn expired(resource_version: u64, oldest: u64) -> Self {
        Self::new(
            410,
            "Expired",
            format!("too old resource version: {resource_version} ({oldest})"),
        )
    }

    /// `401 Unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// `500 InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// `429 TooManyRequests` with `Retry-After`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        let mut error = Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        );
        error.details.retry_after_seconds = Some(retry_after_seconds);
        error
    }

    /// A `403 Forbidden` (for example, creating in a terminating namespace).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// A `403 Forbidden` about one object (RBAC and admission refusals).
    pub fn forbidden_about(
        group: &str,
        resource: &str,
        name: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::new(403, "Forbidden", message).about(group, resource, name)
    }

    /// `413 RequestEntityTooLarge`: the body exceeds the server's limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// An error with any code and reason (fault injection).
    pub fn custom(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, reason, message)
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let d = &self.details;
        let mut details = serde_json::Map::new();
        if !d.name.is_empty() {
            details.insert("name".into(), json!(d.name));
        }
        if !d.group.is_empty() {
            details.insert("group".into(), json!(d.group));
        }
        if !d.kind.is_empty() {
            details.insert("kind".into(), json!(d.kind));
        }
        if !d.causes.is_empty() {
            let causes: Vec<Value> = d
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(seconds) = d.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}
