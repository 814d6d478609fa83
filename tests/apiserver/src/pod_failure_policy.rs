//! A Job's `spec.podFailurePolicy`, validated as kube-apiserver's `validatePodFailurePolicy`
//! does (its messages, word for word): at most 20 rules; each an action of `Count`,
//! `FailIndex` (with `backoffLimitPerIndex`), `FailJob` or `Ignore`, and exactly one of
//! `onExitCodes` (operator `In`/`NotIn`, a `containerName` of the pod template's containers
//! or init containers, 1–255 ordered, distinct values, no 0 for `In`) and `onPodConditions`
//! (at most 20, a qualified-name type, status `True`/`False`/`Unknown`); the pod template's
//! `restartPolicy` must then be `Never`.

use serde_json::Value;

use crate::error::{Cause, cause};
use kubetask_validation::go_quote;

const MAX_RULES: usize = 20;
const MAX_VALUES: usize = 255;
const MAX_PATTERNS: usize = 20;
const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
const OPERATORS: [&str; 2] = ["In", "NotIn"];
const STATUSES: [&str; 3] = ["False", "True", "Unknown"];

/// Defaults as kube-apiserver does before validating: a pod-condition pattern without a
/// status matches `True`.
pub fn default(job: &mut Value) {
    let Some(rules) = job
        .pointer_mut("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for rule in rules {
        let patterns = rule
            .get_mut("onPodConditions")
            .and_then(Value::as_array_mut);
        for pattern in patterns.into_iter().flatten() {
            if let Some(pattern) = pattern.as_object_mut()
                && pattern
                    .get("status")
                    .is_none_or(|s| s.as_str() == Some("") || s.is_null())
            {
                pattern.insert("status".into(), Value::String("True".into()));
            }
        }
    }
}

/// The causes that refuse the Job's pod failure policy, if any.
pub fn validate(job: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(policy) = job
        .pointer("/spec/podFailurePolicy")
        .filter(|p| !p.is_null())
    else {
        return causes;
    };
    let rules = policy
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let path = "spec.podFailurePolicy.rules";
    if rules.len() > MAX_RULES {
        causes.push(too_many(path, rules.len(), MAX_RULES));
    }
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| {
            job.pointer(&format!("/spec/template/spec/{list}"))
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let per_index = job
        .pointer("/spec/backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = format!("{path}[{i}]");
        let action_path = format!("{rule_path}.action");
        match rule
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "" => causes.push(cause(
                "FieldValueRequired",
                action_path,
                format!("Required value: valid values: {}", go_list(&ACTIONS)),
            )),
            "FailIndex" if !per_index => causes.push(cause(
                "FieldValueInvalid",
                action_path,
                "Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set",
            )),
            action if !ACTIONS.contains(&action) => {
                causes.push(not_supported(&action_path, action, &ACTIONS));
            }
            _ => {}
        }
        let on_exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let patterns = rule
            .get("onPodConditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(codes) = on_exit_codes {
            exit_codes(
                codes,
                &format!("{rule_path}.onExitCodes"),
                &names,
                &mut causes,
            );
        }
        if !patterns.is_empty() {
            pod_conditions(
                &patterns,
                &format!("{rule_path}.onPodConditions"),
                &mut causes,
            );
        }
        if on_exit_codes.is_some() && !patterns.is_empty() {
            causes.push(cause(
                "FieldValueInvalid",
                rule_path.clone(),
                "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
            ));
        }
        if on_exit_codes.is_none() && patterns.is_empty() {
            causes.push(cause(
                "FieldValueInvalid",
                rule_path,
                "Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            ));
        }
    }
    let restart = job
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str);
    if restart == Some("OnFailure") {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.template.spec.restartPolicy",
            "Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
        ));
    }
    causes
}

