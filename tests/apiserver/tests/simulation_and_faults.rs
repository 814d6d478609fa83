//! The Job simulator, fault injection, the request log, and concurrent writers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kubetask_test_apiserver::{
    Config, Fault, FaultAction, JobOutcome, JobSimulator, OUTCOME_LABEL,
};
use serde_json::json;

fn job(name: &str, outcome: Option<&str>) -> Job {
    let labels = outcome
        .map(|o| json!({OUTCOME_LABEL: o}))
        .unwrap_or(json!({}));
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}},
    }))
    .unwrap()
}

fn condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

async fn finished(jobs: &Api<Job>, name: &str) -> Job {
    eventually(Duration::from_secs(10), || async move {
        let job = jobs.get(name).await.unwrap();
        (condition(&job, "Complete") || condition(&job, "Failed")).then_some(job)
    })
    .await
}

#[tokio::test]
async fn the_job_simulator_runs_jobs_to_the_chosen_outcome() {
    let simulator = JobSimulator {
        start_delay: Duration::from_millis(10),
        run_time: Duration::from_millis(300),
        ..Default::default()
    };
    let (_server, client) = start_with(Config::default().with_job_simulator(simulator)).await;
    let jobs: Api<Job> = Api::namespaced(client, "default");
    jobs.create(&PostParams::default(), &job("ok", None))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("bad", Some("fail")))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("stuck", Some("hang")))
        .await
        .unwrap();

    let running = eventually(Duration::from_secs(5), || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.get("ok").await.unwrap();
            job.status.as_ref().and_then(|s| s.active).map(|_| job)
        }
    })
    .await;
    let status = running.status.unwrap();
    assert_eq!(status.active, Some(1));
    assert!(status.start_time.is_some() && status.completion_time.is_none());

    let ok = finished(&jobs, "ok").await;
    assert!(condition(&ok, "Complete"));
    let status = ok.status.unwrap();
    assert_eq!((status.succeeded, status.active), (Some(1), None));
    assert!(status.completion_time.is_some());

    let bad = finished(&jobs, "bad").await;
    assert!(condition(&bad, "Failed"));
    let status = bad.status.as_ref().unwrap();
    assert_eq!(status.failed, Some(3), "backoffLimit + 1 failed pods");
    let failed = status
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));

    let stuck = jobs.get("stuck").await.unwrap();
    assert!(!condition(&stuck, "Complete") && !condition(&stuck, "Failed"));
}

#[tokio::test]
async fn a_callback_chooses_outcomes() {
    let simulator = JobSimulator {
        start_delay: Duration::ZERO,
        run_time: Duration::from_millis(10),
        outcome: Arc::new(|job| {
            let name = job
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or_default();
            if name.starts_with("fail-") {
                JobOutcome::Fail
            } else {
                JobOutcome::Succeed
            }
        }),
    };
    let (_server, client) = start_with(Config::default().with_job_simulator(simulator)).await;
    let jobs: Api<Job> = Api::namespaced(client, "default");
    jobs.create(&PostParams::default(), &job("fail-1", None))
        .await
        .unwrap();
    assert!(condition(&finished(&jobs, "fail-1").await, "Failed"));
}

#[tokio::test]
async fn injected_faults_and_the_request_log() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();

    server.inject(
        Fault::new(
            Some("create"),
            Some("configmaps"),
            FaultAction::InternalError,
        )
        .times(1),
    );
    let error = api_error(maps.create(&PostParams::default(), &map).await);
    assert_eq!((error.code, error.reason.as_str()), (500, "InternalError"));
    maps.create(&PostParams::default(), &map)
        .await
        .expect("the fault fired once");

    // kube's client retries a 429 after the server's Retry-After.
    server.inject(
        Fault::new(
            Some("get"),
            None,
            FaultAction::TooManyRequests {
                retry_after_seconds: 1,
            },
        )
        .times(1),
    );
    let started = Instant::now();
    maps.get("x").await.expect("retried after Retry-After");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let codes: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.verb == "get")
        .map(|r| r.code)
        .collect();
    assert_eq!(codes, [429, 200]);

    server.inject(Fault::new(Some("update"), Some("configmaps"), FaultAction::Conflict).times(1));
    let current = maps.get("x").await.unwrap();
    assert_eq!(
        api_error(maps.replace("x", &PostParams::default(), &current).await).code,
        409
    );

    server.inject(
        Fault::new(
            Some("list"),
            Some("configmaps"),
            FaultAction::Latency(Duration::from_millis(200)),
        )
        .times(1),
    );
    let started = Instant::now();
    maps.list(&ListParams::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));

    // Probabilistic faults hit some requests, not all.
    server.inject(
        Fault::new(Some("get"), Some("configmaps"), FaultAction::InternalError)
            .with_probability(0.5),
    );
    let mut failures = 0;
    for _ in 0..40 {
        if maps.get("x").await.is_err() {
            failures += 1;
        }
    }
    assert!((5..=35).contains(&failures), "{failures} of 40 failed");
    server.clear_faults();
    maps.get("x").await.unwrap();

    let log = server.requests();
    let create = log
        .iter()
        .find(|r| r.verb == "create" && r.resource == "configmaps")
        .unwrap();
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, "/api/v1/namespaces/default/configmaps");
    assert_eq!(
        (create.user.as_str(), create.namespace.as_str(), create.code),
        ("admin", "default", 500)
    );
    assert!(
        log.iter()
            .any(|r| r.verb == "update" && r.name == "x" && r.code == 409)
    );
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn concurrent_writers_lose_nothing() {
    let (server, client) = start().await;
    let before = server.resource_version();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        writers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..40 {
                let map: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": format!("w{writer}-{i}")}}))
                        .unwrap();
                let created = maps.create(&PostParams::default(), &map).await.unwrap();
                versions.push(
                    created
                        .metadata
                        .resource_version
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            }
            versions
        }));
    }
    let mut all = Vec::new();
    for writer in writers {
        let versions = writer.await.unwrap();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "each writer sees increasing versions"
        );
        all.extend(versions);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 320, "every write got its own resourceVersion");
    assert!(all[0] > before);
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    assert_eq!(
        maps.list(&ListParams::default()).await.unwrap().items.len(),
        320
    );
}
