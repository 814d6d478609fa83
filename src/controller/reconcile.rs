//! One reconciliation of one Task: observe (Job, Agent, ConfigMaps), act (render, create the
//! ConfigMaps and the Job), then write the status the observation implies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kubetask_api::{API_VERSION, Agent, PluginRef, Task, TaskPhase, TaskStatus, naming};
use serde_json::json;
use thiserror::Error;

use super::children::{self, Created, FIELD_MANAGER};
use super::metrics::Metrics;
use super::plugins::{Registry, StageError};
use super::references::{self, ConfigMapUse};
use super::status::{self, Observation, reason};
use crate::plugin::PluginError;
use crate::render::{Pipeline, RenderError, resolve_agent};

/// A reconciliation that must be retried (the API server failed or was unreachable).
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the Task has no {0}")]
    MissingField(&'static str),
    #[error("the render task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("not ready: {0}")]
    NotReady(&'static str),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_reason(&self) -> String {
        match self {
            Self::Api(kube::Error::Api(status)) => format!("Api{}", status.code),
            Self::Api(_) => "ApiUnreachable".to_owned(),
            Self::MissingField(_) => "MissingField".to_owned(),
            Self::Join(_) => "RenderPanicked".to_owned(),
            Self::NotReady(_) => "NotReady".to_owned(),
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: kube::Client,
    pub pipeline: Arc<Pipeline>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The Tasks the controller watches (to forget statuses of deleted Tasks).
    pub tasks: Store<Task>,
    /// The installed plugins.
    pub plugins: Arc<Registry>,
    /// The Jobs it created, from its watch (a miss is confirmed with a GET).
    pub jobs: Store<Job>,
    /// The Agents, from their watch (a miss is confirmed with a GET).
    pub agents: Store<Agent>,
    /// The status this replica last wrote for each Task uid. The controller is the only
    /// writer of Task status, so this is at least as fresh as the watch cache, which may not
    /// have seen the last write yet; without it, a reconcile started from a stale cache
    /// would repeat a transition (and its Event).
    pub written: Mutex<HashMap<String, TaskStatus>>,
}

impl Context {
    /// The Task's status as last written (by this replica), else as cached.
    fn current_status(&self, task: &Task, uid: &str) -> TaskStatus {
        let written = self.written.lock().ok().and_then(|w| w.get(uid).cloned());
        written.or_else(|| task.status.clone()).unwrap_or_default()
    }

    fn remember(&self, uid: &str, status: TaskStatus) {
        let Ok(mut written) = self.written.lock() else {
            return;
        };
        written.insert(uid.to_owned(), status);
        // Forget deleted Tasks now and then.
        if written.len() > 2 * self.tasks.len() + 1024 {
            let live: std::collections::HashSet<String> =
                self.tasks.state().iter().filter_map(|t| t.uid()).collect();
            written.retain(|uid, _| live.contains(uid));
        }
    }
}

/// Reconciles one Task.
pub async fn reconcile(task: Arc<Task>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile();
    let uid = task.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let mut task = task;
    let current = ctx.current_status(&task, &uid);
    if task.status.as_ref() != Some(&current) {
        Arc::make_mut(&mut task).status = Some(current);
    }
    if task.metadata.deletion_timestamp.is_some() || status::is_finished(&task) {
        return Ok(Action::await_change());
    }
    let namespace = task
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let job_name = naming::job_name(&task.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // A Task never reconciled before has no Job, unless a previous run died between creating
    // it and writing the status: creating it then fails with 409 and adopts it.
    let never_reconciled = task
        .status
        .as_ref()
        .is_none_or(|s| *s == TaskStatus::default());
    let cached = ctx.jobs.get(&ObjectRef::new(&job_name).within(&namespace));
    let job = match cached {
        Some(job) => Some(job.as_ref().clone()),
        None if never_reconciled => None,
        None => jobs.get_opt(&job_name).await?,
    };
    let observation = match job {
        Some(job) if children::controlled_by(&job.metadata, &uid) => {
            Observation::Job(Box::new(job))
        }
        Some(job) if children::controlled_by_previous(&job.metadata, &task.name_any(), &uid) => {
            previous_incarnation("Job", &job_name)
        }
        Some(job) => Observation::Failed {
            reason: reason::NAME_CONFLICT,
            message: format!(
                "Job {job_name:?} already exists and is not controlled by this Task (controller: {}); delete or rename it",
                job.metadata
                    .owner_references
                    .as_ref()
                    .and_then(|r| r.first())
                    .map_or("none".to_owned(), |r| format!("{} {:?}", r.kind, r.name))
            ),
        },
        None if task
            .status
            .as_ref()
            .and_then(|s| s.job_name.as_ref())
            .is_some() =>
        {
            Observation::JobMissing {
                job_name: job_name.clone(),
            }
        }
        None => start(&task, &namespace, &uid, &ctx).await?,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = status::next_status(&task, &job_name, &observation, &now);
    write_status(&task, &namespace, &uid, next, &ctx).await?;
    Ok(Action::await_change())
}

/// The Task has no Job yet: resolve its Agent, check what it reads, render, create.
async fn start(
    task: &Arc<Task>,
    namespace: &str,
    uid: &str,
    ctx: &Context,
) -> Result<Observation, Error> {
    let agent_name = references::agent_name(task);
    let agent = match ctx
        .agents
        .get(&ObjectRef::new(agent_name).within(namespace))
    {
        Some(agent) => Some(agent.as_ref().clone()),
        None => {
            Api::<Agent>::namespaced(ctx.client.clone(), namespace)
                .get_opt(agent_name)
                .await?
        }
    };
    let agent = match resolve_agent(task, |name| agent.as_ref().filter(|a| a.name_any() == name)) {
        Ok(agent) => agent.cloned(),
        Err(missing) => {
            return Ok(Observation::Waiting {
                reason: reason::AGENT_NOT_FOUND,
                message: format!("{missing}; the Task starts when it is created"),
            });
        }
    };
    if let Some(waiting) = missing_config_map(
        &ctx.client,
        namespace,
        &references::config_map_uses(task, agent.as_ref()),
    )
    .await?
    {
        return Ok(waiting);
    }
    if !ctx.plugins.ready().await {
        return Err(Error::NotReady("the plugin ConfigMaps are not listed yet"));
    }
    // Loading a plugin may compile it (seconds, once per digest) and rendering runs wasm:
    // both stay off the async workers.
    let registry = ctx.plugins.clone();
    let base = ctx.pipeline.clone();
    let to_render = task.clone();
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        let stages = registry.stages(agent.as_ref())?;
        Ok::<_, StageError>(base.extended(stages).render(&to_render, agent.as_ref()))
    })
    .await?;
    let rendered = match outcome {
        Ok(rendered) => rendered,
        Err(StageError::NotFound {
            agent,
            plugin,
            namespace,
        }) => {
            return Ok(Observation::Waiting {
                reason: reason::PLUGIN_NOT_FOUND,
                message: format!(
                    "Agent {agent:?} spec.plugins: plugin {plugin:?} is not installed (no ConfigMap {plugin:?} labelled kubetask.io/plugin in namespace {namespace:?}); the Task starts when it is"
                ),
            });
        }
        Err(StageError::Load(message)) => {
            return Ok(Observation::Failed {
                reason: reason::PLUGIN_ERROR,
                message,
            });
        }
    };
    ctx.metrics.render(started.elapsed().as_secs_f64());
    let rendered = match rendered {
        Ok(rendered) => rendered,
        Err(error) => return Ok(render_failure(&error)),
    };
    for warning in &rendered.warnings {
        publish(ctx, task, EventType::Normal, "RenderWarning", warning);
    }
    match children::create(
        &ctx.client,
        namespace,
        &task.name_any(),
        uid,
        &rendered.config_maps,
        &rendered.job,
    )
    .await?
    {
        Created::Owned(job) => {
            let rendered_by = rendered
                .plugins
                .iter()
                .map(|(name, digest)| PluginRef {
                    name: name.clone(),
                    digest: digest.clone(),
                })
                .collect();
            Ok(Observation::Created {
                job: Box::new(job),
                rendered_by,
            })
        }
        Created::Conflict {
            kind,
            name,
            previous: true,
            ..
        } => Ok(previous_incarnation(kind, &name)),
        Created::Conflict {
            kind, name, owner, ..
        } => Ok(Observation::Failed {
            reason: reason::NAME_CONFLICT,
            message: format!(
                "{kind} {name:?} already exists and is not controlled by this Task (controller: {owner}); delete or rename it"
            ),
        }),
    }
}

/// A child of a deleted Task of the same name is still there; Kubernetes deletes it.
fn previous_incarnation(kind: &str, name: &str) -> Observation {
    Observation::Waiting {
        reason: reason::PREVIOUS_TASK_CLEANUP,
        message: format!(
            "{kind} {name:?} belongs to a deleted Task of the same name; the Task starts when Kubernetes has deleted it"
        ),
    }
}

/// The first ConfigMap or key that must exist and does not.
async fn missing_config_map(
    client: &kube::Client,
    namespace: &str,
    uses: &[ConfigMapUse],
) -> Result<Option<Observation>, Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for used in uses.iter().filter(|u| !u.optional) {
        let Some(map) = maps.get_opt(&used.name).await? else {
            return Ok(Some(Observation::Waiting {
                reason: reason::CONFIG_MAP_NOT_FOUND,
                message: format!(
                    "{}: ConfigMap {:?} not found in namespace {namespace:?}; the Task starts when it is created",
                    used.field, used.name
                ),
            }));
        };
        if let Some(key) = &used.key {
            let present = map.data.as_ref().is_some_and(|d| d.contains_key(key))
                || map
                    .binary_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(key));
            if !present {
                return Ok(Some(Observation::Waiting {
                    reason: reason::CONFIG_MAP_KEY_NOT_FOUND,
                    message: format!(
                        "{}: ConfigMap {:?} has no key {key:?}; the Task starts when it is added",
                        used.field, used.name
                    ),
                }));
            }
        }
    }
    Ok(None)
}

