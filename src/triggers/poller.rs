//! Polling (`poll` of a GitHub or GitLab source), for clusters the provider cannot reach: the
//! lists of the trigger's events — open issues, open pull (merge) requests, GitHub's issue
//! comments — read from the REST API with `If-None-Match` (an unchanged list is a `304` that
//! costs no rate limit), each item read as the event its webhook would have delivered
//! (`opened`, `created`) and handed to the same mapper and the same create as a delivery — so a
//! polled item and its webhook delivery make one Task (the same name). Only items created since
//! the last poll (`status.polledUntil`, less an overlap) are new, so an item whose Task was
//! deleted is not made one again. A spent rate limit
//! (`X-RateLimit-Remaining: 0`, GitLab's `RateLimit-Remaining`) waits for its reset. Every
//! replica polls; the API server keeps one Task per event. Each poll's outcome is the
//! trigger's `Polling` condition.
//!
//! The same loop keeps every trigger's `Ready` and `CredentialsValid` conditions and its
//! `kubectl get` columns current: when its generation changes, and every [`SWEEP_EVERY`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::{Api, ResourceExt as _};
use kubetask_api::TaskTrigger;
use kubetask_api::lifecycle::parse_duration;
use kubetask_api::task_trigger::SourceKind;
use serde_json::{Value, json};

use super::api::{self, CredentialsError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::mapper::Mapped;
use super::receiver::Receiver;
use super::{github, gitlab};

/// How often the triggers are listed to find those due (each is polled at its own interval):
/// one list a tick per replica.
const TICK: Duration = Duration::from_secs(2);
/// How often a trigger's Secrets are checked again for its conditions.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// What the poller remembers of a trigger between ticks.
#[derive(Default)]
struct Memory {
    next: Option<Instant>,
    /// The ETag of each list's last answer.
    etags: HashMap<List, String>,
    swept: Option<(Instant, Option<i64>)>,
}

/// Polls the triggers that ask for it, and keeps the conditions of all, until the process
/// ends.
pub async fn run(receiver: Arc<Receiver>, client: kube::Client, namespace: Option<String>) {
    let triggers: Api<TaskTrigger> = match &namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let mut memory: HashMap<String, Memory> = HashMap::new();
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(TICK).await;
        }
        first = false;
        let listed = match triggers.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                tracing::warn!(%error, "cannot list the TaskTriggers to poll");
                continue;
            }
        };
        for trigger in listed {
            let key = format!(
                "{}/{}/{}",
                trigger.namespace().unwrap_or_default(),
                trigger.name_any(),
                trigger.uid().unwrap_or_default()
            );
            let remembered = memory.entry(key).or_default();
            let generation = trigger.metadata.generation;
            if remembered
                .swept
                .is_none_or(|(at, seen)| seen != generation || at.elapsed() >= SWEEP_EVERY)
            {
                remembered.swept = Some((Instant::now(), generation));
                sweep(&receiver, &client, &trigger).await;
            }
            let Some(poll) = trigger.spec.source.poll().cloned() else {
                continue;
            };
            if remembered.next.is_some_and(|next| Instant::now() < next) {
                continue;
            }
            let interval = parse_duration(&poll.interval).unwrap_or(Duration::from_secs(300));
            remembered.next = Some(Instant::now() + interval);
            match poll_once(&receiver, &client, &trigger, remembered).await {
                Ok(Polled { wait }) => {
                    if let Some(wait) = wait {
                        remembered.next = Some(Instant::now() + wait.max(interval));
                    }
                }
                Err(error) => {
                    tracing::warn!(trigger = %trigger.name_any(), %error, "polling failed; retrying at the next interval");
                    receiver.count(&trigger, |d| {
                        d.condition("Polling", "False", "PollFailed", &format!("{error:#}"));
                    });
                }
            }
        }
    }
}

