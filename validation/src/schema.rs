//! Structural-schema handling for custom resources, in the API server's order: prune unknown
//! fields, apply defaults, validate types, required fields, enums and bounds, then evaluate
//! the `x-kubernetes-validations` CEL rules (with `oldSelf` on updates).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use regex::Regex;
use serde_json::{Map, Value};

use crate::{Cause, cause};

pub use kube_cel::CompiledSchema;

/// Compiles the CEL rules of a schema once, for many [`admit`] calls.
pub fn compile(schema: &Value) -> CompiledSchema {
    kube_cel::compile_schema(schema)
}

/// Prunes, defaults and validates `object` against a CRD version's `openAPIV3Schema`.
/// Returns every failed field (empty when the object is valid) and the pruned fields.
pub fn admit(
    schema: &Value,
    rules: Option<&kube_cel::CompiledSchema>,
    object: &mut Value,
    old: Option<&Value>,
) -> (Vec<Cause>, Vec<String>) {
    let mut causes = Vec::new();
    let mut pruned = Vec::new();
    if let (Some(properties), Value::Object(map)) = (
        schema.get("properties").and_then(Value::as_object),
        &mut *object,
    ) {
        for (key, value) in map.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(property) = properties.get(key) {
                prune_and_default(property, value, key, &mut pruned);
            }
        }
        map.retain(|key, _| {
            let keep = matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                || properties.contains_key(key);
            if !keep {
                pruned.push(key.clone());
            }
            keep
        });
        for (key, property) in properties {
            if !map.contains_key(key)
                && let Some(default) = property.get("default")
            {
                map.insert(key.clone(), default.clone());
            }
        }
        drop_nulls(properties, map);
    }
    let root = Value::Object(schema.as_object().cloned().unwrap_or_default());
    validate(&root, object, "", &mut causes, true);
    // Like kube-apiserver's validation ratcheting: an update that changes nothing but metadata
    // and status does not re-run the rules.
    let unchanged =
        old.is_some_and(|old| crate::metadata::equal_except(old, object, &["metadata", "status"]));
    let result = match (causes.is_empty() && !unchanged, rules) {
        (false, _) => Ok(()),
        (true, Some(rules)) => kube_cel::validate_compiled(rules, object, old),
        (true, None) => kube_cel::validate(schema, object, old),
    };
    if let Err(errors) = result {
        for error in errors.into_vec() {
            let field = error.field_path.trim_start_matches('.').to_owned();
            let reason = error
                .reason
                .clone()
                .unwrap_or_else(|| "FieldValueInvalid".into());
            // kube-apiserver words a rule's failure by the rule's reason.
            let message = match reason.as_str() {
                "FieldValueRequired" => format!("Required value: {}", error.message),
                "FieldValueForbidden" => format!("Forbidden: {}", error.message),
                // Like kube-apiserver, the value shown is the type of the node whose rule
                // failed (`"string"` for a rule on a string), whatever its fieldPath names.
                _ => format!(
                    "Invalid value: \"{}\": {}",
                    rule_node_type(schema, &field, &error.rule),
                    error.message
                ),
            };
            causes.push(cause(&reason, field, message));
        }
    }
    (causes, pruned)
}

/// The type of the schema node on `field`'s way from the root whose `x-kubernetes-validations`
/// hold `rule` (the deepest such node; `object` if none is found).
fn rule_node_type<'a>(schema: &'a Value, field: &str, rule: &str) -> &'a str {
    let mut nodes = vec![schema];
    let mut node = schema;
    let mut rest = field;
    while !rest.is_empty() {
        let next = if let Some(after) = rest.strip_prefix('[') {
            let Some(close) = after.find(']') else { break };
            rest = &after[close + 1..];
            node.get("items")
                .or_else(|| node.get("additionalProperties"))
        } else {
            let name = rest.trim_start_matches('.');
            let end = name.find(['.', '[']).unwrap_or(name.len());
            rest = &name[end..];
            node.pointer(&format!("/properties/{}", &name[..end]))
                .or_else(|| node.get("additionalProperties"))
        };
        let Some(next) = next else { break };
        node = next;
        nodes.push(node);
    }
    nodes
        .into_iter()
        .rev()
        .find(|node| {
            node.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .is_some_and(|rules| {
                    rules
                        .iter()
                        .any(|r| r.get("rule").and_then(Value::as_str) == Some(rule))
                })
        })
        .and_then(|node| node.get("type").and_then(Value::as_str))
        .unwrap_or("object")
}

