//! Reporting back (`spec.report.comment: PerTask`): a comment on the issue or pull request
//! when a trigger's Task is created, edited with its result when it ends. Runs in the receiver
//! from a watch of the Tasks triggers created. Several replicas may watch the same Task: the
//! one whose write of the `report-comment` annotation (`claimed`, on the Task's
//! resourceVersion) succeeds posts the comment, the others see the annotation and leave it; the
//! final edit is idempotent. API failures are retried with backoff and never touch the Task's
//! run.

use std::sync::Arc;

use futures::StreamExt as _;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use kubetask_api::task_trigger::{CommentMode, SourceKind, trigger_labels};
use kubetask_api::{Task, TaskPhase, TaskTrigger};
use serde_json::{Value, json};

use super::receiver::Receiver;
use super::{api, gitlab};
use crate::controller::status::{condition_reason, is_finished};

/// Watches the Tasks of triggers (in `namespace`, else all) and reports on them until the
/// process ends.
pub async fn run(receiver: Arc<Receiver>, client: kube::Client, namespace: Option<String>) {
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
            let receiver = receiver.clone();
            async move {
                match task {
                    Ok(task) => {
                        if let Err(error) = report(&receiver, &client, &task).await {
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
pub async fn report(receiver: &Receiver, client: &kube::Client, task: &Task) -> anyhow::Result<()> {
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
    let Some(target) = annotations
        .get(trigger_labels::ISSUE)
        .and_then(|issue| Target::parse(issue))
    else {
        return Ok(());
    };
    let namespace = task.namespace().unwrap_or_default();
    let api = match api::credentials(client, &trigger).await {
        Ok(api) => api,
        Err(error) => {
            receiver.count(&trigger, |d| {
                d.condition(
                    "CredentialsValid",
                    "False",
                    "SecretMissing",
                    &error.to_string(),
                );
            });
            anyhow::bail!("spec.report: {error}");
        }
    };
    let gitlab = matches!(trigger.spec.source.kind(), Some(SourceKind::GitLab(_)));
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
            let url = target.comments_url(&api.url, gitlab);
            let posted = note_outcome(
                receiver,
                &trigger,
                api::call(&api, "POST", url, json!({"body": body})).await,
            )?;
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
            let url = target.comment_url(&api.url, gitlab, &id);
            let method = if gitlab { "PUT" } else { "PATCH" };
            note_outcome(
                receiver,
                &trigger,
                api::call(&api, method, url, json!({"body": body})).await,
            )?;
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

/// Records what the provider made of the trigger's token (`CredentialsValid`).
fn note_outcome(
    receiver: &Receiver,
    trigger: &TaskTrigger,
    outcome: Result<Value, api::CallError>,
) -> anyhow::Result<Value> {
    match &outcome {
        Ok(_) => receiver.count(trigger, |d| {
            d.condition(
                "CredentialsValid",
                "True",
                "Accepted",
                "the provider took the API token",
            );
        }),
        Err(error) if error.refused_credentials() => receiver.count(trigger, |d| {
            d.condition("CredentialsValid", "False", "Refused", &error.to_string());
        }),
        Err(_) => {}
    }
    Ok(outcome?)
}

/// The issue or pull request a Task reports to, from its `trigger-issue` annotation.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    project: String,
    number: i64,
    /// A GitLab merge request (`!`), not an issue (`#`).
    merge_request: bool,
}

impl Target {
    fn parse(annotation: &str) -> Option<Target> {
        let at = annotation.rfind(['#', '!'])?;
        Some(Target {
            project: annotation[..at].to_owned(),
            number: annotation[at + 1..].parse().ok()?,
            merge_request: annotation[at..].starts_with('!'),
        })
    }

    /// Where a comment is posted.
    fn comments_url(&self, api: &str, gitlab: bool) -> String {
        if gitlab {
            format!(
                "{api}/projects/{}/{}/{}/notes",
                gitlab::project_id(&self.project),
                if self.merge_request {
                    "merge_requests"
                } else {
                    "issues"
                },
                self.number
            )
        } else {
            format!(
                "{api}/repos/{}/issues/{}/comments",
                self.project, self.number
            )
        }
    }

    /// Where comment `id` is edited.
    fn comment_url(&self, api: &str, gitlab: bool, id: &str) -> String {
        if gitlab {
            format!("{}/{id}", self.comments_url(api, gitlab))
        } else {
            format!("{api}/repos/{}/issues/comments/{id}", self.project)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_go_to_the_issue_or_merge_request_of_the_annotation() {
        let github = Target::parse("o/r#42").unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            github.comments_url("https://api.github.com", false),
            "https://api.github.com/repos/o/r/issues/42/comments"
        );
        assert_eq!(
            github.comment_url("https://api.github.com", false, "7"),
            "https://api.github.com/repos/o/r/issues/comments/7"
        );
        let merge_request = Target::parse("g/sub/p!5").unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            merge_request.comment_url("https://gitlab.com/api/v4", true, "9"),
            "https://gitlab.com/api/v4/projects/g%2Fsub%2Fp/merge_requests/5/notes/9"
        );
        let issue = Target::parse("g/p#5").unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            issue.comments_url("https://gitlab.com/api/v4", true),
            "https://gitlab.com/api/v4/projects/g%2Fp/issues/5/notes"
        );
        assert_eq!(Target::parse("no-number"), None);
        assert_eq!(Target::parse("o/r#x"), None);
    }
}
