//! The CronTask executor: observes a CronTask and its runs (the Tasks it owns, from the Task
//! cache), asks [`super::cron_rules`] what to do at the clock's "now", and does it: cancels
//! (`Replace`), deletes (history), creates the due run, writes the status, publishes Events,
//! and wakes at the next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kubetask_api::{CronTask, Task};
use serde_json::json;

use super::cron_rules::{self, Decision, Note, Run};
use super::failure;
use crate::cron::{self as schedule, Clock, Trigger};

/// What a CronTask reconcile needs.
pub struct Context {
    pub client: kube::Client,
    /// The controller's Task cache (runs are found by their controller owner reference).
    pub tasks: Store<Task>,
    pub clock: Clock,
    pub reporter: Reporter,
    /// Warnings go through one recorder, which folds repeats into a series.
    pub recorder: Recorder,
    /// Failed reconciles in a row, by CronTask uid (for the backoff and the log's rate).
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: kube::Client, tasks: Store<Task>, clock: Clock, reporter: Reporter) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            tasks,
            clock,
            reporter,
            failures: Mutex::default(),
        }
    }
}

/// A request that failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
#[error("{action} {name}: {source}")]
pub struct Error {
    action: &'static str,
    name: String,
    #[source]
    source: kube::Error,
}

fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The CronTask's runs, as the Task cache holds them.
fn runs(cron_task: &CronTask, tasks: &Store<Task>) -> Vec<Run> {
    let uid = cron_task.metadata.uid.as_deref().unwrap_or_default();
    let namespace = cron_task.namespace();
    tasks
        .state()
        .iter()
        .filter(|task| task.namespace() == namespace && schedule::is_run_of(task, uid))
        .map(|task| Run::of(task))
        .collect()
}

/// Reconciles one CronTask.
pub async fn reconcile(cron_task: Arc<CronTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Until the Task cache has listed, a CronTask would seem to have no runs. (Not one long
    // `wait_until_ready`: with several waiters on one cache, only the last one polled is woken.)
    if super::caches::listed(&ctx.tasks, Duration::from_secs(10)).await
        == super::caches::Listed::NotYet
    {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = cron_task.namespace().unwrap_or_default();
    let name = cron_task.name_any();
    let now = ctx.clock.now();
    let mut decision = cron_rules::decide(&cron_task, &runs(&cron_task, &ctx.tasks), now);
    tracing::debug!(
        cron_task = %name,
        %now,
        create = ?decision.create.as_ref().map(|planned| &planned.name),
        cancel = ?decision.cancel,
        delete = ?decision.delete,
        wake_at = ?decision.wake_at,
        "CronTask decided"
    );
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), &namespace);
    let fail = |action: &'static str, name: &str| {
        let name = name.to_owned();
        move |source| Error {
            action,
            name,
            source,
        }
    };

    for run in &decision.cancel {
        let reason =
            format!("replaced by a newer run of CronTask {name} (concurrencyPolicy: Replace)");
        let patch = json!({"spec": {"cancel": {"reason": reason}}});
        match tasks
            .patch(run, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(error) if code(&error) == Some(404) => {}
            Err(error) => return Err(fail("cancelling Task", run)(error)),
        }
    }
    for run in &decision.delete {
        match tasks.delete(run, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(error) if code(&error) == Some(404) => {}
            Err(error) => return Err(fail("deleting Task", run)(error)),
        }
    }
    if let Some(planned) = decision.create.clone() {
        let task = schedule::task_for_run(
            &cron_task,
            planned.name.clone(),
            Trigger::Scheduled(planned.scheduled),
        );
        match tasks.create(&PostParams::default(), &task).await {
            Ok(created) => {
                for active in &mut decision.status.active {
                    if active.name == planned.name {
                        active.uid = created.uid().unwrap_or_default();
                    }
                }
            }
            // Created already: by this controller before a restart, or by another replica.
            Err(error) if code(&error) == Some(409) => {}
            // The API server refuses the Task: the template needs fixing, and retrying the
            // same Task cannot help. The tick is skipped and the condition says why.
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                let previous = cron_task
                    .status
                    .as_ref()
                    .and_then(|status| status.last_schedule_time.clone());
                refused(&mut decision, previous, &status.message, now);
            }
            Err(error) => return Err(fail("creating Task", &planned.name)(error)),
        }
    }
    for note in &decision.notes {
        publish(&ctx, &cron_task, note);
    }
    if cron_task.status.as_ref() != Some(&decision.status) {
        let api: Api<CronTask> = Api::namespaced(ctx.client.clone(), &namespace);
        // A merge patch keeps what it does not name: an emptied list must be named to go.
        let mut status = serde_json::to_value(&decision.status).unwrap_or_default();
        if let Some(fields) = status.as_object_mut() {
            fields.entry("active").or_insert(serde_json::Value::Null);
        }
        let patch = json!({ "status": status });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // Deleted meanwhile: nothing left to report on.
            Err(error) if code(&error) == Some(404) => return Ok(Action::await_change()),
            Err(error) => return Err(fail("writing the status of CronTask", &name)(error)),
        }
    }
    if let Some(uid) = cron_task.uid()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&uid);
    }
    Ok(match decision.wake_at {
        Some(at) => {
            let until = at.duration_since(now).unsigned_abs();
            Action::requeue(ctx.clock.wait(until))
        }
        None => Action::await_change(),
    })
}

