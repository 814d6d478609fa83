//! The workspace steps (docs/workspaces.md): before the agent, an init container clones the
//! repository at its ref into the checkout directory (on the pod's `/workspace` volume), then
//! one runs the setup command there. Only the clone step mounts the read credential: no other
//! container of the pod has a volume, mount or variable that reaches it.
//!
//! Both steps run `sh` from the image (the agent's by default, which must have `git`; the
//! setup image must have `timeout`); user values reach the scripts as positional arguments,
//! never inside the script's text.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use kubetask_api::lifecycle::parse_duration;
use kubetask_api::workspace::{
    self as api, PlannedPullRequest, PublishPlan, Workspace, repository_endpoint,
};

use crate::RenderError;
use crate::contexts::WORKSPACE;

pub use kubetask_api::workspace::{
    CLONE_CONTAINER, CREDENTIALS_EXIT_CODE, PUBLISH_CONTAINER, SETUP_CONTAINER,
};
/// Where the clone step finds the credential's keys.
pub const CREDENTIALS_PATH: &str = "/var/run/kubetask/workspace-credentials";
/// A private, memory-backed directory of the clone step (its SSH key copy).
const SCRATCH_PATH: &str = "/var/run/kubetask/workspace-scratch";
const CREDENTIALS_VOLUME: &str = "workspace-credentials";
const SCRATCH_VOLUME: &str = "workspace-scratch";
/// Where the publish step finds the write credential's keys.
pub const PUBLISH_CREDENTIALS_PATH: &str = "/var/run/kubetask/publish-credentials";
/// The publish step's own directory (its Git directory, its SSH key copy).
const PUBLISH_SCRATCH_PATH: &str = "/var/run/kubetask/publish-scratch";
const PUBLISH_CREDENTIALS_VOLUME: &str = "publish-credentials";
const PUBLISH_SCRATCH_VOLUME: &str = "publish-scratch";
/// The agent runner's executable in agent images (the publish step runs `kubetask-agent
/// publish`).
pub const RUNNER: &str = "kubetask-agent";
/// The setup step's timeout when it sets none.
pub const DEFAULT_SETUP_TIMEOUT_SECONDS: u64 = 600;

