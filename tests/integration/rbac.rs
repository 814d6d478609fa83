//! The RBAC in `manifests/rbac.yaml` is sufficient and minimal: the controller runs its
//! scenarios against the test API server with RBAC and OwnerReferencesPermissionEnforcement
//! enforced (the server authorizes it with exactly the installed roles), no authorization the
//! controller needed was denied, and every granted (verb, group, resource) was used by some
//! allowed request or admission check. Namespaced grants (the leader-election Role) must only
//! be used in their namespace.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, PostParams};
use kubetask::api::TaskPhase;
use serde_json::{Value, json};
use support::*;

const NS: &str = "team-a";

/// `(verb, group, resource[/subresource], namespace)`; namespace is `*` for ClusterRoles.
type Grant = (String, String, String, String);

/// What a manifest's roles grant.
fn granted(manifest: &str) -> BTreeSet<Grant> {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest))
            .unwrap();
    let mut grants = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        let scope = match object["kind"].as_str() {
            Some("ClusterRole") => "*".to_owned(),
            Some("Role") => object["metadata"]["namespace"].as_str().unwrap().to_owned(),
            _ => continue,
        };
        for rule in object["rules"].as_array().unwrap() {
            let strings = |field: &str| -> Vec<String> {
                rule[field]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        grants.insert((verb, group.clone(), resource.clone(), scope.clone()));
                    }
                }
            }
        }
    }
    grants
}

