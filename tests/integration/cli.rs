//! `kubetask render` and `kubetask crds` as a user runs them.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::kubetask;

fn render_json(args: &[&str]) -> Vec<Value> {
    let mut full = vec!["render", "-o", "json"];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = kubetask(&full);
    assert_eq!(code, 0, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(
        (list["apiVersion"].as_str(), list["kind"].as_str()),
        (Some("v1"), Some("List"))
    );
    list["items"].as_array().cloned().unwrap_or_default()
}

fn kinds(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["kind"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn simple_example_renders_a_config_map_then_a_job_as_yaml() {
    let (code, stdout, stderr) =
        kubetask(&["render", "-f", "examples/simple-task.yaml", "-o", "yaml"]);
    assert_eq!(code, 0, "{stderr}");
    let documents: Vec<Value> = stdout
        .split("---\n")
        .filter(|document| !document.trim().is_empty())
        .map(|document| serde_yaml::from_str(document).expect("YAML document"))
        .collect();
    assert_eq!(
        kinds(&documents),
        [
            "ConfigMap/update-service-a-contexts",
            "Job/update-service-a"
        ]
    );
    let container = &documents[1]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"], "quay.io/myorg/claude-agent:v1.0",
        "the default Agent of the file is used"
    );
}

#[test]
fn multi_context_example_uses_its_agent() {
    let items = render_json(&[
        "-f",
        "examples/multi-context-task.yaml",
        "-f",
        "examples/agent-claude-workspace.yaml",
    ]);
    assert_eq!(
        kinds(&items),
        ["ConfigMap/complex-task-contexts", "Job/complex-task"]
    );
    let pod = &items[1]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "kubetask-agent");
    assert_eq!(pod["tolerations"][0]["value"], "ai-workload");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let secret = volumes
        .iter()
        .find(|volume| volume["secret"].is_object())
        .expect("the ssh key volume");
    assert_eq!(
        secret["secret"]["items"][0]["mode"], 0o400,
        "fileMode 0400 is octal, as kubectl reads it"
    );
}

#[test]
fn a_directory_and_the_helm_batch_render_every_task() {
    let items = render_json(&["-f", "examples/", "-f", "examples/helm-batch/rendered.yaml"]);
    let jobs: Vec<String> = kinds(&items)
        .into_iter()
        .filter(|kind| kind.starts_with("Job/") && !kind.starts_with("Job/nightly-"))
        .collect();
    // The CronTask's next run: a Task and its Job, named by its scheduled minute.
    let nightly: Vec<String> = kinds(&items)
        .into_iter()
        .filter(|kind| kind.contains("/nightly-dependencies-"))
        .collect();
    assert_eq!(nightly.len(), 3, "{nightly:?}");
    assert_eq!(
        jobs,
        [
            "Job/fix-bug",
            "Job/triage-issues",
            "Job/complex-task",
            "Job/update-service-a",
            "Job/fix-flaky-test",
            "Job/update-service-a",
            "Job/update-service-b",
            "Job/update-service-c"
        ]
        .map(str::to_owned)
    );
    let batch = items
        .iter()
        .filter(|item| item["metadata"]["namespace"] == "default")
        .count();
    assert_eq!(batch, 6, "Tasks without a namespace render in `default`");
}

#[test]
fn helm_rendered_example_matches_the_chart_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/helm-batch");
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("values.yaml")).expect("values"))
            .expect("YAML");
    let rendered = std::fs::read_to_string(root.join("rendered.yaml")).expect("rendered");
    for task in values["tasks"].as_array().expect("tasks") {
        let (name, repo) = (
            task["name"].as_str().expect("name"),
            task["repo"].as_str().expect("repo"),
        );
        assert!(rendered.contains(&format!("name: {name}\n")), "{name}");
        assert!(
            rendered.contains(&format!("Update dependencies for {repo}")),
            "{repo}"
        );
    }
}

#[test]
fn a_missing_explicit_agent_is_an_error_naming_file_object_and_field() {
    let (code, stdout, stderr) = kubetask(&["render", "-f", "examples/multi-context-task.yaml"]);
    assert_eq!(code, 1);
    assert!(
        stdout.is_empty(),
        "nothing is printed when a Task fails: {stdout}"
    );
    assert!(
        stderr.contains("examples/multi-context-task.yaml: Task/complex-task: spec.agentRef: Agent \"claude-workspace\" does not exist"),
        "{stderr}"
    );
}

