use kubetask_plugin::mapper::{Skip, WireMapRequest, WireOutcome, map_wire};
use serde_json::json;

use super::*;

fn request(labels: &[&str], builtin_skip: Option<Skip>) -> WireMapRequest {
    WireMapRequest {
        trigger: json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "TaskTrigger",
            "metadata": {"name": "issues", "namespace": "team-a",
                         "annotations": {AGENTS_ANNOTATION: "claude-code, gemini"}},
            "spec": {"source": {"github": {"repository": "o/r", "events": ["issues"], "webhookSecretRef": {"name": "h"}}},
                     "taskTemplate": {"spec": {"agentRef": "claude-code", "contexts": []}}},
        })
        .to_string(),
        event: json!({"provider": "github", "kind": "issues", "action": "opened", "repository": "o/r",
                      "number": 7, "url": "https://github.com/o/r/issues/7", "labels": labels})
        .to_string(),
        payload: "{}".to_owned(),
        task: json!({"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                     "metadata": {"name": "issues-abc", "namespace": "team-a"},
                     "spec": {"agentRef": "claude-code", "contexts": []}})
        .to_string(),
        builtin_skip,
    }
}

fn task(outcome: WireOutcome) -> serde_json::Value {
    match outcome {
        WireOutcome::Task(task) => serde_json::from_str(&task).unwrap_or_default(),
        WireOutcome::Skip(skip) => panic!("skipped: {skip:?}"),
    }
}

fn skipped(outcome: WireOutcome) -> String {
    match outcome {
        WireOutcome::Skip(skip) => skip.reason,
        WireOutcome::Task(task) => panic!("a Task: {task}"),
    }
}

#[test]
fn labels_pick_the_offered_agent_and_the_team() {
    let routed = task(
        map_wire::<LabelRouter>(request(&["agent:gemini", "team:payments"], None))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(routed["spec"]["agentRef"], "gemini");
    assert_eq!(routed["metadata"]["labels"][TEAM_LABEL], "payments");
    let plain = task(map_wire::<LabelRouter>(request(&[], None)).unwrap_or_else(|e| panic!("{e}")));
    assert_eq!(plain["spec"]["agentRef"], "claude-code");
    let bad_team = task(
        map_wire::<LabelRouter>(request(&["team:not a label!"], None))
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert!(bad_team["metadata"]["labels"].get(TEAM_LABEL).is_none());
}

#[test]
fn wontfix_unoffered_agents_and_the_builtin_skips_make_nothing() {
    let run = |labels: &[&str], builtin: Option<Skip>| {
        skipped(map_wire::<LabelRouter>(request(labels, builtin)).unwrap_or_else(|e| panic!("{e}")))
    };
    assert_eq!(run(&["wontfix"], None), "WontFix");
    assert_eq!(run(&["agent:root-shell"], None), "AgentNotAllowed");
    let filtered = Skip {
        reason: "Filtered".to_owned(),
        message: "no label kubetask".to_owned(),
    };
    assert_eq!(run(&["agent:gemini"], Some(filtered)), "Filtered");
}
