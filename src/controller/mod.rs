//! `kubetask controller`: watches Tasks (and the Jobs, Agents and ConfigMaps they depend on)
//! and reconciles each Task into one Job. Leader election, graceful shutdown on SIGTERM,
//! health and metrics endpoints.

mod admission;
mod agent_reads;
mod backoff;
mod budget_executor;
mod budget_rules;
pub mod cached;
mod caches;
mod children;
pub mod cron_executor;
pub mod cron_rules;
pub mod failure;
pub mod health;
mod leader;
mod memory;
mod metrics;
mod plugin_registry;
pub mod pod_attempts;
pub mod status;
mod task_executor;
pub mod task_rules;
mod wait_index;
mod work_queue;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{batch::v1::Job, core::v1::ConfigMap, networking::v1::NetworkPolicy};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, predicates, watcher};
use kube::{Resource, ResourceExt};
use kubetask_api::{Agent, Budget, CronTask, Task, labels};
use tokio::sync::watch;

pub use children::FIELD_MANAGER;
pub use leader::LeaseOptions;

use crate::plugin::{ArtifactCache, Limits, PluginHost, source};
use crate::render::{Pipeline, Settings};

/// How the controller runs (the `kubetask controller` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// A kubeconfig file; `None`: `KUBECONFIG`, `~/.kube/config`, or the in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// Watch one namespace only; `None`: all namespaces.
    pub namespace: Option<String>,
    pub settings: Settings,
    /// Leader election; `None` runs without (a single replica).
    pub lease: Option<LeaseOptions>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub metrics_address: SocketAddr,
    /// Tasks reconciled at once.
    pub concurrency: u16,
    pub limits: Limits,
    /// Where compiled plugins are kept across restarts; `None`: in memory only.
    pub plugin_cache_dir: Option<PathBuf>,
    /// The timeout cap and the default TTL.
    pub lifecycle: crate::render::LifecycleSettings,
    /// Where CronTask schedules read the time (the system clock but in end-to-end tests).
    pub clock: crate::cron::Clock,
    /// Egress: each Task's proxy Secret and variables (`--egress-key-file`); none when off.
    pub egress: Option<std::sync::Arc<crate::render::egress::EgressSettings>>,
    /// The model gateway: each Task's virtual key and the CLIs' base URLs
    /// (`--model-gateway-key-file`); none when off.
    pub gateway: Option<std::sync::Arc<crate::render::model_gateway::GatewaySettings>>,
}

/// What makes a Task change worth a reconcile: its spec (`metadata.generation`), and the
/// gateway's ledger (`status.usage` when metered), which a budget is enforced from. The
/// controller's own status writes are not.
fn spec_or_metered_usage(task: &Task) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let generation = predicates::generation(task)?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    generation.hash(&mut hasher);
    if let Some(usage) = task
        .status
        .as_ref()
        .and_then(|s| s.usage.as_ref())
        .filter(|u| u.metered == Some(true))
    {
        (usage.input_tokens, usage.output_tokens, &usage.cost).hash(&mut hasher);
    }
    Some(hasher.finish())
}

