//! One reconciliation of one Task, in three steps a reader can follow:
//!
//! 1. **observe**: a [`Snapshot`] of the Task's world, from the watch-fed stores (misses
//!    confirmed with a GET): its Job or whatever holds the Job's name, and, while it has no
//!    Job, whether its Agent, ConfigMaps and plugins are there;
//! 2. **decide**: the pure [`decide`] turns the snapshot into a [`Plan`];
//! 3. **act**: create the ConfigMaps and Job when the plan says so (and decide again on the
//!    outcome), write the status, emit the Event, and schedule the next look.
//!
//! Every failure is classified ([`Failure`]): transient ones are retried with per-Task
//! backoff and shown on the Task after a few attempts, permanent ones become a condition and
//! wait for a change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{ConfigMap, Pod},
    networking::v1::NetworkPolicy,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kubetask_api::{API_VERSION, Agent, PluginRef, Task, TaskStatus, naming};
use serde_json::json;
use thiserror::Error;

mod act;
mod observe;
#[cfg(test)]
mod tests;

use act::{act, create};
use observe::observe;

use super::admission;
use super::agent_reads::AgentReads;
use super::backoff::{Attempts, Fingerprint, LogBudget};
use super::budget_executor;
use super::caches::{Listed, listed};
use super::children::{self, Created, FIELD_MANAGER};
use super::failure::{self, Class, Failure};
use super::metrics::Metrics;
use super::plugin_registry::{Registry, StageError};
use super::pod_attempts;
use super::status::{self, reason};
use super::task_rules::{self, Child, Plan, Retry, Snapshot, Start, decide};
use super::wait_index::WaitIndex;
use super::work_queue::Action;
use crate::render::needs::{self, ConfigMapUse};
use crate::render::{Pipeline, resolve_agent};

/// A reconciliation that could not run at all (the object is malformed or the render thread
/// died); retried with backoff.
#[derive(Debug, Error)]
pub enum Error {
    #[error("the Task has no {0}")]
    MissingField(&'static str),
    #[error("the render task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// A short label for metrics.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::MissingField(_) => "MissingField",
            Self::Join(_) => "RenderPanicked",
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    pub client: kube::Client,
    pub pipeline: Arc<Pipeline>,
    /// Publishes Warnings: a failure that lasts repeats its Warning, which the recorder folds
    /// into one Event's series (it keeps each Event it published for 6 minutes).
    pub recorder: Recorder,
    /// Who publishes the Events (a lifecycle Event gets a recorder of its own, see `publish`).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    /// The Tasks the controller watches (to forget what it kept about deleted Tasks).
    pub tasks: Store<Task>,
    /// The installed plugins.
    pub plugins: Arc<Registry>,
    /// The Jobs it created, from its watch (a miss is confirmed with a GET).
    pub jobs: Store<Job>,
    /// The Agents, from their watch (a miss is confirmed with a GET).
    pub agents: Store<Agent>,
    /// The GETs that confirm a miss in `agents`, shared by concurrent reconciles.
    pub agent_reads: AgentReads,
    /// The status this replica last wrote for each Task uid. The controller is the only
    /// writer of Task status, so this is at least as fresh as the watch cache, which may not
    /// have seen the last write yet; without it, a reconcile started from a stale cache
    /// would repeat a transition (and its Event).
    pub written: Mutex<HashMap<String, TaskStatus>>,
    /// Tasks without a Job, by what they wait on (the triggers read it).
    pub wait_index: Arc<WaitIndex>,
    /// Failed attempts per Task.
    pub attempts: Attempts,
    /// Failure log lines per minute, however many Tasks fail.
    pub log_budget: LogBudget,
    /// The Job status counts this replica last read pods for, by Task uid: the pods are
    /// listed again only when they change.
    pub seen_jobs: Mutex<HashMap<String, JobCounts>>,
    /// The Tasks this replica admitted from an Agent's queue.
    pub admitted: admission::Admitted,
    /// Every NetworkPolicy, from its watch, when egress is on (the `EgressEnforced` condition).
    pub network_policies: Option<Store<NetworkPolicy>>,
    /// The model gateway meters the Tasks' usage (`--model-gateway-key-file`): `status.usage`
    /// is its ledger, which the controller reads (budgets) and never writes.
    pub metered: bool,
    /// The Budgets (and the clock their periods are read on), when Tasks are admitted
    /// against them (always in the controller; unit tests may leave them out).
    pub budgets: Option<(Store<kubetask_api::Budget>, crate::cron::Clock)>,
    /// The limits a Task's Budgets reserved for it, from its admission to its Job's creation.
    pub budget_caps: Mutex<HashMap<String, kubetask_api::Limits>>,
    /// The size of `written` at which settled Tasks are forgotten next.
    sweep_at: AtomicUsize,
}

/// The least size of `written` at which settled Tasks are forgotten.
const SWEEP_AT_LEAST: usize = 1024;

/// What in a Job's status means its pods changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobCounts {
    active: i32,
    ready: i32,
    failed: i32,
    succeeded: i32,
    conditions: usize,
}

