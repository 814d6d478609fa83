//! NetworkPolicy (`networking.k8s.io/v1`), validated as kube-apiserver's
//! `ValidateNetworkPolicySpec` does (its messages, word for word): label selectors, ports
//! (protocol, number or name, `endPort`), peers (one of selectors or an `ipBlock`), CIDRs as
//! the legacy parser reads them (the `StrictIPCIDRValidation` gate is off by default), and
//! `policyTypes`.

use std::net::IpAddr;

use serde_json::Value;

use crate::error::{Cause, cause};

/// The causes that refuse `policy`, if any.
pub fn validate(policy: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = policy.get("spec").cloned().unwrap_or(Value::Null);
    selector(spec.get("podSelector"), "spec.podSelector", &mut causes);
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in array(spec.get(direction)).iter().enumerate() {
            let path = format!("spec.{direction}[{i}]");
            for (j, port) in array(rule.get("ports")).iter().enumerate() {
                validate_port(port, &format!("{path}.ports[{j}]"), &mut causes);
            }
            for (j, peer) in array(rule.get(peers)).iter().enumerate() {
                validate_peer(peer, &format!("{path}.{peers}[{j}]"), &mut causes);
            }
        }
    }
    let types = array(spec.get("policyTypes"));
    if types.len() > 2 {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.policyTypes",
            format!(
                "Invalid value: {}: may not specify more than two policyTypes",
                Value::Array(types.to_vec())
            ),
        ));
        return causes;
    }
    for (i, kind) in types.iter().enumerate() {
        let kind = kind.as_str().unwrap_or_default();
        if kind != "Ingress" && kind != "Egress" {
            causes.push(cause(
                "FieldValueNotSupported",
                format!("spec.policyTypes[{i}]"),
                format!(
                    "Unsupported value: {}: supported values: \"Ingress\", \"Egress\"",
                    quote(kind)
                ),
            ));
        }
    }
    causes
}

fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn quote(text: &str) -> String {
    kubetask_validation::go_quote(text)
}

/// `ValidateLabelSelector`: label keys and values, operators and their values.
fn selector(selector: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(selector) = selector else {
        return;
    };
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            let field = format!("{path}.matchLabels");
            if let Some(why) = kubetask_validation::names::qualified_name_error(key) {
                causes.push(cause(
                    "FieldValueInvalid",
                    field.clone(),
                    format!("Invalid value: {}: {why}", quote(key)),
                ));
            }
            let value = value.as_str().unwrap_or_default();
            if let Some(why) = kubetask_validation::names::label_value_error(value) {
                causes.push(cause(
                    "FieldValueInvalid",
                    field,
                    format!("Invalid value: {}: {why}", quote(value)),
                ));
            }
        }
    }
    for (i, expression) in array(selector.get("matchExpressions")).iter().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let operator = expression
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let values = array(expression.get("values"));
        match operator {
            "In" | "NotIn" if values.is_empty() => causes.push(cause(
                "FieldValueRequired",
                format!("{field}.values"),
                "Required value: must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(cause(
                "FieldValueForbidden",
                format!("{field}.values"),
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => causes.push(cause(
                "FieldValueInvalid",
                format!("{field}.operator"),
                format!(
                    "Invalid value: {}: not a valid selector operator",
                    quote(other)
                ),
            )),
        }
        let key = expression
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(why) = kubetask_validation::names::qualified_name_error(key) {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{field}.key"),
                format!("Invalid value: {}: {why}", quote(key)),
            ));
        }
        for (j, value) in values.iter().enumerate() {
            let value = value.as_str().unwrap_or_default();
            if let Some(why) = kubetask_validation::names::label_value_error(value) {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{field}.values[{j}]"),
                    format!("Invalid value: {}: {why}", quote(value)),
                ));
            }
        }
    }
}