fn exit_codes(codes: &Value, path: &str, names: &[&str], causes: &mut Vec<Cause>) {
    let operator = codes
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let operator_path = format!("{path}.operator");
    if operator.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            operator_path,
            format!("Required value: valid values: {}", go_list(&OPERATORS)),
        ));
    } else if !OPERATORS.contains(&operator) {
        causes.push(not_supported(&operator_path, operator, &OPERATORS));
    }
    if let Some(name) = codes.get("containerName").and_then(Value::as_str)
        && !names.contains(&name)
    {
        causes.push(cause(
            "FieldValueInvalid",
            format!("{path}.containerName"),
            format!(
                "Invalid value: {}: must be one of the container or initContainer names in the pod template",
                go_quote(name)
            ),
        ));
    }
    let values: Vec<i64> = codes
        .get("values")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let values_path = format!("{path}.values");
    if values.is_empty() {
        causes.push(cause(
            "FieldValueInvalid",
            values_path.clone(),
            "Invalid value: []int32(nil): at least one value is required",
        ));
    } else if values.len() > MAX_VALUES {
        causes.push(too_many(&values_path, values.len(), MAX_VALUES));
    }
    let mut seen = Vec::new();
    for (j, value) in values.iter().enumerate() {
        if operator == "In" && *value == 0 {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{values_path}[{j}]"),
                "Invalid value: 0: must not be 0 for the In operator",
            ));
        }
        if seen.contains(value) {
            causes.push(cause(
                "FieldValueDuplicate",
                format!("{values_path}[{j}]"),
                format!("Duplicate value: {value}"),
            ));
        } else {
            seen.push(*value);
        }
    }
    if values.windows(2).any(|pair| pair[0] > pair[1]) {
        let listed: Vec<String> = values.iter().map(i64::to_string).collect();
        causes.push(cause(
            "FieldValueInvalid",
            values_path,
            format!(
                "Invalid value: []int32{{{}}}: must be ordered",
                listed.join(", ")
            ),
        ));
    }
}

fn pod_conditions(patterns: &[Value], path: &str, causes: &mut Vec<Cause>) {
    if patterns.len() > MAX_PATTERNS {
        causes.push(too_many(path, patterns.len(), MAX_PATTERNS));
    }
    for (j, pattern) in patterns.iter().enumerate() {
        let pattern_path = format!("{path}[{j}]");
        let kind = pattern
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(why) = kubetask_validation::names::qualified_name_error(kind) {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{pattern_path}.type"),
                format!("Invalid value: {}: {why}", go_quote(kind)),
            ));
        }
        let status = pattern
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let status_path = format!("{pattern_path}.status");
        if status.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                status_path,
                format!("Required value: valid values: {}", go_list(&STATUSES)),
            ));
        } else if !STATUSES.contains(&status) {
            causes.push(not_supported(&status_path, status, &STATUSES));
        }
    }
}

/// `%q` of a Go string slice: `["a" "b"]`.
fn go_list(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[{}]", quoted.join(" "))
}

fn not_supported(path: &str, value: &str, supported: &[&str]) -> Cause {
    let supported: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
    cause(
        "FieldValueNotSupported",
        path.to_owned(),
        format!(
            "Unsupported value: {}: supported values: {}",
            go_quote(value),
            supported.join(", ")
        ),
    )
}

fn too_many(path: &str, count: usize, max: usize) -> Cause {
    cause(
        "FieldValueTooMany",
        path.to_owned(),
        format!("Too many: {count}: must have at most {max} items"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(rules: Value) -> Value {
        json!({"spec": {"podFailurePolicy": {"rules": rules}, "template": {"spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "workspace-clone"}],
            "containers": [{"name": "agent"}],
        }}}})
    }

    fn messages(job: &Value) -> Vec<String> {
        validate(job)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_pattern_without_status_means_true() {
        let mut defaulted =
            job(json!([{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]));
        default(&mut defaulted);
        assert_eq!(messages(&defaulted), Vec::<String>::new());
        assert_eq!(
            defaulted.pointer("/spec/podFailurePolicy/rules/0/onPodConditions/0/status"),
            Some(&json!("True"))
        );
    }

    #[test]
    fn kubetasks_rules_pass() {
        let ours = job(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "agent", "operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "workspace-clone", "operator": "In", "values": [3]}},
        ]));
        assert_eq!(messages(&ours), Vec::<String>::new());
    }

    #[test]
    fn each_rule_of_the_api_server() {
        let cases = [
            (
                json!([{"action": "FailJob", "onExitCodes": {"containerName": "gone", "operator": "In", "values": [3]}}]),
                "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"gone\": must be one of the container or initContainer names in the pod template",
            ),
            (
                json!([{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]),
                "spec.podFailurePolicy.rules[0].action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
            ),
            (
                json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0]}}]),
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
            ),
            (
                json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 1]}}]),
                "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{3, 1}: must be ordered",
            ),
            (
                json!([{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 3]}}]),
                "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Duplicate value: 3",
            ),
            (
                json!([{"action": "Ignore"}]),
                "spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
            ),
            (
                json!([{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]}]),
                "spec.podFailurePolicy.rules[0].onPodConditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\"",
            ),
        ];
        for (rules, expected) in cases {
            let got = messages(&job(rules.clone()));
            assert!(got.iter().any(|m| m == expected), "{rules}: {got:?}");
        }
        let many: Vec<Value> = (0..21)
            .map(
                |_| json!({"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}}),
            )
            .collect();
        let got = messages(&job(Value::Array(many)));
        assert!(
            got.contains(
                &"spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items".to_owned()
            ),
            "{got:?}"
        );
    }
}
