//! An example network plugin for clusters running Cilium: each Task pod gets a
//! `CiliumNetworkPolicy` instead of the built-in default-deny NetworkPolicy. Cilium can name
//! domains (`toFQDNs`, through its DNS proxy), so in `AllowList` mode the pod reaches its
//! allowed domains directly as well as through the exit, and a process that ignores
//! `HTTPS_PROXY` still reaches nothing else. `Deny` and `Open` keep everything on the exit.
//!
//! | egress | the policy allows |
//! |---|---|
//! | always | DNS to kube-dns (every name, seen by Cilium's DNS proxy); the exit's pods on its port |
//! | `AllowList` | each `allowedDomains` entry on the Task's ports: an exact name as `matchName`, `*.suffix` as `matchPattern: "**.suffix"` (one or more labels, as the exit reads it; Cilium before 1.19 reads it as one label, which only narrows) |
//! | `AllowList`, `Open` | `allowedCIDRs` on the Task's ports |
//!
//! It renders nothing else: the Job passes through. Install it as a cluster policy, which runs
//! after the built-in plugin and replaces its NetworkPolicy for every Task:
//! `kubetask plugin pack cilium_egress.wasm --name cilium-egress --policy 50`, and let the
//! controller create the policies: `ciliumnetworkpolicies` `get` and `create` in its
//! ClusterRole (README.md).
#![deny(unsafe_code)]

use kubetask_plugin::network::{EgressMode, NetworkRequest, Peer};
use kubetask_plugin::{Draft, Error, NetworkPlugin, Object, Plugin, Request};
use serde_json::{Value, json};

/// The label Cilium gives every endpoint with its pod's namespace.
const NAMESPACE_LABEL: &str = "k8s:io.kubernetes.pod.namespace";

/// The plugin.
pub struct CiliumEgress;

impl Plugin for CiliumEgress {
    /// The Job passes through as the previous stages made it.
    fn render(request: Request) -> Result<Draft, Error> {
        request.draft()
    }
}

impl NetworkPlugin for CiliumEgress {
    /// One CiliumNetworkPolicy in place of whatever the previous stages made.
    fn network(request: NetworkRequest) -> Result<Vec<Object<Value>>, Error> {
        Ok(vec![Object::from_value(policy(&request)?)])
    }
}

kubetask_plugin::export_network_plugin!(CiliumEgress);

/// The policy of the Task's pod.
pub fn policy(request: &NetworkRequest) -> Result<Value, Error> {
    let job_name = request.job.str("/metadata/name").unwrap_or_default();
    let task_label = kubetask_plugin::api::labels::TASK;
    let selected = request
        .pod_labels()?
        .remove(task_label)
        .ok_or_else(|| Error::Internal(format!("the Job's pods have no {task_label} label")))?;
    let egress = &request.egress;
    let ports: Vec<Value> = egress
        .ports
        .iter()
        .map(|port| json!({"port": port.to_string(), "protocol": "TCP"}))
        .collect();
    let mut rules = vec![
        json!({
            "toEndpoints": [endpoints(&egress.dns)],
            "toPorts": [{
                "ports": [{"port": egress.dns.port.to_string(), "protocol": "ANY"}],
                "rules": {"dns": [{"matchPattern": "*"}]},
            }],
        }),
        json!({
            "toEndpoints": [endpoints(&egress.exit)],
            "toPorts": [{"ports": [{"port": egress.exit.port.to_string(), "protocol": "TCP"}]}],
        }),
    ];
    if egress.mode == EgressMode::AllowList && !egress.allowed_domains.is_empty() {
        let fqdns: Vec<Value> = egress
            .allowed_domains
            .iter()
            .map(|domain| match domain.strip_prefix("*.") {
                Some(suffix) => json!({"matchPattern": format!("**.{suffix}")}),
                None => json!({"matchName": domain}),
            })
            .collect();
        rules.push(json!({"toFQDNs": fqdns, "toPorts": [{"ports": ports}]}));
    }
    if egress.mode != EgressMode::Deny && !egress.allowed_cidrs.is_empty() {
        rules.push(json!({"toCIDR": egress.allowed_cidrs, "toPorts": [{"ports": ports}]}));
    }
    Ok(json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": format!("{job_name}-egress")},
        "spec": {
            "endpointSelector": {"matchLabels": {task_label: selected}},
            "egress": rules,
        },
    }))
}

/// Cilium's selector of `peer`'s pods.
fn endpoints(peer: &Peer) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(NAMESPACE_LABEL.to_owned(), json!(peer.namespace));
    for (key, value) in &peer.pod_labels {
        labels.insert(key.clone(), json!(value));
    }
    json!({"matchLabels": labels})
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kubetask_plugin::EgressPlan;
    use kubetask_plugin::network::{WireNetworkRequest, network_wire};

    use super::*;

    fn request(mode: EgressMode) -> WireNetworkRequest {
        let peer = |namespace: &str, key: &str, value: &str, port| Peer {
            namespace: namespace.to_owned(),
            pod_labels: BTreeMap::from([(key.to_owned(), value.to_owned())]),
            port,
        };
        WireNetworkRequest {
            task: json!({"metadata": {"name": "fix", "namespace": "team-a"}}).to_string(),
            agent: None,
            settings: Default::default(),
            job: json!({"metadata": {"name": "fix"}, "spec": {"template": {"metadata": {"labels": {"kubetask.io/task": "fix"}}}}}).to_string(),
            egress: EgressPlan {
                mode,
                allowed_domains: vec!["api.github.com".into(), "*.githubusercontent.com".into()],
                allowed_cidrs: vec!["10.96.0.0/12".into()],
                ports: vec![443],
                exit: peer("kubetask-system", "app.kubernetes.io/component", "exit", 3128),
                dns: peer("kube-system", "k8s-app", "kube-dns", 53),
            },
            policies: vec![json!({"kind": "NetworkPolicy"}).to_string()],
        }
    }

    fn run(mode: EgressMode) -> Value {
        let policies =
            network_wire::<CiliumEgress>(request(mode)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(policies.len(), 1, "the previous policy is replaced");
        serde_json::from_str(&policies[0]).unwrap_or_default()
    }

    #[test]
    fn allow_list_names_its_domains_and_cidrs() {
        let policy = run(EgressMode::AllowList);
        assert_eq!(policy["kind"], "CiliumNetworkPolicy");
        assert_eq!(policy["metadata"]["name"], "fix-egress");
        assert_eq!(
            policy["spec"]["endpointSelector"],
            json!({"matchLabels": {"kubetask.io/task": "fix"}})
        );
        let rules = &policy["spec"]["egress"];
        assert_eq!(
            rules[0]["toEndpoints"][0]["matchLabels"],
            json!({"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"})
        );
        assert_eq!(rules[1]["toPorts"][0]["ports"][0]["port"], "3128");
        assert_eq!(
            rules[2]["toFQDNs"],
            json!([{"matchName": "api.github.com"}, {"matchPattern": "**.githubusercontent.com"}])
        );
        assert_eq!(rules[3]["toCIDR"], json!(["10.96.0.0/12"]));
        assert_eq!(rules[3]["toPorts"][0]["ports"][0]["port"], "443");
    }

    #[test]
    fn deny_and_open_keep_everything_on_the_exit() {
        let deny = run(EgressMode::Deny);
        assert_eq!(deny["spec"]["egress"].as_array().map(Vec::len), Some(2));
        let open = run(EgressMode::Open);
        let rules = open["spec"]["egress"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(rules.len(), 3, "DNS, the exit and the CIDRs");
        assert!(rules.iter().all(|rule| rule.get("toFQDNs").is_none()));
    }
}