/// The clone step, as a shell script. Arguments: repository, ref (may be empty), depth (may be
/// empty), submodules (`true`/`false`), directory, and the GitHub API of the repository's host
/// (may be empty: used only when the credential is a GitHub App's keys, to mint a read-only
/// installation token with `kubetask-agent github-app-token`). On success it writes
/// `{"commit": SHA}` to its termination log.
pub const CLONE_SCRIPT: &str = r#"set -eu
repository=$1 ref=$2 depth=$3 submodules=$4 directory=$5 api=${6:-}
credentials=${KUBETASK_CREDENTIALS:-/var/run/kubetask/workspace-credentials}
termination_log=${KUBETASK_TERMINATION_LOG:-/dev/termination-log}
export GIT_TERMINAL_PROMPT=0 GIT_CONFIG_NOSYSTEM=1 HOME=${KUBETASK_SCRATCH:-/var/run/kubetask/workspace-scratch}
set --
token_file="$credentials/token"
if [ -f "$credentials/github-app-private-key" ]; then
  if [ -z "$api" ]; then
    echo "spec.workspace.credentialsRef holds a GitHub App's keys, but $repository is not on a host known to be GitHub's (set publish.pullRequest.provider: GitHub and apiURL)" >&2
    exit 3
  fi
  name=${repository##*/}
  name=${name%.git}
  if ! (umask 077 && kubetask-agent github-app-token "$credentials" "$api" "$name" contents=read > "$HOME/app-token"); then
    echo "the repository refused the credentials of spec.workspace.credentialsRef: no installation token for the GitHub App" >&2
    exit 3
  fi
  token_file="$HOME/app-token"
fi
if [ -f "$token_file" ]; then
  helper="!f() { u=x-access-token; [ -f '$credentials/username' ] && u=\$(cat '$credentials/username'); echo \"username=\$u\"; echo \"password=\$(cat '$token_file')\"; }; f"
  set -- -c credential.helper= -c "credential.helper=$helper"
fi
if [ -f "$credentials/ssh-privatekey" ]; then
  (umask 077 && cp "$credentials/ssh-privatekey" "$HOME/id")
  known=/dev/null
  [ -f "$credentials/known_hosts" ] && known="$credentials/known_hosts"
  export GIT_SSH_COMMAND="ssh -i $HOME/id -o IdentitiesOnly=yes -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes"
fi
mkdir -p "$directory"
cd "$directory"
git init -q .
git remote add origin "$repository"
target=${ref:-HEAD}
if [ -n "$depth" ]; then fetch_depth="--depth=$depth"; else fetch_depth="--no-tags"; fi
if ! git "$@" fetch -q "$fetch_depth" origin "$target" 2> "$HOME/fetch.err"; then
  cat "$HOME/fetch.err" >&2
  if grep -qiE 'authentication failed|could not read (username|password)|permission denied|access denied|returned error: 40[13]' "$HOME/fetch.err"; then
    echo "the repository refused the credentials of spec.workspace.credentialsRef (or needs some)" >&2
    exit 3
  fi
  echo "cannot fetch $target from $repository" >&2
  exit 2
fi
# A branch or tag name gets a local branch of that name; the remote's HEAD or a commit SHA
# (7 or more hex digits) a detached checkout.
case $ref in
  '') git checkout -q --detach FETCH_HEAD ;;
  *[!0-9a-f]*) git checkout -q -B "$ref" FETCH_HEAD ;;
  *) if [ ${#ref} -ge 7 ]; then git checkout -q --detach FETCH_HEAD; else git checkout -q -B "$ref" FETCH_HEAD; fi ;;
esac
if [ "$submodules" = true ]; then
  git "$@" submodule update -q --init --recursive ${depth:+--depth="$depth"}
fi
commit=$(git rev-parse HEAD)
# The publish step's base: what was checked out, whatever the agent does to HEAD.
git update-ref refs/kubetask/base "$commit"
echo "checked out $commit"
printf '{"commit":"%s"}' "$commit" > "$termination_log"
"#;

/// The workspace's containers and volumes, validated.
pub(crate) struct WorkspaceSteps {
    pub init_containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    /// Where the agent starts.
    pub directory: String,
    /// The publish step, a container beside the agent's that waits for it to exit.
    pub publish: Option<Container>,
}

/// Where a workspace's fields come from: the Task's own, else its Agent's.
pub(crate) struct Sources<'a> {
    /// The Task's `spec.workspace` (empty when it sets none).
    pub task: &'a Workspace,
    pub task_object: &'a str,
    /// `Agent/<name>`, when there is an Agent.
    pub agent_object: Option<&'a str>,
    pub task_name: &'a str,
    pub namespace: &'a str,
}

impl Sources<'_> {
    /// The object `field` (`repository`, `setup.timeout`, ...) came from, for errors.
    fn object_of(&self, field: &str) -> &str {
        let task = self.task;
        let set_by_task = match field.split('.').next().unwrap_or_default() {
            "repository" => task.repository.is_some(),
            "directory" => task.directory.is_some(),
            "setup" => task.setup.is_some(),
            "publish" => task.publish.is_some(),
            _ => true,
        };
        match self.agent_object {
            Some(agent) if !set_by_task => agent,
            _ => self.task_object,
        }
    }
}

/// The GitHub API of the workspace's repository, when its host is GitHub's (or its pull request
/// says it is): where a GitHub App's installation token is minted.
fn github_api(workspace: &Workspace) -> Option<String> {
    let repository = workspace.repository.as_deref()?;
    let (host, _) = repository_endpoint(repository)?;
    if api::Provider::of_host(&host) == Some(api::Provider::GitHub) {
        return Some(api::Provider::GitHub.default_api_url(&host));
    }
    let pull_request = workspace.publish.as_ref()?.pull_request.as_ref()?;
    match pull_request.api(repository)? {
        (api::Provider::GitHub, url) => Some(url),
        _ => None,
    }
}

