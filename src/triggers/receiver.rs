//! `kubetask events`: the webhook receiver. `POST /hooks/{namespace}/{trigger}` with a GitHub
//! delivery: the body read up to a limit (413 past it), the TaskTrigger and its webhook
//! Secret read, the signature checked in constant time before the body is parsed (401), the
//! event type checked against the trigger's (422), the event mapped ([`super::mapper`]) and
//! its Task created. A redelivery is the API server's `AlreadyExists` on the same name, across
//! restarts and replicas: nothing is remembered here. The trigger's status counts what came
//! (written at most once a second per trigger, from the counts gathered since).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt as _};
use kubetask_api::task_trigger::{Checkout, SourceKind, trigger_labels};
use kubetask_api::{ConcurrencyPolicy, Task, TaskTrigger, TaskTriggerStatus};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::event::{Event, Provider};
use super::mapper::{self, Decision, Mapped};
use super::mapper_plugin::{self, MapperPlugins};
use super::{github, gitlab, webhook};
use crate::controller::status::is_finished;

/// Largest body taken (GitHub caps payloads at 25 MB; issues and comments are far smaller).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Longest a delivery is worked on (GitHub waits 10 s).
const DEADLINE: Duration = Duration::from_secs(8);
/// How long a trigger and its webhook secret, once read, serve deliveries: a change to the
/// trigger (`suspend`, its filter) applies within this; a rotated secret at once (a signature
/// that does not match reads it again).
pub const CACHE_FOR: Duration = Duration::from_secs(2);
/// How long a GitLab actor's role, once read, is trusted.
const ROLES_FOR: Duration = Duration::from_secs(60);
/// How often the counts are written to the triggers' status.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How `kubetask events` runs.
pub struct Options {
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Serve the triggers of this namespace only.
    pub namespace: Option<String>,
    pub listen: SocketAddr,
    pub metrics_address: SocketAddr,
    /// Where mapper plugins' ConfigMaps are (the controller's namespace).
    pub plugin_namespace: String,
    pub max_body: usize,
}

/// An answer: the status and a JSON body saying what happened.
pub type Answer = (StatusCode, Value);

/// The receiver's work, apart from HTTP.
pub struct Receiver {
    client: kube::Client,
    namespace: Option<String>,
    max_body: usize,
    book: Arc<StatusBook>,
    /// Triggers and their webhook secrets, as read (see [`Receiver::trigger_and_secret`]).
    cache: Mutex<TriggerCache>,
    /// `kubetask_trigger_deliveries_total{code}`: every answer, by HTTP status.
    deliveries: Family<Vec<(String, String)>, Counter>,
    /// GitLab actors' associations, by namespace, project and user id (see
    /// [`Receiver::gitlab_role`]).
    roles: Mutex<RoleCache>,
    /// The triggers' mapper plugins.
    mappers: MapperPlugins,
}