/// A CronTask renders as the Task it creates at its next tick (in its time zone), then the
/// Task's ConfigMap and Job; a schedule or time zone that cannot be read is an error naming
/// the field.
#[test]
fn a_cron_task_renders_as_its_next_task_and_job() {
    let before = jiff::Timestamp::now();
    let items = render_json(&["-f", "examples/nightly-dependencies.yaml"]);
    let kinds = kinds(&items);
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(
        kinds[0].starts_with("Task/nightly-dependencies-"),
        "{kinds:?}"
    );
    assert!(
        kinds[2].starts_with("Job/nightly-dependencies-"),
        "{kinds:?}"
    );
    let task = &items[0];
    let scheduled: jiff::Timestamp = task["metadata"]["annotations"]["kubetask.io/scheduled-time"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a scheduled time");
    assert!(scheduled > before);
    assert!(scheduled <= before + jiff::SignedDuration::from_hours(25));
    // 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer.
    let utc = scheduled.to_zoned(jiff::tz::TimeZone::UTC);
    assert!(
        matches!(utc.hour(), 0 | 1) && utc.minute() == 0,
        "{scheduled}"
    );
    assert_eq!(
        task["metadata"]["name"],
        format!("nightly-dependencies-{}", scheduled.as_second() / 60)
    );
    assert_eq!(task["metadata"]["ownerReferences"][0]["kind"], "CronTask");
    assert_eq!(task["spec"]["timeout"], "2h");
    assert_eq!(
        items[2]["metadata"]["annotations"]["kubetask.io/timeout-seconds"],
        "7200"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    for (schedule, zone, expected) in [
        (
            "61 2 * * *",
            "UTC",
            "bad.yaml: CronTask/c: spec.schedule: \"61 2 * * *\" is not a cron expression",
        ),
        (
            "0 2 * * *",
            "Mars/Olympus",
            "bad.yaml: CronTask/c: spec.timeZone: \"Mars/Olympus\" is not a time zone",
        ),
        (
            "0 2 * *",
            "UTC",
            "bad.yaml: CronTask/c: spec.schedule: Invalid value: \"0 2 * *\"",
        ),
    ] {
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            format!("apiVersion: kubetask.io/v1alpha1\nkind: CronTask\nmetadata: {{name: c}}\nspec:\n  schedule: '{schedule}'\n  timeZone: {zone}\n  taskTemplate: {{spec: {{contexts: []}}}}\n"),
        )
        .expect("write");
        let (code, _, stderr) = kubetask(&["render", "-f", file.to_str().expect("UTF-8")]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr:?}"
        );
    }
}

#[test]
fn invalid_input_errors_name_file_object_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n  contexts:\n  - type: File\n    file: {filePath: relative.md, source: {inline: x}}\n",
            "bad.yaml: Task/t: spec.contexts[0].file.filePath: Invalid value: \"string\": must be an absolute path without '..' segments",
        ),
        (
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n  contexts:\n  - type: File\n    file: {filePath: \"/workspace/a\\0b\", source: {inline: x}}\n",
            "bad.yaml: Task/t: spec.contexts[0].file.filePath: Invalid value: \"/workspace/a\\x00b\": spec.contexts[0].file.filePath in body should match",
        ),
        (
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n  contexts:\n  - type: Folder\n",
            "bad.yaml: Task/t: spec.contexts[0].type: Unsupported value: \"Folder\": supported values: \"File\"",
        ),
        (
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec: {contexts: []}\n---\napiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: default}\nspec:\n  serviceAccountName: sa\n  credentials:\n  - {name: c, secretRef: {name: s, key: k}}\n",
            "bad.yaml: Agent/default: spec.credentials[0].env: Required value: set env, mountPath or both",
        ),
        (
            "apiVersion: v1\nkind: [broken\n",
            "bad.yaml: document 1: not valid YAML",
        ),
    ];
    for (yaml, expected) in cases {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, yaml).expect("write");
        let path = file.to_str().expect("UTF-8 path");
        let (code, stdout, stderr) = kubetask(&["render", "-f", path]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr:?}"
        );
    }
    let (code, _, stderr) = kubetask(&["render", "-f", "does/not/exist.yaml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("does/not/exist.yaml: cannot read"),
        "{stderr}"
    );
}

