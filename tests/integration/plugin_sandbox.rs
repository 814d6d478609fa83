//! The plugin sandbox, exercised with real components in real wasmtime: the embedded default
//! plugin, a deliberately hostile plugin (`plugins/testing/hostile`) and hand-written WAT.

use std::{sync::Arc, thread, time::Duration};

use kubetask::{
    api::Task,
    plugin::{Limits, PluginError, PluginHost},
    render::{Pipeline, RenderError, Rendered, Settings},
};
use serde_json::json;

const HOSTILE: &[u8] = include_bytes!("../../plugins/testing/hostile.wasm");

fn host() -> Arc<PluginHost> {
    let limits = Limits {
        memory_bytes: 32 << 20,
        deadline: Duration::from_millis(300),
        output_bytes: 1 << 20,
    };
    Arc::new(PluginHost::new(limits).expect("the plugin host starts"))
}

fn task(behavior: Option<&str>) -> Task {
    let mut task: Task = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "fix-bug", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "fix it"}}}]},
    }))
    .expect("test Task is well-formed");
    if let Some(behavior) = behavior {
        task.metadata.annotations =
            Some([("test.kubetask.io/behavior".to_owned(), behavior.to_owned())].into());
    }
    task
}

fn with_hostile(host: &Arc<PluginHost>) -> Pipeline {
    let hostile = host
        .load("hostile", HOSTILE)
        .expect("the hostile plugin loads");
    Pipeline::new(host.clone(), Settings::default())
        .expect("the default plugin loads")
        .with_plugins([hostile])
}

fn render(pipeline: &Pipeline, behavior: &str) -> Result<Rendered, RenderError> {
    pipeline.render(&task(Some(behavior)), None)
}

#[test]
fn the_embedded_default_plugin_renders_a_job() {
    let pipeline = Pipeline::new(host(), Settings::default()).expect("the default plugin loads");
    let rendered = pipeline.render(&task(None), None).expect("renders");
    assert_eq!(rendered.job.metadata.name.as_deref(), Some("fix-bug"));
    assert_eq!(rendered.config_maps.len(), 1);
    let [(name, digest)] = rendered.plugins.as_slice() else {
        panic!("one stage expected")
    };
    assert_eq!(name, "builtin-default");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
}

#[test]
fn a_well_behaved_stage_passes_the_draft_on() {
    let host = host();
    let alone = Pipeline::new(host.clone(), Settings::default())
        .expect("loads")
        .render(&task(Some("pass")), None);
    let chained = render(&with_hostile(&host), "pass").expect("renders");
    let alone = alone.expect("renders");
    assert_eq!(chained.job, alone.job);
    assert_eq!(chained.config_maps, alone.config_maps);
    assert_eq!(chained.plugins.len(), 2);
    assert_eq!(chained.plugins[1].0, "hostile");
}

#[test]
fn each_kind_of_misbehavior_gets_its_own_error() {
    let host = host();
    let pipeline = with_hostile(&host);
    type Expectation = fn(&PluginError) -> bool;
    let cases: [(&str, Expectation); 9] = [
        (
            "loop",
            |error| matches!(error, PluginError::Timeout { deadline, .. } if *deadline == Duration::from_millis(300)),
        ),
        (
            "memory",
            |error| matches!(error, PluginError::Memory { limit_bytes, .. } if *limit_bytes == 32 << 20),
        ),
        // Rust keeps its stack in linear memory: overflowing it is an out-of-bounds access.
        (
            "recursion",
            |error| matches!(error, PluginError::Trap { message, .. } if message.starts_with("wasm trap")),
        ),
        (
            "panic",
            |error| matches!(error, PluginError::Trap { message, .. } if message.contains("unreachable")),
        ),
        (
            "garbage",
            |error| matches!(error, PluginError::InvalidOutput { message, .. } if message.starts_with("job:")),
        ),
        (
            "not-a-job",
            |error| matches!(error, PluginError::InvalidOutput { message, .. } if message.contains("expected batch/v1")),
        ),
        (
            "huge",
            |error| matches!(error, PluginError::InvalidOutput { message, .. } if message.contains("output limit")),
        ),
        (
            "deny",
            |error| matches!(error, PluginError::Denied { reason, .. } if reason == "hostile policy says no"),
        ),
        (
            "invalid",
            |error| matches!(error, PluginError::InvalidInput { field, message, .. } if field == "metadata.annotations" && message == "not acceptable"),
        ),
    ];
    for (behavior, expected) in cases {
        match render(&pipeline, behavior) {
            Err(RenderError::Plugin(error)) => {
                assert!(expected(&error), "{behavior}: unexpected error {error:?}");
                let text = error.to_string();
                if !matches!(error, PluginError::InvalidInput { .. }) {
                    assert!(
                        text.contains("hostile") && text.contains("sha256:"),
                        "{behavior}: {text}"
                    );
                }
            }
            other => panic!("{behavior}: expected a plugin error, got {other:?}"),
        }
    }
    // The host survives all of it and still renders.
    assert!(render(&pipeline, "pass").is_ok());
}

