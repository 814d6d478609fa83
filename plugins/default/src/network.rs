//! The network stage of the built-in plugin: one default-deny NetworkPolicy per Task pod, whose
//! egress reaches only the cluster DNS, the exit (`kubetask exit`, which allows what the Task's
//! egress allows) and, unless the mode is `Deny`, the Task's `allowedCIDRs` on its ports.
//! Sites whose CNI has its own policies replace it with a plugin of their own
//! (`plugins/examples/cilium-egress`).

use std::collections::BTreeMap;

use kubetask_plugin::network::{EgressMode, NetworkRequest, Peer};
use kubetask_plugin::{Error, Object};
use serde_json::{Value, json};

/// The suffix of the policy's name after the Job's.
pub const POLICY_SUFFIX: &str = "egress";

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The policy for the Task's pod.
pub fn policies(request: &NetworkRequest) -> Result<Vec<Object<Value>>, Error> {
    let job_name = request.job.str("/metadata/name").unwrap_or_default();
    // The Job's (the host keeps it the Task's): the Task's JSON is never parsed here.
    let namespace = request.job.str("/metadata/namespace").unwrap_or_default();
    let selector: BTreeMap<String, String> = request
        .pod_labels()?
        .into_iter()
        .filter(|(key, _)| key == kubetask_api::labels::TASK)
        .collect();
    if selector.is_empty() {
        return Err(Error::Internal(format!(
            "the Job's pods have no {} label to select them by",
            kubetask_api::labels::TASK
        )));
    }
    let egress = &request.egress;
    let mut rules = vec![
        json!({
            "to": [peer(&egress.dns)],
            "ports": [
                {"protocol": "UDP", "port": egress.dns.port},
                {"protocol": "TCP", "port": egress.dns.port},
            ],
        }),
        json!({
            "to": [peer(&egress.exit)],
            "ports": [{"protocol": "TCP", "port": egress.exit.port}],
        }),
    ];
    if egress.mode != EgressMode::Deny && !egress.allowed_cidrs.is_empty() {
        let blocks: Vec<Value> = egress
            .allowed_cidrs
            .iter()
            .map(|cidr| json!({"ipBlock": {"cidr": cidr}}))
            .collect();
        let ports: Vec<Value> = egress
            .ports
            .iter()
            .map(|port| json!({"protocol": "TCP", "port": port}))
            .collect();
        rules.push(json!({"to": blocks, "ports": ports}));
    }
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": format!("{job_name}-{POLICY_SUFFIX}"),
            "namespace": namespace,
        },
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    });
    Ok(vec![Object::from_value(policy)])
}

/// Pods with `peer`'s labels in its namespace.
fn peer(peer: &Peer) -> Value {
    json!({
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: peer.namespace}},
        "podSelector": {"matchLabels": peer.pod_labels},
    })
}

#[cfg(test)]
mod tests {
    use kubetask_plugin::network::{EgressPlan, WireNetworkRequest, network_wire};
    use kubetask_plugin::{Settings, Task};

    use super::*;
    use crate::DefaultRenderer;

    fn plan(mode: EgressMode, cidrs: &[&str]) -> EgressPlan {
        EgressPlan {
            mode,
            allowed_domains: vec!["api.github.com".to_owned()],
            allowed_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            ports: vec![443, 5432],
            exit: Peer {
                namespace: "kubetask-system".to_owned(),
                pod_labels: BTreeMap::from([(
                    "app.kubernetes.io/component".to_owned(),
                    "exit".to_owned(),
                )]),
                port: 3128,
            },
            dns: Peer {
                namespace: "kube-system".to_owned(),
                pod_labels: BTreeMap::from([("k8s-app".to_owned(), "kube-dns".to_owned())]),
                port: 53,
            },
        }
    }

    fn run(egress: EgressPlan) -> Result<Vec<Value>, Error> {
        let mut task = Task::new("fix-bug", Default::default());
        task.metadata.namespace = Some("team-a".to_owned());
        let job = json!({
            "metadata": {"name": "fix-bug", "namespace": "team-a"},
            "spec": {"template": {"metadata": {"labels": {
                "kubetask.io/task": "fix-bug", "team": "platform",
            }}}},
        });
        let policies = network_wire::<DefaultRenderer>(WireNetworkRequest {
            task: serde_json::to_string(&task).map_err(|e| Error::Internal(e.to_string()))?,
            agent: None,
            settings: Settings::default(),
            job: job.to_string(),
            egress,
            policies: Vec::new(),
        })?;
        policies
            .iter()
            .map(|p| serde_json::from_str(p).map_err(|e| Error::Internal(e.to_string())))
            .collect()
    }

    #[test]
    fn the_pod_reaches_dns_the_exit_and_its_cidrs_on_its_ports() -> Result<(), Error> {
        let policies = run(plan(EgressMode::AllowList, &["10.96.0.0/12"]))?;
        assert_eq!(policies.len(), 1);
        let expected = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "fix-bug-egress", "namespace": "team-a"},
            "spec": {
                "podSelector": {"matchLabels": {"kubetask.io/task": "fix-bug"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                        }],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    },
                    {
                        "to": [{
                            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubetask-system"}},
                            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "exit"}},
                        }],
                        "ports": [{"protocol": "TCP", "port": 3128}],
                    },
                    {
                        "to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}],
                        "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 5432}],
                    },
                ],
            },
        });
        assert_eq!(policies[0], expected);
        Ok(())
    }

    #[test]
    fn deny_reaches_no_cidr_and_no_cidr_means_no_rule() -> Result<(), Error> {
        for (mode, cidrs) in [
            (EgressMode::Deny, vec!["10.96.0.0/12"]),
            (EgressMode::AllowList, vec![]),
            (EgressMode::Open, vec![]),
        ] {
            let policies = run(plan(mode, &cidrs))?;
            let rules = policies[0]["spec"]["egress"].as_array().map(Vec::len);
            assert_eq!(rules, Some(2), "{mode:?} {cidrs:?}");
        }
        Ok(())
    }

    #[test]
    fn open_reaches_its_cidrs_directly() -> Result<(), Error> {
        let policies = run(plan(EgressMode::Open, &["192.168.0.0/16"]))?;
        assert_eq!(
            policies[0]["spec"]["egress"][2]["to"][0]["ipBlock"]["cidr"],
            "192.168.0.0/16"
        );
        Ok(())
    }
}