/// A run the API server refused: the tick is skipped, with the server's words.
fn refused(decision: &mut Decision, previous: Option<Time>, message: &str, now: jiff::Timestamp) {
    let Some(planned) = decision.create.take() else {
        return;
    };
    let status = &mut decision.status;
    status.active.retain(|run| run.name != planned.name);
    status.last_schedule_time = previous;
    status.last_skipped_time = Some(Time(planned.scheduled));
    let message = format!(
        "spec.taskTemplate: the API server refused the Task {}: {message}",
        planned.name
    );
    for condition in &mut status.conditions {
        if condition.type_ == cron_rules::SCHEDULED {
            condition.status = "False".to_owned();
            condition.reason = "InvalidTemplate".to_owned();
            condition.message = message.clone();
            condition.last_transition_time = Time(now);
        }
    }
    decision.notes.retain(|note| note.reason != "RunCreated");
    decision.notes.push(Note {
        warning: true,
        reason: "InvalidTemplate",
        message,
    });
}

/// Publishes an Event on the CronTask, in the background.
fn publish(ctx: &Context, cron_task: &CronTask, note: &Note) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.to_owned(),
        note: Some(note.message.chars().take(1024).collect()),
        action: "Schedule".to_owned(),
        secondary: None,
    };
    // A Normal Event happens once per run: a recorder of its own keeps nothing afterwards.
    let recorder = if note.warning {
        ctx.recorder.clone()
    } else {
        Recorder::new(ctx.client.clone(), ctx.reporter.clone())
    };
    let reference = cron_task.object_ref(&());
    let name = cron_task.name_any();
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::debug!(%error, cron_task = %name, "publishing an Event");
        }
    });
}

/// A reconcile that failed is retried with backoff (0.5 s doubling to 5 min); from the third
/// failure in a row it is logged (then at every doubling) and published as a Warning Event.
pub fn error_policy(cron_task: Arc<CronTask>, error: &Error, ctx: Arc<Context>) -> Action {
    let uid = cron_task.uid().unwrap_or_default();
    let attempts = ctx.failures.lock().map_or(1, |mut failures| {
        let count = failures.entry(uid).or_insert(0);
        *count = count.saturating_add(1);
        *count
    });
    if attempts >= failure::VISIBLE_AFTER && attempts.is_power_of_two()
        || attempts == failure::VISIBLE_AFTER
    {
        tracing::warn!(cron_task = %cron_task.name_any(), namespace = ?cron_task.namespace(), attempts, %error, "CronTask reconcile failing; retrying with backoff");
        publish(
            &ctx,
            &cron_task,
            &Note {
                warning: true,
                reason: "ScheduleFailed",
                message: format!("{error} (attempt {attempts}; retrying with backoff)"),
            },
        );
    } else {
        tracing::debug!(cron_task = %cron_task.name_any(), attempts, %error, "CronTask reconcile failed");
    }
    Action::requeue(failure::backoff(attempts, None, 0.5))
}

/// The CronTask that owns a Task, for a Task's change (a run finished, was deleted) to
/// reconcile it.
pub fn owner(task: &Task) -> Option<ObjectRef<CronTask>> {
    let (name, _) = schedule::owner_of(task)?;
    Some(ObjectRef::new(name).within(&task.namespace().unwrap_or_default()))
}
