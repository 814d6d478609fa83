//! Step 1, observe: what the controller knows about a Task — its Job and pods, or, while it has
//! none, whether its Agent, ConfigMaps and plugins are there and whether its Agent admits it.

use super::*;
use crate::egress::enforcement::{Enforcement, enforcement};

/// Step 1: what the controller knows about the Task, and its Agent when it is to be created.
pub(super) async fn observe(
    this: Reconciling<'_>,
    status: TaskStatus,
    started: Instant,
) -> (Snapshot, Option<Agent>) {
    let Reconciling {
        task,
        namespace,
        uid,
        ctx,
    } = this;
    let task: &Task = task;
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
        egress: None,
        metered_usage: ctx.metered.then(|| ctx.metered_usage(task, uid)),
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
        let usage = snapshot.metered_usage.as_ref();
        if changed || task_rules::stop_due(task, job, usage, &now) {
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
    if let (Child::Owned(job), Some(policies)) = (&snapshot.job, &ctx.network_policies)
        && listed(policies, POLICIES_LISTED_WITHIN).await == Listed::Yes
    {
        snapshot.egress = Some(egress_of(job, policies, namespace, uid));
    }
    if snapshot.job != Child::Absent || snapshot.status.job_name.is_some() {
        ctx.wait_index.forget(&reference);
        return (snapshot, None);
    }
    let (start, agent) = prerequisites(this, &reference, started).await;
    snapshot.start = start;
    (snapshot, agent)
}

/// How long a reconcile waits for the NetworkPolicy watch's first list (once, at start); the
/// condition is left as it was when the list takes longer.
const POLICIES_LISTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the Job's pods are held to the Task's NetworkPolicy: the pods' labels are their
/// template's and those the Job controller adds; the Task's policies are those it controls.
fn egress_of(
    job: &Job,
    policies: &Store<NetworkPolicy>,
    namespace: &str,
    uid: &str,
) -> Enforcement {
    let mut labels = job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|metadata| metadata.labels.clone())
        .unwrap_or_default();
    let job_name = job.name_any();
    let job_uid = job.uid().unwrap_or_default();
    for (key, value) in [
        ("batch.kubernetes.io/job-name", &job_name),
        ("job-name", &job_name),
        ("batch.kubernetes.io/controller-uid", &job_uid),
        ("controller-uid", &job_uid),
    ] {
        labels
            .entry(key.to_owned())
            .or_insert_with(|| value.clone());
    }
    let (ours, others): (Vec<NetworkPolicy>, Vec<NetworkPolicy>) = policies
        .state()
        .into_iter()
        .filter(|policy| policy.metadata.namespace.as_deref() == Some(namespace))
        .map(|policy| policy.as_ref().clone())
        .partition(|policy| children::controlled_by(&policy.metadata, uid));
    enforcement(&labels, &ours, &others)
}