/// Waits (up to 30 s) until `done`.
async fn wait_for(done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the condition did not hold within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_role_is_sufficient_and_minimal() {
    let cluster = Cluster::start().await;
    // The CronTask scenario reads its schedule's "now" from this file.
    let clock = tempfile::tempdir().unwrap();
    let now = clock.path().join("now");
    std::fs::write(&now, "2030-01-01T00:00:30Z").unwrap();
    // Egress on: every Task's proxy Secret is created.
    let key = clock.path().join("egress-key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let mut controller = cluster.controller(&[
        "--leader-elect",
        "--lease-duration-seconds",
        "5",
        "--test-clock-file",
        now.to_str().unwrap(),
        "--egress-key-file",
        key.to_str().unwrap(),
    ]);
    // Scenarios: the seed example to completion, a context read from a ConfigMap, a Task
    // waiting for its Agent, a failing Job.
    cluster
        .apply_yaml(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/examples/simple-task.yaml"
            ))
            .unwrap(),
        )
        .await;
    let guide: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "guide"}, "data": {"g.md": "x"}}))
            .unwrap();
    cluster
        .config_maps(NS)
        .create(&PostParams::default(), &guide)
        .await
        .unwrap();
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: reads, namespace: team-a}\nspec:\n  contexts:\n  - {type: File, file: {filePath: /workspace/g.md, source: {configMapKeyRef: {name: guide, key: g.md}}}}\n")
        .await;
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: fail-x, namespace: team-a}\nspec:\n  agentRef: missing\n  contexts: []\n")
        .await;
    // A Budget: a Task's cap reserved in it at admission (the Budget read, its status
    // patched) and settled when the Task finishes.
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Budget\nmetadata: {name: team, namespace: team-a}\nspec:\n  selector: {matchLabels: {budgeted: \"yes\"}}\n  period: {type: Daily}\n  limits: {maxCostUSD: 5}\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: budgeted, namespace: team-a, labels: {budgeted: \"yes\"}}\nspec:\n  budget: {maxCostUSD: 1}\n  contexts: []\n")
        .await;
    cluster
        .wait_phase(NS, "update-service-a", TaskPhase::Completed)
        .await;
    cluster.wait_phase(NS, "reads", TaskPhase::Completed).await;
    cluster
        .wait_phase(NS, "budgeted", TaskPhase::Completed)
        .await;
    let budgets: Api<kubetask::api::Budget> = Api::namespaced(cluster.client.clone(), NS);
    wait_budget(
        &budgets,
        "team",
        "the Task's reservation settled",
        |status| status.period_start.is_some() && status.reservations.is_empty(),
    )
    .await;
    cluster
        .wait_reason(NS, "fail-x", "AgentNotFound", Duration::from_secs(30))
        .await;
    // A NetworkPolicy of someone else's under the name of a Task's is never taken over: the
    // controller reads whose it is and the Task fails NameConflict naming it.
    let squatter: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "squat-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(cluster.client.clone(), NS)
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: squat, namespace: team-a}\nspec: {contexts: []}\n")
        .await;
    let squat = cluster
        .wait_reason(NS, "squat", "NameConflict", Duration::from_secs(30))
        .await;
    let message = &squat.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("NetworkPolicy \"squat-egress\""),
        "{message}"
    );
    // The same Event twice on one Task (ConfigMapNotFound, ConfigMapKeyNotFound, then
    // ConfigMapNotFound again) is patched into a series.
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: flaps, namespace: team-a}\nspec:\n  contexts:\n  - {type: File, file: {filePath: /workspace/g.md, source: {configMapKeyRef: {name: later, key: g.md}}}}\n")
        .await;
    let limit = Duration::from_secs(30);
    cluster
        .wait_reason(NS, "flaps", "ConfigMapNotFound", limit)
        .await;
    let keyless: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "later"}, "data": {"other": "x"}}))
            .unwrap();
    cluster
        .config_maps(NS)
        .create(&PostParams::default(), &keyless)
        .await
        .unwrap();
    cluster
        .wait_reason(NS, "flaps", "ConfigMapKeyNotFound", limit)
        .await;
    cluster
        .config_maps(NS)
        .delete("later", &Default::default())
        .await
        .unwrap();
    cluster
        .wait_reason(NS, "flaps", "ConfigMapNotFound", limit)
        .await;
    // Lifecycle: a running agent cancelled (its pod's deadline lowered, the Job patched), a
    // pod that never ran cancelled (deleted), a finished Task past its TTL (deleted).
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: stuck, namespace: team-a}\nspec:\n  serviceAccountName: kubetask-agent\n  podLabels: {simulator.kubetask.io/outcome: unschedulable}\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: never-runs, namespace: team-a}\nspec:\n  agentRef: stuck\n  contexts: []\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: hang-long, namespace: team-a}\nspec:\n  contexts: []\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: short-lived, namespace: team-a}\nspec:\n  ttlSecondsAfterFinished: 0\n  contexts: []\n")
        .await;
    cluster
        .wait_phase(NS, "hang-long", TaskPhase::Running)
        .await;
    cluster.cancel(NS, "hang-long", "enough").await;
    cluster
        .wait_reason(NS, "never-runs", "JobCreated", limit)
        .await;
    // Its pod exists (unschedulable) before the cancel, so the cancel deletes it.
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(cluster.client.clone(), NS);
    let selector =
        kube::api::ListParams::default().labels("batch.kubernetes.io/job-name=never-runs");
    for _ in 0..600 {
        if !pods.list(&selector).await.unwrap().items.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.cancel(NS, "never-runs", "no node").await;
    for name in ["hang-long", "never-runs"] {
        cluster.wait_reason(NS, name, "Cancelled", limit).await;
    }
    wait_gone(&cluster.tasks(NS), "short-lived").await;
    // A CronTask: its run created (blockOwnerDeletion on the CronTask), replaced at the next
    // tick (cancelled by a patch), deleted past the history limit, the status written.
    cluster
        .apply_yaml("apiVersion: kubetask.io/v1alpha1\nkind: CronTask\nmetadata: {name: hang-cron, namespace: team-a}\nspec:\n  schedule: '*/5 * * * *'\n  concurrencyPolicy: Replace\n  failedTasksHistoryLimit: 0\n  taskTemplate: {spec: {contexts: []}}\n")
        .await;
    let first =
        kubetask::cron::scheduled_name("hang-cron", "2030-01-01T00:00:00Z".parse().unwrap());
    for _ in 0..600 {
        if cluster.tasks(NS).get_opt(&first).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.wait_phase(NS, &first, TaskPhase::Running).await;
    std::fs::write(&now, "2030-01-01T00:05:10Z").unwrap();
    wait_gone(&cluster.tasks(NS), &first).await;
    wait_for(|| {
        cluster
            .server
            .requests()
            .iter()
            .any(|r| r.user == CONTROLLER_USER && r.verb == "patch" && r.resource == "events")
    })
    .await;
    assert!(controller.terminate(), "{}", controller.log());

    assert!(
        cluster
            .server
            .decisions()
            .iter()
            .any(|d| d.attributes.subresource == "finalizers"),
        "OwnerReferencesPermissionEnforcement checked blockOwnerDeletion"
    );
    assert_sufficient_and_minimal(&cluster, CONTROLLER_USER, "manifests/rbac.yaml");
}

/// Every authorization `user` asked for was allowed by `manifest`'s roles, none of its
/// requests was forbidden, and every grant of the manifest was used.
pub(crate) fn assert_sufficient_and_minimal(cluster: &Cluster, user: &str, manifest: &str) {
    let grants = granted(manifest);
    let mut used: BTreeSet<Grant> = BTreeSet::new();
    for decision in cluster
        .server
        .decisions()
        .iter()
        .filter(|d| d.attributes.user == user)
    {
        let request = &decision.attributes;
        assert!(
            decision.allowed,
            "denied: {} {} {}/{} {:?} in namespace {:?}: {manifest} lacks a rule",
            request.verb,
            request.group,
            request.resource,
            request.subresource,
            request.name,
            request.namespace
        );
        let resource = if request.subresource.is_empty() {
            request.resource.clone()
        } else {
            format!("{}/{}", request.resource, request.subresource)
        };
        let cluster_wide = (
            request.verb.clone(),
            request.group.clone(),
            resource.clone(),
            "*".to_owned(),
        );
        let namespaced = (
            request.verb.clone(),
            request.group.clone(),
            resource,
            request.namespace.clone(),
        );
        if grants.contains(&cluster_wide) {
            used.insert(cluster_wide);
        } else {
            assert!(
                grants.contains(&namespaced),
                "allowed by the server but not by the parse of {manifest}: {request:?}"
            );
            used.insert(namespaced);
        }
    }
    assert!(
        !cluster
            .server
            .requests()
            .iter()
            .any(|r| r.user == user && r.code == 403),
        "no request of {user} was forbidden"
    );
    let unused: Vec<&Grant> = grants.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "granted but never used (remove them): {unused:?}"
    );
}
