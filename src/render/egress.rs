//! What the controller adds to every Job when egress is on (`--egress-key-file`): the Task's
//! proxy URL — the exit's address with `<namespace>.<task>:<token>` as its userinfo — in a
//! Secret owned by the Task, and `HTTPS_PROXY`/`HTTP_PROXY` (both cases) from that Secret in
//! every container of the pod. Applied after the last plugin, as the lifecycle is: no plugin
//! can point an agent elsewhere. The policy itself is checked here too, so a Task that asks
//! for more than its Agent allows fails `InvalidSpec` naming the field, instead of running
//! with nothing allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ResourceRequirements, Secret, SecretKeySelector,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt as _;
use kubetask_api::egress::{EgressMode, EgressPolicy, InvalidEgress};
use kubetask_api::{Agent, Task};

use crate::egress::token::{TokenKey, user_name};

/// The variables every container gets; tools read one case or the other.
pub const PROXY_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"];
/// The key of the proxy URL in the Task's egress Secret.
pub const URL_KEY: &str = "url";
/// The exit's address in a default install (`manifests/egress/`).
pub const DEFAULT_EXIT: &str = "kubetask-exit.kubetask-system.svc:3128";

/// The exit's pods in a default install.
pub const DEFAULT_EXIT_PODS: &str =
    "kubetask-system/app.kubernetes.io/name=kubetask,app.kubernetes.io/component=exit";
/// The cluster DNS's pods in most clusters (kubeadm, kind, EKS, GKE, AKS: CoreDNS or kube-dns).
pub const DEFAULT_DNS_PODS: &str = "kube-system/k8s-app=kube-dns";
/// The port DNS pods listen on.
pub const DNS_PORT: u16 = 53;

/// The controller's egress settings.
#[derive(Clone, Debug)]
pub struct EgressSettings {
    /// The key tokens are signed with (the exit holds the same).
    pub key: TokenKey,
    /// The exit's `host:port`.
    pub exit: String,
    /// The mode of Tasks whose Agent and themselves set none.
    pub default_mode: EgressMode,
    /// The exit's pods, which Task pods' NetworkPolicies let them reach.
    pub exit_pods: PodPeer,
    /// The cluster DNS's pods, likewise.
    pub dns_pods: PodPeer,
    /// The canary each pod starts with, if on.
    pub canary: Option<CanarySettings>,
}

/// The egress canary ([`crate::egress::canary`]): an init container of `image` (the kubetask
/// image: it runs `/kubetask canary`) probes `address`, which the pod's policy must deny.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanarySettings {
    pub image: String,
    pub address: std::net::SocketAddr,
}

impl EgressSettings {
    /// Settings with the default install's exit pods and the usual cluster DNS.
    pub fn new(key: TokenKey, exit: String, default_mode: EgressMode) -> Result<Self, String> {
        let port = exit_port(&exit)?;
        Ok(Self {
            key,
            exit,
            default_mode,
            exit_pods: PodPeer::parse(DEFAULT_EXIT_PODS, port)?,
            dns_pods: PodPeer::parse(DEFAULT_DNS_PODS, DNS_PORT)?,
            canary: None,
        })
    }
}

/// The port of the exit's `host:port`.
pub fn exit_port(exit: &str) -> Result<u16, String> {
    exit.rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("{exit:?} is not a host:port"))
}

/// Pods that Task pods reach: all with `labels` in `namespace`, on `port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPeer {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub port: u16,
}

impl PodPeer {
    /// Parses `NAMESPACE/KEY=VALUE[,KEY=VALUE...]` (at least one label).
    pub fn parse(text: &str, port: u16) -> Result<Self, String> {
        let invalid =
            |why: &str| format!("{text:?} is not NAMESPACE/KEY=VALUE[,KEY=VALUE...]: {why}");
        let (namespace, selector) = text.split_once('/').ok_or_else(|| invalid("no '/'"))?;
        if let Some(why) = kubetask_api::names::label_error(namespace) {
            return Err(invalid(&format!("namespace {namespace:?}: {why}")));
        }
        let mut labels = BTreeMap::new();
        for pair in selector.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(&format!("{pair:?} has no '='")))?;
            if let Some(why) = kubetask_api::names::qualified_name_error(key)
                .or_else(|| kubetask_api::names::label_value_error(value))
            {
                return Err(invalid(&format!("{pair:?}: {why}")));
            }
            labels.insert(key.to_owned(), value.to_owned());
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            labels,
            port,
        })
    }
}