pub(crate) fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the controller until SIGTERM (Ok) or until the lease is lost (Err).
pub async fn run(options: Options) -> anyhow::Result<()> {
    let client = crate::client::connect(options.kubeconfig.as_deref(), None).await?;
    let version = client
        .apiserver_version()
        .await
        .context("reaching the API server")?;
    tracing::info!(server = %version.git_version, namespace = ?options.namespace, "connected");
    let mut host = PluginHost::new(options.limits)?;
    if let Some(dir) = &options.plugin_cache_dir {
        // Without a cache every start compiles the plugins again: slower, never wrong.
        match ArtifactCache::new(dir) {
            Ok(cache) => {
                tracing::info!(dir = %cache.dir().display(), "compiled plugins cached");
                host = host.with_artifact_cache(cache);
            }
            Err(error) => tracing::warn!(
                dir = %dir.display(),
                %error,
                "--plugin-cache-dir cannot be used: compiling plugins at every start"
            ),
        }
    }
    let host = Arc::new(host);
    let pipeline = Arc::new(
        Pipeline::new(host.clone(), options.settings.clone())?
            .with_lifecycle(options.lifecycle.clone())
            .with_egress(options.egress.clone())
            .with_gateway(options.gateway.clone()),
    );
    let metrics = Arc::new(metrics::Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = watch::channel(false);
    let namespace = options.namespace.as_deref();

    // Tasks trigger a reconcile when they appear or their spec changes (generation), not when
    // only their status does: that is the controller's own write coming back, and reacting to
    // it would retry a failing Task at once instead of after its backoff.
    let (tasks, tasks_writer) = reflector::store::<Task>();
    // A change of a CronTask's run (it finished, was deleted) reconciles the CronTask. When the
    // channel is full the signal is dropped: the CronTask looks again at its next tick anyway.
    let (runs_changed, cron_triggers) = tokio::sync::mpsc::channel::<ObjectRef<CronTask>>(1024);
    // Budgets: one watch, the Budget executor's; its cache is what Tasks are admitted against.
    // A Task deleted before it finished wakes the Budgets holding its reservation.
    let budget_controller = kube::runtime::Controller::new(
        scoped::<Budget>(&client, namespace),
        watcher::Config::default(),
    );
    let budgets = budget_controller.store();
    let (holder_gone, budget_triggers) = tokio::sync::mpsc::channel::<ObjectRef<Budget>>(1024);
    let holders = budgets.clone();
    let task_events = watcher::watcher(
        scoped::<Task>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(cached::task)
    .reflect(tasks_writer)
    .inspect_ok(move |event| {
        if let watcher::Event::Apply(task) | watcher::Event::Delete(task) = event
            && let Some(owner) = cron_executor::owner(task)
        {
            let _ = runs_changed.try_send(owner);
        }
        if let watcher::Event::Delete(task) = event {
            let namespace = task.namespace().unwrap_or_default();
            let uid = task.uid().unwrap_or_default();
            for budget in budget_executor::holding(&holders, &namespace, &uid) {
                let _ = holder_gone.try_send(ObjectRef::from_obj(budget.as_ref()));
            }
        }
    })
    .applied_objects()
    .predicate_filter(spec_or_metered_usage, PredicateConfig::default());
    let (jobs, jobs_writer) = reflector::store::<Job>();
    let (agents, agents_writer) = reflector::store::<Agent>();
    let probes = health::Probes {
        budgets: budgets.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
        caches: caches::Caches {
            tasks: tasks.clone(),
            jobs: jobs.clone(),
            agents: agents.clone(),
        },
    };
    tokio::spawn(memory::watch(probes.caches.clone()));
    let bound = health::serve(options.metrics_address, probes, stopped.clone()).await?;
    tracing::info!(address = %bound, "serving /healthz, /readyz and /metrics");
    ready.store(true, Ordering::Release);

    let signal_stop = stop.clone();
    tokio::spawn(async move {
        termination().await;
        tracing::info!("termination signal: shutting down");
        let _ = signal_stop.send(true);
    });

    // Compile the installed plugins now, also while a standby waits for the lease, so that
    // a new leader renders at once.
    tokio::spawn(warm_plugins(
        client.clone(),
        host.clone(),
        options.settings.controller_namespace.clone(),
    ));
    let mut shutdown = stopped.clone();
    let leadership = match &options.lease {
        Some(lease) => match leader::acquire(client.clone(), lease, &mut shutdown).await? {
            Some(leadership) => Some(leadership),
            None => return Ok(()),
        },
        None => None,
    };
    metrics.set_leader(true);

    let identity = options.lease.as_ref().map(|l| l.identity.clone());
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: identity,
    };
    let recorder = Recorder::new(client.clone(), reporter.clone());
    let job_events = watch_jobs(scoped::<Job>(&client, namespace), jobs_writer).touched_objects();
    // Plugins: only ConfigMaps in the controller's namespace, only those labelled as plugins.
    let (plugin_maps, plugin_writer) = reflector::store::<ConfigMap>();
    let plugin_events = watcher::watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &options.settings.controller_namespace),
        watcher::Config::default().labels(kubetask_api::plugin_labels::PLUGIN),
    )
    .default_backoff()
    .modify(cached::plugin_map)
    .reflect(plugin_writer)
    .touched_objects();
    let registry = Arc::new(plugin_registry::Registry::new(
        host,
        plugin_maps,
        options.settings.controller_namespace.clone(),
        Some(recorder.clone()),
        Some(client.clone()),
    ));
    let agent_events = watcher::watcher(
        scoped::<Agent>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(cached::agent)
    .reflect(agents_writer)
    .touched_objects();
    // Every ConfigMap, as metadata only (no data is held or listed): a Task's generated
    // ConfigMaps (by owner, for a Task recreated under the same name) and the ones Tasks
    // without a Job wait on.
    let config_map_events = watcher::watcher(
        scoped::<PartialObjectMeta<ConfigMap>>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects();
    // With egress on, every NetworkPolicy: a change may widen (or restore) what a running
    // Task's pod reaches, which its `EgressEnforced` condition states.
    let (network_policies, policy_events) = match &options.egress {
        Some(_) => {
            let (store, writer) = reflector::store::<NetworkPolicy>();
            let events = watcher::watcher(
                scoped::<NetworkPolicy>(&client, namespace),
                watcher::Config::default(),
            )
            .default_backoff()
            .modify(cached::network_policy)
            .reflect(writer)
            .touched_objects();
            (Some(store), Some(events))
        }
        None => (None, None),
    };
    let wait_index = Arc::new(wait_index::WaitIndex::default());
    let mut context = task_executor::Context::new(
        client.clone(),
        pipeline,
        reporter.clone(),
        metrics.clone(),
        tasks.clone(),
        registry.clone(),
        jobs,
        agents,
        wait_index.clone(),
    );
    if let Some(store) = network_policies {
        context = context.with_network_policies(store);
    }
    let context = context
        .with_metered_usage(options.gateway.is_some())
        .with_budgets(budgets, options.clock.clone());
    let context = Arc::new(context);
    let cron_context = Arc::new(cron_executor::Context::new(
        client.clone(),
        tasks.clone(),
        options.clock.clone(),
        reporter.clone(),
    ));
    let mut cron_stop = stopped.clone();
    let mut cron_triggers = cron_triggers;
    let cron_tasks = kube::runtime::Controller::new(
        scoped::<CronTask>(&client, namespace),
        watcher::Config::default(),
    )
    .reconcile_on(futures::stream::poll_fn(move |cx| cron_triggers.poll_recv(cx)))
    .graceful_shutdown_on(async move {
        let _ = cron_stop.changed().await;
    })
    .run(cron_executor::reconcile, cron_executor::error_policy, cron_context)
    .for_each(|result| {
        // Reconcile errors are reported by `cron_executor::error_policy`; a watch that fails (the
        // CronTask CRD not installed, access denied) retries with backoff and is said here.
        if let Err(kube::runtime::controller::Error::QueueError(error)) = result {
            tracing::warn!(%error, "watching CronTasks (is the CronTask CRD installed? kubectl apply -k manifests/)");
        }
        futures::future::ready(())
    });
    // Tasks waiting for a Budget are looked at again when it changes.
    let (wake, mut budget_wakes) = tokio::sync::mpsc::channel::<ObjectRef<Task>>(1024);
    let budget_context = Arc::new(budget_executor::Context::new(
        client.clone(),
        tasks.clone(),
        options.clock.clone(),
        wake,
    ));
    let mut budget_stop = stopped.clone();
    let mut budget_triggers = budget_triggers;
    let budget_executor = budget_controller
        .reconcile_on(futures::stream::poll_fn(move |cx| budget_triggers.poll_recv(cx)))
        .graceful_shutdown_on(async move {
            let _ = budget_stop.changed().await;
        })
        .run(budget_executor::reconcile, budget_executor::error_policy, budget_context)
        .for_each(|result| {
            if let Err(kube::runtime::controller::Error::QueueError(error)) = result {
                tracing::warn!(%error, "watching Budgets (is the Budget CRD installed? kubectl apply -k manifests/)");
            }
            futures::future::ready(())
        });
    let mut graceful = stopped.clone();
    let mut triggers = vec![
        futures::stream::poll_fn(move |cx| budget_wakes.poll_recv(cx))
            .map(|task| vec![task])
            .boxed(),
        concerning(task_events, |task: Task| vec![ObjectRef::from_obj(&task)]),
        concerning(job_events, job_trigger(context.clone())),
        concerning(agent_events, agent_trigger(wait_index.clone())),
        concerning(plugin_events, plugin_trigger(registry, wait_index.clone())),
        concerning(config_map_events, config_map_trigger(wait_index)),
    ];
    if let Some(events) = policy_events {
        triggers.push(concerning(events, policy_trigger(tasks.clone())));
    }
    let triggers = futures::stream::select_all(triggers);
    let listed = tasks.clone();
    let running = work_queue::run(
        triggers,
        async move {
            // In short fresh waits: a long `wait_until_ready` may never be woken while other
            // tasks wait on the same cache (`caches::listed`).
            while caches::listed(&listed, std::time::Duration::from_secs(60)).await
                == caches::Listed::NotYet
            {}
        },
        |task: &ObjectRef<Task>| tasks.get(task),
        usize::from(options.concurrency),
        move |task: Arc<Task>| {
            let context = context.clone();
            async move {
                match task_executor::reconcile(task.clone(), context.clone()).await {
                    Ok(action) => action,
                    Err(error) => {
                        tracing::debug!(%error, task = %task.name_any(), "reconcile failed");
                        task_executor::error_policy(task, &error, context)
                    }
                }
            }
        },
        async move {
            let _ = graceful.changed().await;
        },
    );

    let running = async move {
        tokio::join!(running, cron_tasks, budget_executor);
    };
    let outcome = match leadership {
        None => {
            running.await;
            Ok(())
        }
        Some(mut leadership) => {
            let lost = tokio::select! {
                _ = running => false,
                _ = leadership.lost() => true,
            };
            metrics.set_leader(false);
            if lost {
                let _ = stop.send(true);
                Err(anyhow::anyhow!(
                    "lost the leader lease; exiting so that only the new leader acts"
                ))
            } else {
                leadership.release().await;
                Ok(())
            }
        }
    };
    let _ = stop.send(true);
    outcome
}

/// The Jobs the controller created (by their label), in their cached form
/// ([`cached::job`]: no pod template; finished ones leave, [`cached::job_event`]), reflected
/// into `writer`.
fn watch_jobs(
    api: Api<Job>,
    writer: reflector::store::Writer<Job>,
) -> impl futures::Stream<Item = Result<watcher::Event<Job>, watcher::Error>> + Send + 'static {
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGED_BY_VALUE
    ));
    watcher::watcher(api, managed)
        .default_backoff()
        .modify(cached::job)
        .map_ok(cached::job_event)
        .reflect(writer)
}

