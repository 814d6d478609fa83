//! End-to-end resilience: a controller killed mid-burst, two replicas with leader election,
//! and an API server that fails requests and drops watches.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};
use kubetask::api::{Task, TaskPhase};
use kubetask_test_apiserver::{Fault, FaultAction};
use support::*;

const NS: &str = "team-a";

fn task(name: &str) -> Task {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": name}}}]},
    }))
    .unwrap()
}

async fn create_tasks(cluster: &Cluster, names: &[String]) {
    let tasks = cluster.tasks(NS);
    stream::iter(names.iter().cloned())
        .for_each_concurrent(16, |name| {
            let tasks = tasks.clone();
            async move {
                tasks
                    .create(&PostParams::default(), &task(&name))
                    .await
                    .expect("create Task");
            }
        })
        .await;
}

/// Waits until every Task is finished; then checks each has exactly one Job it controls and
/// the phase its Job's outcome implies.
async fn assert_all_finished_with_one_job(cluster: &Cluster, names: &[String], limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let tasks = loop {
        let list = cluster
            .tasks(NS)
            .list(&ListParams::default())
            .await
            .unwrap();
        let finished = list
            .items
            .iter()
            .filter(|t| {
                matches!(
                    t.status.as_ref().and_then(|s| s.phase),
                    Some(TaskPhase::Completed | TaskPhase::Failed)
                )
            })
            .count();
        if finished == names.len() {
            break list.items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{finished} of {} Tasks finished within {limit:?}",
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let jobs = cluster
        .jobs(NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut jobs_per_task: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        for owner in job
            .owner_references()
            .iter()
            .filter(|r| r.controller == Some(true))
        {
            *jobs_per_task.entry(owner.uid.clone()).or_default() += 1;
        }
    }
    assert_eq!(jobs.len(), names.len(), "one Job per Task, no more");
    for task in &tasks {
        let uid = task.uid().unwrap();
        assert_eq!(
            jobs_per_task.get(&uid),
            Some(&1),
            "Task {} has exactly one Job",
            task.name_any()
        );
        let expected = if task.name_any().starts_with("fail-") {
            TaskPhase::Failed
        } else {
            TaskPhase::Completed
        };
        assert_eq!(
            task.status.as_ref().and_then(|s| s.phase),
            Some(expected),
            "{}: {:?}",
            task.name_any(),
            task.status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_burst_leaves_exactly_one_job_per_task() {
    let cluster = Cluster::start_with(Duration::from_millis(50)).await;
    let mut first = cluster.controller(&["--concurrency", "8"]);
    let names: Vec<String> = (0..200)
        .map(|i| {
            if i % 10 == 0 {
                format!("fail-{i}")
            } else {
                format!("task-{i}")
            }
        })
        .collect();
    let creating = create_tasks(&cluster, &names);
    // SIGKILL once some Jobs exist but the burst is not done.
    let killing = async {
        loop {
            let jobs = cluster
                .jobs(NS)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len();
            if jobs >= 30 {
                first.kill();
                return jobs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((), killed_at) = tokio::join!(creating, killing);
    assert!(killed_at < 200, "killed mid-burst (at {killed_at} Jobs)");
    let _second = cluster.controller(&["--concurrency", "8"]);
    assert_all_finished_with_one_job(&cluster, &names, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let cluster = Cluster::start().await;
    let lease = [
        "--leader-elect",
        "--lease-duration-seconds",
        "3",
        "--lease-renew-grace-seconds",
        "1",
    ];
    let mut first = cluster.controller(&lease);
    let leader_now = |process: &ControllerProcess| process.is_leader() == Some(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !leader_now(&first) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first replica never led:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = cluster.controller(&lease);
    create_tasks(&cluster, &["before-1".to_owned()]).await;
    cluster
        .wait_phase(NS, "before-1", TaskPhase::Completed)
        .await;
    // The standby is up but does not lead.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while second.is_leader().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second replica never served metrics:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(second.is_leader(), Some(false));
    assert!(leader_now(&first));
    let reconciles = |process: &ControllerProcess| -> u64 {
        let metrics = process.http_get("/metrics").unwrap_or_default();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("kubetask_reconciles_total "))
            .unwrap_or("x 0");
        line.rsplit(' ')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(reconciles(&first) > 0);
    assert_eq!(reconciles(&second), 0, "the standby does not reconcile");

    // The leader dies without releasing the lease; the standby takes over once it expires.
    first.kill();
    let killed = tokio::time::Instant::now();
    create_tasks(&cluster, &["after-1".to_owned()]).await;
    cluster
        .wait_task(NS, "after-1", Duration::from_secs(30), |s| {
            s.phase == Some(TaskPhase::Completed)
        })
        .await;
    assert!(leader_now(&second));
    assert!(reconciles(&second) > 0);
    eprintln!(
        "fail-over and a Task run took {:?} (lease duration 3 s)",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_requests_and_dropped_watches_do_not_duplicate_or_lose_work() {
    let cluster = Cluster::start_with(Duration::from_millis(50)).await;
    cluster.server.inject(
        Fault::new(None, None, FaultAction::InternalError)
            .with_probability(0.05)
            .for_user(CONTROLLER_USER),
    );
    cluster.server.inject(
        Fault::new(
            Some("watch"),
            None,
            FaultAction::DropWatch {
                after: Duration::from_millis(700),
            },
        )
        .with_probability(0.5)
        .for_user(CONTROLLER_USER),
    );
    let _controller = cluster.controller(&[]);
    let names: Vec<String> = (0..60)
        .map(|i| {
            if i % 6 == 0 {
                format!("fail-{i}")
            } else {
                format!("task-{i}")
            }
        })
        .collect();
    create_tasks(&cluster, &names).await;
    assert_all_finished_with_one_job(&cluster, &names, Duration::from_secs(120)).await;
    let requests = cluster.server.requests();
    let failed = requests
        .iter()
        .filter(|r| r.user == CONTROLLER_USER && r.code == 500)
        .count();
    assert!(failed > 0, "faults were injected");
}
