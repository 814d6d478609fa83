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
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kubetask_api::{API_VERSION, Agent, PluginRef, Task, TaskStatus, naming};
use serde_json::json;
use thiserror::Error;

use super::admission;
use super::agent_reads::AgentReads;
use super::backoff::{Attempts, Fingerprint, LogBudget};
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
            sweep_at: AtomicUsize::new(SWEEP_AT_LEAST),
        }
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

/// Reconciles one Task.
pub async fn reconcile(task: Arc<Task>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let _timer = ctx.metrics.reconcile();
    let uid = task.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let namespace = task
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let status = ctx.current_status(&task, &uid);
    let (mut snapshot, agent) = observe(&task, &namespace, &uid, status, started, &ctx).await;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut plan = decide(&task, &snapshot, &now);
    if plan.create {
        snapshot.start = create(&task, &namespace, &uid, agent, &mut snapshot, &ctx).await?;
        plan = decide(&task, &snapshot, &now);
    }
    Ok(act(&task, &namespace, &uid, &snapshot, plan, &ctx).await)
}

/// Step 1: what the controller knows about the Task, and its Agent when it is to be created.
async fn observe(
    task: &Task,
    namespace: &str,
    uid: &str,
    status: TaskStatus,
    started: Instant,
    ctx: &Context,
) -> (Snapshot, Option<Agent>) {
    let reference = ObjectRef::from_obj(task);
    let agent_in_store = ctx
        .agents
        .get(&ObjectRef::new(needs::agent_name(task)).within(namespace));
    let ttl =
        crate::render::lifecycle::ttl(task, agent_in_store.as_deref(), ctx.pipeline.lifecycle());
    let mut snapshot = Snapshot {
        job: Child::Absent,
        start: Start::NotChecked,
        status,
        pods: None,
        ttl,
    };
    if task.metadata.deletion_timestamp.is_some() || status::is_finished(&snapshot.status) {
        ctx.wait_index.forget(&reference);
        return (snapshot, None);
    }
    let task_name = task.name_any();
    let job_name = naming::job_name(&task_name);
    // A Task never reconciled before has no Job, unless a previous run died between creating
    // it and writing the status: creating it then fails with 409 and adopts it.
    let never_reconciled = snapshot.status == TaskStatus::default();
    let job_ref = ObjectRef::new(&job_name).within(namespace);
    let mut cached = ctx.jobs.get(&job_ref);
    // After a start, the Job cache may still be listing: wait for it rather than ask the
    // server for each Job. A miss then is a finished Job (they leave the cache) or none.
    if cached.is_none() && !never_reconciled && synced(&ctx.jobs).await {
        cached = ctx.jobs.get(&job_ref);
    }
    let job = match cached {
        Some(job) => Some(job.as_ref().clone()),
        None if never_reconciled => None,
        None => match Api::<Job>::namespaced(ctx.client.clone(), namespace)
            .get_opt(&job_name)
            .await
        {
            Ok(job) => job,
            Err(error) => {
                let action = format!("read Job {job_name:?} in namespace {namespace:?}");
                let failure = Failure::from_api(&error, &action);
                snapshot.start = ctx.failed(uid, failure, Fingerprint::default());
                return (snapshot, None);
            }
        },
    };
    snapshot.job = match job {
        None => Child::Absent,
        Some(job) if children::controlled_by(&job.metadata, uid) => Child::Owned(Box::new(job)),
        Some(job) if children::controlled_by_previous(&job.metadata, &task_name, uid) => {
            Child::Previous {
                kind: "Job",
                name: job_name,
            }
        }
        Some(job) => Child::Foreign {
            kind: "Job",
            name: job_name,
            owner: children::controller_name(&job.metadata),
        },
    };
    if let Child::Owned(job) = &snapshot.job {
        let counts = JobCounts::of(job);
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        // Pods are listed when the Job's counts changed since they were last listed, or,
        // with no memory of that (a new Job, a restart), when the status does not show them.
        let changed = ctx
            .seen_jobs
            .lock()
            .map_or(true, |seen| match seen.get(uid) {
                Some(seen) => *seen != counts,
                None => !pod_attempts::accounted_for(&snapshot.status.attempts, job),
            });
        if changed || task_rules::stop_due(task, job, &now) {
            match list_pods(&ctx.client, namespace, job).await {
                // Recorded as seen only once the status they lead to is written (in `act`).
                Ok(pods) => snapshot.pods = Some(pods),
                Err(failure) => {
                    snapshot.start = ctx.failed(uid, failure, Fingerprint::default());
                    return (snapshot, None);
                }
            }
        }
    }
    if snapshot.job != Child::Absent || snapshot.status.job_name.is_some() {
        ctx.wait_index.forget(&reference);
        return (snapshot, None);
    }
    let (start, agent) = prerequisites(task, namespace, uid, &reference, started, ctx).await;
    snapshot.start = start;
    (snapshot, agent)
}

