//! An example render plugin that extends the built-in workspace (`spec.workspace`,
//! docs/workspaces.md): a second repository — a shared library, the docs, a schema repository
//! the agent reads — named in a Task annotation and cloned beside the workspace's checkout.
//!
//! | Task annotation | Meaning |
//! |---|---|
//! | `git.kubetask.io/repository` | `https://`, `ssh://` or `git@host:path` URL to clone (required to do anything) |
//! | `git.kubetask.io/ref` | branch or tag to check out (default: the remote's HEAD) |
//! | `git.kubetask.io/directory` | directory under `/workspace` to clone into (default `repo`) |
//!
//! The plugin adds an init container (`git-clone`, running as a non-root user with no
//! privileges) that shallow-clones into the Job's `workspace` volume, and tells the agent where
//! the checkout is in `KUBETASK_REPOSITORY`. It reads what the built-in renderer drafted: with a
//! workspace, its step goes right after `workspace-clone` (so `workspace-setup` can use it),
//! and the workspace's checkout (`KUBETASK_WORKDIR` of the agent) is refused as its directory;
//! it never touches the workspace's credentials or its publish step (what it clones is outside
//! the checkout, so it is never published). Tasks without the annotation pass unchanged.
//! An Agent opts in with `spec.plugins: [git-clone]`.
#![deny(unsafe_code)]

use kubetask_plugin::{
    Draft, Error, Job, Object, Plugin, Request, containers,
    k8s_openapi::api::core::v1::{Container, EnvVar, VolumeMount},
};

/// Annotation with the repository URL.
pub const REPOSITORY: &str = "git.kubetask.io/repository";
/// Annotation with the branch or tag.
pub const REF: &str = "git.kubetask.io/ref";
/// Annotation with the checkout directory under `/workspace`.
pub const DIRECTORY: &str = "git.kubetask.io/directory";
/// The clone runs in this image (pinned: a policy should be able to tell what runs).
pub const GIT_IMAGE: &str = "docker.io/alpine/git:v2.47.2";
/// Name of the init container.
pub const INIT_CONTAINER: &str = "git-clone";
/// Environment variable that tells the agent where the checkout is.
pub const REPOSITORY_ENV: &str = "KUBETASK_REPOSITORY";
/// The built-in workspace's clone step, which this one follows.
const WORKSPACE_CLONE: &str = "workspace-clone";
/// The agent's variable naming the workspace's checkout (set by the built-in renderer).
const WORKDIR_ENV: &str = "KUBETASK_WORKDIR";
/// The volume the built-in renderer mounts at `/workspace`.
const WORKSPACE_VOLUME: &str = "workspace";
const WORKSPACE: &str = "/workspace";
/// The pod spec in the Job.
const POD: &str = "/spec/template/spec";
/// An unprivileged user (the "nonroot" user of distroless images).
const CLONE_USER: i64 = 65532;

/// The plugin.
pub struct GitClone;

