//! Controller benchmark against a bare-client baseline, in one run against one server:
//!
//! 1. **bare client**: the ConfigMap + Job pairs the controller would create, created directly
//!    at the controller's concurrency (16 pairs in flight), then one pair at a time;
//! 2. **controller**: the real `kubetask controller` (a child process, release build) turning
//!    Tasks into Jobs: one Task at a time, then a burst of Tasks created at once, timed until
//!    every Task's status names its Job (status and Events included).
//!
//! It prints both rates and their ratio, the single-Task vs single-pair latency, Task→Job
//! latency percentiles, reconciles, API calls and the controller's peak RSS.
//!
//! By default the server is the project's test API server in this process (no Job simulator:
//! Jobs stay pending, so both sides do the same work). `KUBETASK_BENCH_KUBECONFIG=PATH` runs
//! against any cluster instead (the CRDs must be installed, e.g. `kubectl apply -f
//! manifests/crds/crds.yaml`; the benchmark creates and deletes its namespaces).
//! `KUBETASK_BENCH_TASKS=N` (default 1,000), `KUBETASK_BENCH_CONCURRENCY=N` (default 16),
//! `KUBETASK_BENCH_SINGLES=N` (default 20). `KUBETASK_BENCH_WRITE_LATENCY_US=N` and
//! `KUBETASK_BENCH_READ_LATENCY_US=N` (default 0) make the test API server wait that long
//! before each write (create, update, patch, delete) and each get or list, as a real server
//! waits for etcd: latency-bound instead of bound by the two cores it shares.
//!
//! Besides the controller it runs the controller's requests by hand (per Task: its create,
//! the ConfigMap and Job creates, the status patch, the Event), at the same concurrency, and
//! one Task's create, ConfigMap and Job one at a time: what any controller that writes status
//! and Events costs the server at least, with no watch in between.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use kubetask::api::Task;
use kubetask_test_apiserver::{Config, Fault, FaultAction, TestApiServer};
use serde_json::{Value, json};

mod support;
use support::{create_namespaces, env_number, install_crds, metric, proc_status_kib, scrape};

const BARE: &str = "kubetask-bench-bare";
const CONTROLLED: &str = "kubetask-bench";
/// Where a client sends the controller's requests itself (no controller watches it).
const BY_HAND: &str = "kubetask-bench-by-hand";

fn peak_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

fn task(name: &str, namespace: &str) -> Task {
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "benchmark"}}}]},
    }))
    .expect("a Task")
}

/// The ConfigMap and Job the controller creates for a Task named `name`, without an owner
/// (there is no Task): rendered once by the real pipeline, renamed per pair.
struct Pair {
    config_map: Value,
    job: Value,
}

impl Pair {
    fn rendered() -> anyhow::Result<Self> {
        let host = Arc::new(kubetask::plugin::PluginHost::new(
            kubetask::plugin::Limits::default(),
        )?);
        let pipeline = kubetask::render::Pipeline::new(
            host,
            kubetask::render::Settings {
                default_agent_image: kubetask::api::DEFAULT_AGENT_IMAGE.into(),
                controller_namespace: "kubetask-system".into(),
            },
        )?;
        let rendered = pipeline.render(&task("sample", BARE), None)?;
        let mut config_map = serde_json::to_value(&rendered.config_maps[0])?;
        let mut job = serde_json::to_value(&rendered.job)?;
        for object in [&mut config_map, &mut job] {
            if let Some(meta) = object["metadata"].as_object_mut() {
                meta.remove("ownerReferences");
            }
        }
        Ok(Self { config_map, job })
    }

    /// Creates the pair for `name`: the ConfigMap, then the Job.
    async fn create(&self, client: &kube::Client, name: &str) -> anyhow::Result<()> {
        self.create_in(client, BARE, name, None).await
    }

