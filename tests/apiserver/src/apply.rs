//! Server-side apply and `managedFields`: field sets in the `FieldsV1` format, ownership per
//! field manager, conflicts between managers, and removal of fields a manager stops applying.
//!
//! Lists are atomic except the keyed lists of [`crate::patch::merge_key`]; that matches the
//! kinds KubeTask uses and custom resources without `x-kubernetes-list-type: map`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Cause, cause};
use crate::patch::merge_key;

/// A path of `FieldsV1` keys (`f:name`, `k:{"name":"x"}`).
pub type FieldPath = Vec<String>;

/// The leaf fields set by an object (metadata bookkeeping excluded).
pub fn field_set(object: &Value) -> BTreeSet<FieldPath> {
    let mut set = BTreeSet::new();
    if let Value::Object(map) = object {
        for (key, value) in map {
            if matches!(key.as_str(), "apiVersion" | "kind") {
                continue;
            }
            if key == "metadata" {
                if let Value::Object(meta) = value {
                    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(value) = meta.get(field) {
                            collect(
                                &mut set,
                                vec!["f:metadata".into(), format!("f:{field}")],
                                field,
                                value,
                            );
                        }
                    }
                }
                continue;
            }
            collect(&mut set, vec![format!("f:{key}")], key, value);
        }
    }
    set
}

fn collect(set: &mut BTreeSet<FieldPath>, path: FieldPath, field: &str, value: &Value) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                let mut child = path.clone();
                child.push(format!("f:{key}"));
                collect(set, child, key, inner);
            }
        }
        Value::Array(items) if merge_key(field).is_some() && !items.is_empty() => {
            let key = merge_key(field).unwrap_or("name");
            for item in items {
                let Some(id) = item.get(key) else {
                    set.insert(path.clone());
                    return;
                };
                let mut child = path.clone();
                child.push(format!("k:{}", json!({ key: id })));
                let mut itself = child.clone();
                itself.push(".".into());
                set.insert(itself);
                if let Value::Object(fields) = item {
                    for (name, inner) in fields {
                        let mut grandchild = child.clone();
                        grandchild.push(format!("f:{name}"));
                        collect(set, grandchild, name, inner);
                    }
                }
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

/// Encodes a field set as a `FieldsV1` tree.
pub fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            let entry = node
                .entry(element.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            node = next;
        }
    }
    Value::Object(root)
}

/// Decodes a `FieldsV1` tree into its set of leaf paths.
pub fn from_fields_v1(tree: &Value) -> BTreeSet<FieldPath> {
    fn walk(set: &mut BTreeSet<FieldPath>, path: &mut FieldPath, node: &Value) {
        match node {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(set, path, child);
                    path.pop();
                }
            }
            _ => {
                set.insert(path.clone());
            }
        }
    }
    let mut set = BTreeSet::new();
    walk(&mut set, &mut Vec::new(), tree);
    set
}

/// The value at a field path, if present.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = object;
    for element in path {
        if element == "." {
            return Some(node);
        }
        node = step(node, element)?;
    }
    Some(node)
}

fn step<'a>(node: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(name) = element.strip_prefix("f:") {
        return node.get(name);
    }
    let key: Map<String, Value> = serde_json::from_str(element.strip_prefix("k:")?).ok()?;
    node.as_array()?
        .iter()
        .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
}

fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if last == "." {
        remove_at(object, parents);
        return;
    }
    let mut node = object;
    for element in parents {
        let next = if let Some(name) = element.strip_prefix("f:") {
            node.get_mut(name)
        } else {
            let key: Option<Map<String, Value>> = element
                .strip_prefix("k:")
                .and_then(|k| serde_json::from_str(k).ok());
            match (key, node.as_array_mut()) {
                (Some(key), Some(items)) => items
                    .iter_mut()
                    .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v))),
                _ => None,
            }
        };
        let Some(next) = next else { return };
        node = next;
    }
    if let Some(name) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(name);
        }
    } else if let (Some(key), Some(items)) = (
        last.strip_prefix("k:")
            .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok()),
        node.as_array_mut(),
    ) {
        items.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
}