/// Loads (compiles, or reads from the artifact cache) every installed plugin once.
async fn warm_plugins(client: kube::Client, host: Arc<PluginHost>, namespace: String) {
    let maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let listed = maps
        .list(&kube::api::ListParams::default().labels(kubetask_api::plugin_labels::PLUGIN))
        .await;
    let maps = match listed {
        Ok(list) => list.items,
        Err(error) => {
            tracing::debug!(%error, "listing the plugins to compile ahead");
            return;
        }
    };
    let _ = tokio::task::spawn_blocking(move || {
        for map in maps {
            let name = map.name_any();
            match source::component_of(&map).map(|bytes| host.load(&name, &bytes)) {
                Ok(Ok(_)) => tracing::info!(plugin = %name, "plugin loaded ahead"),
                Ok(Err(error)) => {
                    tracing::debug!(plugin = %name, %error, "compiling a plugin ahead")
                }
                Err(error) => tracing::debug!(plugin = %name, %error, "reading a plugin ahead"),
            }
        }
    })
    .await;
}

/// The Tasks each event of a watch concerns; a watch error (retried by the watch's backoff)
/// is logged.
fn concerning<K: 'static>(
    events: impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    concerns: impl Fn(K) -> Vec<ObjectRef<Task>> + Send + 'static,
) -> futures::stream::BoxStream<'static, Vec<ObjectRef<Task>>> {
    events
        .filter_map(move |event| {
            futures::future::ready(match event {
                Ok(object) => Some(concerns(object)),
                Err(error) => {
                    tracing::debug!(%error, "watch");
                    None
                }
            })
        })
        .boxed()
}