/// The Job's pods (by the `batch.kubernetes.io/job-name` label the Job controller sets).
async fn list_pods(client: &kube::Client, namespace: &str, job: &Job) -> Result<Vec<Pod>, Failure> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().labels(&naming::job_pods_selector(name));
    let uid = job.metadata.uid.as_deref();
    pods.list(&params)
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|pod| {
                    pod.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| Some(o.uid.as_str()) == uid)
                })
                .collect()
        })
        .map_err(|error| {
            Failure::from_api(
                &error,
                &format!("list the pods of Job {name:?} in namespace {namespace:?}"),
            )
        })
}

/// Stops the Job's agent, keeping its pod and logs: a bound pod's `activeDeadlineSeconds` is
/// lowered so the kubelet stops it with its grace period and keeps the pod; a pod not bound
/// to a node (it never ran) is deleted; the Job's `backoffLimit` is lowered to the failures it
/// has, so the stopped pod ends the Job without another attempt, and a Job-level deadline a
/// grace period later removes any pod created meanwhile. A Job with no pod yet is suspended.
async fn stop_agent(
    client: &kube::Client,
    namespace: &str,
    job: &Job,
    pods: &[Pod],
) -> Result<(), Failure> {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let now = k8s_openapi::jiff::Timestamp::now();
    let seconds_since =
        |time: Option<&Time>| time.map_or(0, |t| now.duration_since(t.0).as_secs().max(0));
    let mut longest_grace = 0;
    let mut live = 0;
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        live += 1;
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        longest_grace = longest_grace.max(spec.termination_grace_period_seconds.unwrap_or(30));
        let result = if spec.node_name.is_some() {
            let ran = seconds_since(pod.status.as_ref().and_then(|s| s.start_time.as_ref()));
            let deadline = ran.max(1);
            if spec.active_deadline_seconds.is_some_and(|d| d <= deadline) {
                continue;
            }
            pods_api
                .patch(
                    pod_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"activeDeadlineSeconds": deadline}})),
                )
                .await
                .map(drop)
        } else {
            pods_api
                .delete(pod_name, &kube::api::DeleteParams::default())
                .await
                .map(drop)
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(Failure::from_api(
                    &error,
                    &format!("stop pod {pod_name:?} of Job {name:?} in namespace {namespace:?}"),
                ));
            }
        }
    }
    let failed = job.status.as_ref().and_then(|s| s.failed).unwrap_or(0);
    let started = seconds_since(job.status.as_ref().and_then(|s| s.start_time.as_ref()));
    let mut spec = json!({
        "backoffLimit": failed,
        "activeDeadlineSeconds": (started + longest_grace + 15).max(1),
    });
    if live == 0 {
        spec["suspend"] = json!(true);
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    match jobs
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(Failure::from_api(
            &error,
            &format!("stop Job {name:?} in namespace {namespace:?}"),
        )),
    }
}

/// Whether the plugin store may render a Task (`plugin_registry::Registry::current_for`).
enum PluginStore {
    Current,
    /// The first list has not arrived.
    NotListed,
    /// A fresh list shows plugins the watch has not brought yet.
    Behind,
    Unreadable(kube::Error),
}

