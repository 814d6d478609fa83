//! `kubetask gateway serve` against the test API server and the fake model API
//! (`tests/apiserver/src/model_api.rs`), with `manifests/gateway/rbac.yaml`'s permissions: a
//! Task's virtual key is swapped for the provider's real key, whole and streamed responses pass
//! through (a stream as it comes: the fake holds it after its first event until the test has
//! read that event through the gateway), their usage is counted by namespace, Agent and model,
//! and keys that are not a running Task's are refused in the provider's own error shape.

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Patch, PatchParams, PostParams};
use kubetask::gateway::keys::{self, Caller};
use kubetask_test_apiserver::model_api::ModelApi;
use serde_json::{Value, json};

use super::support::{Cluster, free_port};

const NS: &str = "team-a";
const SIGNING_KEY: &str = "5f0e2b0c3d7a4e1f9a8b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f";
const REAL_KEY: &str = "sk-real-provider-key";

struct Gateway {
    child: Child,
    port: u16,
    metrics_port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(cluster: &Cluster, model: &ModelApi) -> Gateway {
        Self::start_with(cluster, model, &[])
    }

    fn start_with(cluster: &Cluster, model: &ModelApi, extra: &[&str]) -> Gateway {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "gateway-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("signing-key"), SIGNING_KEY).unwrap();
        for provider in ["anthropic", "openai", "gemini"] {
            std::fs::write(dir.join("keys").join(provider), REAL_KEY).unwrap();
        }
        let (port, metrics_port) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_kubetask"))
            .args(["gateway", "serve", "--kubeconfig"])
            .arg(&cluster.gateway_kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .arg("--signing-key-file")
            .arg(dir.join("signing-key"))
            .arg("--keys-dir")
            .arg(dir.join("keys"))
            .args(["--anthropic-url", &model.url()])
            .args(["--openai-url", &model.url()])
            .args(["--gemini-url", &model.url()])
            .args(extra)
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubetask gateway starts");
        // Owned by the guard at once: its Drop kills and waits on every path.
        let gateway = Gateway {
            child,
            port,
            metrics_port,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return gateway;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("kubetask gateway does not listen");
    }

    /// Sends a request; the connection, to read the answer from.
    fn send(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> std::net::TcpStream {
        let body = body.to_string();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        stream
    }

    /// A whole exchange: the status and the body's text (chunked encoding undone).
    fn call(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, String) {
        let mut stream = self.send(path, headers, body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    }

    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            return out;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
}

/// A cluster with the gateway's RBAC installed (it runs with exactly those permissions).
async fn gateway_cluster() -> Cluster {
    let cluster = Cluster::start().await;
    cluster
        .install_rbac_from("manifests/gateway/rbac.yaml")
        .await;
    cluster
}

/// [`gateway_cluster`] and the fake model API the gateway forwards to.
async fn metered_cluster() -> (Cluster, ModelApi) {
    (gateway_cluster().await, ModelApi::start(REAL_KEY))
}

/// A Task (no controller runs: it stays unfinished) and its virtual key.
async fn task_and_key(cluster: &Cluster, name: &str) -> String {
    let task: kubetask::api::Task = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"agentRef": "claude-code", "contexts": []},
    }))
    .unwrap();
    let created = cluster
        .tasks(NS)
        .create(&PostParams::default(), &task)
        .await
        .unwrap();
    keys::mint(
        SIGNING_KEY.as_bytes(),
        &Caller {
            namespace: NS.to_owned(),
            task: name.to_owned(),
            uid: created.metadata.uid.unwrap(),
        },
    )
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_key_reaches_the_provider_as_the_real_key_and_its_usage_is_counted() {
    let (cluster, model) = metered_cluster().await;
    let gateway = Gateway::start(&cluster, &model);
    let key = task_and_key(&cluster, "fix-bug").await;

    // Anthropic, whole: the real key went out, the answer came back unchanged.
    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = gateway.call("/v1/messages", &[("x-api-key", &key)], &request);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["usage"]["output_tokens"],
        503
    );
    let received = model.received();
    assert_eq!(
        received[0].key.as_deref(),
        Some(REAL_KEY),
        "the agent's key never leaves"
    );
    assert_eq!(received[0].body, request);

