//! The TaskTrigger resource: Tasks created from events — a GitHub issue, a comment, a pull
//! request — delivered to the receiver (`kubetask events`, docs/triggers.md), authenticated on
//! every path and de-duplicated by the API server itself (a Task's name is a hash of the
//! event's key and identity, so a redelivery is an `AlreadyExists`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube_derive::{CustomResource, KubeSchema};
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
    "push",
];
/// Who may trigger when `filter.authorAssociation` is unset: members of the repository's
/// organization and its collaborators.
pub const DEFAULT_AUTHOR_ASSOCIATIONS: &[&str] = &["OWNER", "MEMBER", "COLLABORATOR"];
/// A provider's API base URL: `https://`, or `http://` to a loopback address (a local proxy).
pub const TRIGGER_API_URL_PATTERN: &str = r"^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?)(/[A-Za-z0-9._~/%+-]*)?$";
/// A GitLab project's path: `group/name`, with subgroups.
pub const GITLAB_PROJECT_PATTERN: &str = "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$";
/// The GitLab events (`object_kind`) a trigger may take.
pub const GITLAB_EVENTS: &[&str] = &["issue", "note", "merge_request", "push"];
/// A JSON pointer (RFC 6901).
pub const JSON_POINTER_PATTERN: &str = "^(/[^/]*)*$";
/// An HTTP header's name.
pub const HEADER_NAME_PATTERN: &str = "^[A-Za-z0-9-]+$";
/// Where the event's text goes in the Task, marked as untrusted.
pub const EVENT_CONTEXT_PATH: &str = "/workspace/event.md";

/// Creates Tasks from events.
#[derive(CustomResource, Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "kubetask.io",
    version = "v1alpha1",
    kind = "TaskTrigger",
    namespaced,
    derive = "PartialEq",
    status = "TaskTriggerStatus",
    shortname = "ttr",
    category = "kubetask",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".status.source"}"#,
    printcolumn = r#"{"name":"Events","type":"string","jsonPath":".status.events"}"#,
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
#[x_kube(
    validation = Rule::new("!has(self.report) || !has(self.report.checkRun) || !has(self.source.github) || has(self.source.github.app)").message("spec.report.checkRun needs spec.source.github.app: GitHub lets only Apps create check runs").field_path(".report.checkRun"),
    validation = Rule::new("!has(self.checkout) || self.checkout != 'PullRequest' || !has(self.source.github) || has(self.source.github.tokenSecretRef) || has(self.source.github.app)").message("spec.checkout: PullRequest needs spec.source.github.tokenSecretRef or .app: a comment's pull request is read from GitHub").field_path(".checkout"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
#[serde(rename_all = "camelCase")]
pub struct TaskTriggerSpec {
    /// Where events come from.
    pub source: TriggerSource,
    /// Which events make a Task.
    #[serde(default)]
    pub filter: TriggerFilter,
    /// What makes two events the same piece of work, for `concurrencyPolicy`: `Issue` (the
    /// default: the repository and the issue or pull request; a push, its branch; a webhook,
    /// its `keyPointer` value), `Repository` (all of the source's events are one piece of
    /// work: one Task at a time under `Forbid`), or `Event` (every event its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<WorkKey>,
    /// What happens to an event whose key (the repository and the issue or pull request) has
    /// an unfinished Task. Default: `Forbid` (recorded, not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// The Tasks it creates. The event's text is added as an untrusted context file
    /// (`/workspace/event.md`); nothing of the event reaches the Agent, image or credentials.
    pub task_template: TaskTemplate,
    /// What the Task of a pull request's event checks out: `Template` (the default: the
    /// template's `workspace.ref`, else the Agent's) or `PullRequest` (the pull request's own
    /// branch, read from the provider when the event does not say it; a pull request from a
    /// fork is refused, `ForkPullRequest`). Issues and pushes keep the template's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<Checkout>,
    /// No new Tasks while true (events are refused with `Suspended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// A mapper plugin (the name of its ConfigMap in the controller's namespace, as `kubetask
    /// plugin pack` makes it) that turns each authenticated event into the Task to create or
    /// a skip, in place of the built-in mapper's decision (docs/plugins.md). Default: the
    /// built-in mapper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub mapper: Option<String>,
    /// What is reported back where the event came from (needs the source's
    /// `tokenSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
}

/// `spec.key`.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum WorkKey {
    #[default]
    Issue,
    Repository,
    Event,
}

/// `spec.checkout`.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Checkout {
    #[default]
    Template,
    PullRequest,
}