/// Whether everything a Task without a Job needs is there. The Task is registered as waiting
/// on each thing *before* it is looked up, so a change that lands meanwhile wakes it again.
async fn prerequisites(
    task: &Task,
    namespace: &str,
    uid: &str,
    reference: &ObjectRef<Task>,
    started: Instant,
    ctx: &Context,
) -> (Start, Option<Agent>) {
    let agent_name = needs::agent_name(task);
    let own_uses = needs::config_map_uses(task, None);
    let names = |uses: &[ConfigMapUse]| -> Vec<String> {
        let mut names: Vec<String> = uses.iter().map(|u| u.name.clone()).collect();
        names.sort();
        names.dedup();
        names
    };
    let register = |uses: &[ConfigMapUse]| {
        let names = names(uses);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        ctx.wait_index
            .register(reference, namespace, agent_name, &names);
    };
    register(&own_uses);
    let lookup = async {
        match ctx
            .agents
            .get(&ObjectRef::new(agent_name).within(namespace))
        {
            Some(agent) => Ok(Some(agent.as_ref().clone())),
            // Sent after this reconcile started, so it sees an Agent created before the Task.
            None => {
                ctx.agent_reads
                    .get(&ctx.client, namespace, agent_name, started)
                    .await
            }
        }
    };
    // Whether the plugin store may be used for this Task: checked at the same time as the
    // Agent is read (both may cost a request), acted on below in its turn.
    let plugins = async {
        if !ctx.plugins.ready().await {
            return PluginStore::NotListed;
        }
        match ctx
            .plugins
            .current_for(task.resource_version().as_deref())
            .await
        {
            Ok(true) => PluginStore::Current,
            Ok(false) => PluginStore::Behind,
            Err(error) => PluginStore::Unreadable(error),
        }
    };
    let (agent, plugins) = tokio::join!(lookup, plugins);
    let agent = match agent {
        Ok(agent) => agent,
        Err(failure) => return (ctx.failed(uid, failure, Fingerprint::default()), None),
    };
    let agent = match resolve_agent(task, |name| agent.as_ref().filter(|a| a.name_any() == name)) {
        Ok(agent) => agent.cloned(),
        Err(missing) => {
            let start = Start::Waiting {
                reason: reason::AGENT_NOT_FOUND,
                message: format!("{missing}; the Task starts when it is created"),
            };
            return (start, None);
        }
    };
    let uses = needs::config_map_uses(task, agent.as_ref());
    if uses.len() != own_uses.len() {
        register(&uses);
    }
    let fingerprint = ctx.fingerprint(agent.as_ref());
    if let Some(failure) = ctx.attempts.blocked(uid, &fingerprint) {
        return (Start::Blocked(failure), agent);
    }
    match missing_config_map(&ctx.client, namespace, &uses).await {
        Ok(Some(waiting)) => return (waiting, agent),
        Ok(None) => {}
        Err(failure) => return (ctx.failed(uid, failure, fingerprint), agent),
    }
    let waiting = |message: &str, retry_after| Failure {
        class: Class::Transient {
            retry_after,
            give_up_after: None,
        },
        reason: reason::PLUGIN_UNAVAILABLE,
        message: message.to_owned(),
    };
    let failure = match plugins {
        PluginStore::Current => None,
        PluginStore::NotListed => Some(waiting(
            "the plugin ConfigMaps are not listed yet (no Task is rendered before every cluster policy is known)",
            None,
        )),
        // The plugin watch may lag: a policy created just before this Task must govern it.
        // The watch's event wakes the Task; the backoff only covers a watch that stays behind.
        PluginStore::Behind => Some(waiting(
            "the plugin ConfigMaps changed and the controller's watch has not caught up yet (no Task is rendered against an older set of cluster policies than it was created after)",
            None,
        )),
        PluginStore::Unreadable(error) => {
            Some(Failure::from_api(&error, "list the plugin ConfigMaps"))
        }
    };
    if let Some(failure) = failure {
        return (ctx.failed(uid, failure, fingerprint), agent);
    }
    if let Some(agent) = agent.as_ref()
        && agent.spec.max_concurrent_tasks.is_some()
    {
        // Count from complete caches only: right after a start they may still be listing.
        if !(synced(&ctx.tasks).await && synced(&ctx.jobs).await) {
            let failure = Failure {
                class: Class::Transient {
                    retry_after: None,
                    give_up_after: None,
                },
                reason: reason::API_UNAVAILABLE,
                message: "the Task and Job caches are not listed yet (the queue is counted from complete caches only)".to_owned(),
            };
            return (ctx.failed(uid, failure, fingerprint), Some(agent.clone()));
        }
        let status_of = |t: &Task| ctx.current_status(t, &t.uid().unwrap_or_default());
        let view = admission::View {
            tasks: &ctx.tasks,
            jobs: &ctx.jobs,
            admitted: &ctx.admitted,
            status_of: &status_of,
        };
        let admission = admission::request(&view, task, agent);
        if let Some(admission::Admission::Queued { position, active }) = admission {
            let limit = agent.spec.max_concurrent_tasks.unwrap_or_default();
            let start = Start::Waiting {
                reason: reason::QUEUED,
                message: format!(
                    "position {position} in the queue of Agent {:?} (maxConcurrentTasks {limit}, {active} running); the Task starts when an earlier one finishes",
                    agent.name_any()
                ),
            };
            return (start, Some(agent.clone()));
        }
    }
    (Start::Ready, agent)
}