    // Anthropic, streamed: the first event arrives while the provider still holds the rest.
    model.hold_streams();
    let mut stream = gateway.send(
        "/v1/messages",
        &[("x-api-key", &key)],
        &json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 64, "messages": []}),
    );
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("message_start") {
        let n = stream
            .read(&mut buffer)
            .expect("the first event, before the rest exists");
        assert!(
            n > 0,
            "the stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("message_stop"));
    model.release();
    let _ = stream.read_to_end(&mut seen);
    assert!(String::from_utf8_lossy(&seen).contains("message_stop"));

    // OpenAI (Bearer) and Gemini (?key=) too.
    let (status, _) = gateway.call(
        "/v1/chat/completions",
        &[("Authorization", &format!("Bearer {key}"))],
        &json!({"model": "gpt-5-mini", "messages": []}),
    );
    assert_eq!(status, 200);
    let (status, _) = gateway.call(
        &format!("/v1beta/models/gemini-2.5-flash:generateContent?key={key}"),
        &[],
        &json!({"contents": []}),
    );
    assert_eq!(status, 200);
    assert!(
        model
            .received()
            .iter()
            .all(|r| r.key.as_deref() == Some(REAL_KEY))
    );

    // Counted by namespace, Agent, model: 2,095 + 25 input tokens of Sonnet, 503 + 15 output.
    let mut text = String::new();
    for _ in 0..100 {
        text = gateway.metrics();
        if text.contains("gemini-2.5-flash") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sonnet = r#"namespace="team-a",agent="claude-code",model="claude-sonnet-4-5-20250929""#;
    assert_eq!(
        metric(
            &text,
            &format!("kubetask_gateway_tokens_total{{{sonnet},kind=\"input\"}}")
        ),
        Some(2120.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("kubetask_gateway_tokens_total{{{sonnet},kind=\"output\"}}")
        ),
        Some(518.0),
        "{text}"
    );
    // $3/$15 per million: 2,120 × 3 + 518 × 15 micro-dollars.
    assert_eq!(
        metric(
            &text,
            &format!("kubetask_gateway_cost_microdollars_total{{{sonnet}}}")
        ),
        Some(14_130.0),
        "{text}"
    );
    assert!(
        text.contains(r#"model="gpt-5-mini""#) && text.contains(r#"model="gemini-2.5-flash""#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_are_not_a_running_tasks_are_refused_in_the_providers_shape() {
    let (cluster, model) = metered_cluster().await;
    let gateway = Gateway::start(&cluster, &model);
    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": []});
    // The provider's own key, a forged one, one signed with another key.
    let other = keys::mint(
        b"another signing key, not the gateway's",
        &Caller {
            namespace: NS.to_owned(),
            task: "x".to_owned(),
            uid: "u".to_owned(),
        },
    );
    for key in [REAL_KEY, "ktk_forged.key", other.as_str()] {
        let (status, body) = gateway.call("/v1/messages", &[("x-api-key", key)], &request);
        assert_eq!(status, 401, "{key}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    }
    // A CLI's connectivity check is answered, needs no key and is no refusal; a path that
    // is not a model API is refused.
    let (status, _) = gateway.call("/", &[], &json!({}));
    assert_eq!(status, 200);
    let (status, _) = gateway.call("/v1/files", &[], &json!({}));
    assert_eq!(status, 404);
    let (status, body) = gateway.call("/v1/chat/completions", &[], &json!({"messages": []}));
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "invalid_api_key"
    );
    // A finished Task's key died with it; a deleted and re-created Task's old key too.
    let key = task_and_key(&cluster, "done").await;
    let finished = json!({"status": {"phase": "Completed", "conditions": [{"type": "Succeeded",
        "status": "True", "reason": "Completed", "message": "", "lastTransitionTime": "2026-12-07T01:00:00Z"}]}});
    cluster
        .tasks(NS)
        .patch_status("done", &PatchParams::default(), &Patch::Merge(&finished))
        .await
        .unwrap();
    let (status, body) = gateway.call("/v1/messages", &[("x-api-key", &key)], &request);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("finished or is gone"), "{body}");
    let old = task_and_key(&cluster, "again").await;
    cluster
        .tasks(NS)
        .delete("again", &Default::default())
        .await
        .unwrap();
    task_and_key(&cluster, "again").await;
    assert_eq!(
        gateway
            .call("/v1/messages", &[("x-api-key", &old)], &request)
            .0,
        401
    );
    assert!(
        model.received().is_empty(),
        "nothing reached the provider: {:?}",
        model.received()
    );
    let text = gateway.metrics();
    assert_eq!(
        metric(
            &text,
            r#"kubetask_gateway_refusals_total{reason="UnknownKey"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"kubetask_gateway_refusals_total{reason="TaskNotRunning"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"kubetask_gateway_refusals_total{reason="NotMetered"}"#
        ),
        Some(1.0),
        "only /v1/files: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_mints_each_tasks_key_and_points_its_agent_at_the_gateway() {
    let (cluster, model) = metered_cluster().await;
    let (gateway, url, _controller) = gateway_and_controller(&cluster, &model, &[]);
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1
kind: Agent
metadata: {{name: claude-code, namespace: {NS}}}
spec:
  serviceAccountName: default
  credentials:
    - name: real-key
      secretRef: {{name: anthropic, key: api-key}}
      env: ANTHROPIC_API_KEY
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: hang-model, namespace: {NS}}}
spec:
  agentRef: claude-code
  contexts: []
"
        ))
        .await;
    let task = cluster
        .wait_reason(NS, "hang-model", "Running", Duration::from_secs(30))
        .await;
    let job = cluster.jobs_of(&task).await.remove(0);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap_or_default();
    let value = |name: &str| {
        let found: Vec<_> = env.iter().filter(|v| v.name == name).collect();
        assert_eq!(found.len(), 1, "{name} once: {env:?}");
        found[0].clone()
    };
    // The Agent's real key is gone from the agent: the Task's virtual key took its place.
    let from = value("ANTHROPIC_API_KEY")
        .value_from
        .and_then(|v| v.secret_key_ref)
        .expect("ANTHROPIC_API_KEY from the Task's Secret");
    assert_ne!(from.name, "anthropic");
    assert_eq!(value("ANTHROPIC_BASE_URL").value, Some(url.clone()));
    assert_eq!(value("OPENAI_BASE_URL").value, Some(format!("{url}/v1")));
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(cluster.client.clone(), NS);
    let secret = secrets.get(&from.name).await.unwrap();
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].uid,
        task.metadata.uid.clone().unwrap(),
        "the key dies with its Task"
    );
    let key = String::from_utf8(secret.data.unwrap().remove(&from.key).unwrap().0).unwrap();

    // What the agent's CLI sends with that key reaches the provider with the real one.
    let (status, body) = gateway.call(
        "/v1/messages",
        &[("x-api-key", &key)],
        &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(model.received()[0].key.as_deref(), Some(REAL_KEY));
    // The Task's Event says the Agent's key was replaced.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(cluster.client.clone(), NS);
    let mut notes = Vec::new();
    for _ in 0..100 {
        notes = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("RenderWarning"))
            .filter_map(|e| e.note)
            .collect();
        if !notes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        notes.iter().any(|n| n.contains("ANTHROPIC_API_KEY")),
        "{notes:?}"
    );
}