/// Plans the steps of `workspace` (merged from the Agent's and the Task's, see `sources`) for
/// `image` (the agent's).
pub(crate) fn plan(
    workspace: &Workspace,
    sources: &Sources<'_>,
    image: &str,
    workspace_mount: &VolumeMount,
) -> Result<WorkspaceSteps, RenderError> {
    let invalid = |field: &str, message: String| {
        RenderError::invalid(
            sources.object_of(field),
            format!("spec.workspace.{field}"),
            message,
        )
    };
    let repository = workspace.repository.clone().unwrap_or_default();
    if repository_endpoint(&repository).is_none() {
        return Err(invalid(
            "repository",
            format!(
                "{repository:?} is not an https://, ssh:// or user@host:path URL (no other transport: file://, ext:: and the like could read the node)"
            ),
        ));
    }
    let directory = workspace.directory().to_owned();
    let inside = directory
        .strip_prefix(WORKSPACE)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| {
            rest.split('/')
                .all(|part| !part.is_empty() && !part.starts_with('.'))
        });
    if !inside {
        return Err(invalid(
            "directory",
            format!("{directory:?} must be a directory under {WORKSPACE}/ (no . or .. parts)"),
        ));
    }
    let hardened = Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    });
    let mut volumes = vec![Volume {
        name: SCRATCH_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: None,
        }),
        ..Volume::default()
    }];
    let mut clone_mounts = vec![
        workspace_mount.clone(),
        VolumeMount {
            name: SCRATCH_VOLUME.to_owned(),
            mount_path: SCRATCH_PATH.to_owned(),
            ..VolumeMount::default()
        },
    ];
    if let Some(secret) = &workspace.credentials_ref {
        volumes.push(Volume {
            name: CREDENTIALS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.clone()),
                default_mode: Some(0o444),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        clone_mounts.push(VolumeMount {
            name: CREDENTIALS_VOLUME.to_owned(),
            mount_path: CREDENTIALS_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let pull_policy = Some(crate::image::pull_policy(image).to_owned());
    let fallback = Some("FallbackToLogsOnError".to_owned());
    let mut init_containers = vec![Container {
        name: CLONE_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: pull_policy.clone(),
        command: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            CLONE_SCRIPT.to_owned(),
            CLONE_CONTAINER.to_owned(),
            repository,
            workspace.git_ref.clone().unwrap_or_default(),
            workspace.depth.map(|d| d.to_string()).unwrap_or_default(),
            workspace.submodules.unwrap_or(false).to_string(),
            directory.clone(),
            github_api(workspace).unwrap_or_default(),
        ]),
        volume_mounts: Some(clone_mounts),
        security_context: hardened.clone(),
        termination_message_policy: fallback.clone(),
        ..Container::default()
    }];
    if let Some(setup) = &workspace.setup {
        if setup.command.is_empty() {
            return Err(invalid("setup.command", "must name a command".to_owned()));
        }
        let seconds = match &setup.timeout {
            Some(text) => parse_duration(text)
                .map_err(|why| invalid("setup.timeout", why.to_string()))?
                .as_secs(),
            None => DEFAULT_SETUP_TIMEOUT_SECONDS,
        };
        let setup_image = setup.image.clone().unwrap_or_else(|| image.to_owned());
        if let Some(message) = crate::image::image_error(&setup_image) {
            return Err(invalid("setup.image", message));
        }
        let mut command = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            "exec timeout \"$0\" \"$@\"".to_owned(),
            seconds.to_string(),
        ];
        command.extend(setup.command.iter().cloned());
        init_containers.push(Container {
            name: SETUP_CONTAINER.to_owned(),
            image_pull_policy: Some(crate::image::pull_policy(&setup_image).to_owned()),
            image: Some(setup_image),
            command: Some(command),
            working_dir: Some(directory.clone()),
            env: (!setup.env.is_empty()).then(|| {
                setup
                    .env
                    .iter()
                    .map(|var| EnvVar {
                        name: var.name.clone(),
                        value: Some(var.value.clone()),
                        value_from: None,
                    })
                    .collect()
            }),
            volume_mounts: Some(vec![workspace_mount.clone()]),
            security_context: hardened,
            termination_message_policy: fallback,
            ..Container::default()
        });
    }
    let publish = match &workspace.publish {
        Some(publish) => {
            let plan = publish_plan(workspace, publish, sources, &directory, &invalid)?;
            let (container, publish_volumes) = publish_step(publish, &plan, image, workspace_mount);
            volumes.extend(publish_volumes);
            Some(container)
        }
        None => None,
    };
    Ok(WorkspaceSteps {
        init_containers,
        volumes,
        directory,
        publish,
    })
}

