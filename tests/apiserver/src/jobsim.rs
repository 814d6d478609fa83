//! The Job simulator: plays the Job controller and the kubelet for `batch/v1` Jobs, with pods.
//!
//! For each new Job it creates a pod from the template (owned by the Job, with the Job's
//! selector labels). After `start_delay` the pod is bound to a node and runs (the Job shows
//! `ready: 1`); after `run_time` its agent container exits as the Job's [`Script`] says. The
//! Job then does what the real Job controller does: a failed pod is ignored, counted or fails
//! the Job as `spec.podFailurePolicy` says, a new pod runs while `status.failed` ≤
//! `spec.backoffLimit` (read each time: it is mutable), and the Job ends `Complete` or
//! `Failed` with the conditions, counts and times the real controller writes.
//!
//! Like the kubelet, it stops a running pod whose `spec.activeDeadlineSeconds` has passed
//! (also when lowered on the running pod): the pod ends `Failed`/`DeadlineExceeded` and stays,
//! its log readable. A deleted pod counts as failed; a suspended Job has its active pods
//! deleted and none created until it is resumed. Pod logs (`pods/<name>/log`) are the
//! script's log lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::meta::{self, text};
use crate::server::{ServerEvents, Shared, lock};
use crate::state::{DeleteOptions, EventType, WriteOptions};

/// What one pod of a Job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Runs `run_time`, then the agent container exits with this code.
    Exit(i32),
    /// Runs `run_time`, then the node is drained: the pod fails with a `DisruptionTarget`
    /// condition (exit code 137).
    Disrupt,
    /// Never scheduled (`PodScheduled: False`, `Unschedulable`).
    Unschedulable,
    /// Runs until stopped.
    Hang,
}

/// How a simulated Job's pods behave, one [`Step`] per pod in order (the last repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<Step>,
    /// The agent container's termination message, when it exits (any code).
    pub termination_message: Option<String>,
    /// The agent container's log.
    pub log: String,
    /// Termination messages of init containers, by name (each completes when the pod starts).
    pub init_messages: std::collections::BTreeMap<String, String>,
    /// Init containers that fail, by name, with their exit code: the pod fails there, its
    /// later init containers and its containers never start.
    pub init_exits: std::collections::BTreeMap<String, i32>,
    /// Termination messages of the pod's other containers (not the agent), by name.
    pub container_messages: std::collections::BTreeMap<String, String>,
    /// Exit codes of the pod's other containers, by name, when the agent has exited (0 if
    /// unset): one that is not 0 fails the pod.
    pub container_exits: std::collections::BTreeMap<String, i32>,
}

impl Script {
    /// One pod that runs and exits with `code`.
    pub fn exit(code: i32) -> Self {
        Self::steps(vec![Step::Exit(code)])
    }

    /// Pods doing `steps`, in order.
    pub fn steps(steps: Vec<Step>) -> Self {
        Self {
            steps,
            termination_message: None,
            log: "agent started\nagent working\n".to_owned(),
            init_messages: std::collections::BTreeMap::new(),
            init_exits: std::collections::BTreeMap::new(),
            container_messages: std::collections::BTreeMap::new(),
            container_exits: std::collections::BTreeMap::new(),
        }
    }

    pub fn succeed() -> Self {
        Self::exit(0)
    }

    pub fn fail() -> Self {
        Self::exit(1)
    }

    pub fn hang() -> Self {
        Self::steps(vec![Step::Hang])
    }

    /// The same, with this termination message.
    pub fn with_termination_message(mut self, message: impl Into<String>) -> Self {
        self.termination_message = Some(message.into());
        self
    }

    /// The same, with init container `name` ending with this termination message.
    pub fn with_init_message(
        mut self,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.init_messages.insert(name.into(), message.into());
        self
    }

    /// The same, with init container `name` failing with `code` (and its message, if set).
    pub fn with_init_exit(mut self, name: impl Into<String>, code: i32) -> Self {
        self.init_exits.insert(name.into(), code);
        self
    }

    /// The same, with the pod's container `name` (not the agent) ending with this message.
    pub fn with_container_message(
        mut self,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.container_messages.insert(name.into(), message.into());
        self
    }

