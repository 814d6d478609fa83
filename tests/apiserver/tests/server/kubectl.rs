//! `kubectl` against the test API server: apply, get -o json, delete.

use std::process::Command;

use kubetask_test_apiserver::{Config, TestApiServer};

/// `kubectl args` configured for `server`.
fn kubectl_command(server: &TestApiServer, args: &[&str]) -> Command {
    let mut command = Command::new("kubectl");
    command
        .args(args)
        .env("KUBECONFIG", server.kubeconfig_path())
        .env("HOME", server.kubeconfig_path().parent().unwrap());
    command
}

fn kubectl(server: &TestApiServer, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = kubectl_command(server, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const MANIFEST: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: smoke
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: smoke
  labels: {app: demo}
data:
  mode: fast
";

#[test]
fn kubectl_apply_get_delete() {
    let server = TestApiServer::start(Config::default()).unwrap();
    let (ok, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(MANIFEST));
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("namespace/smoke created") && out.contains("configmap/settings created"),
        "{out}"
    );

    // Applying a change patches (client-side apply: strategic merge for built-in kinds).
    let changed = MANIFEST.replace("mode: fast", "mode: slow");
    let (ok, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(&changed));
    assert!(
        ok && out.contains("configmap/settings configured"),
        "{out}{err}"
    );

    let (ok, out, err) = kubectl(
        &server,
        &["get", "configmap", "settings", "-n", "smoke", "-o", "json"],
        None,
    );
    assert!(ok, "{err}");
    let object: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(object["data"]["mode"], "slow");
    assert_eq!(object["metadata"]["labels"]["app"], "demo");

    let (ok, out, _) = kubectl(
        &server,
        &["get", "cm", "-n", "smoke", "-l", "app=demo"],
        None,
    );
    assert!(ok && out.contains("settings"), "{out}");
    let (ok, out, err) = kubectl(&server, &["delete", "-f", "-"], Some(MANIFEST));
    assert!(ok, "{out}{err}");
    let (ok, _, err) = kubectl(&server, &["get", "namespace", "smoke"], None);
    assert!(
        !ok && err.contains("namespaces \"smoke\" not found"),
        "{err}"
    );
}

#[test]
fn kubectl_installs_the_crds_and_applies_the_examples() {
    let server = TestApiServer::start(Config::default()).unwrap();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let (ok, out, err) = kubectl(
        &server,
        &["apply", "-f", &format!("{root}/manifests/crds/crds.yaml")],
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, _, err) = kubectl(
        &server,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n"),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(
        &server,
        &["apply", "-f", &format!("{root}/examples/simple-task.yaml")],
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("task.kubetask.io/update-service-a created"),
        "{out}"
    );
    let (ok, out, err) = kubectl(
        &server,
        &["get", "tasks", "-n", "team-a", "-o", "json"],
        None,
    );
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["items"][0]["metadata"]["name"], "update-service-a");
    // A Task that breaks the schema is refused with the field's path.
    let bad = "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: bad\n  namespace: team-a\nspec: {}\n";
    let (ok, _, err) = kubectl(&server, &["apply", "-f", "-"], Some(bad));
    assert!(
        !ok && err.contains("spec.contexts: Required value"),
        "{err}"
    );
    // kubectl asks for strict field validation: a misspelt field is an error, not dropped.
    let typo = "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata:\n  name: typo\n  namespace: team-a\nspec:\n  contexts: []\n  agentRefs: x\n";
    let (ok, _, err) = kubectl(&server, &["apply", "-f", "-"], Some(typo));
    assert!(
        !ok && err.contains("unknown field \"spec.agentRefs\""),
        "{err}"
    );
}

#[test]
fn the_binary_prints_a_kubeconfig_kubectl_can_use() {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubetask-test-apiserver"))
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let path = first
        .strip_prefix("kubeconfig: ")
        .expect("the first line names the kubeconfig")
        .to_owned();
    let output = Command::new("kubectl")
        .args(["get", "namespaces", "-o", "name"])
        .env("KUBECONFIG", &path)
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let names = String::from_utf8_lossy(&output.stdout);
    assert!(
        names.contains("namespace/default") && names.contains("namespace/kube-system"),
        "{names}"
    );
}