/// GitLab roles, by namespace, project and user id: when read, and the association.
type RoleCache = HashMap<(String, String, i64), (std::time::Instant, &'static str)>;

type TriggerCache = HashMap<(String, String), (std::time::Instant, Arc<TaskTrigger>, Vec<u8>)>;

impl Receiver {
    /// A receiver of the triggers of `namespace` (all when `None`), whose mapper plugins'
    /// ConfigMaps are in `plugin_namespace`.
    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        plugin_namespace: String,
        max_body: usize,
    ) -> Self {
        Receiver {
            mappers: MapperPlugins::new(client.clone(), plugin_namespace),
            client,
            namespace,
            max_body,
            book: Arc::new(StatusBook::default()),
            cache: Mutex::default(),
            deliveries: Family::default(),
            roles: Mutex::default(),
        }
    }

    /// Answers one request, and counts the answer.
    pub async fn handle(&self, request: Request<hyper::body::Incoming>) -> Answer {
        let answer = self.answer(request).await;
        self.deliveries
            .get_or_create(&vec![("code".to_owned(), answer.0.as_u16().to_string())])
            .inc();
        answer
    }

    async fn answer(&self, request: Request<hyper::body::Incoming>) -> Answer {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let Some((namespace, name)) = hook_of(&path) else {
            return (
                StatusCode::NOT_FOUND,
                json!({"error": "not found: deliveries go to POST /hooks/{namespace}/{trigger}"}),
            );
        };
        if parts.method != hyper::Method::POST {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "POST a delivery"}),
            );
        }
        if self.namespace.as_deref().is_some_and(|n| n != namespace) {
            return (
                StatusCode::NOT_FOUND,
                json!({"error": format!("this receiver serves namespace {:?} only", self.namespace)}),
            );
        }
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let within_limit = if declared.is_some_and(|length| length > self.max_body) {
            None
        } else {
            Limited::new(body, self.max_body)
                .collect()
                .await
                .ok()
                .map(|collected| collected.to_bytes())
        };
        let Some(body) = within_limit else {
            return self.too_large(namespace, name).await;
        };
        let delivery = Delivery {
            headers: parts.headers,
            body,
        };
        match tokio::time::timeout(DEADLINE, self.deliver(namespace, name, &delivery)).await {
            Ok(answer) => answer,
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the API server did not answer in time; redeliver"}),
            ),
        }
    }

    /// `413`: a body over the limit is never read on, and is counted on the trigger (when there
    /// is one) as `BodyTooLarge`.
    async fn too_large(&self, namespace: &str, name: &str) -> Answer {
        let message = format!(
            "the body is over {} bytes (the receiver's --max-body-bytes)",
            self.max_body
        );
        let key = (namespace.to_owned(), name.to_owned());
        if let Ok(Ok(_)) =
            tokio::time::timeout(DEADLINE, self.trigger_and_secret(&key, false)).await
        {
            self.book
                .count(&key, |d| d.reject("BodyTooLarge", &message));
        }
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"rejected": "BodyTooLarge", "error": message}),
        )
    }

    /// A delivery to the trigger `namespace/name`.
    pub async fn deliver(&self, namespace: &str, name: &str, delivery: &Delivery) -> Answer {
        let key = (namespace.to_owned(), name.to_owned());
        let (trigger, secret) = match self.trigger_and_secret(&key, false).await {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let mut verified = authenticate(&trigger, &secret, delivery);
        if verified
            .as_ref()
            .is_err_and(|(reason, _)| *reason == "SignatureInvalid")
        {
            // The Secret may have been rotated since it was read: read it again, once.
            match self.trigger_and_secret(&key, true).await {
                Ok((_, fresh)) if fresh != secret => {
                    verified = authenticate(&trigger, &fresh, delivery);
                }
                Ok(_) => {}
                Err(answer) => return answer,
            }
        }
        let timestamp = match verified {
            Ok(timestamp) => timestamp,
            Err((reason, message)) => {
                self.book.count(&key, |d| d.reject(reason, &message));
                return (
                    StatusCode::UNAUTHORIZED,
                    json!({"rejected": reason, "error": message}),
                );
            }
        };
        self.book.count(&key, |d| {
            d.received += 1;
            d.last_event = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        });
        let mut event = match parse(&trigger, delivery, timestamp) {
            Ok(Parsed::Event(event)) => *event,
            Ok(Parsed::Ping) => return (StatusCode::OK, json!({"pong": true})),
            Err((status, reason, message)) => {
                self.book.count(&key, |d| d.reject(reason, &message));
                return (status, json!({"rejected": reason, "message": message}));
            }
        };
        if event.provider == Provider::GitLab {
            self.gitlab_role(&trigger, &mut event).await;
        }
        if let Err(answer) = self.complete_pull_request(&trigger, &mut event).await {
            return answer;
        }
        let mapped = match self
            .map(&trigger, &event, &delivery.body, &delivery.id())
            .await
        {
            Ok(mapped) => mapped,
            Err(answer) => return answer,
        };
        let (task, task_key) = match mapped {
            Mapped::Task { task, key } => (task, key),
            Mapped::Skip { reason, message } => {
                self.book.count(&key, |d| d.reject(&reason, &message));
                return (
                    StatusCode::ACCEPTED,
                    json!({"skipped": reason, "message": message}),
                );
            }
        };
        self.create(&key, &trigger, *task, &task_key).await
    }

    /// What `event` makes: the built-in mapper's decision, or the trigger's mapper plugin's
    /// (`spec.mapper`). A plugin that cannot be loaded or fails is the answer to give (`503`
    /// `MapperMissing`, `500` `MapperFailed`), counted.
    pub(crate) async fn map(
        &self,
        trigger: &TaskTrigger,
        event: &Event,
        payload: &[u8],
        delivery: &str,
    ) -> Result<Mapped, Answer> {
        let Some(name) = &trigger.spec.mapper else {
            return Ok(mapper::map(trigger, event, delivery));
        };
        let (draft, key, filtered) = match mapper::decide(trigger, event, delivery) {
            Decision::Refused(mapped) => return Ok(mapped),
            Decision::Drafted {
                task,
                key,
                filtered,
            } => (task, key, filtered),
        };
        let request = mapper_plugin::request(trigger, event, payload, &draft, filtered);
        let outcome = match self.mappers.load(name).await {
            Ok(plugin) => self.mappers.run(plugin, request).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(outcome) => Ok(mapper::apply_plugin(&draft, &key, outcome)),
            Err(error) => {
                let message = format!("spec.mapper {name:?}: {}", error.message);
                self.count(trigger, |d| d.reject(error.reason, &message));
                let status = if error.reason == "MapperMissing" {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                Err((
                    status,
                    json!({"rejected": error.reason, "message": message}),
                ))
            }
        }
    }

    /// For `spec.checkout: PullRequest`: a GitHub comment on a pull request does not say the
    /// pull request's branch, so it is read from GitHub with the trigger's credentials — when
    /// the event passes the filters or a mapper plugin decides (other comments cost no
    /// request). A provider that cannot answer now is a `503` (redeliver); one that refuses is a
    /// skip, `PullRequestUnknown`, with its answer, counted.
    pub(crate) async fn complete_pull_request(
        &self,
        trigger: &TaskTrigger,
        event: &mut Event,
    ) -> Result<(), Answer> {
        if trigger.spec.checkout() != Checkout::PullRequest
            || !event.pull_request
            || event.head_fork.is_some()
            || event.provider != Provider::GitHub
            || trigger.spec.mapper.is_none() && mapper::filters(trigger, event).is_err()
        {
            return Ok(());
        }
        let refused = |message: String| {
            self.count(trigger, |d| d.reject("PullRequestUnknown", &message));
            Err((
                StatusCode::ACCEPTED,
                json!({"skipped": "PullRequestUnknown", "message": message}),
            ))
        };
        let api = match super::api::credentials(&self.client, trigger).await {
            Ok(api) => api,
            Err(error) => {
                return refused(format!(
                    "cannot read pull request {} for spec.checkout: PullRequest: {error}",
                    event.reference()
                ));
            }
        };
        let url = format!(
            "{}/repos/{}/pulls/{}",
            api.url, event.repository, event.number
        );
        match super::api::get(api, url).await {
            Ok((200, pull)) => {
                let text = |v: &Value| v.as_str().map(str::to_owned);
                event.branch = text(&pull["head"]["ref"]);
                event.head_sha = text(&pull["head"]["sha"]);
                event.base_branch = text(&pull["base"]["ref"]);
                event.head_fork = github::head_fork(&pull, &event.repository);
                Ok(())
            }
            Ok((status, _)) if status == 429 || status >= 500 => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("GitHub answered {status} reading pull request {}; redeliver", event.reference())}),
            )),
            Ok((status, body)) => refused(format!(
                "GitHub answered {status} reading pull request {} for spec.checkout: PullRequest: {}",
                event.reference(),
                body["message"].as_str().unwrap_or_default()
            )),
            Err(error) => Err((
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": format!("cannot reach GitHub to read pull request {}: {error}; redeliver", event.reference())}),
            )),
        }
    }

    /// Sets a GitLab event's actor's association from their role in the project (GitLab's
    /// payloads do not say it), read with the trigger's API token and kept for
    /// [`ROLES_FOR`]. Without a token, or when GitLab cannot say, the actor is `NONE`: only
    /// `spec.filter.authors` lets them trigger.
    pub(crate) async fn gitlab_role(&self, trigger: &TaskTrigger, event: &mut Event) {
        let (Some(user), Some(SourceKind::GitLab(gitlab))) =
            (event.actor_id, trigger.spec.source.kind())
        else {
            return;
        };
        let namespace = trigger.namespace().unwrap_or_default();
        let cache_key = (namespace.clone(), gitlab.project.to_ascii_lowercase(), user);
        if let Ok(roles) = self.roles.lock()
            && let Some((at, association)) = roles.get(&cache_key)
            && at.elapsed() < ROLES_FOR
        {
            event.set_actor_association(association);
            return;
        }
        let association = match super::api::credentials(&self.client, trigger).await {
            Ok(api) => {
                let url = format!(
                    "{}/projects/{}/members/all/{user}",
                    api.url,
                    gitlab::project_id(&gitlab.project)
                );
                match super::api::get(api, url).await {
                    Ok((200, member)) => gitlab::association(member["access_level"].as_i64()),
                    Ok((404, _)) => gitlab::association(None),
                    Ok((status, _)) => {
                        tracing::warn!(%status, "GitLab did not say the actor's role; counted as NONE");
                        "NONE"
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the actor's role from GitLab; counted as NONE");
                        "NONE"
                    }
                }
            }
            Err(_) => "NONE",
        };
        if let Ok(mut roles) = self.roles.lock() {
            roles.insert(cache_key, (std::time::Instant::now(), association));
        }
        event.set_actor_association(association);
    }

    /// The trigger and its webhook secret, read at most once per [`CACHE_FOR`] (a busy hook costs
    /// the API server one create per delivery, not three requests); `fresh` reads them again.
    /// A missing trigger or Secret is the answer to give.
    async fn trigger_and_secret(
        &self,
        key: &(String, String),
        fresh: bool,
    ) -> Result<(Arc<TaskTrigger>, Vec<u8>), Answer> {
        if !fresh
            && let Ok(cache) = self.cache.lock()
            && let Some((at, trigger, secret)) = cache.get(key)
            && at.elapsed() < CACHE_FOR
        {
            return Ok((trigger.clone(), secret.clone()));
        }
        let (namespace, name) = (key.0.as_str(), key.1.as_str());
        let triggers: Api<TaskTrigger> = Api::namespaced(self.client.clone(), namespace);
        let trigger = match triggers.get_opt(name).await {
            Ok(Some(trigger)) => Arc::new(trigger),
            Ok(None) => {
                return Err((
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("no TaskTrigger {namespace}/{name}")}),
                ));
            }
            Err(error) => return Err(unavailable("read the TaskTrigger", &error)),
        };
        let Some(secret_ref) = trigger.spec.source.webhook_secret() else {
            return Err((
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "the TaskTrigger has no spec.source"}),
            ));
        };
        let secret_key = secret_ref.key_or("secret");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = match secrets.get_opt(&secret_ref.name).await {
            Ok(secret) => secret
                .and_then(|s| s.data)
                .and_then(|mut d| d.remove(secret_key)),
            Err(error) => return Err(unavailable("read the webhook Secret", &error)),
        };
        let Some(secret) = secret else {
            let message = format!(
                "Secret {:?} (key {secret_key:?}) of {} does not exist: no delivery can be authenticated",
                secret_ref.name,
                secret_path(&trigger)
            );
            self.book.count(key, |d| {
                d.reject("SecretMissing", &message);
                d.condition("Ready", "False", "SecretMissing", &message);
            });
            return Err((StatusCode::SERVICE_UNAVAILABLE, json!({"error": message})));
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                key.clone(),
                (std::time::Instant::now(), trigger.clone(), secret.0.clone()),
            );
        }
        Ok((trigger, secret.0))
    }

    /// Creates the Task of an event, as the trigger's concurrency policy says.
    pub(crate) async fn create(
        &self,
        key: &(String, String),
        trigger: &TaskTrigger,
        task: Task,
        task_key: &str,
    ) -> Answer {
        let tasks: Api<Task> = Api::namespaced(self.client.clone(), &key.0);
        let name = task.name_any();
        let policy = trigger.spec.concurrency();
        // A redelivery is a duplicate before it is a concurrent event of its issue (with
        // `Allow`, the create's own `AlreadyExists` says so at no extra request).
        if policy != ConcurrencyPolicy::Allow {
            match tasks.get_opt(&name).await {
                Ok(Some(_)) => {
                    self.book.count(key, |d| d.duplicate += 1);
                    return (StatusCode::OK, json!({"duplicate": name}));
                }
                Ok(None) => {}
                Err(error) => return unavailable("read the Task", &error),
            }
        }
        if policy != ConcurrencyPolicy::Allow {
            let selector = format!(
                "{}={},{}={task_key}",
                trigger_labels::TRIGGER,
                kubetask_api::naming::job_name(&key.1),
                trigger_labels::KEY
            );
            let running: Vec<Task> =
                match tasks.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => list
                        .items
                        .into_iter()
                        .filter(|t| {
                            !t.status.as_ref().is_some_and(is_finished) && t.spec.cancel.is_none()
                        })
                        .collect(),
                    Err(error) => return unavailable("list the Tasks of the event's key", &error),
                };
            if !running.is_empty() {
                let names: Vec<String> = running.iter().map(|t| t.name_any()).collect();
                if policy == ConcurrencyPolicy::Forbid {
                    let message = format!(
                        "Task {} of the same issue or pull request has not finished (spec.concurrencyPolicy Forbid)",
                        names.join(", ")
                    );
                    self.book.count(key, |d| d.reject("Forbidden", &message));
                    return (
                        StatusCode::ACCEPTED,
                        json!({"skipped": "Forbidden", "message": message}),
                    );
                }
                for old in &names {
                    let cancel = json!({"spec": {"cancel": {"reason": format!("replaced by {name}, created for a newer event of the same issue or pull request")}}});
                    if let Err(error) = tasks
                        .patch(old, &PatchParams::default(), &Patch::Merge(&cancel))
                        .await
                    {
                        return unavailable("cancel the Task it replaces", &error);
                    }
                }
            }
        }
        match tasks.create(&PostParams::default(), &task).await {
            Ok(_) => {
                self.book.count(key, |d| d.accepted += 1);
                (StatusCode::CREATED, json!({"task": name}))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.book.count(key, |d| d.duplicate += 1);
                (StatusCode::OK, json!({"duplicate": name}))
            }
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                let message = format!("the Task the template makes is invalid: {}", status.message);
                self.book.count(key, |d| d.reject("InvalidTask", &message));
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"rejected": "InvalidTask", "message": message}),
                )
            }
            Err(error) => unavailable("create the Task", &error),
        }
    }

    /// Counts `change` against `trigger`, for its status.
    pub(crate) fn count(&self, trigger: &TaskTrigger, change: impl FnOnce(&mut Delta)) {
        let key = (trigger.namespace().unwrap_or_default(), trigger.name_any());
        self.book.count(&key, change);
    }

    /// Whether the trigger's webhook secret can be read: the message saying why not.
    pub(crate) async fn webhook_secret(&self, trigger: &TaskTrigger) -> Result<(), String> {
        let Some(secret_ref) = trigger.spec.source.webhook_secret() else {
            return Err("the TaskTrigger has no spec.source".to_owned());
        };
        let key = secret_ref.key_or("secret");
        let secrets: Api<Secret> = Api::namespaced(
            self.client.clone(),
            &trigger.namespace().unwrap_or_default(),
        );
        match secrets.get_opt(&secret_ref.name).await {
            Ok(secret)
                if secret
                    .as_ref()
                    .and_then(|s| s.data.as_ref())
                    .is_some_and(|d| d.contains_key(key)) =>
            {
                Ok(())
            }
            Ok(_) => Err(format!(
                "Secret {:?} (key {key:?}) of {} does not exist: no delivery can be authenticated",
                secret_ref.name,
                secret_path(trigger)
            )),
            Err(error) => Err(format!("cannot read the webhook's Secret: {error}")),
        }
    }

    /// Writes what was counted to the triggers' status, until the process ends.
    pub async fn flush_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(FLUSH_EVERY).await;
            self.flush().await;
        }
    }

    /// Writes what was counted to the triggers' status; what cannot be written is kept for
    /// the next time.
    pub async fn flush(&self) {
        for (key, delta) in self.book.take() {
            let triggers: Api<TaskTrigger> = Api::namespaced(self.client.clone(), &key.0);
            if let Err(error) = write_status(&triggers, &key.1, &delta).await {
                tracing::warn!(trigger = %format!("{}/{}", key.0, key.1), %error, "cannot write the TaskTrigger's status; retrying");
                self.book.count(&key, |d| d.merge(delta));
            }
        }
    }
}

