//! Table-driven tests of every rendering rule and every rejected input.

use k8s_openapi::api::core::v1::{PodSpec, Volume, VolumeMount};
use kubetask_api::{Agent, Task};
use serde_json::{Value, json};

use crate::{Output, RenderError, Settings, render, render_json};

const DEFAULT_IMAGE: &str = "ghcr.io/kubetask/agent-gemini:v0.1.0";

fn settings() -> Settings {
    Settings {
        default_agent_image: DEFAULT_IMAGE.to_owned(),
        ..Settings::default()
    }
}

fn inline(path: &str, content: &str) -> Value {
    json!({"type": "File", "file": {"filePath": path, "source": {"inline": content}}})
}

fn key_ref(path: &str, name: &str, key: &str) -> Value {
    json!({"type": "File", "file": {"filePath": path, "source": {"configMapKeyRef": {"name": name, "key": key}}}})
}

fn dir_ref(path: &str, name: &str) -> Value {
    json!({"type": "File", "file": {"dirPath": path, "source": {"configMapRef": {"name": name}}}})
}

fn task_json(contexts: Value) -> Value {
    json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": "fix-bug", "namespace": "team-a", "uid": "uid-1"},
        "spec": {"contexts": contexts},
    })
}

fn agent_json(spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("serviceAccountName").is_none() {
        spec["serviceAccountName"] = json!("kubetask-agent");
    }
    json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "claude", "namespace": "team-a"},
        "spec": spec,
    })
}

fn task(contexts: Value) -> Task {
    serde_json::from_value(task_json(contexts)).expect("test Task is well-formed")
}

fn agent(spec: Value) -> Agent {
    serde_json::from_value(agent_json(spec)).expect("test Agent is well-formed")
}

fn pod(rendered: &Output) -> &PodSpec {
    rendered
        .job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("the Job has a pod spec")
}

fn mounts(rendered: &Output) -> &[VolumeMount] {
    pod(rendered).containers[0]
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
}

fn mount_at<'a>(rendered: &'a Output, path: &str) -> &'a VolumeMount {
    mounts(rendered)
        .iter()
        .find(|mount| mount.mount_path == path)
        .unwrap_or_else(|| panic!("no mount at {path}: {:#?}", mounts(rendered)))
}

fn volume<'a>(rendered: &'a Output, name: &str) -> &'a Volume {
    pod(rendered)
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|volume| volume.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn env(rendered: &Output) -> Value {
    serde_json::to_value(&pod(rendered).containers[0].env).expect("env serializes")
}

fn ok(task: &Task, agent: Option<&Agent>) -> Output {
    render(task, agent, &settings()).unwrap_or_else(|error| panic!("render failed: {error}"))
}