impl JobCounts {
    fn of(job: &Job) -> Self {
        let status = job.status.clone().unwrap_or_default();
        Self {
            active: status.active.unwrap_or(0),
            ready: status.ready.unwrap_or(0),
            failed: status.failed.unwrap_or(0),
            succeeded: status.succeeded.unwrap_or(0),
            conditions: status.conditions.map_or(0, |c| c.len()),
        }
    }
}

impl Context {
    /// Builds the shared context; the rest are defaults.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        pipeline: Arc<Pipeline>,
        reporter: Reporter,
        metrics: Arc<Metrics>,
        tasks: Store<Task>,
        plugins: Arc<Registry>,
        jobs: Store<Job>,
        agents: Store<Agent>,
        wait_index: Arc<WaitIndex>,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            pipeline,
            reporter,
            metrics,
            tasks,
            plugins,
            jobs,
            agents,
            agent_reads: AgentReads::default(),
            written: Mutex::default(),
            wait_index,
            attempts: Attempts::default(),
            log_budget: LogBudget::new(20, Duration::from_secs(60)),
            seen_jobs: Mutex::default(),
            admitted: admission::Admitted::default(),
            network_policies: None,
            metered: false,
            budgets: None,
            budget_caps: Mutex::default(),
            sweep_at: AtomicUsize::new(SWEEP_AT_LEAST),
        }
    }

    /// The same context checking each running Task's egress against `policies`.
    pub fn with_network_policies(mut self, policies: Store<NetworkPolicy>) -> Self {
        self.network_policies = Some(policies);
        self
    }

    /// The same context admitting Tasks against the Budgets of `budgets`, whose periods are
    /// read on `clock`.
    pub fn with_budgets(
        mut self,
        budgets: Store<kubetask_api::Budget>,
        clock: crate::cron::Clock,
    ) -> Self {
        self.budgets = Some((budgets, clock));
        self
    }

    /// The same context with the model gateway metering usage (see [`Context::metered`]).
    pub fn with_metered_usage(mut self, metered: bool) -> Self {
        self.metered = metered;
        self
    }

    /// The freshest `status.usage` the gateway wrote for the Task (the cache's newest copy, or
    /// the one being reconciled).
    fn metered_usage(&self, task: &Task, uid: &str) -> kubetask_api::Usage {
        self.tasks
            .get(&ObjectRef::from_obj(task))
            .filter(|latest| latest.uid().as_deref() == Some(uid))
            .and_then(|latest| latest.status.clone())
            .or_else(|| task.status.clone())
            .and_then(|status| status.usage)
            .unwrap_or_default()
    }

    /// The Task's status as last written (by this replica), else as cached (the cache's
    /// newest copy of the Task, which may be newer than the one being reconciled).
    fn current_status(&self, task: &Task, uid: &str) -> TaskStatus {
        let written = self.written.lock().ok().and_then(|w| w.get(uid).cloned());
        written
            .or_else(|| {
                self.tasks
                    .get(&ObjectRef::from_obj(task))
                    .filter(|latest| latest.uid().as_deref() == Some(uid))
                    .and_then(|latest| latest.status.clone())
            })
            .or_else(|| task.status.clone())
            .unwrap_or_default()
    }

    fn remember(&self, uid: &str, status: TaskStatus) {
        let Ok(mut written) = self.written.lock() else {
            return;
        };
        written.insert(uid.to_owned(), status);
        if written.len() >= self.sweep_at.load(Ordering::Relaxed) {
            let kept = self.forget_settled(&mut written);
            self.sweep_at
                .store((2 * kept).max(SWEEP_AT_LEAST), Ordering::Relaxed);
        }
    }

    /// Forgets what this replica kept about Tasks that are deleted, or finished with the cache
    /// showing it (a finished status never changes, and the cache has caught up with it).
    /// Returns how many written statuses are kept. Called as the kept statuses double, so
    /// it costs a constant per write however many finished Tasks the cache holds.
    fn forget_settled(&self, written: &mut HashMap<String, TaskStatus>) -> usize {
        let unsettled: std::collections::HashSet<String> = self
            .tasks
            .state()
            .iter()
            .filter(|task| !task.status.as_ref().is_some_and(status::is_finished))
            .filter_map(|task| task.uid())
            .collect();
        written.retain(|uid, _| unsettled.contains(uid));
        if let Ok(mut seen) = self.seen_jobs.lock() {
            seen.retain(|uid, _| unsettled.contains(uid));
        }
        self.admitted.retain(|uid| unsettled.contains(uid));
        self.attempts.retain(|uid| unsettled.contains(uid));
        if let Ok(mut caps) = self.budget_caps.lock() {
            caps.retain(|uid, _| unsettled.contains(uid));
        }
        self.wait_index
            .retain(|task| self.tasks.get(task).is_some());
        written.len()
    }

    fn fingerprint(&self, agent: Option<&Agent>) -> Fingerprint {
        Fingerprint {
            agent_version: agent.and_then(ResourceExt::resource_version),
            plugins_generation: self.plugins.generation(),
        }
    }

    /// Records a failed attempt and returns the snapshot's `start` for it.
    fn failed(&self, uid: &str, failure: Failure, fingerprint: Fingerprint) -> Start {
        let attempts = self.attempts.failed(uid, &failure, fingerprint);
        Start::Failed {
            attempts,
            failure: failure.after(attempts),
        }
    }
}

