//! The Job rendered for each example Agent (`examples/agents/`), run as the kubelet would run
//! it with our agent image: the image's entrypoint and environment read from its Dockerfile
//! (`agents/Dockerfile`, built with `--build-arg CLI=<cli>`), the container's env (Secrets as placeholder values), its
//! ConfigMap mounts written as files, its working directory; the CLI itself a fake replaying a
//! recorded success. The termination message then goes through the controller's own code that
//! fills `status.result` and `status.usage` (`kubetask::controller::pod_attempts::report`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kubetask::cli::files as inputs;
use kubetask::cli::render::{self as offline, Extra};
use kubetask::plugin::{Limits, PluginHost};
use kubetask::render::{Pipeline, Settings};
use serde_json::{Value, json};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// What the agent Dockerfile sets in its last stage when built with `--build-arg CLI=cli`:
/// environment and entrypoint.
struct Image {
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
}

fn image(dockerfile: &Path, cli: &str) -> Image {
    let text = std::fs::read_to_string(dockerfile).unwrap();
    let joined = text.replace("\\\n", " ");
    let last_stage = joined.rsplit("\nFROM ").next().unwrap();
    assert!(
        last_stage.contains(&format!(" {cli}) package=")),
        "{cli}: the Dockerfile installs no such CLI"
    );
    let last_stage = last_stage.replace("${CLI}", cli);
    let mut env = BTreeMap::new();
    let mut entrypoint = Vec::new();
    for line in last_stage.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (name, value) = pair.split_once('=').unwrap();
                env.insert(name.to_owned(), value.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = serde_json::from_str(rest).unwrap();
        }
    }
    Image { env, entrypoint }
}

fn render(files: &[PathBuf]) -> Vec<Value> {
    let (inputs, errors) = inputs::load(files);
    assert!(errors.is_empty(), "{errors:?}");
    let host = Arc::new(PluginHost::new(Limits::default()).unwrap());
    let pipeline = Pipeline::new(host.clone(), Settings::default()).unwrap();
    offline::render_all(
        &pipeline,
        &host,
        &inputs,
        &Extra::default(),
        "kubetask-system",
    )
    .unwrap()
    .objects
}

/// Writes what the container's volume mounts hold under `root`: empty directories, and the
/// rendered ConfigMaps' keys (one by `subPath`, or all of them).
fn materialize(objects: &[Value], pod: &Value, container: &Value, root: &Path) {
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let target = local(root, mount["mountPath"].as_str().unwrap());
        let volume = volumes[mount["name"].as_str().unwrap()];
        let Some(map_name) = volume.pointer("/configMap/name").and_then(Value::as_str) else {
            std::fs::create_dir_all(&target).unwrap();
            continue;
        };
        let map = objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == map_name)
            .unwrap_or_else(|| panic!("ConfigMap {map_name} is not rendered"));
        let data = map["data"].as_object().unwrap();
        match mount.get("subPath").and_then(Value::as_str) {
            Some(key) => {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, data[key].as_str().unwrap()).unwrap();
            }
            None => {
                std::fs::create_dir_all(&target).unwrap();
                for (key, value) in data {
                    std::fs::write(target.join(key), value.as_str().unwrap()).unwrap();
                }
            }
        }
    }
}

/// A fake `binary` in `root/bin` that records its arguments and `key_env`, then replays the
/// recorded success of `cli`; returns the directory.
fn fake_cli(root: &Path, cli: &str, binary: &str, key_env: &str) -> PathBuf {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{cli}/success.jsonl"));
    let fake = bin.join(binary);
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"{}\"\nprintf '%s' \"${key_env}\" > \"{}\"\ncat \"{}\"\n",
            root.join("args").display(),
            root.join("key").display(),
            fixture.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&fake).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&fake, permissions).unwrap();
    bin
}

/// The container's env as the kubelet sets it (Secrets as `secret:<key>`).
fn container_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| {
            let value = match variable.get("value") {
                Some(value) => value.as_str().unwrap().to_owned(),
                None => format!(
                    "secret:{}",
                    variable["valueFrom"]["secretKeyRef"]["key"]
                        .as_str()
                        .unwrap()
                ),
            };
            (variable["name"].as_str().unwrap().to_owned(), value)
        })
        .collect()
}

/// The report the agent container left, read by the controller's own code.
fn reported(
    cli: &str,
    image: &str,
    message: String,
) -> (kubetask::api::TaskResult, Option<kubetask::api::Usage>) {
    assert!(message.len() <= 4096);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{cli}-pod")},
        "status": {"phase": "Succeeded", "containerStatuses": [{
            "name": "agent", "image": image, "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                "message": message, "finishedAt": "2026-12-05T02:00:00Z"}},
        }]},
    }))
    .unwrap();
    kubetask::controller::pod_attempts::report(&[pod])
        .unwrap_or_else(|e| panic!("{cli}: {e}"))
        .unwrap_or_else(|| panic!("{cli}: no report"))
}

