//! Scale benchmark: a cluster's whole history of Tasks, and what it costs the controller.
//!
//! In one run against one server: 1,000 unfinished Tasks (their agents run until the end),
//! then finished Tasks, created in waves of 1,000 (`KUBETASK_BENCH_WAVE`), in stages (1,000, then 10,000; 50,000 with `KUBETASK_BENCH_LARGE=1`, or
//! the stages of `KUBETASK_BENCH_STAGES=1000,10000,...`). At each stage, once every Task is
//! finished, it prints
//!
//! - the controller's resident memory (RSS) beside the goal for that stage, its cached objects
//!   by kind (its own `kubetask_cached_objects` gauge), and the bytes a Task and a Job take as
//!   the server lists them and in the controller's cached form (JSON, a sample of 200);
//! - a restart (SIGTERM, then a new process): its API requests by verb and resource until it
//!   is quiet (3 s without a request), its writes (the Lease aside: must be 0), when it went
//!   quiet (its last request but the Lease's; goal ≤ 10 s) and its RSS then (the caches alone);
//! - 30 idle seconds: every request (goal: the Lease's renewals only).
//!
//! The server is the project's test API server in this process, with its Job simulator playing
//! the Job controller and the kubelet (pods included). `KUBETASK_BENCH_KUBECONFIG=PATH` runs
//! against any cluster instead (CRDs installed; the benchmark completes the Jobs by patching
//! their status, and counts requests only on the test server). The controller is the release
//! binary in a child process, with leader election as in the Deployment
//! (`KUBETASK_BENCH_CONTROLLER=PATH` runs another build of it, e.g. an older commit's).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubetask::api::Task;
use kubetask::controller::cached;
use kubetask_test_apiserver::{Config, JobSimulator, Script, TestApiServer};
use serde_json::json;

mod support;
use support::{create_namespaces, env_number, install_crds, metric, proc_status_kib, scrape};

const NAMESPACE: &str = "kubetask-scale";
/// Tasks whose agents never finish.
const RUNNING: &str = "running-";
const DONE: &str = "done-";
const MIB: f64 = 1024.0 * 1024.0;

/// `(finished Tasks, RSS goal in MiB)` of each stage.
fn stages() -> Vec<(usize, Option<f64>)> {
    let goal = |n: usize| {
        if n >= 50_000 {
            Some(200.0)
        } else if n >= 10_000 {
            Some(100.0)
        } else {
            None
        }
    };
    let sizes: Vec<usize> = match std::env::var("KUBETASK_BENCH_STAGES") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) if std::env::var_os("KUBETASK_BENCH_LARGE").is_some() => vec![1_000, 10_000, 50_000],
        Err(_) => vec![1_000, 10_000],
    };
    sizes.into_iter().map(|n| (n, goal(n))).collect()
}

fn rss_mib(pid: u32) -> f64 {
    proc_status_kib(pid, "VmRSS:").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

fn task(name: &str, stage: &str) -> Task {
    // A Task as users write them: a prompt of a few hundred bytes and a label.
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"team": "scale", "stage": stage}},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Update dependencies to latest versions. Run tests and create PR. ".repeat(6)}}}]},
    }))
    .expect("a Task")
}

/// The controller in a child process.
struct Controller {
    child: Child,
    port: u16,
}

