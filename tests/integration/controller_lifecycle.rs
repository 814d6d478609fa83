//! The Task lifecycle end to end (the real controller binary against the hardened test API
//! server, whose Job simulator runs pods): timeouts while running and when the pod never
//! starts, cancel while pending and running with the logs kept, retries (disruption not
//! counted, "do not retry" honoured), the agent's report in status, a suspended Job shown as
//! Queued, TTL, and the `kubetask cancel/logs/result` commands, also as `kubectl-kubetask`.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubetask::api::TaskPhase;
use serde_json::{Value, json};
use support::*;

const NS: &str = "team";
const LIMIT: Duration = Duration::from_secs(30);

/// Jobs named `report-good-*` / `report-bad-*` succeed with a valid / an invalid termination
/// message; the rest as `outcome_by_name`.
fn scripts(job: &Value) -> kubetask_test_apiserver::Script {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let script = kubetask_test_apiserver::Script::succeed();
    if name.starts_with("report-good") {
        script.with_termination_message(
            r#"{"summary": "opened PR 7", "outputs": {"pr": "https://example.com/pr/7"}, "usage": {"inputTokens": 1200, "outputTokens": 300, "cost": "0.42"}}"#,
        )
    } else if name.starts_with("report-bad") {
        script.with_termination_message("{not json")
    } else {
        outcome_by_name(job)
    }
}

async fn cluster() -> (Cluster, ControllerProcess) {
    let cluster = Cluster::start_scripted(Duration::from_millis(150), Arc::new(scripts)).await;
    cluster.namespace(NS).await;
    let controller = cluster.controller(&[]);
    (cluster, controller)
}

fn agent(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  serviceAccountName: agent\n{extra}"
    )
}

fn task(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  contexts: []\n{extra}"
    )
}

async fn pods_of(cluster: &Cluster, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .unwrap()
        .items
}

