//! Whether a Task pod's egress is what its policy says: NetworkPolicies add up (a pod selected
//! by several may reach the union of what they allow), so KubeTask's own default-deny policy
//! means nothing if another policy selecting the same pod allows more. The rule of the
//! `EgressEnforced` condition, pure and table-tested; the controller reads the namespace's
//! NetworkPolicies and states the answer.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;

pub use super::canary::Probe;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The answer for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// KubeTask's policy selects the pod, and no other policy selecting it allows egress.
    Enforced,
    /// No policy of ours selects the pod (or it does not restrict egress).
    NoPolicy,
    /// These other policies select the pod and allow egress ours does not (sorted by name).
    Widened(Vec<String>),
}

/// Whether `selector` selects a pod with `labels` (an empty selector selects every pod; an
/// operator it does not know selects none, as the API server would have refused it).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// Whether `policy` restricts egress: `Egress` among its `policyTypes`, or (with none listed)
/// egress rules present, as the API server defaults `policyTypes`.
fn restricts_egress(policy: &NetworkPolicy) -> bool {
    let Some(spec) = &policy.spec else {
        return false;
    };
    match &spec.policy_types {
        Some(types) => types.iter().any(|t| t == "Egress"),
        None => spec.egress.is_some(),
    }
}

fn pod_selected(policy: &NetworkPolicy, labels: &BTreeMap<String, String>) -> bool {
    policy
        .spec
        .as_ref()
        .is_some_and(|spec| selects(&spec.pod_selector.clone().unwrap_or_default(), labels))
}

/// The egress rules of `policy` (none when it does not restrict egress: then it allows
/// nothing by itself, and takes nothing away).
fn egress_rules(
    policy: &NetworkPolicy,
) -> &[k8s_openapi::api::networking::v1::NetworkPolicyEgressRule] {
    policy
        .spec
        .as_ref()
        .and_then(|spec| spec.egress.as_deref())
        .unwrap_or_default()
}

/// The `EgressEnforced` rule for a pod with `labels`: `ours` are the Task's own policies (those
/// it controls), `others` every other NetworkPolicy of the namespace. Another policy that
/// selects the pod and restricts egress widens it by every rule none of ours has word for word
/// (a rule that allows a subset of ours is counted too: proving containment of peers and
/// ports is not worth a false "enforced").
pub fn enforcement(
    labels: &BTreeMap<String, String>,
    ours: &[NetworkPolicy],
    others: &[NetworkPolicy],
) -> Enforcement {
    let ours: Vec<&NetworkPolicy> = ours
        .iter()
        .filter(|p| pod_selected(p, labels) && restricts_egress(p))
        .collect();
    if ours.is_empty() {
        return Enforcement::NoPolicy;
    }
    let our_rules: Vec<_> = ours.iter().flat_map(|p| egress_rules(p)).collect();
    let our_names: Vec<&Option<String>> = ours.iter().map(|p| &p.metadata.name).collect();
    let mut widened: Vec<String> = others
        .iter()
        .filter(|p| !our_names.contains(&&p.metadata.name))
        .filter(|p| pod_selected(p, labels) && restricts_egress(p))
        .filter(|p| {
            egress_rules(p)
                .iter()
                .any(|rule| !our_rules.contains(&rule))
        })
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    widened.sort();
    if widened.is_empty() {
        Enforcement::Enforced
    } else {
        Enforcement::Widened(widened)
    }
}

/// The condition's type.
pub const CONDITION: &str = "EgressEnforced";

/// Reasons of the condition the canary decides.
pub const CANARY_REACHED: &str = "CanaryReached";
pub const CANARY_BLOCKED: &str = "CanaryBlocked";

