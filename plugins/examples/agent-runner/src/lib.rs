//! An example render plugin that runs any agent image with the `kubetask-agent` runner
//! (docs/agents.md), so an image that only has a coding CLI reports results, usage and "do not
//! retry" like ours. An Agent opts in with `spec.plugins: [agent-runner]` and says which CLI:
//!
//! | Agent annotation | Meaning |
//! |---|---|
//! | `runner.kubetask.io/cli` | `claude-code`, `gemini`, `codex` or `opencode` (required to do anything) |
//! | `runner.kubetask.io/args` | extra CLI arguments (`KUBETASK_AGENT_ARGS`) |
//! | `runner.kubetask.io/model` | the model (`KUBETASK_AGENT_MODEL`) |
//!
//! An init container (`install-kubetask-agent`, from the runner's own minimal image, unprivileged)
//! copies the static runner into an `emptyDir` at `/kubetask`; the agent container's command
//! becomes `/kubetask/kubetask-agent` (its image's entrypoint and arguments are replaced) and
//! its environment gets `KUBETASK_AGENT_CLI`. Agents without the annotation pass unchanged.
#![deny(unsafe_code)]

use kubetask_plugin::{
    Draft, Error, Plugin, Request, containers,
    k8s_openapi::api::core::v1::{
        Container, EmptyDirVolumeSource, EnvVar, SecurityContext, Volume, VolumeMount,
    },
};

/// Annotation naming the CLI.
pub const CLI: &str = "runner.kubetask.io/cli";
/// Annotation with extra CLI arguments.
pub const ARGS: &str = "runner.kubetask.io/args";
/// Annotation with the model.
pub const MODEL: &str = "runner.kubetask.io/model";
/// The runner's image: the static binary alone (pinned: a policy should be able to tell what
/// runs).
pub const RUNNER_IMAGE: &str = "ghcr.io/kubetask/kubetask-agent:v0.1.0";
/// Name of the init container.
pub const INIT_CONTAINER: &str = "install-kubetask-agent";
/// The volume holding the runner, and where it is mounted.
pub const RUNNER_VOLUME: &str = "kubetask-runner";
pub const RUNNER_DIR: &str = "/kubetask";
/// The CLIs the runner drives.
const CLIS: [&str; 4] = ["claude-code", "gemini", "codex", "opencode"];
/// The container the built-in renderer names for the agent.
const AGENT_CONTAINER: &str = "agent";
const POD: &str = "/spec/template/spec";
/// An unprivileged user (the "nonroot" user of distroless images).
const INSTALL_USER: i64 = 65532;

/// The plugin.
pub struct AgentRunner;

impl Plugin for AgentRunner {
    fn render(request: Request) -> Result<Draft, Error> {
        let Some(agent) = request.agent()? else {
            return request.draft();
        };
        let annotations = agent.metadata.annotations.clone().unwrap_or_default();
        let Some(cli) = annotations.get(CLI) else {
            return request.draft();
        };
        let object = format!(
            "Agent/{}",
            agent.metadata.name.as_deref().unwrap_or_default()
        );
        let field = |key: &str| format!("metadata.annotations[{key}]");
        if !CLIS.contains(&cli.as_str()) {
            return Err(Error::invalid(
                &object,
                field(CLI),
                format!(
                    "{cli:?} is not a CLI the runner drives: {}",
                    CLIS.join(", ")
                ),
            ));
        }
        let mut env = vec![variable("KUBETASK_AGENT_CLI", cli)];
        for (key, name) in [
            (ARGS, "KUBETASK_AGENT_ARGS"),
            (MODEL, "KUBETASK_AGENT_MODEL"),
        ] {
            if let Some(value) = annotations.get(key) {
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(Error::invalid(
                        &object,
                        field(key),
                        "must not contain control characters (a newline, ...)",
                    ));
                }
                env.push(variable(name, value));
            }
        }

        let mut draft = request.draft()?;
        let job = &mut draft.job;
        let containers = format!("{POD}/containers");
        let mut agent_index = None;
        for index in 0..job.len(&containers)? {
            if job
                .get::<String>(&format!("{containers}/{index}/name"))?
                .as_deref()
                == Some(AGENT_CONTAINER)
            {
                agent_index = Some(index);
            }
        }
        let Some(index) = agent_index else {
            return Err(Error::Internal(format!(
                "the draft has no `{AGENT_CONTAINER}` container: this plugin must run after the built-in renderer"
            )));
        };
        let agent_path = format!("{containers}/{index}");
        job.set(
            &format!("{POD}/volumes/-"),
            &Volume {
                name: RUNNER_VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        )?;
        job.set(&format!("{POD}/initContainers/-"), &install_container())?;
        job.set(
            &format!("{agent_path}/command"),
            &vec![format!("{RUNNER_DIR}/kubetask-agent")],
        )?;
        job.edit(&format!("{agent_path}/args"), |args: &mut Vec<String>| {
            args.clear()
        })?;
        job.edit(
            &format!("{agent_path}/env"),
            |existing: &mut Vec<EnvVar>| {
                existing.retain(|e| !env.iter().any(|ours| ours.name == e.name));
                existing.extend(env.iter().cloned());
            },
        )?;
        job.edit(
            &format!("{agent_path}/volumeMounts"),
            |mounts: &mut Vec<VolumeMount>| {
                mounts.push(VolumeMount {
                    name: RUNNER_VOLUME.to_owned(),
                    mount_path: RUNNER_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                })
            },
        )?;
        Ok(draft)
    }
}

kubetask_plugin::export_plugin!(AgentRunner);

fn variable(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// Copies the runner into the shared volume (`kubetask-agent --install DIR`).
fn install_container() -> Container {
    Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(RUNNER_IMAGE.to_owned()),
        args: Some(vec!["--install".to_owned(), RUNNER_DIR.to_owned()]),
        volume_mounts: Some(vec![VolumeMount {
            name: RUNNER_VOLUME.to_owned(),
            mount_path: RUNNER_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..containers::restricted(INSTALL_USER)
        }),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests;
