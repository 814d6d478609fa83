//! Container images: which pull policy an image reference gets.

/// `Always` for `:latest` or untagged references (they move), `IfNotPresent` for pinned ones.
pub(crate) fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Why `image` is not a usable image reference, if it is not.
pub(crate) fn image_error(image: &str) -> Option<String> {
    if image.is_empty() {
        Some("must not be empty".to_owned())
    } else if image.chars().any(char::is_whitespace) {
        Some(format!(
            "{image:?} is not an image reference (it contains whitespace)"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("quay.io/myorg/claude-agent:v1.0", "IfNotPresent"),
            ("quay.io/myorg/claude-agent:latest", "Always"),
            ("quay.io/myorg/claude-agent", "Always"),
            ("localhost:5000/agent", "Always"),
            ("localhost:5000/agent:v2", "IfNotPresent"),
            ("agent@sha256:0123456789abcdef", "IfNotPresent"),
        ];
        for (image, expected) in cases {
            assert_eq!(pull_policy(image), expected, "{image}");
        }
    }

    #[test]
    fn image_references_must_be_non_empty_without_spaces() {
        assert_eq!(image_error("agent:v1"), None);
        assert!(image_error("").is_some());
        assert!(image_error("agent v1").is_some());
    }
}
