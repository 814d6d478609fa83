//! What the controller adds to every Job when the model gateway is on (`--model-gateway-url`,
//! docs/budgets.md): the Task's virtual key ([`crate::gateway::keys`]) in a Secret owned by the
//! Task, and, in the agent container, each CLI's API-key variable from that Secret and its
//! base-URL variable pointing at the gateway. Applied after the last plugin, as egress is: no
//! plugin can point an agent past the meter. A provider key the Agent hands the agent under
//! one of those variables is replaced (with a warning): the gateway holds the real keys.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};
use kube::ResourceExt as _;
use kubetask_api::Task;

use kube::api::DynamicObject;
use serde_json::json;

use super::egress::PodPeer;
use super::lifecycle::AGENT_CONTAINER;
use crate::gateway::keys::{self, Caller};

/// The key of the virtual key in the Task's model Secret.
pub const KEY_KEY: &str = "api-key";
/// The gateway's address in a default install (`manifests/gateway/`).
pub const DEFAULT_URL: &str = "http://kubetask-gateway.kubetask-system.svc";
/// Where the runner (and any agent image) finds the gateway and the Task's key.
pub const GATEWAY_VARIABLE: &str = "KUBETASK_MODEL_GATEWAY";
pub const KEY_VARIABLE: &str = "KUBETASK_MODEL_KEY";

/// Each CLI's API-key variable: the Task's virtual key.
pub const KEY_VARIABLES: [&str; 5] = [
    KEY_VARIABLE,
    "ANTHROPIC_API_KEY", // Claude Code, OpenCode
    "CODEX_API_KEY",     // Codex (`codex exec`)
    "OPENAI_API_KEY",    // OpenCode
    "GEMINI_API_KEY",    // Gemini CLI, OpenCode
];

/// Provider keys an Agent might hand the agent some other way; removed from its container.
const PROVIDER_KEY_VARIABLES: [&str; 3] = [
    "ANTHROPIC_AUTH_TOKEN",
    "GOOGLE_API_KEY",
    "GOOGLE_GENERATIVE_AI_API_KEY",
];

/// Each CLI's base-URL variable, and the path it expects after the gateway's address.
pub const URL_VARIABLES: [(&str, &str); 4] = [
    (GATEWAY_VARIABLE, ""),
    ("ANTHROPIC_BASE_URL", ""), // Claude Code (the SDK appends /v1/messages)
    ("OPENAI_BASE_URL", "/v1"), // Codex (appends /responses)
    ("GOOGLE_GEMINI_BASE_URL", ""), // Gemini CLI (appends /v1beta/models/...)
];

/// The gateway's pods in a default install (`manifests/gateway/deployment.yaml`).
pub const DEFAULT_PODS: &str =
    "kubetask-system/app.kubernetes.io/name=kubetask,app.kubernetes.io/component=gateway";
/// The port they listen on (the Service's target port).
pub const DEFAULT_POD_PORT: u16 = 8090;
/// The suffix of the name of the policy that lets a Task's pod reach them, after the Job's.
pub const POLICY_SUFFIX: &str = "model-gateway";

/// The controller's model gateway settings.
#[derive(Clone)]
pub struct GatewaySettings {
    /// The key virtual keys are signed with (the gateway holds the same).
    pub signing_key: Vec<u8>,
    /// The gateway's URL as agent pods reach it (`http://host:port`, no trailing `/`).
    pub url: String,
    /// The gateway's pods, which a Task pod's egress policies let it reach (egress on).
    pub pods: PodPeer,
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GatewaySettings {
    /// Settings for the gateway at `url`; refused unless it is an `http(s)://host[:port]`.
    pub fn new(signing_key: Vec<u8>, url: &str) -> Result<Self, String> {
        let url = url.trim_end_matches('/');
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{url:?} must be a scheme and host[:port], without a path"
            ));
        }
        Ok(Self {
            signing_key,
            url: url.to_owned(),
            pods: PodPeer::parse(DEFAULT_PODS, DEFAULT_POD_PORT)?,
        })
    }

    /// The same settings with the gateway's pods elsewhere.
    pub fn with_pods(mut self, pods: PodPeer) -> Self {
        self.pods = pods;
        self
    }

    /// The gateway's host, for `NO_PROXY` (the agent reaches it directly, not via the exit).
    fn host(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        rest.rsplit_once(':').map_or(rest, |(host, _)| host)
    }
}

