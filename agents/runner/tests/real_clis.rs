//! The four real agent CLIs — `@anthropic-ai/claude-code`, `@openai/codex`,
//! `@google/gemini-cli` and `opencode-ai`, from npm at the versions `agents/Dockerfile` pins —
//! each run by `kubetask-agent` as an agent pod runs it, against the fake model API
//! (`tests/apiserver/src/model_api.rs`): once directly, once through the model gateway
//! (`kubetask::gateway`, in-process) with a Task's virtual key. What the real CLIs send and
//! print is what the runner's adapters must handle; the fake's answers are shaped after each
//! provider's documented responses (not recorded from the providers).
//! `scripts/install-real-clis.sh` installs the CLIs in `target/real-clis`; `.ci/run` runs it,
//! and so does this test when they are missing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kubetask::api::Task;
use kubetask::gateway::keys::{self, Caller};
use kubetask::gateway::prices::PriceTable;
use kubetask::gateway::proxy::{self, Gateway, Provider, Providers, Spent};
use kubetask_api::lifecycle::parse_report;
use kubetask_test_apiserver::model_api::{ANSWER, ModelApi, Received};
use kubetask_test_apiserver::{Config, TestApiServer};
use serde_json::json;

const NS: &str = "team-a";
const REAL_KEY: &str = "sk-real-provider-key";
const SIGNING_KEY: &[u8] = b"a signing key of at least thirty-two bytes";

/// Each CLI: the runner's name for it, its program in `node_modules/.bin`, and its model flag.
const CLIS: [(&str, &str, Option<&str>); 4] = [
    ("claude-code", "claude", None),
    ("codex", "codex", None),
    ("gemini", "gemini", None),
    ("opencode", "opencode", Some("anthropic/claude-sonnet-4-5")),
];

/// Where the real CLIs are: `$KUBETASK_REAL_CLIS`, else `target/real-clis`, installed there
/// from npm first if they are not yet (so `cargo test` alone runs them on a fresh machine).
fn clis_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
            let dir = std::env::var_os("KUBETASK_REAL_CLIS")
                .map_or_else(|| repository.join("target/real-clis"), PathBuf::from);
            let bin = dir.join("node_modules/.bin");
            let installed = ["claude", "codex", "gemini", "opencode"]
                .iter()
                .all(|program| bin.join(program).exists());
            if !installed {
                let out = Command::new(repository.join("scripts/install-real-clis.sh"))
                    .arg(&dir)
                    .output()
                    .expect("scripts/install-real-clis.sh runs");
                assert!(
                    out.status.success(),
                    "installing the real CLIs from npm into {} failed (needs node, npm and the npm registry):\n{}{}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            bin
        })
        .clone()
}

/// What one run of `kubetask-agent` left.
struct Run {
    code: Option<i32>,
    report: String,
    output: String,
}