    /// Creates the pair for `name` in `namespace`, owned by `owner` as the controller's are.
    async fn create_in(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        owner: Option<&Task>,
    ) -> anyhow::Result<()> {
        let mut config_map = self.config_map.clone();
        let mut job = self.job.clone();
        config_map["metadata"]["namespace"] = json!(namespace);
        job["metadata"]["namespace"] = json!(namespace);
        if let Some(task) = owner {
            let reference = json!([{
                "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                "name": task.name_any(), "uid": task.uid(),
                "controller": true, "blockOwnerDeletion": true,
            }]);
            config_map["metadata"]["ownerReferences"] = reference.clone();
            job["metadata"]["ownerReferences"] = reference;
        }
        let map_name = format!("{name}-contexts");
        config_map["metadata"]["name"] = json!(map_name);
        job["metadata"]["name"] = json!(name);
        job["metadata"]["labels"]["kubetask.io/task"] = json!(name);
        job["spec"]["template"]["metadata"]["labels"]["kubetask.io/task"] = json!(name);
        if let Some(volumes) = job["spec"]["template"]["spec"]["volumes"].as_array_mut() {
            for volume in volumes {
                if volume.get("configMap").is_some() {
                    volume["configMap"]["name"] = json!(map_name);
                }
            }
        }
        let params = PostParams::default();
        Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .create(&params, &serde_json::from_value(config_map)?)
            .await?;
        Api::<Job>::namespaced(client.clone(), namespace)
            .create(&params, &serde_json::from_value(job)?)
            .await?;
        Ok(())
    }
}

/// When each object was first seen by a watch, by name; waiters are woken by every event.
#[derive(Clone, Default)]
struct Seen {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Seen {
    fn record(&self, name: String) {
        if let Ok(mut at) = self.at.lock() {
            at.entry(name).or_insert_with(Instant::now);
        }
        self.changed.notify_waiters();
    }

    fn get(&self, name: &str) -> Option<Instant> {
        self.at.lock().ok().and_then(|at| at.get(name).copied())
    }

    fn count(&self, prefix: &str) -> usize {
        self.at
            .lock()
            .map(|at| at.keys().filter(|k| k.starts_with(prefix)).count())
            .unwrap_or(0)
    }

    fn snapshot(&self) -> HashMap<String, Instant> {
        self.at.lock().map(|at| at.clone()).unwrap_or_default()
    }

    /// When `name` was first seen; fails after 60 s.
    async fn wait_for(&self, name: &str) -> anyhow::Result<Instant> {
        let limit = Instant::now() + Duration::from_secs(60);
        loop {
            let changed = self.changed.notified();
            if let Some(at) = self.get(name) {
                return Ok(at);
            }
            let left = limit.saturating_duration_since(Instant::now());
            if left.is_zero() {
                anyhow::bail!("{name} not seen after 60 s");
            }
            let _ = tokio::time::timeout(left, changed).await;
        }
    }
}

/// Records in `seen` when each object of `api` is first seen by a watch in a state `counts`.
fn record_watch<K>(
    api: Api<K>,
    seen: Seen,
    counts: impl Fn(&K) -> bool + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    tokio::spawn(async move {
        let events = watcher::watcher(api, watcher::Config::default());
        let _ = events
            .try_for_each(|event| {
                if let watcher::Event::Apply(object) | watcher::Event::InitApply(object) = event
                    && counts(&object)
                {
                    seen.record(object.name_any());
                }
                futures::future::ready(Ok(()))
            })
            .await;
    })
}

/// The status and Event the controller wrote for the first single Task, to send by hand.
struct ByHand {
    status: String,
    reason: String,
    note: Option<String>,
}

async fn by_hand_template(client: &kube::Client) -> anyhow::Result<ByHand> {
    use k8s_openapi::api::events::v1::Event;
    let task = Api::<Task>::namespaced(client.clone(), CONTROLLED)
        .get("single-0")
        .await?;
    let status = serde_json::to_string(&task.status)?;
    let events = Api::<Event>::namespaced(client.clone(), CONTROLLED)
        .list(&Default::default())
        .await?;
    let event = events
        .items
        .into_iter()
        .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("single-0"))
        .ok_or_else(|| anyhow::anyhow!("no Event of Task single-0"))?;
    Ok(ByHand {
        status,
        reason: event.reason.unwrap_or_default(),
        note: event.note,
    })
}

