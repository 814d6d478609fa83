//! The example plugins (`plugins/examples/`), as the committed components, in the real sandbox:
//! the Rust restricted-pod-security policy and git-clone render plugin, and the C deadline
//! policy (built with clang and wasi-libc: the contract is language-neutral).

use std::sync::{Arc, OnceLock};

use kubetask::{
    api::{Agent, Task},
    plugin::{
        Limits, Plugin, PluginError, PluginHost,
        bindings::{Draft, RenderRequest, Settings as WireSettings},
    },
    render::{Pipeline, RenderError, Rendered, Settings},
};
use serde_json::{Value, json};

const RESTRICTED: &[u8] =
    include_bytes!("../../plugins/examples/restricted-policy/restricted_policy.wasm");
const GIT_CLONE: &[u8] = include_bytes!("../../plugins/examples/git-clone/git_clone.wasm");
const DEADLINE_C: &[u8] = include_bytes!("../../plugins/examples/deadline-c/deadline_policy.wasm");

/// One host for the whole binary: each component is compiled once, whichever test asks first.
fn host() -> &'static Arc<PluginHost> {
    static HOST: OnceLock<Arc<PluginHost>> = OnceLock::new();
    HOST.get_or_init(|| Arc::new(PluginHost::new(Limits::default()).expect("the host starts")))
}

fn plugin(name: &str, bytes: &[u8]) -> Plugin {
    host().load(name, bytes).expect("the example plugin loads")
}

fn pipeline(stages: &[(&str, &[u8])]) -> Pipeline {
    Pipeline::new(host().clone(), Settings::default())
        .expect("the default plugin loads")
        .with_plugins(stages.iter().map(|(name, bytes)| plugin(name, bytes)))
}

fn task(labels: Value, annotations: Value) -> Task {
    serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "fix-bug", "namespace": "payments", "labels": labels, "annotations": annotations},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "Fix it"}}}]},
    }))
    .expect("a Task")
}

fn pod(rendered: &Rendered) -> Value {
    serde_json::to_value(&rendered.job).expect("encodes")["spec"]["template"]["spec"].clone()
}