/// Merges an applied configuration into the live object: maps recursively, keyed lists by
/// key, everything else replaced.
pub fn merge_applied(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (key, value) in applied {
                match live.get_mut(key) {
                    Some(existing) => merge_applied(existing, value, key),
                    None => {
                        live.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied)) if merge_key(field).is_some() => {
            let key = merge_key(field).unwrap_or("name");
            for item in applied {
                match live
                    .iter_mut()
                    .find(|existing| existing.get(key) == item.get(key))
                {
                    Some(existing) => merge_applied(existing, item, ""),
                    None => live.push(item.clone()),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone)]
struct Manager {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    time: String,
    fields: BTreeSet<FieldPath>,
}

fn read_managers(object: &Value) -> Vec<Manager> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|entry| {
                    let text = |k: &str| {
                        entry
                            .get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    Manager {
                        manager: text("manager"),
                        operation: text("operation"),
                        subresource: text("subresource"),
                        api_version: text("apiVersion"),
                        time: text("time"),
                        fields: entry
                            .get("fieldsV1")
                            .map(from_fields_v1)
                            .unwrap_or_default(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_managers(object: &mut Value, managers: Vec<Manager>) {
    let entries: Vec<Value> = managers
        .into_iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut entry = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if !m.subresource.is_empty() {
                entry["subresource"] = json!(m.subresource);
            }
            entry
        })
        .collect();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// What an apply or update call is: who, from where, and when.
pub struct Operation {
    pub manager: String,
    pub subresource: String,
    pub api_version: String,
    pub time: String,
}

/// Server-side apply of `applied` onto `live` (an empty object when creating). The result
/// carries updated `managedFields`; conflicts with other managers are a 409 unless `force`.
pub fn apply(
    live: &Value,
    applied: &Value,
    operation: &Operation,
    force: bool,
    about: (&str, &str, &str),
) -> Result<Value, ApiError> {
    let mut managers = read_managers(live);
    let applied_fields = field_set(applied);
    let mut conflicts: Vec<Cause> = Vec::new();
    for other in managers
        .iter()
        .filter(|m| !(m.manager == operation.manager && m.operation == "Apply"))
    {
        for path in &applied_fields {
            let owned = other.fields.iter().any(|owned| overlaps(owned, path));
            if owned
                && value_at(live, path) != value_at(applied, path)
                && value_at(live, path).is_some()
            {
                conflicts.push(cause(
                    "FieldManagerConflict",
                    path.iter()
                        .map(|p| p.trim_start_matches("f:"))
                        .collect::<Vec<_>>()
                        .join("."),
                    format!(
                        "conflict with \"{}\" using {}: {}",
                        other.manager,
                        other.api_version,
                        path.iter()
                            .map(|p| p.trim_start_matches("f:"))
                            .collect::<Vec<_>>()
                            .join(".")
                    ),
                ));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.dedup();
        return Err(ApiError::apply_conflict(
            about.0, about.1, about.2, conflicts,
        ));
    }
    let previous = managers
        .iter()
        .find(|m| {
            m.manager == operation.manager
                && m.operation == "Apply"
                && m.subresource == operation.subresource
        })
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let mut result = live.clone();
    for path in previous.difference(&applied_fields) {
        let shared = managers
            .iter()
            .filter(|m| {
                !(m.manager == operation.manager
                    && m.operation == "Apply"
                    && m.subresource == operation.subresource)
            })
            .any(|m| m.fields.iter().any(|owned| overlaps(owned, path)));
        if !shared {
            remove_at(&mut result, path);
        }
    }
    merge_applied(&mut result, applied, "");
    for other in &mut managers {
        if other.manager == operation.manager
            && other.operation == "Apply"
            && other.subresource == operation.subresource
        {
            continue;
        }
        other.fields.retain(|owned| {
            !applied_fields.iter().any(|path| {
                overlaps(owned, path) && value_at(live, owned) != value_at(&result, owned)
            })
        });
    }
    managers.retain(|m| {
        !(m.manager == operation.manager
            && m.operation == "Apply"
            && m.subresource == operation.subresource)
    });
    managers.push(Manager {
        manager: operation.manager.clone(),
        operation: "Apply".into(),
        subresource: operation.subresource.clone(),
        api_version: operation.api_version.clone(),
        time: operation.time.clone(),
        fields: applied_fields,
    });
    write_managers(&mut result, managers);
    Ok(result)
}

/// Records a non-apply write (create, update, patch): the manager takes the fields whose
/// values it changed; other managers lose them.
pub fn record_update(old: Option<&Value>, new: &mut Value, operation: &Operation) {
    let empty = Value::Object(Map::new());
    let old = old.unwrap_or(&empty);
    let mut managers = read_managers(old);
    let changed: BTreeSet<FieldPath> = field_set(new)
        .into_iter()
        .filter(|path| value_at(old, path) != value_at(new, path))
        .collect();
    if changed.is_empty() {
        write_managers(new, managers);
        return;
    }
    for other in &mut managers {
        other
            .fields
            .retain(|owned| !changed.iter().any(|path| overlaps(owned, path)));
    }
    let existing = managers.iter_mut().find(|m| {
        m.manager == operation.manager
            && m.operation == "Update"
            && m.subresource == operation.subresource
    });
    match existing {
        Some(manager) => {
            manager.fields.extend(changed);
            manager.time = operation.time.clone();
        }
        None => managers.push(Manager {
            manager: operation.manager.clone(),
            operation: "Update".into(),
            subresource: operation.subresource.clone(),
            api_version: operation.api_version.clone(),
            time: operation.time.clone(),
            fields: changed,
        }),
    }
    write_managers(new, managers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(manager: &str) -> Operation {
        Operation {
            manager: manager.into(),
            subresource: String::new(),
            api_version: "v1".into(),
            time: "t".into(),
        }
    }
    const ABOUT: (&str, &str, &str) = ("", "configmaps", "x");

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": data})
    }

    #[test]
    fn fields_round_trip_through_fields_v1() {
        let object = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}], "x": [1]}});
        let set = field_set(&object);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        assert!(set.contains(&vec![
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"c\"}".into(),
            "f:image".into()
        ]));
    }

    #[test]
    fn apply_removes_fields_the_manager_dropped() {
        let first = apply(
            &json!({}),
            &cm(json!({"a": "1", "b": "2"})),
            &op("a"),
            false,
            ABOUT,
        )
        .unwrap();
        let second = apply(&first, &cm(json!({"a": "1"})), &op("a"), false, ABOUT).unwrap();
        assert_eq!(second["data"], json!({"a": "1"}));
        assert_eq!(second["metadata"]["managedFields"][0]["manager"], "a");
    }

    #[test]
    fn other_managers_conflict_unless_forced() {
        let first = apply(&json!({}), &cm(json!({"a": "1"})), &op("a"), false, ABOUT).unwrap();
        let other = op("b");
        let error = apply(&first, &cm(json!({"a": "2"})), &other, false, ABOUT).unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert!(
            error.message.contains("conflict with \"a\""),
            "{}",
            error.message
        );
        // The same value is shared ownership, not a conflict.
        assert!(apply(&first, &cm(json!({"a": "1"})), &other, false, ABOUT).is_ok());
        let forced = apply(&first, &cm(json!({"a": "2"})), &other, true, ABOUT).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        let managers: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["b"]);
    }
}
