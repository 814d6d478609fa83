//! CronTasks end to end: the real controller binary against the hardened test API server, its
//! schedule clock set by the tests (the hidden `--test-clock-file`). A run per tick, Forbid
//! skipping while a run is unfinished, Replace cancelling with the logs kept, history limits,
//! a restart after missed ticks (one run, or none past the starting deadline), two replicas
//! never creating a run twice, `kubetask trigger cron` (also as `kubectl kubetask`), deleting
//! a CronTask deleting its Tasks, and `kubectl get crontasks`' columns.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use kubetask::api::{CronTask, Task, TaskPhase, cron_labels};
use kubetask::cron::scheduled_name;
use support::*;

const NS: &str = "team-a";
const LIMIT: Duration = Duration::from_secs(30);

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// The run of `cron_task` scheduled for `time`.
fn run_at(cron_task: &str, time: &str) -> String {
    scheduled_name(cron_task, ts(time))
}

fn cron_task(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: CronTask\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  schedule: '*/5 * * * *'\n  taskTemplate:\n    metadata: {{labels: {{team: a}}}}\n    spec: {{contexts: [{{type: File, file: {{filePath: /workspace/task.md, source: {{inline: 'Update dependencies'}}}}}}]}}\n{extra}"
    )
}

/// The names of the Tasks `cron_task` owns, sorted.
async fn runs(cluster: &Cluster, cron_task: &str) -> Vec<String> {
    let mut names: Vec<String> = cluster
        .tasks(NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|task| {
            task.owner_references()
                .iter()
                .any(|o| o.kind == "CronTask" && o.name == cron_task)
                && task.metadata.deletion_timestamp.is_none()
        })
        .map(|task| task.name_any())
        .collect();
    names.sort();
    names
}

