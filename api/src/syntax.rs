//! The syntax of the Kubernetes names and values the API refers to, as the CRD's schema
//! patterns and CEL rules, so that `kubectl apply` (and the offline check, which evaluates the
//! same schema) refuses what the API server would only refuse later, in the Job.
//!
//! Patterns are RE2, as the API server evaluates them (and the `regex` crate, offline).

// Each pattern is written once, as a macro, so that the schema patterns and the CEL rules
// built from it with `concat!` cannot disagree. No backslashes: CEL string literals would
// need them escaped (`[.]` instead of `\.`).
macro_rules! subdomain {
    () => {
        "[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
    };
}
macro_rules! data_key {
    () => {
        "([.][-_a-zA-Z0-9][-._a-zA-Z0-9]*|[-_a-zA-Z0-9][-._a-zA-Z0-9]*)"
    };
}
macro_rules! label_key {
    () => {
        concat!(
            "(",
            subdomain!(),
            "/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]"
        )
    };
}
macro_rules! label_key_length {
    () => {
        "([^/]{1,253}/)?[^/]{1,63}"
    };
}
macro_rules! label_value {
    () => {
        "(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?"
    };
}

/// A DNS-1123 subdomain (≤ 253 characters): names of Agents, ServiceAccounts, Secrets,
/// ConfigMaps.
pub const SUBDOMAIN_PATTERN: &str = concat!("^", subdomain!(), "$");
/// Longest DNS-1123 subdomain.
pub const MAX_SUBDOMAIN: u32 = 253;

/// A ConfigMap or Secret key (≤ 253 characters): `[-._a-zA-Z0-9]+`, not `.`, `..` or a name
/// starting with `..`.
pub const DATA_KEY_PATTERN: &str = concat!("^", data_key!(), "$");

/// An environment variable name that every supported Kubernetes version accepts and every
/// shell can read (the API server's rule before 1.32 relaxed it).
pub const ENV_NAME_PATTERN: &str = "^[-._a-zA-Z][-._a-zA-Z0-9]*$";

/// A path with no control character (a NUL or a newline in a mount path breaks the Job at
/// the kubelet); [`crate::names::path_characters_error`] says the same.
pub const PATH_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]*$";

/// A container image reference, `[registry[:port]/]path[:tag][@digest]`, as the container
/// runtimes parse it (the grammar of `distribution/reference`).
pub const IMAGE_PATTERN: &str = concat!(
    r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])([.]([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?/|\[[a-fA-F0-9:]+\](:[0-9]+)?/)?",
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*",
    r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?",
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
);
/// Longest image reference accepted.
pub const MAX_IMAGE: u32 = 4096;

/// A label or annotation key: an optional DNS-subdomain prefix and `/`, then a name of
/// ≤ 63 characters `[-A-Za-z0-9_.]` starting and ending alphanumeric.
pub const LABEL_KEY_PATTERN: &str = concat!("^", label_key!(), "$");
/// A toleration's key: a label key, or empty (with operator `Exists`: every taint).
pub const TOLERATION_KEY_PATTERN: &str = concat!("^(", label_key!(), ")?$");
/// A label value: empty, or ≤ 63 characters `[-A-Za-z0-9_.]` starting and ending alphanumeric.
pub const LABEL_VALUE_PATTERN: &str = concat!("^", label_value!(), "$");
/// Longest label key: a 253-character prefix, `/` and a 63-character name.
pub const MAX_LABEL_KEY: u32 = 253 + 1 + 63;
/// Longest label value.
pub const MAX_LABEL_VALUE: u32 = 63;
/// Most labels a label map of the API may hold (it bounds the cost of its CEL rule).
pub const MAX_LABELS: u32 = 64;

/// The CEL rule of a label map's keys (syntax, and the lengths of prefix and name).
pub const LABEL_KEYS_RULE: &str = concat!(
    "self.all(k, k.matches('^",
    label_key!(),
    "$') && k.matches('^",
    label_key_length!(),
    "$'))"
);
/// What [`LABEL_KEYS_RULE`] says when it fails.
pub const LABEL_KEYS_MESSAGE: &str = "keys must be label keys: an optional DNS subdomain prefix (at most 253 characters) and '/', then a name of at most 63 characters of [-A-Za-z0-9_.] starting and ending with an alphanumeric character";

/// Longest ConfigMap or Secret key.
pub const MAX_DATA_KEY: u32 = 253;

/// Most tolerations an Agent may list.
pub const MAX_TOLERATIONS: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cel_rules_spell_the_schema_patterns() {
        for pattern in [
            LABEL_KEY_PATTERN.trim_end_matches('$'),
            "^([^/]{1,253}/)?[^/]{1,63}$",
        ] {
            assert!(LABEL_KEYS_RULE.contains(pattern), "{pattern}");
        }
    }
}