#[test]
fn overridden_default_contexts_are_reported_as_warnings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("override.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: default}\nspec:\n  serviceAccountName: sa\n  defaultContexts:\n  - {type: File, file: {filePath: /workspace/task.md, source: {inline: default}}}\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {name: t}\nspec:\n  contexts:\n  - {type: File, file: {filePath: /workspace/task.md, source: {inline: mine}}}\n",
    )
    .expect("write");
    let (code, _, stderr) = kubetask(&["render", "-f", file.to_str().expect("UTF-8")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("spec.contexts[0] overrides Agent/default spec.defaultContexts[0]"),
        "{stderr}"
    );
}

#[test]
fn crds_command_prints_the_committed_crds() {
    let (code, stdout, stderr) = kubetask(&["crds"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, include_str!("../../manifests/crds/crds.yaml"));
}

#[test]
fn the_readme_shows_the_current_rendering() {
    let (code, stdout, stderr) = kubetask(&["render", "-f", "examples/simple-task.yaml"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        include_str!("../../README.md").contains(&stdout),
        "README.md's rendered example is stale: paste the output of `kubetask render -f examples/simple-task.yaml`"
    );
}

#[test]
fn render_chooses_installed_plugins_from_packed_manifests_as_the_controller_does() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let agent = dir.path().join("agent.yaml");
    std::fs::write(
        &agent,
        "apiVersion: kubetask.io/v1alpha1\nkind: Agent\nmetadata: {name: default, namespace: team-a}\nspec: {serviceAccountName: default, plugins: [git-clone]}\n---\napiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: t\n  namespace: team-a\n  labels: {kubetask.io/team: a}\n  annotations: {git.kubetask.io/repository: 'https://github.com/acme/api.git'}\nspec:\n  contexts:\n  - {type: File, file: {filePath: /workspace/task.md, source: {inline: x}}}\n",
    )
    .unwrap();
    let agent = agent.to_str().unwrap();
    // The Agent names git-clone, which is not among the inputs.
    let (code, _, stderr) = kubetask(&["render", "-f", agent]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Agent/default: spec.plugins: plugin \"git-clone\" is not installed"),
        "{stderr}"
    );
    let (code, stdout, stderr) = kubetask(&[
        "render",
        "-f",
        agent,
        "-f",
        "plugins/examples/git-clone/configmap.yaml",
        "-f",
        "plugins/examples/restricted-policy/configmap.yaml",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("name: git-clone"), "the render plugin ran");
    assert!(stdout.contains("runAsNonRoot: true"), "the policy ran");
    assert_eq!(
        stderr.matches("warning").count(),
        0,
        "no warnings expected: {stderr}"
    );
    // A plugin manifest outside the controller's namespace is not installed there.
    let (code, _, stderr) = kubetask(&[
        "render",
        "-f",
        agent,
        "-f",
        "plugins/examples/git-clone/configmap.yaml",
        "--controller-namespace",
        "elsewhere",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not in the controller's namespace"),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    use std::io::Read as _;
    for args in [
        &["crds"][..],
        &["render", "-f", "examples/"][..],
        &[
            "plugin",
            "pack",
            "plugins/examples/git-clone/git_clone.wasm",
            "--name",
            "g",
        ][..],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubetask"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KUBETASK_PLUGIN_CACHE_DIR", support::plugin_cache_dir())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubetask runs");
        let mut first = [0u8; 3];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("some output");
        // The read end is closed here (like `| head -c 3`).
        let output = child.wait_with_output().expect("exits");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_controller_concurrency_of_zero_is_refused_before_anything_starts() {
    let (code, stdout, stderr) = kubetask(&["controller", "--concurrency", "0"]);
    assert_eq!(code, 2, "a usage error: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("--concurrency") && stderr.contains("0 is not in 1.."),
        "{stderr}"
    );
}

#[test]
fn the_seeds_first_example_renders_in_the_controller_namespace() {
    let items = render_json(&["-f", "examples/seed/simple-task.yaml"]);
    assert_eq!(
        kinds(&items),
        [
            "ConfigMap/update-service-a-contexts",
            "Job/update-service-a"
        ]
        .map(str::to_owned)
    );
    for item in &items {
        assert_eq!(item["metadata"]["namespace"], "kubetask-system");
    }
    let pod = &items[1]["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "quay.io/myorg/claude-agent:v1.0"
    );
    assert_eq!(pod["serviceAccountName"], "kubetask-agent");
}

/// `kubetask render --egress` renders what a controller with egress on creates: the proxy
/// Secret, the pod's default-deny NetworkPolicy (golden: `tests/integration/golden/`,
/// rewritten with `UPDATE_GOLDEN=1`), then the ConfigMap and the Job, whose agent takes its
/// proxy from the Secret.
#[test]
fn egress_renders_the_pods_default_deny_network_policy() {
    let items = render_json(&["--egress", "-f", "examples/egress-allowlist.yaml"]);
    let kinds = kinds(&items);
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(
        kinds[0].starts_with("Secret/triage-issues-egress-"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds[1..],
        [
            "NetworkPolicy/triage-issues-egress",
            "ConfigMap/triage-issues-contexts",
            "Job/triage-issues"
        ]
        .map(str::to_owned)
    );
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/integration/golden/egress-allowlist.networkpolicy.yaml");
    let policy = &items[1];
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, serde_yaml::to_string(policy).unwrap()).unwrap();
    }
    let expected: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&golden).expect("the golden file")).unwrap();
    assert_eq!(
        policy, &expected,
        "the rendered NetworkPolicy changed; if on purpose, run with UPDATE_GOLDEN=1"
    );
    let env = &items[3]["spec"]["template"]["spec"]["containers"][0]["env"];
    let proxy = env
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "HTTPS_PROXY")
        .expect("HTTPS_PROXY");
    assert_eq!(
        proxy["valueFrom"]["secretKeyRef"]["name"],
        items[0]["metadata"]["name"]
    );
}

