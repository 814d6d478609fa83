use kubetask_plugin::{
    Draft, Error, Plugin, Request, Settings, Task, WireDraft, WireRequest,
    k8s_openapi::api::core::v1::PodSpec, render_wire,
};
use serde_json::{Value, json};

use crate::{RestrictedPolicy, TEAM_LABEL};

fn task(labels: Value) -> Task {
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "fix-bug", "namespace": "team-a", "labels": labels},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Fix it"}}}]},
    }))
    .expect("a Task")
}

fn team_task() -> Task {
    task(json!({TEAM_LABEL: "payments"}))
}

/// What the built-in renderer hands the policy.
fn default_draft(task: &Task) -> Draft {
    kubetask_default_plugin::draft(task, None, &Settings::default()).expect("renders")
}

fn run(task: Task, draft: Draft) -> Result<Draft, Error> {
    RestrictedPolicy::render(Request::new(&task, None, Some(draft)).expect("encodes"))
}

fn pod(draft: &Draft) -> PodSpec {
    draft
        .job
        .typed()
        .expect("a Job")
        .spec
        .and_then(|spec| spec.template.spec)
        .expect("a pod spec")
}

/// A draft whose agent container carries `patch` merged into its JSON.
fn with_agent_container(patch: Value) -> Draft {
    let mut draft = default_draft(&team_task());
    let mut job = serde_json::to_value(&draft.job).expect("encodes");
    let container = &mut job["spec"]["template"]["spec"]["containers"][0];
    for (key, value) in patch.as_object().expect("an object") {
        container[key] = value.clone();
    }
    draft.job = serde_json::from_value(job).expect("a Job");
    draft
}

fn with_pod(patch: Value) -> Draft {
    let mut draft = default_draft(&team_task());
    let mut job = serde_json::to_value(&draft.job).expect("encodes");
    let pod = &mut job["spec"]["template"]["spec"];
    for (key, value) in patch.as_object().expect("an object") {
        pod[key] = value.clone();
    }
    draft.job = serde_json::from_value(job).expect("a Job");
    draft
}