/// Runs `cli` through `kubetask-agent` with the variables the controller gives an agent pod:
/// the model endpoint `url` and the `key`.
fn run_agent(cli: &str, program: &str, model: Option<&str>, url: &str, key: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    std::fs::write(workspace.join("task.md"), "Say hello.\n").unwrap();
    let report = dir.path().join("termination-log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path().join("home"))
        .env("TMPDIR", dir.path())
        .env("KUBETASK_AGENT_CLI", cli)
        .env("KUBETASK_AGENT_BIN", clis_dir().join(program))
        .env("KUBETASK_WORKSPACE", &workspace)
        .env("KUBETASK_REPORT_PATH", &report)
        .env("KUBETASK_MODEL_GATEWAY", url)
        .env("KUBETASK_MODEL_KEY", key)
        .env("ANTHROPIC_API_KEY", key)
        .env("OPENAI_API_KEY", key)
        .env("GEMINI_API_KEY", key)
        .env("ANTHROPIC_BASE_URL", url)
        .env("OPENAI_BASE_URL", format!("{url}/v1"))
        .env("GOOGLE_GEMINI_BASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(model) = model {
        command.env("KUBETASK_AGENT_MODEL", model);
    }
    let mut child = command.spawn().unwrap();
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("{cli} via {url}: {:?} in {:.1?}", code, started.elapsed());
    let output = child.wait_with_output().unwrap();
    Run {
        code,
        report: std::fs::read_to_string(&report).unwrap_or_default(),
        output: format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// [`run_agent`] on a blocking thread (the gateway and the fake serve on this runtime).
async fn run_in_background(
    cli: &'static str,
    program: &'static str,
    flag: Option<&'static str>,
    url: String,
    key: impl AsRef<str> + Send + 'static,
) -> Run {
    tokio::task::spawn_blocking(move || run_agent(cli, program, flag, &url, key.as_ref()))
        .await
        .unwrap()
}

/// The input and output tokens the fake reported for a request it answered (its fixed usage
/// per endpoint: `model_api.rs`); `None` for what it does not answer.
fn reported(request: &Received) -> Option<(u64, u64)> {
    let streamed = request.body["stream"].as_bool() == Some(true)
        || request.path.ends_with(":streamGenerateContent");
    match (request.path.as_str(), streamed) {
        ("/v1/messages", false) => Some((2095, 503)),
        ("/v1/messages", true) => Some((25, 15)),
        ("/v1/chat/completions", false) => Some((19, 10)),
        ("/v1/chat/completions", true) => Some((9, 12)),
        ("/v1/responses", true) => Some((1200, 40)),
        (path, false) if path.ends_with(":generateContent") => Some((11, 25)),
        (path, true) if path.ends_with(":streamGenerateContent") => Some((3000, 20)),
        _ => None,
    }
}

/// The Task whose key a CLI uses through the gateway (no controller runs: it stays running),
/// and its key.
async fn task_key(client: &kube::Client, agent: &str) -> (Caller, String) {
    named_task_key(client, &format!("{agent}-task"), agent).await
}

async fn named_task_key(client: &kube::Client, name: &str, agent: &str) -> (Caller, String) {
    let task: Task = serde_json::from_value(json!({
        "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"agentRef": agent, "contexts": []},
    }))
    .unwrap();
    let created = Api::<Task>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &task)
        .await
        .unwrap();
    let caller = Caller {
        namespace: NS.to_owned(),
        task: created.metadata.name.unwrap(),
        uid: created.metadata.uid.unwrap(),
    };
    let key = keys::mint(SIGNING_KEY, &caller);
    (caller, key)
}

/// A cluster with the CRDs and namespace `team-a`, and the gateway in-process in front of
/// `model`: its URL and the gateway, to read what it counted.
async fn cluster_and_gateway(
    model: &ModelApi,
) -> (TestApiServer, kube::Client, String, Arc<Gateway>) {
    let server = TestApiServer::start(Config::default()).unwrap();
    let client = server.client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in kubetask::crds::definitions() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let provider = Provider {
        url: model.url(),
        key: Some(REAL_KEY.to_owned()),
    };
    let gateway = Arc::new(
        Gateway::new(
            SIGNING_KEY.to_vec(),
            Providers {
                anthropic: provider.clone(),
                openai: provider.clone(),
                gemini: provider,
            },
            PriceTable::defaults(),
            client.clone(),
            32 * 1024 * 1024,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(proxy::serve(gateway.clone(), listener));
    (server, client, url, gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_real_cli_runs_against_the_fake_model_api_directly_and_through_the_gateway() {
    let model = ModelApi::start(REAL_KEY);
    let (_server, client, gateway_url, gateway) = cluster_and_gateway(&model).await;
    let mut failures = Vec::new();
    for (cli, program, flag) in CLIS {
        // Directly: the runner points the CLI at the fake as it would at the gateway.
        let before = model.received().len();
        let direct = run_in_background(cli, program, flag, model.url(), REAL_KEY).await;
        let requests: Vec<Received> = model.received().split_off(before);
        let answered: Vec<_> = requests.iter().filter_map(reported).collect();
        let parsed = parse_report(direct.report.trim());
        let summary = parsed
            .as_ref()
            .ok()
            .and_then(|p| p.as_ref())
            .map(|(result, _)| result.summary.clone())
            .unwrap_or_default();
        // Claude Code and OpenCode are asked to run a shell command first, Codex to sleep a
        // millisecond (the fake's tool calls): their run takes a second call, with the
        // tool's result.
        let ran_tool = requests.iter().any(|r| {
            let body = r.body.to_string();
            body.contains("tool_result") || body.contains("function_call_output")
        });
        let asks_tool = matches!(cli, "claude-code" | "opencode" | "codex");
        if direct.code != Some(0)
            || !summary.contains(ANSWER)
            || answered.is_empty()
            || asks_tool != ran_tool
        {
            failures.push(format!(
                "{cli} directly: exit {:?}, report {:?}, {} requests {:?}\n{}",
                direct.code,
                direct.report,
                requests.len(),
                requests.iter().map(|r| &r.path).collect::<Vec<_>>(),
                direct.output
            ));
            continue;
        }

        // Through the gateway, with the Task's virtual key: the real key reaches the fake,
        // the answer the CLI, and the gateway counts exactly what the fake reported.
        let (caller, key) = task_key(&client, cli).await;
        let before = model.received().len();
        let through = run_in_background(cli, program, flag, gateway_url.clone(), key).await;
        let requests: Vec<Received> = model.received().split_off(before);
        let expected = requests
            .iter()
            .filter_map(reported)
            .fold((0, 0), |(i, o), (ri, ro)| (i + ri, o + ro));
        let parsed = parse_report(through.report.trim());
        let summary = parsed
            .as_ref()
            .ok()
            .and_then(|p| p.as_ref())
            .map(|(result, _)| result.summary.clone())
            .unwrap_or_default();
        let mut counted = (0, 0);
        for _ in 0..100 {
            let Spent {
                input_tokens,
                output_tokens,
                ..
            } = gateway.spent(&caller);
            counted = (input_tokens, output_tokens);
            if counted == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if through.code != Some(0)
            || !summary.contains(ANSWER)
            || requests.is_empty()
            || requests.iter().any(|r| r.key.as_deref() != Some(REAL_KEY))
            || counted != expected
        {
            failures.push(format!(
                "{cli} through the gateway: exit {:?}, report {:?}, requests {:?}, metered {counted:?}, the fake reported {expected:?}\n{}",
                through.code,
                through.report,
                requests
                    .iter()
                    .map(|r| (&r.path, r.key.as_deref() == Some(REAL_KEY)))
                    .collect::<Vec<_>>(),
                through.output
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Gives `caller`'s Task a Job carrying `budget` (as the controller fixes it when it creates
/// the Job), so the gateway enforces it.
async fn budget_task(client: &kube::Client, caller: &Caller, budget: serde_json::Value) {
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
        "metadata": {"name": caller.task, "namespace": NS,
                     "annotations": {kubetask_api::budget::BUDGET_ANNOTATION: budget.to_string()}},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "agent", "image": "agent"}]}}},
    }))
    .unwrap();
    Api::<k8s_openapi::api::batch::v1::Job>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    Api::<Task>::namespaced(client.clone(), NS)
        .patch_status(
            &caller.task,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"jobName": caller.task}})),
        )
        .await
        .unwrap();
}