const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// `ValidateNetworkPolicyPort`.
fn validate_port(port: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(protocol) = port.get("protocol").and_then(Value::as_str)
        && !["TCP", "UDP", "SCTP"].contains(&protocol)
    {
        causes.push(cause(
            "FieldValueNotSupported",
            format!("{path}.protocol"),
            format!(
                "Unsupported value: {}: supported values: \"TCP\", \"UDP\", \"SCTP\"",
                quote(protocol)
            ),
        ));
    }
    let end = port.get("endPort").and_then(Value::as_i64);
    match port.get("port") {
        Some(Value::Number(number)) => {
            let number = number.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&number) {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{path}.port"),
                    format!("Invalid value: {number}: {PORT_RANGE}"),
                ));
            }
            if let Some(end) = end {
                if end < number {
                    // kube-apiserver reports the port, not the end port, as the bad value.
                    causes.push(cause(
                        "FieldValueInvalid",
                        format!("{path}.endPort"),
                        format!("Invalid value: {number}: must be greater than or equal to `port`"),
                    ));
                }
                if !(1..=65535).contains(&end) {
                    causes.push(cause(
                        "FieldValueInvalid",
                        format!("{path}.endPort"),
                        format!("Invalid value: {end}: {PORT_RANGE}"),
                    ));
                }
            }
        }
        Some(Value::String(name)) => {
            if let Some(end) = end {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{path}.endPort"),
                    format!(
                        "Invalid value: {end}: may not be specified when `port` is non-numeric"
                    ),
                ));
            }
            for why in port_name_errors(name) {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{path}.port"),
                    format!("Invalid value: {}: {why}", quote(name)),
                ));
            }
        }
        _ => {
            if let Some(end) = end {
                causes.push(cause(
                    "FieldValueInvalid",
                    format!("{path}.endPort"),
                    format!(
                        "Invalid value: {end}: may not be specified when `port` is not specified"
                    ),
                ));
            }
        }
    }
}

/// `IsValidPortName` (an IANA service name).
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if name.len() > 15 {
        errors.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        errors.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push("must not begin or end with a hyphen");
    }
    errors
}

/// `ValidateNetworkPolicyPeer`.
fn validate_peer(peer: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut peers = 0;
    for (field, _) in [("podSelector", ()), ("namespaceSelector", ())] {
        if let Some(value) = peer.get(field).filter(|v| !v.is_null()) {
            peers += 1;
            selector(Some(value), &format!("{path}.{field}"), causes);
        }
    }
    let block = peer.get("ipBlock").filter(|v| !v.is_null());
    if let Some(block) = block {
        peers += 1;
        validate_ip_block(block, &format!("{path}.ipBlock"), causes);
    }
    if peers == 0 {
        causes.push(cause(
            "FieldValueRequired",
            path,
            "Required value: must specify a peer",
        ));
    } else if peers > 1 && block.is_some() {
        causes.push(cause(
            "FieldValueForbidden",
            path,
            "Forbidden: may not specify both ipBlock and another peer",
        ));
    }
}

/// A CIDR as Go's `ParseCIDRSloppy` reads it (IPv4 octets may have leading zeros), truncated
/// to its network; `None` when it does not parse.
fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    let (address, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    let address: IpAddr = match address.parse() {
        Ok(address) => address,
        Err(_) => {
            let octets: Vec<u8> = address
                .split('.')
                .map(|o| {
                    if o.is_empty() || o.len() > 3 {
                        None
                    } else {
                        o.parse().ok()
                    }
                })
                .collect::<Option<_>>()?;
            let octets: [u8; 4] = octets.try_into().ok()?;
            IpAddr::from(octets)
        }
    };
    ipnet::IpNet::new(address, prefix)
        .ok()
        .map(|net| net.trunc())
}