/// A network plugin run as a cluster policy replaces the built-in NetworkPolicy: the Cilium
/// example (its committed ConfigMap is what `plugin pack` prints) renders a
/// CiliumNetworkPolicy naming the Task's domains, confined to the Task like any policy.
#[test]
fn the_cilium_example_replaces_the_network_policy_with_its_own() {
    let wasm = "plugins/examples/cilium-egress/cilium_egress.wasm";
    let (code, packed, stderr) = kubetask(&[
        "plugin",
        "pack",
        "--name",
        "cilium-egress",
        "--policy",
        "50",
        wasm,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/examples/cilium-egress/configmap.yaml"),
    )
    .unwrap();
    assert_eq!(
        packed, committed,
        "repack plugins/examples/cilium-egress/configmap.yaml"
    );
    let items = render_json(&[
        "--egress",
        "--policy",
        wasm,
        "-f",
        "examples/egress-allowlist.yaml",
    ]);
    let kinds = kinds(&items);
    assert_eq!(
        kinds[1], "CiliumNetworkPolicy/triage-issues-egress",
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k.starts_with("NetworkPolicy/")),
        "{kinds:?}"
    );
    let policy = &items[1];
    assert_eq!(policy["apiVersion"], "cilium.io/v2");
    assert_eq!(policy["metadata"]["namespace"], "team-a");
    assert_eq!(
        policy["metadata"]["ownerReferences"][0]["name"],
        "triage-issues"
    );
    assert_eq!(
        policy["spec"]["egress"][2]["toFQDNs"],
        serde_json::json!([{"matchName": "api.github.com"}])
    );
}