    /// The same, with the pod's container `name` (not the agent) exiting with `code`.
    pub fn with_container_exit(mut self, name: impl Into<String>, code: i32) -> Self {
        self.container_exits.insert(name.into(), code);
        self
    }

    fn step(&self, pod: usize) -> Step {
        self.steps
            .get(pod)
            .or(self.steps.last())
            .cloned()
            .unwrap_or(Step::Exit(0))
    }

    /// Reads an [`OUTCOME_LABEL`] value: steps separated by `.`: `succeed`, `fail`, `hang`,
    /// `exit-N`, `disrupt`, `unschedulable` (e.g. `exit-1.disrupt.succeed`).
    pub fn from_label(value: &str) -> Self {
        let steps = value
            .split('.')
            .map(|step| match step {
                "fail" => Step::Exit(1),
                "hang" => Step::Hang,
                "disrupt" => Step::Disrupt,
                "unschedulable" => Step::Unschedulable,
                other => other
                    .strip_prefix("exit-")
                    .and_then(|code| code.parse().ok())
                    .map_or(Step::Exit(0), Step::Exit),
            })
            .collect();
        Self::steps(steps)
    }
}

/// The label a test can put on a Job (or its pod template) to script its pods
/// (see [`Script::from_label`]).
pub const OUTCOME_LABEL: &str = "simulator.kubetask.io/outcome";

/// Chooses the script of a Job from the Job object.
pub type OutcomeFn = Arc<dyn Fn(&Value) -> Script + Send + Sync>;

/// Job simulator settings.
#[derive(Clone)]
pub struct JobSimulator {
    pub start_delay: Duration,
    pub run_time: Duration,
    pub outcome: OutcomeFn,
}

impl std::fmt::Debug for JobSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSimulator")
            .field("start_delay", &self.start_delay)
            .field("run_time", &self.run_time)
            .finish_non_exhaustive()
    }
}

impl Default for JobSimulator {
    fn default() -> Self {
        Self {
            start_delay: Duration::from_millis(50),
            run_time: Duration::from_millis(200),
            outcome: Arc::new(outcome_from_label),
        }
    }
}

/// The default rule: [`OUTCOME_LABEL`] on the Job or its pod template, else success.
pub fn outcome_from_label(job: &Value) -> Script {
    let label = job
        .pointer("/metadata/labels")
        .and_then(|l| l.get(OUTCOME_LABEL))
        .or_else(|| {
            job.pointer("/spec/template/metadata/labels")
                .and_then(|l| l.get(OUTCOME_LABEL))
        })
        .and_then(Value::as_str);
    label.map_or_else(Script::succeed, Script::from_label)
}

const JOBS: &str = "batch/jobs";
const PODS: &str = "/pods";
/// How often a running pod and its Job are looked at (deadline, deletion, suspension).
/// The agent container's name.
const AGENT: &str = "agent";
const TICK: Duration = Duration::from_millis(50);
/// How long a stopped container takes to exit after SIGTERM.
const GRACE: Duration = Duration::from_millis(30);

/// Runs the simulator until the server shuts down.
pub async fn run(shared: Arc<Shared>, simulator: JobSimulator) {
    // Jobs whose events are missed by falling behind do not run (logged).
    let mut events = ServerEvents::subscribe(&shared, "job simulator");
    while let Some(event) = events.next().await {
        if event.storage_key != JOBS || event.event_type != EventType::Added {
            continue;
        }
        let job = Sim {
            shared: shared.clone(),
            namespace: event.namespace.clone(),
            name: text(&event.object, "name").to_owned(),
            uid: text(&event.object, "uid").to_owned(),
            script: (simulator.outcome)(&event.object),
            start_delay: simulator.start_delay,
            run_time: simulator.run_time,
        };
        tokio::spawn(job.run());
    }
}

/// One simulated Job.
struct Sim {
    shared: Arc<Shared>,
    namespace: String,
    name: String,
    uid: String,
    script: Script,
    start_delay: Duration,
    run_time: Duration,
}

/// How a pod ended.
enum PodEnd {
    Succeeded,
    Failed {
        /// The container that failed (its exit code is the one the pod failure policy sees).
        container: String,
        exit_code: i32,
        disrupted: bool,
    },
    /// Deleted because the Job was suspended (not counted).
    Suspended,
    /// The Job was deleted or finished, or the server stopped.
    Gone,
}

