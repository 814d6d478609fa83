//! `kubetask exit` against the test API server, with `manifests/egress/rbac.yaml`'s
//! permissions: the Tasks it serves and their Agents' egress from its watches, each Task's
//! token, the Events it posts on the Task and its metrics.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubetask::api::Agent;
use kubetask::egress::TokenKey;
use kubetask::egress::sni::client_hello;
use serde_json::json;

use super::support::{Cluster, free_port, reason};

const NS: &str = "team-a";

/// A destination on loopback that echoes what it receives.
fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

struct ExitProcess {
    child: Child,
    proxy: u16,
    probes: u16,
    log: std::path::PathBuf,
}

impl Drop for ExitProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- exit log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl ExitProcess {
    fn get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.probes)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    /// Sends a CONNECT (with `auth` as the user:token) and, on 200, the ClientHello `hello`;
    /// returns the status line's code and the stream.
    fn connect(&self, target: &str, auth: &str, hello: &[u8]) -> (u16, String, TcpStream) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.proxy)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode(auth);
        write!(
            stream,
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {basic}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut body = String::new();
        if status == 200 {
            stream.write_all(hello).unwrap();
        } else {
            let _ = stream.read_to_string(&mut body);
        }
        (status, text + &body, stream)
    }
}

fn spawn_exit(cluster: &Cluster, key_file: &std::path::Path) -> ExitProcess {
    spawn_exit_on(cluster, key_file, free_port())
}