/// The publish step's plan: the branch filled in, the provider and its API resolved.
fn publish_plan(
    workspace: &Workspace,
    publish: &api::Publish,
    sources: &Sources<'_>,
    directory: &str,
    invalid: &dyn Fn(&str, String) -> RenderError,
) -> Result<PublishPlan, RenderError> {
    let repository = workspace.repository.clone().unwrap_or_default();
    let branch = api::publish_branch(
        publish.branch.as_deref(),
        sources.task_name,
        sources.namespace,
    );
    if let Some(message) = api::branch_error(&branch) {
        return Err(invalid("publish.branch", message));
    }
    let pull_request = match &publish.pull_request {
        Some(pr) => {
            let Some((provider, api_url)) = pr.api(&repository) else {
                let (host, _) = repository_endpoint(&repository).unwrap_or_default();
                return Err(invalid(
                    "publish.pullRequest.provider",
                    format!(
                        "cannot tell the provider of {host:?}: set provider (GitHub or GitLab) and apiURL"
                    ),
                ));
            };
            if !api_url.starts_with("https://") {
                return Err(invalid(
                    "publish.pullRequest.apiURL",
                    format!("{api_url:?} is not an https:// URL"),
                ));
            }
            let base = pr.base.clone().or_else(|| {
                // A branch or tag name; a commit SHA names no branch to merge into.
                workspace
                    .git_ref
                    .clone()
                    .filter(|r| r.len() < 7 || r.bytes().any(|b| !b.is_ascii_hexdigit()))
            });
            if let Some(message) = base.as_deref().and_then(api::branch_error) {
                return Err(invalid("publish.pullRequest.base", message));
            }
            Some(PlannedPullRequest {
                provider,
                api_url,
                project: api::project_path(&repository).unwrap_or_default(),
                title: pr.title.clone(),
                body: pr.body.clone(),
                base,
                draft: pr.draft.unwrap_or(false),
                labels: pr.labels.clone(),
            })
        }
        None => None,
    };
    Ok(PublishPlan {
        repository,
        branch,
        directory: directory.to_owned(),
        handoff: api::HANDOFF_DIR.to_owned(),
        commit_message: publish.commit_message.clone(),
        task: format!("Task/{} in {}", sources.task_name, sources.namespace),
        pull_request,
    })
}