/// `spec.report`.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `PerTask`: a comment on the issue or pull request when its Task is created, edited with
    /// the result (phase, summary, pull request, duration, cost) when it ends. `Sticky`: the
    /// same, in one comment per issue or pull request that each of its Tasks edits. Default:
    /// `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<CommentMode>,
    /// A reaction put on the comment that triggered a Task, once its Task is created (GitHub's
    /// `content`: `eyes`, `rocket`, `+1`, ...; on GitLab the award emoji of that name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(\\+1|-1|laugh|confused|heart|hooray|rocket|eyes)$"))]
    pub reaction: Option<String>,
    /// For events of pull requests (merge requests): a check run of this name on the head
    /// commit (GitLab: a commit status), in progress while the Task runs and concluded with
    /// its result — which branch protection can require. On GitHub it needs
    /// `spec.source.github.app` (GitHub lets only Apps create check runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub check_run: Option<String>,
}

/// `spec.report.comment`.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum CommentMode {
    PerTask,
    Sticky,
    #[default]
    None,
}

/// `spec.source`: exactly one of `github`, `gitlab` and `webhook`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.github) && !has(self.gitlab) && !has(self.webhook)) || (!has(self.github) && has(self.gitlab) && !has(self.webhook)) || (!has(self.github) && !has(self.gitlab) && has(self.webhook))").message("set exactly one of github, gitlab and webhook"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct TriggerSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitlab: Option<GitLabSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSource>,
}

/// Events from a GitHub repository's webhook.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitHubSource {
    /// `owner/name`; an event of another repository is refused.
    #[schemars(regex(pattern = GITHUB_REPOSITORY_PATTERN), length(max = 200))]
    pub repository: String,
    /// Event types taken (`X-GitHub-Event`): `issues`, `issue_comment`, `pull_request`,
    /// `pull_request_review_comment`, `push`.
    #[schemars(
        length(min = 1, max = 5),
        inner(regex(
            pattern = "^(issues|issue_comment|pull_request|pull_request_review_comment|push)$"
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
    /// A GitHub App instead of `tokenSecretRef` (and needed for `spec.report.checkRun`): the
    /// receiver mints installation tokens for this repository alone, refreshed before they
    /// expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<GitHubApp>,
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

/// `spec.source.github.app`: a GitHub App installed on the repository.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GitHubApp {
    /// The App's id.
    #[serde(rename = "appID")]
    #[schemars(regex(pattern = "^[0-9]{1,20}$"))]
    pub app_id: String,
    /// The installation's id (on the repository's owner).
    #[serde(rename = "installationID")]
    #[schemars(range(min = 1))]
    pub installation_id: i64,
    /// The Secret with the App's private key (PEM; key default `private-key`).
    pub private_key_secret_ref: SecretKey,
}

/// Events from a GitLab project's webhook.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.apiURL) || !has(self.baseURL)").message("set one of apiURL and baseURL: the API is <baseURL>/api/v4"),
    crates(kube_core = "::kube_core", schemars = "::schemars", serde = "::serde")
)]
pub struct GitLabSource {
    /// The project's path (`group/name`, subgroups included); an event of another project is
    /// refused.
    #[schemars(regex(pattern = GITLAB_PROJECT_PATTERN), length(max = 255))]
    pub project: String,
    /// Event types taken (the payload's `object_kind`; `X-Gitlab-Event` `Issue Hook`, `Note
    /// Hook`, `Merge Request Hook`, `Push Hook`): `issue`, `note`, `merge_request`, `push`.
    #[schemars(
        length(min = 1, max = 4),
        inner(regex(pattern = "^(issue|note|merge_request|push)$"))
    )]
    pub events: Vec<String>,
    /// The Secret with the webhook's secret token: each delivery's `X-Gitlab-Token` must
    /// equal it (compared in constant time).
    pub webhook_secret_ref: SecretKey,
    /// A Secret with a token for GitLab's API (key default `token`): what `spec.report` posts
    /// with, what polling reads with, and what finds an actor's role in the project (without
    /// it only `spec.filter.authors` may trigger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKey>,
    /// Poll GitLab's API for open issues too (for clusters GitLab cannot reach): each read as
    /// an `issue` `open` event. Needs `tokenSecretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
    /// GitLab's API. Default: `https://gitlab.com/api/v4`; `https://<host>/api/v4` for a
    /// self-hosted GitLab (or `baseURL`).
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TRIGGER_API_URL_PATTERN), length(max = 2048))]
    pub api_url: Option<String>,
    /// A self-hosted GitLab (`https://gitlab.example.com`): its API is `<baseURL>/api/v4`.
    /// Not with `apiURL`.
    #[serde(default, rename = "baseURL", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TRIGGER_API_URL_PATTERN), length(max = 2048))]
    pub base_url: Option<String>,
}