/// Sets the trigger's `Ready` (its webhook secret readable, not suspended) and
/// `CredentialsValid` (its API token present, where it has one or needs one) and its
/// `kubectl get` columns, where they differ from its status.
async fn sweep(receiver: &Receiver, client: &kube::Client, trigger: &TaskTrigger) {
    let status = trigger.status.clone().unwrap_or_default();
    let current = |type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let mut changes: Vec<(&'static str, &'static str, &'static str, String)> = Vec::new();
    let ready = match receiver.webhook_secret(trigger).await {
        Err(message) => ("False", "SecretMissing", message),
        Ok(()) if trigger.spec.suspended() => (
            "False",
            "Suspended",
            "spec.suspend is true: events are refused".to_owned(),
        ),
        Ok(()) => (
            "True",
            "Receiving",
            format!(
                "deliveries to /hooks/{}/{} are authenticated and mapped",
                trigger.namespace().unwrap_or_default(),
                trigger.name_any()
            ),
        ),
    };
    changes.push(("Ready", ready.0, ready.1, ready.2));
    let needs_api = trigger.spec.source.poll().is_some()
        || trigger
            .spec
            .report
            .as_ref()
            .and_then(|r| r.comment)
            .unwrap_or_default()
            != kubetask_api::task_trigger::CommentMode::None;
    match api::credentials(client, trigger).await {
        Ok(_) => {
            // Present; whether the provider takes it is known once it is used.
            let known = current("CredentialsValid")
                .is_some_and(|(_, reason)| reason == "Accepted" || reason == "Refused");
            if !known {
                changes.push((
                    "CredentialsValid",
                    "True",
                    "Found",
                    "the API token's Secret is present".to_owned(),
                ));
            }
        }
        Err(CredentialsError::NoApi) => {}
        Err(error @ CredentialsError::NoToken(_)) if needs_api => changes.push((
            "CredentialsValid",
            "False",
            "NoToken",
            format!("{error}, which spec.report and poll need"),
        )),
        Err(CredentialsError::NoToken(_)) => {}
        Err(error @ CredentialsError::SecretMissing { .. }) => {
            changes.push((
                "CredentialsValid",
                "False",
                "SecretMissing",
                error.to_string(),
            ));
        }
        Err(error @ CredentialsError::App(_)) => {
            changes.push(("CredentialsValid", "False", "Refused", error.to_string()));
        }
        Err(error @ CredentialsError::Kube(_)) => {
            tracing::warn!(trigger = %trigger.name_any(), %error, "cannot check the trigger's API token");
        }
    }
    let summary = trigger.spec.source.summary();
    let summary_changed = status.source.as_deref() != Some(summary.0.as_str())
        || status.events.as_deref() != Some(summary.1.as_str())
        || status.observed_generation != trigger.metadata.generation;
    changes.retain(|(type_, state, reason, _)| {
        current(type_) != Some(((*state).to_owned(), (*reason).to_owned()))
    });
    if changes.is_empty() && !summary_changed {
        return;
    }
    receiver.count(trigger, |d| {
        for (type_, state, reason, message) in &changes {
            d.condition(type_, state, reason, message);
        }
        d.summarize(summary);
    });
}

/// A list the poller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum List {
    /// GitHub's open issues.
    Issues,
    /// GitHub's open pull requests.
    Pulls,
    /// GitHub's issue comments.
    Comments,
    /// GitLab's open issues.
    ProjectIssues,
    /// GitLab's open merge requests.
    MergeRequests,
}

impl List {
    /// The lists of `trigger`'s events.
    fn of(trigger: &TaskTrigger) -> Vec<List> {
        let takes = |events: &[String], kind: &str| events.iter().any(|e| e == kind);
        match trigger.spec.source.kind() {
            Some(SourceKind::GitHub(github)) => [
                (takes(&github.events, "issues"), List::Issues),
                (takes(&github.events, "pull_request"), List::Pulls),
                (takes(&github.events, "issue_comment"), List::Comments),
            ]
            .into_iter()
            .filter_map(|(taken, list)| taken.then_some(list))
            .collect(),
            Some(SourceKind::GitLab(gitlab)) => [
                (takes(&gitlab.events, "issue"), List::ProjectIssues),
                (takes(&gitlab.events, "merge_request"), List::MergeRequests),
            ]
            .into_iter()
            .filter_map(|(taken, list)| taken.then_some(list))
            .collect(),
            _ => Vec::new(),
        }
    }