fn spawn_exit_on(cluster: &Cluster, key_file: &std::path::Path, proxy: u16) -> ExitProcess {
    let probes = free_port();
    let log =
        std::env::temp_dir().join(format!("kubetask-exit-{}-{proxy}.log", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_kubetask"))
        .arg("exit")
        .arg("--kubeconfig")
        .arg(&cluster.exit_kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{proxy}")])
        .args(["--metrics-address", &format!("127.0.0.1:{probes}")])
        .arg("--token-key-file")
        .arg(key_file)
        .env("RUST_LOG", "info,kubetask=debug")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start kubetask exit");
    ExitProcess {
        child,
        proxy,
        probes,
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_serves_each_task_its_agents_egress() {
    let cluster = Cluster::start().await;
    cluster
        .install_rbac_from("manifests/egress/rbac.yaml")
        .await;
    let port = echo_server();
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1
kind: Agent
metadata: {{name: fetcher, namespace: {NS}}}
spec:
  serviceAccountName: default
  egress:
    mode: AllowList
    allowedDomains: [localhost, '*.example.com']
    allowedCIDRs: [127.0.0.0/8]
    ports: [{port}]
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: fetch, namespace: {NS}}}
spec:
  agentRef: fetcher
  contexts: [{{type: File, file: {{filePath: /workspace/task.md, source: {{inline: fetch}}}}}}]
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: other, namespace: {NS}}}
spec:
  agentRef: fetcher
  contexts: [{{type: File, file: {{filePath: /workspace/task.md, source: {{inline: other}}}}}}]
"
        ))
        .await;
    let task = cluster.tasks(NS).get("fetch").await.unwrap();
    let uid = task.uid().unwrap();
    let other_uid = cluster.tasks(NS).get("other").await.unwrap().uid().unwrap();

    let key_bytes = [5u8; 32];
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), key_bytes).unwrap();
    let key = TokenKey::new(&key_bytes).unwrap();
    let exit = spawn_exit(&cluster, key_file.path());
    exit.wait_ready().await;

    let auth = format!("{NS}.fetch:{}", key.token(NS, "fetch", &uid));
    let hello = client_hello("localhost");
    // An allowed name: tunnelled, the ClientHello and what follows echoed back.
    let (status, text, mut stream) = exit.connect(&format!("localhost:{port}"), &auth, &hello);
    assert_eq!(status, 200, "{text}");
    let mut echoed = vec![0u8; hello.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, hello);
    drop(stream);

    let refusals = [
        (
            format!("evil.net:{port}"),
            auth.clone(),
            403,
            "evil.net is not allowed",
        ),
        (
            format!("169.254.169.254:{port}"),
            auth.clone(),
            403,
            "169.254.169.254 is an IP address",
        ),
        (
            format!("localhost:{}", port ^ 1),
            auth.clone(),
            403,
            "is not in the Task's egress ports",
        ),
        (
            format!("localhost:{port}"),
            format!("{NS}.fetch:{}", key.token(NS, "other", &other_uid)),
            407,
            "not a valid token of Task team-a/fetch",
        ),
    ];
    for (target, auth, want, says) in &refusals {
        let (status, text, _) = exit.connect(target, auth, &hello);
        assert_eq!(status, *want, "{target}: {text}");
        assert!(text.contains(says), "{target}: {text}");
    }

    // The Agent narrows its egress: the next connection follows.
    let agents: Api<Agent> = Api::namespaced(cluster.client.clone(), NS);
    agents
        .patch(
            "fetcher",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"egress": {"allowedDomains": ["*.example.com"]}}})),
        )
        .await
        .unwrap();
    let target = format!("localhost:{port}");
    assert!(
        exit.answers_eventually(&target, &auth, &hello, 403).await,
        "the Agent's change did not reach the exit"
    );

    // The Task finishes: its token opens nothing more.
    cluster
        .tasks(NS)
        .patch_status(
            "fetch",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Completed"}})),
        )
        .await
        .unwrap();
    assert!(
        exit.answers_eventually(&target, &auth, &hello, 407).await,
        "a finished Task's token still opened the exit"
    );

    // Refusals became Warning Events on the Task; every decision a metric.
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), NS);
    let mut denied = Vec::new();
    for _ in 0..100 {
        denied = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("EgressDenied")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("fetch")
            })
            .collect();
        if !denied.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!denied.is_empty(), "no EgressDenied Event on the Task");
    assert!(
        denied
            .iter()
            .any(|e| e.note.as_deref().is_some_and(|n| n.contains("evil.net"))),
        "{denied:?}"
    );
    let metrics = exit.get("/metrics").unwrap_or_default();
    for line in [
        "kubetask_egress_decisions_total{verdict=\"allowed\"}",
        "kubetask_egress_decisions_total{verdict=\"domain_denied\"}",
        "kubetask_egress_decisions_total{verdict=\"address_literal_denied\"} 1",
        "kubetask_egress_decisions_total{verdict=\"port_denied\"} 1",
        "kubetask_egress_decisions_total{verdict=\"unauthenticated\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    // SIGTERM with no tunnel open: the exit stops at once, cleanly.
    let mut exit = exit;
    let _ = Command::new("kill")
        .args(["-TERM", &exit.child.id().to_string()])
        .status();
    let mut status = None;
    for _ in 0..100 {
        if let Ok(Some(done)) = exit.child.try_wait() {
            status = Some(done);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn the_exit_refuses_a_short_key_with_the_file_named() {
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), b"too short\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kubetask"))
        .arg("exit")
        .arg("--token-key-file")
        .arg(key_file.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&key_file.path().display().to_string())
            && stderr.contains("the token key is 10 bytes, at least 32 are needed"),
        "{stderr}"
    );
}