/// The publish container and its volumes: the only container that mounts the write
/// credential; it reads the workspace read-only.
fn publish_step(
    publish: &api::Publish,
    plan: &PublishPlan,
    image: &str,
    workspace_mount: &VolumeMount,
) -> (Container, Vec<Volume>) {
    let volumes = vec![
        Volume {
            name: PUBLISH_CREDENTIALS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(publish.credentials_ref.name.clone()),
                default_mode: Some(0o444),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: PUBLISH_SCRATCH_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let env = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let container = Container {
        name: PUBLISH_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some(crate::image::pull_policy(image).to_owned()),
        command: Some(vec![RUNNER.to_owned(), "publish".to_owned()]),
        env: Some(vec![
            env(
                api::PUBLISH_ENV,
                serde_json::to_string(plan).unwrap_or_default(),
            ),
            env(
                "KUBETASK_PUBLISH_CREDENTIALS",
                PUBLISH_CREDENTIALS_PATH.to_owned(),
            ),
            env("KUBETASK_PUBLISH_SCRATCH", PUBLISH_SCRATCH_PATH.to_owned()),
        ]),
        volume_mounts: Some(vec![
            VolumeMount {
                read_only: Some(true),
                ..workspace_mount.clone()
            },
            VolumeMount {
                name: PUBLISH_CREDENTIALS_VOLUME.to_owned(),
                mount_path: PUBLISH_CREDENTIALS_PATH.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: PUBLISH_SCRATCH_VOLUME.to_owned(),
                mount_path: PUBLISH_SCRATCH_PATH.to_owned(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    };
    (container, volumes)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use kubetask_api::workspace::Provider;
    use kubetask_api::{Agent, Task};
    use serde_json::{Value, json};

    use super::*;
    use crate::{Settings, render};

    fn task(workspace: Value) -> Task {
        serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "deps", "namespace": "team-a", "uid": "u"},
            "spec": {"contexts": [], "agentRef": "coder", "workspace": workspace},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn agent(workspace: Value) -> Agent {
        serde_json::from_value(json!({
            "apiVersion": "kubetask.io/v1alpha1", "kind": "Agent",
            "metadata": {"name": "coder", "namespace": "team-a"},
            "spec": {"serviceAccountName": "agent", "agentImage": "ghcr.io/kubetask/agent-claude-code:v0.1.0",
                     "credentials": [{"name": "api", "secretRef": {"name": "anthropic", "key": "key"}, "env": "ANTHROPIC_API_KEY"}],
                     "workspace": workspace},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn pod(task: &Task, agent: &Agent) -> PodSpec {
        let rendered = render(task, Some(agent), &Settings::default());
        let Ok(rendered) = rendered else {
            panic!("{rendered:?}")
        };
        rendered
            .job
            .spec
            .and_then(|spec| spec.template.spec)
            .unwrap_or_default()
    }

    fn full() -> (Task, Agent) {
        (
            task(
                json!({"ref": "main", "depth": 1, "setup": {"command": ["npm", "ci"], "timeout": "5m",
                         "env": [{"name": "CI", "value": "1"}]}}),
            ),
            agent(json!({"repository": "https://github.com/org/service-a.git",
                          "credentialsRef": {"name": "repo-read"},
                          "publish": {"credentialsRef": {"name": "repo-write"},
                                      "pullRequest": {"labels": ["kubetask"], "draft": true}}})),
        )
    }

    /// The publish plan the publish container is handed.
    fn plan_of(container: &Container) -> PublishPlan {
        let text = container
            .env
            .iter()
            .flatten()
            .find(|v| v.name == api::PUBLISH_ENV)
            .and_then(|v| v.value.clone())
            .unwrap_or_default();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn the_publish_step_runs_beside_the_agent_with_its_plan_resolved() {
        let (task, agent) = full();
        let pod = pod(&task, &agent);
        let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["agent", PUBLISH_CONTAINER], "the agent stays first");
        let publish = &pod.containers[1];
        assert_eq!(
            publish.command.clone().unwrap_or_default(),
            [RUNNER, "publish"]
        );
        assert_eq!(publish.image, pod.containers[0].image);
        let plan = plan_of(publish);
        assert_eq!(plan.branch, "kubetask/deps");
        assert_eq!(plan.directory, "/workspace/repo");
        assert_eq!(plan.handoff, api::HANDOFF_DIR);
        let pr = plan
            .pull_request
            .unwrap_or_else(|| panic!("a pull request"));
        assert_eq!(
            (pr.provider, pr.api_url.as_str(), pr.project.as_str()),
            (Provider::GitHub, "https://api.github.com", "org/service-a")
        );
        assert_eq!(pr.base.as_deref(), Some("main"), "the ref is the base");
        assert!(pr.draft);
        let workspace = publish
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == crate::contexts::WORKSPACE)
            .unwrap_or_else(|| panic!("the workspace"));
        assert_eq!(
            workspace.read_only,
            Some(true),
            "it only reads the checkout"
        );
        let agent_env = pod.containers[0].env.clone().unwrap_or_default();
        assert!(
            agent_env
                .iter()
                .any(|v| v.name == api::HANDOFF_ENV && v.value.as_deref() == Some(api::HANDOFF_DIR)),
            "the runner leaves its exit for the publish step"
        );
    }

    #[test]
    fn publish_branches_templates_and_providers() {
        let cases = [
            (
                json!({"branch": "fix/{namespace}-{task}", "pullRequest": {}}),
                "https://gitlab.example.com/g/sub/p.git",
                "fix/team-a-deps",
                Some((
                    Provider::GitLab,
                    "https://gitlab.example.com/api/v4",
                    "g/sub/p",
                )),
            ),
            (
                json!({"pullRequest": {"provider": "GitHub"}}),
                "https://git.corp.example/org/r",
                "kubetask/deps",
                Some((Provider::GitHub, "https://git.corp.example/api/v3", "org/r")),
            ),
            (
                json!({"pullRequest": {"provider": "GitLab", "apiURL": "https://gl.example/api/v4/"}}),
                "git@git.corp.example:org/r.git",
                "kubetask/deps",
                Some((Provider::GitLab, "https://gl.example/api/v4", "org/r")),
            ),
            (
                json!({}),
                "https://git.corp.example/org/r",
                "kubetask/deps",
                None,
            ),
        ];
        for (publish, repository, branch, provider) in cases {
            let mut publish = publish.clone();
            publish["credentialsRef"] = json!({"name": "w"});
            let task = task(json!({"repository": repository, "publish": publish}));
            let pod = pod(&task, &agent(json!({})));
            let plan = plan_of(&pod.containers[1]);
            assert_eq!(plan.branch, branch, "{publish}");
            assert_eq!(
                plan.pull_request
                    .map(|pr| (pr.provider, pr.api_url, pr.project)),
                provider.map(|(p, u, r)| (p, u.to_owned(), r.to_owned())),
                "{publish}"
            );
        }
    }

    #[test]
    fn clone_then_setup_then_the_agent_in_the_checkout() {
        let (task, agent) = full();
        let pod = pod(&task, &agent);
        let init = pod.init_containers.clone().unwrap_or_default();
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [CLONE_CONTAINER, SETUP_CONTAINER]);
        let clone = init[0].command.clone().unwrap_or_default();
        assert_eq!(clone[..2], ["sh", "-c"]);
        assert_eq!(
            clone[3..],
            [
                CLONE_CONTAINER,
                "https://github.com/org/service-a.git",
                "main",
                "1",
                "false",
                "/workspace/repo",
                "https://api.github.com"
            ],
            "user values are arguments, not script text"
        );
        assert!(!clone[2].contains("service-a"));
        let setup = &init[1];
        assert_eq!(
            setup.command.clone().unwrap_or_default()[3..],
            ["300", "npm", "ci"]
        );
        assert_eq!(setup.working_dir.as_deref(), Some("/workspace/repo"));
        assert_eq!(
            pod.containers[0].working_dir.as_deref(),
            Some("/workspace/repo")
        );
        for step in &init {
            let security = step.security_context.clone().unwrap_or_default();
            assert_eq!(
                security.allow_privilege_escalation,
                Some(false),
                "{}",
                step.name
            );
            assert_eq!(
                step.image, pod.containers[0].image,
                "the agent's image by default"
            );
        }
    }

    /// The write credential reaches the publish step and nothing else: no other container
    /// mounts its volume or the publish step's scratch, no container has a variable from its
    /// Secret or an `envFrom`, and the pod has no other volume of that Secret (a projected one
    /// included).
    #[test]
    fn only_the_publish_step_can_read_the_write_credential() {
        let (task, agent) = full();
        let pod = pod(&task, &agent);
        let reaching: Vec<String> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| {
                let secret = v.secret.as_ref().and_then(|s| s.secret_name.as_deref());
                let projected = v.projected.as_ref().is_some_and(|p| {
                    p.sources
                        .iter()
                        .flatten()
                        .any(|s| s.secret.as_ref().is_some_and(|s| s.name == "repo-write"))
                });
                secret == Some("repo-write") || projected
            })
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(reaching, [PUBLISH_CREDENTIALS_VOLUME]);
        let containers = pod
            .init_containers
            .iter()
            .flatten()
            .chain(pod.containers.iter());
        let mut seen = 0;
        for container in containers {
            seen += 1;
            let mounts =
                container.volume_mounts.iter().flatten().any(|m| {
                    m.name == PUBLISH_CREDENTIALS_VOLUME || m.name == PUBLISH_SCRATCH_VOLUME
                });
            assert_eq!(
                mounts,
                container.name == PUBLISH_CONTAINER,
                "{}",
                container.name
            );
            let from_secret = container.env.iter().flatten().any(|v| {
                v.value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                    .is_some_and(|r| r.name == "repo-write")
            });
            assert!(!from_secret, "{}", container.name);
            assert!(container.env_from.is_none(), "{}", container.name);
        }
        assert_eq!(seen, 4, "clone, setup, agent, publish");
    }

    /// The read credential reaches the clone step and nothing else: no other container mounts
    /// its volume or the clone's scratch, and no container has a variable from its Secret.
    #[test]
    fn only_the_clone_step_can_read_the_credential() {
        let (task, agent) = full();
        let pod = pod(&task, &agent);
        let secret_volumes: Vec<String> = pod
            .volumes
            .iter()
            .flatten()
            .filter(|v| {
                v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some("repo-read")
            })
            .map(|v| v.name.clone())
            .collect();
        assert_eq!(secret_volumes, [CREDENTIALS_VOLUME]);
        let containers = pod
            .init_containers
            .iter()
            .flatten()
            .chain(pod.containers.iter());
        for container in containers {
            let reaches = container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == CREDENTIALS_VOLUME || m.name == SCRATCH_VOLUME);
            assert_eq!(
                reaches,
                container.name == CLONE_CONTAINER,
                "{}",
                container.name
            );
            let from_secret = container.env.iter().flatten().any(|v| {
                v.value_from
                    .as_ref()
                    .and_then(|f| f.secret_key_ref.as_ref())
                    .is_some_and(|r| r.name == "repo-read")
            });
            assert!(!from_secret, "{}", container.name);
            assert!(container.env_from.is_none(), "{}", container.name);
        }
    }

    #[test]
    fn bad_workspaces_name_the_field_of_the_object_they_come_from() {
        let cases = [
            (
                json!({}),
                json!({"repository": "file:///etc/passwd"}),
                "Agent/coder",
                "spec.workspace.repository",
            ),
            (
                json!({"repository": "ext::sh -c id"}),
                json!({}),
                "Task/deps",
                "spec.workspace.repository",
            ),
            (
                json!({"repository": "https://h/r", "directory": "/workspace/../etc"}),
                json!({}),
                "Task/deps",
                "spec.workspace.directory",
            ),
            (
                json!({"repository": "https://h/r", "directory": "/etc"}),
                json!({}),
                "Task/deps",
                "spec.workspace.directory",
            ),
            (
                json!({"repository": "https://h/r", "setup": {"command": []}}),
                json!({}),
                "Task/deps",
                "spec.workspace.setup.command",
            ),
            (
                json!({"repository": "https://h/r", "setup": {"command": ["x"], "timeout": "soon"}}),
                json!({}),
                "Task/deps",
                "spec.workspace.setup.timeout",
            ),
            (
                json!({"repository": "https://h/r"}),
                json!({"publish": {"credentialsRef": {"name": "w"}, "branch": "x/{task}..lock"}}),
                "Agent/coder",
                "spec.workspace.publish.branch",
            ),
            (
                json!({"repository": "https://git.corp.example/r", "publish": {"credentialsRef": {"name": "w"}, "pullRequest": {}}}),
                json!({}),
                "Task/deps",
                "spec.workspace.publish.pullRequest.provider",
            ),
            (
                json!({"repository": "https://github.com/o/r", "ref": "main", "publish": {"credentialsRef": {"name": "w"}, "pullRequest": {"base": "a..b"}}}),
                json!({}),
                "Task/deps",
                "spec.workspace.publish.pullRequest.base",
            ),
        ];
        for (task_workspace, agent_workspace, object, field) in cases {
            let got = render(
                &task(task_workspace.clone()),
                Some(&agent(agent_workspace)),
                &Settings::default(),
            );
            match got {
                Err(crate::RenderError::Invalid {
                    object: o,
                    field: f,
                    ..
                }) => {
                    assert_eq!(
                        (o.as_str(), f.as_str()),
                        (object, field),
                        "{task_workspace}"
                    );
                }
                other => panic!("{task_workspace}: {other:?}"),
            }
        }
    }

    #[test]
    fn no_repository_no_steps() {
        let pod = pod(&task(json!({"ref": "main"})), &agent(json!({})));
        assert!(pod.init_containers.is_none());
        assert_eq!(pod.containers[0].working_dir.as_deref(), Some("/workspace"));
    }
}