/// Whether the Task or Job cache is complete enough to count a queue from (a cache without a
/// writer holds what the test put in it).
async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    listed(store, CACHE_WAIT).await != Listed::NotYet
}

/// How long a reconcile waits for the Task and Job caches' first list.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The first ConfigMap or key that must exist and does not. Each ConfigMap is read once.
async fn missing_config_map(
    client: &kube::Client,
    namespace: &str,
    uses: &[ConfigMapUse],
) -> Result<Option<Start>, Failure> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut read: HashMap<&str, Option<ConfigMap>> = HashMap::new();
    for used in uses.iter().filter(|u| !u.optional) {
        if !read.contains_key(used.name.as_str()) {
            let map = maps.get_opt(&used.name).await.map_err(|error| {
                let action = format!("read ConfigMap {:?} in namespace {namespace:?}", used.name);
                Failure::from_api(&error, &action)
            })?;
            read.insert(&used.name, map);
        }
        let Some(Some(map)) = read.get(used.name.as_str()) else {
            return Ok(Some(Start::Waiting {
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
                return Ok(Some(Start::Waiting {
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

/// Step 3a: render and create the Task's ConfigMaps and Job. Returns the new `start` and
/// updates the snapshot's child. A Task that got no Job gives its admission back.
async fn create(
    task: &Arc<Task>,
    namespace: &str,
    uid: &str,
    agent: Option<Agent>,
    snapshot: &mut Snapshot,
    ctx: &Context,
) -> Result<Start, Error> {
    let start = render_and_create(task, namespace, uid, agent, snapshot, ctx).await;
    if !matches!(start, Ok(Start::Created { .. })) {
        ctx.admitted.forget(uid);
    }
    start
}

async fn render_and_create(
    task: &Arc<Task>,
    namespace: &str,
    uid: &str,
    agent: Option<Agent>,
    snapshot: &mut Snapshot,
    ctx: &Context,
) -> Result<Start, Error> {
    let fingerprint = ctx.fingerprint(agent.as_ref());
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
        Ok(Ok(rendered)) => rendered,
        Ok(Err(error)) => {
            return Ok(ctx.failed(uid, Failure::from_render(&error), fingerprint));
        }
        Err(StageError::NotFound {
            agent,
            plugin,
            namespace,
        }) => {
            return Ok(Start::Waiting {
                reason: reason::PLUGIN_NOT_FOUND,
                message: format!(
                    "Agent {agent:?} spec.plugins: plugin {plugin:?} is not installed (no ConfigMap {plugin:?} labelled kubetask.io/plugin in namespace {namespace:?}); the Task starts when it is"
                ),
            });
        }
        Err(StageError::Unavailable(message)) => {
            return Ok(Start::Waiting {
                reason: reason::PLUGIN_UNAVAILABLE,
                message: format!(
                    "{message}; no Task is rendered without it (fail closed): the Task starts when it is fixed or removed"
                ),
            });
        }
    };
    ctx.metrics.render(started.elapsed().as_secs_f64());
    for warning in &rendered.warnings {
        publish(ctx, task, EventType::Normal, "RenderWarning", warning);
    }
    let task_name = task.name_any();
    let created = children::create(
        &ctx.client,
        namespace,
        &task_name,
        uid,
        &rendered.config_maps,
        &rendered.job,
    )
    .await;
    Ok(match created {
        Ok(Created::Owned(job)) => {
            ctx.wait_index.forget(&ObjectRef::from_obj(task.as_ref()));
            // A new Job has no pods: nothing to list until its status changes.
            if let Ok(mut seen) = ctx.seen_jobs.lock() {
                seen.insert(uid.to_owned(), JobCounts::of(&job));
            }
            snapshot.job = Child::Owned(Box::new(job));
            Start::Created {
                rendered_by: rendered
                    .plugins
                    .iter()
                    .map(|(name, digest)| PluginRef {
                        name: name.clone(),
                        digest: digest.clone(),
                    })
                    .collect(),
            }
        }
        Ok(Created::Conflict {
            kind,
            name,
            owner,
            previous,
        }) => {
            snapshot.job = if previous {
                Child::Previous { kind, name }
            } else {
                Child::Foreign { kind, name, owner }
            };
            Start::NotChecked
        }
        Err(children::CreateError { action, error }) => {
            ctx.failed(uid, Failure::from_api(&error, &action), fingerprint)
        }
    })
}

/// Step 3b: write the status, emit the Event, and say when to look again.
async fn act(
    task: &Task,
    namespace: &str,
    uid: &str,
    snapshot: &Snapshot,
    plan: Plan,
    ctx: &Context,
) -> Action {
    match &snapshot.start {
        Start::Failed { attempts, failure } => log_failure(task, *attempts, failure, ctx),
        Start::Blocked(_) => {}
        _ => ctx.attempts.succeeded(uid),
    }
    if plan.delete {
        let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..kube::api::DeleteParams::background()
        };
        return match tasks.delete(&task.name_any(), &params).await {
            Ok(_) => {
                publish(
                    ctx,
                    task,
                    EventType::Normal,
                    "Expired",
                    "deleted: its ttlSecondsAfterFinished has passed",
                );
                Action::await_change()
            }
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {
                Action::await_change()
            }
            Err(error) => {
                let action = format!(
                    "delete the finished Task {:?} in namespace {namespace:?}",
                    task.name_any()
                );
                retry_after_failure(task, uid, &Failure::from_api(&error, &action), ctx)
            }
        };
    }
    if plan.stop.is_some()
        && let Child::Owned(job) = &snapshot.job
    {
        let pods = snapshot.pods.as_deref().unwrap_or_default();
        if let Err(failure) = stop_agent(&ctx.client, namespace, job, pods).await {
            return retry_after_failure(task, uid, &failure, ctx);
        }
    }
    if let Some(note) = &plan.report_warning {
        publish(ctx, task, EventType::Warning, &note.reason, &note.message);
    }
    if let Some(next) = plan.status {
        let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), namespace);
        let patch = json!({"apiVersion": API_VERSION, "kind": "Task", "status": next});
        let written = tasks
            .patch_status(
                &task.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await;
        if let Err(error) = written {
            let action = format!(
                "write the status of Task {:?} in namespace {namespace:?}",
                task.name_any()
            );
            return retry_after_failure(task, uid, &Failure::from_api(&error, &action), ctx);
        }
        ctx.remember(uid, next);
    }
    // What the pods showed is in the status now: list them again only when the Job changes.
    if snapshot.pods.is_some()
        && let Child::Owned(job) = &snapshot.job
        && let Ok(mut seen) = ctx.seen_jobs.lock()
    {
        seen.insert(uid.to_owned(), JobCounts::of(job));
    }
    if let Some(note) = plan.event {
        if note.warning {
            ctx.metrics.error(&note.reason);
        }
        let kind = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, task, kind, &note.reason, &note.message);
    }
    match plan.retry {
        Retry::OnChange => Action::await_change(),
        Retry::After(delay) => Action::requeue(delay),
        Retry::Backoff {
            attempts,
            retry_after,
        } => Action::requeue(failure::backoff(
            attempts,
            retry_after,
            ctx.attempts.jitter(uid, attempts),
        )),
    }
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

/// The executor against the test API server, in-process: `reconcile` called directly with
/// empty watch caches (every miss is confirmed with a GET), its requests read from the
/// server's log.
#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use kube::api::PostParams;
    use kube::runtime::{reflector, watcher};
    use kubetask_test_apiserver::{Config, Fault, FaultAction, RequestRecord, TestApiServer};

    use super::*;
    use crate::plugin::{Limits, PluginHost};
    use crate::render::Settings;

    async fn context(server: &TestApiServer) -> Arc<Context> {
        let client = server.client().await.expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [Task::crd(), Agent::crd()] {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("CRD");
        }
        let host = Arc::new(PluginHost::new(Limits::default()).expect("host"));
        let pipeline =
            Arc::new(Pipeline::new(host.clone(), Settings::default()).expect("pipeline"));
        let (plugin_maps, mut plugin_writer) = reflector::store::<ConfigMap>();
        plugin_writer.apply_watcher_event(&watcher::Event::Init);
        plugin_writer.apply_watcher_event(&watcher::Event::InitDone);
        let registry = Arc::new(Registry::new(
            host,
            plugin_maps,
            "kubetask-system".into(),
            None,
            None,
        ));
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: None,
        };
        Arc::new(Context::new(
            client,
            pipeline,
            reporter,
            Arc::new(Metrics::default()),
            reflector::store::<Task>().0,
            registry,
            reflector::store::<Job>().0,
            reflector::store::<Agent>().0,
            Arc::new(WaitIndex::default()),
        ))
    }

    async fn new_task(ctx: &Context, name: &str) -> Arc<Task> {
        let task: Task = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "Task",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "x"}}}]},
        }))
        .expect("a Task");
        let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), "default");
        Arc::new(
            tasks
                .create(&PostParams::default(), &task)
                .await
                .expect("created"),
        )
    }

    /// `verb resource[/subresource]` of every request since `from`, but Events.
    fn calls(server: &TestApiServer, from: usize) -> Vec<String> {
        server.requests()[from..]
            .iter()
            .filter(|r: &&RequestRecord| r.resource != "events")
            .map(RequestRecord::call)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn creates_once_then_only_observes() {
        let server = TestApiServer::start(Config::default().hardened()).expect("server");
        let ctx = context(&server).await;
        let task = new_task(&ctx, "t").await;
        let from = server.requests().len();
        let action = reconcile(task.clone(), ctx.clone())
            .await
            .expect("reconciled");
        assert_eq!(action, Action::await_change());
        assert_eq!(
            calls(&server, from),
            [
                "get agents",
                "create configmaps",
                "create jobs",
                "patch tasks/status"
            ],
            "a never reconciled Task: no GET of its Job; one write of each"
        );
        let stored = Api::<Task>::namespaced(ctx.client.clone(), "default")
            .get("t")
            .await
            .expect("the Task");
        let status = stored.status.expect("a status");
        assert_eq!(status::condition_reason(&status), Some(reason::JOB_CREATED));
        assert_eq!(status.rendered_by[0].name, "builtin-default");

        // The same (stale) Task again: the written status says it has a Job; it is read, and
        // nothing is written.
        let from = server.requests().len();
        let action = reconcile(task, ctx.clone()).await.expect("reconciled");
        assert_eq!(action, Action::await_change());
        assert_eq!(calls(&server, from), ["get jobs"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_create_backs_off_and_is_shown_from_the_third_attempt() {
        let server = TestApiServer::start(Config::default()).expect("server");
        let ctx = context(&server).await;
        let task = new_task(&ctx, "t").await;
        server.inject(Fault::new(
            Some("create"),
            Some("jobs"),
            FaultAction::InternalError,
        ));
        for attempt in 1..=3 {
            let from = server.requests().len();
            let action = reconcile(task.clone(), ctx.clone())
                .await
                .expect("reconciled");
            assert_ne!(
                action,
                Action::await_change(),
                "attempt {attempt} is retried"
            );
            let wrote = calls(&server, from).contains(&"patch tasks/status".to_owned());
            assert_eq!(
                wrote,
                attempt == 3,
                "attempt {attempt}: status written only from the third"
            );
        }
        let stored = Api::<Task>::namespaced(ctx.client.clone(), "default")
            .get("t")
            .await
            .expect("the Task");
        let status = stored.status.expect("a status");
        assert_eq!(
            status::condition_reason(&status),
            Some(reason::API_UNAVAILABLE)
        );
        assert!(
            status.conditions[0].message.contains("answered 500"),
            "{}",
            status.conditions[0].message
        );
        server.clear_faults();
        let action = reconcile(task, ctx.clone()).await.expect("reconciled");
        assert_eq!(action, Action::await_change());
        let stored = Api::<Task>::namespaced(ctx.client.clone(), "default")
            .get("t")
            .await
            .expect("the Task");
        assert_eq!(
            stored.status.as_ref().and_then(status::condition_reason),
            Some(reason::JOB_CREATED)
        );
    }
}