/// One delivery, as received.
pub struct Delivery {
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The provider's id of the delivery (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`), for
    /// the Task's annotation.
    pub fn id(&self) -> String {
        self.header("x-github-delivery")
            .or_else(|| self.header("x-gitlab-event-uuid"))
            .or_else(|| self.header("x-request-id"))
            .unwrap_or_default()
    }
}

/// Checks a delivery's signature or token as the trigger's source says, before anything of
/// it is parsed: the time it was signed at (generic webhooks with a timestamp), or the reason
/// and message of the refusal.
fn authenticate(
    trigger: &TaskTrigger,
    secret: &[u8],
    delivery: &Delivery,
) -> Result<Option<i64>, (&'static str, String)> {
    match trigger.spec.source.kind() {
        Some(SourceKind::GitHub(_)) => github::verify_signature(
            secret,
            &delivery.body,
            delivery.header("x-hub-signature-256").as_deref(),
        )
        .map(|()| None)
        .map_err(|e| ("SignatureInvalid", e.to_string())),
        Some(SourceKind::GitLab(_)) => {
            gitlab::verify_token(secret, delivery.header("x-gitlab-token").as_deref())
                .map(|()| None)
                .map_err(|e| ("SignatureInvalid", e.to_string()))
        }
        Some(SourceKind::Webhook(webhook)) => {
            let now = k8s_openapi::jiff::Timestamp::now().as_second();
            webhook::verify(
                &webhook.hmac,
                secret,
                |name| delivery.header(name),
                &delivery.body,
                now,
            )
            .map_err(|e| (e.reason(), e.to_string()))
        }
        None => Err(("SignatureInvalid", "the trigger has no source".to_owned())),
    }
}