#[test]
fn a_plugin_cannot_rename_move_or_reparent_the_job() {
    let rendered = render(&with_hostile(&host()), "hijack").expect("renders");
    let metadata = &rendered.job.metadata;
    assert_eq!(metadata.name.as_deref(), Some("fix-bug"));
    assert_eq!(metadata.namespace.as_deref(), Some("team-a"));
    let labels = metadata.labels.as_ref().expect("labels");
    assert_eq!(
        labels.get("kubetask.io/task").map(String::as_str),
        Some("fix-bug")
    );
    assert_eq!(
        labels.get("hijacker").map(String::as_str),
        Some("was-here"),
        "other labels are the plugin's to set"
    );
    let owners = metadata.owner_references.as_ref().expect("owners");
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("Task", "uid-1")
    );
    assert_eq!(rendered.warnings, ["hijack attempted"]);
}

/// Renders the sample Task through a hostile stage that applies `job_patch` (a JSON merge patch)
/// to the Job and adds `config_maps`.
fn render_patched(
    job_patch: serde_json::Value,
    config_maps: serde_json::Value,
) -> Result<Rendered, RenderError> {
    let mut task = task(Some("patch"));
    let annotations = task.metadata.annotations.get_or_insert_default();
    annotations.insert(
        "test.kubetask.io/job-patch".to_owned(),
        job_patch.to_string(),
    );
    annotations.insert(
        "test.kubetask.io/config-maps".to_owned(),
        config_maps.to_string(),
    );
    with_hostile(&host()).render(&task, None)
}

#[test]
fn what_a_plugin_emits_is_confined_to_its_task() {
    let marks = json!({
        "labels": {"kubetask.io/plugin": "true", "team": "a"},
        "annotations": {"kubetask.io/policy-order": "1", "kubetask.io/sha256": "sha256:00"},
        "finalizers": ["example.com/keep-forever"],
        "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "team-a", "uid": "ns-uid"}],
    });
    let rendered = render_patched(
        json!({
            "metadata": marks,
            "spec": {"template": {"metadata": {"labels": {"kubetask.io/task": null, "kubetask.io/plugin": "x"}}}},
        }),
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "fix-bug-policy", "namespace": "kubetask-system",
            "labels": marks["labels"], "annotations": marks["annotations"],
            "finalizers": marks["finalizers"], "ownerReferences": marks["ownerReferences"]},
            "data": {"a": "b"}}]),
    )
    .expect("confined, not refused");
    let extra = &rendered.config_maps[1];
    assert_eq!(extra.metadata.name.as_deref(), Some("fix-bug-policy"));
    for metadata in [&rendered.job.metadata, &extra.metadata] {
        assert_eq!(metadata.namespace.as_deref(), Some("team-a"));
        let labels = metadata.labels.as_ref().expect("labels");
        assert!(!labels.contains_key("kubetask.io/plugin"), "{labels:?}");
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        let annotations = metadata.annotations.clone().unwrap_or_default();
        assert!(
            annotations.is_empty(),
            "policy annotations stripped: {annotations:?}"
        );
        assert_eq!(metadata.finalizers, None);
        let owners = metadata.owner_references.as_ref().expect("owners");
        assert_eq!(owners.len(), 1, "only the Task: {owners:?}");
        assert_eq!(owners[0].uid, "uid-1");
    }
    let template = rendered
        .job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref());
    let labels = template
        .and_then(|m| m.labels.as_ref())
        .expect("pod labels");
    assert_eq!(
        labels.get("kubetask.io/task").map(String::as_str),
        Some("fix-bug")
    );
    assert!(!labels.contains_key("kubetask.io/plugin"));

    let config_map =
        |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    let many: Vec<_> = (0..16)
        .map(|i| config_map(&format!("fix-bug-{i}")))
        .collect();
    let refused = [
        (
            json!({}),
            json!([config_map("other-task-contexts")]),
            "must start with \"fix-bug-\"",
        ),
        (json!({}), json!([config_map("guide")]), "must start with"),
        (
            json!({}),
            json!([config_map("fix-bug-contexts")]),
            "used twice",
        ),
        (json!({}), json!(many), "at most 16"),
        (
            json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}}),
            json!([]),
            "spec.selector",
        ),
        (
            json!({"spec": {"manualSelector": true}}),
            json!([]),
            "spec.manualSelector",
        ),
    ];
    for (patch, config_maps, expected) in refused {
        match render_patched(patch.clone(), config_maps) {
            Err(RenderError::Plugin(PluginError::InvalidOutput { name, message, .. })) => {
                assert_eq!(name, "hostile");
                assert!(message.contains(expected), "{patch}: {message}");
            }
            other => panic!("{patch}: expected invalid output, got {other:?}"),
        }
    }
}

