//! The syntax of Kubernetes names, keys and label values, defined once: kube-apiserver's rules
//! (`k8s.io/apimachinery/pkg/util/validation`) with its messages, word for word. The controller,
//! the test API server (through `kubetask-validation`) and the built-in default plugin (built
//! to wasm) all check names with these functions; the CRD's schema patterns for the same
//! syntax are in [`crate::syntax`], and a test below holds the two to the same answers.

/// Longest DNS-1123 subdomain (most object names, label-key prefixes, data keys).
pub const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS-1123 label (namespaces, Jobs), label value or qualified-name part.
pub const MAX_LABEL: usize = 63;

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const PREFIX_RULE: &str = "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const NAME_PART_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const DATA_KEY_RULE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const ENV_NAME_RULE: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (no length bound: a subdomain's labels have none).
fn is_dns_label_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(first), Some(last))
        if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_name_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(first), Some(last))
        if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric())
        && bytes.len() <= MAX_LABEL
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Why `text` is not a DNS-1123 subdomain (most object names), if it is not.
pub fn subdomain_error(text: &str) -> Option<String> {
    if text.len() > MAX_SUBDOMAIN {
        Some(format!("must be no more than {MAX_SUBDOMAIN} characters"))
    } else if !text.split('.').all(is_dns_label_part) {
        Some(SUBDOMAIN_RULE.to_owned())
    } else {
        None
    }
}

/// Why `text` is not a DNS-1123 label (namespaces, Jobs), if it is not.
pub fn label_error(text: &str) -> Option<String> {
    if text.len() > MAX_LABEL {
        Some(format!("must be no more than {MAX_LABEL} characters"))
    } else if !is_dns_label_part(text) {
        Some(LABEL_RULE.to_owned())
    } else {
        None
    }
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
        return Some(PREFIX_RULE.to_owned());
    }
    if name.len() > MAX_LABEL {
        return Some(format!(
            "name part must be no more than {MAX_LABEL} characters"
        ));
    }
    if !is_name_part(name) {
        return Some(NAME_PART_RULE.to_owned());
    }
    None
}

/// Why `value` is not a label value (empty, or ≤ 63 of `[-A-Za-z0-9_.]` starting and ending
/// alphanumeric), if it is not.
pub fn label_value_error(value: &str) -> Option<String> {
    if value.len() > MAX_LABEL {
        Some(format!("must be no more than {MAX_LABEL} characters"))
    } else if !value.is_empty() && !is_name_part(value) {
        Some(LABEL_VALUE_RULE.to_owned())
    } else {
        None
    }
}

/// Why `key` is not a ConfigMap or Secret key (`[-._a-zA-Z0-9]+`, ≤ 253, not `.`, `..` or
/// starting with `..`), if it is not.
pub fn data_key_error(key: &str) -> Option<String> {
    if key.len() > MAX_SUBDOMAIN {
        Some(format!("must be no more than {MAX_SUBDOMAIN} characters"))
    } else if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        Some(DATA_KEY_RULE.to_owned())
    } else if key == "." {
        Some("must not be '.'".to_owned())
    } else if key == ".." {
        Some("must not be '..'".to_owned())
    } else if key.starts_with("..") {
        Some("must not start with '..'".to_owned())
    } else {
        None
    }
}

/// Why `name` is not an environment variable name kube-apiserver accepts (any printable ASCII
/// but `=`, since 1.32; the CRD's [`crate::syntax::ENV_NAME_PATTERN`] is stricter, so that
/// every supported version and every shell accepts it), if it is not.
pub fn env_var_name_error(name: &str) -> Option<String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
    {
        Some(ENV_NAME_RULE.to_owned())
    } else {
        None
    }
}

