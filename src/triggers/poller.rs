//! Polling (`spec.source.github.poll`), for clusters GitHub cannot reach: the open issues of
//! the repository, read from the REST API with `If-None-Match` (an unchanged list is a `304`
//! that costs no rate limit), each read as an `issues.opened` event and handed to the same
//! mapper and the same create as a webhook delivery — so a polled issue and its webhook
//! delivery make one Task (the same name). A `X-RateLimit-Remaining: 0` waits for
//! `X-RateLimit-Reset`. Every replica polls; the API server keeps one Task per event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};
use kubetask_api::TaskTrigger;
use kubetask_api::lifecycle::parse_duration;
use serde_json::{Value, json};

use super::github;
use super::mapper::{self, Mapped};
use super::receiver::Receiver;

/// How often the triggers are listed to find those due (each is polled at its own interval):
/// one list a tick per replica.
const TICK: Duration = Duration::from_secs(2);

/// What the poller remembers of a trigger between polls.
#[derive(Default)]
struct Memory {
    next: Option<Instant>,
    etag: Option<String>,
}

/// Polls the triggers that ask for it until the process ends.
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
            let Some(poll) = trigger.spec.source.github.poll.clone() else {
                continue;
            };
            let key = format!(
                "{}/{}/{}",
                trigger.namespace().unwrap_or_default(),
                trigger.name_any(),
                trigger.uid().unwrap_or_default()
            );
            let remembered = memory.entry(key).or_default();
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
                }
            }
        }
    }
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
    let github = &trigger.spec.source.github;
    let namespace = trigger.namespace().unwrap_or_default();
    let Some(token_ref) = &github.token_secret_ref else {
        anyhow::bail!("spec.source.github.poll needs spec.source.github.tokenSecretRef");
    };
    let token = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(&token_ref.name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(token_ref.key.as_deref().unwrap_or("token")))
        .map(|t| String::from_utf8_lossy(&t.0).trim().to_owned());
    let Some(token) = token else {
        anyhow::bail!(
            "the Secret {:?} of spec.source.github.tokenSecretRef has no token",
            token_ref.name
        );
    };
    let api = github
        .api_url
        .clone()
        .unwrap_or_else(|| "https://api.github.com".to_owned());
    let url = format!(
        "{}/repos/{}/issues?state=open&sort=updated&direction=desc&per_page=100",
        api.trim_end_matches('/'),
        github.repository
    );
    let answer =
        tokio::task::spawn_blocking(move || fetch(&url, &token, etag.as_deref())).await??;
    let Some(issues) = answer.issues else {
        return Ok(Polled {
            etag: None,
            wait: answer.wait,
        });
    };
    let key = (namespace, trigger.name_any());
    for issue in issues {
        // Pull requests are in the issues list too; they come from webhooks.
        if issue.get("pull_request").is_some() {
            continue;
        }
        let payload = json!({
            "action": "opened",
            "issue": issue,
            "repository": {"full_name": github.repository},
        });
        let Ok(event) = github::parse("issues", payload.to_string().as_bytes()) else {
            continue;
        };
        match mapper::map(trigger, &event, "poll") {
            Mapped::Task {
                task,
                key: task_key,
            } => {
                receiver.create(&key, trigger, *task, &task_key).await;
            }
            Mapped::Skip { .. } => {}
        }
    }
    Ok(Polled {
        etag: answer.etag,
        wait: answer.wait,
    })
}

struct Fetched {
    /// `None`: unchanged (`304`) or rate-limited.
    issues: Option<Vec<Value>>,
    etag: Option<String>,
    wait: Option<Duration>,
}

fn fetch(url: &str, token: &str, etag: Option<&str>) -> anyhow::Result<Fetched> {
    let agent = super::github::client();
    let mut request = agent
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .header("Accept", "application/vnd.github+json");
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    let mut response = request.call()?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let wait = (header("x-ratelimit-remaining").as_deref() == Some("0"))
        .then(|| header("x-ratelimit-reset"))
        .flatten()
        .and_then(|reset| reset.parse::<u64>().ok())
        .map(|reset| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            Duration::from_secs(reset.saturating_sub(now))
        });
    let new_etag = header("etag");
    let status = response.status().as_u16();
    match status {
        304 => Ok(Fetched {
            issues: None,
            etag: None,
            wait,
        }),
        200..=299 => {
            let text = response.body_mut().read_to_string()?;
            let issues: Vec<Value> = serde_json::from_str(&text)?;
            Ok(Fetched {
                issues: Some(issues),
                etag: new_etag,
                wait,
            })
        }
        403 | 429 if wait.is_some() => Ok(Fetched {
            issues: None,
            etag: None,
            wait,
        }),
        other => anyhow::bail!("GET {url}: {other}"),
    }
}