/// The gateway (with `extra` flags) and a controller minting keys for it; the gateway's URL.
fn gateway_and_controller(
    cluster: &Cluster,
    model: &ModelApi,
    extra: &[&str],
) -> (Gateway, String, super::support::ControllerProcess) {
    let key_file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gateway-signing-key-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&key_file, SIGNING_KEY).unwrap();
    let gateway = Gateway::start_with(cluster, model, extra);
    let url = format!("http://127.0.0.1:{}", gateway.port);
    let controller = cluster.controller(&[
        "--model-gateway-key-file",
        key_file.to_str().unwrap(),
        "--model-gateway-url",
        &url,
    ]);
    (gateway, url, controller)
}

/// The Task's key, from the Secret the controller minted, once its Job runs.
async fn minted_key(cluster: &Cluster, task: &str) -> String {
    let task = cluster
        .wait_reason(NS, task, "Running", Duration::from_secs(30))
        .await;
    let job = cluster.jobs_of(&task).await.remove(0);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let from = pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "ANTHROPIC_API_KEY")
        .and_then(|v| v.value_from)
        .and_then(|v| v.secret_key_ref)
        .expect("ANTHROPIC_API_KEY from the Task's Secret");
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(cluster.client.clone(), NS);
    let mut data = secrets.get(&from.name).await.unwrap().data.unwrap();
    String::from_utf8(data.remove(&from.key).unwrap().0).unwrap()
}

