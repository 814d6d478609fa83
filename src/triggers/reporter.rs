//! Reporting back (`spec.report.comment: PerTask`): a comment on the issue or pull request
//! when a trigger's Task is created, edited with its result when it ends. Runs in the receiver
//! from a watch of the Tasks triggers created. Several replicas may watch the same Task: the
//! one whose write of the `report-comment` annotation (`claimed`, on the Task's
//! resourceVersion) succeeds posts the comment, the others see the annotation and leave it; the
//! final edit is idempotent. API failures are retried with backoff and never touch the Task's
//! run.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use kubetask_api::task_trigger::{CommentMode, trigger_labels};
use kubetask_api::{Task, TaskPhase, TaskTrigger};
use serde_json::{Value, json};

use crate::controller::status::{condition_reason, is_finished};

/// Pauses between tries of GitHub's API.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Watches the Tasks of triggers (in `namespace`, else all) and reports on them until the
/// process ends.
pub async fn run(client: kube::Client, namespace: Option<String>) {
    let tasks: Api<Task> = match &namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let config = watcher::Config::default().labels(trigger_labels::TRIGGER);
    watcher::watcher(tasks, config)
        .default_backoff()
        .applied_objects()
        .for_each_concurrent(8, |task| {
            let client = client.clone();
            async move {
                match task {
                    Ok(task) => {
                        if let Err(error) = report(&client, &task).await {
                            tracing::warn!(task = %task.name_any(), %error, "cannot report on the Task");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "watching the Tasks of triggers"),
                }
            }
        })
        .await;
}

/// Reports on `task` what is due: the first comment, or the result.
pub async fn report(client: &kube::Client, task: &Task) -> anyhow::Result<()> {
    let annotations = task.annotations();
    let done = annotations.get(trigger_labels::REPORT_DONE).is_some();
    let comment = annotations.get(trigger_labels::REPORT_COMMENT).cloned();
    let finished = task.status.as_ref().is_some_and(is_finished);
    if done || comment.as_deref() == Some("claimed") || (comment.is_some() && !finished) {
        return Ok(());
    }
    let Some(trigger) = owner(client, task).await? else {
        return Ok(());
    };
    let wants = trigger
        .spec
        .report
        .as_ref()
        .and_then(|r| r.comment)
        .unwrap_or_default();
    if wants != CommentMode::PerTask {
        return Ok(());
    }
    let Some((repository, number)) = annotations
        .get(trigger_labels::ISSUE)
        .and_then(|issue| issue.rsplit_once('#'))
        .and_then(|(repo, n)| Some((repo.to_owned(), n.parse::<i64>().ok()?)))
    else {
        return Ok(());
    };
    let github = &trigger.spec.source.github;
    let Some(token_ref) = &github.token_secret_ref else {
        anyhow::bail!("spec.report needs spec.source.github.tokenSecretRef");
    };
    let namespace = task.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get_opt(&token_ref.name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(token_ref.key.as_deref().unwrap_or("token")));
    let Some(token) = secret else {
        anyhow::bail!(
            "the Secret {:?} of spec.source.github.tokenSecretRef has no token",
            token_ref.name
        );
    };
    let token = String::from_utf8_lossy(&token.0).trim().to_owned();
    let api = github
        .api_url
        .clone()
        .unwrap_or_else(|| "https://api.github.com".to_owned());
    let api = api.trim_end_matches('/').to_owned();
    let tasks: Api<Task> = Api::namespaced(client.clone(), &namespace);
    let body = text(task);
    match comment {
        None => {
            // Claim it: only the replica whose write lands posts the comment.
            let mut claimed = task.clone();
            claimed.annotations_mut().insert(
                trigger_labels::REPORT_COMMENT.to_owned(),
                "claimed".to_owned(),
            );
            claimed.status = None;
            match tasks
                .replace(&task.name_any(), &PostParams::default(), &claimed)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
                Err(error) => return Err(error.into()),
            }
            let url = format!("{api}/repos/{repository}/issues/{number}/comments");
            let posted = call("POST", url, token, json!({"body": body})).await?;
            let id = posted["id"].as_i64().unwrap_or_default().to_string();
            let mut marks = json!({trigger_labels::REPORT_COMMENT: id});
            if finished {
                marks[trigger_labels::REPORT_DONE] = json!("done");
            }
            tasks
                .patch(
                    &task.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": marks}})),
                )
                .await?;
        }
        Some(id) => {
            let url = format!("{api}/repos/{repository}/issues/comments/{id}");
            call("PATCH", url, token, json!({"body": body})).await?;
            let marks = json!({"metadata": {"annotations": {trigger_labels::REPORT_DONE: "done"}}});
            tasks
                .patch(
                    &task.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(marks),
                )
                .await?;
        }
    }
    Ok(())
}

