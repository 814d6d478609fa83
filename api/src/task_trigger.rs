//! The TaskTrigger resource: Tasks created from events — a GitHub issue, a comment, a pull
//! request — delivered to the receiver (`kubetask events`, docs/triggers.md), authenticated on
//! every path and de-duplicated by the API server itself (a Task's name is a hash of the
//! event's key and identity, so a redelivery is an `AlreadyExists`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::CustomResource;
use serde::{Deserialize, Serialize};

use crate::cron_task::{ConcurrencyPolicy, TaskTemplate};
use crate::syntax::{MAX_SUBDOMAIN, SUBDOMAIN_PATTERN};

/// An `owner/name` GitHub repository.
pub const GITHUB_REPOSITORY_PATTERN: &str = "^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$";
/// The GitHub events a trigger may take.
pub const GITHUB_EVENTS: &[&str] = &[
    "issues",
    "issue_comment",
    "pull_request",
    "pull_request_review_comment",
];
/// Who may trigger when `filter.authorAssociation` is unset: members of the repository's
/// organization and its collaborators.
pub const DEFAULT_AUTHOR_ASSOCIATIONS: &[&str] = &["OWNER", "MEMBER", "COLLABORATOR"];
/// A provider's API base URL: `https://`, or `http://` to a loopback address (a local proxy).
pub const TRIGGER_API_URL_PATTERN: &str = r"^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?)(/[A-Za-z0-9._~/%+-]*)?$";
/// Where the event's text goes in the Task, marked as untrusted.
pub const EVENT_CONTEXT_PATH: &str = "/workspace/event.md";

/// Creates Tasks from events.
#[derive(CustomResource, Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "kubetask.io",
    version = "v1alpha1",
    kind = "TaskTrigger",
    namespaced,
    derive = "PartialEq",
    status = "TaskTriggerStatus",
    shortname = "ttr",
    category = "kubetask",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source.github.repository"}"#,
    printcolumn = r#"{"name":"Events","type":"string","jsonPath":".spec.source.github.events"}"#,
    printcolumn = r#"{"name":"Accepted","type":"integer","jsonPath":".status.accepted"}"#,
    printcolumn = r#"{"name":"Last Event","type":"date","jsonPath":".status.lastEventTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "A TaskTrigger: creates a Task from its template for each event it accepts.",
    crates(
        kube_core = "::kube_core",
        k8s_openapi = "::k8s_openapi",
        schemars = "::schemars",
        serde = "::serde",
        serde_json = "::serde_json"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TaskTriggerSpec {
    /// Where events come from.
    pub source: TriggerSource,
    /// Which events make a Task.
    #[serde(default)]
    pub filter: TriggerFilter,
    /// What happens to an event whose key (the repository and the issue or pull request) has
    /// an unfinished Task. Default: `Forbid` (recorded, not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// The Tasks it creates. The event's text is added as an untrusted context file
    /// (`/workspace/event.md`); nothing of the event reaches the Agent, image or credentials.
    pub task_template: TaskTemplate,
    /// No new Tasks while true (events are refused with `Suspended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// What is reported back where the event came from (needs
    /// `spec.source.github.tokenSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
}

/// `spec.report`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `PerTask`: a comment on the issue or pull request when its Task is created, edited with
    /// the result (phase, summary, pull request, duration, cost) when it ends. Default: `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<CommentMode>,
}

/// `spec.report.comment`.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum CommentMode {
    PerTask,
    #[default]
    None,
}

/// `spec.source`: one of the sources (only `github` for now).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSource {
    pub github: GitHubSource,
}

/// Events from a GitHub repository's webhook.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitHubSource {
    /// `owner/name`; an event of another repository is refused.
    #[schemars(regex(pattern = GITHUB_REPOSITORY_PATTERN), length(max = 200))]
    pub repository: String,
    /// Event types taken (`X-GitHub-Event`): `issues`, `issue_comment`, `pull_request`,
    /// `pull_request_review_comment`.
    #[schemars(
        length(min = 1, max = 4),
        inner(regex(
            pattern = "^(issues|issue_comment|pull_request|pull_request_review_comment)$"
        ))
    )]
    pub events: Vec<String>,
    /// The Secret (in the trigger's namespace) with the webhook's secret: each delivery's
    /// `X-Hub-Signature-256` (HMAC-SHA256 of the body) is checked against it.
    pub webhook_secret_ref: SecretKey,
    /// A Secret with a token for GitHub's API (key default `token`): what `spec.report`
    /// posts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKey>,
    /// Poll GitHub's REST API for open issues too (for clusters GitHub cannot reach): each
    /// issue read as an `issues.opened` event, de-duplicated with the webhook's by the same
    /// Task names. Needs `tokenSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
    /// GitHub's API. Default: `https://api.github.com`.
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TRIGGER_API_URL_PATTERN), length(max = 2048))]
    pub api_url: Option<String>,
}