#[test]
fn the_restricted_policy_fixes_what_it_can_and_denies_the_rest() {
    let policy = pipeline(&[("restricted", RESTRICTED)]);
    let rendered = policy
        .render(
            &task(json!({"kubetask.io/team": "payments"}), json!({})),
            None,
        )
        .expect("allowed");
    let pod = pod(&rendered);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "2Gi");
    let labels = rendered.job.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["kubetask.io/team"], "payments");
    assert_eq!(rendered.plugins.len(), 2);
    assert_eq!(rendered.plugins[1].0, "restricted");

    match policy.render(&task(json!({}), json!({})), None) {
        Err(RenderError::Plugin(PluginError::Denied { name, reason, .. })) => {
            assert_eq!(name, "restricted");
            assert!(reason.contains("kubetask.io/team"), "{reason}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn the_git_clone_plugin_adds_an_init_container_and_names_bad_annotations() {
    let git = pipeline(&[("git-clone", GIT_CLONE)]);
    let rendered = git
        .render(
            &task(
                json!({}),
                json!({"git.kubetask.io/repository": "https://github.com/acme/api.git"}),
            ),
            None,
        )
        .expect("renders");
    let pod = pod(&rendered);
    assert_eq!(pod["initContainers"][0]["name"], "git-clone");
    assert_eq!(
        pod["initContainers"][0]["args"][3],
        "https://github.com/acme/api.git"
    );

    match git.render(
        &task(
            json!({}),
            json!({"git.kubetask.io/repository": "file:///etc"}),
        ),
        None,
    ) {
        Err(RenderError::Plugin(PluginError::InvalidInput { object, field, .. })) => {
            assert_eq!(object, "Task/fix-bug");
            assert_eq!(field, "metadata.annotations[git.kubetask.io/repository]");
        }
        other => panic!("expected an invalid annotation, got {other:?}"),
    }
    // Without the annotation the plugin changes nothing.
    let plain = task(json!({}), json!({}));
    let alone = pipeline(&[]).render(&plain, None).expect("renders");
    assert_eq!(git.render(&plain, None).expect("renders").job, alone.job);
}

#[test]
fn the_c_policy_sets_a_deadline_in_the_pipeline() {
    let rendered = pipeline(&[("job-deadline", DEADLINE_C)])
        .render(&task(json!({}), json!({})), None)
        .expect("renders");
    let spec = rendered.job.spec.as_ref().expect("a Job spec");
    assert_eq!(spec.active_deadline_seconds, Some(3600));
    let alone = pipeline(&[])
        .render(&task(json!({}), json!({})), None)
        .expect("renders");
    let mut without = rendered.job.clone();
    without
        .spec
        .as_mut()
        .expect("a Job spec")
        .active_deadline_seconds = None;
    assert_eq!(without, alone.job, "nothing else changes");
    assert_eq!(
        rendered.config_maps, alone.config_maps,
        "ConfigMaps pass through"
    );
}

/// Calls the C plugin directly with a hand-written draft (its JSON scanner's edge cases).
fn call_c(job: &str) -> Result<Draft, PluginError> {
    let request = RenderRequest {
        task: serde_json::to_string(&task(json!({}), json!({}))).expect("encodes"),
        agent: None,
        settings: WireSettings {
            default_agent_image: "agent:v1".to_owned(),
            controller_namespace: "kubetask-system".to_owned(),
        },
        draft: Some(Draft {
            job: job.to_owned(),
            config_maps: vec![r#"{"apiVersion":"v1","kind":"ConfigMap"}"#.to_owned()],
            warnings: vec!["kept".to_owned()],
        }),
    };
    host().render(&plugin("job-deadline", DEADLINE_C), &request)
}

#[test]
fn the_c_policy_reads_json_correctly_and_denies_long_deadlines() {
    let job = |spec: &str| {
        format!(
            r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"annotations":{{"note":"a \"spec\": {{ trick"}}}},"spec":{spec}}}"#
        )
    };
    let spec_of = |draft: &Draft| -> Value {
        serde_json::from_str::<Value>(&draft.job).expect("valid JSON out")["spec"].clone()
    };

    let empty = call_c(&job("{}")).expect("renders");
    assert_eq!(spec_of(&empty), json!({"activeDeadlineSeconds": 3600}));
    assert_eq!(empty.config_maps.len(), 1, "ConfigMaps pass through");
    assert_eq!(empty.warnings, ["kept"]);

    let spaced = call_c(&job(
        r#" { "backoffLimit" : 0 , "template" : {"spec": {"activeDeadlineSeconds": 1}} } "#,
    ))
    .expect("renders");
    assert_eq!(
        spec_of(&spaced)["activeDeadlineSeconds"],
        3600,
        "only the Job's own spec counts"
    );
    assert_eq!(
        spec_of(&spaced)["template"]["spec"]["activeDeadlineSeconds"],
        1
    );

    let within = job(r#"{"activeDeadlineSeconds":600}"#);
    assert_eq!(
        call_c(&within).expect("renders").job,
        within,
        "a deadline within bounds is kept"
    );

    match call_c(&job(r#"{"activeDeadlineSeconds":86400}"#)) {
        Err(PluginError::Denied { reason, .. }) => {
            assert!(
                reason.contains("spec.activeDeadlineSeconds is 86400"),
                "{reason}"
            );
            assert!(reason.contains("at most 21600"), "{reason}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    match call_c(r#"{"kind":"Job"}"#) {
        Err(PluginError::Internal { message, .. }) => {
            assert!(message.contains("no spec"), "{message}")
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
}

#[test]
fn three_example_plugins_compose_in_order() {
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "coder", "namespace": "payments"},
        "spec": {"agentImage": "quay.io/acme/coder:v1", "serviceAccountName": "coder", "plugins": ["git-clone"]},
    }))
    .expect("an Agent");
    let rendered = pipeline(&[
        ("git-clone", GIT_CLONE),
        ("restricted", RESTRICTED),
        ("job-deadline", DEADLINE_C),
    ])
    .render(
        &task(
            json!({"kubetask.io/team": "payments"}),
            json!({"git.kubetask.io/repository": "https://github.com/acme/api.git"}),
        ),
        Some(&agent),
    )
    .expect("renders");
    let names: Vec<&str> = rendered
        .plugins
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        names,
        ["builtin-default", "git-clone", "restricted", "job-deadline"]
    );
    let pod = pod(&rendered);
    // The policy saw the init container the render plugin added and gave it default resources.
    assert_eq!(
        pod["initContainers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        rendered
            .job
            .spec
            .as_ref()
            .and_then(|spec| spec.active_deadline_seconds),
        Some(3600)
    );
}

#[test]
fn a_warning_is_reported_once_however_many_stages_follow() {
    // An Agent default context that the Task overrides: a warning of the built-in renderer.
    let agent: Agent = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "default", "namespace": "payments"},
        "spec": {"serviceAccountName": "sa", "defaultContexts": [
            {"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "default"}}}
        ]},
    }))
    .expect("an Agent");
    let task = task(json!({"kubetask.io/team": "payments"}), json!({}));
    let alone = pipeline(&[]).render(&task, Some(&agent)).expect("renders");
    assert_eq!(alone.warnings.len(), 1, "{:?}", alone.warnings);
    // The C policy and the Rust policy both return the draft's warnings with their own.
    let three = pipeline(&[("job-deadline", DEADLINE_C), ("restricted", RESTRICTED)])
        .render(&task, Some(&agent))
        .expect("renders");
    let overrides = three
        .warnings
        .iter()
        .filter(|w| w.contains("overrides"))
        .count();
    assert_eq!(overrides, 1, "{:?}", three.warnings);
}