impl Controller {
    async fn start(kubeconfig: &std::path::Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Another build of the controller (e.g. an older commit's) to compare with.
        let binary = std::env::var_os("KUBETASK_BENCH_CONTROLLER").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_kubetask")),
            PathBuf::from,
        );
        let child = Command::new(binary)
            .args(["controller", "--kubeconfig"])
            .arg(kubeconfig)
            .args([
                "--namespace",
                NAMESPACE,
                "--metrics-address",
                &format!("127.0.0.1:{port}"),
                "--leader-elect",
                "--identity",
                &format!("scale-bench-{port}"),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let controller = Self { child, port };
        let started = Instant::now();
        while scrape(port).is_empty() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "no /metrics after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(controller)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> String {
        scrape(self.port)
    }

    /// SIGTERM (the controller releases its Lease), then waits for the exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Waits until the controller's cache counts `finished` Tasks as Completed.
async fn wait_finished(
    controller: &Controller,
    finished: usize,
    since: Instant,
) -> anyhow::Result<()> {
    let mut last = 0.0;
    loop {
        let text = controller.metrics();
        let done = metric(&text, "kubetask_tasks{phase=\"Completed\"}");
        if done as usize >= finished {
            return Ok(());
        }
        if done > last {
            last = done;
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60 + finished as u64 / 10),
            "only {done} of {finished} Tasks Completed after {:.0} s",
            since.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// On a real cluster, completes the benchmark's finished Tasks' Jobs by patching their status.
async fn complete_jobs(client: kube::Client) {
    let jobs: Api<Job> = Api::namespaced(client, NAMESPACE);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    loop {
        let Ok(list) = jobs.list(&ListParams::default()).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let open = list.items.into_iter().filter(|job| {
            job.name_any().starts_with(DONE)
                && job
                    .status
                    .as_ref()
                    .and_then(|s| s.completion_time.as_ref())
                    .is_none()
        });
        stream::iter(open)
            .for_each_concurrent(16, |job| {
                let (jobs, now) = (jobs.clone(), now.clone());
                async move {
                    let status = json!({"status": {
                        "startTime": now, "completionTime": now, "succeeded": 1, "active": 0,
                        "conditions": [
                            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                            {"type": "Complete", "status": "True", "lastTransitionTime": now},
                        ],
                    }});
                    let _ = jobs
                        .patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(status))
                        .await;
                }
            })
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Creates Tasks `prefix{from..to}` at 32 in flight.
async fn create_tasks(tasks: &Api<Task>, prefix: &str, from: usize, to: usize) -> usize {
    stream::iter(from..to)
        .map(|i| {
            let tasks = tasks.clone();
            async move {
                tasks
                    .create(
                        &PostParams::default(),
                        &task(&format!("{prefix}{i}"), prefix.trim_end_matches('-')),
                    )
                    .await
                    .is_ok()
            }
        })
        .buffer_unordered(32)
        .filter(|created| futures::future::ready(!created))
        .count()
        .await
}

/// JSON bytes per object as listed and as cached, over a sample of 200 (by label selector).
async fn cached_bytes<K>(api: &Api<K>, selector: &str, trim: fn(&mut K)) -> Option<(f64, f64)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let list = api
        .list(&ListParams::default().labels(selector).limit(200))
        .await
        .ok()?;
    let sample = list.items;
    if sample.is_empty() {
        return None;
    }
    let size = |o: &K| serde_json::to_vec(o).map_or(0, |v| v.len()) as f64;
    let count = sample.len() as f64;
    let listed: f64 = sample.iter().map(size).sum();
    let kept: f64 = sample
        .into_iter()
        .map(|mut o| {
            trim(&mut o);
            size(&o)
        })
        .sum();
    Some((listed / count, kept / count))
}

/// The requests the server received since `from`, by call, and when the last one that is not
/// the Lease's arrived.
fn requests_since(
    server: &TestApiServer,
    from: usize,
) -> (BTreeMap<String, usize>, Option<Instant>) {
    let mut calls = BTreeMap::new();
    let mut last = None;
    for request in server.requests().into_iter().skip(from) {
        let call = request.call();
        let call = if call.trim().is_empty() {
            format!("get {}", request.path)
        } else {
            call
        };
        // Quiet means nothing but the Lease's renewals (every 10 s).
        if !call.contains("leases") {
            last = Some(request.received);
        }
        *calls.entry(call).or_default() += 1;
    }
    (calls, last)
}

fn is_write(call: &str) -> bool {
    let verb = call.split(' ').next().unwrap_or_default();
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) && !call.contains("leases")
}

fn format_calls(calls: &BTreeMap<String, usize>) -> String {
    if calls.is_empty() {
        return "none".to_owned();
    }
    calls
        .iter()
        .map(|(call, n)| format!("{call} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> anyhow::Result<()> {
    let unfinished = env_number("KUBETASK_BENCH_UNFINISHED", 1_000);
    let wave = env_number("KUBETASK_BENCH_WAVE", 1_000).max(1);
    let stages = stages();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let external = std::env::var_os("KUBETASK_BENCH_KUBECONFIG").map(PathBuf::from);
        let (server, kubeconfig) = match &external {
            Some(path) => (None, path.clone()),
            None => {
                let simulator = JobSimulator {
                    start_delay: Duration::from_millis(20),
                    run_time: Duration::from_millis(50),
                    outcome: Arc::new(|job: &serde_json::Value| {
                        let name = job.pointer("/metadata/name").and_then(|n| n.as_str());
                        if name.is_some_and(|n| n.starts_with(RUNNING)) {
                            Script::hang()
                        } else {
                            Script::succeed()
                        }
                    }),
                };
                let config = Config {
                    // The watch history of a real server is time-bound (etcd compaction); this
                    // one keeps the last events only, as a real one would after a while.
                    history_limit: 20_000,
                    ..Config::default()
                }
                .with_job_simulator(simulator);
                let server = TestApiServer::start(config)?;
                let path = server.kubeconfig_path().to_owned();
                (Some(server), path)
            }
        };
        let client = {
            let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig)?;
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
            kube::Client::try_from(config)?
        };
        if server.is_some() {
            install_crds(&client).await?;
            create_namespaces(&client, &["kubetask-system", NAMESPACE]).await?;
        } else {
            create_namespaces(&client, &[NAMESPACE]).await?;
            tokio::spawn(complete_jobs(client.clone()));
        }
        let tasks: Api<Task> = Api::namespaced(client.clone(), NAMESPACE);
        let jobs: Api<Job> = Api::namespaced(client.clone(), NAMESPACE);
        let server_name = match &external {
            Some(path) => format!("the cluster of {}", path.display()),
            None => "the in-process test API server (Job simulator)".to_owned(),
        };
        println!("server      {server_name}");
        println!("unfinished  {unfinished} Tasks whose agents run to the end");
        println!("waves       {wave} Tasks created, then waited for, at a time");

        let mut controller = Controller::start(&kubeconfig).await?;
        let failed = create_tasks(&tasks, RUNNING, 0, unfinished).await;
        anyhow::ensure!(failed == 0, "{failed} unfinished Tasks not created");
        let mut created = 0;
        let mut results = Vec::new();
        let mut previous: Option<(usize, f64)> = None;
        for (finished, goal) in stages {
            let start = Instant::now();
            // In waves, as a cluster's history accrues: at most `wave` Tasks waiting at once
            // (`KUBETASK_BENCH_WAVE=N`; a wave as large as the stage is one burst).
            while created < finished {
                let until = (created + wave).min(finished);
                let failed = create_tasks(&tasks, DONE, created, until).await;
                anyhow::ensure!(failed == 0, "{failed} Tasks not created");
                created = until;
                wait_finished(&controller, created, Instant::now()).await?;
            }
            let took = start.elapsed();
            // Let the last status writes and Events settle.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let text = controller.metrics();
            let rss = rss_mib(controller.pid());
            let peak =
                proc_status_kib(controller.pid(), "VmHWM:").map_or(f64::NAN, |k| k as f64 / 1024.0);
            let count = |kind: &str| {
                metric(
                    &text,
                    &format!("kubetask_cached_objects{{kind=\"{kind}\"}}"),
                )
            };
            println!();
            println!(
                "== {finished} finished + {unfinished} unfinished Tasks (all finished in {:.0} s)",
                took.as_secs_f64()
            );
            let verdict = goal.map_or_else(
                || "no goal".to_owned(),
                |g| {
                    format!(
                        "goal ≤ {g:.0} MiB: {}",
                        if rss <= g { "met" } else { "NOT met" }
                    )
                },
            );
            println!("controller RSS             {rss:>7.1} MiB ({verdict}); peak {peak:.1} MiB");
            if let Some((before, before_rss)) = previous {
                let per_task = (rss - before_rss) * MIB / (finished - before) as f64;
                println!("RSS per finished Task      {per_task:>7.0} B (from the previous stage)");
            }
            previous = Some((finished, rss));
            println!(
                "cached objects             Task {:.0}, Job {:.0}, Agent {:.0}",
                count("Task"),
                count("Job"),
                count("Agent")
            );
            if let Some((listed, kept)) = cached_bytes(&tasks, "stage=done", cached::task).await {
                println!("finished Task, JSON bytes  {listed:>7.0} listed → {kept:.0} cached");
            }
            if let Some((listed, kept)) = cached_bytes(&tasks, "stage=running", cached::task).await
            {
                println!("running Task, JSON bytes   {listed:>7.0} listed → {kept:.0} cached");
            }
            if let Some((listed, kept)) = cached_bytes(&jobs, "", cached::job).await {
                println!("Job, JSON bytes            {listed:>7.0} listed → {kept:.0} cached");
            }

            // The restart.
            controller.stop();
            let from = server.as_ref().map_or(0, |s| s.requests().len());
            let restarted = Instant::now();
            controller = Controller::start(&kubeconfig).await?;
            let mut quiet_after = None;
            if let Some(server) = &server {
                let mut last_count = from;
                let mut last_change = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = server.requests().len();
                    if now != last_count {
                        last_count = now;
                        last_change = Instant::now();
                    } else if last_change.elapsed() >= Duration::from_secs(3) {
                        break;
                    }
                    if restarted.elapsed() > Duration::from_secs(120) {
                        break;
                    }
                }
                let (calls, last) = requests_since(server, from);
                quiet_after = last.map(|at| at.saturating_duration_since(restarted));
                let writes: BTreeMap<String, usize> = calls
                    .iter()
                    .filter(|(c, _)| is_write(c))
                    .map(|(c, n)| (c.clone(), *n))
                    .collect();
                let quiet = quiet_after.unwrap_or_default().as_secs_f64();
                println!("restart: requests          {}", format_calls(&calls));
                println!(
                    "restart: writes            {} (goal 0: {})",
                    writes.values().sum::<usize>(),
                    if writes.is_empty() { "met" } else { "NOT met" }
                );
                println!(
                    "restart: quiet after       {quiet:>7.1} s (goal ≤ 10 s: {})",
                    if quiet <= 10.0 { "met" } else { "NOT met" }
                );
            }
            let rss_restarted = rss_mib(controller.pid());
            println!("restart: RSS then          {rss_restarted:>7.1} MiB");
            if let Some(server) = &server {
                let from = server.requests().len();
                tokio::time::sleep(Duration::from_secs(30)).await;
                let (calls, _) = requests_since(server, from);
                let other: usize = calls
                    .iter()
                    .filter(|(c, _)| !c.contains("leases"))
                    .map(|(_, n)| n)
                    .sum();
                println!(
                    "idle 30 s: requests        {} (goal: the Lease's only: {})",
                    format_calls(&calls),
                    if other == 0 { "met" } else { "NOT met" }
                );
                println!(
                    "idle 30 s: RSS then        {:>7.1} MiB",
                    rss_mib(controller.pid())
                );
            }
            results.push((finished, rss, goal, rss_restarted, quiet_after));
        }
        println!();
        println!(
            "summary: finished Tasks / RSS MiB (goal) / RSS after restart MiB / restart quiet s"
        );
        for (finished, rss, goal, restarted, quiet) in results {
            println!(
                "  {finished:>6} / {rss:>6.1} ({}) / {restarted:>6.1} / {}",
                goal.map_or_else(|| "—".to_owned(), |g| format!("≤ {g:.0}")),
                quiet.map_or_else(|| "—".to_owned(), |q| format!("{:.1}", q.as_secs_f64()))
            );
        }
        controller.stop();
        if let Some(server) = server {
            server.shutdown();
        }
        Ok(())
    })
}