#[test]
fn simple_task_becomes_a_job_and_a_config_map() {
    let rendered = ok(
        &task(json!([inline(
            "/workspace/task.md",
            "Update dependencies.\n"
        )])),
        None,
    );
    let job = serde_json::to_value(&rendered.job).expect("serializes");
    assert_eq!(job["metadata"]["name"], "fix-bug");
    assert_eq!(job["metadata"]["namespace"], "team-a");
    assert_eq!(
        job["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "kubetask", "kubetask.io/task": "fix-bug"})
    );
    assert_eq!(
        job["metadata"]["ownerReferences"],
        json!([{"apiVersion": "kubetask.io/v1alpha1", "kind": "Task", "name": "fix-bug", "uid": "uid-1",
                "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["image"], DEFAULT_IMAGE);
    // The default image is pinned to a release tag.
    assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(pod["containers"][0]["workingDir"], "/workspace");
    assert!(
        pod.get("serviceAccountName").is_none(),
        "no Agent: the namespace's default ServiceAccount"
    );
    assert_eq!(
        pod["containers"][0]["env"],
        json!([{"name": "TASK_NAME", "value": "fix-bug"}, {"name": "TASK_NAMESPACE", "value": "team-a"}])
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"],
        job["metadata"]["labels"]
    );

    let [config_map] = rendered.config_maps.as_slice() else {
        panic!("one ConfigMap expected")
    };
    assert_eq!(
        config_map.metadata.name.as_deref(),
        Some("fix-bug-contexts")
    );
    assert_eq!(config_map.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(config_map.metadata.labels, rendered.job.metadata.labels);
    assert_eq!(
        config_map.metadata.owner_references,
        rendered.job.metadata.owner_references
    );
    let data = config_map.data.as_ref().expect("data");
    assert_eq!(
        data.get("0-task.md").map(String::as_str),
        Some("Update dependencies.\n")
    );

    let mount = mount_at(&rendered, "/workspace/task.md");
    assert_eq!(
        (
            mount.name.as_str(),
            mount.sub_path.as_deref(),
            mount.read_only
        ),
        ("contexts", Some("0-task.md"), Some(true))
    );
    assert_eq!(
        volume(&rendered, "contexts")
            .config_map
            .as_ref()
            .map(|source| source.name.as_str()),
        Some("fix-bug-contexts")
    );
    assert!(rendered.warnings.is_empty());
}

#[test]
fn workspace_is_a_writable_empty_dir() {
    let rendered = ok(&task(json!([inline("/workspace/task.md", "x")])), None);
    let mount = mount_at(&rendered, "/workspace");
    assert_eq!(
        (
            mount.name.as_str(),
            mount.read_only,
            mount.sub_path.as_deref()
        ),
        ("workspace", None, None)
    );
    assert!(volume(&rendered, "workspace").empty_dir.is_some());
}

#[test]
fn long_task_names_get_a_truncated_hashed_job_name() {
    let mut long = task(json!([inline("/workspace/task.md", "x")]));
    let name = format!("{}-{}", "update-all-the-services", "x".repeat(60));
    long.metadata.name = Some(name.clone());
    let rendered = ok(&long, None);
    let job_name = rendered.job.metadata.name.clone().expect("name");
    assert!(job_name.len() <= 63 && job_name != name, "{job_name}");
    assert_eq!(job_name, kubetask_api::naming::job_name(&name));
    let labels = rendered.job.metadata.labels.as_ref().expect("labels");
    assert_eq!(
        labels.get("kubetask.io/task"),
        Some(&job_name),
        "label values are limited to 63 characters"
    );
    assert_eq!(
        rendered.config_maps[0].metadata.name,
        Some(format!("{job_name}-contexts"))
    );
    assert_eq!(
        env(&rendered)[0]["value"],
        json!(name),
        "TASK_NAME is the full Task name"
    );
}

#[test]
fn config_map_key_ref_mounts_one_key_as_a_file() {
    let mut context = key_ref("/workspace/guide.md", "guides", "refactoring-guide.md");
    context["file"]["source"]["configMapKeyRef"]["optional"] = json!(true);
    let rendered = ok(&task(json!([context])), None);
    assert!(
        rendered.config_maps.is_empty(),
        "no inline context, no generated ConfigMap"
    );
    let mount = mount_at(&rendered, "/workspace/guide.md");
    assert_eq!(
        (mount.sub_path.as_deref(), mount.read_only),
        (Some("content"), Some(true))
    );
    let source = volume(&rendered, &mount.name)
        .config_map
        .clone()
        .expect("a ConfigMap volume");
    assert_eq!(source.name, "guides");
    assert_eq!(source.optional, Some(true));
    let items = source.items.expect("items");
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("refactoring-guide.md", "content")
    );
}

#[test]
fn config_map_ref_mounts_a_whole_directory() {
    let mut context = dir_ref("/workspace/configs/", "project-configs");
    context["file"]["source"]["configMapRef"]["optional"] = json!(true);
    let rendered = ok(&task(json!([context])), None);
    let mount = mount_at(&rendered, "/workspace/configs");
    assert_eq!(
        (mount.sub_path.as_deref(), mount.read_only),
        (None, Some(true))
    );
    let source = volume(&rendered, &mount.name)
        .config_map
        .clone()
        .expect("a ConfigMap volume");
    assert_eq!(
        (source.name.as_str(), source.optional, source.items),
        ("project-configs", Some(true), None)
    );
}

#[test]
fn agent_defaults_come_first_and_the_task_wins_on_the_same_path() {
    let agent = agent(json!({"defaultContexts": [
        key_ref("/workspace/org-guidelines.md", "org-configs", "guidelines.md"),
        inline("/workspace/task.md", "default task"),
    ]}));
    let rendered = ok(
        &task(json!([inline("/workspace/task.md", "the real task")])),
        Some(&agent),
    );
    let paths: Vec<&str> = mounts(&rendered)
        .iter()
        .map(|mount| mount.mount_path.as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/workspace",
            "/workspace/org-guidelines.md",
            "/workspace/task.md"
        ]
    );
    let data = rendered.config_maps[0].data.clone().expect("data");
    assert_eq!(data.values().collect::<Vec<_>>(), ["the real task"]);
    assert_eq!(
        rendered.warnings,
        [
            "Task/fix-bug spec.contexts[0] overrides Agent/claude spec.defaultContexts[1] at /workspace/task.md"
        ]
    );
}

#[test]
fn credentials_become_env_vars_and_files() {
    let agent = agent(json!({"credentials": [
        {"name": "github-token", "secretRef": {"name": "github-creds", "key": "token"}, "env": "GITHUB_TOKEN"},
        {"name": "ssh-key", "secretRef": {"name": "ssh-keys", "key": "id_rsa"},
         "mountPath": "/home/agent/.ssh/id_rsa", "fileMode": 0o400},
        {"name": "both", "secretRef": {"name": "api", "key": "k"}, "env": "API_KEY", "mountPath": "/etc/api/key"},
    ]}));
    let rendered = ok(
        &task(json!([inline("/workspace/task.md", "x")])),
        Some(&agent),
    );
    let env = env(&rendered);
    assert_eq!(
        env[2],
        json!({"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "github-creds", "key": "token"}}})
    );
    assert_eq!(
        env[3],
        json!({"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "k"}}})
    );
    let mount = mount_at(&rendered, "/home/agent/.ssh/id_rsa");
    assert_eq!(
        (mount.sub_path.as_deref(), mount.read_only),
        (Some("value"), Some(true))
    );
    let secret = volume(&rendered, &mount.name)
        .secret
        .clone()
        .expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("ssh-keys"));
    let item = &secret.items.expect("items")[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str(), item.mode),
        ("id_rsa", "value", Some(256))
    );
    assert!(
        mounts(&rendered)
            .iter()
            .any(|mount| mount.mount_path == "/etc/api/key")
    );
}

#[test]
fn pod_labels_are_copied_and_ours_win() {
    let agent = agent(
        json!({"podLabels": {"network-policy": "agent-restricted", "kubetask.io/task": "spoofed"}}),
    );
    let rendered = ok(&task(json!([])), Some(&agent));
    let template = serde_json::to_value(&rendered.job.spec.as_ref().expect("spec").template)
        .expect("serializes");
    assert_eq!(
        template["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "kubetask", "kubetask.io/task": "fix-bug", "network-policy": "agent-restricted"})
    );
    assert_eq!(
        rendered.warnings,
        [
            "Agent/claude spec.podLabels[kubetask.io/task] is ignored: KubeTask sets kubetask.io/task itself"
        ]
    );
    assert_eq!(
        rendered
            .job
            .metadata
            .labels
            .as_ref()
            .map(|labels| labels.len()),
        Some(2),
        "user labels stay on the pod"
    );
}

#[test]
fn scheduling_and_service_account_are_copied() {
    let scheduling = json!({
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ai-workload", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}},
    });
    let agent = agent(json!({"scheduling": scheduling, "serviceAccountName": "runner"}));
    let rendered = ok(&task(json!([])), Some(&agent));
    let pod = serde_json::to_value(pod(&rendered)).expect("serializes");
    assert_eq!(pod["nodeSelector"], scheduling["nodeSelector"]);
    assert_eq!(pod["tolerations"], scheduling["tolerations"]);
    assert_eq!(pod["affinity"], scheduling["affinity"]);
    assert_eq!(pod["serviceAccountName"], "runner");
}

#[test]
fn agent_image_and_pull_policy() {
    let agent = agent(json!({"agentImage": "quay.io/myorg/claude-agent:v1.0"}));
    let rendered = ok(&task(json!([])), Some(&agent));
    let container = &pod(&rendered).containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("quay.io/myorg/claude-agent:v1.0")
    );
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(container.name, "agent");
}

#[test]
fn tools_image_is_mounted_under_tools_and_prepended_to_path() {
    let agent = agent(json!({"toolsImage": "quay.io/myorg/tools:v1.0"}));
    let rendered = ok(&task(json!([])), Some(&agent));
    let mount = mount_at(&rendered, "/tools");
    assert_eq!(mount.read_only, Some(true));
    let image = volume(&rendered, &mount.name)
        .image
        .clone()
        .expect("an image volume");
    assert_eq!(image.reference.as_deref(), Some("quay.io/myorg/tools:v1.0"));
    assert_eq!(image.pull_policy.as_deref(), Some("IfNotPresent"));
    let env = env(&rendered);
    let path = env
        .as_array()
        .and_then(|vars| vars.iter().find(|var| var["name"] == "PATH"))
        .expect("PATH is set");
    assert!(
        path["value"]
            .as_str()
            .is_some_and(|value| value.starts_with("/tools/bin:")),
        "{path}"
    );
}

#[test]
fn output_is_deterministic() {
    let agent = agent_json(json!({
        "defaultContexts": [key_ref("/workspace/b.md", "b", "b"), inline("/workspace/a.md", "a")],
        "credentials": [{"name": "t", "secretRef": {"name": "s", "key": "k"}, "env": "T"}],
        "podLabels": {"z": "1", "a": "2"},
    }))
    .to_string();
    let task = task_json(json!([
        inline("/workspace/c.md", "c"),
        dir_ref("/workspace/d", "d")
    ]))
    .to_string();
    let first = render_json(&task, Some(&agent), &settings()).expect("renders");
    for _ in 0..5 {
        assert_eq!(
            render_json(&task, Some(&agent), &settings()).expect("renders"),
            first
        );
    }
}

/// An input that must be rejected, and the field the error must name.
struct Rejected {
    name: &'static str,
    contexts: Value,
    agent: Option<Value>,
    object: &'static str,
    field: &'static str,
    message: &'static str,
}

fn rejected_cases() -> Vec<Rejected> {
    let task_ctx = |contexts: Value,
                    field: &'static str,
                    message: &'static str,
                    name: &'static str| Rejected {
        name,
        contexts,
        agent: None,
        object: "Task/fix-bug",
        field,
        message,
    };
    let agent_spec =
        |spec: Value, field: &'static str, message: &'static str, name: &'static str| Rejected {
            name,
            contexts: json!([inline("/workspace/task.md", "x")]),
            agent: Some(spec),
            object: "Agent/claude",
            field,
            message,
        };
    let credential = |fields: Value| {
        let mut credential = json!({"name": "c", "secretRef": {"name": "s", "key": "k"}});
        if let (Some(target), Some(extra)) = (credential.as_object_mut(), fields.as_object()) {
            target.extend(extra.clone());
        }
        credential
    };
    vec![
        task_ctx(
            json!([{"type": "File"}]),
            "spec.contexts[0].file",
            "required",
            "file missing",
        ),
        task_ctx(
            json!([{"type": "File", "file": {"filePath": "/workspace/a", "dirPath": "/workspace/b", "source": {"configMapRef": {"name": "x"}}}}]),
            "spec.contexts[0].file",
            "not both",
            "both filePath and dirPath",
        ),
        task_ctx(
            json!([{"type": "File", "file": {"source": {"inline": "x"}}}]),
            "spec.contexts[0].file",
            "set filePath",
            "neither path",
        ),
        task_ctx(
            json!([inline("workspace/task.md", "x")]),
            "spec.contexts[0].file.filePath",
            "absolute",
            "relative path",
        ),
        task_ctx(
            json!([inline("/workspace/../etc/passwd", "x")]),
            "spec.contexts[0].file.filePath",
            "\"..\"",
            "dot-dot segment",
        ),
        task_ctx(
            json!([dir_ref("configs", "c")]),
            "spec.contexts[0].file.dirPath",
            "absolute",
            "relative dirPath",
        ),
        task_ctx(
            json!([{"type": "File", "file": {"filePath": "/workspace/a", "source": {}}}]),
            "spec.contexts[0].file.source",
            "set one of",
            "no source",
        ),
        task_ctx(
            json!([{"type": "File", "file": {"filePath": "/workspace/a", "source": {"inline": "x", "configMapKeyRef": {"name": "c", "key": "k"}}}}]),
            "spec.contexts[0].file.source",
            "found inline, configMapKeyRef",
            "two sources",
        ),
        task_ctx(
            json!([{"type": "File", "file": {"filePath": "/workspace/a", "source": {"configMapRef": {"name": "c"}}}}]),
            "spec.contexts[0].file.source.configMapRef",
            "use dirPath",
            "configMapRef with filePath",
        ),
        task_ctx(
            json!([{"type": "File", "file": {"dirPath": "/workspace/a", "source": {"inline": "x"}}}]),
            "spec.contexts[0].file.dirPath",
            "needs source.configMapRef",
            "dirPath with inline",
        ),
        task_ctx(
            json!([
                inline("/workspace/a.md", "1"),
                key_ref("/workspace/b.md", "c", "k"),
                inline("/workspace/a.md/", "2")
            ]),
            "spec.contexts[2].file.filePath",
            "also the path of spec.contexts[0]",
            "same path twice in the Task",
        ),
        task_ctx(
            json!([
                dir_ref("/workspace/configs", "c"),
                inline("/workspace/configs/extra.md", "x")
            ]),
            "spec.contexts[1].file.filePath",
            "inside /workspace/configs",
            "file inside a ConfigMap directory",
        ),
        task_ctx(
            json!([dir_ref("/workspace", "c")]),
            "spec.contexts[0].file.dirPath",
            "workspace itself",
            "the workspace itself",
        ),
        task_ctx(
            json!([inline("/workspace/a\u{0}b.md", "x")]),
            "spec.contexts[0].file.filePath",
            "control characters",
            "NUL in a file path",
        ),
        task_ctx(
            json!([dir_ref("/workspace/con\nfigs", "c")]),
            "spec.contexts[0].file.dirPath",
            "control characters",
            "newline in a directory path",
        ),
        task_ctx(
            json!([inline("/tools/bin/git", "x")]),
            "spec.contexts[0].file.filePath",
            "reserved",
            "under /tools",
        ),
        task_ctx(
            json!([key_ref("/workspace/a", "c", "")]),
            "spec.contexts[0].file.source.configMapKeyRef.key",
            "empty",
            "empty key",
        ),
        task_ctx(
            json!([key_ref("/workspace/a", "c", "a/b")]),
            "spec.contexts[0].file.source.configMapKeyRef.key",
            "not a valid key",
            "bad key",
        ),
        task_ctx(
            json!([key_ref("/workspace/a", "Bad_Name", "k")]),
            "spec.contexts[0].file.source.configMapKeyRef.name",
            "object name",
            "bad ConfigMap name",
        ),
        task_ctx(
            json!([dir_ref("/workspace/c", "")]),
            "spec.contexts[0].file.source.configMapRef.name",
            "empty",
            "empty ConfigMap name",
        ),
        task_ctx(
            json!([
                inline("/workspace/a", &"x".repeat(600_000)),
                inline("/workspace/b", &"y".repeat(600_000))
            ]),
            "spec.contexts[1].file.source.inline",
            "1 MiB",
            "inline contexts too large",
        ),
        Rejected {
            name: "same path twice in the Agent",
            contexts: json!([]),
            agent: Some(
                json!({"defaultContexts": [inline("/workspace/a", "1"), inline("/workspace/a", "2")]}),
            ),
            object: "Agent/claude",
            field: "spec.defaultContexts[1].file.filePath",
            message: "also the path of spec.defaultContexts[0]",
        },
        Rejected {
            name: "Task file inside an Agent directory",
            contexts: json!([inline("/workspace/configs/x.md", "x")]),
            agent: Some(json!({"defaultContexts": [dir_ref("/workspace/configs", "c")]})),
            object: "Task/fix-bug",
            field: "spec.contexts[0].file.filePath",
            message: "Agent/claude spec.defaultContexts[0]",
        },
        agent_spec(
            json!({"credentials": [credential(json!({}))]}),
            "spec.credentials[0]",
            "set env, mountPath or both",
            "credential without target",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"name": "", "env": "A"}))]}),
            "spec.credentials[0].name",
            "empty",
            "credential without name",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"env": "A"})), credential(json!({"env": "B"}))]}),
            "spec.credentials[1].name",
            "also the name of spec.credentials[0]",
            "duplicate credential name",
        ),
        agent_spec(
            json!({"credentials": [{"name": "c", "secretRef": {"name": "", "key": "k"}, "env": "A"}]}),
            "spec.credentials[0].secretRef.name",
            "empty",
            "empty Secret name",
        ),
        agent_spec(
            json!({"credentials": [{"name": "c", "secretRef": {"name": "s", "key": ""}, "env": "A"}]}),
            "spec.credentials[0].secretRef.key",
            "empty",
            "empty Secret key",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"env": "TASK_NAME"}))]}),
            "spec.credentials[0].env",
            "set by KubeTask",
            "reserved env",
        ),
        agent_spec(
            json!({"toolsImage": "tools:v1", "credentials": [credential(json!({"env": "PATH"}))]}),
            "spec.credentials[0].env",
            "set by KubeTask",
            "PATH with a tools image",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"env": "A=B"}))]}),
            "spec.credentials[0].env",
            "other than '='",
            "bad env name",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"name": "a", "env": "X"})), credential(json!({"name": "b", "env": "X"}))]}),
            "spec.credentials[1].env",
            "already set",
            "duplicate env",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"mountPath": "home/key"}))]}),
            "spec.credentials[0].mountPath",
            "absolute",
            "relative mountPath",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"mountPath": "/key", "fileMode": 1000}))]}),
            "spec.credentials[0].fileMode",
            "not a file mode",
            "fileMode out of range",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"env": "A", "fileMode": 256}))]}),
            "spec.credentials[0].fileMode",
            "needs mountPath",
            "fileMode without mountPath",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"mountPath": "/workspace/task.md"}))]}),
            "spec.credentials[0].mountPath",
            "collides with the context at /workspace/task.md",
            "credential over a context",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"mountPath": "/workspace"}))]}),
            "spec.credentials[0].mountPath",
            "hide the workspace",
            "credential over the workspace",
        ),
        agent_spec(
            json!({"credentials": [credential(json!({"name": "a", "mountPath": "/etc/k"})), credential(json!({"name": "b", "mountPath": "/etc/k"}))]}),
            "spec.credentials[1].mountPath",
            "file of spec.credentials[0]",
            "two credentials at one path",
        ),
        agent_spec(
            json!({"podLabels": {"bad key!": "x"}}),
            "spec.podLabels[bad key!]",
            "label key",
            "bad label key",
        ),
        agent_spec(
            json!({"podLabels": {"tier": "-bad"}}),
            "spec.podLabels[tier]",
            "label value",
            "bad label value",
        ),
        agent_spec(
            json!({"agentImage": ""}),
            "spec.agentImage",
            "empty",
            "empty agent image",
        ),
        agent_spec(
            json!({"toolsImage": "tools v1"}),
            "spec.toolsImage",
            "whitespace",
            "bad tools image",
        ),
        agent_spec(
            json!({"serviceAccountName": ""}),
            "spec.serviceAccountName",
            "empty",
            "empty ServiceAccount",
        ),
    ]
}