/// The name of a Task's egress Secret ([`super::task_secret::name`]).
pub fn secret_name(job_name: &str, uid: &str) -> String {
    super::task_secret::name(job_name, "egress", uid)
}

/// Checks the Task's egress and returns the Secret to create before `job`, whose containers
/// now take their proxy from it, and the Task's effective policy.
pub fn apply(
    task: &Task,
    agent: Option<&Agent>,
    settings: &Arc<EgressSettings>,
    job: &mut Job,
) -> Result<(Secret, EgressPolicy), InvalidEgress> {
    let policy = crate::egress::policy::task_policy(settings.default_mode, agent, task)?;
    let namespace = task.namespace().unwrap_or_default();
    let uid = task.uid().unwrap_or_default();
    let token = settings.key.token(&namespace, &task.name_any(), &uid);
    let url = format!(
        "http://{}:{token}@{}",
        user_name(&namespace, &task.name_any()),
        settings.exit
    );
    let name = secret_name(&job.name_any(), &uid);
    let secret = super::task_secret::secret(job, namespace, &name, URL_KEY, url);
    let pod = job
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut());
    if let Some(pod) = pod {
        if let Some(canary) = settings
            .canary
            .as_ref()
            .filter(|c| !allows(&policy, c.address))
        {
            let init = pod.init_containers.get_or_insert_with(Vec::new);
            init.retain(|c| c.name != crate::egress::canary::CONTAINER);
            init.insert(0, canary_container(canary));
        }
        let containers = pod
            .containers
            .iter_mut()
            .chain(pod.init_containers.iter_mut().flatten());
        for container in containers {
            let env = container.env.get_or_insert_with(Vec::new);
            env.retain(|var| !PROXY_VARIABLES.contains(&var.name.as_str()));
            for variable in PROXY_VARIABLES {
                env.push(EnvVar {
                    name: variable.to_owned(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: name.clone(),
                            key: URL_KEY.to_owned(),
                            optional: Some(false),
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                });
            }
        }
    }
    Ok((secret, policy))
}

/// Whether the Task's policy lets its pod reach `address` directly (a canary there would
/// report nothing about enforcement).
fn allows(policy: &EgressPolicy, address: std::net::SocketAddr) -> bool {
    policy.cidr_allows(address.ip()) && policy.allows_port(address.port())
}