#[test]
fn imperative_creates_send_protobuf_and_issued_tokens_are_authorized_by_rbac() {
    let server = TestApiServer::start(Config::default().hardened()).unwrap();
    for args in [
        &["create", "namespace", "x"][..],
        &["create", "configmap", "c", "-n", "x", "--from-literal=a=b"],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            "x",
            "--from-literal=p=q",
        ],
        &["create", "serviceaccount", "robot", "-n", "x"],
    ] {
        let (ok, out, err) = kubectl(&server, args, None);
        assert!(ok, "kubectl {args:?}: {out}{err}");
        assert!(out.contains("created"), "{out}");
    }
    let (ok, out, _) = kubectl(
        &server,
        &["get", "configmap", "c", "-n", "x", "-o", "json"],
        None,
    );
    assert!(ok);
    let map: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(map["data"]["a"], "b");
    let (ok, out, _) = kubectl(
        &server,
        &["get", "secret", "s", "-n", "x", "-o", "json"],
        None,
    );
    assert!(ok);
    let secret: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(secret["data"]["p"], "cQ==", "stringData became base64 data");

    // A token for the ServiceAccount authenticates as it; RBAC decides what it may do.
    let (ok, token, err) = kubectl(&server, &["create", "token", "robot", "-n", "x"], None);
    assert!(ok, "{err}");
    let as_robot = ["--token", token.trim(), "-n", "x"];
    let (ok, _, err) = kubectl(
        &server,
        &[&as_robot[..], &["get", "configmaps"]].concat(),
        None,
    );
    assert!(!ok);
    assert!(
        err.contains("User \"system:serviceaccount:x:robot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"x\""),
        "{err}"
    );
    let (ok, out, err) = kubectl(
        &server,
        &[
            "create",
            "role",
            "reader",
            "-n",
            "x",
            "--verb=get,list",
            "--resource=configmaps",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &server,
        &[
            "create",
            "rolebinding",
            "robot-reads",
            "-n",
            "x",
            "--role=reader",
            "--serviceaccount=x:robot",
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &server,
        &[&as_robot[..], &["get", "configmaps", "-o", "name"]].concat(),
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("configmap/c"), "{out}");
}

#[test]
fn client_side_apply_of_a_large_configmap_is_refused_like_a_real_server() {
    let server = TestApiServer::start(Config::default()).unwrap();
    // Client-side apply copies binaryData into an annotation: 300 KB of it is over 256 KiB.
    let blob = "A".repeat(300_000);
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: kubetask-system}}\nbinaryData:\n  blob: {blob}\n"
    );
    let (ok, out, err) = kubectl(&server, &["create", "namespace", "kubetask-system"], None);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = kubectl(&server, &["apply", "-f", "-"], Some(&manifest));
    assert!(!ok);
    assert!(
        err.contains("metadata.annotations: Too long: may not be more than 262144 bytes"),
        "{err}"
    );
    let (ok, out, err) = kubectl(
        &server,
        &["apply", "--server-side", "-f", "-"],
        Some(&manifest),
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = kubectl(
        &server,
        &["apply", "--server-side", "-f", "-"],
        Some(&manifest),
    );
    assert!(ok, "applying again: {out}{err}");
    // The packed example plugins (lean SDK, about 115 KB) fit even client-side apply.
    let packed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugins/examples/restricted-policy/configmap.yaml"
    ))
    .unwrap();
    let (ok, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(&packed));
    assert!(ok, "{out}{err}");
}