    /// Where it is read, with items changed `since` (comments).
    fn url(self, api: &str, project: &str, since: Option<Timestamp>) -> String {
        let gitlab = gitlab::project_id(project);
        match self {
            List::Issues => format!(
                "{api}/repos/{project}/issues?state=open&sort=updated&direction=desc&per_page=100"
            ),
            List::Pulls => format!(
                "{api}/repos/{project}/pulls?state=open&sort=updated&direction=desc&per_page=100"
            ),
            List::Comments => format!(
                "{api}/repos/{project}/issues/comments?sort=updated&direction=desc&per_page=100{}",
                since.map(|t| format!("&since={t}")).unwrap_or_default()
            ),
            List::ProjectIssues => format!(
                "{api}/projects/{gitlab}/issues?state=opened&order_by=updated_at&sort=desc&per_page=100"
            ),
            List::MergeRequests => format!(
                "{api}/projects/{gitlab}/merge_requests?state=opened&order_by=updated_at&sort=desc&per_page=100"
            ),
        }
    }
}

struct Polled {
    /// Wait this long (the rate limit is spent).
    wait: Option<Duration>,
}

/// How far back a poll looks before the last one began: de-duplication absorbs the overlap.
const OVERLAP: i64 = 600;

/// One poll of `trigger`: its lists, what is new in them made Tasks through the mapper and the
/// receiver's create, as a delivery would be.
async fn poll_once(
    receiver: &Receiver,
    client: &kube::Client,
    trigger: &TaskTrigger,
    memory: &mut Memory,
) -> anyhow::Result<Polled> {
    let credentials = api::credentials(client, trigger).await?;
    let project = match trigger.spec.source.kind() {
        Some(SourceKind::GitHub(github)) => github.repository.clone(),
        Some(SourceKind::GitLab(gitlab)) => gitlab.project.clone(),
        _ => anyhow::bail!("only GitHub and GitLab sources poll"),
    };
    let started = Timestamp::now();
    let status = trigger.status.clone().unwrap_or_default();
    // Items created before this are not new (unset: every open item is).
    let cutoff = status
        .polled_until
        .map(|t| t.0.as_second() - OVERLAP)
        .and_then(|s| Timestamp::from_second(s).ok());
    // Comments are events, not state: the first poll takes those since the trigger exists.
    let comments_since =
        cutoff.or_else(|| trigger.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let key = (trigger.namespace().unwrap_or_default(), trigger.name_any());
    let mut wait: Option<Duration> = None;
    let mut read = 0;
    // Why an item could not be made into its Task now, if one could not.
    let mut again: Option<Value> = None;
    for list in List::of(trigger) {
        if wait.is_some() {
            break;
        }
        let since = if list == List::Comments {
            comments_since
        } else {
            None
        };
        let url = list.url(&credentials.url, &project, since);
        let etag = memory.etags.get(&list).cloned();
        let fetched = fetch(receiver, trigger, &credentials, &url, etag).await?;
        let Some(items) = fetched.items else {
            wait = fetched.wait;
            continue;
        };
        let mut unmade = None;
        let floor = if list == List::Comments {
            comments_since
        } else {
            cutoff
        };
        let mut issues: HashMap<String, Value> = HashMap::new();
        for item in items {
            let created = item["created_at"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok());
            if let (Some(floor), Some(created)) = (floor, created)
                && created < floor
            {
                continue;
            }
            let Some((mut event, payload)) =
                event_of(list, &project, &item, &credentials, &mut issues).await
            else {
                continue;
            };
            read += 1;
            if event.provider == super::event::Provider::GitLab {
                receiver.gitlab_role(trigger, &mut event).await;
            }
            let payload = serde_json::to_vec(&payload).unwrap_or_default();
            let answer = match receiver.complete_pull_request(trigger, &mut event).await {
                Err(answer) => answer,
                Ok(()) => match receiver.map(trigger, &event, &payload, "poll").await {
                    Ok(Mapped::Task {
                        task,
                        key: task_key,
                    }) => receiver.create(&key, trigger, *task, &task_key).await,
                    Ok(Mapped::Skip { .. }) => continue,
                    Err(answer) => answer,
                },
            };
            // Not now (the API server, the provider or a mapper plugin unavailable): the list
            // is read again at the next poll, and the Task's name makes it one Task whatever
            // is read twice.
            if answer.0 == hyper::StatusCode::SERVICE_UNAVAILABLE {
                unmade = Some(answer.1);
            }
        }
        match unmade {
            None => {
                if let Some(etag) = fetched.etag {
                    memory.etags.insert(list, etag);
                }
            }
            Some(error) => {
                memory.etags.remove(&list);
                again = Some(error);
            }
        }
    }
    receiver.count(trigger, |d| {
        d.condition(
            "CredentialsValid",
            "True",
            "Accepted",
            "the provider took the API token",
        );
        match wait {
            // Not every list was read: the next poll takes up from the same watermark.
            Some(wait) => d.condition(
                "Polling",
                "True",
                "RateLimited",
                &format!(
                    "the API's rate limit is spent: polling resumes in {}s, when it resets",
                    wait.as_secs()
                ),
            ),
            None => match &again {
                // The watermark stays: the next poll reads the same items again.
                Some(error) => d.condition(
                    "Polling",
                    "True",
                    "Retrying",
                    &format!(
                        "{read} new items read; some could not be made into Tasks now and are read again at the next poll: {}",
                        error["error"]
                            .as_str()
                            .or(error["message"].as_str())
                            .unwrap_or_default()
                    ),
                ),
                None => {
                    d.condition(
                        "Polling",
                        "True",
                        "Polled",
                        &format!("{read} new items read"),
                    );
                    d.polled_until(Time(started));
                }
            },
        }
    });
    Ok(Polled { wait })
}

/// One list as fetched: its items (none when unchanged or rate-limited), its ETag, how long
/// to wait for the rate limit.
struct Fetched {
    items: Option<Vec<Value>>,
    etag: Option<String>,
    wait: Option<Duration>,
}

async fn fetch(
    receiver: &Receiver,
    trigger: &TaskTrigger,
    credentials: &api::Credentials,
    url: &str,
    etag: Option<String>,
) -> anyhow::Result<Fetched> {
    let mut headers = Vec::new();
    if let Some(etag) = etag {
        headers.push(("If-None-Match", etag));
    }
    let answer = api::request(
        credentials,
        "GET",
        url.to_owned(),
        None,
        headers,
        &[
            "etag",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "ratelimit-remaining",
            "ratelimit-reset",
        ],
    )
    .await?;
    let header = |i: usize| answer.headers.get(i).cloned().flatten();
    let remaining = header(1).or_else(|| header(3));
    let wait = (remaining.as_deref() == Some("0"))
        .then(|| header(2).or_else(|| header(4)))
        .flatten()
        .and_then(|reset| reset.parse::<i64>().ok())
        .map(|reset| {
            Duration::from_secs(u64::try_from(reset - Timestamp::now().as_second()).unwrap_or(0))
        });
    match answer.status {
        304 => Ok(Fetched {
            items: None,
            etag: None,
            wait,
        }),
        200..=299 => Ok(Fetched {
            items: Some(answer.body.as_array().cloned().unwrap_or_default()),
            etag: header(0),
            wait,
        }),
        403 | 429 if wait.is_some() => Ok(Fetched {
            items: None,
            etag: None,
            wait,
        }),
        401 => {
            let message = format!("GET {url}: 401: the provider refused the API token");
            receiver.count(trigger, |d| {
                d.condition("CredentialsValid", "False", "Refused", &message);
            });
            anyhow::bail!(message);
        }
        other => anyhow::bail!("GET {url}: {other} {}", answer.body),
    }
}

/// The event an item of `list` is (and the payload a webhook would have delivered), as its
/// webhook would have delivered it: an open issue or pull request `opened`, a comment
/// `created` (its issue read once per poll). `None`: not an item of its kind.
async fn event_of(
    list: List,
    project: &str,
    item: &Value,
    credentials: &api::Credentials,
    issues: &mut HashMap<String, Value>,
) -> Option<(super::event::Event, Value)> {
    let repository = json!({"full_name": project});
    let (kind, payload) = match list {
        // Pull requests are in the issues list too: they are read from theirs.
        List::Issues if item.get("pull_request").is_some() => return None,
        List::Issues => (
            "issues",
            json!({"action": "opened", "issue": item, "repository": repository}),
        ),
        List::Pulls => (
            "pull_request",
            json!({"action": "opened", "pull_request": item, "repository": repository}),
        ),
        List::Comments => {
            let issue_url = item["issue_url"].as_str()?.to_owned();
            let issue = match issues.get(&issue_url) {
                Some(issue) => issue.clone(),
                None => {
                    let (status, issue) = api::get(credentials.clone(), issue_url.clone())
                        .await
                        .ok()?;
                    if status != 200 {
                        return None;
                    }
                    issues.insert(issue_url, issue.clone());
                    issue
                }
            };
            (
                "issue_comment",
                json!({"action": "created", "comment": item, "issue": issue, "repository": repository}),
            )
        }
        List::ProjectIssues => {
            let payload = gitlab_issue_event(project, item);
            return gitlab::parse("issue", payload.to_string().as_bytes())
                .ok()
                .map(|e| (e, payload));
        }
        List::MergeRequests => {
            let payload = gitlab_merge_request_event(project, item);
            return gitlab::parse("merge_request", payload.to_string().as_bytes())
                .ok()
                .map(|e| (e, payload));
        }
    };
    github::parse(kind, payload.to_string().as_bytes())
        .ok()
        .map(|e| (e, payload))
}

/// A GitLab issue of the REST API as the `issue` `open` event of a webhook.
fn gitlab_issue_event(project: &str, issue: &Value) -> Value {
    json!({
        "object_kind": "issue",
        "user": issue["author"],
        "project": {"path_with_namespace": project},
        "object_attributes": {
            "id": issue["id"],
            "iid": issue["iid"],
            "title": issue["title"],
            "description": issue["description"],
            "url": issue["web_url"],
            "action": "open",
        },
        "labels": issue["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| json!({"title": l}))
            .collect::<Vec<_>>(),
    })
}

/// A GitLab merge request of the REST API as the `merge_request` `open` event of a webhook.
fn gitlab_merge_request_event(project: &str, merge_request: &Value) -> Value {
    json!({
        "object_kind": "merge_request",
        "user": merge_request["author"],
        "project": {"path_with_namespace": project},
        "object_attributes": {
            "id": merge_request["id"],
            "iid": merge_request["iid"],
            "title": merge_request["title"],
            "description": merge_request["description"],
            "url": merge_request["web_url"],
            "source_branch": merge_request["source_branch"],
            "target_branch": merge_request["target_branch"],
            "source_project_id": merge_request["source_project_id"],
            "target_project_id": merge_request["target_project_id"],
            "last_commit": {"id": merge_request["sha"]},
            "action": "open",
        },
        "labels": merge_request["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| json!({"title": l}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_polled_gitlab_issue_reads_as_its_webhook_event() {
        let issue = json!({"id": 301, "iid": 23, "title": "New API", "description": "Create new API",
            "web_url": "https://gitlab.example/g/p/-/issues/23", "labels": ["kubetask"],
            "author": {"id": 51, "username": "ann"}});
        let event = gitlab::parse(
            "issue",
            gitlab_issue_event("g/p", &issue).to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.reference(), "g/p#23");
        assert_eq!(
            event.identity, "issue.open.issue-301",
            "the webhook's identity: one Task"
        );
        assert_eq!(event.labels, ["kubetask"]);
        assert_eq!((event.author.as_str(), event.actor_id), ("ann", Some(51)));
    }
}
