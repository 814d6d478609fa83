//! The model gateway's added latency, in one run against the fake model API
//! (`tests/apiserver/src/model_api.rs`) and the project's test API server, both in this
//! process:
//!
//!   cargo bench --bench gateway
//!
//! Each request is a POST on a new connection (the fake closes every connection, so both paths
//! pay one upstream connect), timed from the connect to the whole answer (whole responses) or
//! to the first event's bytes (streams). The baseline sends the same request to the fake
//! directly. Requests alternate between the two paths so both see the same machine; the
//! gateway checks its Task against the API server once per 5 s, as in production. A Task
//! with a budget has its requests read whole (their output limit is checked against what the
//! budget leaves): measured apart. Then the gateway's requests/s with 16 in flight. `KUBETASK_BENCH_REQUESTS=N` (default 1000).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubetask::api::Task;
use kubetask::api::budget::BUDGET_ANNOTATION;
use kubetask::gateway::keys::{self, Caller};
use kubetask::gateway::prices::PriceTable;
use kubetask::gateway::proxy::{self, Gateway, Provider, Providers};
use kubetask_test_apiserver::model_api::ModelApi;
use kubetask_test_apiserver::{Config, TestApiServer};
use serde_json::json;

mod support;
use support::{create_namespaces, env_number, install_crds};

const NS: &str = "bench";
const REAL_KEY: &str = "sk-bench";
const SIGNING_KEY: &[u8] = b"a signing key of at least thirty-two bytes";
const IN_FLIGHT: usize = 16;
/// Goal: the gateway adds at most this much to a whole request's p50.
const GOAL_ADDED_MS: f64 = 1.0;

const WHOLE: &str = r#"{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}"#;
const STREAMED: &str = r#"{"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}"#;

/// One request: the time to the whole answer, or (`first_event`) to the first event's bytes.
fn request(port: u16, key: &str, body: &str, first_event: bool) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    write!(
        stream,
        "POST /v1/messages HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nx-api-key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut seen = Vec::with_capacity(4096);
    let mut buffer = [0u8; 8192];
    loop {
        let n = stream.read(&mut buffer).expect("read");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buffer[..n]);
        if first_event && seen.windows(13).any(|w| w == b"message_start") {
            break;
        }
    }
    let took = started.elapsed();
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    took
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn main() {
    let n = env_number("KUBETASK_BENCH_REQUESTS", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let model = ModelApi::start(REAL_KEY);
    let (gateway_port, key, budget_key, _server) = runtime.block_on(async {
        let server = TestApiServer::start(Config::default()).expect("test API server");
        let client = server.client().await.expect("client");
        install_crds(&client).await.expect("CRDs");
        create_namespaces(&client, &[NS]).await.expect("namespace");
        let tasks = Api::<Task>::namespaced(client.clone(), NS);
        let mut minted = Vec::new();
        for name in ["bench", "bench-budget"] {
            let task: Task = serde_json::from_value(json!({
                "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                "metadata": {"name": name, "namespace": NS}, "spec": {"contexts": []},
            }))
            .expect("Task");
            let task = tasks
                .create(&PostParams::default(), &task)
                .await
                .expect("Task");
            minted.push(keys::mint(
                SIGNING_KEY,
                &Caller {
                    namespace: NS.to_owned(),
                    task: name.to_owned(),
                    uid: task.metadata.uid.expect("uid"),
                },
            ));
        }
        // The second Task runs with a budget fixed on its Job, as the controller fixes it: its
        // requests are read whole and their output limit checked against what is left.
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "bench-budget", "namespace": NS,
                         "annotations": {BUDGET_ANNOTATION: r#"{"maxTokens":1000000000000}"#}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "agent", "image": "agent"}]}}},
        }))
        .expect("Job");
        Api::<Job>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &job)
            .await
            .expect("Job");
        tasks
            .patch_status(
                "bench-budget",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"jobName": "bench-budget"}})),
            )
            .await
            .expect("status");
        let budget_key = minted.pop().expect("two keys");
        let key = minted.pop().expect("two keys");
        let provider = Provider {
            url: model.url(),
            key: Some(REAL_KEY.to_owned()),
        };
        let gateway = Arc::new(
            Gateway::new(
                SIGNING_KEY.to_vec(),
                Providers {
                    anthropic: provider.clone(),
                    openai: provider.clone(),
                    gemini: provider,
                },
                PriceTable::defaults(),
                client,
                32 * 1024 * 1024,
            )
            .expect("gateway"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(proxy::serve(gateway.clone(), listener));
        tokio::spawn(gateway.flush_every(Duration::from_secs(2)));
        (port, key, budget_key, server)
    });
    let model_port: u16 = model
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the fake's port");

    let mut results = Vec::new();
    for (label, body, first_event, key) in [
        ("whole response", WHOLE, false, &key),
        ("stream, first event", STREAMED, true, &key),
        ("whole, with a budget", WHOLE, false, &budget_key),
    ] {
        for _ in 0..50 {
            request(model_port, REAL_KEY, body, first_event);
            request(gateway_port, key, body, first_event);
        }
        let mut direct = Vec::with_capacity(n);
        let mut through = Vec::with_capacity(n);
        for _ in 0..n {
            direct.push(request(model_port, REAL_KEY, body, first_event));
            through.push(request(gateway_port, key, body, first_event));
        }
        direct.sort();
        through.sort();
        results.push((label, direct, through));
    }
    // Requests/s through the gateway, IN_FLIGHT at a time.
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..IN_FLIGHT {
            scope.spawn(|| {
                for _ in 0..n / IN_FLIGHT {
                    request(gateway_port, &key, WHOLE, false);
                }
            });
        }
    });
    let rate = (n / IN_FLIGHT * IN_FLIGHT) as f64 / started.elapsed().as_secs_f64();

    println!("model gateway: {n} requests per path, alternating, each on a new connection");
    for (label, direct, through) in &results {
        let added = percentile(through, 0.5) - percentile(direct, 0.5);
        println!(
            "  {label:<20} direct p50 {:6.3} ms p99 {:6.3} ms | gateway p50 {:6.3} ms p99 {:6.3} ms | added p50 {added:6.3} ms, p99 {:6.3} ms",
            percentile(direct, 0.5),
            percentile(direct, 0.99),
            percentile(through, 0.5),
            percentile(through, 0.99),
            percentile(through, 0.99) - percentile(direct, 0.99),
        );
    }
    println!("  through the gateway, {IN_FLIGHT} in flight: {rate:.0} requests/s");
    let added = percentile(&results[0].2, 0.5) - percentile(&results[0].1, 0.5);
    let first = percentile(&results[1].2, 0.5) - percentile(&results[1].1, 0.5);
    println!(
        "goal: added p50 ≤ {GOAL_ADDED_MS} ms (whole: {added:.3} ms: {}); a stream's first event not held back (added p50 {first:.3} ms: {})",
        if added <= GOAL_ADDED_MS {
            "met"
        } else {
            "NOT met"
        },
        if first <= GOAL_ADDED_MS {
            "met"
        } else {
            "NOT met"
        },
    );
}