#[test]
fn a_runaway_plugin_does_not_hold_up_other_tasks() {
    let host = host();
    let pipeline = Arc::new(with_hostile(&host));
    let runaway = {
        let pipeline = pipeline.clone();
        thread::spawn(move || render(&pipeline, "loop"))
    };
    for _ in 0..3 {
        render(&pipeline, "pass").expect("a well-behaved Task renders while another loops");
    }
    let outcome = runaway.join().expect("the runaway thread returns");
    assert!(
        matches!(
            outcome,
            Err(RenderError::Plugin(PluginError::Timeout { .. }))
        ),
        "{outcome:?}"
    );
}

#[test]
fn load_rejects_what_is_not_a_plugin() {
    let host = host();
    let not_wasm = host
        .load("junk", b"not wasm at all")
        .expect_err("junk is rejected");
    assert!(
        matches!(not_wasm, PluginError::Compile { .. }),
        "{not_wasm:?}"
    );

    let core_module = wat::parse_str("(module)").expect("valid WAT");
    let error = host
        .load("core", &core_module)
        .expect_err("a core module is not a component");
    assert!(matches!(error, PluginError::Compile { .. }), "{error:?}");

    let wasi = wat::parse_str(r#"(component (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#).expect("valid WAT");
    let error = host
        .load("wasi-user", &wasi)
        .expect_err("WASI imports are refused");
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("it imports wasi:cli/environment@0.2.0"),
        "{error}"
    );
    assert!(error.to_string().contains("no WASI"), "{error}");

    let empty = wat::parse_str("(component)").expect("valid WAT");
    let error = host
        .load("empty", &empty)
        .expect_err("a component without `render` is refused");
    assert!(matches!(error, PluginError::WrongWorld { .. }), "{error:?}");
}

#[test]
fn identical_components_are_compiled_once() {
    let host = host();
    let before = host.cached_components();
    let first = host.load("one", HOSTILE).expect("loads");
    let second = host.load("two", HOSTILE).expect("loads");
    assert_eq!(first.digest(), second.digest());
    assert_eq!((first.name(), second.name()), ("one", "two"));
    assert_eq!(host.cached_components(), before + 1);
}

/// A network stage's output is confined like a render stage's: what is not a policy of the
/// Task's, named after its Job, is refused naming the plugin and why; what is one is pulled
/// into the Task's namespace and ownership, whatever the plugin wrote there.
#[test]
fn a_network_stage_cannot_create_anything_but_the_tasks_policies() {
    let host = host();
    let key = kubetask::egress::TokenKey::new(&[5; 32]).expect("key");
    let egress = kubetask::render::egress::EgressSettings::new(
        key,
        kubetask::render::egress::DEFAULT_EXIT.to_owned(),
        kubetask::api::EgressMode::AllowList,
    )
    .expect("settings");
    let pipeline = with_hostile(&host).with_egress(Some(Arc::new(egress)));
    let with_policies = |policies: serde_json::Value| {
        let mut task = task(Some("pass"));
        task.metadata
            .annotations
            .get_or_insert_default()
            .insert("test.kubetask.io/policies".to_owned(), policies.to_string());
        pipeline.render(&task, None)
    };

    // Without the annotation the hostile stage passes the built-in policy on.
    let passed = pipeline.render(&task(Some("pass")), None).expect("renders");
    assert_eq!(passed.policies.len(), 1);
    assert_eq!(
        passed.policies[0].metadata.name.as_deref(),
        Some("fix-bug-egress")
    );

    for (policies, says) in [
        (
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fix-bug-x"}}]),
            "policies[0]: v1 ConfigMap is not a policy kind",
        ),
        (
            json!([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "other-egress"}}]),
            "must start with \"fix-bug-\"",
        ),
        (
            json!([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "fix-bug-x"},
                    "spec": {"podSelector": "everything"}}]),
            "policies[0]: spec.podSelector",
        ),
    ] {
        let refused = with_policies(policies.clone());
        let Err(RenderError::Plugin(PluginError::InvalidOutput { name, message, .. })) = &refused
        else {
            panic!("{policies}: {refused:?}")
        };
        assert_eq!(name, "hostile");
        assert!(message.contains(says), "{policies}: {message}");
    }

    let confined = with_policies(json!([{
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "fix-bug-open", "namespace": "kube-system",
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "kube-system", "uid": "evil", "controller": true}]},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }]))
    .expect("a policy of the Task's own is accepted");
    let policy = &confined.policies[0];
    assert_eq!(policy.metadata.namespace.as_deref(), Some("team-a"));
    let owners = policy.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "Task");
    // A stage may drop the policy (the Task's EgressEnforced then says NoPolicy).
    let dropped = with_policies(json!([])).expect("renders");
    assert!(dropped.policies.is_empty());
}