/// The Task's `status.usage` once it holds `tokens` (input and output) as the gateway's ledger.
async fn wait_ledger(cluster: &Cluster, task: &str, tokens: i64) -> kubetask::api::Usage {
    let mut usage = None;
    for _ in 0..200 {
        usage = cluster
            .tasks(NS)
            .get(task)
            .await
            .unwrap()
            .status
            .and_then(|s| s.usage);
        if usage.as_ref().is_some_and(|u| {
            u.metered == Some(true)
                && u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0) == tokens
        }) {
            return usage.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the ledger of {task} never held {tokens} tokens: {usage:?}");
}

/// Two gateway replicas metering one Task: each adds only what it metered since its last write,
/// under the Task's `resourceVersion`, so the ledger is the exact sum of both (no call counted
/// twice, none lost), whichever wrote first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_replicas_add_up_exactly_on_one_ledger() {
    let (cluster, model) = metered_cluster().await;
    let write_often = ["--usage-write-interval", "1s"];
    let (first, _, _controller) = gateway_and_controller(&cluster, &model, &write_often);
    let second = Gateway::start_with(&cluster, &model, &write_often);
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1\nkind: Task\nmetadata: {{name: hang-replicas, namespace: {NS}}}\nspec: {{contexts: []}}\n"
        ))
        .await;
    let key = minted_key(&cluster, "hang-replicas").await;
    for round in 0..3 {
        for gateway in [&first, &second] {
            let (status, body) = gateway.call(
                "/v1/messages",
                &[("x-api-key", &key)],
                &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}),
            );
            assert_eq!(status, 200, "round {round}: {body}");
        }
    }
    // Six whole answers of 2,598 tokens, each counted once.
    let usage = wait_ledger(&cluster, "hang-replicas", 6 * 2598).await;
    assert_eq!(usage.cost.as_deref(), Some("0.082980"));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let usage = wait_ledger(&cluster, "hang-replicas", 6 * 2598).await;
    assert_eq!(
        usage.input_tokens.unwrap_or(0) + usage.output_tokens.unwrap_or(0),
        6 * 2598,
        "nothing added twice after more writes: {usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_is_recorded_on_the_task_across_a_gateway_restart_and_a_budget_stops_it() {
    let (cluster, model) = metered_cluster().await;
    let write_often = ["--usage-write-interval", "1s"];
    let (gateway, _, _controller) = gateway_and_controller(&cluster, &model, &write_often);
    // One whole Anthropic answer of the fake is 2,095 + 503 = 2,598 tokens: the budget
    // allows one call and a second, which takes the Task past it.
    cluster
        .apply_yaml(&format!(
            "apiVersion: kubetask.io/v1alpha1
kind: Agent
metadata: {{name: claude-code, namespace: {NS}}}
spec:
  serviceAccountName: default
  budget: {{maxTokens: 3000}}
---
apiVersion: kubetask.io/v1alpha1
kind: Task
metadata: {{name: hang-budget, namespace: {NS}}}
spec:
  agentRef: claude-code
  contexts: []
"
        ))
        .await;
    let key = minted_key(&cluster, "hang-budget").await;
    let call = |gateway: &Gateway| {
        gateway.call(
            "/v1/messages",
            &[("x-api-key", &key)],
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 32000, "messages": []}),
        )
    };
    let (status, body) = call(&gateway);
    assert_eq!(status, 200, "{body}");
    let usage = wait_ledger(&cluster, "hang-budget", 2598).await;
    // $3/$15 per million tokens of Sonnet 4.5.
    assert_eq!(usage.cost.as_deref(), Some("0.013830"));

    // A gateway killed outright loses nothing it recorded: the next one adds to the ledger.
    drop(gateway);
    let gateway = Gateway::start_with(&cluster, &model, &write_often);
    let (status, body) = call(&gateway);
    assert_eq!(status, 200, "{body}");
    wait_ledger(&cluster, "hang-budget", 2 * 2598).await;

    // Each call asked for up to 32,000 tokens of answer; the gateway lowered that to what the
    // budget had left: all of it, then 3,000 - 2,598 = 402.
    let asked: Vec<Value> = model
        .received()
        .iter()
        .map(|r| r.body["max_tokens"].clone())
        .collect();
    assert_eq!(asked, [json!(3000), json!(402)]);

    // Past the budget: the next call is refused, in Anthropic's shape, as final.
    let (status, body) = call(&gateway);
    assert_eq!(status, 403, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["error"]["type"], "permission_error", "{body}");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("5196 tokens of its budget of 3000"),
        "{body}"
    );
    assert_eq!(
        model.received().len(),
        2,
        "the refused call never reached the provider"
    );

    // The controller stops the agent as cancel does: Failed/BudgetExceeded, logs kept, and the
    // ledger is still the gateway's (at most one call past the budget).
    let task = cluster
        .wait_reason(NS, "hang-budget", "BudgetExceeded", Duration::from_secs(30))
        .await;
    let status = task.status.clone().unwrap();
    assert_eq!(status.phase, Some(kubetask::api::TaskPhase::Failed));
    assert!(
        status.conditions[0].message.contains("5196 tokens"),
        "{:?}",
        status.conditions
    );
    let usage = status.usage.unwrap();
    assert_eq!(usage.metered, Some(true));
    assert_eq!(
        usage.input_tokens.unwrap() + usage.output_tokens.unwrap(),
        2 * 2598
    );
    assert!(
        status
            .attempts
            .last()
            .is_some_and(|a| a.reason == "BudgetExceeded"),
        "{:?}",
        status.attempts
    );
    // Every permission of the gateway's role was needed, and none was missing.
    super::rbac::assert_sufficient_and_minimal(
        &cluster,
        super::support::GATEWAY_USER,
        "manifests/gateway/rbac.yaml",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_price_table_takes_effect_and_a_bad_one_is_refused_keeping_the_last() {
    let cluster = gateway_cluster().await;
    let prices = tempfile::NamedTempFile::new().unwrap();
    let table =
        |input: &str| format!("models:\n  claude-sonnet-4*: {{input: {input}, output: 0}}\n");
    std::fs::write(prices.path(), table("1")).unwrap();
    let model = ModelApi::start(REAL_KEY);
    let path = prices.path().to_str().unwrap().to_owned();
    let gateway = Gateway::start_with(
        &cluster,
        &model,
        &["--prices-file", &path, "--prices-reload-interval", "1s"],
    );
    let key = task_and_key(&cluster, "priced").await;
    let sonnet = r#"kubetask_gateway_cost_microdollars_total{namespace="team-a",agent="claude-code",model="claude-sonnet-4-5-20250929"}"#;
    // Each whole answer has 2,095 input tokens: 2,095 micro-dollars at $1 per million.
    let cost_after_a_call = |gateway: &Gateway| {
        let before = metric(&gateway.metrics(), sonnet).unwrap_or(0.0);
        let (status, body) = gateway.call(
            "/v1/messages",
            &[("x-api-key", &key)],
            &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}),
        );
        assert_eq!(status, 200, "{body}");
        let mut after = before;
        for _ in 0..100 {
            after = metric(&gateway.metrics(), sonnet).unwrap_or(0.0);
            if after > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        after - before
    };
    assert_eq!(cost_after_a_call(&gateway), 2095.0);
    // A bad entry: refused, counted, and the table in force stays.
    std::fs::write(
        prices.path(),
        "models:\n  claude-sonnet-4*: {input: -3, output: 0}\n",
    )
    .unwrap();
    let mut errors = None;
    for _ in 0..100 {
        errors = metric(
            &gateway.metrics(),
            "kubetask_gateway_price_table_errors_total",
        );
        if errors == Some(1.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(errors, Some(1.0), "{}", gateway.metrics());
    assert_eq!(cost_after_a_call(&gateway), 2095.0);
    // A good edit takes effect without a restart.
    std::fs::write(prices.path(), table("2")).unwrap();
    let mut cost = 0.0;
    for _ in 0..40 {
        cost = cost_after_a_call(&gateway);
        if cost == 4190.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cost, 4190.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_pass_through_unmetered_and_a_cut_stream_counts_what_came() {
    let (cluster, model) = metered_cluster().await;
    let gateway = Gateway::start(&cluster, &model);
    let key = task_and_key(&cluster, "faults").await;
    let request = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []});

    // 429 and 529 reach the CLI as the provider sent them (its retry logic decides), unmetered.
    model.fail_next(&[429, 529]);
    for (expected, kind) in [(429, "rate_limit_error"), (529, "overloaded_error")] {
        let (status, body) = gateway.call("/v1/messages", &[("x-api-key", &key)], &request);
        assert_eq!(status, expected, "{body}");
        assert!(body.contains(kind), "{body}");
    }

    // A stream cut after its first event: the CLI sees it end early; its usage so far counts.
    model.cut_next_stream();
    let mut stream = gateway.send(
        "/v1/messages",
        &[("x-api-key", &key)],
        &json!({"model": "claude-sonnet-4-5", "stream": true, "max_tokens": 64, "messages": []}),
    );
    let mut seen = Vec::new();
    let _ = stream.read_to_end(&mut seen);
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.contains("message_start") && !seen.contains("message_stop"),
        "{seen}"
    );

    let sonnet = r#"namespace="team-a",agent="claude-code",model="claude-sonnet-4-5-20250929""#;
    let mut text = String::new();
    for _ in 0..100 {
        text = gateway.metrics();
        if text.contains(sonnet) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (series, value) in [
        (
            format!("kubetask_gateway_tokens_total{{{sonnet},kind=\"input\"}}"),
            Some(25.0),
        ),
        (
            format!("kubetask_gateway_tokens_total{{{sonnet},kind=\"output\"}}"),
            Some(1.0),
        ),
        (
            r#"kubetask_gateway_upstream_errors_total{code="429"}"#.to_owned(),
            Some(1.0),
        ),
        (
            r#"kubetask_gateway_upstream_errors_total{code="529"}"#.to_owned(),
            Some(1.0),
        ),
    ] {
        assert_eq!(metric(&text, &series), value, "{series}\n{text}");
    }
    assert!(
        !text.contains("kubetask_gateway_unpriced_responses_total{"),
        "an error answer is not an unpriced response:\n{text}"
    );

    // An answer without usage: passed on, counted as unpriced (never free).
    let (status, body) = gateway.call(
        "/v1/messages",
        &[("x-api-key", &key)],
        &json!({"model": kubetask_test_apiserver::model_api::NO_USAGE_MODEL, "max_tokens": 64, "messages": []}),
    );
    assert_eq!(status, 200, "{body}");
    let unpriced = r#"kubetask_gateway_unpriced_responses_total{namespace="team-a",agent="claude-code",model="unknown"}"#;
    let mut counted = None;
    for _ in 0..100 {
        counted = metric(&gateway.metrics(), unpriced);
        if counted.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counted, Some(1.0), "{}", gateway.metrics());
}
