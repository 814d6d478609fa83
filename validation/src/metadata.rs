//! What kube-apiserver validates in every object's metadata (and a pod template's).

use serde_json::Value;

use crate::names::{label_value_error, qualified_name_error};
use crate::{Cause, cause};

/// The total size of an object's annotations (keys and values) the server accepts.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Checks label keys and values at `field` (a map of strings).
pub fn validate_labels_at(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (key, value) in labels {
        if let Some(why) = qualified_name_error(key) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {}: {why}", crate::go_quote(key)),
            ));
        }
        let Some(value) = value.as_str() else {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{field}.{key}"),
                format!("Invalid value: {value}: a label value must be a string"),
            ));
            continue;
        };
        if let Some(why) = label_value_error(value) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {}: {why}", crate::go_quote(value)),
            ));
        }
    }
}

fn validate_annotations_at(annotations: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(annotations) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (key, value) in annotations {
        if let Some(why) = qualified_name_error(&key.to_ascii_lowercase()) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {}: {why}", crate::go_quote(key)),
            ));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > MAX_ANNOTATIONS_BYTES {
        causes.push(cause(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {MAX_ANNOTATIONS_BYTES} bytes"),
        ));
    }
}

/// Validates what kube-apiserver validates in every object's metadata (and a pod template's):
/// label keys and values, annotation keys and their total size.
pub fn validate_metadata(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (pointer, field) in [
        ("/metadata", "metadata"),
        ("/spec/template/metadata", "spec.template.metadata"),
    ] {
        let Some(meta) = object.pointer(pointer) else {
            continue;
        };
        validate_labels_at(meta.get("labels"), &format!("{field}.labels"), &mut causes);
        validate_annotations_at(
            meta.get("annotations"),
            &format!("{field}.annotations"),
            &mut causes,
        );
    }
    causes
}

/// Whether two objects are equal once the top-level `skip` fields are ignored (no copies).
pub fn equal_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let differs = |x: &serde_json::Map<String, Value>, y: &serde_json::Map<String, Value>| {
        x.iter()
            .any(|(k, v)| !skip.contains(&k.as_str()) && y.get(k) != Some(v))
    };
    !differs(a, b) && !differs(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_limits() {
        let object = |labels: Value, annotations: Value| serde_json::json!({"metadata": {"labels": labels, "annotations": annotations}});
        let ok = object(
            serde_json::json!({"app.kubernetes.io/name": "x", "a": "", "B_c.d": "V-1"}),
            serde_json::json!({"example.com/Note": "anything at all"}),
        );
        assert!(validate_metadata(&ok).is_empty());
        for labels in [
            serde_json::json!({"bad key": "x"}),
            serde_json::json!({"-a": "x"}),
            serde_json::json!({"UPPER.com/a": "x"}),
            serde_json::json!({"a": "not valid"}),
            serde_json::json!({"a": "v".repeat(64)}),
            serde_json::json!({"a": 1}),
        ] {
            assert_eq!(
                validate_metadata(&object(labels.clone(), serde_json::json!({}))).len(),
                1,
                "{labels}"
            );
        }
        let big = object(
            serde_json::json!({}),
            serde_json::json!({"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(MAX_ANNOTATIONS_BYTES)}),
        );
        let causes = validate_metadata(&big);
        assert_eq!(causes[0].field, "metadata.annotations");
        assert!(
            causes[0]
                .message
                .contains("may not be more than 262144 bytes")
        );
        let template = serde_json::json!({"metadata": {}, "spec": {"template": {"metadata": {"labels": {"a": "b c"}}}}});
        assert_eq!(
            validate_metadata(&template)[0].field,
            "spec.template.metadata.labels"
        );
    }
}