/// With egress on: a NetworkPolicy that lets the Task's pod reach the gateway's pods (on
/// their port, over TCP), created with the plugins' policies. Policies add up: the plugins'
/// default deny stays whole, this one only opens the way to the meter — which no plugin can
/// close, as no plugin can point the agent past the gateway. `Err` when the Job's pods carry
/// no Task label to select them by.
pub fn network_policy(
    task: &Task,
    job: &Job,
    settings: &GatewaySettings,
) -> Result<DynamicObject, String> {
    let task_label = job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|meta| meta.labels.as_ref())
        .and_then(|labels| labels.get(kubetask_api::labels::TASK))
        .ok_or_else(|| {
            format!(
                "the Job's pods have no {} label to select them by",
                kubetask_api::labels::TASK
            )
        })?;
    let peer = &settings.pods;
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("{}-{POLICY_SUFFIX}", job.name_any())},
        "spec": {
            "podSelector": {"matchLabels": {kubetask_api::labels::TASK: task_label}},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}},
                    "podSelector": {"matchLabels": peer.labels},
                }],
                "ports": [{"protocol": "TCP", "port": peer.port}],
            }],
        },
    });
    let mut policy: DynamicObject =
        serde_json::from_value(policy).map_err(|error| error.to_string())?;
    super::invariants::restore_ownership(task, &mut policy.metadata);
    Ok(policy)
}

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The name of a Task's model Secret ([`super::task_secret::name`]).
pub fn secret_name(job_name: &str, uid: &str) -> String {
    super::task_secret::name(job_name, "model", uid)
}