impl ByHand {
    async fn send(&self, client: &kube::Client, pair: &Pair, name: &str) -> anyhow::Result<()> {
        use kube::api::{Patch, PatchParams};
        use kube::runtime::events::{Event, EventType, Recorder, Reporter};
        let tasks: Api<Task> = Api::namespaced(client.clone(), BY_HAND);
        let task = tasks
            .create(&PostParams::default(), &task(name, BY_HAND))
            .await?;
        pair.create_in(client, BY_HAND, name, Some(&task)).await?;
        let status: Value = serde_json::from_str(&self.status.replace("single-0", name))?;
        let patch = json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "status": status});
        tasks
            .patch_status(
                name,
                &PatchParams::apply("kubetask-controller").force(),
                &Patch::Apply(patch),
            )
            .await?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubetask-controller".into(),
                instance: None,
            },
        );
        let event = Event {
            type_: EventType::Normal,
            reason: self.reason.clone(),
            note: self.note.as_ref().map(|n| n.replace("single-0", name)),
            action: "Reconcile".into(),
            secondary: None,
        };
        recorder.publish(&event, &task.object_ref(&())).await?;
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

async fn recreate_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await?.is_some() {
        namespaces.delete(name, &DeleteParams::default()).await?;
        while namespaces.get_opt(name).await?.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    namespaces
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let count = env_number("KUBETASK_BENCH_TASKS", 1000);
    let concurrency = env_number("KUBETASK_BENCH_CONCURRENCY", 16);
    let singles = env_number("KUBETASK_BENCH_SINGLES", 20);
    let write_latency =
        Duration::from_micros(env_number("KUBETASK_BENCH_WRITE_LATENCY_US", 0) as u64);
    let read_latency =
        Duration::from_micros(env_number("KUBETASK_BENCH_READ_LATENCY_US", 0) as u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let external = std::env::var_os("KUBETASK_BENCH_KUBECONFIG").map(PathBuf::from);
        let (server, kubeconfig) = match &external {
            Some(path) => (None, path.clone()),
            None => {
                let server = TestApiServer::start(Config::default())?;
                // A latency-bound server, like a real one whose writes wait for etcd: every
                // write (and read) waits this long before the server handles it.
                for (verbs, latency) in [
                    (&["create", "update", "patch", "delete"][..], write_latency),
                    (&["get", "list"][..], read_latency),
                ] {
                    for verb in verbs.iter().filter(|_| !latency.is_zero()) {
                        server.inject(Fault::new(Some(verb), None, FaultAction::Latency(latency)));
                    }
                }
                let path = server.kubeconfig_path().to_owned();
                (Some(server), path)
            }
        };
        let client = {
            let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config = kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?;
            kube::Client::try_from(config)?
        };
        if server.is_some() {
            install_crds(&client).await?;
            create_namespaces(&client, &["kubetask-system"]).await?;
        }
        recreate_namespace(&client, BARE).await?;
        recreate_namespace(&client, CONTROLLED).await?;
        recreate_namespace(&client, BY_HAND).await?;
        let pair = Pair::rendered()?;

        // 1. The bare client: pairs at the controller's concurrency, then one at a time.
        let start = Instant::now();
        let failures = Arc::new(Mutex::new(0usize));
        stream::iter(0..count)
            .for_each_concurrent(concurrency, |i| {
                let (client, pair, failures) = (client.clone(), &pair, failures.clone());
                async move {
                    if pair.create(&client, &format!("bare-{i}")).await.is_err() {
                        failures.lock().map(|mut f| *f += 1).ok();
                    }
                }
            })
            .await;
        let bare_elapsed = start.elapsed();
        let bare_failures = failures.lock().map(|f| *f).unwrap_or(0);
        let mut bare_singles = Vec::new();
        for i in 0..singles {
            let sent = Instant::now();
            pair.create(&client, &format!("single-{i}")).await?;
            bare_singles.push(sent.elapsed());
        }
        bare_singles.sort();

        // 2. The controller.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut controller = Command::new(env!("CARGO_BIN_EXE_kubetask"))
            .args(["controller", "--kubeconfig"])
            .arg(&kubeconfig)
            .args([
                "--namespace",
                CONTROLLED,
                "--metrics-address",
                &format!("127.0.0.1:{port}"),
                "--concurrency",
                &concurrency.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        // Ready once /metrics answers (plugin compiled, watches started).
        while scrape(port).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // When each Task's status first names its Job, and when each Job appears, from two
        // watches; waiters are woken by every event (no polling interval in the latencies).
        let seen = Seen::default();
        let jobs_seen = Seen::default();
        let tasks: Api<Task> = Api::namespaced(client.clone(), CONTROLLED);
        let watching = record_watch(tasks.clone(), seen.clone(), |task: &Task| {
            task.status.as_ref().is_some_and(|s| s.job_name.is_some())
        });
        let watching_jobs = record_watch(
            Api::<Job>::namespaced(client.clone(), CONTROLLED),
            jobs_seen.clone(),
            |_: &Job| true,
        );
        let mut task_singles = Vec::new();
        let mut job_singles = Vec::new();
        // When the server received each request of each single Task, from its create on.
        let mut steps: Vec<Vec<(Duration, String)>> = Vec::new();
        for i in 0..singles {
            let name = format!("single-{i}");
            let logged = server.as_ref().map_or(0, |s| s.requests().len());
            let sent = Instant::now();
            tasks.create(&PostParams::default(), &task(&name, CONTROLLED)).await?;
            let at = seen.wait_for(&name).await?;
            task_singles.push(at.saturating_duration_since(sent));
            let job_at = jobs_seen.wait_for(&name).await?;
            job_singles.push(job_at.saturating_duration_since(sent));
            if let Some(server) = &server {
                let mut timeline: Vec<(Duration, String)> = Vec::new();
                for request in &server.requests()[logged..] {
                    let call = request.call();
                    let step = matches!(
                        call.as_str(),
                        "create tasks" | "get agents" | "create configmaps" | "create jobs" | "patch tasks/status"
                    );
                    if step && !timeline.iter().any(|(_, c)| *c == call) {
                        timeline.push((request.received.saturating_duration_since(sent), call));
                    }
                }
                timeline.push((job_at.saturating_duration_since(sent), "Job seen by a watch".into()));
                timeline.push((at.saturating_duration_since(sent), "status seen by a watch".into()));
                steps.push(timeline);
            }
        }
        // Each step's median over the single Tasks, in the order of the medians.
        let mut timeline: Vec<(Duration, String)> = Vec::new();
        if let Some(first) = steps.first() {
            for (_, call) in first {
                let mut times: Vec<Duration> = steps
                    .iter()
                    .filter_map(|t| t.iter().find(|(_, c)| c == call).map(|(at, _)| *at))
                    .collect();
                times.sort();
                timeline.push((percentile(&times, 50), call.clone()));
            }
            timeline.sort();
        }
        task_singles.sort();
        job_singles.sort();
        let scraped = scrape(port);
        let render_mean = metric(&scraped, "kubetask_render_duration_seconds_sum")
            / metric(&scraped, "kubetask_render_duration_seconds_count").max(1.0);
        // The burst is timed by the Task watch alone: decoding every Job too would take CPU
        // from the controller and the server on these two cores.
        watching_jobs.abort();

        // 3. The controller's requests sent by a client: per Task its create, the ConfigMap and
        // Job creates, the status patch and the Event, with the status and Event the controller
        // wrote for the first single Task, at the controller's concurrency. No controller
        // logic and no watches: what any controller that writes status and Events costs this
        // server at least.
        let by_hand_rate = match by_hand_template(&client).await {
            Ok(template) => {
                let start = Instant::now();
                let failures = Arc::new(Mutex::new(0usize));
                stream::iter(0..count)
                    .for_each_concurrent(concurrency, |i| {
                        let (client, pair, template, failures) =
                            (client.clone(), &pair, &template, failures.clone());
                        async move {
                            let name = format!("by-hand-{i}");
                            if let Err(error) = template.send(&client, pair, &name).await
                                && let Ok(mut failed) = failures.lock()
                            {
                                if *failed == 0 {
                                    eprintln!("the controller's requests by hand: {error:#}");
                                }
                                *failed += 1;
                            }
                        }
                    })
                    .await;
                let failed = failures.lock().map(|f| *f).unwrap_or(0);
                Some((
                    count.saturating_sub(failed) as f64 / start.elapsed().as_secs_f64(),
                    failed,
                ))
            }
            Err(error) => {
                eprintln!("the controller's requests by hand: {error:#}");
                None
            }
        };

        // The same one at a time, up to the Job's create (as a bare pair is timed): a
        // controller's floor for one Task, with no watch between the Task and its children.
        let mut by_hand_singles = Vec::new();
        for i in 0..singles {
            let name = format!("by-hand-single-{i}");
            let by_hand: Api<Task> = Api::namespaced(client.clone(), BY_HAND);
            let sent = Instant::now();
            let created = by_hand
                .create(&PostParams::default(), &task(&name, BY_HAND))
                .await?;
            pair.create_in(&client, BY_HAND, &name, Some(&created)).await?;
            by_hand_singles.push(sent.elapsed());
        }
        by_hand_singles.sort();

        let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let before = metric(&scrape(port), "kubetask_reconciles_total");
        let requests_before = server.as_ref().map_or(0, |s| s.requests().len());
        let start = Instant::now();
        stream::iter(0..count)
            .for_each_concurrent(64, |i| {
                let (tasks, created) = (tasks.clone(), created.clone());
                async move {
                    let name = format!("burst-{i}");
                    let sent = Instant::now();
                    if tasks.create(&PostParams::default(), &task(&name, CONTROLLED)).await.is_ok() {
                        created.lock().map(|mut m| m.insert(name, sent)).ok();
                    }
                }
            })
            .await;
        let created_in = start.elapsed();
        loop {
            let done = seen.count("burst-");
            if done >= count {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                anyhow::bail!("only {done} of {count} Tasks have a Job after 300 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let controller_elapsed = start.elapsed();
        // Let the Events of the burst settle before counting reconciles and requests.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reconciles = metric(&scrape(port), "kubetask_reconciles_total") - before;
        let rss = peak_rss_kib(controller.id());
        let _ = controller.kill();
        let _ = controller.wait();
        watching.abort();

        let created = created.lock().map(|m| m.clone()).unwrap_or_default();
        let seen = seen.snapshot();
        let mut latencies: Vec<Duration> = created
            .iter()
            .filter_map(|(name, sent)| seen.get(name).map(|at| at.saturating_duration_since(*sent)))
            .collect();
        latencies.sort();
        let bare_rate = count.saturating_sub(bare_failures) as f64 / bare_elapsed.as_secs_f64();
        let controller_rate = count as f64 / controller_elapsed.as_secs_f64();
        let server_name = match &external {
            Some(path) => format!("the cluster of {}", path.display()),
            None if write_latency.is_zero() && read_latency.is_zero() => {
                "the in-process test API server".to_owned()
            }
            None => format!(
                "the in-process test API server, {:.1} ms per write, {:.1} ms per get or list",
                millis(write_latency),
                millis(read_latency)
            ),
        };
        let pair_p50 = percentile(&bare_singles, 50).as_secs_f64().max(1e-9);
        let times_a_pair = |sorted: &[Duration]| percentile(sorted, 50).as_secs_f64() / pair_p50;
        println!("server                         {server_name}");
        println!("tasks / pairs                  {count} (concurrency {concurrency})");
        println!(
            "bare client                    {bare_rate:>8.0} pairs/s ({:.0} ms, {bare_failures} failed)",
            millis(bare_elapsed)
        );
        println!(
            "controller                     {controller_rate:>8.0} Tasks/s ({:.0} ms; Tasks created in {:.0} ms)",
            millis(controller_elapsed),
            millis(created_in)
        );
        println!("ratio controller / bare        {:>8.2}", controller_rate / bare_rate);
        if let Some((rate, failed)) = by_hand_rate {
            println!(
                "its requests by hand           {rate:>8.0} Tasks/s ({:.2} of bare, {failed} failed): Task, ConfigMap, Job, status, Event",
                rate / bare_rate
            );
        }
        println!(
            "single pair (bare) p50         {:>8.1} ms",
            millis(percentile(&bare_singles, 50))
        );
        println!(
            "single Task → status p50       {:>8.1} ms ({:.2}× a pair)",
            millis(percentile(&task_singles, 50)),
            times_a_pair(&task_singles)
        );
        println!(
            "single Task → Job p50          {:>8.1} ms ({:.2}× a pair)",
            millis(percentile(&job_singles, 50)),
            times_a_pair(&job_singles)
        );
        println!(
            "single Task by hand p50        {:>8.1} ms ({:.2}× a pair): its create, the ConfigMap's, the Job's",
            millis(percentile(&by_hand_singles, 50)),
            times_a_pair(&by_hand_singles)
        );
        println!("render mean (single Tasks)     {:>8.3} ms", render_mean * 1e3);
        if !timeline.is_empty() {
            let steps: Vec<String> = timeline
                .iter()
                .map(|(at, call)| format!("{:.2} ms {call}", millis(*at)))
                .collect();
            println!("single Task steps, p50 from its create  {}", steps.join(", "));
        }
        println!(
            "burst Task → status p50 / p99  {:>8.1} / {:.1} ms",
            millis(percentile(&latencies, 50)),
            millis(percentile(&latencies, 99))
        );
        println!(
            "reconciles in the burst        {reconciles:>8.0} ({:.2} per Task)",
            reconciles / count as f64
        );
        match rss {
            Some(kib) => println!("controller peak RSS            {:>8.1} MiB", kib as f64 / 1024.0),
            None => println!("controller peak RSS            unavailable"),
        }
        if let Some(server) = &server {
            let mut by_call: std::collections::BTreeMap<String, usize> = Default::default();
            for request in &server.requests()[requests_before..] {
                // The benchmark's own Task creates.
                if request.verb == "create" && request.resource == "tasks" {
                    continue;
                }
                *by_call.entry(request.call()).or_default() += 1;
            }
            // The frequent calls, and the controller's fresh lists of the plugin ConfigMaps
            // (one shared by every Task it covers) however few.
            let calls: Vec<String> = by_call
                .iter()
                .filter(|(call, n)| **n >= count / 10 || call.as_str() == "list configmaps")
                .map(|(call, n)| format!("{call} {n}"))
                .collect();
            println!("API requests in the burst      {}", calls.join(", "));
        }
        for namespace in [BARE, CONTROLLED, BY_HAND] {
            Api::<Namespace>::all(client.clone())
                .delete(namespace, &DeleteParams::default())
                .await
                .ok();
        }
        if let Some(server) = server {
            server.shutdown();
        }
        Ok(())
    })
}