/// A server with the project's CRDs and the Task `demo/hello` (no status yet), applied with
/// kubectl.
fn server_with_a_task() -> TestApiServer {
    let server = TestApiServer::start(Config::default()).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let crds = format!("{root}/../../manifests/crds/crds.yaml");
    let (ok, out, err) = kubectl(&server, &["apply", "-f", &crds], None);
    assert!(ok, "{out}{err}");
    let task = "apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {name: hello, namespace: demo}
spec:
  contexts:
    - type: File
      file: {filePath: /workspace/task.md, source: {inline: hi}}
";
    let (ok, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(task));
    assert!(ok, "{out}{err}");
    server
}

/// `kubectl get` prints the CRD's printer columns from the server-side Table, `-o wide` adds
/// the priority-1 ones, and an `events.k8s.io/v1` Event (what the controller writes) shows in
/// `kubectl describe` and `kubectl get events` as a real server shows it
/// (`shared/real-apiserver/responses/`).
#[test]
fn kubectl_get_and_describe_show_columns_and_events_like_a_real_server() {
    let server = server_with_a_task();
    let status = r#"{"status": {"phase": "Running", "jobName": "hello",
        "result": {"summary": "halfway there"},
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running", "message": "the agent runs",
                        "lastTransitionTime": "2026-12-05T16:07:23Z"}]}}"#;
    let (ok, out, err) = kubectl(
        &server,
        &[
            "patch",
            "task",
            "hello",
            "-n",
            "demo",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    let (ok, uid, err) = kubectl(
        &server,
        &[
            "get",
            "task",
            "hello",
            "-n",
            "demo",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    );
    assert!(ok, "{err}");
    let event = format!(
        "apiVersion: events.k8s.io/v1
kind: Event
metadata: {{name: hello.18ee65edd355d09f, namespace: demo}}
eventTime: '2026-12-05T16:00:01.000000Z'
reportingController: kubetask.io/controller
reportingInstance: kubetask-controller-0
action: Reconcile
reason: JobCreated
regarding: {{kind: Task, namespace: demo, name: hello, uid: '{uid}', apiVersion: kubetask.io/v1alpha1}}
note: Created Job hello
type: Normal
"
    );
    let (ok, out, err) = kubectl(&server, &["create", "-f", "-"], Some(&event));
    assert!(ok, "{out}{err}");

    let (ok, out, err) = kubectl(&server, &["get", "tasks", "-n", "demo"], None);
    assert!(ok, "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "AGENT", "JOB", "REASON", "AGE"],
        "{out}"
    );
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["hello", "Running", "hello", "Running"], "{out}");

    let (ok, out, err) = kubectl(&server, &["get", "tasks", "-n", "demo", "-o", "wide"], None);
    assert!(ok, "{err}");
    assert!(
        out.lines().next().unwrap_or_default().contains("SUMMARY"),
        "{out}"
    );
    assert!(out.contains("halfway there"), "{out}");

    let (ok, out, err) = kubectl(&server, &["describe", "task", "hello", "-n", "demo"], None);
    assert!(ok, "{err}");
    let events = out.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("JobCreated")
            && events.contains("kubetask.io/controller")
            && events.contains("Created Job hello"),
        "{out}"
    );

    let (ok, out, err) = kubectl(&server, &["get", "events", "-n", "demo"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("JobCreated") && out.contains("Created Job hello"),
        "{out}"
    );
}

/// The built-in kinds' columns (kube-apiserver's printers): `kubectl get jobs` shows STATUS,
/// COMPLETIONS, DURATION; `kubectl get pods` READY, STATUS, RESTARTS, and `-o wide` the node.
#[test]
fn kubectl_get_jobs_and_pods_shows_their_columns() {
    let server = TestApiServer::start(Config::default()).unwrap();
    let objects = "apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: batch/v1
kind: Job
metadata: {name: hello, namespace: demo}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: agent, image: 'ghcr.io/kubetask/agent-gemini:v1'}]
---
apiVersion: v1
kind: Pod
metadata: {name: hello-x7k2p, namespace: demo}
spec:
  nodeName: node-1
  containers: [{name: agent, image: 'ghcr.io/kubetask/agent-gemini:v1'}]