/// The TaskTrigger that controls `task`.
async fn owner(client: &kube::Client, task: &Task) -> anyhow::Result<Option<TaskTrigger>> {
    let Some(owner) = task
        .owner_references()
        .iter()
        .find(|o| o.kind == "TaskTrigger" && o.controller == Some(true))
    else {
        return Ok(None);
    };
    let trigger =
        Api::<TaskTrigger>::namespaced(client.clone(), &task.namespace().unwrap_or_default())
            .get_opt(&owner.name)
            .await?;
    Ok(trigger.filter(|t| t.metadata.uid.as_deref() == Some(owner.uid.as_str())))
}

/// The comment: the Task and, once it ended, its result.
pub fn text(task: &Task) -> String {
    let name = format!(
        "{}/{}",
        task.namespace().unwrap_or_default(),
        task.name_any()
    );
    let status = task.status.clone().unwrap_or_default();
    if !is_finished(&status) {
        return format!("KubeTask is on it: Task `{name}` was created for this.");
    }
    let phase = status.phase.map_or("Finished", TaskPhase::as_str);
    let reason = condition_reason(&status).unwrap_or_default();
    let mut text = format!("KubeTask: Task `{name}` ended **{phase}** ({reason})");
    if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
        let seconds = end.0.as_second() - start.0.as_second();
        text.push_str(&format!(" after {}m{:02}s", seconds / 60, seconds % 60));
    }
    text.push_str(".\n");
    let result = status.result.clone().unwrap_or_default();
    if let Some(pr) = &result.pull_request {
        text.push_str(&format!("\nPull request: {}\n", pr.url));
    }
    if !result.summary.trim().is_empty() {
        let summary: String = result.summary.chars().take(2000).collect();
        text.push_str(&format!("\n> {}\n", summary.trim().replace('\n', "\n> ")));
    }
    if let Some(cost) = status.usage.as_ref().and_then(|u| u.cost.as_deref()) {
        text.push_str(&format!("\nCost: {cost}\n"));
    }
    text
}

/// One call of GitHub's API, retried on 5xx, 429 and network errors.
async fn call(
    method: &'static str,
    url: String,
    token: String,
    body: Value,
) -> anyhow::Result<Value> {
    tokio::task::spawn_blocking(move || {
        let agent = super::github::client();
        let mut pauses = BACKOFF.iter();
        loop {
            let text = body.to_string();
            let request = if method == "POST" {
                agent.post(&url)
            } else {
                agent.patch(&url)
            };
            let answer = request
                .header("Authorization", &format!("Bearer {token}"))
                .header("Accept", "application/vnd.github+json")
                .header("Content-Type", "application/json")
                .send(text.as_bytes())
                .and_then(|mut r| {
                    let status = r.status().as_u16();
                    r.body_mut().read_to_string().map(|t| (status, t))
                });
            let error = match answer {
                Ok((status, text)) if (200..300).contains(&status) => {
                    return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Ok((status, text)) if status < 500 && status != 429 => {
                    anyhow::bail!("GitHub refused {method} {url}: {status} {text}");
                }
                Ok((status, text)) => format!("{status} {text}"),
                Err(error) => error.to_string(),
            };
            let Some(pause) = pauses.next() else {
                anyhow::bail!("GitHub kept failing {method} {url}: {error}");
            };
            std::thread::sleep(*pause);
        }
    })
    .await?
}
