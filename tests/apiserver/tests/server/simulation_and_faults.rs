//! The Job simulator, fault injection, the request log, and concurrent writers.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kubetask_test_apiserver::{Config, Fault, FaultAction, JobSimulator, OUTCOME_LABEL, Script};
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
                Script::fail()
            } else {
                Script::succeed()
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

fn pods_of(client: &kube::Client, job: &str) -> impl Future<Output = Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("batch.kubernetes.io/job-name={job}");
    async move {
        let mut pods = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items;
        pods.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        pods
    }
}

fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

#[tokio::test]
async fn pods_run_the_script_under_the_pod_failure_policy() {
    let simulator = JobSimulator {
        start_delay: Duration::from_millis(10),
        run_time: Duration::from_millis(60),
        outcome: Arc::new(|job| {
            let name = job["metadata"]["name"].as_str().unwrap_or_default();
            match name {
                "retried" => Script::from_label("disrupt.exit-1.exit-0"),
                "no-retry" => Script::from_label("exit-3.exit-0"),
                _ => Script::exit(0).with_termination_message(r#"{"summary": "done"}"#),
            }
        }),
    };
    let (_server, client) = start_with(Config::default().with_job_simulator(simulator)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}},
    ]});
    for name in ["retried", "no-retry", "reports"] {
        let mut job: serde_json::Value = serde_json::to_value(job(name, None)).unwrap();
        job["spec"]["podFailurePolicy"] = policy.clone();
        jobs.create(
            &PostParams::default(),
            &serde_json::from_value(job).unwrap(),
        )
        .await
        .unwrap();
    }

    // A disrupted pod does not count; a failed one does; the third succeeds.
    let retried = finished(&jobs, "retried").await;
    assert!(condition(&retried, "Complete"));
    assert_eq!(retried.status.as_ref().unwrap().failed, Some(1));
    let pods = pods_of(&client, "retried").await;
    assert_eq!(pods.len(), 3);
    let disrupted: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            let conditions = p.status.as_ref().and_then(|s| s.conditions.clone());
            conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "DisruptionTarget"))
        })
        .collect();
    assert_eq!(disrupted.len(), 1);
    assert_eq!(exit_code(disrupted[0]), Some(137));
    let mut codes: Vec<_> = pods.iter().map(exit_code).collect();
    codes.sort();
    assert_eq!(codes, [Some(0), Some(1), Some(137)]);

    // Exit code 3 matches the FailJob rule: no retry although backoffLimit allows two.
    let no_retry = finished(&jobs, "no-retry").await;
    assert!(condition(&no_retry, "Failed"));
    let reason = no_retry.status.unwrap().conditions.unwrap()[0]
        .reason
        .clone();
    assert_eq!(reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(pods_of(&client, "no-retry").await.len(), 1);

    // The termination message and the log.
    finished(&jobs, "reports").await;
    let pod = &pods_of(&client, "reports").await[0];
    let terminated = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        terminated.message.as_deref(),
        Some(r#"{"summary": "done"}"#)
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let log = pods
        .logs(&pod.name_any(), &Default::default())
        .await
        .unwrap();
    assert!(log.contains("agent working"), "{log}");
}

#[tokio::test]
async fn a_lowered_pod_deadline_stops_the_pod_and_keeps_it() {
    let simulator = JobSimulator {
        start_delay: Duration::from_millis(10),
        run_time: Duration::from_millis(10),
        outcome: Arc::new(|job| match job["metadata"]["name"].as_str() {
            Some("pending") => Script::from_label("unschedulable"),
            _ => Script::hang(),
        }),
    };
    let (_server, client) = start_with(Config::default().with_job_simulator(simulator)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("stuck", None))
        .await
        .unwrap();
    let running = eventually(Duration::from_secs(5), || {
        let client = client.clone();
        async move {
            pods_of(&client, "stuck")
                .await
                .into_iter()
                .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        }
    })
    .await;
    let name = running.name_any();
    // Raising or removing the deadline is refused; setting and lowering it is allowed.
    let patch = |deadline: serde_json::Value| {
        kube::api::Patch::Merge(json!({"spec": {"activeDeadlineSeconds": deadline}}))
    };
    let params = kube::api::PatchParams::default();
    pods.patch(&name, &params, &patch(json!(100)))
        .await
        .unwrap();
    let raised = pods.patch(&name, &params, &patch(json!(200))).await;
    assert!(matches!(raised, Err(kube::Error::Api(e)) if e.code == 422));
    pods.patch(&name, &params, &patch(json!(1))).await.unwrap();
    let stopped = eventually(Duration::from_secs(5), || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            let pod = pods.get(&name).await.unwrap();
            (pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")).then_some(pod)
        }
    })
    .await;
    assert_eq!(
        stopped.status.as_ref().unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    assert_eq!(exit_code(&stopped), Some(143));
    // backoffLimit 2: the Job runs a new pod; the stopped one stays with its log.
    assert!(pods.logs(&name, &Default::default()).await.is_ok());

    // An unschedulable pod stays pending; suspending the Job deletes it.
    jobs.create(&PostParams::default(), &job("pending", None))
        .await
        .unwrap();
    let pending = eventually(Duration::from_secs(5), || {
        let client = client.clone();
        async move {
            pods_of(&client, "pending").await.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.reason.as_deref() == Some("Unschedulable"))
                    })
            })
        }
    })
    .await;
    assert!(pending.spec.as_ref().unwrap().node_name.is_none());
    jobs.patch(
        "pending",
        &params,
        &kube::api::Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), || {
        let client = client.clone();
        async move { pods_of(&client, "pending").await.is_empty().then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(5), || {
        let jobs = jobs.clone();
        async move { condition(&jobs.get("pending").await.unwrap(), "Suspended").then_some(()) }
    })
    .await;
}