/// `kubetask ARGS -n team` as the tests' admin.
fn kubetask_cli(cluster: &Cluster, args: &[&str]) -> (i32, String, String) {
    let kubeconfig = cluster
        .server
        .kubeconfig_path()
        .to_str()
        .unwrap()
        .to_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-n", NS, "--kubeconfig", &kubeconfig]);
    kubetask(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_fire_while_running_and_when_the_pod_never_starts() {
    let (cluster, mut controller) = cluster().await;
    cluster
        .apply_yaml(&agent(
            "stuck",
            "  defaultTimeout: 2s\n  podLabels: {simulator.kubetask.io/outcome: unschedulable}\n",
        ))
        .await;
    cluster
        .apply_yaml(&task("hang-slow", "  timeout: 2s\n"))
        .await;
    cluster
        .apply_yaml(&task("never-scheduled", "  agentRef: stuck\n"))
        .await;

    let running = cluster.wait_reason(NS, "hang-slow", "Running", LIMIT).await;
    assert_eq!(running.status.unwrap().attempts.len(), 1);
    let timed_out = cluster.wait_reason(NS, "hang-slow", "Timeout", LIMIT).await;
    let status = timed_out.status.unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Failed));
    let message = &status.conditions[0].message;
    assert!(message.contains("timeout of 2s"), "{message}");
    assert_eq!(status.attempts.last().unwrap().reason, "Timeout");
    // The agent was stopped by its pod's deadline: the pod stays, and so does its log.
    let pods = pods_of(&cluster, "hang-slow").await;
    assert_eq!(pods.len(), 1, "no further attempt after a timeout");
    let (code, log, stderr) = kubetask_cli(&cluster, &["logs", "hang-slow"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(log.contains("agent working"), "{log}");

    // The Agent's defaultTimeout applies; the pod was never scheduled, and is removed.
    let never = cluster
        .wait_reason(NS, "never-scheduled", "Timeout", LIMIT)
        .await;
    assert_eq!(never.status.unwrap().phase, Some(TaskPhase::Failed));
    for _ in 0..100 {
        if pods_of(&cluster, "never-scheduled").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pods_of(&cluster, "never-scheduled").await.is_empty());
    assert!(controller.terminate(), "{}", controller.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_pending_and_while_running_keeps_the_logs() {
    let (cluster, mut controller) = cluster().await;
    cluster
        .apply_yaml(&task("waits", "  agentRef: not-yet\n"))
        .await;
    cluster
        .wait_reason(NS, "waits", "AgentNotFound", LIMIT)
        .await;
    cluster.cancel(NS, "waits", "not needed").await;
    let cancelled = cluster.wait_reason(NS, "waits", "Cancelled", LIMIT).await;
    let status = cancelled.status.unwrap();
    assert!(
        status.conditions[0].message.contains("not needed"),
        "{:?}",
        status.conditions
    );
    assert!(status.job_name.is_none());
    // Creating the Agent now does not start it.
    cluster.apply_yaml(&agent("not-yet", "")).await;
    assert!(cluster.jobs(NS).get_opt("waits").await.unwrap().is_none());

    cluster.apply_yaml(&task("hang-agent", "")).await;
    cluster
        .wait_reason(NS, "hang-agent", "Running", LIMIT)
        .await;
    let (code, said, stderr) = kubetask_cli(
        &cluster,
        &["cancel", "hang-agent", "--reason", "wrong repository"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(said.contains("cancelled"), "{said}");
    let cancelled = cluster
        .wait_reason(NS, "hang-agent", "Cancelled", LIMIT)
        .await;
    let status = cancelled.status.unwrap();
    assert!(status.conditions[0].message.contains("wrong repository"));
    // The pod is stopped by the kubelet (its deadline lowered), not deleted.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let pod = &status.attempts.last().unwrap().pod_name;
    for _ in 0..100 {
        let phase = pods.get(pod).await.unwrap().status.unwrap().phase;
        if phase.as_deref() == Some("Failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = pods.get(pod).await.unwrap();
    assert_eq!(
        stopped.status.unwrap().reason.as_deref(),
        Some("DeadlineExceeded")
    );
    let (code, log, stderr) = kubetask_cli(&cluster, &["logs", "hang-agent"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(log.contains("agent working"), "{log}");
    let (code, log, stderr) =
        kubetask_cli(&cluster, &["logs", "-f", "hang-agent", "--attempt", "1"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(log.contains("agent working"), "{log}");
    let (code, _, stderr) = kubetask_cli(&cluster, &["logs", "hang-agent", "--attempt", "2"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("there is no attempt 2"), "{stderr}");
    // kubectl finds it too, through the Job.
    let output = std::process::Command::new("kubectl")
        .args([
            "logs",
            "job/hang-agent",
            "-c",
            "agent",
            "-n",
            NS,
            "--kubeconfig",
        ])
        .arg(cluster.server.kubeconfig_path())
        .output()
        .expect("kubectl runs (CI installs it)");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && log.contains("agent working"),
        "{log}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Cancelling again says so; a finished Task is left alone.
    let (code, said, _) = kubetask_cli(&cluster, &["cancel", "hang-agent"]);
    assert_eq!(code, 0);
    assert!(said.contains("already finished"), "{said}");
    let (code, _, stderr) = kubetask_cli(&cluster, &["cancel", "no-such-task"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(controller.terminate(), "{}", controller.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_failures_but_not_disruptions_and_honour_do_not_retry() {
    let (cluster, mut controller) = cluster().await;
    cluster
        .apply_yaml(&agent(
            "flaky",
            "  retries: 1\n  podLabels: {simulator.kubetask.io/outcome: exit-1.disrupt.succeed}\n",
        ))
        .await;
    cluster
        .apply_yaml(&agent(
            "refuses",
            "  retries: 3\n  podLabels: {simulator.kubetask.io/outcome: exit-3.succeed}\n",
        ))
        .await;
    cluster
        .apply_yaml(&agent(
            "broken",
            "  podLabels: {simulator.kubetask.io/outcome: fail}\n",
        ))
        .await;
    cluster
        .apply_yaml(&task("flaky-task", "  agentRef: flaky\n"))
        .await;
    cluster
        .apply_yaml(&task("refused-task", "  agentRef: refuses\n"))
        .await;
    cluster
        .apply_yaml(&task("broken-task", "  agentRef: broken\n  retries: 2\n"))
        .await;

    let flaky = cluster
        .wait_phase(NS, "flaky-task", TaskPhase::Completed)
        .await;
    let attempts = flaky.status.unwrap().attempts;
    let summary: Vec<(&str, Option<i32>)> = attempts
        .iter()
        .map(|a| (a.reason.as_str(), a.exit_code))
        .collect();
    assert_eq!(
        summary,
        [
            ("Failed", Some(1)),
            ("Disrupted", Some(137)),
            ("Succeeded", Some(0))
        ],
        "one retry: the disruption is not counted"
    );

    let refused = cluster
        .wait_phase(NS, "refused-task", TaskPhase::Failed)
        .await;
    let status = refused.status.unwrap();
    assert_eq!(status.attempts.len(), 1, "exit code 3: no retry");
    assert!(
        status.conditions[0].message.contains("PodFailurePolicy"),
        "{:?}",
        status.conditions
    );

    let broken = cluster
        .wait_phase(NS, "broken-task", TaskPhase::Failed)
        .await;
    let status = broken.status.unwrap();
    assert_eq!(
        status.attempts.len(),
        3,
        "the Task's retries win over the Agent's"
    );
    assert!(status.attempts.iter().all(|a| a.exit_code == Some(1)));
    assert!(controller.terminate(), "{}", controller.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_report_becomes_the_result_and_a_bad_one_is_a_warning() {
    let (cluster, mut controller) = cluster().await;
    cluster.apply_yaml(&task("report-good", "")).await;
    cluster.apply_yaml(&task("report-bad", "")).await;
    let good = cluster
        .wait_phase(NS, "report-good", TaskPhase::Completed)
        .await;
    let status = good.status.unwrap();
    let result = status.result.expect("a result");
    assert_eq!(result.summary, "opened PR 7");
    assert_eq!(result.outputs["pr"], "https://example.com/pr/7");
    let usage = status.usage.expect("usage");
    assert_eq!(
        (usage.input_tokens, usage.cost.as_deref()),
        (Some(1200), Some("0.42"))
    );
    let (code, out, stderr) = kubetask_cli(&cluster, &["result", "report-good"]);
    assert_eq!(code, 0, "{stderr}");
    let printed: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(printed["summary"], "opened PR 7");
    assert_eq!(printed["usage"]["outputTokens"], 300);
    assert_eq!(printed["phase"], "Completed");
    // The same through kubectl, as the kubectl-kubetask plugin.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_kubetask"),
        dir.path().join("kubectl-kubetask"),
    )
    .unwrap();
    let output = std::process::Command::new("kubectl")
        .args([
            "kubetask",
            "result",
            "report-good",
            "-n",
            NS,
            "--kubeconfig",
        ])
        .arg(cluster.server.kubeconfig_path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                dir.path().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .expect("kubectl runs (CI installs it)");
    let printed: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(printed["summary"], "opened PR 7");

    let bad = cluster
        .wait_phase(NS, "report-bad", TaskPhase::Completed)
        .await;
    let status = bad.status.unwrap();
    assert!(status.result.is_none());
    let warning = status
        .conditions
        .iter()
        .find(|c| c.type_ == "ResultReported")
        .expect("a ResultReported condition");
    assert_eq!(
        (warning.status.as_str(), warning.reason.as_str()),
        ("False", "InvalidResult")
    );

    // A Task still running has no result yet.
    cluster.apply_yaml(&task("hang-busy", "")).await;
    cluster.wait_reason(NS, "hang-busy", "Running", LIMIT).await;
    let (code, _, stderr) = kubetask_cli(&cluster, &["result", "hang-busy"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no result until it finishes"), "{stderr}");
    assert!(controller.terminate(), "{}", controller.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_is_queued_and_finished_tasks_expire() {
    let (cluster, mut controller) = cluster().await;
    cluster.apply_yaml(&task("hang-queued", "")).await;
    cluster
        .wait_reason(NS, "hang-queued", "Running", LIMIT)
        .await;
    // A queue (Kueue) suspends the Job.
    cluster
        .jobs(NS)
        .patch(
            "hang-queued",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let queued = cluster
        .wait_reason(NS, "hang-queued", "Queued", LIMIT)
        .await;
    assert_eq!(queued.status.unwrap().phase, Some(TaskPhase::Pending));
    cluster
        .jobs(NS)
        .patch(
            "hang-queued",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    cluster
        .wait_reason(NS, "hang-queued", "Running", LIMIT)
        .await;

    cluster
        .apply_yaml(&task("short", "  ttlSecondsAfterFinished: 1\n"))
        .await;
    cluster.wait_phase(NS, "short", TaskPhase::Completed).await;
    wait_gone(&cluster.tasks(NS), "short").await;
    assert!(controller.terminate(), "{}", controller.log());
}

#[test]
fn the_binary_works_as_a_kubectl_plugin() {
    // kubectl runs `kubectl-kubetask ARGS` for `kubectl kubetask ARGS`.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-kubetask");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubetask"), &link).unwrap();
    let output = std::process::Command::new("kubectl")
        .args(["kubetask", "cancel", "--help"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                dir.path().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output();
    let Ok(output) = output else {
        panic!("kubectl is not installed (CI installs it)");
    };
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("--reason"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_tasks_queues_first_in_first_out_across_a_sigkill() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let cluster = Cluster::start_scripted(Duration::from_millis(300), Arc::new(scripts)).await;
    cluster.namespace(NS).await;
    cluster
        .apply_yaml(&agent("pair", "  maxConcurrentTasks: 2\n"))
        .await;
    // Every Job state in order, from a watch: the exact history of unfinished Jobs.
    let jobs = cluster.jobs(NS);
    let history = Arc::new(std::sync::Mutex::new((Vec::<String>::new(), 0usize)));
    let recorder = history.clone();
    let watching = tokio::spawn(async move {
        let mut unfinished = std::collections::BTreeSet::new();
        let mut events =
            std::pin::pin!(watcher::watcher(jobs, watcher::Config::default()).applied_objects());
        while let Some(Ok(job)) = events.next().await {
            let name = job.metadata.name.clone().unwrap_or_default();
            let done = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                });
            let mut record = recorder.lock().unwrap();
            if !record.0.contains(&name) {
                record.0.push(name.clone());
            }
            if done {
                unfinished.remove(&name);
            } else {
                unfinished.insert(name);
            }
            record.1 = record.1.max(unfinished.len());
        }
    });
    let mut controller = cluster.controller(&[]);
    let names: Vec<String> = (0..10).map(|i| format!("q-{i:02}")).collect();
    for name in &names {
        cluster.apply_yaml(&task(name, "  agentRef: pair\n")).await;
    }
    let queued = cluster.wait_reason(NS, "q-09", "Queued", LIMIT).await;
    let message = &queued.status.unwrap().conditions[0].message;
    assert!(message.contains("maxConcurrentTasks 2"), "{message}");
    // Kill the controller mid-queue; a new one goes on from what the API server holds.
    for _ in 0..300 {
        if history.lock().unwrap().0.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.kill();
    let mut controller = cluster.controller(&[]);
    let tasks = cluster.tasks(NS);
    for _ in 0..1200 {
        let list = tasks.list(&ListParams::default()).await.unwrap();
        if list
            .items
            .iter()
            .all(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TaskPhase::Completed))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = tasks.list(&ListParams::default()).await.unwrap();
    let stuck: Vec<_> = list
        .items
        .iter()
        .filter(|t| t.status.as_ref().and_then(|s| s.phase) != Some(TaskPhase::Completed))
        .map(|t| {
            (
                t.metadata.name.clone(),
                t.status.as_ref().map(|s| s.conditions.clone()),
            )
        })
        .collect();
    assert!(
        stuck.is_empty(),
        "not completed: {stuck:?}\n{}",
        controller.log()
    );
    assert!(controller.terminate(), "{}", controller.log());
    watching.abort();
    let (started, most) = history.lock().unwrap().clone();
    // Admitted first in, first out; two admitted together may create their Jobs in either
    // order.
    assert_eq!(started.len(), names.len());
    for (at, name) in started.iter().enumerate() {
        let expected = names.iter().position(|n| n == name).unwrap();
        assert!(
            at.abs_diff(expected) < 2,
            "Jobs created out of the Tasks' creation order: {started:?}"
        );
    }
    assert!(
        most <= 2,
        "at most 2 unfinished Jobs at any time, saw {most}"
    );
    assert_eq!(most, 2, "the limit was used");
}
