//! End-to-end harness: the test API server in-process, the real `kubetask controller` binary
//! as a child process, and helpers to wait for Tasks.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use kubetask::api::{Agent, CronTask, Task, TaskPhase, TaskStatus};
use kubetask_test_apiserver::{
    Config, JobSimulator, OutcomeFn, Script, TestApiServer, outcome_from_label,
};
use serde_json::{Value, json};

/// The user the controller authenticates as (its own token), for RBAC and fault targeting.
pub const CONTROLLER_USER: &str = "system:serviceaccount:kubetask-system:kubetask-controller";
const CONTROLLER_TOKEN: &str = "controller-token";
/// The user the egress exit authenticates as (`manifests/egress/rbac.yaml`).
pub const EXIT_USER: &str = "system:serviceaccount:kubetask-system:kubetask-exit";
const EXIT_TOKEN: &str = "exit-token";
/// The user the events receiver authenticates as (`manifests/events/rbac.yaml`).
pub const EVENTS_USER: &str = "system:serviceaccount:kubetask-system:kubetask-events";
const EVENTS_TOKEN: &str = "events-token";
/// The user the model gateway authenticates as (`manifests/gateway/rbac.yaml`).
pub const GATEWAY_USER: &str = "system:serviceaccount:kubetask-system:kubetask-gateway";
const GATEWAY_TOKEN: &str = "gateway-token";

/// Where the tests' controllers and `kubetask render` runs keep compiled plugins: each plugin
/// is compiled once for the whole suite (a debug build takes seconds per example plugin).
pub fn plugin_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// Job scripts by Job name: `fail-*` fails, `hang-*` runs forever; else the pod template's
/// `simulator.kubetask.io/outcome` label (an Agent's `podLabels`), else success.
pub fn outcome_by_name(job: &Value) -> Script {
    let name = job
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.starts_with("fail-") {
        Script::fail()
    } else if name.starts_with("hang-") {
        Script::hang()
    } else {
        outcome_from_label(job)
    }
}

/// A test API server with KubeTask's CRDs and namespace, and an admin client.
pub struct Cluster {
    pub server: TestApiServer,
    pub client: Client,
    pub controller_kubeconfig: PathBuf,
    /// The exit's kubeconfig: it runs with `manifests/egress/rbac.yaml`'s permissions once
    /// [`Cluster::install_rbac_from`] created them.
    pub exit_kubeconfig: PathBuf,
    /// The events receiver's kubeconfig: it runs with `manifests/events/rbac.yaml`'s
    /// permissions once [`Cluster::install_rbac_from`] created them.
    pub events_kubeconfig: PathBuf,
    /// The model gateway's kubeconfig (`manifests/gateway/rbac.yaml` once installed).
    pub gateway_kubeconfig: PathBuf,
}

impl Cluster {
    pub async fn start() -> Self {
        Self::start_with(Duration::from_millis(100)).await
    }

    /// `run_time`: how long simulated Jobs run.
    pub async fn start_with(run_time: Duration) -> Self {
        Self::start_scripted(run_time, Arc::new(outcome_by_name)).await
    }

    /// `outcome`: the script of each simulated Job's pods.
    pub async fn start_scripted(run_time: Duration, outcome: OutcomeFn) -> Self {
        let simulator = JobSimulator {
            start_delay: Duration::from_millis(30),
            run_time,
            outcome,
        };
        // A hardened cluster: RBAC for every user but the tests' admin,
        // OwnerReferencesPermissionEnforcement, asynchronous garbage collection.
        let config = Config::default()
            .hardened()
            .with_job_simulator(simulator)
            .with_user(CONTROLLER_TOKEN, CONTROLLER_USER)
            .with_user(EXIT_TOKEN, EXIT_USER)
            .with_user(EVENTS_TOKEN, EVENTS_USER)
            .with_user(GATEWAY_TOKEN, GATEWAY_USER);
        let server = TestApiServer::start(config).expect("test API server");
        let client = server.client().await.expect("client");
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in kubetask::crds::definitions() {
            crds.create(&PostParams::default(), &crd)
                .await
                .expect("CRD");
        }
        let controller_kubeconfig = server
            .kubeconfig_for(CONTROLLER_TOKEN)
            .expect("controller kubeconfig");
        let exit_kubeconfig = server.kubeconfig_for(EXIT_TOKEN).expect("exit kubeconfig");
        let events_kubeconfig = server
            .kubeconfig_for(EVENTS_TOKEN)
            .expect("events kubeconfig");
        let gateway_kubeconfig = server
            .kubeconfig_for(GATEWAY_TOKEN)
            .expect("gateway kubeconfig");
        let cluster = Self {
            server,
            client,
            controller_kubeconfig,
            exit_kubeconfig,
            events_kubeconfig,
            gateway_kubeconfig,
        };
        cluster.namespace("kubetask-system").await;
        cluster.namespace("team-a").await;
        cluster.install_rbac().await;
        cluster
    }

