//! Building blocks for the containers a plugin adds to a Job.

use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};

/// A helper container's security context under Pod Security's `restricted` profile: runs as
/// `user` (never root), no privilege escalation, every capability dropped, the runtime's
/// default seccomp profile. Add to it what a container needs beyond that, e.g.
/// `SecurityContext { read_only_root_filesystem: Some(true), ..restricted(1000) }`.
pub fn restricted(user: i64) -> SecurityContext {
    SecurityContext {
        run_as_user: Some(user),
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_is_what_pod_security_restricted_asks() {
        let context = restricted(65532);
        assert_eq!(context.run_as_user, Some(65532));
        assert_eq!(context.run_as_non_root, Some(true));
        assert_eq!(context.allow_privilege_escalation, Some(false));
        assert_eq!(
            context.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(
            context.seccomp_profile.map(|s| s.type_).as_deref(),
            Some("RuntimeDefault")
        );
    }
}
