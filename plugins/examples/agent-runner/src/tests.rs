use kubetask_plugin::{Agent, Draft, Error, Plugin, Request, Settings, Task};
use serde_json::{Value, json};

use crate::{ARGS, AgentRunner, CLI, INIT_CONTAINER, MODEL, RUNNER_IMAGE};

fn task() -> Task {
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": "fix-bug", "namespace": "team-a"},
        "spec": {"agentRef": "mine", "contexts": [
            {"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Fix it"}}},
        ]},
    }))
    .expect("a Task")
}

fn agent(annotations: Value) -> Agent {
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
        "metadata": {"name": "mine", "namespace": "team-a", "annotations": annotations},
        "spec": {"agentImage": "registry.example.com/my-claude:1.2", "serviceAccountName": "agent",
                 "plugins": ["agent-runner"]},
    }))
    .expect("an Agent")
}

fn run(agent: &Agent) -> Result<Draft, Error> {
    let task = task();
    let draft =
        kubetask_default_plugin::draft(&task, Some(agent), &Settings::default()).expect("renders");
    AgentRunner::render(Request::new(&task, Some(agent), Some(draft)).expect("encodes"))
}

fn pod(draft: &Draft) -> Value {
    serde_json::to_value(&draft.job).expect("encodes")["spec"]["template"]["spec"].clone()
}

#[test]
fn without_the_annotation_the_draft_passes_unchanged() {
    let agent = agent(json!({}));
    let expected = kubetask_default_plugin::draft(&task(), Some(&agent), &Settings::default())
        .expect("renders");
    assert_eq!(run(&agent).expect("renders"), expected);
}

#[test]
fn the_runner_is_copied_in_and_runs_the_cli() {
    let draft = run(&agent(
        json!({CLI: "claude-code", ARGS: "--max-turns 40", MODEL: "sonnet"}),
    ))
    .expect("renders");
    let pod = pod(&draft);
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], INIT_CONTAINER);
    assert_eq!(init["image"], RUNNER_IMAGE);
    assert_eq!(init["args"], json!(["--install", "/kubetask"]));
    assert_eq!(init["securityContext"]["runAsNonRoot"], true);
    let agent = &pod["containers"][0];
    assert_eq!(agent["image"], "registry.example.com/my-claude:1.2");
    assert_eq!(agent["command"], json!(["/kubetask/kubetask-agent"]));
    assert!(agent.get("args").is_none_or(|args| args == &json!([])));
    let env = agent["env"].as_array().expect("env");
    let value = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(value("KUBETASK_AGENT_CLI"), Some(json!("claude-code")));
    assert_eq!(value("KUBETASK_AGENT_ARGS"), Some(json!("--max-turns 40")));
    assert_eq!(value("KUBETASK_AGENT_MODEL"), Some(json!("sonnet")));
    assert_eq!(
        value("TASK_NAME"),
        Some(json!("fix-bug")),
        "the built-in env is kept"
    );
    let mounts = agent["volumeMounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/kubetask" && m["readOnly"] == true)
    );
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["name"] == "kubetask-runner" && v.get("emptyDir").is_some())
    );
}

#[test]
fn bad_annotations_name_the_agent_field() {
    for (annotations, field) in [
        (
            json!({CLI: "cursor"}),
            "metadata.annotations[runner.kubetask.io/cli]",
        ),
        (
            json!({CLI: "codex", ARGS: "a\nb"}),
            "metadata.annotations[runner.kubetask.io/args]",
        ),
    ] {
        match run(&agent(annotations)) {
            Err(Error::Invalid {
                object,
                field: found,
                ..
            }) => {
                assert_eq!(object, "Agent/mine");
                assert_eq!(found, field);
            }
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }
}