/// `spec.source.github.poll`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
pub struct Poll {
    /// How often (`5m`; at least `1s`). Unchanged answers (`304`, by ETag) cost no rate limit.
    #[schemars(regex(pattern = crate::lifecycle::DURATION_PATTERN), length(max = 64))]
    pub interval: String,
}

/// A key of a Secret in the trigger's namespace.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretKey {
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub name: String,
    /// Default: `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key: Option<String>,
}

/// `spec.filter`: an event passes when it matches every field that is set.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerFilter {
    /// The event's `action` (`opened`, `labeled`, `created`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 64)))]
    pub actions: Vec<String>,
    /// The issue or pull request has all of these labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 100)))]
    pub labels: Vec<String>,
    /// A comment must start with this (e.g. `/kubetask`); events without a comment are not
    /// concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub comment_prefix: Option<String>,
    /// Who may trigger, by their association with the repository (`OWNER`, `MEMBER`,
    /// `COLLABORATOR`, `CONTRIBUTOR`, ...). Default: `OWNER`, `MEMBER`, `COLLABORATOR`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(regex(pattern = "^[A-Z_]+$"), length(max = 32)))]
    pub author_association: Vec<String>,
    /// Who may trigger, by login (in addition to `authorAssociation`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    pub authors: Vec<String>,
}

impl TaskTriggerSpec {
    /// `spec.concurrencyPolicy` with its default (`Forbid`).
    pub fn concurrency(&self) -> ConcurrencyPolicy {
        self.concurrency_policy.unwrap_or(ConcurrencyPolicy::Forbid)
    }

    /// `spec.suspend`, false when unset.
    pub fn suspended(&self) -> bool {
        self.suspend == Some(true)
    }
}

/// What the receiver counted, written by it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskTriggerStatus {
    /// Deliveries that named this trigger and were authenticated.
    #[serde(default)]
    pub received: i64,
    /// Those that created a Task.
    #[serde(default)]
    pub accepted: i64,
    /// Redeliveries of an event that already has its Task.
    #[serde(default)]
    pub duplicate: i64,
    /// Those refused or skipped, by reason (`Filtered`, `AuthorNotAllowed`, `Forbidden`,
    /// `InvalidTask`, `Suspended`, `WrongRepository`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected: BTreeMap<String, i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_time: Option<Time>,
    /// The last event refused, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub last_error: Option<String>,
    /// `Ready` (`Receiving`, or `SecretMissing` / `Suspended`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// How KubeTask marks the Tasks a TaskTrigger creates.
pub mod trigger_labels {
    /// The TaskTrigger's name.
    pub const TRIGGER: &str = "kubetask.io/task-trigger";
    /// A hash of the event's key (the repository and the issue or pull request): the Tasks of
    /// one piece of work.
    pub const KEY: &str = "kubetask.io/trigger-key";
    /// Annotation: the issue's or pull request's URL.
    pub const SOURCE_URL: &str = "kubetask.io/source-url";
    /// Annotation: the event (`issues.opened`) and its delivery id.
    pub const EVENT: &str = "kubetask.io/event";
    /// Annotation: the issue or pull request, `owner/name#number`.
    pub const ISSUE: &str = "kubetask.io/trigger-issue";
    /// Annotation: the id of the comment reporting on the Task (`claimed` while one replica
    /// of the receiver posts it).
    pub const REPORT_COMMENT: &str = "kubetask.io/report-comment";
    /// Annotation: `done` once the comment holds the Task's result.
    pub const REPORT_DONE: &str = "kubetask.io/report-done";
}
