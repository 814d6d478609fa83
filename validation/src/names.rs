//! Names and label syntax, as kube-apiserver validates them (its messages, word for word).

use crate::{Cause, cause};

/// Longest DNS-1123 subdomain (most object names, label-key prefixes).
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label (namespaces), label value or qualified-name part.
pub const MAX_LABEL: usize = 63;

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_label_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && part.starts_with(|c: char| c.is_ascii_alphanumeric())
        && part.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Why `text` is not a DNS-1123 subdomain (most object names), if it is not.
pub fn subdomain_error(text: &str) -> Option<String> {
    if text.len() > MAX_SUBDOMAIN {
        Some(format!("must be no more than {MAX_SUBDOMAIN} characters"))
    } else if !text.split('.').all(is_label_part) {
        Some(SUBDOMAIN_RULE.to_owned())
    } else {
        None
    }
}

/// Why `text` is not a DNS-1123 label (namespaces), if it is not.
pub fn label_error(text: &str) -> Option<String> {
    if text.len() > MAX_LABEL {
        Some(format!("must be no more than {MAX_LABEL} characters"))
    } else if !is_label_part(text) {
        Some(LABEL_RULE.to_owned())
    } else {
        None
    }
}

/// Validates `metadata.name`: a DNS-1123 subdomain (most kinds) or label (namespaces, Jobs).
pub fn validate_name(name: &str, label: bool) -> Option<Cause> {
    if name.is_empty() {
        return Some(cause(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    }
    let why = if label {
        label_error(name)
    } else {
        subdomain_error(name)
    }?;
    Some(cause(
        "FieldValueInvalid",
        "metadata.name",
        format!("Invalid value: \"{name}\": {why}"),
    ))
}

fn is_name_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Why `key` is not a qualified name (`prefix/name` or `name`), as label and annotation keys
/// must be, if it is not.
pub fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || subdomain_error(prefix).is_some())
    {
        return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
    }
    if name.len() > MAX_LABEL {
        return Some(format!(
            "name part must be no more than {MAX_LABEL} characters"
        ));
    }
    if !is_name_part(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
    }
    None
}

/// Why `value` is not a label value (empty, or ≤ 63 of `[-A-Za-z0-9_.]` starting and ending
/// alphanumeric), if it is not.
pub fn label_value_error(value: &str) -> Option<String> {
    if value.len() > MAX_LABEL {
        Some(format!("must be no more than {MAX_LABEL} characters"))
    } else if !value.is_empty() && !is_name_part(value) {
        Some("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into())
    } else {
        None
    }
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
        assert!(validate_name(&"a".repeat(254), false).is_some());
        assert!(validate_name("", false).is_some());
        assert!(validate_name("é", false).is_some());
    }
}
