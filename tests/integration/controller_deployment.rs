//! The controller under the shipped Deployment's runtime conditions (`manifests/deployment.yaml`):
//! user 65532, and a `--plugin-cache-dir` that is an `emptyDir` — owned by root, writable by
//! everyone. The test server runs no pods, so this runs the binary itself that way.

use crate::support;

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

/// What the pod has: the binary and the kubeconfig readable by anyone, and an emptyDir (owned
/// by root, mode 0777) for the cache.
struct PodFiles {
    /// Holds the files.
    _sandbox: tempfile::TempDir,
    binary: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    cache: std::path::PathBuf,
}

impl PodFiles {
    fn new(cluster: &Cluster) -> Self {
        let running_as = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        assert_eq!(
            running_as, 0,
            "this test switches to user {DEPLOYMENT_USER}, which only root can do (CI runs as root)"
        );
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
        Self {
            _sandbox: sandbox,
            binary,
            kubeconfig,
            cache,
        }
    }

    fn cache_arg(&self) -> String {
        format!("--plugin-cache-dir={}", self.cache.display())
    }
}

#[tokio::test]
async fn the_controller_runs_as_user_65532_with_a_root_owned_cache_directory() {
    let cluster = Cluster::start().await;
    let pod = PodFiles::new(&cluster);
    let mut command = Command::new(&pod.binary);
    command.uid(DEPLOYMENT_USER).gid(DEPLOYMENT_USER);
    let mut controller =
        ControllerProcess::spawn_from(command, &pod.kubeconfig, &[&pod.cache_arg()]);

    run_a_task(&cluster, "as-65532").await;
    assert!(controller.alive(), "the controller keeps running");

    let log = controller.log();
    assert!(!log.contains("cannot be used"), "the cache is used: {log}");
    let cache = &pod.cache;
    let top = std::fs::metadata(cache).expect("the emptyDir");
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

/// `readOnlyRootFilesystem: true`: every filesystem read-only (in a mount namespace of its own,
/// `unshare --mount`), the cache a fresh tmpfs like the emptyDir, and user 65532. The
/// controller runs a Task and writes nothing but its cache.
#[tokio::test]
async fn the_controller_runs_on_a_read_only_root_filesystem() {
    let cluster = Cluster::start().await;
    let pod = PodFiles::new(&cluster);
    // Remount every mount read-only but the kernel's own (/proc, /sys, /dev), as a container
    // runtime does for readOnlyRootFilesystem, then mount the emptyDir and drop to the user.
    let script = format!(
        r#"set -e
for target in $(findmnt -rn -o TARGET); do
  case "$target" in /proc*|/sys*|/dev*) ;; *) mount -o remount,bind,ro "$target" ;; esac
done
if touch /kubetask-rw-probe 2>/dev/null || touch "${{TMPDIR:-/tmp}}/kubetask-rw-probe" 2>/dev/null; then
  echo "the root filesystem is still writable" >&2; exit 97
fi
mount -t tmpfs -o mode=0777,size=512m emptydir '{cache}'
exec setpriv --reuid {user} --regid {user} --clear-groups "$@""#,
        cache = pod.cache.display(),
        user = DEPLOYMENT_USER,
    );
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(&pod.binary);
    let mut controller =
        ControllerProcess::spawn_from(command, &pod.kubeconfig, &[&pod.cache_arg()]);

    run_a_task(&cluster, "read-only-root").await;
    assert!(controller.alive(), "the controller keeps running");
    let log = controller.log();
    assert!(
        !log.contains("Read-only file system") && !log.contains("cannot be used"),
        "nothing is written outside the cache: {log}"
    );
    // The cache is in the controller's own mount namespace: look through its root.
    let private = std::path::Path::new(&format!("/proc/{}/root", controller.pid()))
        .join(pod.cache.strip_prefix("/").expect("an absolute path"))
        .join(format!("kubetask-{DEPLOYMENT_USER}"));
    let metadata = std::fs::metadata(&private).expect("the controller's cache directory");
    assert_eq!(metadata.uid(), DEPLOYMENT_USER);
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
