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
        "ws-pr" | "ws-lock-second" => Script::succeed()
            .with_init_message("workspace-clone", cloned)
            .with_termination_message(r#"{"summary":"Updated 3 dependencies; tests pass"}"#)
            .with_container_message("workspace-publish", published(name)),
        "ws-nochanges" => Script::succeed()
            .with_init_message("workspace-clone", cloned)
            .with_termination_message(r#"{"summary":"Everything is up to date"}"#)
            .with_container_message("workspace-publish", r#"{"noChanges":true}"#),
        "ws-push-refused" => Script::succeed()
            .with_init_message("workspace-clone", cloned)
            .with_container_message(
                "workspace-publish",
                "the repository refused the push: remote: error: GH006: Protected branch update failed for refs/heads/kubetask/ws-push-refused.",
            )
            .with_container_exit("workspace-publish", 3),
        "ws-lock-first" => Script::hang().with_init_message("workspace-clone", cloned),
        _ => Script::succeed().with_init_message("workspace-clone", cloned),
    }
}

/// What the publish step of Task `name` says it did.
fn published(name: &str) -> String {
    json!({
        "branch": format!("kubetask/{name}"),
        "commit": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b",
        "pullRequest": {"url": format!("https://github.com/org/service-a/pull/{}", name.len()), "number": name.len()},
    })
    .to_string()
}

/// A workspace that publishes to `branch` (unset: the default, `kubetask/<task>`).
fn publishing(branch: Option<&str>) -> String {
    let branch = branch.map_or_else(String::new, |b| format!(", branch: {b}"));
    format!(
        "{{repository: 'https://github.com/org/service-a.git', ref: main, publish: {{credentialsRef: {{name: repo-write}}, pullRequest: {{labels: [kubetask]}}{branch}}}}}"
    )
}

/// The publish step's outcome in the Task: the pull request in `status.result` (and in
/// `kubetask result`), the branch in `status.workspace.published`; `NoChanges`; a refused push
/// `PublishFailed` after one attempt, whatever `retries` says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_publish_step_did_is_in_the_tasks_status() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    let _controller = cluster.controller(&[]);
    for name in ["ws-pr", "ws-nochanges", "ws-push-refused"] {
        cluster.apply_yaml(&task(name, &publishing(None))).await;
    }
    let limit = Duration::from_secs(30);
    let done = cluster.wait_reason(NS, "ws-pr", "Completed", limit).await;
    let status = done.status.clone().unwrap();
    let result = status.result.clone().unwrap();
    assert_eq!(result.summary, "Updated 3 dependencies; tests pass");
    let pull_request = result.pull_request.unwrap();
    assert_eq!(
        (pull_request.url.as_str(), pull_request.number),
        ("https://github.com/org/service-a/pull/5", 5)
    );
    let published = status.workspace.unwrap().published.unwrap();
    assert_eq!(published.branch.as_deref(), Some("kubetask/ws-pr"));
    let job = cluster.jobs_of(&done).await.remove(0);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let containers: Vec<String> = pod.containers.into_iter().map(|c| c.name).collect();
    assert_eq!(containers, ["agent", "workspace-publish"]);
    let kubeconfig = cluster
        .server
        .kubeconfig_path()
        .to_str()
        .unwrap()
        .to_owned();
    let (code, out, stderr) =
        super::support::kubetask(&["result", "ws-pr", "-n", NS, "--kubeconfig", &kubeconfig]);
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["pullRequest"]["url"],
        "https://github.com/org/service-a/pull/5"
    );
    assert_eq!(shown["branch"], "kubetask/ws-pr");
    // `kubectl get tasks -o wide`: the server's Table has the column, priority 1.
    let request = http::Request::get(format!(
        "/apis/kubetask.io/v1alpha1/namespaces/{NS}/tasks/ws-pr"
    ))
    .header(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .body(Vec::new())
    .unwrap();
    let table: Value =
        serde_json::from_str(&cluster.client.request_text(request).await.unwrap()).unwrap();
    let columns = table["columnDefinitions"].as_array().unwrap();
    let at = columns
        .iter()
        .position(|c| c["name"] == "Pull Request")
        .unwrap();
    assert_eq!(columns[at]["priority"], 1, "shown by -o wide");
    assert_eq!(
        table["rows"][0]["cells"][at],
        "https://github.com/org/service-a/pull/5"
    );

    let unchanged = cluster
        .wait_reason(NS, "ws-nochanges", "NoChanges", limit)
        .await;
    let status = unchanged.status.clone().unwrap();
    assert_eq!(status.phase, Some(kubetask::api::TaskPhase::Completed));
    assert_eq!(status.result.and_then(|r| r.pull_request), None);

    let refused = cluster
        .wait_reason(NS, "ws-push-refused", "PublishFailed", limit)
        .await;
    let status = refused.status.clone().unwrap();
    let message = &status.conditions[0].message;
    assert!(
        message.contains("GH006: Protected branch") && message.contains("not retried"),
        "{message}"
    );
    assert!(message.contains("-c workspace-publish"), "{message}");
    assert_eq!(status.attempts.len(), 1, "{:?}", status.attempts);
}

/// Two Tasks that publish to the same repository and branch never run at once: the second
/// waits `PublishLocked`, naming the first, and runs when the first has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_at_a_time_publishes_to_a_branch() {
    let cluster = Cluster::start_scripted(Duration::from_millis(100), Arc::new(script)).await;
    let _controller = cluster.controller(&[]);
    cluster
        .apply_yaml(&task("ws-lock-first", &publishing(Some("deps/shared"))))
        .await;
    cluster
        .wait_reason(NS, "ws-lock-first", "Running", Duration::from_secs(30))
        .await;
    // The same repository spelled otherwise, and the same branch.
    let same = "{repository: 'https://GitHub.com/org/service-a', publish: {credentialsRef: {name: w}, branch: deps/shared}}";
    cluster.apply_yaml(&task("ws-lock-second", same)).await;
    // Another branch of the same repository is not held up.
    cluster
        .apply_yaml(&task("ws-lock-other", &publishing(Some("deps/other"))))
        .await;
    let waiting = cluster
        .wait_reason(
            NS,
            "ws-lock-second",
            "PublishLocked",
            Duration::from_secs(30),
        )
        .await;
    let message = &waiting.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.contains("github.com/org/service-a@deps/shared")
            && message.contains("team-a/ws-lock-first"),
        "{message}"
    );
    cluster
        .wait_reason(NS, "ws-lock-other", "Completed", Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = cluster.tasks(NS).get("ws-lock-second").await.unwrap();
    assert_eq!(
        reason(&still),
        "PublishLocked",
        "the lock is held while the first runs"
    );
    cluster.cancel(NS, "ws-lock-first", "done with it").await;
    cluster
        .wait_reason(NS, "ws-lock-second", "Completed", Duration::from_secs(40))
        .await;
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

use kubetask_test_apiserver::git_http::git;

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