/// What an authentic delivery holds.
pub(crate) enum Parsed {
    Event(Box<Event>),
    /// GitHub's `ping` on a new webhook.
    Ping,
}

/// Reads an authentic delivery's event; a refusal is its status, reason and message.
pub(crate) fn parse(
    trigger: &TaskTrigger,
    delivery: &Delivery,
    timestamp: Option<i64>,
) -> Result<Parsed, (StatusCode, &'static str, String)> {
    let malformed = |message: String| (StatusCode::BAD_REQUEST, "MalformedPayload", message);
    let not_taken = |kind: &str, events: &[String]| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "EventNotTaken",
            format!(
                "event {kind:?} is not one of {}.events {events:?}",
                trigger.spec.source.path()
            ),
        )
    };
    match trigger.spec.source.kind() {
        Some(SourceKind::GitHub(source)) => {
            let Some(kind) = delivery.header("x-github-event") else {
                return Err(malformed("no X-GitHub-Event header".to_owned()));
            };
            if kind == "ping" {
                return Ok(Parsed::Ping);
            }
            if !source.events.contains(&kind) {
                return Err(not_taken(&kind, &source.events));
            }
            github::parse(&kind, &delivery.body)
                .map(|e| Parsed::Event(Box::new(e)))
                .map_err(malformed)
        }
        Some(SourceKind::GitLab(source)) => {
            let Some(header) = delivery.header("x-gitlab-event") else {
                return Err(malformed("no X-Gitlab-Event header".to_owned()));
            };
            let Some(kind) =
                gitlab::event_kind(&header).filter(|kind| source.events.iter().any(|e| e == kind))
            else {
                return Err(not_taken(&header, &source.events));
            };
            gitlab::parse(kind, &delivery.body)
                .map(|e| Parsed::Event(Box::new(e)))
                .map_err(malformed)
        }
        Some(SourceKind::Webhook(source)) => webhook::parse(source, &delivery.body, timestamp)
            .map(|e| Parsed::Event(Box::new(e)))
            .map_err(malformed),
        None => Err(malformed("the trigger has no source".to_owned())),
    }
}

