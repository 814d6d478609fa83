//! Credentials: Secret keys handed to the agent as environment variables and/or files.

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use kubetask_api::Credential;

use crate::{
    RenderError,
    contexts::{PlacedContext, TOOLS, WORKSPACE},
    paths, refused,
};
use kubetask_api::names::{data_key_error, env_var_name_error, subdomain_error};

/// File name of a credential inside its Secret volume (mounted with `subPath`).
const CREDENTIAL_FILE: &str = "value";
/// Highest valid file mode (`0777`).
const MAX_FILE_MODE: i32 = 0o777;

/// What the credentials add to the agent container and pod.
#[derive(Debug, Default)]
pub(crate) struct CredentialMounts {
    pub env: Vec<EnvVar>,
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
}

/// Validates `credentials` of the Agent `object` and turns them into env vars and file mounts.
/// `reserved_env` are variables the renderer sets itself; `contexts` are the mounted contexts,
/// which a credential file may not collide with.
pub(crate) fn plan(
    object: &str,
    credentials: &[Credential],
    reserved_env: &[&str],
    contexts: &[PlacedContext<'_>],
) -> Result<CredentialMounts, RenderError> {
    let mut planned = CredentialMounts::default();
    let mut file_paths: Vec<(String, String)> = Vec::new();
    for (index, credential) in credentials.iter().enumerate() {
        let field = format!("spec.credentials[{index}]");
        let invalid = |sub: &str, message: String| {
            RenderError::invalid(object, format!("{field}{sub}"), message)
        };
        if credential.name.is_empty() {
            return Err(invalid(".name", "must not be empty".to_owned()));
        }
        if let Some(earlier) = credentials[..index]
            .iter()
            .position(|other| other.name == credential.name)
        {
            return Err(invalid(
                ".name",
                format!(
                    "{:?} is also the name of spec.credentials[{earlier}]",
                    credential.name
                ),
            ));
        }
        if let Some(message) = refused("object name", &credential.secret_ref.name, subdomain_error)
        {
            return Err(invalid(".secretRef.name", message));
        }
        if let Some(message) = refused("key", &credential.secret_ref.key, data_key_error) {
            return Err(invalid(".secretRef.key", message));
        }
        if credential.env.is_none() && credential.mount_path.is_none() {
            return Err(invalid("", "set env, mountPath or both".to_owned()));
        }
        if let Some(env) = &credential.env {
            if let Some(message) = refused("environment variable name", env, env_var_name_error) {
                return Err(invalid(".env", message));
            }
            if reserved_env.contains(&env.as_str()) {
                return Err(invalid(
                    ".env",
                    format!("{env} is set by KubeTask; choose another variable name"),
                ));
            }
            if planned.env.iter().any(|var| &var.name == env) {
                return Err(invalid(
                    ".env",
                    format!("{env} is already set by another credential"),
                ));
            }
            planned.env.push(EnvVar {
                name: env.clone(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: credential.secret_ref.name.clone(),
                        key: credential.secret_ref.key.clone(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
        }
        if credential.file_mode.is_some() && credential.mount_path.is_none() {
            return Err(invalid(".fileMode", "needs mountPath".to_owned()));
        }
        let Some(mount_path) = &credential.mount_path else {
            continue;
        };
        let path = paths::normalize_absolute(mount_path)
            .map_err(|message| invalid(".mountPath", message))?;
        if let Some(message) = collision(path, contexts, &file_paths) {
            return Err(invalid(".mountPath", message));
        }
        if let Some(mode) = credential.file_mode
            && !(0..=MAX_FILE_MODE).contains(&mode)
        {
            return Err(invalid(
                ".fileMode",
                format!("{mode} is not a file mode (0 to 0777, e.g. 0400)"),
            ));
        }
        let volume_name = format!("credential-{index}");
        planned.volumes.push(Volume {
            name: volume_name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(credential.secret_ref.name.clone()),
                items: Some(vec![KeyToPath {
                    key: credential.secret_ref.key.clone(),
                    path: CREDENTIAL_FILE.to_owned(),
                    mode: credential.file_mode,
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        planned.mounts.push(VolumeMount {
            name: volume_name,
            mount_path: path.to_owned(),
            sub_path: Some(CREDENTIAL_FILE.to_owned()),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        file_paths.push((path.to_owned(), field));
    }
    Ok(planned)
}

/// Why a credential file at `path` cannot be mounted, if it cannot.
fn collision(
    path: &str,
    contexts: &[PlacedContext<'_>],
    earlier_files: &[(String, String)],
) -> Option<String> {
    if path == WORKSPACE || paths::is_inside(WORKSPACE, path) {
        return Some(format!(
            "{path} would hide the workspace; mount the credential elsewhere"
        ));
    }
    if path == TOOLS || paths::is_inside(path, TOOLS) {
        return Some("/tools is reserved for the Agent's toolsImage".to_owned());
    }
    for context in contexts {
        if path == context.path
            || paths::is_inside(path, &context.path)
            || paths::is_inside(&context.path, path)
        {
            return Some(format!(
                "{path} collides with the context at {} ({})",
                context.path, context.object
            ));
        }
    }
    for (other, field) in earlier_files {
        if path == other || paths::is_inside(path, other) || paths::is_inside(other, path) {
            return Some(format!("{path} collides with the file of {field}"));
        }
    }
    None
}
