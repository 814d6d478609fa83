//! Every way acting on a Task can fail, sorted into the two classes the controller treats
//! differently:
//!
//! - **transient** (the network, a busy or restarting API server, 5xx, 429, a conflict, a
//!   plugin that missed its wall-clock deadline or could not get a sandbox): retried with
//!   per-Task exponential backoff with jitter, and shown on the Task after a few attempts;
//! - **permanent** (403, 422, 400; a plugin's denial, invalid input or crash): a condition that
//!   says what to fix, an Event, and no retry until something relevant changes.

use std::time::Duration;

use crate::plugin::PluginError;
use crate::render::RenderError;

use super::status::reason;

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retried with backoff. `give_up_after`: after this many consecutive attempts it is
    /// treated as permanent (a plugin that times out every time loops, it is not slow).
    Transient {
        retry_after: Option<Duration>,
        give_up_after: Option<u32>,
    },
    /// The Task waits (`Pending`) until something it depends on changes: the fix is outside
    /// the Task (RBAC, its Agent, the server's rules).
    Blocked,
    /// The Task fails: the fix is in the Task, whose spec cannot change.
    Fatal,
}

/// One classified failure: its class, the condition reason and a message that says what to
/// fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: Class,
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    fn transient(reason: &'static str, message: String) -> Self {
        Self {
            class: Class::Transient {
                retry_after: None,
                give_up_after: None,
            },
            reason,
            message,
        }
    }

    /// A failed API request. `action` says what the controller was doing, e.g.
    /// `create Job "x" in namespace "n"`.
    pub fn from_api(error: &kube::Error, action: &str) -> Self {
        let kube::Error::Api(status) = error else {
            return Self::transient(
                reason::API_UNAVAILABLE,
                format!("cannot {action}: the API server is unreachable: {error}"),
            );
        };
        let server = status.message.trim_end_matches('.');
        match status.code {
            403 => {
                let hint = if server.contains("blockOwnerDeletion") {
                    "the controller's ClusterRole needs \"update\" on \"tasks/finalizers\" (group kubetask.io) to set blockOwnerDeletion (OwnerReferencesPermissionEnforcement); apply manifests/rbac.yaml"
                } else {
                    "grant it in the controller's ClusterRole (manifests/rbac.yaml)"
                };
                Self {
                    class: Class::Blocked,
                    reason: reason::FORBIDDEN,
                    message: format!(
                        "the API server forbids the controller to {action}: {server}; {hint}. The controller retries every few minutes and when the Task's Agent or plugins change"
                    ),
                }
            }
            400 | 422 => {
                let causes: Vec<String> = status
                    .details
                    .iter()
                    .flat_map(|details| &details.causes)
                    .map(|cause| match cause.field.as_str() {
                        "" => cause.message.clone(),
                        field => format!("{field}: {}", cause.message),
                    })
                    .collect();
                let what = if causes.is_empty() {
                    server.to_owned()
                } else {
                    causes.join("; ")
                };
                Self {
                    class: Class::Blocked,
                    reason: reason::REJECTED,
                    message: format!(
                        "the API server rejected the request to {action}: {what}. Fix the field in the Task's Agent or in the plugin that set it; the Task starts when its Agent or plugins change"
                    ),
                }
            }
            429 => Self {
                class: Class::Transient {
                    retry_after: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                    give_up_after: None,
                },
                reason: reason::API_UNAVAILABLE,
                message: format!("cannot {action}: the API server is throttling: {server}"),
            },
            code => Self::transient(
                reason::API_UNAVAILABLE,
                format!("cannot {action}: the API server answered {code}: {server}"),
            ),
        }
    }

    /// A failed render.
    pub fn from_render(error: &RenderError) -> Self {
        let message = error.to_string();
        if let RenderError::Lifecycle(_) | RenderError::Egress(_) = error {
            return Self {
                class: Class::Fatal,
                reason: reason::INVALID_SPEC,
                message,
            };
        }
        let RenderError::Plugin(plugin) = error else {
            return Self {
                class: Class::Fatal,
                reason: reason::PLUGIN_ERROR,
                message,
            };
        };
        let (class, reason) = match plugin {
            PluginError::InvalidInput { .. } => (Class::Fatal, reason::INVALID_SPEC),
            PluginError::Denied { .. } => (Class::Fatal, reason::POLICY_DENIED),
            // A deadline missed on a busy node, or every pool slot taken: try again, but a
            // plugin that times out again and again loops.
            PluginError::Timeout { .. } => (
                Class::Transient {
                    retry_after: None,
                    give_up_after: Some(TIMEOUTS_BEFORE_GIVING_UP),
                },
                reason::PLUGIN_TIMEOUT,
            ),
            PluginError::Instantiate { .. } => (
                Class::Transient {
                    retry_after: None,
                    give_up_after: None,
                },
                reason::PLUGIN_UNAVAILABLE,
            ),
            PluginError::Compile { .. }
            | PluginError::WrongWorld { .. }
            | PluginError::Trap { .. }
            | PluginError::Memory { .. }
            | PluginError::InvalidOutput { .. }
            | PluginError::Internal { .. } => (Class::Fatal, reason::PLUGIN_ERROR),
        };
        Self {
            class,
            reason,
            message,
        }
    }

    /// The failure as it stands after `attempts` consecutive tries: a transient failure
    /// tried too often becomes fatal (`PluginTimeout` → `PluginError`).
    pub fn after(mut self, attempts: u32) -> Self {
        if let Class::Transient {
            give_up_after: Some(limit),
            ..
        } = self.class
            && attempts >= limit
        {
            self.class = Class::Fatal;
            self.reason = reason::PLUGIN_ERROR;
            self.message = format!("{} ({attempts} attempts in a row)", self.message);
        }
        self
    }
}