/// The path of the trigger's webhook secret, for messages.
fn secret_path(trigger: &TaskTrigger) -> String {
    match trigger.spec.source.kind() {
        Some(SourceKind::Webhook(_)) => "spec.source.webhook.hmac.secretRef".to_owned(),
        _ => format!("{}.webhookSecretRef", trigger.spec.source.path()),
    }
}

fn hook_of(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/hooks/")?;
    let (namespace, name) = rest.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && !s.contains('/') && s.len() <= 253;
    (valid(namespace) && valid(name)).then_some((namespace, name))
}

fn unavailable(what: &str, error: &kube::Error) -> Answer {
    tracing::warn!(%error, "cannot {what}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": format!("cannot {what}: {error}; redeliver")}),
    )
}

/// Counts not yet written, per trigger.
#[derive(Default)]
struct StatusBook(Mutex<HashMap<(String, String), Delta>>);

#[derive(Default, Clone)]
pub(crate) struct Delta {
    received: i64,
    accepted: i64,
    duplicate: i64,
    rejected: BTreeMap<String, i64>,
    last_event: Option<Time>,
    last_error: Option<String>,
    /// Conditions to set, by type: status, reason, message.
    conditions: BTreeMap<&'static str, (&'static str, &'static str, String)>,
    /// `status.source` and `status.events`, for `kubectl get`.
    summary: Option<(String, String)>,
    /// `status.polledUntil`.
    polled_until: Option<Time>,
}

