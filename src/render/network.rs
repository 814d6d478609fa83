//! The network stage of the pipeline: after the Job is rendered, every stage that exports the
//! WIT `network` interface shapes the policies of the Task's pod (the built-in default plugin
//! makes a default-deny NetworkPolicy), and what they return is confined as ConfigMaps are.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::ResourceExt as _;
use kube::api::DynamicObject;
use kubetask_api::Task;
use kubetask_api::egress::{EgressMode, EgressPolicy};

use super::egress::{EgressSettings, PodPeer};
use super::error::RenderError;
use super::invariants::{companion_name, restore_ownership};
use super::json::{decode, encode};
use crate::plugin::bindings::Settings;
use crate::plugin::network_bindings::{self, NetworkRequest};
use crate::plugin::{Plugin, PluginError, PluginHost};

/// Most policies a Task's pod may come with.
pub const MAX_POLICIES: usize = 4;

/// The kinds a network stage may return: `(apiVersion, kind)`.
pub const POLICY_KINDS: [(&str, &str); 2] = [
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("cilium.io/v2", "CiliumNetworkPolicy"),
];

/// What the network stages are given besides the Task and its Agent.
pub(super) struct NetworkInput<'a> {
    pub task: &'a Task,
    pub task_json: &'a str,
    pub agent_json: Option<&'a str>,
    pub settings: &'a Settings,
    pub job: &'a Job,
    pub policy: &'a EgressPolicy,
    pub egress: &'a EgressSettings,
}

/// Runs the network stage of every stage that has one, in order; the policies to create.
pub(super) fn render(
    host: &PluginHost,
    stages: &[Plugin],
    input: &NetworkInput<'_>,
) -> Result<Vec<DynamicObject>, RenderError> {
    let job = encode("Job", input.job)?;
    let egress = plan(input.policy, input.egress);
    let mut policies: Vec<DynamicObject> = Vec::new();
    for stage in stages.iter().filter(|stage| stage.renders_network()) {
        let request = NetworkRequest {
            task: input.task_json.to_owned(),
            agent: input.agent_json.map(str::to_owned),
            settings: input.settings.clone(),
            job: job.clone(),
            egress: egress.clone(),
            policies: policies
                .iter()
                .map(|policy| encode("policy", policy))
                .collect::<Result<_, _>>()?,
        };
        let Some(output) = host.render_network(stage, &request)? else {
            continue;
        };
        policies = confine(input.task, &input.job.name_any(), &output).map_err(|message| {
            PluginError::InvalidOutput {
                name: stage.name().to_owned(),
                digest: stage.short_digest(),
                message,
            }
        })?;
    }
    Ok(policies)
}

fn plan(policy: &EgressPolicy, egress: &EgressSettings) -> network_bindings::EgressPlan {
    let peer = |peer: &PodPeer| network_bindings::Peer {
        namespace: peer.namespace.clone(),
        pod_labels: peer.labels.clone().into_iter().collect(),
        port: peer.port,
    };
    network_bindings::EgressPlan {
        mode: match policy.mode {
            EgressMode::Deny => network_bindings::EgressMode::Deny,
            EgressMode::AllowList => network_bindings::EgressMode::AllowList,
            EgressMode::Open => network_bindings::EgressMode::Open,
        },
        allowed_domains: policy.domains.iter().map(ToString::to_string).collect(),
        allowed_cidrs: policy.cidrs.iter().map(ToString::to_string).collect(),
        ports: policy.ports.clone(),
        exit: peer(&egress.exit_pods),
        dns: peer(&egress.dns_pods),
    }
}

