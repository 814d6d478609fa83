//! The exit in a cluster: the Tasks it serves from watches of Tasks and Agents (each Task's
//! grant computed when asked, so an Agent's change applies to the next connection), and its
//! Events posted on the Task through kube's recorder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures::StreamExt as _;
use kube::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource as _, ResourceExt as _};
use kubetask_api::egress::{EgressMode, EgressPolicy};
use kubetask_api::{Agent, DEFAULT_AGENT_NAME, Task};
use prometheus_client::registry::Registry;

use super::audit::{EventSink, ExitAudit};
use super::exit::{Decision, Exit, Grant, Limits, SystemResolver, Tasks, Verdict};
use super::token::TokenKey;
use crate::controller::status::is_finished;
use crate::controller::{cached, health, scoped, termination};

/// How `kubetask exit` runs.
pub struct Options {
    /// Kubeconfig file (else the usual inference).
    pub kubeconfig: Option<PathBuf>,
    /// Serve the Tasks of this namespace only (default: all).
    pub namespace: Option<String>,
    /// Where agents connect (the proxy port).
    pub listen: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub metrics_address: SocketAddr,
    /// The file holding the token key (the `kubetask-egress-key` Secret, mounted).
    pub token_key_file: PathBuf,
    /// The mode of Tasks whose Agent and themselves set none.
    pub default_mode: EgressMode,
    /// The exit's limits.
    pub limits: Limits,
    /// This replica's name in its Events.
    pub identity: Option<String>,
    /// After SIGTERM, how long open tunnels may finish (new connections are refused at once).
    pub drain: std::time::Duration,
}

/// Reads the token key: at least 32 bytes (trailing white space, as `kubectl create secret
/// --from-file` may leave it, is part of the key only when the file holds nothing else).
pub fn read_key(path: &std::path::Path) -> anyhow::Result<TokenKey> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the token key {}", path.display()))?;
    TokenKey::new(&bytes).with_context(|| {
        format!(
            "{}: the token key is {} bytes, at least {} are needed (e.g. `head -c 32 /dev/urandom`)",
            path.display(),
            bytes.len(),
            super::token::MIN_KEY_BYTES
        )
    })
}

/// Runs the exit until SIGTERM: watches Tasks and Agents, serves the proxy port and the
/// probe port (ready once both watches have listed).
pub async fn run(options: Options) -> anyhow::Result<()> {
    let key = read_key(&options.token_key_file)?;
    let client = crate::client::connect(options.kubeconfig.as_deref(), None).await?;
    let namespace = options.namespace.as_deref();
    let (tasks, task_writer) = reflector::store::<Task>();
    let (agents, agent_writer) = reflector::store::<Agent>();
    tokio::spawn(reflect(
        scoped(&client, namespace),
        cached::task,
        task_writer,
    ));
    tokio::spawn(reflect(
        scoped(&client, namespace),
        cached::agent,
        agent_writer,
    ));

    let mut registry = Registry::with_prefix("kubetask");
    let reporter = Reporter {
        controller: "kubetask-exit".to_owned(),
        instance: options.identity.clone(),
    };
    let events = TaskEvents {
        recorder: Recorder::new(client.clone(), reporter),
        tasks: tasks.clone(),
    };
    let audit = Arc::new(ExitAudit::new(&mut registry, Some(Arc::new(events))));
    let registry = Arc::new(registry);
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics: health::MetricsText = Arc::new(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .ok()
            .map(|()| text)
    });
    let probes = health::serve_with(options.metrics_address, ready.clone(), metrics, stopped)
        .await
        .with_context(|| format!("binding {}", options.metrics_address))?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    tracing::info!(proxy = %options.listen, probes = %probes, "exit starting");
    tasks
        .wait_until_ready()
        .await
        .context("the Task watch ended")?;
    agents
        .wait_until_ready()
        .await
        .context("the Agent watch ended")?;
    ready.store(true, Ordering::Release);
    tracing::info!("exit ready");
    let exit = Arc::new(Exit::new(
        key,
        Arc::new(ClusterTasks {
            tasks,
            agents,
            default_mode: options.default_mode,
        }),
        Arc::new(SystemResolver),
        audit,
        options.limits,
    ));
    let stopping = async {
        termination().await;
        tracing::info!(
            drain_seconds = options.drain.as_secs(),
            "termination signal: refusing new connections, draining open tunnels"
        );
    };
    let left = exit
        .serve_until(listener, stopping, options.drain)
        .await
        .context("serving the proxy port")?;
    if left > 0 {
        tracing::warn!(
            tunnels = left,
            "tunnels still open after the drain: closing them"
        );
    }
    let _ = stop.send(true);
    Ok(())
}

/// Keeps `writer`'s store in step with `api` (objects trimmed by `trim`), retrying with
/// backoff; a failing watch is logged (the CRD not installed, access denied).
async fn reflect<K>(api: Api<K>, trim: fn(&mut K), writer: reflector::store::Writer<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .for_each(|event| {
            if let Err(error) = event {
                let kind = K::kind(&());
                tracing::warn!(%error, "watching {kind}s (is the {kind} CRD installed?)");
            }
            futures::future::ready(())
        })
        .await;
}

/// The Tasks and Agents the exit watches.
pub struct ClusterTasks {
    /// Every watched Task.
    pub tasks: Store<Task>,
    /// Every watched Agent.
    pub agents: Store<Agent>,
    /// The mode of a Task whose Agent and itself set none (`--default-egress-mode`).
    pub default_mode: EgressMode,
}