/// Consecutive deadline misses of a plugin before the Task fails.
pub const TIMEOUTS_BEFORE_GIVING_UP: u32 = 5;

/// The first retry delay; it doubles with every consecutive failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest retry delay (also how often a `Forbidden` Task is tried again).
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);
/// Consecutive transient failures after which the Task's condition shows the last one.
pub const VISIBLE_AFTER: u32 = 3;

/// The delay before retry number `attempts` (1 = after the first failure): 0.5 s doubling up
/// to 5 min, with ±20 % jitter from `jitter` in `[0, 1)` so that Tasks failing together do
/// not retry together, and never sooner than the server's `Retry-After`.
pub fn backoff(attempts: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(20);
    let base = FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(LONGEST_RETRY);
    let jittered = base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    retry_after.map_or(jittered, |floor| jittered.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::{Status, response::StatusCause, response::StatusDetails};

    fn details() -> StatusDetails {
        StatusDetails {
            name: String::new(),
            group: String::new(),
            kind: String::new(),
            uid: String::new(),
            causes: Vec::new(),
            retry_after_seconds: 0,
        }
    }

    fn api(code: u16, message: &str, details: Option<StatusDetails>) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            message: message.to_owned(),
            details,
            ..Status::failure(message, "")
        }))
    }

    #[test]
    fn api_errors_are_classified() {
        let action = "create Job \"t\" in namespace \"n\"";
        let forbidden = Failure::from_api(
            &api(
                403,
                "jobs.batch \"t\" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: , <nil>",
                None,
            ),
            action,
        );
        assert_eq!(
            (forbidden.class, forbidden.reason),
            (Class::Blocked, reason::FORBIDDEN)
        );
        assert!(forbidden.message.contains("tasks/finalizers"));
        assert!(forbidden.message.contains(action));

        let rejected = Failure::from_api(
            &api(
                422,
                "Job.batch \"t\" is invalid",
                Some(StatusDetails {
                    causes: vec![StatusCause {
                        reason: "FieldValueInvalid".into(),
                        message: "Invalid value: \"Bad_SA\"".into(),
                        field: "spec.template.spec.serviceAccountName".into(),
                    }],
                    ..details()
                }),
            ),
            action,
        );
        assert_eq!(rejected.reason, reason::REJECTED);
        assert!(
            rejected
                .message
                .contains("spec.template.spec.serviceAccountName: Invalid value: \"Bad_SA\""),
            "{}",
            rejected.message
        );
        assert_eq!(
            Failure::from_api(&api(400, "bad", None), action).class,
            Class::Blocked
        );

        let throttled = Failure::from_api(
            &api(
                429,
                "slow down",
                Some(StatusDetails {
                    retry_after_seconds: 7,
                    ..details()
                }),
            ),
            action,
        );
        assert_eq!(
            throttled.class,
            Class::Transient {
                retry_after: Some(Duration::from_secs(7)),
                give_up_after: None
            }
        );
        for code in [409, 500, 503, 504] {
            assert!(matches!(
                Failure::from_api(&api(code, "x", None), action).class,
                Class::Transient { .. }
            ));
        }
    }

    #[test]
    fn plugin_errors_are_classified() {
        let timeout = RenderError::Plugin(PluginError::Timeout {
            name: "p".into(),
            digest: "d".into(),
            deadline: Duration::from_millis(300),
        });
        let failure = Failure::from_render(&timeout);
        assert_eq!(failure.reason, reason::PLUGIN_TIMEOUT);
        assert!(matches!(failure.class, Class::Transient { .. }));
        assert_eq!(failure.clone().after(4).reason, reason::PLUGIN_TIMEOUT);
        let given_up = failure.after(TIMEOUTS_BEFORE_GIVING_UP);
        assert_eq!(
            (given_up.class, given_up.reason),
            (Class::Fatal, reason::PLUGIN_ERROR)
        );
        let denied = RenderError::Plugin(PluginError::Denied {
            name: "p".into(),
            digest: "d".into(),
            reason: "no".into(),
        });
        assert_eq!(Failure::from_render(&denied).reason, reason::POLICY_DENIED);
        let trap = RenderError::Plugin(PluginError::Trap {
            name: "p".into(),
            digest: "d".into(),
            message: "unreachable".into(),
        });
        assert_eq!(Failure::from_render(&trap).class, Class::Fatal);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        assert_eq!(backoff(1, None, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(2, None, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(4, None, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(30, None, 0.5), LONGEST_RETRY);
        assert_eq!(backoff(1, None, 0.0), Duration::from_millis(400));
        assert!(backoff(1, None, 0.999) < Duration::from_millis(600));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(7)), 0.5),
            Duration::from_secs(7)
        );
    }
}
