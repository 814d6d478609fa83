//! End-to-end: what the controller does when the API server refuses it, fails, or is slow to
//! clean up, on a test API server that behaves like a hardened cluster (RBAC,
//! OwnerReferencesPermissionEnforcement, asynchronous garbage collection).

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use kubetask::api::{Agent, TaskPhase};
use kubetask_test_apiserver::{Fault, FaultAction};
use serde_json::json;
use support::*;

const NS: &str = "team-a";
const SOON: Duration = Duration::from_secs(15);

fn task_yaml(name: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  contexts:\n  - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: do it}}}}}}\n"
    )
}

/// How many creates of the controller were forbidden.
fn forbidden_creates(cluster: &Cluster) -> usize {
    cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.user == CONTROLLER_USER && r.verb == "create" && r.code == 403)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_create_says_what_to_grant_and_does_not_loop() {
    let cluster = Cluster::start().await;
    // The ClusterRole without `update` on `tasks/finalizers`: blockOwnerDeletion is refused.
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let complete = roles.get("kubetask-controller").await.unwrap();
    let mut reduced = complete.clone();
    reduced.rules.as_mut().unwrap().retain(|rule| {
        !rule
            .resources
            .as_ref()
            .is_some_and(|r| r.iter().any(|r| r == "tasks/finalizers"))
    });
    roles
        .replace("kubetask-controller", &PostParams::default(), &reduced)
        .await
        .unwrap();
    let mut controller = cluster.controller(&[]);

    cluster.apply_yaml(&task_yaml("first")).await;
    let forbidden = cluster.wait_reason(NS, "first", "Forbidden", SOON).await;
    let status = forbidden.status.unwrap();
    assert_eq!(status.phase, Some(TaskPhase::Pending));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("tasks/finalizers") && message.contains("blockOwnerDeletion"),
        "{message}"
    );
    assert!(
        message.contains("create ConfigMap \"first-contexts\""),
        "{message}"
    );
    // A second Task fails the same way; by then the first one's status write has come back
    // through the watch, and the controller has not tried the first one again.
    cluster.apply_yaml(&task_yaml("second")).await;
    cluster.wait_reason(NS, "second", "Forbidden", SOON).await;
    let forbidden_creates = forbidden_creates(&cluster);
    assert!(
        forbidden_creates <= 3,
        "two Tasks, {forbidden_creates} forbidden creates: the controller retries in a loop"
    );
    // The admin grants the rule and touches what the Tasks depend on (their Agent): they
    // start.
    let mut restored = roles.get("kubetask-controller").await.unwrap();
    restored.rules = complete.rules;
    roles
        .replace("kubetask-controller", &PostParams::default(), &restored)
        .await
        .unwrap();
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {{name: default, namespace: {NS}}}\nspec:\n  serviceAccountName: kubetask-agent\n"
        ))
        .await;
    cluster.wait_phase(NS, "first", TaskPhase::Completed).await;
    cluster.wait_phase(NS, "second", TaskPhase::Completed).await;
    let log = controller.log();
    let lines = log.lines().filter(|l| l.contains("Forbidden")).count();
    assert!(lines <= 4, "{lines} log lines about Forbidden:\n{log}");
    assert!(controller.terminate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_server_rejects_names_the_field_and_waits_for_the_agent() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {{name: default, namespace: {NS}}}\nspec:\n  serviceAccountName: kubetask-agent\n  scheduling:\n    affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{matchExpressions: [{{key: gpu, operator: Near}}]}}]}}}}}}\n"
        ))
        .await;
    cluster.apply_yaml(&task_yaml("rejected")).await;
    let rejected = cluster.wait_reason(NS, "rejected", "Rejected", SOON).await;
    let message = &rejected.status.unwrap().conditions[0].message;
    assert!(
        message.contains("spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator: Unsupported value: \"Near\""),
        "{message}"
    );
    let job_creates = || {
        cluster
            .server
            .requests()
            .iter()
            .filter(|r| r.user == CONTROLLER_USER && r.verb == "create" && r.resource == "jobs")
            .count()
    };
    // Another Task runs into the same rejection; the first is not retried meanwhile.
    cluster.apply_yaml(&task_yaml("rejected-too")).await;
    cluster
        .wait_reason(NS, "rejected-too", "Rejected", SOON)
        .await;
    assert!(job_creates() <= 3, "{} Job creates", job_creates());
    // Fixing the Agent lets both start.
    let agents: Api<Agent> = Api::namespaced(cluster.client.clone(), NS);
    agents
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"scheduling": null}})),
        )
        .await
        .unwrap();
    cluster
        .wait_phase(NS, "rejected", TaskPhase::Completed)
        .await;
    cluster
        .wait_phase(NS, "rejected-too", TaskPhase::Completed)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff_and_shown_after_a_few() {
    let cluster = Cluster::start().await;
    let mut fault = Fault::new(Some("create"), Some("jobs"), FaultAction::InternalError);
    fault.user = Some(CONTROLLER_USER.to_owned());
    fault.remaining = Some(4);
    cluster.server.inject(fault);
    let _controller = cluster.controller(&[]);
    cluster.apply_yaml(&task_yaml("flaky")).await;
    let retrying = cluster
        .wait_reason(NS, "flaky", "ApiUnavailable", SOON)
        .await;
    let message = &retrying.status.unwrap().conditions[0].message;
    assert!(
        message.contains("create Job \"flaky\"") && message.contains("attempt 3"),
        "{message}"
    );
    let done = cluster.wait_phase(NS, "flaky", TaskPhase::Completed).await;
    assert_eq!(cluster.jobs_of(&done).await.len(), 1);
    let creates: Vec<_> = cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| r.user == CONTROLLER_USER && r.verb == "create" && r.resource == "jobs")
        .collect();
    assert_eq!(creates.len(), 5, "four failures, then success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_recreated_under_the_same_name_gets_its_own_job_after_gc() {
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    cluster.apply_yaml(&task_yaml("hang-again")).await;
    let first = cluster
        .wait_phase(NS, "hang-again", TaskPhase::Running)
        .await;
    // The old ConfigMap outlives the old Job (the garbage collector deletes in any order):
    // a finalizer holds it.
    let maps = cluster.config_maps(NS);
    maps.patch(
        "hang-again-contexts",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["test.kubetask.io/hold"]}})),
    )
    .await
    .unwrap();
    cluster
        .tasks(NS)
        .delete("hang-again", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&cluster.tasks(NS), "hang-again").await;
    cluster.apply_yaml(&task_yaml("hang-again")).await;
    wait_gone(&cluster.jobs(NS), "hang-again").await;
    let waiting = cluster
        .wait_reason(NS, "hang-again", "PreviousTaskCleanup", SOON)
        .await;
    assert_ne!(waiting.uid(), first.uid());
    let held: ConfigMap = maps.get("hang-again-contexts").await.unwrap();
    assert!(held.meta().deletion_timestamp.is_some());
    // The collector finishes: the new Task starts by itself.
    maps.patch(
        "hang-again-contexts",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let second = cluster
        .wait_phase(NS, "hang-again", TaskPhase::Running)
        .await;
    assert_eq!(cluster.jobs_of(&second).await.len(), 1);
    let map = maps.get("hang-again-contexts").await.unwrap();
    assert!(
        map.owner_references()
            .iter()
            .any(|r| Some(&r.uid) == second.uid().as_ref()),
        "the new ConfigMap belongs to the new Task"
    );
}

