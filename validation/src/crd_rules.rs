//! A CustomResourceDefinition's `x-kubernetes-validations` as kube-apiserver judges them when the
//! CRD is created or updated (`apiextensions-apiserver/pkg/apis/apiextensions/validation`): every
//! `fieldPath` must name a field of the schema, and the CEL cost budget must hold — every rule's
//! worst-case cost, times the number of times the schema lets it run, within the per-rule limit,
//! and all rules together within the per-CRD limit. A CRD that fails is refused with the server's
//! own words, so a CRD that passes here installs on a real cluster.

use serde_json::Value;

use crate::cel_cost::{DeclType, estimate_rule_cost};
use crate::{Cause, cause};

/// `StaticEstimatedCostLimit`: the most one rule may cost, over every place it runs.
pub const PER_RULE_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the most all rules of one schema may cost together.
pub const PER_CRD_LIMIT: u64 = 100_000_000;

const HINT: &str = "(try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)";

/// One rule's estimate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCost {
    /// `…x-kubernetes-validations[0].rule`.
    pub path: String,
    /// The rule's worst-case cost times how often it may run.
    pub cost: u64,
}

/// Every rule's estimate and the schema's total, and the rules whose `fieldPath` is invalid.
#[derive(Debug, Clone, Default)]
pub struct SchemaCost {
    pub rules: Vec<RuleCost>,
    pub total: u64,
    /// A `fieldPath` that names no field is a schema error: the server then estimates nothing.
    pub invalid_field_paths: Vec<Cause>,
}

/// The causes a real server gives for a CRD's rules over budget; empty when it fits.
pub fn check_crd(crd: &Value) -> Vec<Cause> {
    let versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let schemas: Vec<Option<&Value>> = versions
        .iter()
        .map(|v| v.pointer("/schema/openAPIV3Schema"))
        .collect();
    // The server keeps one schema shared by every version at spec.validation.
    let shared = schemas.windows(2).all(|w| w[0] == w[1]);
    if shared {
        return schemas
            .first()
            .copied()
            .flatten()
            .map(|schema| check_schema(schema, "spec.validation.openAPIV3Schema"))
            .unwrap_or_default();
    }
    let mut causes = Vec::new();
    for (index, schema) in schemas.iter().enumerate() {
        if let Some(schema) = schema {
            let base = format!("spec.versions[{index}].schema.openAPIV3Schema");
            causes.extend(check_schema(schema, &base));
        }
    }
    causes
}