/// A NetworkPolicy change concerns the running Tasks of its namespace (whether their pods'
/// egress is enforced).
fn policy_trigger(
    tasks: reflector::Store<Task>,
) -> impl Fn(NetworkPolicy) -> Vec<ObjectRef<Task>> + Send + Sync + 'static {
    move |policy| {
        let namespace = policy.namespace();
        tasks
            .state()
            .iter()
            .filter(|task| task.namespace() == namespace)
            .filter(|task| {
                task.status
                    .as_ref()
                    .is_some_and(|s| s.job_name.is_some() && !status::is_finished(s))
            })
            .map(|task| ObjectRef::from_obj(task.as_ref()))
            .collect()
    }
}

/// An Agent change concerns the Tasks without a Job that run with it.
fn agent_trigger(
    wait_index: Arc<wait_index::WaitIndex>,
) -> impl Fn(Agent) -> Vec<ObjectRef<Task>> + Send + Sync + 'static {
    move |agent| wait_index.of_agent(&agent.namespace().unwrap_or_default(), &agent.name_any())
}

/// A Job change concerns its Task; a finished (or deleted) Job frees a slot of its Task's
/// Agent, which concerns the first Tasks in that Agent's queue. Once a Job has reached the
/// cache (and, finished, left it), its Task's admission from the queue is no longer needed.
fn job_trigger(
    context: Arc<task_executor::Context>,
) -> impl Fn(Job) -> Vec<ObjectRef<Task>> + Send + Sync + 'static {
    move |job| {
        let namespace = job.namespace().unwrap_or_default();
        let Some(owner) = job
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "Task")
        else {
            return Vec::new();
        };
        context.admitted.forget(&owner.uid);
        let owner = ObjectRef::<Task>::new(&owner.name).within(&namespace);
        let finished = status::job_finished(&job);
        let mut concerned = vec![owner.clone()];
        if finished || job.metadata.deletion_timestamp.is_some() {
            let agent = context
                .tasks
                .get(&owner)
                .map(|task| crate::render::needs::agent_name(&task).to_owned());
            if let Some(agent) = agent {
                let limit = context
                    .agents
                    .get(&ObjectRef::new(&agent).within(&namespace))
                    .and_then(|a| a.spec.max_concurrent_tasks)
                    .and_then(|l| usize::try_from(l).ok());
                if let Some(limit) = limit {
                    let waiting = context.wait_index.of_agent(&namespace, &agent);
                    concerned.extend(admission::heads(&context.tasks, waiting, limit));
                }
            }
            // Its publish lock is free: the first Task waiting for it may start.
            let key = context
                .tasks
                .get(&owner)
                .and_then(|task| admission::publish_key(&task, &context.agents));
            if let Some(key) = key {
                let waiting = context
                    .wait_index
                    .waiting()
                    .into_iter()
                    .filter(|reference| {
                        context.tasks.get(reference).is_some_and(|task| {
                            admission::publish_key(&task, &context.agents).as_deref()
                                == Some(key.as_str())
                        })
                    })
                    .collect();
                concerned.extend(admission::heads(&context.tasks, waiting, 1));
            }
        }
        concerned
    }
}

