//! The controller under the shipped Deployment's runtime conditions (`manifests/deployment.yaml`):
//! user 65532, and a `--plugin-cache-dir` that is an `emptyDir` — owned by root, writable by
//! everyone. The test server runs no pods, so this runs the binary itself that way.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::process::Command;

use kube::api::PostParams;
use kubetask::api::{Task, TaskPhase};
use support::*;

/// The Deployment's `runAsUser` and `runAsGroup`.
const DEPLOYMENT_USER: u32 = 65532;

/// Creates a Task in `team-a` and waits until the controller has run it to `Completed`.
async fn run_a_task(cluster: &Cluster, name: &str) {
    let task: Task = serde_json::from_value(serde_json::json!({
        "apiVersion": "kubetask.io/v1alpha1",
        "kind": "Task",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"contexts": [{"type": "File", "file": {"filePath": "/workspace/task.md", "source": {"inline": "hello"}}}]},
    }))
    .expect("a Task");
    cluster
        .tasks("team-a")
        .create(&PostParams::default(), &task)
        .await
        .expect("create the Task");
    cluster
        .wait_phase("team-a", name, TaskPhase::Completed)
        .await;
}

#[tokio::test]
async fn the_controller_runs_as_user_65532_with_a_root_owned_cache_directory() {
    let running_as = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    assert_eq!(
        running_as, 0,
        "this test switches to user {DEPLOYMENT_USER}, which only root can do (CI runs as root)"
    );
    let cluster = Cluster::start().await;
    // What the pod has: the binary and the kubeconfig readable by anyone, and an emptyDir.
    let sandbox = tempfile::tempdir().expect("a temp dir");
    let readable = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    readable(sandbox.path(), 0o755);
    let binary = sandbox.path().join("kubetask");
    std::fs::copy(env!("CARGO_BIN_EXE_kubetask"), &binary).expect("copy the binary");
    readable(&binary, 0o755);
    let kubeconfig = sandbox.path().join("kubeconfig");
    std::fs::copy(&cluster.controller_kubeconfig, &kubeconfig).expect("copy the kubeconfig");
    readable(&kubeconfig, 0o644);
    let cache = sandbox.path().join("plugin-cache");
    std::fs::create_dir(&cache).expect("the emptyDir");
    readable(&cache, 0o777);

    let mut command = Command::new(&binary);
    command.uid(DEPLOYMENT_USER).gid(DEPLOYMENT_USER);
    let cache_arg = format!("--plugin-cache-dir={}", cache.display());
    let mut controller = ControllerProcess::spawn_from(command, &kubeconfig, &[&cache_arg]);

    run_a_task(&cluster, "as-65532").await;
    assert!(controller.alive(), "the controller keeps running");

    let log = controller.log();
    assert!(!log.contains("cannot be used"), "the cache is used: {log}");
    let top = std::fs::metadata(&cache).expect("the emptyDir");
    assert_eq!(
        (top.uid(), top.mode() & 0o777),
        (0, 0o777),
        "what is not ours is left as it is"
    );
    let private = std::fs::metadata(cache.join(format!("kubetask-{DEPLOYMENT_USER}")))
        .expect("the controller's own cache directory");
    assert_eq!(
        (private.uid(), private.mode() & 0o777),
        (DEPLOYMENT_USER, 0o700),
        "compiled plugins go where only the controller may write"
    );
}

#[tokio::test]
async fn a_cache_directory_that_cannot_be_used_is_skipped_with_a_warning() {
    let cluster = Cluster::start().await;
    // A file where the directory should be: nothing can be created there.
    let sandbox = tempfile::tempdir().expect("a temp dir");
    let blocked = sandbox.path().join("not-a-directory");
    std::fs::write(&blocked, "").expect("a file");
    let cache_arg = format!("--plugin-cache-dir={}", blocked.display());
    let mut controller = cluster.controller(&[&cache_arg]);
    run_a_task(&cluster, "no-cache").await;
    assert!(controller.alive());
    assert!(
        controller
            .log()
            .contains("--plugin-cache-dir cannot be used: compiling plugins at every start"),
        "{}",
        controller.log()
    );
}