impl Sim {
    async fn run(self) {
        let mut failed: i64 = 0;
        let mut pods_started = 0usize;
        loop {
            let Some(job) = self.job() else { return };
            if job.pointer("/spec/suspend") == Some(&json!(true)) {
                self.write_job(|status| {
                    set_condition(status, "Suspended", "JobSuspended", "Job suspended");
                    remove(status, "active");
                });
                tokio::time::sleep(TICK).await;
                continue;
            }
            if pods_started == 0 {
                tokio::time::sleep(self.start_delay).await;
                self.write_job(|status| {
                    if status.get("startTime").is_none() {
                        status["startTime"] = json!(meta::now());
                    }
                    remove_condition(status, "Suspended");
                    status["terminating"] = json!(0);
                    status["uncountedTerminatedPods"] = json!({});
                });
            }
            let step = self.script.step(pods_started);
            pods_started += 1;
            let Some(pod) = self.create_pod(&job) else {
                return;
            };
            self.write_job(|status| {
                status["active"] = json!(1);
                status["ready"] = json!(0);
            });
            match self.run_pod(&pod, step).await {
                PodEnd::Gone => return,
                PodEnd::Suspended => {
                    pods_started -= 1;
                }
                PodEnd::Succeeded => {
                    self.write_job(|status| {
                        let now = meta::now();
                        remove(status, "active");
                        status["ready"] = json!(0);
                        status["succeeded"] = json!(1);
                        status["completionTime"] = json!(now);
                        status["conditions"] = json!([
                            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                            {"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                        ]);
                    });
                    return;
                }
                PodEnd::Failed {
                    container,
                    exit_code,
                    disrupted,
                } => {
                    let Some(job) = self.job() else { return };
                    let verdict = pod_failure_policy(&job, &container, exit_code, disrupted);
                    if verdict != Verdict::Ignore {
                        failed += 1;
                    }
                    let backoff_limit = job
                        .pointer("/spec/backoffLimit")
                        .and_then(Value::as_i64)
                        .unwrap_or(6);
                    let fail_job = format!(
                        "Container {container} for pod failed with exit code {exit_code} matching FailJob rule"
                    );
                    let end = match verdict {
                        Verdict::FailJob => Some(("PodFailurePolicy", fail_job.as_str())),
                        _ if failed > backoff_limit => Some((
                            "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit",
                        )),
                        _ if job.pointer("/status/conditions").is_some_and(|c| {
                            c.as_array().is_some_and(|c| {
                                c.iter()
                                    .any(|c| c["type"] == "Failed" && c["status"] == "True")
                            })
                        }) =>
                        {
                            return;
                        }
                        _ => None,
                    };
                    self.write_job(|status| {
                        remove(status, "active");
                        status["ready"] = json!(0);
                        if failed > 0 {
                            status["failed"] = json!(failed);
                        }
                        if let Some((reason, message)) = end {
                            let now = meta::now();
                            status["conditions"] = json!([
                                {"type": "FailureTarget", "status": "True", "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                                {"type": "Failed", "status": "True", "reason": reason, "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                            ]);
                        }
                    });
                    if end.is_some() {
                        return;
                    }
                    // The Job controller's backoff before the next pod.
                    tokio::time::sleep(self.start_delay).await;
                }
            }
        }
    }

    /// Runs one pod through its step; returns how it ended.
    async fn run_pod(&self, pod: &str, step: Step) -> PodEnd {
        tokio::time::sleep(self.start_delay).await;
        if step == Step::Unschedulable {
            self.write_pod(pod, |pod| {
                pod["status"]["conditions"] = json!([{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
                    "lastTransitionTime": meta::now(),
                }]);
            });
        } else {
            if let Some((container, code)) = self.fail_init(pod) {
                return PodEnd::Failed {
                    container,
                    exit_code: code,
                    disrupted: false,
                };
            }
            let bound = self.bind_and_start(pod);
            if !bound {
                return self.lost();
            }
            self.write_job(|status| status["ready"] = json!(1));
        }
        let started = Instant::now();
        loop {
            tokio::time::sleep(TICK.min(self.run_time)).await;
            let Some(job) = self.job() else {
                return PodEnd::Gone;
            };
            let Some(current) = self.pod(pod) else {
                // Deleted (by the controller, the Job's suspension, or a user): failed.
                return if job.pointer("/spec/suspend") == Some(&json!(true)) {
                    PodEnd::Suspended
                } else {
                    PodEnd::Failed {
                        container: AGENT.to_owned(),
                        exit_code: 137,
                        disrupted: false,
                    }
                };
            };
            if job.pointer("/spec/suspend") == Some(&json!(true)) {
                self.delete_pod(pod);
                return PodEnd::Suspended;
            }
            if step == Step::Unschedulable {
                continue;
            }
            let deadline = current
                .pointer("/spec/activeDeadlineSeconds")
                .and_then(Value::as_u64);
            if deadline.is_some_and(|d| started.elapsed() >= Duration::from_secs(d)) {
                tokio::time::sleep(GRACE).await;
                self.end_pod(
                    pod,
                    143,
                    Some((
                        "DeadlineExceeded",
                        "Pod was active on the node longer than the specified deadline",
                    )),
                    false,
                );
                return PodEnd::Failed {
                    container: AGENT.to_owned(),
                    exit_code: 143,
                    disrupted: false,
                };
            }
            if step == Step::Hang || started.elapsed() < self.run_time {
                continue;
            }
            return match step {
                Step::Exit(0) => match self.end_pod(pod, 0, None, false) {
                    Some((container, exit_code)) => PodEnd::Failed {
                        container,
                        exit_code,
                        disrupted: false,
                    },
                    None => PodEnd::Succeeded,
                },
                Step::Exit(code) => {
                    self.end_pod(pod, code, None, false);
                    PodEnd::Failed {
                        container: AGENT.to_owned(),
                        exit_code: code,
                        disrupted: false,
                    }
                }
                _ => {
                    self.end_pod(pod, 137, None, true);
                    PodEnd::Failed {
                        container: AGENT.to_owned(),
                        exit_code: 137,
                        disrupted: true,
                    }
                }
            };
        }
    }

    fn lost(&self) -> PodEnd {
        if self.job().is_some() {
            PodEnd::Failed {
                container: AGENT.to_owned(),
                exit_code: 137,
                disrupted: false,
            }
        } else {
            PodEnd::Gone
        }
    }

    /// The Job, if it is still this one and not finished or being deleted.
    fn job(&self) -> Option<Value> {
        let state = lock(&self.shared.state);
        let rt = state.find_type("batch", "v1", "jobs")?;
        let job = state.get(&rt, &self.namespace, &self.name).ok()?;
        (text(&job, "uid") == self.uid && job.pointer("/metadata/deletionTimestamp").is_none())
            .then_some(job)
    }

    fn pod(&self, name: &str) -> Option<Value> {
        let state = lock(&self.shared.state);
        let rt = state.find_type("", "v1", "pods")?;
        let pod = state.get(&rt, &self.namespace, name).ok()?;
        pod.pointer("/metadata/deletionTimestamp")
            .is_none()
            .then_some(pod)
    }

    fn create_pod(&self, job: &Value) -> Option<String> {
        let template = job.pointer("/spec/template")?.clone();
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
            "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        pod["metadata"]["generateName"] = json!(format!("{}-", self.name));
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "Job", "name": self.name, "uid": self.uid,
            "controller": true, "blockOwnerDeletion": true,
        }]);
        let mut state = lock(&self.shared.state);
        let rt = state.find_type("", "v1", "pods")?;
        let created = state
            .create(&rt, &self.namespace, pod, &WriteOptions::default())
            .ok()?;
        let name = text(&created, "name").to_owned();
        lock(&self.shared.pod_logs).insert(
            (self.namespace.clone(), name.clone()),
            self.script.log.clone(),
        );
        Some(name)
    }

    /// Fails the pod in its first init container the script makes fail, as the kubelet
    /// reports it (`restartPolicy: Never`): the exit code, if any.
    fn fail_init(&self, pod: &str) -> Option<(String, i32)> {
        let exits = self.script.init_exits.clone();
        if exits.is_empty() {
            return None;
        }
        let messages = self.script.init_messages.clone();
        let mut failed = None;
        self.write_pod(pod, |pod| {
            let now = meta::now();
            let init = pod
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut statuses = Vec::new();
            for c in &init {
                let name = c["name"].as_str().unwrap_or_default();
                let state = match failed {
                    Some(_) => json!({"waiting": {"reason": "PodInitializing"}}),
                    None => {
                        let code = exits.get(name).copied().unwrap_or(0);
                        let mut terminated = json!({
                            "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                            "startedAt": now, "finishedAt": now,
                        });
                        if let Some(message) = messages.get(name) {
                            terminated["message"] = json!(message);
                        }
                        if code != 0 {
                            failed = Some((name.to_owned(), code));
                        }
                        json!({"terminated": terminated})
                    }
                };
                statuses.push(json!({"name": name, "image": c["image"], "ready": false, "restartCount": 0, "state": state}));
            }
            if failed.is_none() {
                return;
            }
            pod["spec"]["nodeName"] = json!("node-1");
            pod["status"] = json!({
                "phase": "Failed",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized", "lastTransitionTime": now},
                ],
                "initContainerStatuses": statuses,
                "containerStatuses": container_statuses(pod, &json!({"waiting": {"reason": "PodInitializing"}})),
            });
        });
        failed
    }

