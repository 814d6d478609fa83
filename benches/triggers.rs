//! Webhook → Task created, beside a bare `create` of the same Task, in one run against the
//! project's test API server in this process:
//!
//!   cargo bench --bench triggers
//!
//! The receiver serves its HTTP port in this process (`kubetask::triggers::receiver::serve`);
//! each delivery is a signed GitHub `issues.opened` (the documented payload, a new issue each
//! time) POSTed on a new connection and timed until the receiver answers `201` — its Task
//! created. The baseline creates the very Task the mapper makes of the same event, directly.
//! One at a time for the latency percentiles, then 8 in flight for the rates.
//! `KUBETASK_BENCH_DELIVERIES=N` (default 300).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kubetask::api::{Task, TaskTrigger};
use kubetask::triggers::{github, mapper, receiver};
use kubetask_test_apiserver::{Config, TestApiServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod support;
use support::{create_namespaces, env_number, install_crds};

const NS: &str = "bench";
const BARE: &str = "bench-bare";
const SECRET: &str = "bench-secret";
const CONCURRENCY: usize = 8;
/// Goal: a delivery's p50 is within this factor of a bare create's.
const GOAL_RATIO: f64 = 2.0;
const OPENED: &str = include_str!("../tests/fixtures/github/issues-opened.json");

/// The documented `issues.opened` payload, as issue `n`.
fn payload(n: usize) -> String {
    let mut value: Value = serde_json::from_str(OPENED).expect("the fixture");
    value["issue"]["id"] = json!(1_000_000 + n);
    value["issue"]["number"] = json!(n);
    value.to_string()
}

async fn post(port: u16, body: &str) -> (u16, Duration) {
    let signature = github::sign(SECRET.as_bytes(), body.as_bytes());
    let request = format!(
        "POST /hooks/{NS}/issues HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\nX-GitHub-Delivery: bench\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let elapsed = started.elapsed();
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, elapsed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_number("KUBETASK_BENCH_DELIVERIES", 300);
    let server = TestApiServer::start(Config::default()).expect("test API server");
    let client = server.client().await.expect("client");
    install_crds(&client).await.expect("CRDs");
    create_namespaces(&client, &[NS, BARE])
        .await
        .expect("namespaces");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hook", "namespace": NS}, "stringData": {"secret": SECRET},
    }))
    .expect("Secret");
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("Secret");
    let trigger: TaskTrigger = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "TaskTrigger",
        "metadata": {"name": "issues", "namespace": NS},
        "spec": {
            "source": {"github": {"repository": "myorg/service-a", "events": ["issues"], "webhookSecretRef": {"name": "hook"}}},
            "concurrencyPolicy": "Allow",
            "taskTemplate": {"spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Do what /workspace/event.md asks."}}}]}},
        },
    }))
    .expect("TaskTrigger");
    let trigger = Api::<TaskTrigger>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &trigger)
        .await
        .expect("TaskTrigger");
    let receiver = Arc::new(receiver::Receiver::new(
        client.clone(),
        None,
        "kubetask-system".to_owned(),
        receiver::DEFAULT_MAX_BODY,
    ));
    tokio::spawn(receiver.clone().flush_forever());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(receiver::serve(receiver, listener));

    // The baseline: the Task the mapper makes of the same event, created directly.
    let bare_task = |i: usize| -> Task {
        let body = payload(i);
        let event = github::parse("issues", body.as_bytes()).expect("event");
        let mapper::Mapped::Task { task, .. } = mapper::map(&trigger, &event, "bench") else {
            panic!("the event maps to a Task");
        };
        let mut task = *task;
        task.metadata.namespace = Some(BARE.to_owned());
        task.metadata.owner_references = None;
        task
    };
    let bare_tasks: Api<Task> = Api::namespaced(client.clone(), BARE);
    let bare_create = |i: usize| {
        let tasks = bare_tasks.clone();
        let task = bare_task(i);
        async move {
            let started = Instant::now();
            tasks
                .create(&PostParams::default(), &task)
                .await
                .expect("a bare create");
            started.elapsed()
        }
    };
    // Warm both paths up.
    for i in 0..20 {
        bare_create(100_000 + i).await;
        assert_eq!(post(port, &payload(100_000 + i)).await.0, 201);
    }
    // One at a time, interleaved so both see the same server.
    let mut bare = Vec::with_capacity(n);
    let mut hooked = Vec::with_capacity(n);
    for i in 0..n {
        bare.push(bare_create(i).await);
        let (status, took) = post(port, &payload(i)).await;
        assert_eq!(status, 201, "delivery {i}");
        hooked.push(took);
    }
    bare.sort();
    hooked.sort();
    // Rates, CONCURRENCY in flight.
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| bare_create(200_000 + i))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let bare_rate = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(0..n)
        .map(|i| async move { post(port, &payload(200_000 + i)).await.0 })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let hooked_rate = n as f64 / started.elapsed().as_secs_f64();

    let ratio = ms(percentile(&hooked, 0.5)) / ms(percentile(&bare, 0.5));
    println!("webhook → Task created, {n} deliveries one at a time, then {CONCURRENCY} in flight");
    println!(
        "  bare create      p50 {:7.2} ms   p99 {:7.2} ms   {:7.0} creates/s",
        ms(percentile(&bare, 0.5)),
        ms(percentile(&bare, 0.99)),
        bare_rate
    );
    println!(
        "  signed delivery  p50 {:7.2} ms   p99 {:7.2} ms   {:7.0} deliveries/s",
        ms(percentile(&hooked, 0.5)),
        ms(percentile(&hooked, 0.99)),
        hooked_rate
    );
    println!(
        "  p50 delivery / p50 bare create: {ratio:.2} (goal ≤ {GOAL_RATIO:.1}) — {}",
        if ratio <= GOAL_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(server);
}
