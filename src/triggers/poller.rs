//! Polling (`poll` of a GitHub or GitLab source), for clusters the provider cannot reach: the
//! open issues of the repository, read from the REST API with `If-None-Match` (an unchanged
//! list is a `304` that costs no rate limit), each read as an issue-opened event and handed to
//! the same mapper and the same create as a webhook delivery — so a polled issue and its
//! webhook delivery make one Task (the same name). A spent rate limit
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
    etag: Option<String>,
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
            match poll_once(&receiver, &client, &trigger, remembered.etag.clone()).await {
                Ok(Polled { etag, wait }) => {
                    if etag.is_some() {
                        remembered.etag = etag;
                    }
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

struct Polled {
    etag: Option<String>,
    /// Wait this long (the rate limit is spent).
    wait: Option<Duration>,
}

/// One poll of `trigger`: its repository's open issues, those new to it made Tasks.
async fn poll_once(
    receiver: &Receiver,
    client: &kube::Client,
    trigger: &TaskTrigger,
    etag: Option<String>,
) -> anyhow::Result<Polled> {
    let credentials = api::credentials(client, trigger).await?;
    let (url, gitlab_project) = match trigger.spec.source.kind() {
        Some(SourceKind::GitHub(github)) => (
            format!(
                "{}/repos/{}/issues?state=open&sort=updated&direction=desc&per_page=100",
                credentials.url, github.repository
            ),
            None,
        ),
        Some(SourceKind::GitLab(gitlab)) => (
            format!(
                "{}/projects/{}/issues?state=opened&order_by=updated_at&sort=desc&per_page=100",
                credentials.url,
                gitlab::project_id(&gitlab.project)
            ),
            Some(gitlab.project.clone()),
        ),
        _ => anyhow::bail!("only GitHub and GitLab sources poll"),
    };
    let mut headers = Vec::new();
    if let Some(etag) = etag {
        headers.push(("If-None-Match", etag));
    }
    let answer = api::request(
        &credentials,
        "GET",
        url.clone(),
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
        .and_then(|reset| reset.parse::<u64>().ok())
        .map(|reset| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            Duration::from_secs(reset.saturating_sub(now))
        });
    let issues = match answer.status {
        304 => {
            polled(receiver, trigger, "unchanged since the last poll");
            return Ok(Polled { etag: None, wait });
        }
        200..=299 => answer.body.as_array().cloned().unwrap_or_default(),
        403 | 429 if wait.is_some() => {
            polled(
                receiver,
                trigger,
                "the rate limit is spent: waiting for its reset",
            );
            return Ok(Polled { etag: None, wait });
        }
        401 => {
            let message = format!("GET {url}: 401: the provider refused the API token");
            receiver.count(trigger, |d| {
                d.condition("CredentialsValid", "False", "Refused", &message);
            });
            anyhow::bail!(message);
        }
        other => anyhow::bail!("GET {url}: {other} {}", answer.body),
    };
    receiver.count(trigger, |d| {
        d.condition(
            "CredentialsValid",
            "True",
            "Accepted",
            "the provider took the API token",
        );
    });
    let key = (trigger.namespace().unwrap_or_default(), trigger.name_any());
    let count = issues.len();
    for issue in issues {
        let event = match &gitlab_project {
            None => {
                // Pull requests are in the issues list too; they come from webhooks.
                if issue.get("pull_request").is_some() {
                    continue;
                }
                let payload = json!({
                    "action": "opened",
                    "issue": issue,
                    "repository": {"full_name": trigger.spec.source.github.as_ref().map(|g| g.repository.clone())},
                });
                github::parse("issues", payload.to_string().as_bytes())
            }
            Some(project) => gitlab::parse(
                "issue",
                gitlab_issue_event(project, &issue).to_string().as_bytes(),
            ),
        };
        let Ok(mut event) = event else {
            continue;
        };
        if gitlab_project.is_some() {
            receiver.gitlab_role(trigger, &mut event).await;
        }
        let payload = serde_json::to_vec(&issue).unwrap_or_default();
        match receiver.map(trigger, &event, &payload, "poll").await {
            Err(_) => {}
            Ok(Mapped::Task {
                task,
                key: task_key,
            }) => {
                receiver.create(&key, trigger, *task, &task_key).await;
            }
            Ok(Mapped::Skip { .. }) => {}
        }
    }
    polled(receiver, trigger, &format!("{count} open issues read"));
    Ok(Polled {
        etag: header(0),
        wait,
    })
}

/// Records a poll that worked.
fn polled(receiver: &Receiver, trigger: &TaskTrigger, message: &str) {
    receiver.count(trigger, |d| {
        d.condition("Polling", "True", "Polled", message)
    });
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