fn drop_nulls(properties: &Map<String, Value>, map: &mut Map<String, Value>) {
    map.retain(|key, value| {
        !(value.is_null()
            && properties
                .get(key)
                .is_some_and(|p| p.get("nullable").and_then(Value::as_bool) != Some(true)))
    });
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn prune_and_default(schema: &Value, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                if !preserves_unknown(schema) {
                    map.retain(|key, _| {
                        let keep = properties.contains_key(key);
                        if !keep {
                            pruned.push(child(path, key));
                        }
                        keep
                    });
                }
                for (key, property) in properties {
                    match map.get_mut(key) {
                        Some(inner) => {
                            prune_and_default(property, inner, &child(path, key), pruned)
                        }
                        None => {
                            if let Some(default) = property.get("default") {
                                map.insert(key.clone(), default.clone());
                            }
                        }
                    }
                }
                drop_nulls(properties, map);
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, inner) in map.iter_mut() {
                    prune_and_default(additional, inner, &child(path, key), pruned);
                }
            } else if !preserves_unknown(schema)
                && schema.get("type").and_then(Value::as_str) == Some("object")
            {
                pruned.extend(map.keys().map(|key| child(path, key)));
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter_mut().enumerate() {
                    prune_and_default(item_schema, item, &format!("{path}[{index}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Whether `text` matches a schema `pattern` (an RE2 expression, unanchored like the server's).
/// Compiled patterns are kept: a process sees few distinct schemas. A pattern that does not
/// compile matches nothing, so the object is refused rather than let through.
fn matches_pattern(pattern: &str, text: &str) -> bool {
    static COMPILED: LazyLock<Mutex<HashMap<String, Option<Regex>>>> =
        LazyLock::new(Default::default);
    let mut compiled = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    compiled
        .entry(pattern.to_owned())
        .or_insert_with(|| Regex::new(pattern).ok())
        .as_ref()
        .is_some_and(|regex| regex.is_match(text))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => crate::go_quote(s),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>, root: bool) {
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    let actual = type_name(value);
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && !root {
            causes.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("object")
                ),
            ));
        }
        return;
    }
    if int_or_string {
        if !matches!(actual, "integer" | "string") {
            causes.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must be of type integer,string: {}",
                    show(value),
                    show(value)
                ),
            ));
        }
        return;
    }
    if let Some(expected) = schema.get("type").and_then(Value::as_str) {
        let ok = expected == actual || (expected == "number" && actual == "integer");
        if !ok {
            causes.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must be of type {expected}: \"{actual}\"",
                    show(value)
                ),
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(show).collect();
        causes.push(cause(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                supported.join(", ")
            ),
        ));
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    match value {
        Value::String(text) => {
            if let Some(max) = bound("maxLength").filter(|max| text.chars().count() as f64 > *max) {
                causes.push(cause(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = bound("minLength").filter(|min| (text.chars().count() as f64) < *min)
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should be at least {min} chars long",
                        show(value)
                    ),
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
                && !matches_pattern(pattern, text)
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should match '{pattern}'",
                        show(value)
                    ),
                ));
            }
        }
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or_default();
            if let Some(max) = bound("maximum").filter(|max| n > *max) {
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {n}: {path} in body should be less than or equal to {max}"
                    ),
                ));
            }
            if let Some(min) = bound("minimum").filter(|min| n < *min) {
                causes.push(cause("FieldValueInvalid", path, format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}")));
            }
        }
        Value::Array(items) => {
            if let Some(max) = bound("maxItems").filter(|max| items.len() as f64 > *max) {
                causes.push(cause(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(min) = bound("minItems").filter(|min| (items.len() as f64) < *min) {
                causes.push(cause(
                    "FieldValueInvalid",
                    path,
                    format!(
                        "Invalid value: {}: {path} in body should have at least {min} items",
                        items.len()
                    ),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    validate(
                        item_schema,
                        item,
                        &format!("{path}[{index}]"),
                        causes,
                        false,
                    );
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = bound("maxProperties").filter(|max| map.len() as f64 > *max) {
                causes.push(cause(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {}: must have at most {max} items", map.len()),
                ));
            }
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(name) {
                        causes.push(cause(
                            "FieldValueRequired",
                            child(path, name),
                            "Required value",
                        ));
                    }
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (key, inner) in map {
                    if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if let Some(property) = properties.get(key) {
                        validate(property, inner, &child(path, key), causes, false);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (key, inner) in map {
                    validate(additional, inner, &child(path, key), causes, false);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 5},
                        "count": {"type": "integer", "default": 1, "minimum": 0},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "port": {"x-kubernetes-int-or-string": true},
                        "code": {"type": "string", "pattern": "^[a-z]+$"},
                        "path": {"type": "string", "x-kubernetes-validations": [
                            {"rule": "self.startsWith('/')", "message": "must be absolute"}]},
                        "items": {"type": "array", "items": {"type": "object",
                            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                            "x-kubernetes-validations": [{"rule": "!has(self.b) || has(self.a)",
                                "message": "b goes with a", "fieldPath": ".b"}]}},
                        "tags": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
                    },
                    "x-kubernetes-validations": [{"rule": "self.name != 'bad'", "message": "name must not be bad"}],
                },
            },
        })
    }

    #[test]
    fn prunes_defaults_and_accepts_valid_objects() {
        let mut object = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"name": "ok", "unknown": 1, "free": {"anything": [1]}, "port": "http"}, "junk": true});
        let (causes, pruned) = admit(&schema(), None, &mut object, None);
        assert!(causes.is_empty());
        assert_eq!(pruned, ["spec.unknown", "junk"]);
        assert_eq!(
            object["spec"],
            json!({"name": "ok", "count": 1, "free": {"anything": [1]}, "port": "http"})
        );
        assert!(object.get("junk").is_none());
    }

    #[test]
    fn reports_each_bad_field() {
        let cases = [
            (json!({}), "spec.name", "Required value"),
            (json!({"name": 3}), "spec.name", "must be of type string"),
            (json!({"name": "toolong"}), "spec.name", "Too long"),
            (
                json!({"name": "x", "count": -1}),
                "spec.count",
                "greater than or equal to 0",
            ),
            (
                json!({"name": "x", "mode": "c"}),
                "spec.mode",
                "Unsupported value: \"c\"",
            ),
            (
                json!({"name": "x", "port": true}),
                "spec.port",
                "integer,string",
            ),
            (
                json!({"name": "bad"}),
                "spec",
                "Invalid value: \"object\": name must not be bad",
            ),
            // The value shown is the type of the node whose rule failed; the field is its
            // fieldPath.
            (
                json!({"name": "x", "path": "relative"}),
                "spec.path",
                "Invalid value: \"string\": must be absolute",
            ),
            (
                json!({"name": "x", "items": [{"a": "1"}, {"b": "2"}]}),
                "spec.items[1].b",
                "Invalid value: \"object\": b goes with a",
            ),
            (
                json!({"name": "x", "code": "A1"}),
                "spec.code",
                "should match '^[a-z]+$'",
            ),
            (
                json!({"name": "x", "tags": {"a": "1", "b": "2"}}),
                "spec.tags",
                "must have at most 1 items",
            ),
        ];
        for (spec, field, message) in cases {
            let mut object =
                json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": spec});
            let (causes, _) = admit(&schema(), None, &mut object, None);
            assert_eq!(causes.len(), 1, "{object}: {causes:?}");
            assert_eq!(causes[0].field, field, "{causes:?}");
            assert!(causes[0].message.contains(message), "{causes:?}");
        }
    }
}