/// `/workspace/...` in the pod, under `root` here.
fn local(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[test]
fn each_example_agents_job_runs_the_runner_and_reports_to_the_task() {
    for (cli, binary, key_env) in [
        ("claude-code", "claude", "ANTHROPIC_API_KEY"),
        ("gemini", "gemini", "GEMINI_API_KEY"),
        ("codex", "codex", "CODEX_API_KEY"),
        ("opencode", "opencode", "ANTHROPIC_API_KEY"),
    ] {
        let objects = render(&[Path::new(REPO).join(format!("examples/agents/{cli}.yaml"))]);
        let job = objects.iter().find(|o| o["kind"] == "Job").unwrap();
        let pod = &job["spec"]["template"]["spec"];
        let container = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "agent")
            .unwrap();
        let image_ref = container["image"].as_str().unwrap();
        let name = image_ref
            .strip_prefix("ghcr.io/kubetask/agent-")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("{cli}: not one of our agent images: {image_ref}"));
        assert_eq!(name, cli);
        let image = image(&Path::new(REPO).join("agents/Dockerfile"), name);
        assert_eq!(image.entrypoint, ["/usr/local/bin/kubetask-agent"], "{cli}");
        assert!(
            container.get("command").is_none(),
            "{cli}: the entrypoint runs"
        );
        assert_eq!(image.env["KUBETASK_AGENT_CLI"], cli);

        // The pod's filesystem: the workspace and the contexts' ConfigMap mounts.
        let root = tempfile::tempdir().unwrap();
        materialize(&objects, pod, container, root.path());
        // The CLI the image installs: a fake replaying a recorded success.
        let bin = fake_cli(root.path(), cli, binary, key_env);
        // The working directory: the workspace's checkout when the Task has a repository (the
        // clone step's script runs for real in tests/integration/workspace.rs; here its
        // checkout is an empty directory), else the workspace.
        let workdir = local(root.path(), container["workingDir"].as_str().unwrap());
        std::fs::create_dir_all(&workdir).unwrap();
        let workspace = local(root.path(), "/workspace");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"));
        command.env_clear().current_dir(&workdir).env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        for (name, value) in &image.env {
            command.env(name, value);
        }
        command.env("HOME", root.path());
        for (name, value) in container_env(container) {
            command.env(name, value);
        }
        // What the pod has at /workspace and /dev/termination-log, here.
        let report_path = root.path().join("termination-log");
        command
            .env("KUBETASK_WORKSPACE", &workspace)
            .env("KUBETASK_REPORT_PATH", &report_path);
        if container_env(container)
            .iter()
            .any(|(name, _)| name == "KUBETASK_WORKDIR")
        {
            command.env("KUBETASK_WORKDIR", &workdir);
        }
        let output = command.output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{cli}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let args = std::fs::read_to_string(root.path().join("args")).unwrap();
        assert!(
            args.contains("Update dependencies to latest versions.\nRun tests and create PR."),
            "{cli}: the Task's context reached the CLI: {args:?}"
        );
        assert!(
            std::fs::read_to_string(root.path().join("key"))
                .unwrap()
                .starts_with("secret:"),
            "{cli}: the credential reached the CLI"
        );

        // The kubelet's view: the agent container terminated with the file as its message.
        let (result, usage) = reported(
            cli,
            image_ref,
            std::fs::read_to_string(&report_path).unwrap(),
        );
        assert!(
            result.summary.starts_with("Updated 12 dependencies"),
            "{cli}: {}",
            result.summary
        );
        assert_eq!(
            result.outputs.get("pr").map(String::as_str),
            Some("https://github.com/acme/service-a/pull/42"),
            "{cli}"
        );
        assert!(
            usage.is_some_and(|u| u.input_tokens.unwrap_or(0) > 0),
            "{cli}"
        );
    }
}

/// A team's own image with only the CLI in it, run by the agent-runner example plugin
/// (`plugins/examples/agent-runner`, installed from its packed manifest): the init container
/// (our runner image, whose entrypoint is `/kubetask-agent`) copies the runner into the shared
/// volume, and the agent container runs that copy.
#[test]
fn the_agent_runner_plugin_puts_the_runner_into_any_image() {
    let plugin = Path::new(REPO).join("plugins/examples/agent-runner");
    let objects = render(&[
        plugin.join("sample-task.yaml"),
        plugin.join("configmap.yaml"),
    ]);
    let job = objects.iter().find(|o| o["kind"] == "Job").unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let root = tempfile::tempdir().unwrap();

    // The init container: our runner image, run as its entrypoint with the container's args.
    let init = &pod["initContainers"][0];
    assert!(
        init["image"]
            .as_str()
            .unwrap()
            .starts_with("ghcr.io/kubetask/kubetask-agent:"),
        "{init}"
    );
    materialize(&objects, pod, init, root.path());
    let args: Vec<String> = init["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args[0], "--install");
    let installed_dir = local(root.path(), &args[1]);
    let status = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"))
        .args(["--install", installed_dir.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());

    // The agent container: the team's image (its CLI a fake), running the copied runner.
    let container = &pod["containers"][0];
    materialize(&objects, pod, container, root.path());
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(command, ["/kubetask/kubetask-agent"]);
    let bin = fake_cli(root.path(), "claude-code", "claude", "ANTHROPIC_API_KEY");
    let workspace = local(root.path(), container["workingDir"].as_str().unwrap());
    let report_path = root.path().join("termination-log");
    let output = Command::new(local(root.path(), command[0]))
        .env_clear()
        .current_dir(&workspace)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("HOME", root.path())
        .envs(container_env(container))
        .env("KUBETASK_WORKSPACE", &workspace)
        .env("KUBETASK_REPORT_PATH", &report_path)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let args = std::fs::read_to_string(root.path().join("args")).unwrap();
    assert!(
        args.contains("--max-turns\u{0}40\u{0}"),
        "the Agent's args reached the CLI: {args:?}"
    );
    assert!(args.contains("Run tests and create PR."), "{args:?}");
    let (result, usage) = reported(
        "agent-runner",
        container["image"].as_str().unwrap(),
        std::fs::read_to_string(&report_path).unwrap(),
    );
    assert!(
        result.summary.starts_with("Updated 12 dependencies"),
        "{}",
        result.summary
    );
    assert_eq!(usage.and_then(|u| u.cost).as_deref(), Some("0.4213"));
}