fn denied(result: Result<Draft, Error>) -> String {
    match result {
        Err(Error::Denied(reason)) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn a_default_job_is_made_restricted_with_default_resources_and_the_team_label() {
    let task = team_task();
    let draft = run(task.clone(), default_draft(&task)).expect("allowed");
    let job = serde_json::to_value(&draft.job).expect("encodes");
    assert_eq!(job["metadata"]["labels"][TEAM_LABEL], "payments");
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"][TEAM_LABEL],
        "payments"
    );
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let agent = &pod["containers"][0];
    assert_eq!(
        agent["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(
        agent["resources"],
        json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}})
    );
    // Nothing else changed: the rest of the draft is the default renderer's.
    let mut original = serde_json::to_value(&default_draft(&task).job).expect("encodes");
    let mut policed = job.clone();
    for job in [&mut original, &mut policed] {
        job["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove(TEAM_LABEL);
        let template = &mut job["spec"]["template"];
        template["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove(TEAM_LABEL);
        let pod = template["spec"].as_object_mut().expect("a pod");
        pod.remove("securityContext");
        for container in pod["containers"].as_array_mut().expect("containers") {
            let container = container.as_object_mut().expect("a container");
            container.remove("securityContext");
            container.remove("resources");
        }
    }
    assert_eq!(policed, original);
    assert_eq!(draft.config_maps, default_draft(&task).config_maps);
}

#[test]
fn applying_the_policy_twice_changes_nothing_more() {
    let task = team_task();
    let once = run(task.clone(), default_draft(&task)).expect("allowed");
    let twice = run(task, once.clone()).expect("allowed");
    assert_eq!(once, twice);
}

#[test]
fn a_task_without_a_team_is_denied() {
    for labels in [
        json!({}),
        json!({TEAM_LABEL: ""}),
        json!({"team": "payments"}),
    ] {
        let task = task(labels);
        let reason = denied(run(task.clone(), default_draft(&task)));
        assert!(reason.contains(TEAM_LABEL), "{reason}");
    }
}

#[test]
fn what_cannot_be_fixed_is_denied_naming_the_field() {
    let container = "spec.template.spec.containers[0]";
    let cases = [
        (
            with_agent_container(json!({"securityContext": {"privileged": true}})),
            format!("{container}.securityContext.privileged"),
        ),
        (
            with_agent_container(json!({"securityContext": {"allowPrivilegeEscalation": true}})),
            format!("{container}.securityContext.allowPrivilegeEscalation"),
        ),
        (
            with_agent_container(json!({"securityContext": {"runAsUser": 0}})),
            format!("{container}.securityContext.runAsUser"),
        ),
        (
            with_agent_container(
                json!({"securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}}}),
            ),
            format!("{container}.securityContext.capabilities.add[1]"),
        ),
        (
            with_agent_container(json!({"ports": [{"containerPort": 80, "hostPort": 80}]})),
            format!("{container}.ports[0].hostPort"),
        ),
        (
            with_agent_container(
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}),
            ),
            format!("{container}.securityContext.seccompProfile.type"),
        ),
        (
            with_pod(json!({"hostNetwork": true})),
            "spec.template.spec.hostNetwork".to_owned(),
        ),
        (
            with_pod(json!({"hostPID": true})),
            "spec.template.spec.hostPID".to_owned(),
        ),
        (
            with_pod(json!({"securityContext": {"runAsNonRoot": false}})),
            "spec.template.spec.securityContext.runAsNonRoot".to_owned(),
        ),
        (
            with_pod(
                json!({"initContainers": [{"name": "setup", "image": "busybox", "securityContext": {"privileged": true}}]}),
            ),
            "spec.template.spec.initContainers[0].securityContext.privileged".to_owned(),
        ),
    ];
    for (draft, field) in cases {
        let reason = denied(run(team_task(), draft));
        assert!(
            reason.contains(&format!("Job {field}:")),
            "{field}: {reason}"
        );
    }
    let mut host_path = default_draft(&team_task());
    let mut job = serde_json::to_value(&host_path.job).expect("encodes");
    job["spec"]["template"]["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(json!({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}));
    host_path.job = serde_json::from_value(job).expect("a Job");
    let reason = denied(run(team_task(), host_path));
    assert!(
        reason.contains(".hostPath: hostPath volumes are not allowed"),
        "{reason}"
    );
}

#[test]
fn allowed_settings_are_kept() {
    let draft = with_agent_container(json!({
        "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}, "runAsUser": 1000, "seccompProfile": {"type": "Localhost", "localhostProfile": "agent.json"}},
        "resources": {"limits": {"cpu": "100m", "memory": "1Gi"}},
    }));
    let draft = run(team_task(), draft).expect("allowed");
    let agent = serde_json::to_value(&pod(&draft).containers[0]).expect("encodes");
    assert_eq!(
        agent["securityContext"]["capabilities"],
        json!({"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
    );
    assert_eq!(agent["securityContext"]["runAsUser"], 1000);
    assert_eq!(
        agent["securityContext"]["seccompProfile"]["type"],
        "Localhost"
    );
    // Limits set by the user are kept and get no default request (Kubernetes requests the limit).
    assert_eq!(
        agent["resources"],
        json!({"limits": {"cpu": "100m", "memory": "1Gi"}})
    );
}

#[test]
fn the_wire_form_gives_the_same_result() {
    let task = team_task();
    let direct = run(task.clone(), default_draft(&task)).expect("allowed");
    let wire = render_wire::<RestrictedPolicy>(WireRequest {
        task: serde_json::to_string(&task).expect("encodes"),
        agent: None,
        settings: Settings::default(),
        draft: Some(WireDraft::encode(default_draft(&task)).expect("encodes")),
    })
    .expect("allowed");
    assert_eq!(wire.decode(), direct);
}

#[test]
fn open_egress_is_denied_on_the_task_and_on_its_agent() {
    let with_egress = |egress: Value| -> Task {
        let mut task = serde_json::to_value(team_task()).expect("encodes");
        task["spec"]["egress"] = egress;
        serde_json::from_value(task).expect("a Task")
    };
    let open = with_egress(json!({"mode": "Open"}));
    let reason = denied(run(open.clone(), default_draft(&open)));
    assert!(
        reason.contains("Task/fix-bug: spec.egress.mode Open is not allowed"),
        "{reason}"
    );
    let listed = with_egress(json!({"mode": "AllowList", "allowedDomains": ["pypi.org"]}));
    assert!(run(listed.clone(), default_draft(&listed)).is_ok());

    let agent: kubetask_plugin::Agent = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "wide", "namespace": "team-a"},
        "spec": {"serviceAccountName": "sa", "egress": {"mode": "Open"}},
    }))
    .expect("an Agent");
    let task = team_task();
    let draft =
        kubetask_default_plugin::draft(&task, Some(&agent), &Settings::default()).expect("renders");
    let result =
        RestrictedPolicy::render(Request::new(&task, Some(&agent), Some(draft)).expect("encodes"));
    assert!(denied(result).contains("Agent/wide: spec.egress.mode Open is not allowed"),);
}
