//! Names and label syntax, as kube-apiserver validates them (its messages, word for word): the
//! rules are [`kubetask_api::names`], defined once for the controller, this crate and the
//! built-in default plugin; here they become the API server's field causes.

pub use kubetask_api::names::{
    MAX_LABEL, MAX_SUBDOMAIN, data_key_error, label_error, label_value_error, qualified_name_error,
    subdomain_error,
};

use crate::{Cause, cause};

/// kube-apiserver's rule for DNS-1035 labels (Service names), word for word.
const DNS1035_RULE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Why `text` is not a DNS-1035 label (Service names, a Service's port names), if it is not.
pub fn dns1035_label_error(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let valid = bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if text.len() > MAX_LABEL {
        Some(format!("must be no more than {MAX_LABEL} characters"))
    } else if !valid {
        Some(DNS1035_RULE.to_owned())
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
        format!("Invalid value: {}: {why}", crate::go_quote(name)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1035_labels() {
        assert_eq!(dns1035_label_error("kubetask-exit"), None);
        for bad in ["1abc", "abc-", "Abc", "a.b", ""] {
            assert_eq!(
                dns1035_label_error(bad).as_deref(),
                Some(DNS1035_RULE),
                "{bad}"
            );
        }
        assert!(dns1035_label_error(&"a".repeat(64)).is_some());
    }

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