/// The `EgressEnforced` condition for the policies' answer and, when the pod's canary has
/// run, what it saw: `(status, reason, message)`. A canary that got through decides (the
/// network does not enforce what the policies say); one that was stopped confirms `True`.
pub fn condition(
    answer: &Enforcement,
    probe: Option<&Probe>,
) -> (&'static str, &'static str, String) {
    match (answer, probe) {
        (_, Some(probe)) if probe.reached => {
            return (
                "False",
                CANARY_REACHED,
                format!(
                    "the egress canary reached {} at the pod's start, which the pod's policy denies: this cluster's network does not enforce it (a CNI that ignores NetworkPolicy, such as a plain bridge or flannel alone); connections that ignore HTTPS_PROXY leave the pod unchecked",
                    probe.address
                ),
            );
        }
        (Enforcement::Enforced, Some(probe)) => {
            return (
                "True",
                CANARY_BLOCKED,
                format!(
                    "the Task's NetworkPolicy selects its pod, no other policy allows it more egress, and the egress canary's connection to {} at the pod's start was stopped ({}): its connections leave only through the exit",
                    probe.address,
                    probe.error.as_deref().unwrap_or("not connected")
                ),
            );
        }
        _ => {}
    }
    match answer {
        Enforcement::Enforced => (
            "True",
            "PolicyEnforced",
            "the Task's NetworkPolicy selects its pod and no other policy allows it more egress; on a CNI that enforces NetworkPolicy, its connections leave only through the exit".to_owned(),
        ),
        Enforcement::NoPolicy => (
            "False",
            "NoPolicy",
            "no NetworkPolicy of the Task selects its pod and restricts egress: the pod may reach any address its network allows (a CNI's own policies, such as a CiliumNetworkPolicy, are not checked)".to_owned(),
        ),
        Enforcement::Widened(names) => (
            "False",
            "PolicyWidened",
            format!(
                "other NetworkPolicies select the Task's pod and allow egress its own policy does not (policies add up, so the pod may reach what they allow): {}",
                names.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(value: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(value).unwrap_or_default()
    }

    /// KubeTask's policy: the Task's pod, DNS and the exit only.
    fn ours() -> NetworkPolicy {
        policy(json!({
            "metadata": {"name": "fix-bug-egress", "namespace": "team"},
            "spec": {
                "podSelector": {"matchLabels": {"kubetask.io/task": "fix-bug"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                     "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubetask-system"}},
                             "podSelector": {"matchLabels": {"app.kubernetes.io/component": "exit"}}}],
                     "ports": [{"protocol": "TCP", "port": 3128}]},
                ],
            },
        }))
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("kubetask.io/task".to_owned(), "fix-bug".to_owned()),
            ("team".to_owned(), "a".to_owned()),
        ])
    }

    #[test]
    fn policies_add_up() {
        let allow_all = policy(json!({
            "metadata": {"name": "allow-all-egress"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
        }));
        let other_team = policy(json!({
            "metadata": {"name": "team-b-egress"},
            "spec": {"podSelector": {"matchLabels": {"team": "b"}}, "policyTypes": ["Egress"], "egress": [{}]},
        }));
        let ingress_only = policy(json!({
            "metadata": {"name": "ingress"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
        }));
        let deny_all = policy(json!({
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        }));
        let implicit_egress = policy(json!({
            "metadata": {"name": "implicit"},
            "spec": {"podSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]},
                     "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
        }));
        let same_dns = policy(json!({
            "metadata": {"name": "dns-everywhere"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]},
        }));
        let cases: Vec<(&str, Option<NetworkPolicy>, Vec<NetworkPolicy>, Enforcement)> = vec![
            ("ours only", Some(ours()), vec![], Enforcement::Enforced),
            ("none", None, vec![], Enforcement::NoPolicy),
            (
                "none, whatever else exists",
                None,
                vec![deny_all.clone()],
                Enforcement::NoPolicy,
            ),
            (
                "an extra allowing policy",
                Some(ours()),
                vec![allow_all.clone()],
                Enforcement::Widened(vec!["allow-all-egress".into()]),
            ),
            (
                "one for other pods",
                Some(ours()),
                vec![other_team],
                Enforcement::Enforced,
            ),
            (
                "ingress only",
                Some(ours()),
                vec![ingress_only],
                Enforcement::Enforced,
            ),
            (
                "a deny-all beside ours",
                Some(ours()),
                vec![deny_all],
                Enforcement::Enforced,
            ),
            (
                "policyTypes defaulted from its egress rules",
                Some(ours()),
                vec![implicit_egress.clone()],
                Enforcement::Widened(vec!["implicit".into()]),
            ),
            (
                "a rule ours has too",
                Some(ours()),
                vec![same_dns],
                Enforcement::Enforced,
            ),
            (
                "several, named in order",
                Some(ours()),
                vec![implicit_egress, allow_all],
                Enforcement::Widened(vec!["allow-all-egress".into(), "implicit".into()]),
            ),
            (
                "ours not selecting the pod",
                Some(policy(json!({
                    "metadata": {"name": "fix-bug-egress"},
                    "spec": {"podSelector": {"matchLabels": {"kubetask.io/task": "other"}}, "policyTypes": ["Egress"]},
                }))),
                vec![],
                Enforcement::NoPolicy,
            ),
        ];
        for (what, ours, others, want) in cases {
            let ours: Vec<NetworkPolicy> = ours.into_iter().collect();
            assert_eq!(
                enforcement(&labels(), ours.as_slice(), &others),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn selectors_as_the_api_server_reads_them() {
        let pod = labels();
        let selector = |value: serde_json::Value| -> LabelSelector {
            serde_json::from_value(value).unwrap_or_default()
        };
        let cases = [
            (json!({}), true),
            (json!({"matchLabels": {"team": "a"}}), true),
            (json!({"matchLabels": {"team": "b"}}), false),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "absent", "operator": "NotIn", "values": ["b"]}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "Exists"}]}),
                true,
            ),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
                false,
            ),
            (
                json!({"matchExpressions": [{"key": "team", "operator": "Like"}]}),
                false,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(selects(&selector(value.clone()), &pod), want, "{value}");
        }
    }
}
