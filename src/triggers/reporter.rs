//! Reporting back (`spec.report`): a comment on the issue or pull request when a trigger's
//! Task is created, edited with its result when it ends (`PerTask`; `Sticky`: one comment per
//! issue, found again by a hidden marker and edited by each of its Tasks), and a reaction on
//! the comment that triggered it. Runs in the receiver
//! from a watch of the Tasks triggers created. Several replicas may watch the same Task: the
//! one whose write of the `report-comment` annotation (`claimed`, on the Task's
//! resourceVersion) succeeds posts the comment, the others see the annotation and leave it; the
//! final edit is idempotent. API failures are retried with backoff and never touch the Task's
//! run.

use std::sync::Arc;
use std::time::Duration;

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

/// Reports on `task` what is due: the reaction on the triggering comment, the first comment,
/// or the result.
pub async fn report(receiver: &Receiver, client: &kube::Client, task: &Task) -> anyhow::Result<()> {
    let annotations = task.annotations();
    let done = annotations.get(trigger_labels::REPORT_DONE).is_some();
    let comment = annotations.get(trigger_labels::REPORT_COMMENT).cloned();
    let finished = task.status.as_ref().is_some_and(is_finished);
    let react = annotations.contains_key(trigger_labels::COMMENT)
        && !annotations.contains_key(trigger_labels::REACTED);
    let comment_due =
        !done && comment.as_deref() != Some("claimed") && (comment.is_none() || finished);
    let check = annotations.get(trigger_labels::CHECK_RUN).cloned();
    let check_due = annotations.contains_key(trigger_labels::HEAD_SHA)
        && !annotations.contains_key(trigger_labels::CHECK_DONE)
        && check.as_deref() != Some("claimed")
        && (check.is_none() || finished);
    if !react && !comment_due && !check_due {
        return Ok(());
    }
    let Some(trigger) = owner(client, task).await? else {
        return Ok(());
    };
    let report = trigger.spec.report.clone().unwrap_or_default();
    let mode = report.comment.unwrap_or_default();
    let react = react && report.reaction.is_some();
    let comment_due = comment_due && mode != CommentMode::None;
    let check_due = check_due && report.check_run.is_some();
    let Some(target) = annotations
        .get(trigger_labels::ISSUE)
        .and_then(|issue| Target::parse(issue))
    else {
        return Ok(());
    };
    if !react && !comment_due && !check_due {
        return Ok(());
    }
    let namespace = task.namespace().unwrap_or_default();
    let api = match api::credentials(client, &trigger).await {
        Ok(api) => api,
        Err(error) => {
            receiver.count(&trigger, |d| {
                d.condition(
                    "CredentialsValid",
                    "False",
                    error.reason(),
                    &error.to_string(),
                );
            });
            anyhow::bail!("spec.report: {error}");
        }
    };
    let gitlab = matches!(trigger.spec.source.kind(), Some(SourceKind::GitLab(_)));
    let tasks: Api<Task> = Api::namespaced(client.clone(), &namespace);
    let name = task.name_any();
    if react
        && let (Some(reaction), Some(comment_id)) =
            (&report.reaction, annotations.get(trigger_labels::COMMENT))
    {
        let (url, body) = target.reaction(&api.url, gitlab, comment_id, reaction);
        match api::call(&api, "POST", url, body).await {
            // GitLab refuses a second award of the same emoji: it is there.
            Ok(_) | Err(api::CallError::Refused { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        let marks = json!({"metadata": {"annotations": {trigger_labels::REACTED: "done"}}});
        tasks
            .patch(&name, &PatchParams::default(), &Patch::Merge(marks))
            .await?;
    }
    if check_due
        && let (Some(name_of_check), Some(sha)) =
            (&report.check_run, annotations.get(trigger_labels::HEAD_SHA))
    {
        let run = CheckRun {
            api: &api,
            target: &target,
            gitlab,
            name: name_of_check,
            sha,
        };
        if let Err(error) = run.report(&tasks, task, check.as_deref(), finished).await {
            return give_up_or_retry(receiver, &tasks, &trigger, &name, error, CHECK_MARKS).await;
        }
        if comment_due {
            // The check run's write changed the Task: its comment is reported on the next
            // watch event, from the Task as it is now.
            return Ok(());
        }
    }
    if !comment_due {
        return Ok(());
    }
    let marker = (mode == CommentMode::Sticky).then(|| {
        format!(
            "<!-- kubetask:sticky {namespace}/{} -->",
            trigger.name_any()
        )
    });
    let mut body = text(task);
    body.push_str(&format!(
        "\n{}\n",
        marker.as_deref().unwrap_or("<!-- kubetask:report -->")
    ));
    let id = match comment {
        Some(id) => id,
        None => {
            if !claim(&tasks, task, trigger_labels::REPORT_COMMENT).await? {
                return Ok(());
            }
            let sticky = match &marker {
                Some(marker) => find_comment(&api, &target, gitlab, marker).await,
                None => None,
            };
            let posted = match &sticky {
                Some(id) => {
                    let url = target.comment_url(&api.url, gitlab, id);
                    let method = if gitlab { "PUT" } else { "PATCH" };
                    api::call(&api, method, url, json!({"body": body})).await
                }
                None => {
                    let url = target.comments_url(&api.url, gitlab);
                    api::call(&api, "POST", url, json!({"body": body})).await
                }
            };
            let posted = match note_outcome(receiver, &trigger, posted) {
                Ok(posted) => posted,
                Err(error) => {
                    return give_up_or_retry(
                        receiver,
                        &tasks,
                        &trigger,
                        &name,
                        error,
                        COMMENT_MARKS,
                    )
                    .await;
                }
            };
            let id =
                sticky.unwrap_or_else(|| posted["id"].as_i64().unwrap_or_default().to_string());
            return record(&tasks, &name, COMMENT_MARKS, &id, finished).await;
        }
    };
    let url = target.comment_url(&api.url, gitlab, &id);
    let method = if gitlab { "PUT" } else { "PATCH" };
    if let Err(error) = note_outcome(
        receiver,
        &trigger,
        api::call(&api, method, url, json!({"body": body})).await,
    ) {
        return give_up_or_retry(receiver, &tasks, &trigger, &name, error, COMMENT_MARKS).await;
    }
    let marks = json!({"metadata": {"annotations": {trigger_labels::REPORT_DONE: "done"}}});
    tasks
        .patch(&name, &PatchParams::default(), &Patch::Merge(marks))
        .await?;
    Ok(())
}

/// A check run on a pull request's head commit (GitHub), or a commit status (GitLab), that
/// follows a Task.
struct CheckRun<'a> {
    api: &'a api::Credentials,
    target: &'a Target,
    gitlab: bool,
    name: &'a str,
    sha: &'a str,
}

impl CheckRun<'_> {
    /// Creates the check run (claimed on the Task's resourceVersion, so one replica does) or
    /// concludes it with the Task's result.
    async fn report(
        &self,
        tasks: &Api<Task>,
        task: &Task,
        check: Option<&str>,
        finished: bool,
    ) -> anyhow::Result<()> {
        let name = task.name_any();
        if check.is_none() && !claim(tasks, task, trigger_labels::CHECK_RUN).await? {
            return Ok(());
        }
        let (state, conclusion) = conclusion(task);
        let summary = text(task);
        let id = match (check, self.gitlab) {
            (_, true) => {
                let url = format!(
                    "{}/projects/{}/statuses/{}",
                    self.api.url,
                    gitlab::project_id(&self.target.project),
                    self.sha
                );
                let state = if finished { state } else { "running" };
                let description: String = summary
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(140)
                    .collect();
                api::call(
                    self.api,
                    "POST",
                    url,
                    json!({"name": self.name, "state": state, "description": description}),
                )
                .await?;
                "status".to_owned()
            }
            (None, false) => {
                let url = format!("{}/repos/{}/check-runs", self.api.url, self.target.project);
                let mut body = json!({
                    "name": self.name, "head_sha": self.sha, "external_id": name,
                    "status": "in_progress",
                    "output": {"title": "KubeTask", "summary": summary},
                });
                if finished {
                    body["status"] = json!("completed");
                    body["conclusion"] = json!(conclusion);
                }
                let created = api::call(self.api, "POST", url, body).await?;
                created["id"].as_i64().unwrap_or_default().to_string()
            }
            (Some(id), false) => {
                let url = format!(
                    "{}/repos/{}/check-runs/{id}",
                    self.api.url, self.target.project
                );
                api::call(
                    self.api,
                    "PATCH",
                    url,
                    json!({"status": "completed", "conclusion": conclusion,
                           "output": {"title": "KubeTask", "summary": summary}}),
                )
                .await?;
                id.to_owned()
            }
        };
        record(tasks, &name, CHECK_MARKS, &id, finished).await
    }
}

/// Marks on Task `name` the id of what reports on it (`marks.claim`) and, once it is
/// `finished`, that the report is done.
async fn record(
    tasks: &Api<Task>,
    name: &str,
    marks: Marks,
    id: &str,
    finished: bool,
) -> anyhow::Result<()> {
    let mut annotations = json!({marks.claim: id});
    if finished {
        annotations[marks.done] = json!("done");
    }
    tasks
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await?;
    Ok(())
}

/// Claims the report `annotation` of `task` (`claimed`, written on its resourceVersion): only
/// the replica whose write lands reports. False when another replica's did.
async fn claim(tasks: &Api<Task>, task: &Task, annotation: &str) -> anyhow::Result<bool> {
    let mut claimed = task.clone();
    claimed
        .annotations_mut()
        .insert(annotation.to_owned(), "claimed".to_owned());
    claimed.status = None;
    match tasks
        .replace(&task.name_any(), &PostParams::default(), &claimed)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// A finished Task's result as a GitLab commit status and a GitHub check run conclusion.
fn conclusion(task: &Task) -> (&'static str, &'static str) {
    let status = task.status.clone().unwrap_or_default();
    match (status.phase, condition_reason(&status)) {
        (Some(TaskPhase::Completed), _) => ("success", "success"),
        (_, Some("Cancelled")) => ("canceled", "cancelled"),
        (_, Some("Timeout")) => ("failed", "timed_out"),
        _ => ("failed", "failure"),
    }
}

/// How long a report that kept failing waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// What a failed report is about: the annotations of its claim (or id) and of its end.
#[derive(Clone, Copy)]
struct Marks {
    claim: &'static str,
    done: &'static str,
}

const COMMENT_MARKS: Marks = Marks {
    claim: trigger_labels::REPORT_COMMENT,
    done: trigger_labels::REPORT_DONE,
};
const CHECK_MARKS: Marks = Marks {
    claim: trigger_labels::CHECK_RUN,
    done: trigger_labels::CHECK_DONE,
};

/// After a failed report: a refusal (4xx) is final — the Task's `done` annotation says
/// `failed` and the trigger's `lastError` why; anything else is tried again after
/// [`RETRY_AFTER`]: a claim not yet turned into an id is released, and the Task is marked
/// (`kubetask.io/report-retry`) so the watch sees it again, whichever replica takes it.
async fn give_up_or_retry(
    receiver: &Receiver,
    tasks: &Api<Task>,
    trigger: &TaskTrigger,
    name: &str,
    error: anyhow::Error,
    marks: Marks,
) -> anyhow::Result<()> {
    let refused = matches!(
        error.downcast_ref::<api::CallError>(),
        Some(api::CallError::Refused { .. })
    );
    let message = format!("reporting on Task {name}: {error}");
    receiver.count(trigger, |d| d.reject("ReportFailed", &message));
    let patch = if refused {
        json!({"metadata": {"annotations": {marks.done: "failed"}}})
    } else {
        tokio::time::sleep(RETRY_AFTER).await;
        let claimed = tasks.get_opt(name).await.ok().flatten().is_some_and(|t| {
            t.annotations().get(marks.claim).map(String::as_str) == Some("claimed")
        });
        let mut annotations = json!({RETRY: k8s_openapi::jiff::Timestamp::now().to_string()});
        if claimed {
            annotations[marks.claim] = Value::Null;
        }
        json!({"metadata": {"annotations": annotations}})
    };
    let _ = tasks
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await;
    Err(error)
}

/// Annotation: when a failed report was last tried again.
const RETRY: &str = "kubetask.io/report-retry";

/// The id of the issue's comment holding `marker` (a sticky report), among its latest 100.
async fn find_comment(
    api: &api::Credentials,
    target: &Target,
    gitlab: bool,
    marker: &str,
) -> Option<String> {
    let mut url = target.comments_url(&api.url, gitlab);
    url.push_str(if gitlab {
        "?per_page=100&sort=desc&order_by=created_at"
    } else {
        "?per_page=100"
    });
    let (status, comments) = api::get(api.clone(), url).await.ok()?;
    if status != 200 {
        return None;
    }
    comments
        .as_array()?
        .iter()
        .find(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)))
        .and_then(|c| c["id"].as_i64())
        .map(|id| id.to_string())
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

    /// Where and what to POST for `reaction` on comment `id`.
    fn reaction(&self, api: &str, gitlab: bool, id: &str, reaction: &str) -> (String, Value) {
        if gitlab {
            let name = match reaction {
                "+1" => "thumbsup",
                "-1" => "thumbsdown",
                "laugh" => "laughing",
                "hooray" => "tada",
                other => other,
            };
            (
                format!("{}/award_emoji", self.comment_url(api, gitlab, id)),
                json!({"name": name}),
            )
        } else {
            (
                format!(
                    "{api}/repos/{}/issues/comments/{id}/reactions",
                    self.project
                ),
                json!({"content": reaction}),
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
