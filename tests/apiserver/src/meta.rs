//! Object metadata helpers: names, timestamps, uids, and name validation.

use serde_json::Value;

use crate::error::{Cause, cause};

/// The current time as a `metav1.Time` string (seconds precision, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `seconds` from now as a `metav1.Time` string.
pub fn now_plus(seconds: i64) -> String {
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    later.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A small deterministic generator (xorshift64*) for uids and generated names.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniformly distributed number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random version-4 UUID.
    pub fn uid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        let bytes: Vec<u8> = a.to_be_bytes().into_iter().chain(b.to_be_bytes()).collect();
        let hex: String = bytes
            .iter()
            .enumerate()
            .map(|(i, byte)| match i {
                6 => (byte & 0x0f) | 0x40,
                8 => (byte & 0x3f) | 0x80,
                _ => *byte,
            })
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// The 5-character suffix `generateName` appends (the apiserver's alphabet).
    pub fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| ALPHABET[(self.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
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

/// `metadata.<field>` as a string, or "".
pub fn text<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Validates a DNS-1123 subdomain (most object names) or label (namespaces, Jobs).
pub fn validate_name(name: &str, label: bool) -> Option<Cause> {
    let max = if label { 63 } else { 253 };
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let valid = if label {
        part_ok(name)
    } else {
        name.split('.').all(part_ok)
    };
    if name.is_empty() {
        return Some(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    if name.len() > max {
        return Some(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be no more than {max} characters"),
        ));
    }
    if !valid {
        let what = if label {
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        };
        return Some(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": {what}"),
        ));
    }
    None
}

/// The total size of an object's annotations (keys and values) the server accepts.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

fn is_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name (`prefix/name` or `name`), as label and annotation keys must be: the
/// reason it is not, in kube-apiserver's words.
fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || validate_name(prefix, false).is_some())
    {
        return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    if !is_name_part(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    None
}

fn validate_labels_at(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (key, value) in labels {
        if let Some(why) = qualified_name_error(key) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: \"{key}\": {why}"),
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
        if value.len() > 63 {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: \"{value}\": must be no more than 63 characters"),
            ));
        } else if !value.is_empty() && !is_name_part(value) {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"),
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
                format!("Invalid value: \"{key}\": {why}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("abc-1.x", false).is_none());
        assert!(validate_name("abc-1.x", true).is_some());
        assert!(validate_name("Abc", false).is_some());
        assert!(validate_name(&"a".repeat(64), true).is_some());
        assert!(validate_name("", false).is_some());
    }

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

    #[test]
    fn uids_look_like_v4() {
        let uid = Rng::new(7).uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
    }
}
