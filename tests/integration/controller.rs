//! End-to-end: the real `kubetask controller` process against the test API server with the
//! Job simulator. Each test starts its own server and controller.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubetask::api::{Agent, Task, TaskPhase};
use serde_json::{Value, json};
use support::*;

const NS: &str = "team-a";

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn task_yaml(name: &str, namespace: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{extra}  contexts:\n  - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: do it}}}}}}\n"
    )
}

/// The server's copies of what `kubetask render` renders offline for `file`.
async fn assert_matches_offline(cluster: &Cluster, files: &[&str], task: &Task) {
    let mut args = Vec::new();
    for file in files {
        args.push(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR")));
    }
    for object in render_offline(&args) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let live: Value = match object["kind"].as_str() {
            Some("Job") => {
                serde_json::to_value(cluster.jobs(NS).get(&name).await.unwrap()).unwrap()
            }
            Some("ConfigMap") => {
                serde_json::to_value(cluster.config_maps(NS).get(&name).await.unwrap()).unwrap()
            }
            other => panic!("unexpected {other:?}"),
        };
        let mut expected = object.clone();
        // Offline there is no Task uid; the server's objects carry the real one.
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        is_subset(&expected, &live).unwrap_or_else(|e| panic!("{name}: {e}"));
        let owner = &live["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["uid"].as_str(), owner["controller"].as_bool()),
            (task.uid().as_deref(), Some(true))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simple_example_runs_to_completion() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    cluster.apply_yaml(&example("simple-task.yaml")).await;
    let done = cluster
        .wait_phase(NS, "update-service-a", TaskPhase::Completed)
        .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.job_name.as_deref(), Some("update-service-a"));
    assert_eq!(reason(&done), "Completed");
    assert_eq!(status.observed_generation, Some(1));
    let (start, end) = (
        status.start_time.unwrap().0,
        status.completion_time.unwrap().0,
    );
    assert!(start <= end);
    assert_eq!(cluster.jobs_of(&done).await.len(), 1);
    assert_matches_offline(&cluster, &["simple-task.yaml"], &done).await;
    // Each transition was announced with an Event about the Task.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(cluster.client.clone(), NS);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for expected in ["JobCreated", "Completed"] {
        assert!(reasons.iter().any(|r| r == expected), "{reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_context_example_waits_for_its_config_maps() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    cluster
        .apply_yaml(&example("agent-claude-workspace.yaml"))
        .await;
    cluster
        .apply_yaml(&example("multi-context-task.yaml"))
        .await;
    let waiting = cluster
        .wait_reason(
            NS,
            "complex-task",
            "ConfigMapNotFound",
            Duration::from_secs(30),
        )
        .await;
    let message = &waiting.status.as_ref().unwrap().conditions[0].message;
    assert!(message.starts_with("Agent \"claude-workspace\" spec.defaultContexts[0].file.source.configMapKeyRef: ConfigMap \"org-configs\" not found"), "{message}");
    assert_eq!(waiting.status.unwrap().phase, Some(TaskPhase::Pending));
    assert!(
        cluster
            .jobs(NS)
            .get_opt("complex-task")
            .await
            .unwrap()
            .is_none(),
        "no Job while a ConfigMap is missing"
    );
    let org: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "org-configs"}, "data": {"guidelines.md": "# Org"}}),
    )
    .unwrap();
    cluster
        .config_maps(NS)
        .create(&PostParams::default(), &org)
        .await
        .unwrap();
    let waiting = cluster
        .wait_task(NS, "complex-task", Duration::from_secs(30), |s| {
            s.conditions
                .first()
                .is_some_and(|c| c.message.contains("\"guides\""))
        })
        .await;
    let message = &waiting.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.starts_with(
            "spec.contexts[1].file.source.configMapKeyRef: ConfigMap \"guides\" not found"
        ),
        "{message}"
    );

    // The ConfigMap appears without the key, then with it; then the directory ConfigMap.
    let guides: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "guides"}, "data": {"other": "x"}}))
            .unwrap();
    cluster
        .config_maps(NS)
        .create(&PostParams::default(), &guides)
        .await
        .unwrap();
    cluster
        .wait_reason(
            NS,
            "complex-task",
            "ConfigMapKeyNotFound",
            Duration::from_secs(30),
        )
        .await;
    cluster
        .config_maps(NS)
        .patch(
            "guides",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"refactoring-guide.md": "# Guide"}})),
        )
        .await
        .unwrap();
    let next = cluster
        .wait_task(NS, "complex-task", Duration::from_secs(30), |s| {
            s.conditions
                .first()
                .is_some_and(|c| c.message.contains("project-configs"))
        })
        .await;
    assert_eq!(reason(&next), "ConfigMapNotFound");
    let configs: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "project-configs"}, "data": {"a.yaml": "a: 1"}}),
    )
    .unwrap();
    cluster
        .config_maps(NS)
        .create(&PostParams::default(), &configs)
        .await
        .unwrap();
    let done = cluster
        .wait_phase(NS, "complex-task", TaskPhase::Completed)
        .await;
    assert_matches_offline(
        &cluster,
        &["multi-context-task.yaml", "agent-claude-workspace.yaml"],
        &done,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_missing_agents_and_invalid_tasks() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    // A failing Job fails the Task, with the Job's reason.
    cluster.apply_yaml(&task_yaml("fail-1", NS, "")).await;
    let failed = cluster.wait_phase(NS, "fail-1", TaskPhase::Failed).await;
    assert_eq!(reason(&failed), "JobFailed");
    assert!(
        failed.status.as_ref().unwrap().conditions[0]
            .message
            .contains("BackoffLimitExceeded")
    );
    assert!(failed.status.unwrap().completion_time.is_some());

    // An explicit Agent that does not exist: Pending, then runs once it is created.
    cluster
        .apply_yaml(&task_yaml("needs-agent", NS, "  agentRef: later\n"))
        .await;
    let waiting = cluster
        .wait_task(NS, "needs-agent", Duration::from_secs(30), |s| {
            s.phase == Some(TaskPhase::Pending)
                && s.conditions
                    .first()
                    .is_some_and(|c| c.reason == "AgentNotFound")
        })
        .await;
    assert!(
        waiting.status.unwrap().conditions[0]
            .message
            .contains("spec.agentRef")
    );
    cluster.apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: later, namespace: team-a}\nspec: {serviceAccountName: default}\n").await;
    let done = cluster
        .wait_phase(NS, "needs-agent", TaskPhase::Completed)
        .await;
    assert_eq!(cluster.jobs_of(&done).await.len(), 1);

    // A Task the CRD accepts but the renderer refuses (two contexts at one path): a
    // condition naming the field, and no Job.
    let duplicate = "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: invalid, namespace: team-a}\nspec:\n  contexts:\n  - {type: File, file: {filePath: /workspace/a.md, source: {inline: a}}}\n  - {type: File, file: {filePath: /workspace/a.md, source: {inline: b}}}\n";
    cluster.apply_yaml(duplicate).await;
    let invalid = cluster.wait_phase(NS, "invalid", TaskPhase::Failed).await;
    assert_eq!(reason(&invalid), "InvalidSpec");
    let message = &invalid.status.as_ref().unwrap().conditions[0].message;
    assert!(message.contains("spec.contexts[1]"), "{message}");
    assert!(cluster.jobs(NS).get_opt("invalid").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_cascade_and_a_vanished_job_fails_the_task() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    // Task deleted: its Job and ConfigMap go with it (owner references).
    cluster.apply_yaml(&task_yaml("hang-deleted", NS, "")).await;
    let running = cluster
        .wait_phase(NS, "hang-deleted", TaskPhase::Running)
        .await;
    assert!(running.status.unwrap().start_time.is_some());
    assert!(
        cluster
            .config_maps(NS)
            .get_opt("hang-deleted-contexts")
            .await
            .unwrap()
            .is_some()
    );
    cluster
        .tasks(NS)
        .delete("hang-deleted", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&cluster.jobs(NS), "hang-deleted").await;
    wait_gone(&cluster.config_maps(NS), "hang-deleted-contexts").await;

    // Job deleted while Running: the Task fails with JobMissing, and no new Job appears.
    cluster.apply_yaml(&task_yaml("hang-lost", NS, "")).await;
    cluster
        .wait_phase(NS, "hang-lost", TaskPhase::Running)
        .await;
    cluster
        .jobs(NS)
        .delete("hang-lost", &DeleteParams::background())
        .await
        .unwrap();
    let lost = cluster.wait_phase(NS, "hang-lost", TaskPhase::Failed).await;
    assert_eq!(reason(&lost), "JobMissing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        cluster
            .jobs(NS)
            .get_opt("hang-lost")
            .await
            .unwrap()
            .is_none(),
        "a lost Job is not recreated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_object_with_the_job_name_is_never_taken_over() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    let foreign: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
        "metadata": {"name": "taken"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}},
    }))
    .unwrap();
    cluster
        .jobs(NS)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    cluster.apply_yaml(&task_yaml("taken", NS, "")).await;
    let conflict = cluster.wait_phase(NS, "taken", TaskPhase::Failed).await;
    assert_eq!(reason(&conflict), "NameConflict");
    let job = cluster.jobs(NS).get("taken").await.unwrap();
    assert!(
        job.owner_references().is_empty(),
        "the foreign Job is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_health_endpoints_answer() {
    let cluster = Cluster::start().await;
    let mut controller = cluster.controller(&["--log-format", "json"]);
    cluster.apply_yaml(&task_yaml("t", NS, "")).await;
    cluster.wait_phase(NS, "t", TaskPhase::Completed).await;
    let health = controller.http_get("/healthz").unwrap();
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    assert!(controller.http_get("/readyz").unwrap().contains(" 200 "));
    let metrics = controller.http_get("/metrics").unwrap();
    for metric in [
        "kubetask_reconciles_total",
        "kubetask_reconcile_duration_seconds_bucket",
        "kubetask_render_duration_seconds_count 1",
        "kubetask_tasks{phase=\"Completed\"} 1",
    ] {
        assert!(metrics.contains(metric), "{metric} missing:\n{metrics}");
    }
    assert!(
        controller.terminate(),
        "exit status 0 after SIGTERM\n{}",
        controller.log()
    );
    let log = controller.log();
    let first = log.lines().next().unwrap();
    let line: Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(
        line.get("level").is_some() && line.get("message").is_some(),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_changes_reach_waiting_tasks_in_other_namespaces() {
    let cluster = Cluster::start().await;
    cluster.namespace("team-b").await;
    let _controller = cluster.controller(&[]);
    cluster
        .apply_yaml(&task_yaml("a", "team-b", "  agentRef: coder\n"))
        .await;
    cluster
        .wait_reason("team-b", "a", "AgentNotFound", Duration::from_secs(30))
        .await;
    // An Agent of the same name elsewhere does not count.
    cluster.apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: coder, namespace: team-a}\nspec: {serviceAccountName: default}\n").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        reason(&cluster.tasks("team-b").get("a").await.unwrap()),
        "AgentNotFound"
    );
    let agents: kube::Api<Agent> = kube::Api::namespaced(cluster.client.clone(), "team-b");
    let agent: Agent = serde_json::from_value(json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Agent", "metadata": {"name": "coder"}, "spec": {"serviceAccountName": "default", "agentImage": "example.com/coder:1"}})).unwrap();
    agents.create(&PostParams::default(), &agent).await.unwrap();
    let done = cluster
        .wait_phase("team-b", "a", TaskPhase::Completed)
        .await;
    let job = cluster.jobs_of(&done).await.remove(0);
    assert_eq!(
        job.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("example.com/coder:1")
    );
}
