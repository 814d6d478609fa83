//! Burst benchmark of the controller: 1,000 Tasks created at once against the test API server
//! (in this process), reconciled by the real `kubetask controller` (a child process, release
//! build). Reports time until every Task has its Job, Task→Job latency p50/p99, reconciles per
//! second and the controller's peak RSS. Run with `cargo bench --bench controller`.
//!
//! `KUBETASK_BENCH_TASKS=N` changes the burst size; `KUBETASK_BENCH_CONCURRENCY=N` the
//! controller's `--concurrency`.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{CustomResourceExt, ResourceExt};
use kubetask::api::{Agent, Task};
use kubetask_test_apiserver::{Config, JobSimulator, TestApiServer};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn scrape(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(stream, "GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

fn main() -> anyhow::Result<()> {
    let count = env_number("KUBETASK_BENCH_TASKS", 1000);
    let concurrency = env_number("KUBETASK_BENCH_CONCURRENCY", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let simulator = JobSimulator { run_time: Duration::from_secs(1), ..JobSimulator::default() };
        let server = TestApiServer::start(Config::default().with_job_simulator(simulator))?;
        let client = server.client().await?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in [Task::crd(), Agent::crd()] {
            crds.create(&PostParams::default(), &crd).await?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut controller = Command::new(env!("CARGO_BIN_EXE_kubetask"))
            .args(["controller", "--kubeconfig"])
            .arg(server.kubeconfig_path())
            .args(["--metrics-address", &format!("127.0.0.1:{port}"), "--concurrency", &concurrency.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        // Ready once /metrics answers (plugin compiled, watches started).
        while scrape(port).is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Job observed times, from a watch.
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
        let recorder = seen.clone();
        let watching = tokio::spawn(async move {
            let events = watcher::watcher(jobs, watcher::Config::default());
            let _ = events
                .try_for_each(|event| {
                    if let watcher::Event::Apply(job) | watcher::Event::InitApply(job) = event
                        && let Ok(mut seen) = recorder.lock() {
                            seen.entry(job.name_any()).or_insert_with(Instant::now);
                        }
                    futures::future::ready(Ok(()))
                })
                .await;
        });

        let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
        let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let before = metric(&scrape(port), "kubetask_reconciles_total");
        let start = Instant::now();
        stream::iter(0..count)
            .for_each_concurrent(64, |i| {
                let tasks = tasks.clone();
                let created = created.clone();
                async move {
                    let name = format!("burst-{i}");
                    let task: Task = serde_json::from_value(serde_json::json!({
                        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                        "metadata": {"name": name},
                        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "benchmark"}}}]},
                    }))
                    .expect("task");
                    let sent = Instant::now();
                    if tasks.create(&PostParams::default(), &task).await.is_ok() {
                        created.lock().map(|mut m| m.insert(name, sent)).ok();
                    }
                }
            })
            .await;
        let created_in = start.elapsed();
        loop {
            let done = seen.lock().map(|m| m.len()).unwrap_or(0);
            if done >= count {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                anyhow::bail!("only {done} of {count} Jobs after 300 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let all_jobs = start.elapsed();
        // Let the status writes for the burst settle before counting reconciles.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let reconciles = metric(&scrape(port), "kubetask_reconciles_total") - before;
        let rss = peak_rss_kib(controller.id());
        let _ = controller.kill();
        let _ = controller.wait();
        watching.abort();

        let created = created.lock().map(|m| m.clone()).unwrap_or_default();
        let seen = seen.lock().map(|m| m.clone()).unwrap_or_default();
        let mut latencies: Vec<Duration> = created
            .iter()
            .filter_map(|(name, sent)| seen.get(name).map(|at| at.saturating_duration_since(*sent)))
            .collect();
        latencies.sort();
        let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        println!("tasks                          {count}");
        println!("controller --concurrency       {concurrency}");
        println!("all Tasks created in           {:>8.0} ms", created_in.as_secs_f64() * 1e3);
        println!("all Jobs exist after           {:>8.0} ms", all_jobs.as_secs_f64() * 1e3);
        println!("throughput                     {:>8.0} Tasks/s", count as f64 / all_jobs.as_secs_f64());
        println!("Task→Job latency p50           {:>8.1} ms", percentile(50).as_secs_f64() * 1e3);
        println!("Task→Job latency p99           {:>8.1} ms", percentile(99).as_secs_f64() * 1e3);
        println!("reconciles                     {reconciles:>8.0} ({:.0}/s over the burst)", reconciles / (all_jobs.as_secs_f64() + 2.0));
        match rss {
            Some(kib) => println!("controller peak RSS            {:>8.1} MiB", kib as f64 / 1024.0),
            None => println!("controller peak RSS            unavailable"),
        }
        let mut by_call: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for request in server.requests() {
            let resource = if request.subresource.is_empty() { request.resource.clone() } else { format!("{}/{}", request.resource, request.subresource) };
            *by_call.entry(format!("{} {}", request.verb, resource)).or_default() += 1;
        }
        let calls: Vec<String> = by_call.iter().filter(|(_, n)| **n >= count / 10).map(|(call, n)| format!("{call} {n}")).collect();
        println!("API requests (≥ {} each)        {}", count / 10, calls.join(", "));
        server.shutdown();
        Ok(())
    })
}
