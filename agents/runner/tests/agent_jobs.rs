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
        .into_iter()
        .flatten()
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
        // The handoff to the publish step, when the workspace publishes (its own test below).
        if let Some((_, dir)) = container_env(container)
            .into_iter()
            .find(|(name, _)| name == "KUBETASK_HANDOFF_DIR")
        {
            command.env("KUBETASK_HANDOFF_DIR", local(root.path(), &dir));
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

/// `text` with the pod's paths (`/workspace…`, `/var/run/kubetask…`, `/dev/termination-log`)
/// moved under `root`, as the kubelet's mounts put them there.
fn localize(root: &Path, text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    let prefixes = ["/workspace", "/var/run/kubetask", "/dev/termination-log"];
    'scan: while !rest.is_empty() {
        for prefix in prefixes {
            if let Some(after) = rest.strip_prefix(prefix) {
                let ends = after
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
                let starts = out
                    .chars()
                    .last()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '/' || c == '.'));
                if ends && starts {
                    out.push_str(&local(root, prefix).display().to_string());
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Runs a container of the rendered pod as the kubelet would: its command (or, with none,
/// `entrypoint`), its env, its working directory, the pod's paths under `root`, `path` first
/// on `PATH`; `rewrite` changes what the test server stands in for (the repository's and the
/// API's addresses). Returns the child.
fn start(
    container: &Value,
    root: &Path,
    path: &Path,
    entrypoint: &[String],
    extra_env: &[(String, PathBuf)],
    rewrite: &dyn Fn(String) -> String,
) -> std::process::Child {
    let mut argv: Vec<String> = match container["command"].as_array() {
        Some(command) => command
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        None => entrypoint.to_vec(),
    };
    argv.extend(
        container["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| rewrite(localize(root, &a)))
        .collect();
    let program = match argv[0].as_str() {
        "kubetask-agent" | "/usr/local/bin/kubetask-agent" => {
            env!("CARGO_BIN_EXE_kubetask-agent").to_owned()
        }
        other => other.to_owned(),
    };
    let mut command = Command::new(program);
    command.args(&argv[1..]).env_clear().env(
        "PATH",
        format!(
            "{}:{}",
            path.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    command.env("HOME", root);
    for (name, value) in container_env(container) {
        command.env(name, rewrite(localize(root, &value)));
    }
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let workdir = container["workingDir"]
        .as_str()
        .map_or_else(|| local(root, "/workspace"), |w| local(root, w));
    std::fs::create_dir_all(&workdir).unwrap();
    command.current_dir(workdir);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command.spawn().unwrap()
}

fn finished(name: &str, child: std::process::Child) -> String {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name}: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The seed's first Task ("Update dependencies to latest versions. Run tests and create PR."),
/// as `examples/agents/claude-code.yaml` renders it, every step of its pod run as a process:
/// the clone step's script against a real Git server, the setup command (a fake `npm` that
/// fills `node_modules/`), the agent runner with a fake `claude` that edits the README, and the
/// publish step waiting for it, pushing the branch to the Git server and opening the pull
/// request on the fake GitHub; its termination message read by the controller's own code.
#[test]
fn the_seeds_first_task_is_cloned_set_up_run_and_published() {
    use kubetask_test_apiserver::{forge::Forge, git_http};
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // The repository the Task names, served by `git http-backend`.
    let upstream = root.join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    let git = kubetask_test_apiserver::git_http::git;
    git(&upstream, &["init", "-q", "-b", "main"]);
    std::fs::write(upstream.join("README.md"), "# service-a\n").unwrap();
    std::fs::write(upstream.join(".gitignore"), "node_modules/\n").unwrap();
    git(&upstream, &["add", "."]);
    git(&upstream, &["commit", "-q", "-m", "first"]);
    let served = root.join("served");
    std::fs::create_dir_all(served.join("myorg")).unwrap();
    git(
        &served.join("myorg"),
        &[
            "clone",
            "-q",
            "--bare",
            upstream.to_str().unwrap(),
            "service-a.git",
        ],
    );
    let port = git_http::serve(&served, "repo-token");
    let forge = Forge::start("repo-token");
    let served_url = format!("http://127.0.0.1:{port}/myorg/service-a.git");
    let api = forge.github_url();
    let rewrite = move |text: String| {
        text.replace("https://github.com/myorg/service-a.git", &served_url)
            .replace("https://api.github.com", &api)
    };

    let objects = render(&[Path::new(REPO).join("examples/agents/claude-code.yaml")]);
    let job = objects.iter().find(|o| o["kind"] == "Job").unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let find = |list: &str, name: &str| -> Value {
        pod[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {list}"))
            .clone()
    };
    let image = image(&Path::new(REPO).join("agents/Dockerfile"), "claude-code");
    for container in pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .chain(pod["containers"].as_array().unwrap())
    {
        materialize(&objects, pod, container, root);
    }
    // The Secrets' volumes: the read token where the clone step mounts it, the write token
    // where the publish step does.
    for (step, path) in [
        ("workspace-clone", "/var/run/kubetask/workspace-credentials"),
        ("workspace-publish", "/var/run/kubetask/publish-credentials"),
    ] {
        let list = if step == "workspace-clone" {
            "initContainers"
        } else {
            "containers"
        };
        let container = find(list, step);
        assert!(
            container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == path),
            "{step} mounts {path}"
        );
        std::fs::write(local(root, path).join("token"), "repo-token").unwrap();
    }
    // The image's tools: the CLI (a fake that edits the README, then replays a recorded
    // success) and npm (a fake that fills node_modules/).
    let bin = fake_cli(root, "claude-code", "claude", "ANTHROPIC_API_KEY");
    let claude = std::fs::read_to_string(bin.join("claude")).unwrap();
    std::fs::write(
        bin.join("claude"),
        claude.replacen(
            "#!/bin/sh\n",
            "#!/bin/sh\nprintf 'Dependencies: updated.\\n' >> README.md\n",
            1,
        ),
    )
    .unwrap();
    std::fs::write(
        bin.join("npm"),
        "#!/bin/sh\n[ \"$1\" = ci ] && mkdir -p node_modules/left-pad\n",
    )
    .unwrap();
    let mut permissions = std::fs::metadata(bin.join("npm")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(bin.join("npm"), permissions).unwrap();

    let termination_log = |step: &str| root.join(format!("{step}.termination-log"));
    let step_env = |step: &str| -> Vec<(String, PathBuf)> {
        [
            (
                "KUBETASK_CREDENTIALS",
                local(root, "/var/run/kubetask/workspace-credentials"),
            ),
            (
                "KUBETASK_SCRATCH",
                local(root, "/var/run/kubetask/workspace-scratch"),
            ),
            ("KUBETASK_TERMINATION_LOG", termination_log(step)),
            ("KUBETASK_REPORT_PATH", termination_log(step)),
            ("KUBETASK_WORKSPACE", local(root, "/workspace")),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    };
    // Init containers, in order.
    for step in ["workspace-clone", "workspace-setup"] {
        let container = find("initContainers", step);
        let child = start(
            &container,
            root,
            &bin,
            &image.entrypoint,
            &step_env(step),
            &rewrite,
        );
        finished(step, child);
    }
    let cloned = std::fs::read_to_string(termination_log("workspace-clone")).unwrap();
    let base = kubetask::api::workspace::commit_of(&cloned).unwrap();
    assert!(
        local(root, "/workspace/repo/node_modules/left-pad").is_dir(),
        "setup ran in the checkout"
    );
    // The publish step starts beside the agent and waits for it.
    let publish = start(
        &find("containers", "workspace-publish"),
        root,
        &bin,
        &image.entrypoint,
        &step_env("workspace-publish"),
        &rewrite,
    );
    let mut agent_env = step_env("agent");
    for (name, value) in &image.env {
        if name != "HOME" {
            agent_env.push((name.clone(), PathBuf::from(value)));
        }
    }
    let agent = start(
        &find("containers", "agent"),
        root,
        &bin,
        &image.entrypoint,
        &agent_env,
        &rewrite,
    );
    finished("agent", agent);
    let said = finished("workspace-publish", publish);
    assert!(said.contains("pull request"), "{said}");

    // What reached the repository and the provider.
    let branch = "kubetask/update-dependencies-claude-code";
    let repo = served.join("myorg/service-a.git");
    let pushed = git(&repo, &["rev-parse", &format!("refs/heads/{branch}")]);
    assert_eq!(git(&repo, &["rev-parse", &format!("{pushed}^")]), base);
    assert_eq!(
        git(&repo, &["show", &format!("{pushed}:README.md")]),
        "# service-a\nDependencies: updated."
    );
    assert_eq!(
        git(&repo, &["ls-tree", "-r", "--name-only", &pushed]),
        ".gitignore\nREADME.md",
        "node_modules/ stays out"
    );
    let pulls = forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (
            pulls[0].project.as_str(),
            pulls[0].head.as_str(),
            pulls[0].base.as_str()
        ),
        ("myorg/service-a", branch, "main")
    );
    assert_eq!(pulls[0].labels, ["kubetask"]);
    assert!(
        pulls[0].title.starts_with("Updated 12 dependencies"),
        "{}",
        pulls[0].title
    );

    // The kubelet's view, read by the controller's own code.
    let agent_report = std::fs::read_to_string(termination_log("agent")).unwrap();
    let publish_message = std::fs::read_to_string(termination_log("workspace-publish")).unwrap();
    let terminated = |name: &str, message: &str| {
        json!({
            "name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message,
                                     "finishedAt": "2026-12-07T02:00:00Z"}},
        })
    };
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "seed-pod"},
        "status": {"phase": "Succeeded", "containerStatuses": [
            terminated("agent", &agent_report),
            terminated("workspace-publish", &publish_message),
        ]},
    }))
    .unwrap();
    let published = kubetask::controller::pod_attempts::published(std::slice::from_ref(&pod))
        .unwrap_or_else(|| panic!("not a publish message: {publish_message}"));
    assert_eq!(published.branch.as_deref(), Some(branch));
    assert_eq!(published.commit.as_deref(), Some(pushed.as_str()));
    assert_eq!(
        published.pull_request.map(|p| p.url),
        Some("https://github.example/myorg/service-a/pull/1".to_owned())
    );
}
