//! Opt-in fault injection and the request log.

use std::time::Duration;

use crate::error::ApiError;
use crate::meta::Rng;

/// What a matching fault does to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Respond `500 InternalError`.
    InternalError,
    /// Respond `429 TooManyRequests` with `Retry-After`.
    TooManyRequests { retry_after_seconds: u64 },
    /// Respond `409 Conflict`.
    Conflict,
    /// Delay the request, then serve it normally.
    Latency(Duration),
    /// Serve a watch, then end its stream abruptly after this long.
    DropWatch { after: Duration },
    /// Serve a watch whose live events each arrive this much late (a slow watch cache or
    /// network): a client's cache falls behind what a fresh read shows.
    LagWatch(Duration),
}

/// A fault rule: which requests it matches, what it does, how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// A Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`); `None` matches every verb.
    pub verb: Option<String>,
    /// A resource plural (`jobs`, `tasks`); `None` matches every resource.
    pub resource: Option<String>,
    /// `Some("status")` matches only that subresource.
    pub subresource: Option<String>,
    /// Only this user's requests (the name its bearer token maps to); `None`: everyone's.
    pub user: Option<String>,
    pub action: FaultAction,
    /// The chance a matching request is affected, in `[0, 1]`.
    pub probability: f64,
    /// How many more requests it may affect; `None` is unlimited.
    pub remaining: Option<u64>,
}

impl Fault {
    /// A rule that always applies to `verb` on `resource` (`None`: any).
    pub fn new(verb: Option<&str>, resource: Option<&str>, action: FaultAction) -> Self {
        Self {
            verb: verb.map(str::to_owned),
            resource: resource.map(str::to_owned),
            subresource: None,
            user: None,
            action,
            probability: 1.0,
            remaining: None,
        }
    }

    /// Applies to a fraction of the matching requests.
    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }

    /// Applies at most `times` times.
    pub fn times(mut self, times: u64) -> Self {
        self.remaining = Some(times);
        self
    }

    /// Applies only to one user's requests.
    pub fn for_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Applies only to a subresource (`status`).
    pub fn on_subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.to_owned());
        self
    }
}

/// The active fault rules and their random source.
#[derive(Debug)]
pub struct Faults {
    rules: Vec<Fault>,
    rng: Rng,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Self {
            rules: Vec::new(),
            rng: Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    pub fn add(&mut self, fault: Fault) {
        self.rules.push(fault);
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The actions that apply to this request (consuming their budgets).
    pub fn decide(
        &mut self,
        user: &str,
        verb: &str,
        resource: &str,
        subresource: &str,
    ) -> Vec<FaultAction> {
        let mut actions = Vec::new();
        for rule in &mut self.rules {
            let matches = rule.verb.as_deref().is_none_or(|v| v == verb)
                && rule.resource.as_deref().is_none_or(|r| r == resource)
                && rule.subresource.as_deref().is_none_or(|s| s == subresource)
                && rule.user.as_deref().is_none_or(|u| u == user)
                && rule.remaining != Some(0);
            if !matches || self.rng.next_f64() >= rule.probability {
                continue;
            }
            if let Some(remaining) = &mut rule.remaining {
                *remaining -= 1;
            }
            actions.push(rule.action.clone());
        }
        actions
    }
}

/// The error response a fault action stands for, if it is one.
pub fn error_for(action: &FaultAction) -> Option<ApiError> {
    match action {
        FaultAction::InternalError => Some(ApiError::internal("injected fault")),
        FaultAction::TooManyRequests {
            retry_after_seconds,
        } => Some(ApiError::too_many_requests(*retry_after_seconds)),
        FaultAction::Conflict => Some(ApiError::custom(
            409,
            "Conflict",
            "Operation cannot be fulfilled: injected conflict",
        )),
        FaultAction::Latency(_) | FaultAction::DropWatch { .. } | FaultAction::LagWatch(_) => None,
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The authenticated user (from the bearer token), or `system:anonymous`.
    pub user: String,
    /// The Kubernetes verb, as RBAC names it (empty for non-resource requests).
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The HTTP status code of the response.
    pub code: u16,
    /// When the request arrived (its headers were read).
    pub received: std::time::Instant,
}

impl RequestRecord {
    /// The resource as RBAC names it: `tasks`, or `tasks/status` for a subresource.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// `verb resource[/subresource]`, e.g. `patch tasks/status`.
    pub fn call(&self) -> String {
        format!("{} {}", self.verb, self.resource_path())
    }
}