/// Why `text` is not a path a kubelet can mount (it holds a NUL or another control
/// character), if it is not; the CRD's [`crate::syntax::PATH_PATTERN`] says the same.
pub fn path_characters_error(text: &str) -> Option<String> {
    text.chars()
        .any(char::is_control)
        .then(|| "must not contain control characters (such as NUL or a newline)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax;

    /// The functions and the CRD's schema patterns give the same answer (RE2 and `regex` agree
    /// on these patterns).
    #[test]
    fn agree_with_the_schema_patterns() {
        let samples = [
            "",
            "a",
            "abc-1.x",
            "Abc",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a.",
            "a_b",
            "A_b.C",
            "..x",
            ".x",
            ".",
            "..",
            "example.com/tier",
            "a/b/c",
            "/x",
            "x/",
            "sp ace",
            "é",
            "a\0b",
            "a\nb",
            "/workspace/task.md",
        ];
        let long_label = "x".repeat(64);
        let long_subdomain = format!("{}.{}", "a".repeat(200), "b".repeat(60));
        let mut samples: Vec<&str> = samples.to_vec();
        samples.extend([long_label.as_str(), long_subdomain.as_str()]);
        let matches =
            |pattern: &str, text: &str| regex::Regex::new(pattern).expect("pattern").is_match(text);
        for text in samples {
            let subdomain = matches(syntax::SUBDOMAIN_PATTERN, text)
                && text.len() <= syntax::MAX_SUBDOMAIN as usize;
            assert_eq!(
                subdomain_error(text).is_none(),
                subdomain,
                "subdomain {text:?}"
            );
            let label_value = matches(syntax::LABEL_VALUE_PATTERN, text)
                && text.len() <= syntax::MAX_LABEL_VALUE as usize;
            assert_eq!(
                label_value_error(text).is_none(),
                label_value,
                "label value {text:?}"
            );
            let data_key = matches(syntax::DATA_KEY_PATTERN, text) && text.len() <= MAX_SUBDOMAIN;
            assert_eq!(
                data_key_error(text).is_none(),
                data_key,
                "data key {text:?}"
            );
            let label_key = matches(syntax::LABEL_KEY_PATTERN, text)
                && text.len() <= syntax::MAX_LABEL_KEY as usize
                && text
                    .rsplit('/')
                    .next()
                    .is_some_and(|name| name.len() <= MAX_LABEL)
                && text
                    .split_once('/')
                    .is_none_or(|(prefix, _)| prefix.len() <= MAX_SUBDOMAIN);
            assert_eq!(
                qualified_name_error(text).is_none(),
                label_key,
                "label key {text:?}"
            );
            let path = matches(syntax::PATH_PATTERN, text);
            assert_eq!(path_characters_error(text).is_none(), path, "path {text:?}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in ["app", "network-policy", "example.com/tier", "a_b.c"] {
            assert_eq!(qualified_name_error(good), None, "{good}");
        }
        for bad in [
            "",
            "-app",
            "Example.com/x",
            "a/b/c",
            &"x".repeat(64),
            "sp ace",
        ] {
            assert!(qualified_name_error(bad).is_some(), "{bad:?}");
        }
        for good in ["", "agent-restricted", "v1.2_3"] {
            assert_eq!(label_value_error(good), None, "{good}");
        }
        for bad in ["-x", "x-", "a b", &"v".repeat(64)] {
            assert!(label_value_error(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn names_as_kube_apiserver_says() {
        assert_eq!(subdomain_error("abc-1.x"), None);
        assert_eq!(label_error("abc-1.x"), Some(LABEL_RULE.to_owned()));
        assert_eq!(
            label_error(&"a".repeat(64)).as_deref(),
            Some("must be no more than 63 characters")
        );
        assert!(subdomain_error(&"a".repeat(254)).is_some());
        assert!(subdomain_error("").is_some());
        assert!(label_error("").is_some());
        assert_eq!(
            data_key_error("..x").as_deref(),
            Some("must not start with '..'")
        );
        assert_eq!(env_var_name_error("my.var-1"), None);
        assert!(env_var_name_error("A=B").is_some());
        assert!(env_var_name_error("TAB\tNAME").is_some());
        assert!(env_var_name_error("").is_some());
        assert!(qualified_name_error("Example.com/x").is_some());
        assert_eq!(qualified_name_error("example.com/tier"), None);
    }
}