impl GitLabSource {
    /// GitLab's API: `apiURL`, else `<baseURL>/api/v4`, else GitLab.com's.
    pub fn api(&self) -> String {
        match (&self.api_url, &self.base_url) {
            (Some(api), _) => api.clone(),
            (None, Some(base)) => format!("{}/api/v4", base.trim_end_matches('/')),
            (None, None) => "https://gitlab.com/api/v4".to_owned(),
        }
    }
}

/// Events from any sender that signs its deliveries (an alert manager, a CI system, a script):
/// never unauthenticated.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSource {
    /// How deliveries are signed.
    pub hmac: Hmac,
    /// A JSON pointer (RFC 6901, e.g. `/alert/fingerprint`) to what says which piece of work
    /// an event is about: events with the same value share `spec.concurrencyPolicy`. Default:
    /// every distinct delivery its own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = JSON_POINTER_PATTERN), length(max = 256))]
    pub key_pointer: Option<String>,
    /// A JSON pointer to the event's title (for the event file and names in status).
    /// Default: `/title`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = JSON_POINTER_PATTERN), length(max = 256))]
    pub title_pointer: Option<String>,
}

/// `spec.source.webhook.hmac`: the signature of each delivery, checked in constant time
/// before the body is parsed.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Hmac {
    /// The Secret with the signing key.
    pub secret_ref: SecretKey,
    /// The header carrying the signature, e.g. `X-Signature-256`.
    #[schemars(regex(pattern = HEADER_NAME_PATTERN), length(max = 64))]
    pub header: String,
    /// `sha256` (the only one, and the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^sha256$"))]
    pub algorithm: Option<String>,
    /// What precedes the digest in the header, e.g. `sha256=`. Default: nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub prefix: Option<String>,
    /// How the digest is written: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(hex|base64)$"))]
    pub encoding: Option<String>,
    /// A header with the time the delivery was sent (Unix seconds). When set, what is signed
    /// is `<timestamp>.<body>`, and a delivery whose time is more than `maxSkewSeconds` from
    /// the receiver's clock is refused as a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = HEADER_NAME_PATTERN), length(max = 64))]
    pub timestamp_header: Option<String>,
    /// The replay window, in seconds (1 to 3600). Default: 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub max_skew_seconds: Option<i64>,
}

impl Hmac {
    /// `maxSkewSeconds` with its default.
    pub fn max_skew(&self) -> i64 {
        self.max_skew_seconds.unwrap_or(300)
    }
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
    /// Default: `secret` for a webhook's secret, `token` for an API token.
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
    /// The branch a push went to, or a pull (merge) request goes into, is one of these: a name,
    /// or a prefix ending in `*` (`release/*`). Events without a branch are not concerned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 255)))]
    pub branches: Vec<String>,
}

impl TaskTriggerSpec {
    /// `spec.concurrencyPolicy` with its default (`Forbid`).
    pub fn concurrency(&self) -> ConcurrencyPolicy {
        self.concurrency_policy.unwrap_or(ConcurrencyPolicy::Forbid)
    }

