//! Names and label syntax, as kube-apiserver validates them (its messages, word for word): the
//! rules are [`kubetask_api::names`], defined once for the controller, this crate and the
//! built-in default plugin; here they become the API server's field causes.

pub use kubetask_api::names::{
    MAX_LABEL, MAX_SUBDOMAIN, data_key_error, label_error, label_value_error, qualified_name_error,
    subdomain_error,
};

use crate::{Cause, cause};

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