async fn wait_runs(cluster: &Cluster, cron_task: &str, expected: &[String]) {
    let mut expected = expected.to_vec();
    expected.sort();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let found = runs(cluster, cron_task).await;
        if found == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs of {cron_task}: {found:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the Task to exist, then for its phase.
async fn wait_phase(cluster: &Cluster, name: &str, phase: TaskPhase) -> Task {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while cluster.tasks(NS).get_opt(name).await.unwrap().is_none() {
        if tokio::time::Instant::now() >= deadline {
            let runs: Vec<String> = cluster
                .tasks(NS)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|t| t.name_any())
                .collect();
            // What each CronTask decided, for a failure that does not repeat.
            let cron_tasks: Vec<String> = cron_tasks(&cluster.client)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|c| format!("{} {:?} {:?}", c.name_any(), c.metadata.uid, c.status))
                .collect();
            panic!("no Task {name}; runs: {runs:?}; CronTasks: {cron_tasks:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.wait_phase(NS, name, phase).await
}

fn cron_tasks(client: &Client) -> Api<CronTask> {
    Api::namespaced(client.clone(), NS)
}

/// Waits until the CronTask's condition `type_` has `reason`.
async fn wait_condition(cluster: &Cluster, name: &str, type_: &str, reason: &str) -> CronTask {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let cron_task = cron_tasks(&cluster.client).get(name).await.unwrap();
        let found = cron_task
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
            .map(|c| c.reason.clone());
        if found.as_deref() == Some(reason) {
            return cron_task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "CronTask {name}: {type_} is {found:?}, not {reason}; status {:?}",
            cron_task.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stays true for `period` (checked every 50 ms).
async fn holds_for(period: Duration, check: impl AsyncFn() -> bool) -> bool {
    let end = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < end {
        if !check().await {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_per_tick_history_limits_and_the_status() {
    let cluster = Cluster::start().await;
    let clock = TestClock::at("2030-01-01T00:00:30Z");
    let _controller = cluster.controller(&clock.flag());
    cluster
        .apply_yaml(&cron_task("nightly", "  successfulTasksHistoryLimit: 2\n"))
        .await;
    // Created long before the clock's "now": the ticks missed since count once, the latest.
    let first = run_at("nightly", "2030-01-01T00:00:00Z");
    wait_runs(&cluster, "nightly", std::slice::from_ref(&first)).await;
    let task = wait_phase(&cluster, &first, TaskPhase::Completed).await;
    let labels = task.labels();
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        labels.get(cron_labels::CRON_TASK).map(String::as_str),
        Some("nightly")
    );
    assert_eq!(
        task.annotations()
            .get(cron_labels::SCHEDULED_TIME)
            .map(String::as_str),
        Some("2030-01-01T00:00:00Z")
    );
    // Nothing more until the next tick.
    let quiet = holds_for(Duration::from_secs(2), async || {
        runs(&cluster, "nightly").await.len() == 1
    })
    .await;
    assert!(quiet, "a run before its tick");
    let mut expected = vec![first];
    for tick in [
        "2030-01-01T00:05:00Z",
        "2030-01-01T00:10:00Z",
        "2030-01-01T00:15:00Z",
    ] {
        clock.set(
            &ts(tick)
                .checked_add(jiff::SignedDuration::from_secs(7))
                .unwrap()
                .to_string(),
        );
        let name = run_at("nightly", tick);
        wait_phase(&cluster, &name, TaskPhase::Completed).await;
        expected.push(name);
        // Two completed runs are kept; older ones are deleted.
        let keep = expected.len().saturating_sub(2);
        wait_runs(&cluster, "nightly", &expected[keep..]).await;
    }
    let status = wait_condition(&cluster, "nightly", "Scheduled", "RunCreated")
        .await
        .status
        .unwrap();
    assert_eq!(
        status.last_schedule_time.map(|t| t.0),
        Some(ts("2030-01-01T00:15:00Z"))
    );
    assert!(status.last_successful_time.is_some());
    // `kubectl get crontasks`: the columns CronJob users know.
    let table = table(&cluster.client, NS, "crontasks").await;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Schedule",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][1], "*/5 * * * *");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_while_a_run_is_unfinished_and_replace_cancels_it_with_logs_kept() {
    let cluster = Cluster::start().await;
    let clock = TestClock::at("2030-01-01T00:00:30Z");
    let _controller = cluster.controller(&clock.flag());
    // Jobs named `hang-*` run until stopped.
    cluster
        .apply_yaml(&cron_task("hang-forbid", "  concurrencyPolicy: Forbid\n"))
        .await;
    cluster
        .apply_yaml(&cron_task("hang-replace", "  concurrencyPolicy: Replace\n"))
        .await;
    let first_forbid = run_at("hang-forbid", "2030-01-01T00:00:00Z");
    let first_replace = run_at("hang-replace", "2030-01-01T00:00:00Z");
    wait_phase(&cluster, &first_forbid, TaskPhase::Running).await;
    wait_phase(&cluster, &first_replace, TaskPhase::Running).await;

    clock.set("2030-01-01T00:05:03Z");
    let skipped = wait_condition(&cluster, "hang-forbid", "Scheduled", "ConcurrencyForbidden")
        .await
        .status
        .unwrap();
    assert_eq!(
        skipped.last_skipped_time.map(|t| t.0),
        Some(ts("2030-01-01T00:05:00Z"))
    );
    assert_eq!(
        skipped
            .active
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&first_forbid)
    );
    assert_eq!(
        runs(&cluster, "hang-forbid").await,
        std::slice::from_ref(&first_forbid)
    );

    // Replace: the unfinished run is cancelled (Failed/Cancelled, its pod and logs kept) and
    // the new one starts.
    let cancelled = cluster
        .wait_reason(NS, &first_replace, "Cancelled", LIMIT)
        .await;
    let message = &cancelled.status.unwrap().conditions[0].message;
    assert!(message.contains("replaced"), "{message}");
    let second_replace = run_at("hang-replace", "2030-01-01T00:05:00Z");
    wait_phase(&cluster, &second_replace, TaskPhase::Running).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let kept = pods
        .list(
            &ListParams::default().labels(&format!("batch.kubernetes.io/job-name={first_replace}")),
        )
        .await
        .unwrap();
    assert_eq!(
        kept.items.len(),
        1,
        "the replaced run's pod (and its logs) is kept"
    );

    // Once the Forbid run is done, the next tick runs (the skipped one does not run late).
    cluster.cancel(NS, &first_forbid, "done").await;
    cluster
        .wait_reason(NS, &first_forbid, "Cancelled", LIMIT)
        .await;
    // It is no longer listed as active.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let status = cron_tasks(&cluster.client)
            .get("hang-forbid")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if status.active.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still active: {:?}",
            status.active
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quiet = holds_for(Duration::from_secs(2), async || {
        runs(&cluster, "hang-forbid").await.len() == 1
    })
    .await;
    assert!(quiet, "the skipped tick ran late");
    clock.set("2030-01-01T00:10:02Z");
    let third = run_at("hang-forbid", "2030-01-01T00:10:00Z");
    wait_phase(&cluster, &third, TaskPhase::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_missed_ticks_runs_once_or_not_past_the_starting_deadline() {
    let cluster = Cluster::start().await;
    let clock = TestClock::at("2030-01-01T00:00:30Z");
    let mut controller = cluster.controller(&clock.flag());
    cluster.apply_yaml(&cron_task("late", "")).await;
    cluster
        .apply_yaml(&cron_task("strict", "  startingDeadlineSeconds: 60\n"))
        .await;
    for name in ["late", "strict"] {
        wait_runs(&cluster, name, &[run_at(name, "2030-01-01T00:00:00Z")]).await;
    }
    controller.kill();
    // Down for five ticks (00:05 … 00:25).
    clock.set("2030-01-01T00:27:00Z");
    let _controller = cluster.controller(&clock.flag());
    wait_runs(
        &cluster,
        "late",
        &[
            run_at("late", "2030-01-01T00:00:00Z"),
            run_at("late", "2030-01-01T00:25:00Z"),
        ],
    )
    .await;
    let strict = wait_condition(&cluster, "strict", "Scheduled", "MissedStartingDeadline").await;
    assert_eq!(
        strict.status.unwrap().last_skipped_time.map(|t| t.0),
        Some(ts("2030-01-01T00:25:00Z"))
    );
    let settled = holds_for(Duration::from_secs(2), async || {
        runs(&cluster, "late").await.len() == 2 && runs(&cluster, "strict").await.len() == 1
    })
    .await;
    assert!(settled, "missed ticks ran more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_create_a_run_twice() {
    let cluster = Cluster::start().await;
    let clock = TestClock::at("2030-01-01T00:00:30Z");
    // Without leader election both act on every tick: the runs' names decide.
    let _one = cluster.controller(&clock.flag());
    let _two = cluster.controller(&clock.flag());
    cluster
        .apply_yaml(&cron_task("twice", "  successfulTasksHistoryLimit: 10\n"))
        .await;
    let mut expected = vec![run_at("twice", "2030-01-01T00:00:00Z")];
    wait_runs(&cluster, "twice", &expected).await;
    for tick in ["2030-01-01T00:05:00Z", "2030-01-01T00:10:00Z"] {
        clock.set(
            &ts(tick)
                .checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap()
                .to_string(),
        );
        expected.push(run_at("twice", tick));
        wait_runs(&cluster, "twice", &expected).await;
    }
    let settled = holds_for(Duration::from_secs(2), async || {
        runs(&cluster, "twice").await.len() == 3
    })
    .await;
    assert!(settled);
    let creates = cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.user == CONTROLLER_USER && r.verb == "create" && r.resource == "tasks")
        .map(|r| r.code)
        .collect::<Vec<_>>();
    assert_eq!(
        creates.iter().filter(|code| **code == 201).count(),
        3,
        "one created run per tick: {creates:?}"
    );
    assert!(
        creates.iter().all(|code| *code == 201 || *code == 409),
        "{creates:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_cron_creates_a_run_at_once_even_when_suspended() {
    let cluster = Cluster::start().await;
    let clock = TestClock::at("2030-01-01T00:00:30Z");
    let _controller = cluster.controller(&clock.flag());
    cluster
        .apply_yaml(&cron_task("by-hand", "  suspend: true\n"))
        .await;
    wait_condition(&cluster, "by-hand", "Ready", "Suspended").await;
    let kubeconfig = cluster.server.kubeconfig_path().to_owned();
    let (code, stdout, stderr) = kubetask(&[
        "trigger",
        "cron",
        "by-hand",
        "-n",
        NS,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let name = stdout
        .trim()
        .strip_prefix("task.kubetask.io/")
        .and_then(|rest| rest.strip_suffix(" created"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert!(name.starts_with("by-hand-manual-"), "{name}");
    // Created before the command returned; owned, labelled, annotated; it runs.
    let task: Task = cluster.tasks(NS).get(&name).await.unwrap();
    assert_eq!(
        task.annotations()
            .get(cron_labels::TRIGGER)
            .map(String::as_str),
        Some("manual")
    );
    assert_eq!(runs(&cluster, "by-hand").await, std::slice::from_ref(&name));
    wait_phase(&cluster, &name, TaskPhase::Completed).await;
    // A missing CronTask is a clear error.
    let (code, _, stderr) = kubetask(&[
        "trigger",
        "cron",
        "nope",
        "-n",
        NS,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("CronTask \"nope\" not found"), "{stderr}");

    // Through kubectl: `kubectl kubetask trigger cron` (the binary as the kubectl-kubetask
    // plugin) and `kubectl get crontasks`' columns.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_kubetask"),
        dir.path().join("kubectl-kubetask"),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new("kubectl")
            .args(args)
            .args(["-n", NS, "--kubeconfig"])
            .arg(&kubeconfig)
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
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    // Manual runs are named by the second: wait for the next one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let said = kubectl(&["kubetask", "trigger", "cron", "by-hand"]);
    assert!(
        said.starts_with("task.kubetask.io/by-hand-manual-"),
        "{said}"
    );
    let table = kubectl(&["get", "crontasks"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("by-hand"), "{table}");
    assert_eq!(runs(&cluster, "by-hand").await.len(), 2);

    // Deleting the CronTask deletes its Tasks (owner references, garbage collection).
    cron_tasks(&cluster.client)
        .delete("by-hand", &Default::default())
        .await
        .unwrap();
    wait_gone(&cluster.tasks(NS), &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_the_server_refuses_is_a_condition_not_a_retry_loop() {
    let cluster = Cluster::start().await;
    let clock = TestClock::at("2030-01-01T00:00:30Z");
    let controller = cluster.controller(&clock.flag());
    // The template's annotations are checked by the API server when the Task is created: a
    // key no Kubernetes object may have is refused then.
    let yaml = cron_task("refused", "").replace(
        "metadata: {labels: {team: a}}",
        "metadata: {labels: {team: a}, annotations: {'not a key!': x}}",
    );
    cluster.apply_yaml(&yaml).await;
    let status = wait_condition(&cluster, "refused", "Scheduled", "InvalidTemplate")
        .await
        .status
        .unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Scheduled")
        .unwrap()
        .message;
    assert!(message.starts_with("spec.taskTemplate: "), "{message}");
    let creates = || {
        cluster
            .server
            .requests()
            .iter()
            .filter(|r| r.user == CONTROLLER_USER && r.verb == "create" && r.resource == "tasks")
            .count()
    };
    let before = creates();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        creates(),
        before,
        "the refused run was retried: {}",
        controller.log()
    );
}