    fn bind_and_start(&self, pod: &str) -> bool {
        let init_messages = self.script.init_messages.clone();
        self.write_pod(pod, |pod| {
            let now = meta::now();
            // Init containers ran to completion before the agent started, as the kubelet runs
            // them.
            let init: Vec<Value> = pod
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let name = c["name"].as_str().unwrap_or_default();
                    let mut terminated = json!({
                        "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now,
                    });
                    if let Some(message) = init_messages.get(name) {
                        terminated["message"] = json!(message);
                    }
                    json!({
                        "name": name, "image": c["image"], "ready": true, "restartCount": 0,
                        "started": false, "state": {"terminated": terminated},
                    })
                })
                .collect();
            pod["spec"]["nodeName"] = json!("node-1");
            pod["status"] = json!({
                "phase": "Running",
                "startTime": now,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": container_statuses(pod, &json!({"running": {"startedAt": now}})),
            });
            if !init.is_empty() {
                pod["status"]["initContainerStatuses"] = Value::Array(init);
            }
        })
    }

    /// The pod's agent container exits with `code`, its other containers as the script
    /// says; returns the first of those that failed, by name, with its exit code.
    fn end_pod(
        &self,
        pod: &str,
        code: i32,
        why: Option<(&str, &str)>,
        disrupted: bool,
    ) -> Option<(String, i32)> {
        let message = self.script.termination_message.clone();
        let script = &self.script;
        let mut failed = None;
        self.write_pod(pod, |pod| {
            let now = meta::now();
            let started = pod
                .pointer("/status/startTime")
                .cloned()
                .unwrap_or_else(|| json!(now));
            let terminated = json!({
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": started,
                "finishedAt": now,
            });
            let mut statuses = container_statuses(pod, &json!({"terminated": terminated.clone()}));
            // The first container is the agent's; the script says how the others end.
            for (index, container) in statuses.as_array_mut().into_iter().flatten().enumerate() {
                let name = container["name"].as_str().unwrap_or_default().to_owned();
                let agent = index == 0;
                let state = &mut container["state"]["terminated"];
                let (exit, said) = if agent {
                    (code, message.clone())
                } else {
                    (
                        script.container_exits.get(&name).copied().unwrap_or(0),
                        script.container_messages.get(&name).cloned(),
                    )
                };
                state["exitCode"] = json!(exit);
                state["reason"] = json!(if exit == 0 { "Completed" } else { "Error" });
                if let Some(said) = said {
                    state["message"] = json!(said);
                }
                if exit != 0 && (agent || failed.is_none()) {
                    failed = Some((name, exit));
                }
            }
            let status = &mut pod["status"];
            status["phase"] = json!(if failed.is_none() { "Succeeded" } else { "Failed" });
            status["containerStatuses"] = statuses;
            status["conditions"] = json!([{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}]);
            if let Some((reason, text)) = why {
                status["reason"] = json!(reason);
                status["message"] = json!(text);
            }
            if disrupted && let Some(conditions) = status["conditions"].as_array_mut() {
                conditions.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": "Pod was terminated in response to imminent node shutdown.", "lastTransitionTime": now}));
            }
        });
        failed
    }

    fn delete_pod(&self, pod: &str) {
        let mut state = lock(&self.shared.state);
        if let Some(rt) = state.find_type("", "v1", "pods") {
            let _ = state.delete(&rt, &self.namespace, pod, &DeleteOptions::default());
        }
    }

    /// Writes the pod (spec and status) as the kubelet and scheduler do.
    fn write_pod(&self, name: &str, change: impl FnOnce(&mut Value)) -> bool {
        let mut state = lock(&self.shared.state);
        state.server_write(PODS, &self.namespace, name, change)
    }

    /// Updates the status of the Job if it is still the same object (same uid).
    fn write_job(&self, change: impl FnOnce(&mut Value)) -> bool {
        let uid = self.uid.clone();
        let mut state = lock(&self.shared.state);
        state.server_status_write(JOBS, &self.namespace, &self.name, |job| {
            if text(job, "uid") != uid {
                return;
            }
            if !job.get("status").is_some_and(Value::is_object) {
                job["status"] = json!({});
            }
            change(&mut job["status"]);
        })
    }
}