impl ExitProcess {
    /// Whether a CONNECT to `target` gets `status` within 5 s (watches are asynchronous).
    async fn answers_eventually(
        &self,
        target: &str,
        auth: &str,
        hello: &[u8],
        status: u16,
    ) -> bool {
        for _ in 0..100 {
            if self.connect(target, auth, hello).0 == status {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if self.get("/readyz").is_some_and(|r| r.contains(" 200 ")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the exit never became ready");
    }
}

/// What curl — an agent's tool, reading HTTPS_PROXY as the controller set it — says when it
/// fetches `url`: whether the exit opened the tunnel, and its verbose output.
fn curl_through(proxy_url: &str, url: &str) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sv", "--max-time", "10", "--insecure", url])
        .env_clear()
        .env("HTTPS_PROXY", proxy_url)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        text.contains("CONNECT tunnel established, response 200"),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_agent_reaches_what_its_egress_allows_through_the_exit() {
    let cluster = Cluster::start().await;
    cluster
        .install_rbac_from("manifests/egress/rbac.yaml")
        .await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), [9u8; 32]).unwrap();
    let proxy = free_port();
    let _controller = cluster.controller(&[
        "--egress-key-file",
        key_file.path().to_str().unwrap(),
        "--egress-exit",
        &format!("127.0.0.1:{proxy}"),
    ]);
    let exit = spawn_exit_on(&cluster, key_file.path(), proxy);
    exit.wait_ready().await;
    let port = echo_server();
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1
kind: Agent
metadata: {{name: fetcher, namespace: {NS}}}
spec:
  serviceAccountName: default
  egress:
    mode: AllowList
    allowedDomains: [localhost]
    allowedCIDRs: [127.0.0.0/8]
    ports: [{port}]
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: hang-fetch, namespace: {NS}}}
spec:
  agentRef: fetcher
  contexts: []
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: widens, namespace: {NS}}}
spec:
  agentRef: fetcher
  egress: {{allowedDomains: [evil.net]}}
  contexts: []
"
        ))
        .await;
    // A Task that asks for more than its Agent allows never runs, and says which field.
    let widens = cluster
        .wait_reason(NS, "widens", "InvalidSpec", Duration::from_secs(30))
        .await;
    let message = widens.status.as_ref().unwrap().conditions[0]
        .message
        .clone();
    assert!(
        message.contains("spec.egress.allowedDomains[0]") && message.contains("evil.net"),
        "{message}"
    );
    assert!(cluster.jobs_of(&widens).await.is_empty());

    // The agent's containers take HTTPS_PROXY from the Task's Secret.
    let task = cluster
        .wait_reason(NS, "hang-fetch", "Running", Duration::from_secs(30))
        .await;
    assert_eq!(reason(&task), "Running");
    let job = cluster.jobs_of(&task).await.remove(0);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap_or_default();
    let from = |name: &str| {
        env.iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|r| (r.name.clone(), r.key.clone()))
    };
    let (secret_name, key) = from("HTTPS_PROXY").expect("HTTPS_PROXY from a Secret");
    assert_eq!(from("http_proxy"), Some((secret_name.clone(), key.clone())));
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(cluster.client.clone(), NS);
    let secret = secrets.get(&secret_name).await.unwrap();
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].uid,
        task.uid().unwrap(),
        "the Secret dies with its Task"
    );
    let proxy_url = String::from_utf8(secret.data.unwrap().remove(&key).unwrap().0).unwrap();

    // What the agent may reach, and what it may not, as its tools see it.
    let (tunnelled, text) = curl_through(&proxy_url, &format!("https://localhost:{port}/"));
    assert!(tunnelled, "{text}");
    for (url, says) in [
        (format!("https://evil.net:{port}/"), "403"),
        (
            format!("https://169.254.169.254:{port}/latest/meta-data/"),
            "403",
        ),
        (format!("https://[fd00:ec2::254]:{port}/"), "403"),
    ] {
        let (tunnelled, text) = curl_through(&proxy_url, &url);
        assert!(!tunnelled && text.contains(says), "{url}: {text}");
    }
    // A URL with this Task's user and a token of another uid (a deleted Task of the same
    // name) opens nothing.
    let key = TokenKey::new(&[9u8; 32]).unwrap();
    let other = format!(
        "http://{NS}.hang-fetch:{}@127.0.0.1:{proxy}",
        key.token(NS, "hang-fetch", "another-uid")
    );
    let (tunnelled, text) = curl_through(&other, &format!("https://localhost:{port}/"));
    assert!(!tunnelled && text.contains("407"), "{text}");

    // A Task's workspace repository is reachable through the exit without being listed: its
    // host and port are allowed automatically, for that Task only.
    let repository_port = echo_server();
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: hang-clone, namespace: {NS}}}
spec:
  agentRef: fetcher
  contexts: []
  workspace: {{repository: 'https://localhost:{repository_port}/org/repo.git'}}