impl Tasks for ClusterTasks {
    fn grant(&self, namespace: &str, name: &str) -> Option<Grant> {
        let task = self.tasks.get(&ObjectRef::new(name).within(namespace))?;
        // A finished Task's pod is gone or going: its token opens nothing.
        if task.status.as_ref().is_some_and(is_finished) {
            return None;
        }
        let uid = task.metadata.uid.clone()?;
        Some(Grant {
            uid,
            policy: policy_of(&task, &self.agents, self.default_mode),
        })
    }
}

/// A Task's policy: its Agent's `spec.egress` narrowed by its own. One that asks for more
/// than its Agent allows gets nothing (the controller refuses to start it, naming the field).
pub fn policy_of(task: &Task, agents: &Store<Agent>, default_mode: EgressMode) -> EgressPolicy {
    let namespace = task.namespace().unwrap_or_default();
    let agent_name = task.spec.agent_ref.as_deref().unwrap_or(DEFAULT_AGENT_NAME);
    let agent = agents.get(&ObjectRef::new(agent_name).within(&namespace));
    match super::policy::task_policy(default_mode, agent.as_deref(), task) {
        Ok(policy) => policy,
        Err(error) => {
            let task = format!("Task/{}", task.name_any());
            tracing::debug!(%error, %task, namespace, "egress refused: invalid spec.egress");
            EgressPolicy::deny()
        }
    }
}

/// Posts decisions as Events on their Task (Warning for refusals), through one recorder.
pub struct TaskEvents {
    /// The recorder (it aggregates repeated Events into series).
    pub recorder: Recorder,
    /// Where the Task's reference comes from.
    pub tasks: Store<Task>,
}

impl EventSink for TaskEvents {
    fn post(&self, decision: &Decision) {
        let Some((namespace, name)) = &decision.task else {
            return;
        };
        let Some(task) = self.tasks.get(&ObjectRef::new(name).within(namespace)) else {
            return;
        };
        let allowed = decision.verdict == Verdict::Allowed;
        let target = decision.target.as_deref().unwrap_or("?");
        let event = Event {
            type_: if allowed {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: if allowed {
                "EgressAllowed"
            } else {
                "EgressDenied"
            }
            .to_owned(),
            note: Some(
                format!("{target}: {}", decision.reason)
                    .chars()
                    .take(1024)
                    .collect(),
            ),
            action: "Connect".to_owned(),
            secondary: None,
        };
        let reference = task.object_ref(&());
        let recorder = self.recorder.clone();
        let name = name.clone();
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::debug!(%error, task = %name, "publishing an egress Event");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher;

    fn task(name: &str, agent: Option<&str>, egress: serde_json::Value) -> Task {
        let mut spec = serde_json::json!({"contexts": [], "egress": egress});
        if let Some(agent) = agent {
            spec["agentRef"] = agent.into();
        }
        let task = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}")},
            "spec": spec,
        }));
        task.unwrap_or_else(|e| panic!("{e}"))
    }

    fn agent(name: &str, egress: serde_json::Value) -> Agent {
        let agent = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"serviceAccountName": "sa", "egress": egress},
        }));
        agent.unwrap_or_else(|e| panic!("{e}"))
    }

    fn stores(tasks: Vec<Task>, agents: Vec<Agent>) -> ClusterTasks {
        let (task_store, mut task_writer) = store::<Task>();
        for t in tasks {
            task_writer.apply_watcher_event(&watcher::Event::Apply(t));
        }
        let (agent_store, mut agent_writer) = store::<Agent>();
        for a in agents {
            agent_writer.apply_watcher_event(&watcher::Event::Apply(a));
        }
        ClusterTasks {
            tasks: task_store,
            agents: agent_store,
            default_mode: EgressMode::Open,
        }
    }

    #[test]
    fn a_tasks_grant_comes_from_its_agent_and_itself() {
        let allow = serde_json::json!({"mode": "AllowList", "allowedDomains": ["*.github.com"]});
        let cluster = stores(
            vec![
                task("inherits", None, serde_json::Value::Null),
                task(
                    "narrows",
                    None,
                    serde_json::json!({"allowedDomains": ["api.github.com"]}),
                ),
                task("widens", None, serde_json::json!({"mode": "Open"})),
                task("other-agent", Some("missing"), serde_json::Value::Null),
            ],
            vec![agent(DEFAULT_AGENT_NAME, allow)],
        );
        let grant = |name: &str| cluster.grant("team", name);
        let inherited = grant("inherits").map(|g| (g.uid, g.policy.mode));
        assert_eq!(
            inherited,
            Some(("uid-inherits".to_owned(), EgressMode::AllowList))
        );
        let narrowed = grant("narrows").map(|g| g.policy);
        assert!(
            narrowed
                .as_ref()
                .is_some_and(|p| p.allows_name("api.github.com"))
        );
        assert!(narrowed.is_some_and(|p| !p.allows_name("uploads.github.com")));
        assert_eq!(
            grant("widens").map(|g| g.policy),
            Some(EgressPolicy::deny()),
            "a Task that widens its Agent's egress gets nothing"
        );
        assert_eq!(
            grant("other-agent").map(|g| g.policy.mode),
            Some(EgressMode::Open),
            "no Agent: the default mode"
        );
        assert!(grant("absent").is_none());
        assert!(cluster.grant("elsewhere", "inherits").is_none());
    }

    #[test]
    fn a_finished_task_has_no_grant() {
        let mut done = task("done", None, serde_json::Value::Null);
        done.status = serde_json::from_value(serde_json::json!({
            "phase": "Completed",
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Completed",
                            "message": "", "lastTransitionTime": "2026-12-06T00:00:00Z"}],
        }))
        .ok();
        let cluster = stores(vec![done], vec![]);
        assert!(cluster.grant("team", "done").is_none());
    }
}