/// Mints the Task's virtual key into the Secret to create before `job`, whose agent container
/// now takes its model API keys from it and its base URLs from the gateway; returns the Secret
/// and the warnings (provider keys the Agent handed the agent, now replaced).
pub fn apply(task: &Task, settings: &GatewaySettings, job: &mut Job) -> (Secret, Vec<String>) {
    let namespace = task.namespace().unwrap_or_default();
    let uid = task.uid().unwrap_or_default();
    let key = keys::mint(
        &settings.signing_key,
        &Caller {
            namespace: namespace.clone(),
            task: task.name_any(),
            uid: uid.clone(),
        },
    );
    let name = secret_name(&job.name_any(), &uid);
    let secret = super::task_secret::secret(job, namespace, &name, KEY_KEY, key);
    let mut warnings = Vec::new();
    let agent = job
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut())
        .and_then(|pod| {
            pod.containers
                .iter_mut()
                .find(|c| c.name == AGENT_CONTAINER)
        });
    if let Some(agent) = agent {
        let env = agent.env.get_or_insert_with(Vec::new);
        let ours = |name: &str| {
            KEY_VARIABLES.contains(&name)
                || PROVIDER_KEY_VARIABLES.contains(&name)
                || URL_VARIABLES.iter().any(|(variable, _)| *variable == name)
        };
        let replaced: Vec<String> = env
            .iter()
            .filter(|var| ours(&var.name))
            .map(|var| var.name.clone())
            .collect();
        if !replaced.is_empty() {
            warnings.push(format!(
                "the model gateway replaces the agent's {}: the agent calls models through the gateway with the Task's virtual key, which holds the providers' keys (docs/budgets.md)",
                replaced.join(", ")
            ));
        }
        env.retain(|var| !ours(&var.name));
        for variable in KEY_VARIABLES {
            env.push(EnvVar {
                name: variable.to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: name.clone(),
                        key: KEY_KEY.to_owned(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
        for (variable, path) in URL_VARIABLES {
            env.push(EnvVar {
                name: variable.to_owned(),
                value: Some(format!("{}{path}", settings.url)),
                ..EnvVar::default()
            });
        }
        // The gateway is reached directly, never through the egress exit (which only
        // tunnels TLS to the Task's domains).
        for variable in ["NO_PROXY", "no_proxy"] {
            match env.iter_mut().find(|var| var.name == variable) {
                Some(var) if var.value_from.is_none() => {
                    let list = var.value.get_or_insert_with(String::new);
                    if !list.split(',').any(|h| h.trim() == settings.host()) {
                        if !list.is_empty() {
                            list.push(',');
                        }
                        list.push_str(settings.host());
                    }
                }
                Some(_) => {}
                None => env.push(EnvVar {
                    name: variable.to_owned(),
                    value: Some(settings.host().to_owned()),
                    ..EnvVar::default()
                }),
            }
        }
    }
    (secret, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task() -> Task {
        serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "fix", "namespace": "team", "uid": "u-1"},
            "spec": {"contexts": []},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn job() -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "fix", "namespace": "team", "labels": {"kubetask.io/task": "fix"},
                         "ownerReferences": [{"apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
                                              "name": "fix", "uid": "u-1", "controller": true}]},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "clone", "image": "git"}],
                "containers": [{"name": "agent", "image": "a",
                                "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "real", "key": "k"}}},
                                        {"name": "NO_PROXY", "value": "10.0.0.1"},
                                        {"name": "KEEP", "value": "1"}]}],
            }}},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_agent_calls_models_through_the_gateway_with_the_tasks_key() {
        let settings = GatewaySettings::new(
            b"a signing key of at least thirty-two bytes".to_vec(),
            "http://gw.kubetask-system.svc:8090/",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut job = job();
        let (secret, warnings) = apply(&task(), &settings, &mut job);
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some(secret_name("fix", "u-1").as_str())
        );
        assert_eq!(
            secret.metadata.owner_references,
            job.metadata.owner_references
        );
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get(KEY_KEY))
            .map(|k| String::from_utf8_lossy(&k.0).into_owned())
            .unwrap_or_default();
        let caller = keys::verify(&settings.signing_key, &key);
        assert_eq!(
            caller.map(|c| (c.namespace, c.task, c.uid)),
            Some(("team".into(), "fix".into(), "u-1".into()))
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("ANTHROPIC_API_KEY"), "{warnings:?}");
        let pod = job.spec.and_then(|s| s.template.spec).unwrap_or_default();
        let env = pod.containers[0].env.clone().unwrap_or_default();
        let value = |name: &str| {
            let found: Vec<&EnvVar> = env.iter().filter(|v| v.name == name).collect();
            assert_eq!(found.len(), 1, "{name} once: {env:?}");
            found[0].clone()
        };
        for variable in KEY_VARIABLES {
            let from = value(variable).value_from.and_then(|v| v.secret_key_ref);
            assert_eq!(
                from.map(|r| (r.name, r.key)),
                Some((secret_name("fix", "u-1"), KEY_KEY.to_owned())),
                "{variable}"
            );
        }
        assert_eq!(
            value("OPENAI_BASE_URL").value.as_deref(),
            Some("http://gw.kubetask-system.svc:8090/v1")
        );
        assert_eq!(
            value("ANTHROPIC_BASE_URL").value.as_deref(),
            Some("http://gw.kubetask-system.svc:8090")
        );
        assert_eq!(
            value("NO_PROXY").value.as_deref(),
            Some("10.0.0.1,gw.kubetask-system.svc")
        );
        assert_eq!(
            value("no_proxy").value.as_deref(),
            Some("gw.kubetask-system.svc")
        );
        assert_eq!(value("KEEP").value.as_deref(), Some("1"));
        // Only the agent: the clone step never holds the key.
        assert_eq!(pod.init_containers.unwrap_or_default()[0].env, None);
    }

    #[test]
    fn a_gateway_url_must_be_a_scheme_and_host() {
        for bad in [
            "gw:8090",
            "http://",
            "http://gw/v1",
            "ftp://gw",
            "http://u@gw",
        ] {
            assert!(GatewaySettings::new(vec![0; 32], bad).is_err(), "{bad}");
        }
        assert!(GatewaySettings::new(vec![0; 32], "https://gw.example").is_ok());
    }

    #[test]
    fn with_egress_the_tasks_pod_may_reach_the_gateways_pods_and_nothing_else() {
        let pods = PodPeer::parse("models/app=gw", 9000).unwrap_or_else(|e| panic!("{e}"));
        let settings = GatewaySettings::new(b"k".repeat(32), DEFAULT_URL)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_pods(pods);
        let mut job = job();
        if let Some(spec) = job.spec.as_mut() {
            spec.template.metadata = Some(kube::api::ObjectMeta {
                labels: Some([("kubetask.io/task".to_owned(), "fix".to_owned())].into()),
                ..Default::default()
            });
        }
        let policy = network_policy(&task(), &job, &settings).unwrap_or_else(|e| panic!("{e}"));
        let value = serde_json::to_value(&policy).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value["kind"], "NetworkPolicy");
        assert_eq!(value["metadata"]["name"], "fix-model-gateway");
        assert_eq!(value["metadata"]["namespace"], "team");
        assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            value["spec"],
            json!({
                "podSelector": {"matchLabels": {"kubetask.io/task": "fix"}},
                "policyTypes": ["Egress"],
                "egress": [{
                    "to": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "models"}},
                        "podSelector": {"matchLabels": {"app": "gw"}},
                    }],
                    "ports": [{"protocol": "TCP", "port": 9000}],
                }],
            })
        );
        // Defaults: the install's gateway pods on 8090.
        assert_eq!(
            GatewaySettings::new(b"k".repeat(32), DEFAULT_URL).map(|s| s.pods.port),
            Ok(8090)
        );
        job.spec = None;
        assert!(
            network_policy(&task(), &job, &settings)
                .is_err_and(|e| e.contains("no kubetask.io/task label"))
        );
    }
}