    /// Creates what `manifests/rbac.yaml` holds (the controller's ServiceAccount, roles and
    /// bindings): the controller runs with exactly the permissions the install grants.
    pub async fn install_rbac(&self) {
        self.install_rbac_from("manifests/rbac.yaml").await;
    }

    /// Creates the RBAC objects of a manifest (a path relative to the repository).
    pub async fn install_rbac_from(&self, manifest: &str) {
        use k8s_openapi::api::core::v1::ServiceAccount;
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest))
            .expect("the RBAC manifest");
        let params = PostParams::default();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(document).expect("YAML");
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            let client = self.client.clone();
            let created = match object["kind"].as_str() {
                Some("ServiceAccount") => Api::<ServiceAccount>::namespaced(client, &namespace)
                    .create(&params, &serde_json::from_value(object).unwrap())
                    .await
                    .map(drop),
                Some("ClusterRole") => Api::<ClusterRole>::all(client)
                    .create(&params, &serde_json::from_value(object).unwrap())
                    .await
                    .map(drop),
                Some("ClusterRoleBinding") => Api::<ClusterRoleBinding>::all(client)
                    .create(&params, &serde_json::from_value(object).unwrap())
                    .await
                    .map(drop),
                Some("Role") => Api::<Role>::namespaced(client, &namespace)
                    .create(&params, &serde_json::from_value(object).unwrap())
                    .await
                    .map(drop),
                Some("RoleBinding") => Api::<RoleBinding>::namespaced(client, &namespace)
                    .create(&params, &serde_json::from_value(object).unwrap())
                    .await
                    .map(drop),
                other => panic!("{manifest}: unexpected kind {other:?}"),
            };
            created.expect("an RBAC object of the manifest");
        }
    }

    pub async fn namespace(&self, name: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
    }

    pub fn tasks(&self, namespace: &str) -> Api<Task> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn jobs(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates the Agents, Tasks, Budgets and CronTasks of a YAML stream, read as `kubetask
    /// render` and kubectl read them (YAML 1.1 octal file modes included); Budgets and Agents first.
    pub async fn apply_yaml(&self, yaml: &str) {
        let mut inputs = kubetask::cli::files::Inputs::default();
        let mut errors = Vec::new();
        kubetask::cli::files::parse_into(Path::new("test.yaml"), yaml, &mut inputs, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        // Budgets, which `kubetask render` skips, as they are, first (they govern the Tasks).
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let object: Value = serde::Deserialize::deserialize(document).expect("YAML");
            if object["kind"] == "Budget" {
                let budget: kubetask::api::Budget =
                    serde_json::from_value(object).expect("a Budget");
                let namespace = budget.namespace().unwrap_or_else(|| "default".into());
                Api::<kubetask::api::Budget>::namespaced(self.client.clone(), &namespace)
                    .create(&PostParams::default(), &budget)
                    .await
                    .expect("Budget");
            }
        }
        for agent in inputs.agents {
            let agent = agent.object;
            let agents: Api<Agent> = Api::namespaced(
                self.client.clone(),
                &agent.namespace().unwrap_or_else(|| "default".into()),
            );
            agents
                .create(&PostParams::default(), &agent)
                .await
                .expect("Agent");
        }
        for task in inputs.tasks {
            let task = task.object;
            self.tasks(&task.namespace().unwrap_or_else(|| "default".into()))
                .create(&PostParams::default(), &task)
                .await
                .expect("Task");
        }
        for cron_task in inputs.cron_tasks {
            let cron_task = cron_task.object;
            let cron_tasks: Api<CronTask> = Api::namespaced(
                self.client.clone(),
                &cron_task.namespace().unwrap_or_else(|| "default".into()),
            );
            cron_tasks
                .create(&PostParams::default(), &cron_task)
                .await
                .expect("CronTask");
        }
    }

    /// Creates the ConfigMap of a manifest `kubetask plugin pack` printed (a path relative to
    /// the repository), as `kubectl create -f` would.
    pub async fn install_plugin(&self, manifest: &str) -> ConfigMap {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
        let text = std::fs::read_to_string(&path).expect("the packed manifest exists");
        let map: ConfigMap = serde_yaml::from_str(&text).expect("a ConfigMap");
        let namespace = map.metadata.namespace.clone().expect("a namespace");
        self.config_maps(&namespace)
            .create(&PostParams::default(), &map)
            .await
            .expect("the plugin ConfigMap is created")
    }

    /// Waits (up to `limit`) until the Task's `Succeeded` condition has `reason`.
    pub async fn wait_reason(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        limit: Duration,
    ) -> Task {
        self.wait_task(namespace, name, limit, |status| {
            status
                .conditions
                .first()
                .is_some_and(|c| c.reason == reason)
        })
        .await
    }

    /// Sets the Task's `spec.cancel` (as `kubectl patch` or `kubetask cancel` does).
    pub async fn cancel(&self, namespace: &str, name: &str, reason: &str) {
        self.tasks(namespace)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({"spec": {"cancel": {"reason": reason}}})),
            )
            .await
            .expect("cancel the Task");
    }

    /// Starts `kubetask controller` against this cluster.
    pub fn controller(&self, extra: &[&str]) -> ControllerProcess {
        ControllerProcess::spawn(&self.controller_kubeconfig, extra)
    }

    /// Waits until the Task's status satisfies `done`, returning it.
    pub async fn wait_task(
        &self,
        namespace: &str,
        name: &str,
        limit: Duration,
        done: impl Fn(&TaskStatus) -> bool,
    ) -> Task {
        let tasks = self.tasks(namespace);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let task = tasks.get(name).await.expect("get Task");
            if task.status.as_ref().is_some_and(&done) {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Task {namespace}/{name} did not reach the state in {limit:?}; status: {:?}",
                task.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the Task's phase and returns the Task.
    pub async fn wait_phase(&self, namespace: &str, name: &str, phase: TaskPhase) -> Task {
        self.wait_task(namespace, name, Duration::from_secs(30), |s| {
            s.phase == Some(phase)
        })
        .await
    }

    /// The Jobs controlled by the Task's uid.
    pub async fn jobs_of(&self, task: &Task) -> Vec<Job> {
        let uid = task.uid().unwrap();
        let jobs = self
            .jobs(&task.namespace().unwrap())
            .list(&ListParams::default())
            .await
            .unwrap();
        jobs.items
            .into_iter()
            .filter(|job| {
                job.owner_references()
                    .iter()
                    .any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect()
    }
}

/// Waits (up to 30 s) until `api` has no object `name`: garbage collection is asynchronous,
/// as in a real cluster.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..600 {
        if api.get_opt(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} still exists after 30 s");
}

/// The `Succeeded` condition's reason.
pub fn reason(task: &Task) -> String {
    task.status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// A running `kubetask controller`; killed (SIGKILL) when dropped.
pub struct ControllerProcess {
    child: Child,
    pub metrics_port: u16,
    log: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ControllerProcess {
    pub fn spawn(kubeconfig: &Path, extra: &[&str]) -> Self {
        Self::spawn_from(
            Command::new(env!("CARGO_BIN_EXE_kubetask")),
            kubeconfig,
            extra,
        )
    }

    /// Runs `kubetask controller` from `command` (another copy of the binary, another user).
    pub fn spawn_from(mut command: Command, kubeconfig: &Path, extra: &[&str]) -> Self {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!(
            "kubetask-controller-{}-{metrics_port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = command
            .arg("controller")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info,kubetask=debug")
            // A --plugin-cache-dir among `extra` wins.
            .env("KUBETASK_PLUGIN_CACHE_DIR", plugin_cache_dir())
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start kubetask controller");
        Self {
            child,
            metrics_port,
            log,
        }
    }

    /// SIGKILL: no cleanup, no lease release.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        false
    }

    /// The process id (of the controller, or of what execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `GET` one of the HTTP endpoints; `None` if not reachable.
    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    }

    /// The value of `kubetask_leader` (None before the endpoint is up).
    pub fn is_leader(&self) -> Option<bool> {
        let metrics = self.http_get("/metrics")?;
        metrics
            .lines()
            .find(|l| l.starts_with("kubetask_leader "))
            .map(|l| l.trim_end().ends_with(" 1"))
    }

    /// The controller's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- controller log ---\n{}", self.log());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Whether every field of `expected` is in `actual` with the same value (arrays element by
/// element): the API server adds defaults, it must not change what was rendered.
pub fn is_subset(expected: &Value, actual: &Value) -> Result<(), String> {
    fn walk(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
        match (expected, actual) {
            (Value::Object(e), Value::Object(a)) => {
                for (key, value) in e {
                    let child = format!("{path}.{key}");
                    walk(
                        value,
                        a.get(key).ok_or_else(|| format!("{child} is missing"))?,
                        &child,
                    )?;
                }
                Ok(())
            }
            (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
                .iter()
                .zip(a)
                .enumerate()
                .try_for_each(|(i, (e, a))| walk(e, a, &format!("{path}[{i}]"))),
            (e, a) if e == a => Ok(()),
            (e, a) => Err(format!("{path}: rendered {e}, server has {a}")),
        }
    }
    walk(expected, actual, "")
}

/// `kubetask render -o json` of some files: their Jobs and ConfigMaps.
pub fn render_offline(files: &[String]) -> Vec<Value> {
    let mut args = Vec::new();
    for file in files {
        args.extend(["-f", file.as_str()]);
    }
    render_offline_with(&args)
}

/// `kubetask render -o json` with these arguments (files, `--plugin`, `--policy`).
pub fn render_offline_with(args: &[&str]) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_kubetask"))
        .args(["render", "-o", "json"])
        .args(args)
        .env("KUBETASK_PLUGIN_CACHE_DIR", plugin_cache_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    list["items"].as_array().cloned().unwrap()
}

/// Runs the `kubetask` binary in the repository root: exit code, stdout, stderr.
pub fn kubetask(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kubetask"))
        .args(args)
        .env("KUBETASK_PLUGIN_CACHE_DIR", plugin_cache_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kubetask runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
    (
        output.status.code().unwrap_or(-1),
        text(output.stdout),
        text(output.stderr),
    )
}

/// The schedule clock: a file the controller reads "now" from.
pub struct TestClock {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestClock {
    pub fn at(time: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        std::fs::write(&path, time).unwrap();
        Self { _dir: dir, path }
    }

    pub fn set(&self, time: &str) {
        // Written whole then renamed, so the controller never reads half a time.
        let next = self.path.with_extension("next");
        std::fs::write(&next, time).unwrap();
        std::fs::rename(&next, &self.path).unwrap();
    }

    pub fn flag(&self) -> [&str; 2] {
        ["--test-clock-file", self.path.to_str().unwrap()]
    }
}

/// The server-side Table `kubectl get` asks for.
pub async fn table(client: &Client, namespace: &str, resource: &str) -> Value {
    let request = http::Request::get(format!(
        "/apis/kubetask.io/v1alpha1/namespaces/{namespace}/{resource}"
    ))
    .header(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )
    .body(Vec::new())
    .unwrap();
    serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap()
}

/// Waits (up to 60 s) until `check` holds for the Budget's status; returns it.
pub async fn wait_budget(
    budgets: &Api<kubetask::api::Budget>,
    name: &str,
    what: &str,
    check: impl Fn(&kubetask::api::BudgetStatus) -> bool,
) -> kubetask::api::BudgetStatus {
    let mut last = kubetask::api::BudgetStatus::default();
    for _ in 0..1200 {
        last = budgets
            .get(name)
            .await
            .expect("the Budget")
            .status
            .unwrap_or_default();
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Budget {name}: {what} did not happen within 60 s; its status: {last:#?}");
}