"
        ))
        .await;
    let cloning = cluster
        .wait_reason(NS, "hang-clone", "Running", Duration::from_secs(30))
        .await;
    let clone_job = cluster.jobs_of(&cloning).await.remove(0);
    let clone_env = clone_job
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap()[0]
        .env
        .clone()
        .unwrap_or_default();
    let clone_secret = clone_env
        .iter()
        .find(|v| v.name == "HTTPS_PROXY")
        .and_then(|v| v.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .map(|r| r.name.clone())
        .expect("the clone step takes HTTPS_PROXY from the Task's Secret");
    let clone_url = String::from_utf8(
        secrets
            .get(&clone_secret)
            .await
            .unwrap()
            .data
            .unwrap()
            .remove("url")
            .unwrap()
            .0,
    )
    .unwrap();
    let repository = format!("https://localhost:{repository_port}/org/repo.git");
    // The exit learns of the new Task from its own watch: give it a moment.
    let mut answer = curl_through(&clone_url, &repository);
    for _ in 0..50 {
        if answer.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = curl_through(&clone_url, &repository);
    }
    let (tunnelled, text) = answer;
    assert!(tunnelled, "{text}");
    let (tunnelled, text) = curl_through(&proxy_url, &repository);
    assert!(!tunnelled && text.contains("403"), "another Task: {text}");

    // The pod's NetworkPolicy, rendered by the built-in plugin and accepted by the API server:
    // DNS, the exit's pods on the exit's port and the Agent's CIDR on its ports, nothing else.
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), NS);
    let policy = policies.get("hang-fetch-egress").await.unwrap();
    assert_eq!(
        policy.metadata.owner_references.as_ref().unwrap()[0].uid,
        task.uid().unwrap(),
        "the policy dies with its Task"
    );
    let spec = serde_json::to_value(policy.spec.unwrap()).unwrap();
    assert_eq!(
        spec["podSelector"],
        json!({"matchLabels": {"kubetask.io/task": "hang-fetch"}})
    );
    assert_eq!(spec["policyTypes"], json!(["Egress"]));
    let rules = spec["egress"].as_array().unwrap();
    assert_eq!(rules.len(), 3, "{spec}");
    assert_eq!(rules[0]["ports"][0], json!({"protocol": "UDP", "port": 53}));
    assert_eq!(
        rules[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "exit"
    );
    assert_eq!(
        rules[1]["ports"],
        json!([{"protocol": "TCP", "port": proxy}])
    );
    assert_eq!(
        rules[2],
        json!({"to": [{"ipBlock": {"cidr": "127.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": port}]})
    );

    // EgressEnforced says whether the pod is held to it: policies add up, so one more that
    // selects the pod and allows more egress makes it False, naming that policy.
    let enforced = wait_egress_condition(&cluster, "hang-fetch", "True").await;
    assert_eq!(enforced.reason, "PolicyEnforced");
    let allow_all: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "allow-all-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
    }))
    .unwrap();
    policies
        .create(&Default::default(), &allow_all)
        .await
        .unwrap();
    let widened = wait_egress_condition(&cluster, "hang-fetch", "False").await;
    assert_eq!(widened.reason, "PolicyWidened");
    assert!(
        widened.message.contains("allow-all-egress"),
        "{}",
        widened.message
    );
    policies
        .delete("allow-all-egress", &Default::default())
        .await
        .unwrap();
    wait_egress_condition(&cluster, "hang-fetch", "True").await;
}

