//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge
//! patch for the kinds KubeTask uses.

use serde_json::{Map, Value};

/// The list fields merged by key in strategic merge patches (`patchMergeKey` in the Go types).
pub fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Primitive lists with the `merge` strategy (union on patch).
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch.
pub fn apply_json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &patch).map_err(|e| e.to_string())
}

/// Applies a strategic merge patch: maps merge, keyed lists merge by key, `$patch`,
/// `$retainKeys`, `$deleteFromPrimitiveList` and `$setElementOrder` directives.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(patch) = patch else {
        return Err("strategic merge patch must be a JSON object".into());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    merge_map(target, patch)
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replacement = patch.clone();
            replacement.remove("$patch");
            *target = Value::Object(replacement);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch type: {other}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(object) = target.as_object_mut() else {
        return Ok(());
    };
    if let Some(keys) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        object.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" || key == "$patch" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (object.get_mut(field), value.as_array())
            {
                list.retain(|item| !remove.contains(item));
            }
            continue;
        }
        match value {
            Value::Null => {
                object.remove(key);
            }
            Value::Object(inner) => {
                let slot = object.entry(key.clone()).or_insert(Value::Null);
                merge_map(slot, inner)?;
            }
            Value::Array(items) => {
                let merged = match (merge_key(key), object.remove(key)) {
                    (Some(merge_key), Some(Value::Array(existing))) => {
                        merge_keyed_list(existing, items, merge_key)?
                    }
                    (None, Some(Value::Array(mut existing))) if merges_primitives(key) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                        existing
                    }
                    _ => items
                        .iter()
                        .filter(|item| item.get("$patch").is_none())
                        .cloned()
                        .collect(),
                };
                object.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                object.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn merge_keyed_list(
    mut existing: Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|item| item.get("$patch").is_none())
            .cloned()
            .collect());
    }
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(format!(
                "map: {item} does not contain declared merge key: {key}"
            ));
        };
        let position = existing.iter().position(|e| e.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(index), true) => {
                existing.remove(index);
            }
            (None, true) => {}
            (Some(index), false) => {
                if let Value::Object(fields) = item {
                    merge_map(&mut existing[index], fields)?;
                }
            }
            (None, false) => existing.push(item.clone()),
        }
    }
    Ok(existing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keyed_lists_merge_by_name() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        strategic_merge(
            &mut pod,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}])
        );
    }

    #[test]
    fn directives() {
        let mut object = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "tolerations": [{"key": "k"}]}});
        strategic_merge(
            &mut object,
            &json!({
                "metadata": {"finalizers": ["b"], "labels": {"x": null}},
                "$setElementOrder/spec": [],
                "spec": {"containers": [{"name": "a", "$patch": "delete"}], "tolerations": [{"key": "j"}]},
            }),
        )
        .unwrap();
        assert_eq!(object["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(object["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(object["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(object["spec"]["tolerations"], json!([{"key": "j"}]));
        strategic_merge(
            &mut object,
            &json!({"metadata": {"labels": {"$patch": "replace", "z": "3"}}}),
        )
        .unwrap();
        assert_eq!(object["metadata"]["labels"], json!({"z": "3"}));
        strategic_merge(
            &mut object,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        )
        .unwrap();
        assert_eq!(object["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn json_patch_errors_are_reported() {
        let mut object = json!({"a": 1});
        apply_json_patch(
            &mut object,
            &json!([{"op": "replace", "path": "/a", "value": 2}]),
        )
        .unwrap();
        assert_eq!(object, json!({"a": 2}));
        assert!(
            apply_json_patch(
                &mut object,
                &json!([{"op": "test", "path": "/a", "value": 3}])
            )
            .is_err()
        );
        assert!(apply_json_patch(&mut object, &json!({"op": "x"})).is_err());
    }
}