/// A plugin change concerns every Task still to be rendered (Tasks with a Job are not
/// rendered again; new Tasks pick up the new version by themselves).
fn plugin_trigger(
    registry: Arc<plugin_registry::Registry>,
    wait_index: Arc<wait_index::WaitIndex>,
) -> impl Fn(ConfigMap) -> Vec<ObjectRef<Task>> + Send + Sync + 'static {
    move |_| {
        registry.changed();
        wait_index.waiting()
    }
}

/// A ConfigMap change concerns the Task that owns it (a generated ConfigMap, possibly of a
/// deleted Task of the same name) and the Tasks waiting on it.
fn config_map_trigger(
    wait_index: Arc<wait_index::WaitIndex>,
) -> impl Fn(PartialObjectMeta<ConfigMap>) -> Vec<ObjectRef<Task>> + Send + Sync + 'static {
    move |map| {
        let namespace = map.namespace().unwrap_or_default();
        let mut concerned = wait_index.of_config_map(&namespace, &map.name_any());
        concerned.extend(
            map.owner_references()
                .iter()
                .filter(|owner| {
                    owner.kind == "Task" && owner.api_version == kubetask_api::API_VERSION
                })
                .map(|owner| ObjectRef::new(&owner.name).within(&namespace)),
        );
        concerned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::PostParams;
    use kubetask_test_apiserver::{Config, TestApiServer};

    /// The Job watch stores what `decide` reads of a Job, never its pod spec (its pods' labels
    /// only): the cache holds one small object per Job however big the agent's pod is.
    #[tokio::test]
    async fn the_job_cache_holds_no_pod_template() {
        let server = TestApiServer::start(Config::default()).expect("server");
        let client = server.client().await.expect("client");
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t-job", "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE}},
            "spec": {
                "backoffLimit": 1,
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "agent", "image": "agent:1", "args": ["x".repeat(4096)]}]}},
            },
        }))
        .expect("a Job");
        jobs.create(&PostParams::default(), &job)
            .await
            .expect("create");
        let (store, writer) = reflector::store::<Job>();
        let watching =
            tokio::spawn(watch_jobs(jobs.clone(), writer).try_for_each(|_| async { Ok(()) }));
        tokio::time::timeout(std::time::Duration::from_secs(10), store.wait_until_ready())
            .await
            .expect("listed within 10 s")
            .expect("a store");
        watching.abort();
        let cached = store
            .get(&ObjectRef::new("t-job").within("default"))
            .expect("the Job in the cache");
        let spec = cached.spec.clone().unwrap_or_default();
        assert_eq!(spec.template.spec, None, "a pod spec in the cache");
        assert_eq!(spec.backoff_limit, Some(1));
        assert!(
            cached
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(Vec::is_empty)
        );
        let listed = jobs.get("t-job").await.expect("get");
        assert!(
            listed
                .spec
                .is_some_and(|s| !s.template.spec.unwrap_or_default().containers.is_empty())
        );
    }
}
