//! Checks of the filesystem paths a Task or Agent asks for.

/// Returns `path` without a trailing `/` if it is an acceptable absolute path, else why not.
pub(crate) fn normalize_absolute(path: &str) -> Result<&str, String> {
    if let Some(why) = kubetask_api::names::path_characters_error(path) {
        return Err(format!("{path:?} {why}"));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} is not an absolute path (it must start with '/')"
        ));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("must not be the root directory '/'".to_owned());
    }
    for segment in trimmed[1..].split('/') {
        match segment {
            "" => return Err(format!("{path:?} has an empty segment ('//')")),
            "." | ".." => {
                return Err(format!(
                    "{path:?} has a {segment:?} segment; write the path without it"
                ));
            }
            _ => {}
        }
    }
    Ok(trimmed)
}

/// Whether `inner` lies strictly inside the directory `outer` (both normalized).
pub(crate) fn is_inside(inner: &str, outer: &str) -> bool {
    inner.len() > outer.len() && inner.starts_with(outer) && inner.as_bytes()[outer.len()] == b'/'
}

/// The last segment of a normalized path.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_absolute_paths_and_drops_trailing_slashes() {
        assert_eq!(
            normalize_absolute("/workspace/task.md"),
            Ok("/workspace/task.md")
        );
        assert_eq!(
            normalize_absolute("/workspace/configs/"),
            Ok("/workspace/configs")
        );
    }

    #[test]
    fn rejects_relative_root_dot_and_empty_segments() {
        for bad in [
            "workspace/a",
            "",
            "/",
            "/workspace/../etc",
            "/workspace/a\0b",
            "/workspace/line\nbreak",
            "/workspace/./a",
            "/a//b",
            "/..",
        ] {
            assert!(
                normalize_absolute(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn inside_means_a_strict_sub_path() {
        assert!(is_inside("/workspace/configs/a", "/workspace/configs"));
        assert!(!is_inside("/workspace/configs", "/workspace/configs"));
        assert!(!is_inside("/workspace/configs2", "/workspace/configs"));
    }
}
