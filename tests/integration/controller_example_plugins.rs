//! End-to-end with the example plugins installed from their packed manifests, as an admin
//! installs them: an Agent using the git-clone render plugin, a cluster policy that mutates
//! (restricted pod security) and denies, a policy written in C, and a policy ConfigMap
//! replaced while Tasks arrive.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kubetask::api::{Task, TaskPhase};
use serde_json::{Value, json};
use support::*;

const NS: &str = "team-a";
const GIT_CLONE: &str = "plugins/examples/git-clone/configmap.yaml";
const RESTRICTED: &str = "plugins/examples/restricted-policy/configmap.yaml";
const DEADLINE_C: &str = "plugins/examples/deadline-c/configmap.yaml";
/// A debug build compiles each 2 MiB Rust example plugin in several seconds on first use.
const FIRST_RENDER: Duration = Duration::from_secs(120);

fn pin(map: &ConfigMap) -> String {
    map.metadata.annotations.as_ref().expect("annotations")["kubetask.io/sha256"].clone()
}

fn rendered_by(task: &Task) -> Vec<(String, String)> {
    task.status
        .as_ref()
        .map(|status| {
            status
                .rendered_by
                .iter()
                .map(|p| (p.name.clone(), p.digest.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn task_yaml(name: &str, team: Option<&str>, extra_metadata: &str, spec_extra: &str) -> String {
    let labels = team
        .map(|team| format!("\n  labels: {{kubetask.io/team: {team}}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\n  namespace: {NS}{labels}{extra_metadata}\nspec:\n{spec_extra}  contexts:\n  - {{type: File, file: {{filePath: /workspace/task.md, source: {{inline: fix it}}}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_render_plugin_and_cluster_policies_that_mutate_and_deny() {
    let cluster = Cluster::start().await;
    let git = cluster.install_plugin(GIT_CLONE).await;
    let restricted = cluster.install_plugin(RESTRICTED).await;
    let deadline = cluster.install_plugin(DEADLINE_C).await;
    let _controller = cluster.controller(&[]);
    let agent = "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: coder, namespace: team-a}\nspec: {agentImage: 'quay.io/acme/coder:v1', serviceAccountName: default, plugins: [git-clone]}\n";
    let with_repo = task_yaml(
        "clone-and-fix",
        Some("payments"),
        "\n  annotations: {git.kubetask.io/repository: 'https://github.com/acme/api.git'}",
        "  agentRef: coder\n",
    );
    cluster
        .apply_yaml(&format!("{agent}---\n{with_repo}"))
        .await;
    cluster
        .apply_yaml(&task_yaml("no-team", None, "", ""))
        .await;
    cluster
        .apply_yaml(&task_yaml(
            "open-egress",
            Some("payments"),
            "",
            "  egress: {mode: Open}\n",
        ))
        .await;

    let done = cluster
        .wait_task(NS, "clone-and-fix", FIRST_RENDER, |s| {
            s.phase == Some(TaskPhase::Completed)
        })
        .await;
    assert_eq!(
        rendered_by(&done),
        [
            (
                "builtin-default".to_owned(),
                rendered_by(&done)[0].1.clone()
            ),
            ("git-clone".to_owned(), pin(&git)),
            ("restricted".to_owned(), pin(&restricted)),
            ("job-deadline".to_owned(), pin(&deadline)),
        ]
    );
    let jobs = cluster.jobs_of(&done).await;
    let job = serde_json::to_value(&jobs[0]).expect("encodes");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "git-clone");
    assert_eq!(
        pod["securityContext"]["runAsNonRoot"], true,
        "the policy mutated the pod"
    );
    assert_eq!(
        pod["initContainers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
    assert_eq!(job["metadata"]["labels"]["kubetask.io/team"], "payments");
    assert_eq!(
        job["spec"]["activeDeadlineSeconds"], 3600,
        "the C policy ran"
    );

    // The controller's Job is what `kubetask render` prints with the same plugins.
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("task.yaml");
    std::fs::write(&file, format!("{agent}---\n{with_repo}")).expect("writes");
    let offline = render_offline_with(&[
        "-f",
        file.to_str().expect("UTF-8 path"),
        "--plugin",
        "plugins/examples/git-clone/git_clone.wasm",
        "--policy",
        "plugins/examples/restricted-policy/restricted_policy.wasm",
        "--policy",
        "plugins/examples/deadline-c/deadline_policy.wasm",
    ]);
    let mut expected = offline
        .into_iter()
        .find(|object| object["kind"] == "Job")
        .expect("a Job offline");
    // Offline there is no Task uid to own the Job.
    expected["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    is_subset(&expected, &job).expect("the cluster's Job matches the offline render");
    // And what it prints given the installed plugins' packed manifests: the Agent's
    // spec.plugins and the cluster policies are chosen as the controller chooses them.
    let installed = render_offline_with(&[
        "-f",
        file.to_str().expect("UTF-8 path"),
        "-f",
        GIT_CLONE,
        "-f",
        DEADLINE_C,
        "-f",
        RESTRICTED,
    ]);
    let mut from_manifests = installed
        .into_iter()
        .find(|object| object["kind"] == "Job")
        .expect("a Job offline");
    from_manifests["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    assert_eq!(
        from_manifests, expected,
        "manifests and flags render the same"
    );
    is_subset(&from_manifests, &job).expect("the cluster's Job matches the manifests' render");

    let denied = cluster
        .wait_reason(NS, "no-team", "PolicyDenied", FIRST_RENDER)
        .await;
    let message = &denied.status.as_ref().expect("status").conditions[0].message;
    assert!(message.contains("kubetask.io/team"), "{message}");
    assert!(
        cluster.jobs_of(&denied).await.is_empty(),
        "a denied Task gets no Job"
    );
    // A cluster policy can forbid Open egress.
    let open = cluster
        .wait_reason(NS, "open-egress", "PolicyDenied", FIRST_RENDER)
        .await;
    let message = &open.status.as_ref().expect("status").conditions[0].message;
    assert!(
        message.contains("Task/open-egress: spec.egress.mode Open is not allowed"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_replaced_while_tasks_arrive_renders_each_task_with_one_whole_version() {
    let cluster = Cluster::start().await;
    // "site-policy" starts as the C deadline policy and becomes the restricted policy.
    let old = cluster.install_plugin(DEADLINE_C).await;
    let old_digest = pin(&old);
    let new_text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(RESTRICTED))
            .expect("reads");
    let new: ConfigMap = serde_yaml::from_str(&new_text).expect("a ConfigMap");
    let new_digest = pin(&new);
    let _controller = cluster.controller(&[]);

    cluster
        .apply_yaml(&task_yaml("before", Some("a"), "", ""))
        .await;
    cluster
        .wait_task(NS, "before", FIRST_RENDER, |s| {
            s.phase == Some(TaskPhase::Completed)
        })
        .await;

    let mut names = vec!["before".to_owned()];
    for index in 0..20 {
        if index == 8 {
            // Replace the component (and its pin and order) in place, as `kubectl apply` does.
            cluster
                .config_maps("kubetask-system")
                .patch(
                    "job-deadline",
                    &PatchParams::default(),
                    &Patch::Merge(json!({
                        "metadata": {"annotations": new.metadata.annotations},
                        "binaryData": {
                            "plugin.wasm.gz": new.binary_data.as_ref().expect("binaryData")["plugin.wasm.gz"],
                        },
                    })),
                )
                .await
                .expect("the plugin ConfigMap is updated");
        }
        let name = format!("during-{index}");
        cluster
            .apply_yaml(&task_yaml(&name, Some("a"), "", ""))
            .await;
        names.push(name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Picked up without a restart: a Task created after the update is rendered by the new one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster
        .apply_yaml(&task_yaml("after", Some("a"), "", ""))
        .await;
    names.push("after".to_owned());

    let mut versions = Vec::new();
    for name in &names {
        let task = cluster
            .wait_task(NS, name, FIRST_RENDER, |s| {
                s.phase == Some(TaskPhase::Completed)
            })
            .await;
        let by = rendered_by(&task);
        assert_eq!(by.len(), 2, "{name}: {by:?}");
        assert_eq!(by[1].0, "job-deadline");
        let job: Value = serde_json::to_value(&cluster.jobs_of(&task).await[0]).expect("encodes");
        let pod_security = &job["spec"]["template"]["spec"]["securityContext"];
        // The Job is wholly the version the status names, never a mix.
        if by[1].1 == old_digest {
            assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600, "{name}");
            assert!(pod_security.get("runAsNonRoot").is_none(), "{name}: {job}");
        } else {
            assert_eq!(by[1].1, new_digest, "{name}");
            assert!(
                job["spec"].get("activeDeadlineSeconds").is_none(),
                "{name}: {job}"
            );
            assert_eq!(pod_security["runAsNonRoot"], true, "{name}");
        }
        versions.push(by[1].1.clone());
    }
    assert_eq!(versions.first(), Some(&old_digest));
    assert_eq!(
        versions.last(),
        Some(&new_digest),
        "the update is picked up without a restart"
    );
}
