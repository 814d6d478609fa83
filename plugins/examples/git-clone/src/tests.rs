use kubetask_plugin::{Draft, Error, Plugin, Request, Settings, Task};
use serde_json::{Value, json};

use crate::{DIRECTORY, GIT_IMAGE, GitClone, REF, REPOSITORY};

fn task(annotations: Value) -> Task {
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "fix-bug", "namespace": "team-a", "annotations": annotations},
        "spec": {"contexts": [
            {"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Fix it"}}},
            {"type": "File", "file": {"filePath": "/workspace/notes/a.md", "source": {"inline": "a"}}},
        ]},
    }))
    .expect("a Task")
}

fn run(task: Task) -> Result<Draft, Error> {
    let draft = kubetask_default_plugin::draft(&task, None, &Settings::default()).expect("renders");
    GitClone::render(Request::new(&task, None, Some(draft)).expect("encodes"))
}

fn pod(draft: &Draft) -> Value {
    serde_json::to_value(&draft.job).expect("encodes")["spec"]["template"]["spec"].clone()
}

fn invalid_field(result: Result<Draft, Error>) -> (String, String) {
    match result {
        Err(Error::Invalid { field, message, .. }) => (field, message),
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn without_the_annotation_the_draft_passes_unchanged() {
    let task = task(json!({}));
    let expected =
        kubetask_default_plugin::draft(&task, None, &Settings::default()).expect("renders");
    assert_eq!(run(task).expect("renders"), expected);
}

#[test]
fn a_repository_is_cloned_into_the_workspace_before_the_agent_starts() {
    let draft = run(task(
        json!({REPOSITORY: "https://github.com/acme/api.git", REF: "release/1.2"}),
    ))
    .expect("renders");
    let pod = pod(&draft);
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "git-clone");
    assert_eq!(init["image"], GIT_IMAGE);
    assert_eq!(
        init["args"],
        json!([
            "clone",
            "--depth=1",
            "--branch",
            "release/1.2",
            "--",
            "https://github.com/acme/api.git",
            "/workspace/repo"
        ])
    );
    assert_eq!(
        init["volumeMounts"],
        json!([{"name": "workspace", "mountPath": "/workspace"}])
    );
    assert_eq!(init["securityContext"]["runAsNonRoot"], true);
    assert_eq!(init["securityContext"]["allowPrivilegeEscalation"], false);
    let agent_env = pod["containers"][0]["env"].as_array().expect("env").clone();
    assert!(
        agent_env.contains(&json!({"name": "KUBETASK_REPOSITORY", "value": "/workspace/repo"}))
    );
    // The agent still mounts the shared workspace the clone fills.
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .contains(&json!({"name": "workspace", "mountPath": "/workspace"}))
    );
}

#[test]
fn the_directory_and_ref_are_optional() {
    let draft = run(task(
        json!({REPOSITORY: "git@github.com:acme/api.git", DIRECTORY: "api"}),
    ))
    .expect("renders");
    assert_eq!(
        pod(&draft)["initContainers"][0]["args"],
        json!([
            "clone",
            "--depth=1",
            "--",
            "git@github.com:acme/api.git",
            "/workspace/api"
        ])
    );
}

#[test]
fn bad_annotations_name_the_annotation() {
    let cases = [
        (json!({REPOSITORY: "file:///etc"}), REPOSITORY),
        (
            json!({REPOSITORY: "ext::sh -c touch% /tmp/pwned"}),
            REPOSITORY,
        ),
        (json!({REPOSITORY: "https://example.com/a b"}), REPOSITORY),
        (
            json!({REPOSITORY: "https://example.com/a", REF: "--upload-pack=evil"}),
            REF,
        ),
        (
            json!({REPOSITORY: "https://example.com/a", REF: "a..b"}),
            REF,
        ),
        (
            json!({REPOSITORY: "https://example.com/a", DIRECTORY: "../etc"}),
            DIRECTORY,
        ),
        (
            json!({REPOSITORY: "https://example.com/a", DIRECTORY: ".."}),
            DIRECTORY,
        ),
        // A context is already mounted below /workspace/notes.
        (
            json!({REPOSITORY: "https://example.com/a", DIRECTORY: "notes"}),
            DIRECTORY,
        ),
    ];
    for (annotations, key) in cases {
        let (field, message) = invalid_field(run(task(annotations.clone())));
        assert_eq!(
            field,
            format!("metadata.annotations[{key}]"),
            "{annotations}: {message}"
        );
    }
}

/// With the built-in workspace, the second repository is cloned right after the workspace's
/// (before its setup), and the workspace's checkout is refused as its directory.
#[test]
fn beside_a_workspace_it_runs_after_the_workspaces_clone_and_keeps_out_of_its_checkout() {
    let with_workspace = |annotations: Value| -> Task {
        let mut task = task(annotations);
        task.spec.workspace = serde_json::from_value(json!({
            "repository": "https://github.com/acme/service.git",
            "setup": {"command": ["make", "deps"]},
        }))
        .expect("a workspace");
        task
    };
    let draft = run(with_workspace(
        json!({REPOSITORY: "https://github.com/acme/api.git", DIRECTORY: "api"}),
    ))
    .expect("renders");
    let names: Vec<Value> = pod(&draft)["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("workspace-clone"),
            json!("git-clone"),
            json!("workspace-setup")
        ]
    );
    for directory in ["repo", "."] {
        let result = run(with_workspace(
            json!({REPOSITORY: "https://github.com/acme/api.git", DIRECTORY: directory}),
        ));
        if directory == "repo" {
            let (field, message) = invalid_field(result);
            assert_eq!(field, format!("metadata.annotations[{DIRECTORY}]"));
            assert!(message.contains("workspace's checkout"), "{message}");
        } else {
            assert!(result.is_err(), "{directory}");
        }
    }
}