/// Parses a stage's policies and restores what no plugin may change: namespace, owner,
/// KubeTask's labels; `Err` says why they cannot be accepted (a kind other than
/// [`POLICY_KINDS`], a name not `<job>-<suffix>`, too many, a NetworkPolicy that does not
/// parse).
fn confine(task: &Task, job_name: &str, output: &[String]) -> Result<Vec<DynamicObject>, String> {
    if output.len() > MAX_POLICIES {
        return Err(format!(
            "{} policies: at most {MAX_POLICIES} may come with a Job",
            output.len()
        ));
    }
    let mut policies: Vec<DynamicObject> = Vec::with_capacity(output.len());
    for (index, json) in output.iter().enumerate() {
        let at = format!("policies[{index}]");
        let mut policy: DynamicObject = decode(json).map_err(|why| format!("{at}: {why}"))?;
        let types = policy.types.clone().unwrap_or_default();
        if !POLICY_KINDS.contains(&(types.api_version.as_str(), types.kind.as_str())) {
            let allowed: Vec<String> = POLICY_KINDS
                .iter()
                .map(|(version, kind)| format!("{version} {kind}"))
                .collect();
            return Err(format!(
                "{at}: {} {} is not a policy kind; allowed: {}",
                types.api_version,
                types.kind,
                allowed.join(", ")
            ));
        }
        let name = policy.metadata.name.clone().unwrap_or_default();
        let earlier = policies.iter().filter_map(|p| p.metadata.name.as_deref());
        companion_name(&at, "policies", job_name, &name, earlier)?;
        if types.kind == "NetworkPolicy" {
            decode::<NetworkPolicy>(json).map_err(|why| format!("{at}: {why}"))?;
        }
        restore_ownership(task, &mut policy.metadata);
        policies.push(policy);
    }
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubetask_api::TaskSpec;
    use serde_json::json;

    fn task() -> Task {
        let mut task = Task::new("fix-bug", TaskSpec::default());
        task.metadata.namespace = Some("team-a".to_owned());
        task.metadata.uid = Some("uid-1".to_owned());
        task
    }

    fn policy(kind: &str, name: &str) -> String {
        let api_version = POLICY_KINDS
            .iter()
            .find(|(_, k)| *k == kind)
            .map_or("v1", |(version, _)| *version);
        json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": "elsewhere", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "y"}]},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
        })
        .to_string()
    }

    #[test]
    fn policies_are_confined_to_the_tasks_namespace_and_owner() {
        let output = [
            policy("NetworkPolicy", "fix-bug-egress"),
            policy("CiliumNetworkPolicy", "fix-bug-fqdn"),
        ];
        let confined = confine(&task(), "fix-bug", &output);
        let Ok(policies) = confined else {
            panic!("{confined:?}")
        };
        for policy in &policies {
            assert_eq!(policy.metadata.namespace.as_deref(), Some("team-a"));
            let owners = policy.metadata.owner_references.clone().unwrap_or_default();
            assert_eq!(owners.len(), 1);
            assert_eq!(owners[0].uid, "uid-1");
            assert_eq!(
                policy.labels().get("kubetask.io/task").map(String::as_str),
                Some("fix-bug")
            );
        }
    }

    #[test]
    fn what_a_stage_may_not_return_is_refused_with_why() {
        let cases = [
            (
                vec![policy("ConfigMap", "fix-bug-x")],
                "is not a policy kind",
            ),
            (
                vec![policy("NetworkPolicy", "other-egress")],
                "must start with",
            ),
            (vec![policy("NetworkPolicy", "fix-bug-")], "must start with"),
            (
                vec![
                    policy("NetworkPolicy", "fix-bug-a"),
                    policy("NetworkPolicy", "fix-bug-a"),
                ],
                "used twice",
            ),
            (vec![policy("NetworkPolicy", "fix-bug-A")], "RFC 1123"),
            (
                (0..5)
                    .map(|i| policy("NetworkPolicy", &format!("fix-bug-{i}")))
                    .collect(),
                "at most 4",
            ),
            (
                vec![
                    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                            "metadata": {"name": "fix-bug-x"}, "spec": {"policyTypes": "Egress"}})
                    .to_string(),
                ],
                "spec.policyTypes",
            ),
        ];
        for (output, expected) in cases {
            let got = confine(&task(), "fix-bug", &output);
            let Err(message) = got else {
                panic!("{expected}: {got:?}")
            };
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }
}