/// The Job's pods (by the `batch.kubernetes.io/job-name` label the Job controller sets).
pub(super) async fn list_pods(
    client: &kube::Client,
    namespace: &str,
    job: &Job,
) -> Result<Vec<Pod>, Failure> {
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
pub(super) async fn prerequisites(
    this: Reconciling<'_>,
    reference: &ObjectRef<Task>,
    started: Instant,
) -> (Start, Option<Agent>) {
    let Reconciling {
        task,
        namespace,
        uid,
        ctx,
    } = this;
    let task: &Task = task;
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
    let limited = agent
        .as_ref()
        .filter(|agent| agent.spec.max_concurrent_tasks.is_some());
    let lock = admission::publish_key(task, &ctx.agents);
    if limited.is_none() && lock.is_none() {
        return (
            budget_admission(this, agent.as_ref(), fingerprint).await,
            agent,
        );
    }
    // Count from complete caches only: right after a start they may still be listing.
    if !(synced(&ctx.tasks).await && synced(&ctx.jobs).await) {
        let failure = Failure {
            class: Class::Transient {
                retry_after: None,
                give_up_after: None,
            },
            reason: reason::API_UNAVAILABLE,
            message: "the Task and Job caches are not listed yet (queues and publish locks are counted from complete caches only)".to_owned(),
        };
        return (ctx.failed(uid, failure, fingerprint), agent);
    }
    // The queue and the lock are counted from the caches under the queue's lock, with no
    // await in between.
    let waiting = 'queues: {
        let status_of = |t: &Task| ctx.current_status(t, &t.uid().unwrap_or_default());
        let view = admission::View {
            tasks: &ctx.tasks,
            jobs: &ctx.jobs,
            admitted: &ctx.admitted,
            status_of: &status_of,
        };
        if let Some(limited) = limited
            && let Some(admission::Admission::Queued { position, active }) =
                admission::request(&view, task, limited)
        {
            let limit = limited.spec.max_concurrent_tasks.unwrap_or_default();
            let start = Start::Waiting {
                reason: reason::QUEUED,
                message: format!(
                    "position {position} in the queue of Agent {:?} (maxConcurrentTasks {limit}, {active} running); the Task starts when an earlier one finishes",
                    limited.name_any()
                ),
            };
            break 'queues Some(start);
        }
        if let Some(key) = lock
            && let Some((admission::Admission::Queued { .. }, holder)) =
                admission::request_publish_lock(&view, &ctx.agents, task, &key)
        {
            // Not admitted after all: a slot of its Agent's queue taken just above is freed,
            // and this Task does not count as holding the lock while it waits for it.
            ctx.admitted.forget(uid);
            let holder = holder.map_or_else(String::new, |h| format!(" (Task {h} holds it)"));
            let start = Start::Waiting {
                reason: reason::PUBLISH_LOCKED,
                message: format!(
                    "waits for the publish lock of {key}: another Task publishes to the same repository and branch{holder}; this one starts when it has finished"
                ),
            };
            break 'queues Some(start);
        }
        None
    };
    if let Some(start) = waiting {
        return (start, agent);
    }
    (
        budget_admission(this, agent.as_ref(), fingerprint).await,
        agent,
    )
}

/// The last step before a Task's Job is created: its cap (its own limits, else its Agent's)
/// reserved in each Budget that governs it. A Task that may not start gives back its place
/// in its Agent's queue.
async fn budget_admission(
    this: Reconciling<'_>,
    agent: Option<&Agent>,
    fingerprint: Fingerprint,
) -> Start {
    let Reconciling { task, uid, ctx, .. } = this;
    let task: &Task = task;
    let Some((budgets, clock)) = &ctx.budgets else {
        return Start::Ready;
    };
    if !synced(budgets).await {
        let failure = Failure {
            class: Class::Transient {
                retry_after: None,
                give_up_after: None,
            },
            reason: reason::API_UNAVAILABLE,
            message: "the Budgets are not listed yet (no Task starts before the Budgets that may govern it are known; is the Budget CRD installed? kubectl apply -k manifests/)".to_owned(),
        };
        ctx.admitted.forget(uid);
        return ctx.failed(uid, failure, fingerprint);
    }
    let own = kubetask_api::Limits::effective(
        task.spec.budget.as_ref(),
        agent.and_then(|a| a.spec.budget.as_ref()),
    );
    let admission = budget_executor::admit(
        &ctx.client,
        budget_executor::Caches {
            budgets,
            tasks: &ctx.tasks,
        },
        clock,
        task,
        own.as_ref(),
    )
    .await;
    if !matches!(admission, Ok(budget_executor::Admission::Admitted(_))) {
        ctx.admitted.forget(uid);
    }
    match admission {
        Ok(budget_executor::Admission::Admitted(cap)) => {
            if let (Some(cap), Ok(mut caps)) = (cap, ctx.budget_caps.lock()) {
                caps.insert(uid.to_owned(), cap);
            }
            Start::Ready
        }
        Ok(budget_executor::Admission::Waiting(why)) => Start::Waiting {
            reason: reason::BUDGET_EXHAUSTED,
            message: why,
        },
        Ok(budget_executor::Admission::Refused(why)) => {
            let failure = Failure {
                class: Class::Fatal,
                reason: reason::BUDGET_EXCEEDED,
                message: format!("not started: {why}"),
            };
            ctx.failed(uid, failure, fingerprint)
        }
        Err(error) => ctx.failed(
            uid,
            Failure::from_api(&error, "reserve the Task's cap in its Budgets"),
            fingerprint,
        ),
    }
}

/// Whether the Task or Job cache is complete enough to count a queue from (a cache without a
/// writer holds what the test put in it).
pub(super) async fn synced<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    listed(store, CACHE_WAIT).await != Listed::NotYet
}

/// How long a reconcile waits for the Task and Job caches' first list.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// The first ConfigMap or key that must exist and does not. Each ConfigMap is read once.
pub(super) async fn missing_config_map(
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
