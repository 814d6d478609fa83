//! The Kubernetes "restricted" pod security profile
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted>).

use kubetask_plugin::{
    Error, Job, Object, field_path,
    k8s_openapi::api::core::v1::{
        Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
    },
};

use crate::POD;

/// Capabilities the profile allows a container to add.
const ALLOWED_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];
const RUNTIME_DEFAULT: &str = "RuntimeDefault";
const LOCALHOST: &str = "Localhost";

/// Sets what is unset to the restricted value; denies what is explicitly set otherwise. Reads
/// only the fields the profile is about.
pub fn enforce(job: &mut Object<Job>) -> Result<(), Error> {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        let pointer = format!("{POD}/{field}");
        if job.get::<bool>(&pointer)? == Some(true) {
            return Err(deny(&pointer, "host namespaces are not allowed"));
        }
    }
    for index in 0..job.len(&format!("{POD}/volumes"))? {
        let pointer = format!("{POD}/volumes/{index}/hostPath");
        if job.contains(&pointer)? {
            return Err(deny(&pointer, "hostPath volumes are not allowed"));
        }
    }
    let pointer = format!("{POD}/securityContext");
    job.try_edit(&pointer, |context: &mut PodSecurityContext| {
        check_user(&pointer, context.run_as_non_root, context.run_as_user)?;
        context.run_as_non_root = Some(true);
        check_seccomp(
            &format!("{pointer}/seccompProfile"),
            context.seccomp_profile.as_ref(),
        )?;
        set_default_seccomp(context);
        Ok(())
    })?;

    for list in ["initContainers", "containers"] {
        let list = format!("{POD}/{list}");
        for index in 0..job.len(&list)? {
            enforce_container(job, &format!("{list}/{index}"))?;
        }
    }
    Ok(())
}

fn enforce_container(job: &mut Object<Job>, container: &str) -> Result<(), Error> {
    for index in 0..job.len(&format!("{container}/ports"))? {
        let pointer = format!("{container}/ports/{index}/hostPort");
        if job.get::<i32>(&pointer)?.is_some_and(|port| port != 0) {
            return Err(deny(&pointer, "host ports are not allowed"));
        }
    }
    let path = format!("{container}/securityContext");
    job.try_edit(&path, |context: &mut SecurityContext| {
        if context.privileged == Some(true) {
            return Err(deny(
                &format!("{path}/privileged"),
                "privileged containers are not allowed",
            ));
        }
        if context.allow_privilege_escalation == Some(true) {
            return Err(deny(
                &format!("{path}/allowPrivilegeEscalation"),
                "privilege escalation is not allowed",
            ));
        }
        context.allow_privilege_escalation = Some(false);
        check_user(&path, context.run_as_non_root, context.run_as_user)?;
        check_seccomp(
            &format!("{path}/seccompProfile"),
            context.seccomp_profile.as_ref(),
        )?;
        let capabilities = context
            .capabilities
            .get_or_insert_with(Capabilities::default);
        for (index, added) in capabilities.add.iter().flatten().enumerate() {
            if !ALLOWED_CAPABILITIES.contains(&added.as_str()) {
                return Err(deny(
                    &format!("{path}/capabilities/add/{index}"),
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
    })
}

fn check_user(path: &str, non_root: Option<bool>, user: Option<i64>) -> Result<(), Error> {
    if non_root == Some(false) {
        return Err(deny(
            &format!("{path}/runAsNonRoot"),
            "containers must run as a non-root user",
        ));
    }
    if user == Some(0) {
        return Err(deny(
            &format!("{path}/runAsUser"),
            "containers must not run as user 0 (root)",
        ));
    }
    Ok(())
}

fn check_seccomp(path: &str, profile: Option<&SeccompProfile>) -> Result<(), Error> {
    match profile.map(|profile| profile.type_.as_str()) {
        None | Some(RUNTIME_DEFAULT | LOCALHOST) => Ok(()),
        Some(other) => Err(deny(
            &format!("{path}/type"),
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

/// A denial naming the field at `pointer` (`spec.template.spec.containers[0]…`).
fn deny(pointer: &str, why: &str) -> Error {
    Error::denied(format!(
        "restricted pod security: Job {}: {why}",
        field_path(pointer)
    ))
}