const CIDR_FORMAT: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// `ValidateIPBlock`.
fn validate_ip_block(block: &Value, path: &str, causes: &mut Vec<Cause>) {
    let cidr = block
        .get("cidr")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if cidr.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            format!("{path}.cidr"),
            "Required value",
        ));
        return;
    }
    let Some(network) = parse_cidr(cidr) else {
        causes.push(cause(
            "FieldValueInvalid",
            format!("{path}.cidr"),
            format!("Invalid value: {}: {CIDR_FORMAT}", quote(cidr)),
        ));
        return;
    };
    for (i, except) in array(block.get("except")).iter().enumerate() {
        let except = except.as_str().unwrap_or_default();
        let field = format!("{path}.except[{i}]");
        let Some(inner) = parse_cidr(except) else {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {}: {CIDR_FORMAT}", quote(except)),
            ));
            continue;
        };
        if !network.contains(&inner.network()) || network.prefix_len() >= inner.prefix_len() {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!(
                    "Invalid value: {}: must be a strict subset of `cidr`",
                    quote(except)
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn causes_of(spec: Value) -> Vec<(String, String)> {
        validate(&json!({"metadata": {"name": "p"}, "spec": spec}))
            .into_iter()
            .map(|c| (c.field, c.message))
            .collect()
    }

    #[test]
    fn a_task_egress_policy_is_accepted() {
        let spec = json!({
            "podSelector": {"matchLabels": {"kubetask.io/task": "fix-bug"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                 "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                {"to": [{"ipBlock": {"cidr": "10.96.0.0/12", "except": ["10.96.0.1/32"]}}],
                 "ports": [{"port": 3128}, {"port": 8000, "endPort": 8100}, {"port": "https"}]},
            ],
        });
        assert_eq!(causes_of(spec), Vec::<(String, String)>::new());
        // The legacy parser: bits beyond the prefix and leading zeros are accepted.
        let sloppy = json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/8"}}, {"ipBlock": {"cidr": "010.0.0.0/8"}}]}]});
        assert_eq!(causes_of(sloppy), Vec::<(String, String)>::new());
    }

    #[test]
    fn what_kube_apiserver_refuses_is_refused_with_its_message() {
        let cases = [
            (
                json!({"egress": [{"to": [{}]}]}),
                "spec.egress[0].to[0]",
                "Required value: must specify a peer",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
                "spec.egress[0].to[0]",
                "Forbidden: may not specify both ipBlock and another peer",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "300.0.0.0/8"}}]}]}),
                "spec.egress[0].to[0].ipBlock.cidr",
                "must be a valid CIDR value",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["192.168.0.0/24"]}}]}]}),
                "spec.egress[0].to[0].ipBlock.except[0]",
                "Invalid value: \"192.168.0.0/24\": must be a strict subset of `cidr`",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/24"]}}]}]}),
                "spec.egress[0].to[0].ipBlock.except[0]",
                "must be a strict subset of `cidr`",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {}}]}]}),
                "spec.egress[0].to[0].ipBlock.cidr",
                "Required value",
            ),
            (
                json!({"egress": [{"ports": [{"port": 0}]}]}),
                "spec.egress[0].ports[0].port",
                "Invalid value: 0: must be between 1 and 65535, inclusive",
            ),
            (
                json!({"egress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
                "spec.egress[0].ports[0].endPort",
                "Invalid value: 90: must be greater than or equal to `port`",
            ),
            (
                json!({"egress": [{"ports": [{"port": "http", "endPort": 80}]}]}),
                "spec.egress[0].ports[0].endPort",
                "may not be specified when `port` is non-numeric",
            ),
            (
                json!({"egress": [{"ports": [{"endPort": 80}]}]}),
                "spec.egress[0].ports[0].endPort",
                "may not be specified when `port` is not specified",
            ),
            (
                json!({"egress": [{"ports": [{"port": "Not_A-Name--"}]}]}),
                "spec.egress[0].ports[0].port",
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            ),
            (
                json!({"egress": [{"ports": [{"protocol": "ICMP"}]}]}),
                "spec.egress[0].ports[0].protocol",
                "Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ),
            (
                json!({"policyTypes": ["Egress", "Sideways"]}),
                "spec.policyTypes[1]",
                "Unsupported value: \"Sideways\"",
            ),
            (
                json!({"policyTypes": ["Egress", "Ingress", "Egress"]}),
                "spec.policyTypes",
                "may not specify more than two policyTypes",
            ),
            (
                json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
                "spec.podSelector.matchExpressions[0].values",
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            (
                json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}),
                "spec.podSelector.matchExpressions[0].values",
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            (
                json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like"}]}}),
                "spec.podSelector.matchExpressions[0].operator",
                "not a valid selector operator",
            ),
            (
                json!({"podSelector": {"matchLabels": {"bad key!": "x"}}}),
                "spec.podSelector.matchLabels",
                "Invalid value: \"bad key!\"",
            ),
        ];
        for (spec, field, says) in cases {
            let causes = causes_of(spec.clone());
            assert!(
                causes.iter().any(|(f, m)| f == field && m.contains(says)),
                "{spec}: want {field}: {says}; got {causes:?}"
            );
        }
    }
}