/// The budget causes for one `openAPIV3Schema`, its errors' paths starting at `base`.
pub fn check_schema(schema: &Value, base: &str) -> Vec<Cause> {
    let cost = schema_cost(schema, base);
    if !cost.invalid_field_paths.is_empty() {
        return cost.invalid_field_paths;
    }
    let mut causes = Vec::new();
    for rule in &cost.rules {
        if rule.cost > PER_RULE_LIMIT {
            causes.push(forbidden(
                &rule.path,
                &over_budget("estimated rule cost", rule.cost, PER_RULE_LIMIT),
            ));
        }
    }
    if cost.total > PER_CRD_LIMIT {
        let mut expensive: Vec<&RuleCost> = cost
            .rules
            .iter()
            .filter(|r| r.cost >= PER_CRD_LIMIT / 100)
            .collect();
        expensive.sort_by_key(|r| std::cmp::Reverse(r.cost));
        for rule in expensive.into_iter().take(4) {
            causes.push(forbidden(
                &rule.path,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        causes.push(forbidden(
            base,
            &over_budget(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                cost.total,
                PER_CRD_LIMIT,
            ),
        ));
    }
    causes
}

/// Every rule's estimate in `schema`, in the order the server visits them.
pub fn schema_cost(schema: &Value, base: &str) -> SchemaCost {
    let mut cost = SchemaCost::default();
    if let Some(decl) = DeclType::of_schema(schema, true) {
        walk(schema, &decl, base, Some(1), &mut cost);
    }
    cost
}

fn walk(
    schema: &Value,
    decl: &DeclType,
    path: &str,
    cardinality: Option<u64>,
    cost: &mut SchemaCost,
) {
    let rules = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array);
    for (index, rule) in rules.into_iter().flatten().enumerate() {
        if let Some(field_path) = rule.get("fieldPath").and_then(Value::as_str)
            && let Some(problem) = field_path_problem(schema, field_path)
        {
            cost.invalid_field_paths.push(cause(
                "FieldValueInvalid",
                format!("{path}.x-kubernetes-validations[{index}].fieldPath"),
                format!("Invalid value: \"{field_path}\": {problem}"),
            ));
        }
        let Some(text) = rule.get("rule").and_then(Value::as_str) else {
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        // A rule that does not compile is refused for that reason elsewhere.
        let Ok(rule_cost) = estimate_rule_cost(text, decl) else {
            continue;
        };
        let times = cardinality.unwrap_or_else(|| decl.max_cardinality());
        let total = rule_cost.saturating_mul(times);
        cost.total = cost.total.saturating_add(total);
        cost.rules.push(RuleCost {
            path: format!("{path}.x-kubernetes-validations[{index}].rule"),
            cost: total,
        });
    }
    // Each child may occur this many times per occurrence of this node.
    let children = cardinality
        .zip(max_elements(schema))
        .map(|(c, f)| c.saturating_mul(f));
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            if let Some(child) = decl.fields.get(name) {
                let child_path = format!("{path}.properties[{name}]");
                walk(property, child, &child_path, children, cost);
            }
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object())
        && let Some(child) = decl.elem.as_deref()
    {
        walk(items, child, &format!("{path}.items"), children, cost);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object())
        && let Some(child) = decl.elem.as_deref()
    {
        walk(
            additional,
            child,
            &format!("{path}.additionalProperties"),
            children,
            cost,
        );
    }
}

/// How many times each child of `schema` may occur per occurrence of it
/// (`extractMaxElements`): a list's `maxItems`, a map's `maxProperties`, one for an object's
/// fields; `None` for an unbounded list or map.
fn max_elements(schema: &Value) -> Option<u64> {
    let bound = |name: &str| {
        schema
            .get(name)
            .and_then(Value::as_i64)
            .map(|v| v.max(0) as u64)
    };
    match schema.get("type").and_then(Value::as_str) {
        Some("object") if schema.get("additionalProperties").is_some() => bound("maxProperties"),
        Some("array") => bound("maxItems"),
        _ => Some(1),
    }
}

/// What is wrong with a rule's `fieldPath` on `schema` (`ValidFieldPath`): `.name` steps and
/// `['name']` steps, each to a property, or to a map's values.
fn field_path_problem(schema: &Value, field_path: &str) -> Option<String> {
    if field_path.trim().is_empty() {
        return Some("fieldPath must be non-empty if specified".to_owned());
    }
    if field_path.contains(['\n', '\r']) {
        return Some("fieldPath must not contain line breaks".to_owned());
    }
    let invalid = |why: String| Some(format!("fieldPath must be a valid path: {why}"));
    let mut node = schema;
    let mut rest = field_path;
    while !rest.is_empty() {
        let name;
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            (name, rest) = after.split_at(end);
        } else if let Some(after) = rest.strip_prefix("['") {
            let Some(end) = after.find("']") else {
                return invalid(format!("expected single quoted string but got {after}"));
            };
            name = &after[..end];
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let got = after.split(']').next().unwrap_or(after);
            return invalid(format!("expected single quoted string but got {got}"));
        } else {
            return invalid(format!("expected [ or . but got: {rest}"));
        }
        let property = node.pointer(&format!(
            "/properties/{}",
            name.replace('~', "~0").replace('/', "~1")
        ));
        node = match (
            property,
            node.get("additionalProperties").filter(|a| a.is_object()),
        ) {
            (Some(property), _) => property,
            (None, Some(values)) => values,
            (None, None) => return invalid("does not refer to a valid field".to_owned()),
        };
    }
    None
}

fn forbidden(field: &str, message: &str) -> Cause {
    cause(
        "FieldValueForbidden",
        field,
        format!("Forbidden: {message}"),
    )
}

/// The server's words for a cost over its limit (`getCostErrorMessage`).
pub fn over_budget(what: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_owned()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!("{what} exceeds budget by factor of {factor} {HINT}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(items: Option<u64>, name: Option<u64>, rule: &str) -> Value {
        let string = |bound: Option<u64>| match bound {
            Some(b) => json!({"type": "string", "maxLength": b}),
            None => json!({"type": "string"}),
        };
        let mut contexts = json!({"type": "array", "items": {"type": "object", "properties": {"ref": {
            "type": "object", "required": ["name", "key"],
            "properties": {"name": string(name), "key": string(name)},
            "x-kubernetes-validations": [{"rule": rule}],
        }}}});
        if let Some(items) = items {
            contexts["maxItems"] = json!(items);
        }
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"contexts": contexts}}}})
    }

    #[test]
    fn a_rule_on_bounded_fields_in_a_bounded_list_fits() {
        let schema = probe(Some(16), Some(253), "self.name.matches('^[a-z]+$')");
        assert!(check_schema(&schema, "s").is_empty());
    }

    #[test]
    fn an_unbounded_list_multiplies_by_what_fits_in_a_request() {
        let schema = probe(
            None,
            Some(253),
            "self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
        );
        let causes = check_schema(&schema, "s");
        // Over the per-rule limit, and so over the per-schema one: the rule, its share, the total.
        assert_eq!(causes.len(), 3, "{causes:?}");
        assert_eq!(
            causes[0].field,
            "s.properties[spec].properties[contexts].items.properties[ref].x-kubernetes-validations[0].rule"
        );
        assert!(
            causes[0]
                .message
                .starts_with("Forbidden: estimated rule cost exceeds budget by factor of")
        );
        assert!(
            causes[1]
                .message
                .contains("contributed to estimated rule cost total")
        );
        assert_eq!(causes[2].field, "s");
    }

    #[test]
    fn a_field_path_must_name_a_field_of_the_schema() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }});
        for (field_path, problem) in [
            (".a", None),
            (".a.b", None),
            ("['a'].b", None),
            (".labels['x.y']", None),
            (
                ".a.c",
                Some("fieldPath must be a valid path: does not refer to a valid field"),
            ),
            (
                ".a[0]",
                Some("fieldPath must be a valid path: expected single quoted string but got 0"),
            ),
            (
                "a",
                Some("fieldPath must be a valid path: expected [ or . but got: a"),
            ),
            ("   ", Some("fieldPath must be non-empty if specified")),
        ] {
            assert_eq!(
                field_path_problem(&schema, field_path).as_deref(),
                problem,
                "{field_path}"
            );
        }
        let mut with_rule = schema.clone();
        with_rule["x-kubernetes-validations"] = json!([{"rule": "true", "fieldPath": ".a.c"}]);
        let causes = check_schema(&with_rule, "s");
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "s.x-kubernetes-validations[0].fieldPath");
        assert_eq!(
            causes[0].message,
            "Invalid value: \".a.c\": fieldPath must be a valid path: does not refer to a valid field"
        );
    }

    #[test]
    fn the_factor_is_worded_as_the_server_words_it() {
        assert!(over_budget("x", 2_000_000_000, 10).contains("more than 100x"));
        assert!(over_budget("x", 136_695_572, 100_000_000).contains("factor of 1.366956x"));
        assert!(over_budget("x", 321_400_000, 10_000_000).contains("factor of 32.1x"));
    }

    #[test]
    fn size_checks_cost_little_where_matches_costs_much() {
        let size = probe(
            None,
            None,
            "size(self.name) <= 253 && size(self.key) <= 253",
        );
        let matches = probe(None, None, "self.name.matches('^[a-z]+$')");
        let cost = |s: &Value| schema_cost(s, "s").total;
        assert!(cost(&size) < PER_RULE_LIMIT);
        assert!(cost(&matches) > 100 * PER_RULE_LIMIT);
    }
}