/// `kubetask trigger event`: the Task the example TaskTrigger makes of GitHub's documented
/// `issues.opened` payload, offline; a skip says why and exits 2; `render` passes the trigger
/// by.
#[test]
fn trigger_event_shows_the_task_an_event_makes_offline() {
    let args = [
        "trigger",
        "event",
        "-f",
        "examples/github-issues-trigger.yaml",
        "--event",
        "issues",
        "--file",
        "tests/fixtures/github/issues-opened.json",
    ];
    let (code, stdout, stderr) = kubetask(&args);
    assert_eq!(code, 0, "{stderr}");
    let task: kubetask::api::Task = serde_yaml::from_str(&stdout).expect("a Task");
    assert!(
        task.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("service-a-issues-")),
        "{stdout}"
    );
    let event = task.spec.contexts[1]
        .file
        .clone()
        .expect("the event's file");
    assert_eq!(event.file_path.as_deref(), Some("/workspace/event.md"));
    assert!(
        event
            .source
            .inline
            .unwrap_or_default()
            .contains("UNTRUSTED")
    );
    let (code, stdout, _) = kubetask(&[
        "trigger",
        "event",
        "-f",
        "examples/github-issues-trigger.yaml",
        "--event",
        "issues",
        "--file",
        "tests/fixtures/github/issue-comment-created.json",
    ]);
    assert_eq!(code, 2, "a comment's payload read as `issues`: {stdout}");
    assert!(
        stdout.starts_with("skipped: Filtered: action \"created\""),
        "{stdout}"
    );
    let (code, _, stderr) = kubetask(&[
        "trigger",
        "event",
        "-f",
        "examples/github-issues-trigger.yaml",
        "--event",
        "issue_comment",
        "--file",
        "tests/fixtures/github/issue-comment-created.json",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is not one of spec.source.github.events"),
        "{stderr}"
    );
    // GitLab: the actor's role is GitLab's to say (the receiver asks its API); offline, the flag.
    let gitlab = [
        "trigger",
        "event",
        "-f",
        "examples/gitlab-issues-trigger.yaml",
        "--event",
        "Issue Hook",
        "--file",
        "tests/fixtures/gitlab/issue-open.json",
    ];
    let (code, stdout, _) = kubetask(&gitlab);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.starts_with("skipped: AuthorNotAllowed"), "{stdout}");
    let (code, stdout, stderr) =
        kubetask(&[&gitlab[..], &["--actor-association", "MEMBER"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("kubetask.io/trigger-issue: gitlabhq/gitlab-test#23"),
        "{stdout}"
    );
    // `checkout: PullRequest`: a comment's pull request branch is GitHub's to say (the receiver
    // asks its API); offline, the flag.
    let pull_request = [
        "trigger",
        "event",
        "-f",
        "examples/github-pull-request-trigger.yaml",
        "--event",
        "issue_comment",
        "--file",
        "tests/fixtures/github/issue-comment-created.json",
    ];
    let (code, stdout, _) = kubetask(&pull_request);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.starts_with("skipped: PullRequestUnknown"),
        "{stdout}"
    );
    let (code, stdout, stderr) =
        kubetask(&[&pull_request[..], &["--pull-request-branch", "fix-test"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let task: kubetask::api::Task = serde_yaml::from_str(&stdout).expect("a Task");
    let workspace = task.spec.workspace.expect("the template's workspace");
    assert_eq!(
        (
            workspace.repository.as_deref(),
            workspace.git_ref.as_deref()
        ),
        (
            Some("https://github.com/myorg/service-a.git"),
            Some("fix-test")
        )
    );
    // A mapper plugin decides offline as it would in the receiver.
    let mut wontfix: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/github/issues-opened.json").unwrap(),
    )
    .unwrap();
    wontfix["issue"]["labels"] = serde_json::json!([{"name": "kubetask"}, {"name": "wontfix"}]);
    let payload =
        std::env::temp_dir().join(format!("kubetask-wontfix-{}.json", std::process::id()));
    std::fs::write(&payload, wontfix.to_string()).unwrap();
    let with_mapper = |file: &str| {
        kubetask(&[
            "trigger",
            "event",
            "-f",
            "examples/github-issues-trigger.yaml",
            "--event",
            "issues",
            "--file",
            file,
            "--mapper",
            "plugins/examples/label-router/label_router.wasm",
        ])
    };
    let (code, stdout, stderr) = with_mapper("tests/fixtures/github/issues-opened.json");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("agentRef: claude-code"), "{stdout}");
    let (code, stdout, _) = with_mapper(payload.to_str().unwrap());
    let _ = std::fs::remove_file(&payload);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.starts_with("skipped: WontFix"), "{stdout}");
    // A generic webhook's payload needs no --event.
    let alert = std::env::temp_dir().join(format!("kubetask-alert-{}.json", std::process::id()));
    std::fs::write(
        &alert,
        r#"{"alert":{"fingerprint":"fp-1","summary":"disk full"}}"#,
    )
    .unwrap();
    let (code, stdout, stderr) = kubetask(&[
        "trigger",
        "event",
        "-f",
        "examples/alert-webhook-trigger.yaml",
        "--file",
        alert.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&alert);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("disk full"), "{stdout}");
    let (code, _, stderr) = kubetask(&[
        "render",
        "-f",
        "examples/github-issues-trigger.yaml",
        "-f",
        "examples/agents/claude-code.yaml",
    ]);
    assert_eq!(code, 0, "render passes a TaskTrigger by: {stderr}");
}