/// The canary's init container: restricted (non-root, no privilege, no capabilities), small.
fn canary_container(canary: &CanarySettings) -> Container {
    let quantity = |text: &str| Quantity(text.to_owned());
    let resources = BTreeMap::from([
        ("cpu".to_owned(), quantity("10m")),
        ("memory".to_owned(), quantity("16Mi")),
    ]);
    Container {
        name: crate::egress::canary::CONTAINER.to_owned(),
        image: Some(canary.image.clone()),
        command: Some(
            [
                "/kubetask",
                "canary",
                "--address",
                &canary.address.to_string(),
                "--timeout",
                "3s",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        resources: Some(ResourceRequirements {
            requests: Some(resources.clone()),
            limits: Some(resources),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..kubetask_plugin::containers::restricted(65532)
        }),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Arc<EgressSettings> {
        let Some(key) = TokenKey::new(&[3; 32]) else {
            panic!("key")
        };
        let settings = EgressSettings::new(key, DEFAULT_EXIT.to_owned(), EgressMode::Open);
        Arc::new(settings.unwrap_or_else(|e| panic!("{e}")))
    }

    fn task(egress: serde_json::Value) -> Task {
        serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "fix", "namespace": "team", "uid": "u-1"},
            "spec": {"contexts": [], "egress": egress},
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
                                "env": [{"name": "HTTPS_PROXY", "value": "http://elsewhere:1"},
                                        {"name": "KEEP", "value": "1"}]}],
            }}},
        }))
        .unwrap_or_default()
    }

    #[test]
    fn every_container_takes_its_proxy_from_the_tasks_secret() {
        let settings = settings();
        let mut job = job();
        let secret = apply(&task(serde_json::Value::Null), None, &settings, &mut job);
        let Ok((secret, _)) = secret else {
            panic!("{secret:?}")
        };
        let name = secret_name("fix", "u-1");
        assert_eq!(secret.metadata.name.as_deref(), Some(name.as_str()));
        assert_eq!(
            secret.metadata.owner_references,
            job.metadata.owner_references
        );
        let url = secret
            .data
            .as_ref()
            .and_then(|d| d.get(URL_KEY))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default();
        let token = settings.key.token("team", "fix", "u-1");
        assert_eq!(url, format!("http://team.fix:{token}@{DEFAULT_EXIT}"));
        let pod = job.spec.and_then(|s| s.template.spec).unwrap_or_default();
        let containers = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten());
        for container in containers {
            let env = container.env.clone().unwrap_or_default();
            for variable in PROXY_VARIABLES {
                let found: Vec<&EnvVar> = env.iter().filter(|v| v.name == variable).collect();
                assert_eq!(found.len(), 1, "{}: {variable}", container.name);
                let reference = found[0]
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref());
                assert_eq!(reference.map(|r| r.name.as_str()), Some(name.as_str()));
                assert_eq!(found[0].value, None, "a plugin's value is replaced");
            }
        }
        assert!(
            pod.containers[0]
                .env
                .iter()
                .flatten()
                .any(|v| v.name == "KEEP")
        );
    }

    #[test]
    fn a_task_that_widens_its_agents_egress_is_refused_with_the_field() {
        let agent: Agent = serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a", "namespace": "team"},
            "spec": {"serviceAccountName": "sa", "egress": {"mode": "AllowList", "allowedDomains": ["*.github.com"]}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let widening = task(json!({"allowedDomains": ["evil.net"]}));
        let got = apply(&widening, Some(&agent), &settings(), &mut job());
        let Err(error) = got else { panic!("{got:?}") };
        assert_eq!(error.object, "Task/fix");
        assert_eq!(error.field, "spec.egress.allowedDomains[0]");
    }

    #[test]
    fn pod_peers_parse_and_bad_ones_say_why() {
        let exit = PodPeer::parse(DEFAULT_EXIT_PODS, 3128);
        assert_eq!(
            exit.map(|p| (p.namespace, p.labels.len(), p.port)),
            Ok(("kubetask-system".to_owned(), 2, 3128))
        );
        for bad in ["kube-dns", "Kube/k=v", "ns/k", "ns/k=v=w", "ns/=v", "ns/"] {
            let parsed = PodPeer::parse(bad, 53);
            assert!(parsed.is_err(), "{bad}: {parsed:?}");
        }
        assert_eq!(exit_port(DEFAULT_EXIT), Ok(3128));
        assert!(exit_port("exit.svc").is_err());
        assert!(exit_port("exit.svc:0").is_err());
    }

    #[test]
    fn the_canary_starts_first_unless_the_policy_allows_its_address() {
        let mut settings = settings().as_ref().clone();
        settings.canary = Some(CanarySettings {
            image: "ghcr.io/kubetask/kubetask:v0.1.0".to_owned(),
            address: "10.96.0.1:443".parse().unwrap_or_else(|e| panic!("{e}")),
        });
        let settings = Arc::new(settings);
        let agent: Agent = serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a", "namespace": "team"},
            "spec": {"serviceAccountName": "sa", "egress": {
                "allowedCIDRs": ["10.96.0.0/12"], "ports": [443, 8443]}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let init_names = |egress: serde_json::Value| {
            let mut job = job();
            let applied = apply(&task(egress), Some(&agent), &settings, &mut job);
            assert!(applied.is_ok(), "{applied:?}");
            let pod = job.spec.and_then(|s| s.template.spec).unwrap_or_default();
            pod.init_containers
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.name)
                .collect::<Vec<_>>()
        };
        let canary = crate::egress::canary::CONTAINER;
        // The Agent's CIDR holds the address, on its port: no canary, it would prove nothing.
        assert_eq!(init_names(serde_json::Value::Null), ["clone"]);
        // A Task narrowed to another port, or to Deny, cannot reach it: the canary runs first.
        assert_eq!(init_names(json!({"ports": [8443]})), [canary, "clone"]);
        assert_eq!(init_names(json!({"mode": "Deny"})), [canary, "clone"]);
        assert_eq!(
            init_names(json!({"allowedCIDRs": ["10.100.0.0/16"]})),
            [canary, "clone"]
        );
    }

    #[test]
    fn a_recreated_task_gets_another_secret() {
        assert_ne!(secret_name("fix", "u-1"), secret_name("fix", "u-2"));
        assert!(secret_name(&"j".repeat(63), "u").len() <= 253);
    }
}