/// Waits (up to 30 s) for the Task's `EgressEnforced` condition to have `status`.
async fn wait_egress_condition(
    cluster: &Cluster,
    name: &str,
    status: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let mut last = None;
    for _ in 0..300 {
        let task = cluster.tasks(NS).get(name).await.unwrap();
        last = task
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "EgressEnforced");
        if let Some(condition) = last.as_ref().filter(|c| c.status == status) {
            return condition.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("EgressEnforced never became {status}: {last:?}");
}

/// The canary: every pod starts with an init container that probes an address its policy
/// denies. Where it got through (a CNI that ignores NetworkPolicy), EgressEnforced is False
/// whatever the policies read like; where it was stopped, True. (The simulated kubelet runs
/// no process: it ends the canary container with the message a real run would write, which
/// `kubetask canary` itself is tested writing in `src/egress/canary.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_tells_a_network_that_enforces_from_one_that_does_not() {
    let address = "10.96.0.1:443";
    let outcome = move |job: &serde_json::Value| {
        let reached = job["metadata"]["name"] == "hang-leaky";
        let message = json!({"address": address, "reached": reached}).to_string();
        kubetask_test_apiserver::Script::hang()
            .with_init_message(kubetask::egress::canary::CONTAINER, message)
    };
    let cluster =
        Cluster::start_scripted(Duration::from_secs(600), std::sync::Arc::new(outcome)).await;
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), [9u8; 32]).unwrap();
    let _controller = cluster.controller(&[
        "--egress-key-file",
        key_file.path().to_str().unwrap(),
        "--egress-canary-image",
        "ghcr.io/kubetask/kubetask:v0.1.0",
        "--egress-canary-address",
        address,
    ]);
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: hang-leaky, namespace: {NS}}}
spec: {{contexts: []}}
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: hang-tight, namespace: {NS}}}
spec: {{contexts: []}}
"
        ))
        .await;
    let leaky = wait_egress_condition(&cluster, "hang-leaky", "False").await;
    assert_eq!(leaky.reason, "CanaryReached", "{}", leaky.message);
    assert!(leaky.message.contains(address), "{}", leaky.message);
    let tight = wait_egress_condition(&cluster, "hang-tight", "True").await;
    assert_eq!(tight.reason, "CanaryBlocked", "{}", tight.message);

    // The canary runs first, as its own restricted container, probing the address given.
    let task = cluster.tasks(NS).get("hang-tight").await.unwrap();
    let job = cluster.jobs_of(&task).await.remove(0);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let canary = &pod.init_containers.unwrap()[0];
    assert_eq!(canary.name, kubetask::egress::canary::CONTAINER);
    assert_eq!(
        canary.image.as_deref(),
        Some("ghcr.io/kubetask/kubetask:v0.1.0")
    );
    let command = canary.command.clone().unwrap().join(" ");
    assert!(
        command.contains(&format!("canary --address {address}")),
        "{command}"
    );
    let security = canary.security_context.clone().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
}

/// With the model gateway on too, each Task pod gets one more policy of its own: egress to the
/// gateway's pods (the meter is the way to the models). It is the Task's, so the pod's egress
/// is still enforced; both policies are accepted by the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_model_gateway_on_the_pod_also_reaches_the_gateways_pods() {
    let cluster = Cluster::start().await;
    let egress_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(egress_key.path(), [9u8; 32]).unwrap();
    let gateway_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(gateway_key.path(), [5u8; 32]).unwrap();
    let _controller = cluster.controller(&[
        "--egress-key-file",
        egress_key.path().to_str().unwrap(),
        "--model-gateway-key-file",
        gateway_key.path().to_str().unwrap(),
        "--model-gateway-pods",
        "models/app=gateway,tier=meter",
        "--model-gateway-pod-port",
        "9443",
    ]);
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: hang-metered, namespace: {NS}}}\nspec: {{contexts: []}}\n"
        ))
        .await;
    let enforced = wait_egress_condition(&cluster, "hang-metered", "True").await;
    assert_eq!(enforced.reason, "PolicyEnforced");
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), NS);
    let names: Vec<String> = policies
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(names, ["hang-metered-egress", "hang-metered-model-gateway"]);
    let gateway =
        serde_json::to_value(policies.get("hang-metered-model-gateway").await.unwrap()).unwrap();
    assert_eq!(
        gateway["spec"]["egress"],
        json!([{
            "to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "models"}},
                "podSelector": {"matchLabels": {"app": "gateway", "tier": "meter"}},
            }],
            "ports": [{"protocol": "TCP", "port": 9443}],
        }])
    );
    assert_eq!(
        gateway["spec"]["podSelector"],
        json!({"matchLabels": {"kubetask.io/task": "hang-metered"}})
    );
}