";
    let (ok, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(objects));
    assert!(ok, "{out}{err}");
    let patch_status = |kind: &str, name: &str, status: &str| {
        let (ok, out, err) = kubectl(
            &server,
            &[
                "patch",
                kind,
                name,
                "-n",
                "demo",
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
            None,
        );
        assert!(ok, "{out}{err}");
    };
    patch_status(
        "job",
        "hello",
        r#"{"status": {"succeeded": 1, "startTime": "2026-12-05T16:00:00Z",
            "completionTime": "2026-12-05T16:02:05Z",
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                           {"type": "Complete", "status": "True"}]}}"#,
    );
    patch_status(
        "pod",
        "hello-x7k2p",
        r#"{"status": {"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}],
            "containerStatuses": [{"name": "agent", "ready": true, "restartCount": 0,
                "image": "ghcr.io/kubetask/agent-gemini:v1", "imageID": "", "state": {"running": {}}}]}}"#,
    );
    let words = |text: &str, line: usize| -> Vec<String> {
        text.lines()
            .nth(line)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let (ok, out, err) = kubectl(&server, &["get", "jobs", "-n", "demo"], None);
    assert!(ok, "{err}");
    assert_eq!(
        words(&out, 0),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{out}"
    );
    assert_eq!(
        words(&out, 1)[..4],
        ["hello", "Complete", "1/1", "2m5s"],
        "{out}"
    );
    let (ok, out, err) = kubectl(&server, &["get", "jobs", "-n", "demo", "-o", "wide"], None);
    assert!(ok, "{err}");
    assert!(words(&out, 0).ends_with(&["CONTAINERS".into(), "IMAGES".into(), "SELECTOR".into()]));
    assert!(out.contains("ghcr.io/kubetask/agent-gemini:v1"), "{out}");

    let (ok, out, err) = kubectl(&server, &["get", "pods", "-n", "demo"], None);
    assert!(ok, "{err}");
    assert_eq!(
        words(&out, 0),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert_eq!(
        words(&out, 1)[..4],
        ["hello-x7k2p", "1/1", "Running", "0"],
        "{out}"
    );
    let (ok, out, err) = kubectl(&server, &["get", "pods", "-n", "demo", "-o", "wide"], None);
    assert!(ok, "{err}");
    let row = words(&out, 1);
    assert!(
        row.contains(&"10.0.0.7".into()) && row.contains(&"node-1".into()),
        "{out}"
    );
}

/// `kubectl get tasks -w`: the watch is served as Tables (headers in the first event only),
/// so a change shows as a new row with its columns.
#[test]
fn kubectl_get_watch_prints_rows_as_objects_change() {
    use std::io::BufRead as _;
    let server = server_with_a_task();
    let mut watcher = kubectl_command(&server, &["get", "tasks", "-n", "demo", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is installed");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("kubectl get -w printed no {what}"))
    };
    let header = next("header");
    assert!(
        header
            .split_whitespace()
            .eq(["NAME", "PHASE", "AGENT", "JOB", "REASON", "AGE"]),
        "{header}"
    );
    let first = next("row");
    assert!(first.starts_with("hello "), "{first}");
    for (phase, reason) in [("Running", "Running"), ("Completed", "Succeeded")] {
        let status = format!(
            r#"{{"status": {{"phase": "{phase}", "jobName": "hello",
                "conditions": [{{"type": "Succeeded", "status": "Unknown", "reason": "{reason}",
                                 "message": "m", "lastTransitionTime": "2026-12-05T16:07:23Z"}}]}}}}"#
        );
        let (ok, out, err) = kubectl(
            &server,
            &[
                "patch",
                "task",
                "hello",
                "-n",
                "demo",
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ],
            None,
        );
        assert!(ok, "{out}{err}");
        let row = next("changed row");
        // No agent: that cell is empty (a null, as the real server sends it).
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[..4], ["hello", phase, "hello", reason], "{row}");
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
}