#[test]
fn invalid_inputs_are_rejected_with_the_field_named() {
    for case in rejected_cases() {
        let task = task(case.contexts.clone());
        let agent = case.agent.clone().map(agent);
        match render(&task, agent.as_ref(), &settings()) {
            Err(RenderError::Invalid {
                object,
                field,
                message,
            }) => {
                assert_eq!(
                    (object.as_str(), field.as_str()),
                    (case.object, case.field),
                    "{}: {message}",
                    case.name
                );
                assert!(
                    message.contains(case.message),
                    "{}: {message:?} lacks {:?}",
                    case.name,
                    case.message
                );
            }
            other => panic!("{}: expected Invalid, got {other:?}", case.name),
        }
    }
}

#[test]
fn missing_identity_is_rejected() {
    let mut nameless = task(json!([]));
    nameless.metadata.name = None;
    assert!(
        matches!(render(&nameless, None, &settings()), Err(RenderError::Invalid { field, .. }) if field == "metadata.name")
    );
    let mut homeless = task(json!([]));
    homeless.metadata.namespace = None;
    assert!(
        matches!(render(&homeless, None, &settings()), Err(RenderError::Invalid { field, .. }) if field == "metadata.namespace")
    );
}

#[test]
fn malformed_json_names_the_field() {
    let mut bad_type = task_json(json!([inline("/workspace/a", "x")]));
    bad_type["spec"]["contexts"][0]["type"] = json!("Directory");
    let cases = [
        (
            bad_type.to_string(),
            "spec.contexts[0].type",
            "unknown variant",
        ),
        (
            json!({"metadata": {"name": "t"}, "spec": {}}).to_string(),
            "spec",
            "missing field `contexts`",
        ),
        ("not json".to_owned(), "", "expected"),
    ];
    for (json, field, message) in cases {
        match render_json(&json, None, &settings()) {
            Err(RenderError::Invalid {
                object,
                field: actual,
                message: actual_message,
            }) => {
                assert_eq!(
                    (object.as_str(), actual.as_str()),
                    ("Task", field),
                    "{actual_message}"
                );
                assert!(
                    actual_message.contains(message),
                    "{actual_message:?} lacks {message:?}"
                );
            }
            other => panic!("expected Invalid for {json}, got {other:?}"),
        }
    }
}