/// One status per container of the pod, in `state`.
fn container_statuses(pod: &Value, state: &Value) -> Value {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Value::Array(
        containers
            .iter()
            .map(|c| {
                json!({
                    "name": c["name"], "image": c["image"], "ready": state.get("running").is_some(),
                    "restartCount": 0, "state": state,
                })
            })
            .collect(),
    )
}

fn remove(status: &mut Value, field: &str) {
    if let Some(status) = status.as_object_mut() {
        status.remove(field);
    }
}

fn set_condition(status: &mut Value, kind: &str, reason: &str, message: &str) {
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    if !conditions.iter().any(|c| c["type"] == kind) {
        conditions.push(json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": meta::now()}));
    }
}

fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        conditions.retain(|c| c["type"] != kind);
    }
}

/// What `spec.podFailurePolicy` does with a failed pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ignore,
    Count,
    FailJob,
}

/// The first matching rule of the Job's pod failure policy (`Count` when none matches).
fn pod_failure_policy(job: &Value, container: &str, exit_code: i32, disrupted: bool) -> Verdict {
    let rules = job
        .pointer("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for rule in rules {
        let matches = if let Some(codes) = rule.get("onExitCodes") {
            let values: Vec<i64> = codes["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let contains = values.contains(&i64::from(exit_code));
            let named = codes["containerName"]
                .as_str()
                .is_none_or(|name| name == container);
            !disrupted
                && named
                && match codes["operator"].as_str() {
                    Some("In") => contains,
                    Some("NotIn") => !contains,
                    _ => false,
                }
        } else if let Some(patterns) = rule.get("onPodConditions").and_then(Value::as_array) {
            disrupted
                && patterns
                    .iter()
                    .any(|p| p["type"] == "DisruptionTarget" && p["status"] != "False")
        } else {
            false
        };
        if matches {
            return match rule["action"].as_str() {
                Some("Ignore") => Verdict::Ignore,
                Some("FailJob") => Verdict::FailJob,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_script_pods() {
        assert_eq!(
            Script::from_label("exit-1.disrupt.unschedulable.hang.succeed").steps,
            vec![
                Step::Exit(1),
                Step::Disrupt,
                Step::Unschedulable,
                Step::Hang,
                Step::Exit(0)
            ]
        );
        let script = Script::from_label("fail");
        assert_eq!(script.step(0), Step::Exit(1));
        assert_eq!(script.step(5), Step::Exit(1), "the last step repeats");
    }

    #[test]
    fn the_pod_failure_policy_decides_in_order() {
        let job = json!({"spec": {"podFailurePolicy": {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "agent", "operator": "In", "values": [3]}},
        ]}}});
        assert_eq!(
            pod_failure_policy(&job, "agent", 137, true),
            Verdict::Ignore
        );
        assert_eq!(
            pod_failure_policy(&job, "agent", 3, false),
            Verdict::FailJob
        );
        assert_eq!(
            pod_failure_policy(&job, "sidecar", 3, false),
            Verdict::Count,
            "the rule names the agent container"
        );
        assert_eq!(pod_failure_policy(&job, "agent", 1, false), Verdict::Count);
        assert_eq!(
            pod_failure_policy(&json!({}), "agent", 3, false),
            Verdict::Count
        );
    }
}
