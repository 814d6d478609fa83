//! Kubernetes syntax rules for names, labels and environment variables, checked before the
//! API server would reject the Job.

const MAX_LABEL_PART: usize = 63;
const MAX_SUBDOMAIN: usize = 253;

/// 1 to 63 bytes, each `allowed`, alphanumeric at both ends.
fn is_bounded_token(text: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(first), Some(last))
        if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
        && bytes.len() <= MAX_LABEL_PART
        && bytes.iter().all(|&byte| allowed(byte))
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_label_part(text: &str) -> bool {
    is_bounded_token(text, |byte| {
        byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')
    })
}

/// A lowercase RFC 1123 subdomain, at most 253 characters.
fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= MAX_SUBDOMAIN
        && text.split('.').all(|label| {
            is_bounded_token(label, |byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'
            })
        })
}

/// Why `name` is not a valid object name (ConfigMap, Secret, ...), if it is not.
pub(crate) fn object_name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if !is_dns_subdomain(name) {
        Some(format!(
            "{name:?} is not a valid object name (lowercase letters, digits, '-' and '.')"
        ))
    } else {
        None
    }
}

/// Why `key` is not a valid ConfigMap or Secret key, if it is not.
pub(crate) fn config_map_key_error(key: &str) -> Option<String> {
    if key.is_empty() {
        Some("must not be empty".to_owned())
    } else if key.len() > MAX_SUBDOMAIN
        || key == "."
        || key == ".."
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some(format!(
            "{key:?} is not a valid key (at most 253 characters of [A-Za-z0-9-_.])"
        ))
    } else {
        None
    }
}

/// Why `key` is not a valid label key, if it is not.
pub(crate) fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return Some(format!(
            "label key {key:?}: prefix {prefix:?} must be a lowercase DNS subdomain"
        ));
    }
    if !is_label_part(name) {
        return Some(format!(
            "label key {key:?}: name part must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric"
        ));
    }
    None
}

/// Why `value` is not a valid label value, if it is not.
pub(crate) fn label_value_error(value: &str) -> Option<String> {
    if value.is_empty() || is_label_part(value) {
        None
    } else {
        Some(format!(
            "label value {value:?} must be at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric"
        ))
    }
}

/// Why `name` is not a valid environment variable name, if it is not (Kubernetes accepts any
/// printable ASCII except `=`).
pub(crate) fn env_name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".to_owned())
    } else if !name
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
    {
        Some(format!(
            "{name:?} is not a valid environment variable name (printable ASCII without '=')"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        for good in ["app", "network-policy", "example.com/tier", "a_b.c"] {
            assert_eq!(label_key_error(good), None, "{good}");
        }
        for bad in [
            "",
            "-app",
            "Example.com/x",
            "a/b/c",
            &"x".repeat(64),
            "sp ace",
        ] {
            assert!(label_key_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn label_values() {
        for good in ["", "agent-restricted", "v1.2_3"] {
            assert_eq!(label_value_error(good), None, "{good}");
        }
        for bad in ["-x", "x-", "a b", &"v".repeat(64)] {
            assert!(label_value_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name_error("GITHUB_TOKEN"), None);
        assert_eq!(env_name_error("my.var-1"), None);
        assert!(env_name_error("").is_some());
        assert!(env_name_error("A=B").is_some());
        assert!(env_name_error("TAB\tNAME").is_some());
    }
}
