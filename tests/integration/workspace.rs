//! Workspaces against the test API server: the clone and setup steps in the Job, the commit
//! they checked out in the Task's status, and each way a step fails ending the Task with its
//! own reason. (The simulated kubelet completes the steps with the exit codes and messages a
//! real run would give; the clone step's script runs for real against a Git server below, and
//! the whole pod, publish step included, in `agents/runner/tests/workspace_publish.rs`.)

use std::sync::Arc;
use std::time::Duration;

use kube::api::PostParams;
use kubetask::api::Task;
use kubetask_test_apiserver::Script;
use serde_json::{Value, json};

use super::support::{Cluster, reason};

const NS: &str = "team-a";
const COMMIT: &str = "3f1c2d4e5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d";

fn script(job: &Value) -> Script {
    let name = job["metadata"]["name"].as_str().unwrap_or_default();
    let cloned = json!({"commit": COMMIT}).to_string();
    match name {
        "ws-setup-fails" => Script::succeed()
            .with_init_message("workspace-clone", cloned)
            .with_init_message("workspace-setup", "npm ERR! Missing script: \"ci\"")
            .with_init_exit("workspace-setup", 1),
        "ws-setup-slow" => Script::succeed()
            .with_init_message("workspace-clone", cloned)
            .with_init_exit("workspace-setup", 124),
        "ws-refused" => Script::succeed()
            .with_init_message(
                "workspace-clone",
                "fatal: Authentication failed for 'https://github.com/org/private.git/'",
            )
            .with_init_exit("workspace-clone", 3),
        _ => Script::succeed().with_init_message("workspace-clone", cloned),
    }
}

fn task(name: &str, workspace: &str) -> String {
    format!(
        "apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: {name}, namespace: {NS}}}
spec:
  contexts: []
  retries: 2
  workspace: {workspace}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_cloned_set_up_and_its_commit_recorded() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    let _controller = cluster.controller(&[]);
    cluster
        .apply_yaml(&task(
            "ws-ok",
            "{repository: 'https://github.com/org/service-a.git', ref: main, setup: {command: [npm, ci]}}",
        ))
        .await;
    let done = cluster
        .wait_reason(NS, "ws-ok", "Completed", Duration::from_secs(30))
        .await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        status.workspace.and_then(|w| w.commit).as_deref(),
        Some(COMMIT)
    );
    let job = cluster.jobs_of(&done).await.remove(0);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let steps: Vec<String> = pod
        .init_containers
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(steps, ["workspace-clone", "workspace-setup"]);
    assert_eq!(
        pod.containers[0].working_dir.as_deref(),
        Some("/workspace/repo")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failing_step_ends_the_task_with_its_reason() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    let _controller = cluster.controller(&[]);
    let workspace = "{repository: 'https://github.com/org/service-a.git', setup: {command: [npm, ci], timeout: 1m}}";
    for name in ["ws-setup-fails", "ws-setup-slow"] {
        cluster.apply_yaml(&task(name, workspace)).await;
    }
    cluster
        .apply_yaml(&task(
            "ws-refused",
            "{repository: 'https://github.com/org/private.git', credentialsRef: {name: wrong}}",
        ))
        .await;
    let limit = Duration::from_secs(30);
    let failed = cluster
        .wait_reason(NS, "ws-setup-fails", "SetupFailed", limit)
        .await;
    let message = &failed.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("exited with 1") && message.contains("npm ERR! Missing script"),
        "{message}"
    );
    assert!(message.contains("-c workspace-setup"), "{message}");
    let slow = cluster
        .wait_reason(NS, "ws-setup-slow", "SetupFailed", limit)
        .await;
    let message = &slow.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("spec.workspace.setup.timeout"),
        "{message}"
    );
    // Refused credentials are not retried, whatever `retries` says.
    let refused = cluster
        .wait_reason(NS, "ws-refused", "CloneFailed", limit)
        .await;
    let status = refused.status.clone().unwrap();
    let message = &status.conditions[0].message;
    assert!(
        message.contains("refused the credentials") && message.contains("Authentication failed"),
        "{message}"
    );
    assert_eq!(status.attempts.len(), 1, "{:?}", status.attempts);
    assert_eq!(reason(&refused), "CloneFailed");
}