impl Plugin for GitClone {
    fn render(request: Request) -> Result<Draft, Error> {
        let Some(url) = request.task_annotation(REPOSITORY) else {
            return request.draft();
        };
        let object = request.task_object();
        let annotation = |key: &str| format!("metadata.annotations[{key}]");
        check_url(url).map_err(|why| Error::invalid(&object, annotation(REPOSITORY), why))?;
        let git_ref = request.task_annotation(REF);
        if let Some(git_ref) = git_ref {
            check_ref(git_ref).map_err(|why| Error::invalid(&object, annotation(REF), why))?;
        }
        let directory = request.task_annotation(DIRECTORY).unwrap_or("repo");
        check_directory(directory)
            .map_err(|why| Error::invalid(&object, annotation(DIRECTORY), why))?;
        let checkout = format!("{WORKSPACE}/{directory}");
        let clone = clone_container(url, git_ref, &checkout);

        let mut draft = request.draft()?;
        // Only the parts the plugin reads are decoded (kubetask_plugin::Object).
        let job = &mut draft.job;
        if !job.contains(POD)? {
            return Err(Error::Internal(
                "the draft Job has no pod template".to_owned(),
            ));
        }
        let volumes = format!("{POD}/volumes");
        let mut has_workspace = false;
        for index in 0..job.len(&volumes)? {
            has_workspace |= job
                .get::<String>(&format!("{volumes}/{index}/name"))?
                .as_deref()
                == Some(WORKSPACE_VOLUME);
        }
        if !has_workspace {
            return Err(Error::Internal(format!(
                "the draft has no `{WORKSPACE_VOLUME}` volume: this plugin must run after the built-in renderer"
            )));
        }
        if let Some(conflict) = mounted_at_or_below(job, &checkout)? {
            return Err(Error::invalid(
                &object,
                annotation(DIRECTORY),
                format!(
                    "{checkout} is already used by the context mounted at {conflict}; choose another directory"
                ),
            ));
        }
        let workdir = job
            .get::<Vec<EnvVar>>(&format!("{POD}/containers/0/env"))?
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == WORKDIR_ENV)
            .and_then(|v| v.value);
        let overlaps = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if let Some(workdir) = workdir.filter(|w| overlaps(&checkout, w) || overlaps(w, &checkout))
        {
            return Err(Error::invalid(
                &object,
                annotation(DIRECTORY),
                format!(
                    "{checkout} overlaps the workspace's checkout {workdir} (spec.workspace.directory); choose another directory"
                ),
            ));
        }
        job.edit(
            &format!("{POD}/initContainers"),
            |init: &mut Vec<Container>| {
                let at = init
                    .iter()
                    .position(|c| c.name == WORKSPACE_CLONE)
                    .map_or(init.len(), |i| i + 1);
                init.insert(at, clone);
            },
        )?;
        for index in 0..job.len(&format!("{POD}/containers"))? {
            job.edit(
                &format!("{POD}/containers/{index}/env"),
                |env: &mut Vec<EnvVar>| {
                    env.push(EnvVar {
                        name: REPOSITORY_ENV.to_owned(),
                        value: Some(checkout.clone()),
                        ..EnvVar::default()
                    })
                },
            )?;
        }
        Ok(draft)
    }
}

kubetask_plugin::export_plugin!(GitClone);

fn clone_container(url: &str, git_ref: Option<&str>, checkout: &str) -> Container {
    let mut args = vec!["clone".to_owned(), "--depth=1".to_owned()];
    if let Some(git_ref) = git_ref {
        args.extend(["--branch".to_owned(), git_ref.to_owned()]);
    }
    args.extend(["--".to_owned(), url.to_owned(), checkout.to_owned()]);
    Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(GIT_IMAGE.to_owned()),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "HOME".to_owned(),
            value: Some("/tmp".to_owned()),
            ..EnvVar::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: WORKSPACE_VOLUME.to_owned(),
            mount_path: WORKSPACE.to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(containers::restricted(CLONE_USER)),
        ..Container::default()
    }
}

/// The mount path of a context at or below `path`, if any.
fn mounted_at_or_below(job: &Object<Job>, path: &str) -> Result<Option<String>, Error> {
    for index in 0..job.len(&format!("{POD}/containers"))? {
        let mounts: Vec<VolumeMount> = job
            .get(&format!("{POD}/containers/{index}/volumeMounts"))?
            .unwrap_or_default();
        if let Some(mount) = mounts.into_iter().find(|mount| {
            mount.mount_path == path || mount.mount_path.starts_with(&format!("{path}/"))
        }) {
            return Ok(Some(mount.mount_path));
        }
    }
    Ok(None)
}

fn check_url(url: &str) -> Result<(), String> {
    let scp_like = url.starts_with("git@") && url.contains(':');
    if !(url.starts_with("https://") || url.starts_with("ssh://") || scp_like) {
        return Err(format!(
            "{url:?} is not a repository URL this plugin clones: use https://, ssh:// or git@host:path"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_owned());
    }
    Ok(())
}

fn check_ref(git_ref: &str) -> Result<(), String> {
    let valid = !git_ref.is_empty()
        && !git_ref.starts_with(['-', '/'])
        && !git_ref.contains("..")
        && git_ref
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{git_ref:?} is not a branch or tag name (letters, digits, '.', '_', '-', '/'; not starting with '-' or '/')"
        ))
    }
}

fn check_directory(directory: &str) -> Result<(), String> {
    let valid = !directory.is_empty()
        && directory != "."
        && directory != ".."
        && directory
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{directory:?} is not a directory name (one path segment of letters, digits, '.', '_', '-')"
        ))
    }
}

#[cfg(test)]
mod tests;
