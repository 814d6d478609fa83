//! The Kubernetes "restricted" pod security profile
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted>).

use kubetask_plugin::{
    Error,
    k8s_openapi::api::core::v1::{
        Capabilities, Container, PodSecurityContext, PodSpec, SeccompProfile,
    },
};

/// Capabilities the profile allows a container to add.
const ALLOWED_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];
const RUNTIME_DEFAULT: &str = "RuntimeDefault";
const LOCALHOST: &str = "Localhost";

/// Sets what is unset to the restricted value; denies what is explicitly set otherwise.
pub fn enforce(pod: &mut PodSpec) -> Result<(), Error> {
    const POD: &str = "spec.template.spec";
    for (field, set) in [
        ("hostNetwork", pod.host_network),
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
    ] {
        if set == Some(true) {
            return Err(deny(
                &format!("{POD}.{field}"),
                "host namespaces are not allowed",
            ));
        }
    }
    for (index, volume) in pod.volumes.iter().flatten().enumerate() {
        if volume.host_path.is_some() {
            return Err(deny(
                &format!("{POD}.volumes[{index}].hostPath"),
                "hostPath volumes are not allowed",
            ));
        }
    }
    let context = pod.security_context.get_or_insert_default();
    check_user(
        &format!("{POD}.securityContext"),
        context.run_as_non_root,
        context.run_as_user,
    )?;
    context.run_as_non_root = Some(true);
    check_seccomp(
        &format!("{POD}.securityContext.seccompProfile"),
        context.seccomp_profile.as_ref(),
    )?;
    set_default_seccomp(context);

    for (index, container) in pod.init_containers.iter_mut().flatten().enumerate() {
        enforce_container(&format!("{POD}.initContainers[{index}]"), container)?;
    }
    for (index, container) in pod.containers.iter_mut().enumerate() {
        enforce_container(&format!("{POD}.containers[{index}]"), container)?;
    }
    Ok(())
}

fn enforce_container(path: &str, container: &mut Container) -> Result<(), Error> {
    for (index, port) in container.ports.iter().flatten().enumerate() {
        if port.host_port.is_some_and(|port| port != 0) {
            return Err(deny(
                &format!("{path}.ports[{index}].hostPort"),
                "host ports are not allowed",
            ));
        }
    }
    let path = format!("{path}.securityContext");
    let context = container.security_context.get_or_insert_default();
    if context.privileged == Some(true) {
        return Err(deny(
            &format!("{path}.privileged"),
            "privileged containers are not allowed",
        ));
    }
    if context.allow_privilege_escalation == Some(true) {
        return Err(deny(
            &format!("{path}.allowPrivilegeEscalation"),
            "privilege escalation is not allowed",
        ));
    }
    context.allow_privilege_escalation = Some(false);
    check_user(&path, context.run_as_non_root, context.run_as_user)?;
    check_seccomp(
        &format!("{path}.seccompProfile"),
        context.seccomp_profile.as_ref(),
    )?;
    let capabilities = context
        .capabilities
        .get_or_insert_with(Capabilities::default);
    for (index, added) in capabilities.add.iter().flatten().enumerate() {
        if !ALLOWED_CAPABILITIES.contains(&added.as_str()) {
            return Err(deny(
                &format!("{path}.capabilities.add[{index}]"),
                &format!(
                    "adding {added} is not allowed (only {})",
                    ALLOWED_CAPABILITIES.join(", ")
                ),
            ));
        }
    }
    let dropped = capabilities.drop.get_or_insert_default();
    if !dropped.iter().any(|capability| capability == "ALL") {
        dropped.push("ALL".to_owned());
    }
    Ok(())
}

fn check_user(path: &str, non_root: Option<bool>, user: Option<i64>) -> Result<(), Error> {
    if non_root == Some(false) {
        return Err(deny(
            &format!("{path}.runAsNonRoot"),
            "containers must run as a non-root user",
        ));
    }
    if user == Some(0) {
        return Err(deny(
            &format!("{path}.runAsUser"),
            "containers must not run as user 0 (root)",
        ));
    }
    Ok(())
}

fn check_seccomp(path: &str, profile: Option<&SeccompProfile>) -> Result<(), Error> {
    match profile.map(|profile| profile.type_.as_str()) {
        None | Some(RUNTIME_DEFAULT | LOCALHOST) => Ok(()),
        Some(other) => Err(deny(
            &format!("{path}.type"),
            &format!(
                "seccomp profile {other} is not allowed (use {RUNTIME_DEFAULT} or {LOCALHOST})"
            ),
        )),
    }
}

fn set_default_seccomp(context: &mut PodSecurityContext) {
    context
        .seccomp_profile
        .get_or_insert_with(|| SeccompProfile {
            type_: RUNTIME_DEFAULT.to_owned(),
            ..SeccompProfile::default()
        });
}

fn deny(field: &str, why: &str) -> Error {
    Error::denied(format!("restricted pod security: Job {field}: {why}"))
}