/// A budget of one token: the first call is let through (nothing is spent yet), the next is
/// refused. Claude Code, OpenCode and Codex run a tool between two calls, Gemini CLI routes the
/// prompt with one call before answering with another: each is stopped mid-run, the spend at
/// most one call past the budget, the runner's exit 3 (no retry helps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cli_over_its_budget_is_refused_mid_run_and_stops() {
    let model = ModelApi::start(REAL_KEY);
    let (_server, client, gateway_url, gateway) = cluster_and_gateway(&model).await;
    let mut failures = Vec::new();
    for (cli, program, flag) in CLIS {
        let (caller, key) = named_task_key(&client, &format!("{cli}-budget"), cli).await;
        budget_task(&client, &caller, json!({"maxTokens": 1})).await;
        let before = model.received().len();
        let run = run_in_background(cli, program, flag, gateway_url.clone(), key).await;
        let requests: Vec<Received> = model.received().split_off(before);
        let spent = gateway.spent(&caller);
        let one_call = requests.first().and_then(reported).unwrap_or((0, 0));
        let refused = gateway
            .metrics
            .refusals
            .get_or_create(&vec![("reason".to_owned(), "BudgetExceeded".to_owned())])
            .get();
        // Exit 3: a retry cannot help (the Job does not run the agent again).
        if run.code != Some(3)
            || requests.len() != 1
            || (spent.input_tokens, spent.output_tokens) != one_call
            || refused == 0
        {
            failures.push(format!(
                "{cli}: exit {:?}, {} calls reached the provider {:?}, spent {spent:?}, refusals {refused}\n{}",
                run.code,
                requests.len(),
                requests.iter().map(|r| &r.path).collect::<Vec<_>>(),
                run.output
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A provider overloaded (`529`) or rate-limiting (`429`) reaches the CLI as the provider sent
/// it, through the gateway, and the CLI's own retries carry the run through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cli_retries_the_providers_overload_through_the_gateway() {
    let model = ModelApi::start(REAL_KEY);
    let (_server, client, gateway_url, _gateway) = cluster_and_gateway(&model).await;
    for (cli, program, flag) in CLIS.into_iter().filter(|(cli, ..)| *cli == "claude-code") {
        let (_, key) = named_task_key(&client, &format!("{cli}-overloaded"), cli).await;
        model.fail_next(&[529, 429]);
        let before = model.received().len();
        let run = run_in_background(cli, program, flag, gateway_url.clone(), key).await;
        let calls = model.received().len() - before;
        let summary = parse_report(run.report.trim())
            .ok()
            .flatten()
            .map(|(result, _)| result.summary)
            .unwrap_or_default();
        assert!(
            run.code == Some(0) && summary.contains(ANSWER) && calls >= 3,
            "{cli}: exit {:?}, {calls} calls, {summary:?}\n{}",
            run.code,
            run.output
        );
    }
}