/// The seed's own examples, verbatim (`examples/seed/`), put the Agent and the Tasks in the
/// controller's namespace: they run there like anywhere else, and what the controller creates
/// there never looks like a plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_examples_run_in_the_controller_namespace() {
    const SYSTEM: &str = "kubetask-system";
    let cluster = Cluster::start().await;
    let _controller = cluster.controller(&[]);
    let example = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/examples/seed/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("the seed's example")
    };
    cluster.apply_yaml(&example("simple-task.yaml")).await;
    let simple = cluster
        .wait_phase(SYSTEM, "update-service-a", TaskPhase::Completed)
        .await;
    let job = &cluster.jobs_of(&simple).await[0];
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("quay.io/myorg/claude-agent:v1.0")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("kubetask-agent"));

    // The second example's Agent and ConfigMaps, then its Task as the seed writes it.
    let agent = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/agent-claude-workspace.yaml"
    ))
    .expect("the Agent example")
    .replace("namespace: team-a", "namespace: kubetask-system");
    cluster.apply_yaml(&agent).await;
    for (name, key) in [
        ("guides", "refactoring-guide.md"),
        ("project-configs", "a.yaml"),
        ("org-configs", "guidelines.md"),
    ] {
        let map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": SYSTEM},
            "data": {key: "text"},
        }))
        .expect("a ConfigMap");
        cluster
            .config_maps(SYSTEM)
            .create(&PostParams::default(), &map)
            .await
            .expect("create the ConfigMap");
    }
    cluster.apply_yaml(&example("complex-task.yaml")).await;
    cluster
        .wait_phase(SYSTEM, "complex-task", TaskPhase::Completed)
        .await;
    let maps = cluster
        .config_maps(SYSTEM)
        .list(&ListParams::default())
        .await
        .expect("ConfigMaps");
    let generated: Vec<_> = maps
        .items
        .iter()
        .filter(|m| {
            m.labels()
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str)
                == Some("kubetask")
        })
        .collect();
    assert_eq!(
        generated.len(),
        2,
        "one generated ConfigMap per Task with inline contexts"
    );
    assert!(
        generated
            .iter()
            .all(|m| !m.labels().contains_key("kubetask.io/plugin")),
        "no generated ConfigMap is ever taken for a plugin"
    );
}