/// The CRD refuses transports that could read the node and paths outside `/workspace`, as
/// kube-apiserver does with the committed CRD's patterns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_refuses_local_transports_and_foreign_directories() {
    let cluster = Cluster::start().await;
    for (workspace, field) in [
        (
            json!({"repository": "file:///etc/passwd"}),
            "spec.workspace.repository",
        ),
        (
            json!({"repository": "ext::sh -c id"}),
            "spec.workspace.repository",
        ),
        (
            json!({"repository": "https://github.com/org/repo", "directory": "/etc/cron.d"}),
            "spec.workspace.directory",
        ),
        (
            json!({"repository": "https://github.com/org/repo", "ref": "--upload-pack=id"}),
            "spec.workspace.ref",
        ),
    ] {
        let task: Task = serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "bad", "namespace": NS},
            "spec": {"contexts": [], "workspace": workspace},
        }))
        .unwrap();
        let created = cluster
            .tasks(NS)
            .create(&PostParams::default(), &task)
            .await;
        let Err(kube::Error::Api(status)) = created else {
            panic!("{workspace}: {created:?}")
        };
        assert_eq!(status.code, 422, "{workspace}");
        assert!(
            status.message.contains(field),
            "{workspace}: {}",
            status.message
        );
    }
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The clone step's own script (what the default plugin puts in the pod), run as a process
/// against the real git server: at a branch, at a commit SHA, shallow; refused credentials
/// exit 3, a missing ref 2, and nothing is left of the credential in the checkout.
#[test]
fn the_clone_step_fetches_the_ref_from_a_real_git_server() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["config", "user.email", "t@example.com"]);
    git(&work, &["config", "user.name", "t"]);
    std::fs::write(work.join("README.md"), "one\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("README.md"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(
        &served,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            "service-a.git",
        ],
    );
    let port = kubetask_test_apiserver::git_http::serve(&served, "s3cret");
    let url = format!("http://127.0.0.1:{port}/service-a.git");

    let run = |name: &str, token: Option<&str>, git_ref: &str, depth: &str| {
        let case = dir.path().join(name);
        let credentials = case.join("credentials");
        let scratch = case.join("scratch");
        std::fs::create_dir_all(&credentials).unwrap();
        std::fs::create_dir_all(&scratch).unwrap();
        if let Some(token) = token {
            std::fs::write(credentials.join("token"), token).unwrap();
        }
        let checkout = case.join("repo");
        let log = case.join("termination-log");
        let output = std::process::Command::new("sh")
            .args([
                "-c",
                kubetask_default_plugin::workspace::CLONE_SCRIPT,
                "workspace-clone",
            ])
            .args([&url, git_ref, depth, "false", checkout.to_str().unwrap()])
            .env("KUBETASK_CREDENTIALS", &credentials)
            .env("KUBETASK_SCRATCH", &scratch)
            .env("KUBETASK_TERMINATION_LOG", &log)
            .output()
            .unwrap();
        let message = std::fs::read_to_string(&log).unwrap_or_default();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            message,
            checkout,
        )
    };

    let (code, stderr, message, checkout) = run("branch", Some("s3cret"), "main", "1");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        kubetask::api::workspace::commit_of(&message),
        Some(second.clone())
    );
    assert_eq!(
        std::fs::read_to_string(checkout.join("README.md")).unwrap(),
        "two\n"
    );
    assert_eq!(
        git(&checkout, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "main"
    );
    assert_eq!(
        git(&checkout, &["rev-list", "--count", "HEAD"]),
        "1",
        "shallow"
    );
    let config = std::fs::read_to_string(checkout.join(".git/config")).unwrap();
    assert!(
        !config.contains("s3cret") && !config.contains("credential"),
        "{config}"
    );

    let (code, stderr, message, checkout) = run("sha", Some("s3cret"), &first, "");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        kubetask::api::workspace::commit_of(&message),
        Some(first.clone())
    );
    assert_eq!(
        std::fs::read_to_string(checkout.join("README.md")).unwrap(),
        "one\n"
    );

    let (code, stderr, _, _) = run("head", Some("s3cret"), "", "");
    assert_eq!(code, Some(0), "{stderr}");

    for (name, token) in [("wrong-token", Some("guess")), ("no-token", None)] {
        let (code, stderr, message, _) = run(name, token, "main", "1");
        assert_eq!(code, Some(3), "{name}: {stderr}");
        assert!(
            stderr.contains("refused the credentials"),
            "{name}: {stderr}"
        );
        assert!(message.is_empty(), "{name}");
    }
    let (code, stderr, _, _) = run("missing-ref", Some("s3cret"), "no-such-branch", "1");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot fetch no-such-branch"), "{stderr}");
}