impl Delta {
    pub(crate) fn reject(&mut self, reason: &str, message: &str) {
        *self.rejected.entry(reason.to_owned()).or_default() += 1;
        self.last_error = Some(format!(
            "{reason}: {}",
            message.chars().take(900).collect::<String>()
        ));
    }

    /// Sets condition `type_` when the delta is written.
    pub(crate) fn condition(
        &mut self,
        type_: &'static str,
        status: &'static str,
        reason: &'static str,
        message: &str,
    ) {
        self.conditions
            .insert(type_, (status, reason, message.to_owned()));
    }

    /// Sets `status.polledUntil` (never backwards).
    pub(crate) fn polled_until(&mut self, at: Time) {
        if self.polled_until.as_ref().is_none_or(|t| t.0 < at.0) {
            self.polled_until = Some(at);
        }
    }

    /// Sets `status.source` and `status.events`.
    pub(crate) fn summarize(&mut self, summary: (String, String)) {
        self.summary = Some(summary);
    }

    fn merge(&mut self, older: Delta) {
        self.received += older.received;
        self.accepted += older.accepted;
        self.duplicate += older.duplicate;
        for (reason, n) in older.rejected {
            *self.rejected.entry(reason).or_default() += n;
        }
        self.last_event = self.last_event.take().or(older.last_event);
        self.last_error = self.last_error.take().or(older.last_error);
        self.summary = self.summary.take().or(older.summary);
        if let Some(at) = older.polled_until {
            self.polled_until(at);
        }
        for (type_, condition) in older.conditions {
            self.conditions.entry(type_).or_insert(condition);
        }
    }
}