fn render_failure(error: &RenderError) -> Observation {
    let (reason, message) = match error {
        RenderError::Plugin(PluginError::InvalidInput { .. }) => {
            (reason::INVALID_SPEC, error.to_string())
        }
        RenderError::Plugin(PluginError::Denied { .. }) => {
            (reason::POLICY_DENIED, error.to_string())
        }
        _ => (reason::PLUGIN_ERROR, error.to_string()),
    };
    Observation::Failed { reason, message }
}

/// Writes the status through the status subresource (server-side apply, one field manager)
/// when it changed, and emits an Event for each transition.
async fn write_status(
    task: &Task,
    namespace: &str,
    uid: &str,
    next: TaskStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let previous = task.status.clone().unwrap_or_default();
    if previous == next {
        return Ok(());
    }
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({"apiVersion": API_VERSION, "kind": "Task", "status": next});
    tasks
        .patch_status(
            &task.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    ctx.remember(uid, next.clone());
    let before = (
        previous.phase,
        status::condition_reason(&previous).map(str::to_owned),
    );
    let after = (
        next.phase,
        status::condition_reason(&next).map(str::to_owned),
    );
    if before != after {
        let why = after.1.clone().unwrap_or_default();
        let message = next
            .conditions
            .first()
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let failing = matches!(next.phase, Some(TaskPhase::Failed))
            || matches!(
                why.as_str(),
                reason::AGENT_NOT_FOUND
                    | reason::CONFIG_MAP_NOT_FOUND
                    | reason::CONFIG_MAP_KEY_NOT_FOUND
                    | reason::PLUGIN_NOT_FOUND
            );
        if failing {
            ctx.metrics.error(&why);
        }
        let kind = if failing {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, task, kind, &why, &message);
    }
    Ok(())
}

/// Publishes an Event in the background: the reconcile does not wait for it.
fn publish(ctx: &Context, task: &Task, kind: EventType, reason: &str, note: &str) {
    let event = Event {
        type_: kind,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    let recorder = ctx.recorder.clone();
    let reference = task.object_ref(&());
    let name = task.name_any();
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::warn!(%error, task = %name, "publishing an Event");
        }
    });
}

/// Failed reconciliations are retried with a short delay (the controller also rate-limits).
pub fn error_policy(task: Arc<Task>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(&error.metric_reason());
    tracing::warn!(task = %task.name_any(), namespace = ?task.namespace(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500))
}