    /// `spec.checkout` with its default (`Template`).
    pub fn checkout(&self) -> Checkout {
        self.checkout.unwrap_or_default()
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
    /// The source, as `kubectl get` shows it: `github owner/name`, `gitlab group/name`,
    /// `webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 300))]
    pub source: Option<String>,
    /// The event types taken, comma-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 300))]
    pub events: Option<String>,
    /// When the last poll (`poll`) that read every list began. Later polls take issues, pull
    /// requests and comments created after it (less ten minutes of overlap, which
    /// de-duplication absorbs) — so an item is not made a Task again after its Task was
    /// deleted. Unset: the first poll takes every open issue and pull request, and the comments
    /// made since the trigger was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polled_until: Option<Time>,
    /// The generation the conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the webhook secret is readable and the trigger not suspended: `Receiving`,
    /// else `SecretMissing` / `Suspended`), `CredentialsValid` (the API token is present and
    /// the provider took it the last time it was used: `Accepted`, else `SecretMissing` /
    /// `Refused`), `Polling` (with `poll`: `Polled` or `PollFailed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// What a TaskTrigger's source is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SourceKind<'a> {
    GitHub(&'a GitHubSource),
    GitLab(&'a GitLabSource),
    Webhook(&'a WebhookSource),
}

impl TriggerSource {
    /// The one source set (`github` when several are, which the CRD refuses).
    pub fn kind(&self) -> Option<SourceKind<'_>> {
        match (&self.github, &self.gitlab, &self.webhook) {
            (Some(github), _, _) => Some(SourceKind::GitHub(github)),
            (None, Some(gitlab), _) => Some(SourceKind::GitLab(gitlab)),
            (None, None, Some(webhook)) => Some(SourceKind::Webhook(webhook)),
            (None, None, None) => None,
        }
    }

    /// `status.source` and `status.events`.
    pub fn summary(&self) -> (String, String) {
        match self.kind() {
            Some(SourceKind::GitHub(github)) => (
                format!("github {}", github.repository),
                github.events.join(","),
            ),
            Some(SourceKind::GitLab(gitlab)) => (
                format!("gitlab {}", gitlab.project),
                gitlab.events.join(","),
            ),
            Some(SourceKind::Webhook(_)) => ("webhook".to_owned(), "webhook".to_owned()),
            None => (String::new(), String::new()),
        }
    }

    /// The webhook's Secret: the key that authenticates deliveries.
    pub fn webhook_secret(&self) -> Option<&SecretKey> {
        match self.kind()? {
            SourceKind::GitHub(github) => Some(&github.webhook_secret_ref),
            SourceKind::GitLab(gitlab) => Some(&gitlab.webhook_secret_ref),
            SourceKind::Webhook(webhook) => Some(&webhook.hmac.secret_ref),
        }
    }

    /// The API token's Secret, the API's URL and the path of the field, for reports and
    /// polling (none for a GitHub source with an `app`: its tokens are minted).
    pub fn api(&self) -> Option<(&SecretKey, String, &'static str)> {
        match self.kind()? {
            SourceKind::GitHub(github) if github.app.is_none() => Some((
                github.token_secret_ref.as_ref()?,
                github
                    .api_url
                    .clone()
                    .unwrap_or_else(|| "https://api.github.com".to_owned()),
                "spec.source.github.tokenSecretRef",
            )),
            SourceKind::GitLab(gitlab) => Some((
                gitlab.token_secret_ref.as_ref()?,
                gitlab.api(),
                "spec.source.gitlab.tokenSecretRef",
            )),
            SourceKind::GitHub(_) | SourceKind::Webhook(_) => None,
        }
    }

    /// `poll`, for the sources that have it.
    pub fn poll(&self) -> Option<&Poll> {
        match self.kind()? {
            SourceKind::GitHub(github) => github.poll.as_ref(),
            SourceKind::GitLab(gitlab) => gitlab.poll.as_ref(),
            SourceKind::Webhook(_) => None,
        }
    }

    /// The field path of the source (`spec.source.github`), for messages.
    pub fn path(&self) -> &'static str {
        match self.kind() {
            Some(SourceKind::GitHub(_)) | None => "spec.source.github",
            Some(SourceKind::GitLab(_)) => "spec.source.gitlab",
            Some(SourceKind::Webhook(_)) => "spec.source.webhook",
        }
    }
}

impl SecretKey {
    /// `key`, or `default` when unset.
    pub fn key_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.key.as_deref().unwrap_or(default)
    }
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
    /// Annotation: the issue or pull request, `owner/name#number` (a GitLab merge request:
    /// `group/name!iid`).
    pub const ISSUE: &str = "kubetask.io/trigger-issue";
    /// Annotation: the id of the comment reporting on the Task (`claimed` while one replica
    /// of the receiver posts it).
    pub const REPORT_COMMENT: &str = "kubetask.io/report-comment";
    /// Annotation: `done` once the comment holds the Task's result.
    pub const REPORT_DONE: &str = "kubetask.io/report-done";
    /// Annotation: the id of the comment that triggered the Task (for `spec.report.reaction`).
    pub const COMMENT: &str = "kubetask.io/trigger-comment";
    /// Annotation: the reaction was put on the triggering comment.
    pub const REACTED: &str = "kubetask.io/reacted";
    /// Annotation: the head commit of the pull request the Task is about.
    pub const HEAD_SHA: &str = "kubetask.io/trigger-head-sha";
    /// Annotation: the id of the Task's check run (`claimed` while one replica creates it;
    /// GitLab: `status`), and `done` once it holds the result.
    pub const CHECK_RUN: &str = "kubetask.io/check-run";
    pub const CHECK_DONE: &str = "kubetask.io/check-run-done";
}