/// The Task one reconcile is about, with what each of its steps needs: passed whole from step
/// to step instead of the same four arguments.
#[derive(Clone, Copy)]
struct Reconciling<'a> {
    task: &'a Arc<Task>,
    namespace: &'a str,
    uid: &'a str,
    ctx: &'a Context,
}

/// Reconciles one Task.
pub async fn reconcile(task: Arc<Task>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let _timer = ctx.metrics.reconcile();
    let uid = task.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = task
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let status = ctx.current_status(&task, &uid);
    let this = Reconciling {
        task: &task,
        namespace: &namespace,
        uid: &uid,
        ctx: &ctx,
    };
    let (mut snapshot, agent) = observe(this, status, started).await;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut plan = decide(&task, &snapshot, &now);
    if plan.create {
        snapshot.start = create(this, agent, &mut snapshot).await?;
        plan = decide(&task, &snapshot, &now);
    }
    Ok(act(this, &snapshot, plan).await)
}

/// A failed action: counted, logged within the budget, retried with the Task's backoff.
fn retry_after_failure(task: &Task, uid: &str, failure: &Failure, ctx: &Context) -> Action {
    let attempts = ctx.attempts.failed(uid, failure, Fingerprint::default());
    log_failure(task, attempts, failure, ctx);
    Action::requeue(failure::backoff(
        attempts,
        None,
        ctx.attempts.jitter(uid, attempts),
    ))
}

/// Logs a failed attempt, within the controller-wide budget.
fn log_failure(task: &Task, attempts: u32, failure: &Failure, ctx: &Context) {
    ctx.metrics.error(failure.reason);
    // Each Task logs its first failure and then at exponentially growing intervals; the
    // budget bounds the total however many Tasks fail at once.
    if !attempts.is_power_of_two() {
        return;
    }
    if let Some(suppressed) = ctx.log_budget.admit() {
        tracing::warn!(
            task = %task.name_any(),
            namespace = ?task.namespace(),
            reason = failure.reason,
            attempts,
            suppressed,
            "{}",
            failure.message
        );
    }
}

/// Publishes an Event in the background: the reconcile does not wait for it. The recorder
/// aggregates repeats into an Event series, as Kubernetes does.
fn publish(ctx: &Context, task: &Task, kind: EventType, reason: &str, note: &str) {
    let event = Event {
        type_: kind,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    // A lifecycle Event (Normal) is published once per Task and state: through a recorder of
    // its own, which keeps nothing afterwards. The shared recorder would keep every one of them
    // for 6 minutes (several MiB in a burst of Tasks) to fold repeats that never come.
    let recorder = match kind {
        EventType::Normal => Recorder::new(ctx.client.clone(), ctx.reporter.clone()),
        EventType::Warning => ctx.recorder.clone(),
    };
    let reference = task.object_ref(&());
    let name = task.name_any();
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::debug!(%error, task = %name, "publishing an Event");
        }
    });
}

/// A reconcile that could not run is retried with the Task's backoff.
pub fn error_policy(task: Arc<Task>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.metric_reason());
    let uid = task.uid().unwrap_or_default();
    let failure = Failure {
        class: Class::Transient {
            retry_after: None,
            give_up_after: None,
        },
        reason: error.metric_reason(),
        message: error.to_string(),
    };
    let attempts = ctx.attempts.failed(&uid, &failure, Fingerprint::default());
    log_failure(&task, attempts, &failure, &ctx);
    Action::requeue(failure::backoff(
        attempts,
        None,
        ctx.attempts.jitter(&uid, attempts),
    ))
}