impl StatusBook {
    fn count(&self, key: &(String, String), change: impl FnOnce(&mut Delta)) {
        if let Ok(mut book) = self.0.lock() {
            change(book.entry(key.clone()).or_default());
        }
    }

    fn take(&self) -> Vec<((String, String), Delta)> {
        self.0
            .lock()
            .map(|mut book| book.drain().collect())
            .unwrap_or_default()
    }
}

/// Adds `delta` to the trigger's status (read, add, write with its resourceVersion; a
/// conflict is read again).
async fn write_status(
    triggers: &Api<TaskTrigger>,
    name: &str,
    delta: &Delta,
) -> Result<(), kube::Error> {
    for _ in 0..5 {
        let Some(mut trigger) = triggers.get_opt(name).await? else {
            return Ok(());
        };
        let mut status: TaskTriggerStatus = trigger.status.take().unwrap_or_default();
        status.received += delta.received;
        status.accepted += delta.accepted;
        status.duplicate += delta.duplicate;
        for (reason, n) in &delta.rejected {
            *status.rejected.entry(reason.clone()).or_default() += n;
        }
        if delta.last_event.is_some() {
            status.last_event_time.clone_from(&delta.last_event);
        }
        if delta.last_error.is_some() {
            status.last_error.clone_from(&delta.last_error);
        }
        for (type_, (state, reason, message)) in &delta.conditions {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let since = status
                .conditions
                .iter()
                .find(|c| c.type_ == *type_ && c.status == *state)
                .map_or(now, |c| c.last_transition_time.clone());
            status.conditions.retain(|c| c.type_ != *type_);
            status.conditions.push(Condition {
                type_: (*type_).to_owned(),
                status: (*state).to_owned(),
                reason: (*reason).to_owned(),
                message: message.clone(),
                observed_generation: trigger.metadata.generation,
                last_transition_time: since,
            });
            status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        if let Some(at) = &delta.polled_until
            && status.polled_until.as_ref().is_none_or(|t| t.0 < at.0)
        {
            status.polled_until = Some(at.clone());
        }
        if let Some((source, events)) = &delta.summary {
            status.source = Some(source.clone());
            status.events = Some(events.clone());
            status.observed_generation = trigger.metadata.generation;
        }
        trigger.status = Some(status);
        match triggers
            .replace_status(name, &PostParams::default(), &trigger)
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Serves deliveries (and the probe port) until SIGTERM, then writes the last counts.
pub async fn serve_until_stopped(receiver: Arc<Receiver>, options: &Options) -> anyhow::Result<()> {
    tokio::spawn(receiver.clone().flush_forever());
    let ready = Arc::new(AtomicBool::new(true));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut registry = Registry::with_prefix("kubetask");
    registry.register(
        "trigger_deliveries",
        "Deliveries answered by the events receiver, by HTTP status",
        receiver.deliveries.clone(),
    );
    let metrics: crate::controller::health::MetricsText = Arc::new(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .ok()
            .map(|()| text)
    });
    let probes =
        crate::controller::health::serve_with(options.metrics_address, ready, metrics, stopped)
            .await
            .with_context(|| format!("binding {}", options.metrics_address))?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, probes = %probes, "events receiver ready");
    let serve = serve(receiver.clone(), listener);
    tokio::select! {
        () = serve => {}
        () = crate::controller::termination() => {
            tracing::info!("termination signal: writing the last counts");
        }
    }
    receiver.flush().await;
    let _ = stop.send(true);
    Ok(())
}

/// Serves deliveries on `listener` until the process ends (HTTP/1.1, one task per connection).
pub async fn serve(receiver: Arc<Receiver>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let receiver = receiver.clone();
                async move {
                    let (status, body) = receiver.handle(request).await;
                    Response::builder()
                        .status(status)
                        .header("Content-Type", "application/json")
                        .body(Full::new(Bytes::from(body.to_string())))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
