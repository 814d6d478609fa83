//! Workspaces: the repository a Task's agent works in, cloned at a ref before it starts, with
//! a setup command run in the checkout (docs/workspaces.md). `spec.workspace` on an Agent is
//! the default of its Tasks; a Task's fields replace the Agent's one by one.

use serde::{Deserialize, Serialize};

use crate::lifecycle::DURATION_PATTERN;
pub use crate::lifecycle::PullRequestRef;
use crate::syntax::{ENV_NAME_PATTERN, IMAGE_PATTERN, MAX_IMAGE, MAX_SUBDOMAIN, SUBDOMAIN_PATTERN};

/// A repository URL: `https://host[:port]/path`, `ssh://[user@]host[:port]/path` or the scp
/// form `user@host:path`. No other transport (`file://`, `ext::`, `git://`, `http://`): those
/// could read the node or go unencrypted. No userinfo in `https://` (credentials go in
/// `credentialsRef`), nothing a shell or `git` would read as an option.
pub const REPOSITORY_PATTERN: &str = concat!(
    "^(",
    "https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/%+-]+",
    "|ssh://([A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/%+-]+",
    "|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[A-Za-z0-9._~%+-][A-Za-z0-9._~/%+-]*",
    ")$"
);
/// A branch, tag or commit SHA: no leading `-` (an option), no `..`, no spaces.
pub const REF_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9._/-]*$";
/// A directory under `/workspace`: components that do not start with a dot.
pub const DIRECTORY_PATTERN: &str = "^/workspace(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$";
/// Where the repository is checked out when `directory` is unset.
pub const DEFAULT_DIRECTORY: &str = "/workspace/repo";
/// The clone step's init container (its termination message: `{"commit": SHA}`).
pub const CLONE_CONTAINER: &str = "workspace-clone";
/// The setup step's init container.
pub const SETUP_CONTAINER: &str = "workspace-setup";
/// The clone step's exit code when the repository refused its credentials: not retried.
pub const CREDENTIALS_EXIT_CODE: i32 = 3;
/// The setup step's exit code when it ran out of time (`timeout`'s).
pub const TIMED_OUT_EXIT_CODE: i32 = 124;
/// The publish step's container: after the agent, the only one that holds the write
/// credential (its termination message: a [`Published`]).
pub const PUBLISH_CONTAINER: &str = "workspace-publish";
/// The publish step's exit code when what it was asked cannot be done as asked (a push
/// refused, a 4xx of the provider's API, a bad credential): not retried.
pub const PUBLISH_REFUSED_EXIT_CODE: i32 = 3;
/// The publish branch when `publish.branch` is unset (`{task}`: the Task's name).
pub const DEFAULT_PUBLISH_BRANCH: &str = "kubetask/{task}";
/// A publish branch template: a ref name whose `{task}` and `{namespace}` are replaced.
pub const BRANCH_TEMPLATE_PATTERN: &str = "^[A-Za-z0-9_{][A-Za-z0-9._/{}-]*$";
/// A provider's API base URL (`https://` only).
pub const API_URL_PATTERN: &str = "^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%+-]*)?$";
/// The variable that hands the publish step its [`PublishPlan`] (JSON).
pub const PUBLISH_ENV: &str = "KUBETASK_PUBLISH";
/// The variable naming the directory where the agent runner leaves its exit for the publish
/// step (set in the agent container only when the workspace publishes).
pub const HANDOFF_ENV: &str = "KUBETASK_HANDOFF_DIR";
/// That directory: on the pod's `/workspace` volume, outside every checkout.
pub const HANDOFF_DIR: &str = "/workspace/.kubetask";
/// The ref the clone step leaves on the commit it checked out (the publish step's base).
pub const BASE_REF: &str = "refs/kubetask/base";
/// Most labels of a pull request.
pub const MAX_LABELS: u32 = 16;

/// Longest a repository URL may be.
pub const MAX_REPOSITORY: u32 = 2048;
/// Most arguments of a setup command.
pub const MAX_COMMAND: u32 = 64;
/// Most environment variables of a setup command.
pub const MAX_ENV: u32 = 32;

/// `spec.workspace` of an Agent or a Task.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// The repository: `https://host/path`, `ssh://host/path` or `user@host:path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REPOSITORY_PATTERN), length(max = MAX_REPOSITORY))]
    pub repository: Option<String>,
    /// Branch, tag or commit SHA to check out. Default: the remote's HEAD. The commit checked
    /// out is recorded in `status.workspace.commit`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = 255))]
    pub git_ref: Option<String>,
    /// Fetch only this many commits of history (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub depth: Option<i32>,
    /// Check out the repository's submodules too (default: no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submodules: Option<bool>,
    /// Where the checkout goes, under `/workspace`; the agent starts there. Default:
    /// `/workspace/repo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DIRECTORY_PATTERN), length(max = 255))]
    pub directory: Option<String>,
    /// A Secret in the Task's namespace with the read credential of the clone: `token` (HTTPS,
    /// with `username`, default `x-access-token`), `ssh-privatekey` and `known_hosts` (SSH), or
    /// a GitHub App's `github-app-id`, `github-app-installation-id` and
    /// `github-app-private-key` (a read-only token for this repository is minted for the
    /// clone). Only the clone step mounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretRef>,
    /// A command run in the checkout before the agent starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<Setup>,
    /// After the agent succeeded: commit what it left, push a branch and open or update a
    /// pull request, in a step of its own that alone holds the write credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Publish>,
}

/// The publish step (docs/workspaces.md).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Publish {
    /// The branch pushed, with `{task}` and `{namespace}` replaced. Default `kubetask/{task}`.
    /// A branch that exists is updated only if the agent's work builds on it (never
    /// force-pushed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = BRANCH_TEMPLATE_PATTERN), length(max = 200))]
    pub branch: Option<String>,
    /// The message of the commit of what the agent left uncommitted. Default: the first line
    /// of the agent's summary, else `KubeTask: <task>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub commit_message: Option<String>,
    /// Open (or update) a pull request of the branch. Unset: the branch is only pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequest>,
    /// A Secret in the Task's namespace with the write credential: `token` (the push over
    /// HTTPS and the provider's API; `username` optional), or a GitHub App's
    /// `github-app-id`, `github-app-installation-id` and `github-app-private-key` (a token for
    /// this repository is minted for the step), and, to push over SSH, `ssh-privatekey` and
    /// `known_hosts`. Only the publish step mounts it.
    pub credentials_ref: SecretRef,
}

/// The pull request (a merge request on GitLab) the publish step opens or updates.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    /// Default: the commit message's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub title: Option<String>,
    /// Default: the agent's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// The branch it merges into. Default: `ref` when it names a branch, else the
    /// repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REF_PATTERN), length(max = 255))]
    pub base: Option<String>,
    /// Open it as a draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_LABELS), inner(length(min = 1, max = 100)))]
    pub labels: Vec<String>,
    /// `GitHub` or `GitLab`. Default: from the repository's host (`github.com`, a host
    /// containing `gitlab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// The provider's API. Default: `https://api.github.com` for github.com,
    /// `https://<host>/api/v3` for GitHub Enterprise, `https://<host>/api/v4` for GitLab.
    #[serde(default, rename = "apiURL", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = API_URL_PATTERN), length(max = 2048))]
    pub api_url: Option<String>,
}

impl PullRequest {
    /// The provider and API base URL (no trailing `/`) of the pull request of `repository`:
    /// the ones set, else those its host tells; `None` when it tells none and none is set.
    pub fn api(&self, repository: &str) -> Option<(Provider, String)> {
        let (host, _) = repository_endpoint(repository)?;
        let provider = self.provider.or_else(|| Provider::of_host(&host))?;
        let url = self
            .api_url
            .clone()
            .unwrap_or_else(|| provider.default_api_url(&host));
        Some((provider, url.trim_end_matches('/').to_owned()))
    }
}

/// A Git hosting provider whose pull request API the publish step speaks.
#[derive(
    Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum Provider {
    #[default]
    GitHub,
    GitLab,
}

impl Provider {
    /// The provider of `host` when it is a well-known one.
    pub fn of_host(host: &str) -> Option<Provider> {
        let host = host.to_ascii_lowercase();
        if host == "github.com" || host.ends_with(".github.com") || host.starts_with("github.") {
            Some(Provider::GitHub)
        } else if host.split('.').any(|part| part.contains("gitlab")) {
            Some(Provider::GitLab)
        } else {
            None
        }
    }

    /// The API base URL on `host` (`https://api.github.com` for github.com).
    pub fn default_api_url(self, host: &str) -> String {
        match self {
            Provider::GitHub if host.eq_ignore_ascii_case("github.com") => {
                "https://api.github.com".to_owned()
            }
            Provider::GitHub => format!("https://{host}/api/v3"),
            Provider::GitLab => format!("https://{host}/api/v4"),
        }
    }
}

/// What the publish step is to do, resolved from the Task and its Agent at render time (so
/// `kubetask render` shows it): handed to it in [`PUBLISH_ENV`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PublishPlan {
    pub repository: String,
    /// The branch, its template filled in.
    pub branch: String,
    /// The checkout.
    pub directory: String,
    /// Where the agent runner leaves its exit ([`HANDOFF_DIR`]).
    pub handoff: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
    /// `Task/<name>` in `<namespace>`, for the default message.
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PlannedPullRequest>,
}

/// The pull request of a [`PublishPlan`], its provider and API resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlannedPullRequest {
    pub provider: Provider,
    /// The API base URL (`https://api.github.com`).
    #[serde(rename = "apiURL")]
    pub api_url: String,
    /// The project's path on the provider (`org/repo`, `group/sub/project`).
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Unset: the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What the publish step did, as its termination message says.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// The branch pushed (absent when there was nothing to publish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub branch: Option<String>,
    /// The commit the branch points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub commit: Option<String>,
    /// The agent left nothing to publish: no commit, no pull request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_changes: bool,
    /// The pull request opened or updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
}

impl Published {
    /// The publish step's termination message, when it is one.
    pub fn parse(message: &str) -> Option<Published> {
        let published: Published = serde_json::from_str(message.trim()).ok()?;
        let url_ok = published.pull_request.as_ref().is_none_or(|pr| {
            pr.url.len() <= 2048
                && (pr.url.starts_with("https://") || pr.url.starts_with("http://"))
        });
        let commit_ok = published.commit.as_deref().is_none_or(|c| {
            (7..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit())
        });
        let said_something = published.no_changes || published.branch.is_some();
        (url_ok && commit_ok && said_something).then_some(published)
    }
}

/// The publish branch of `template` for a Task.
pub fn publish_branch(template: Option<&str>, task: &str, namespace: &str) -> String {
    template
        .unwrap_or(DEFAULT_PUBLISH_BRANCH)
        .replace("{task}", task)
        .replace("{namespace}", namespace)
}

/// Why `branch` is not a branch name Git accepts (`git check-ref-format --branch`), if it
/// is not.
pub fn branch_error(branch: &str) -> Option<String> {
    let bad = branch.is_empty()
        || branch.len() > 255
        || branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("//")
        || branch.contains("@{")
        || branch.contains("/.")
        || branch.contains(".lock/")
        || branch == "@"
        || branch
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-')));
    bad.then(|| {
        format!(
            "{branch:?} is not a branch name (letters, digits, '.', '_', '-', '/'; no '..', '//', leading '-' or '.', trailing '.lock')"
        )
    })
}

/// A Secret, by name, in the Task's namespace.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(regex(pattern = SUBDOMAIN_PATTERN), length(max = MAX_SUBDOMAIN))]
    pub name: String,
}

/// The setup step: one command, in exec form, in the checkout.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    /// The command and its arguments (exec form: no shell unless you run one), e.g.
    /// `[npm, ci]`.
    #[schemars(length(min = 1, max = MAX_COMMAND), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// The image it runs in. Default: the agent's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE_PATTERN), length(max = MAX_IMAGE))]
    pub image: Option<String>,
    /// Longest it may run (`10m`); past it the Task fails `SetupFailed`. Default: 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN), length(max = 64))]
    pub timeout: Option<String>,
    /// Environment variables it gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_ENV))]
    pub env: Vec<EnvVar>,
}

/// A plain environment variable.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct EnvVar {
    #[schemars(regex(pattern = ENV_NAME_PATTERN), length(max = 256))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// What the controller recorded of a Task's workspace.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct WorkspaceStatus {
    /// The commit SHA the clone step checked out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub commit: Option<String>,
    /// What the publish step pushed (the pull request is in `status.result.pullRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
}

impl Workspace {
    /// The Task's workspace: its own fields, else its Agent's; `None` when neither names a
    /// repository.
    pub fn merged(agent: Option<&Workspace>, task: Option<&Workspace>) -> Option<Workspace> {
        let pick = |f: fn(&Workspace) -> Option<_>| task.and_then(f).or_else(|| agent.and_then(f));
        let merged = Workspace {
            repository: pick(|w: &Workspace| w.repository.clone()),
            git_ref: pick(|w: &Workspace| w.git_ref.clone()),
            depth: task.and_then(|w| w.depth).or(agent.and_then(|w| w.depth)),
            submodules: task
                .and_then(|w| w.submodules)
                .or(agent.and_then(|w| w.submodules)),
            directory: pick(|w: &Workspace| w.directory.clone()),
            credentials_ref: task
                .and_then(|w| w.credentials_ref.clone())
                .or_else(|| agent.and_then(|w| w.credentials_ref.clone())),
            setup: task
                .and_then(|w| w.setup.clone())
                .or_else(|| agent.and_then(|w| w.setup.clone())),
            publish: task
                .and_then(|w| w.publish.clone())
                .or_else(|| agent.and_then(|w| w.publish.clone())),
        };
        merged.repository.is_some().then_some(merged)
    }

    /// Where the checkout goes.
    pub fn directory(&self) -> &str {
        self.directory.as_deref().unwrap_or(DEFAULT_DIRECTORY)
    }

    /// What its steps connect to over HTTPS (`host`, `port`): the repository, and the
    /// provider's API when it publishes a pull request. SSH does not go through the exit.
    pub fn endpoints(&self) -> Vec<(String, u16)> {
        let repository = self.repository.as_deref().unwrap_or_default();
        let mut endpoints: Vec<(String, u16)> = Vec::new();
        if repository.starts_with("https://") {
            endpoints.extend(repository_endpoint(repository));
        }
        let api = self
            .publish
            .as_ref()
            .and_then(|p| p.pull_request.as_ref())
            .and_then(|pr| pr.api(repository))
            .filter(|(_, url)| url.starts_with("https://"))
            .and_then(|(_, url)| repository_endpoint(&url));
        endpoints.extend(api.filter(|api| !endpoints.contains(api)));
        endpoints
    }

    /// The key of the lock its publish step needs (`host/path@branch`, the repository
    /// normalized so that two spellings of one repository are one key), when it publishes.
    pub fn publish_lock(&self, task: &str, namespace: &str) -> Option<String> {
        let publish = self.publish.as_ref()?;
        let repository = self.repository.as_deref()?;
        let (host, _) = repository_endpoint(repository)?;
        let path = repository_path(repository)?;
        let branch = publish_branch(publish.branch.as_deref(), task, namespace);
        Some(format!("{host}/{path}@{branch}"))
    }
}

/// The path of a repository URL on its host, without `.git` and slashes around it, lower
/// case (`org/repo`).
pub fn repository_path(repository: &str) -> Option<String> {
    project_path(repository).map(|path| path.to_ascii_lowercase())
}

/// The path of a repository URL on its host as written, without `.git` and slashes around
/// it (`Org/Repo`): the project a provider's API names.
pub fn project_path(repository: &str) -> Option<String> {
    let path = if let Some(rest) = repository
        .strip_prefix("https://")
        .or_else(|| repository.strip_prefix("ssh://"))
    {
        rest.split_once('/')?.1
    } else {
        repository.split_once(':')?.1
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (!path.is_empty()).then(|| path.to_owned())
}

/// The host and port a repository URL connects to (`github.com`, 443 for HTTPS, 22 for
/// SSH), or `None` for a URL [`REPOSITORY_PATTERN`] refuses.
pub fn repository_endpoint(repository: &str) -> Option<(String, u16)> {
    let (rest, default_port) = if let Some(rest) = repository.strip_prefix("https://") {
        (rest, 443)
    } else if let Some(rest) = repository.strip_prefix("ssh://") {
        (rest.split_once('@').map_or(rest, |(_, host)| host), 22)
    } else {
        let (_, rest) = repository.split_once('@')?;
        let (host, _) = rest.split_once(':')?;
        return valid_host(host).then(|| (host.to_ascii_lowercase(), 22));
    };
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, port.parse().ok().filter(|p| *p != 0)?),
        None => (authority, default_port),
    };
    valid_host(host).then(|| (host.to_ascii_lowercase(), port))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The commit a clone step's termination message names.
pub fn commit_of(message: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Cloned {
        commit: String,
    }
    let cloned: Cloned = serde_json::from_str(message.trim()).ok()?;
    let valid = (7..=64).contains(&cloned.commit.len())
        && cloned.commit.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(cloned.commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_endpoints() {
        let cases = [
            ("https://github.com/org/repo.git", Some(("github.com", 443))),
            (
                "https://git.example.com:8443/org/repo",
                Some(("git.example.com", 8443)),
            ),
            (
                "ssh://git@GitHub.com/org/repo.git",
                Some(("github.com", 22)),
            ),
            (
                "ssh://gitlab.example.com:2222/org/repo",
                Some(("gitlab.example.com", 2222)),
            ),
            ("git@github.com:org/repo.git", Some(("github.com", 22))),
            ("file:///etc/passwd", None),
            ("ext::sh -c touch% /tmp/x", None),
            ("https://github.com:0/x", None),
        ];
        for (url, want) in cases {
            assert_eq!(
                repository_endpoint(url),
                want.map(|(h, p)| (h.to_owned(), p)),
                "{url}"
            );
        }
    }

    #[test]
    fn the_patterns_refuse_transports_that_read_the_node_and_options() {
        let repository = regex::Regex::new(REPOSITORY_PATTERN).unwrap_or_else(|e| panic!("{e}"));
        for good in [
            "https://github.com/org/repo.git",
            "https://git.example.com:8443/group/sub/repo",
            "ssh://git@github.com/org/repo.git",
            "git@github.com:org/repo.git",
        ] {
            assert!(repository.is_match(good), "{good}");
        }
        for bad in [
            "file:///etc/passwd",
            "/var/lib/repo",
            "ext::sh -c id",
            "git://github.com/org/repo",
            "http://github.com/org/repo",
            "https://user:token@github.com/org/repo",
            "https://github.com/org/repo --upload-pack=touch",
            "git@github.com:-oProxyCommand=id",
            "fd::17/foo",
        ] {
            assert!(!repository.is_match(bad), "{bad}");
        }
        let git_ref = regex::Regex::new(REF_PATTERN).unwrap_or_else(|e| panic!("{e}"));
        for good in [
            "main",
            "v1.2.3",
            "release/2026",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            assert!(git_ref.is_match(good), "{good}");
        }
        for bad in ["-b", "--upload-pack=x", "a b", ""] {
            assert!(!git_ref.is_match(bad), "{bad}");
        }
        let directory = regex::Regex::new(DIRECTORY_PATTERN).unwrap_or_else(|e| panic!("{e}"));
        for good in ["/workspace/repo", "/workspace/src/app"] {
            assert!(directory.is_match(good), "{good}");
        }
        for bad in [
            "/workspace",
            "/etc",
            "/workspace/../etc",
            "/workspace/./x",
            "/workspace/.git",
            "workspace/repo",
        ] {
            assert!(!directory.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn a_tasks_fields_replace_its_agents_one_by_one() {
        let agent = Workspace {
            repository: Some("https://github.com/org/a".into()),
            depth: Some(1),
            credentials_ref: Some(SecretRef {
                name: "read".into(),
            }),
            ..Workspace::default()
        };
        let task = Workspace {
            git_ref: Some("fix".into()),
            depth: Some(5),
            ..Workspace::default()
        };
        let merged = Workspace::merged(Some(&agent), Some(&task));
        let Some(merged) = merged else {
            panic!("merged")
        };
        assert_eq!(
            merged.repository.as_deref(),
            Some("https://github.com/org/a")
        );
        assert_eq!(merged.git_ref.as_deref(), Some("fix"));
        assert_eq!(merged.depth, Some(5));
        assert_eq!(
            merged.credentials_ref.as_ref().map(|c| c.name.as_str()),
            Some("read")
        );
        assert_eq!(merged.directory(), DEFAULT_DIRECTORY);
        assert_eq!(
            Workspace::merged(None, Some(&task)),
            None,
            "no repository, no workspace"
        );
    }

    #[test]
    fn the_endpoints_the_exit_lets_through_and_the_publish_lock() {
        let workspace = |value: serde_json::Value| -> Workspace {
            serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
        };
        let github = workspace(serde_json::json!({
            "repository": "https://github.com/Org/Repo.git",
            "publish": {"credentialsRef": {"name": "w"}, "pullRequest": {}},
        }));
        assert_eq!(
            github.endpoints(),
            [
                ("github.com".to_owned(), 443),
                ("api.github.com".to_owned(), 443)
            ]
        );
        assert_eq!(
            github.publish_lock("t", "ns").as_deref(),
            Some("github.com/org/repo@kubetask/t")
        );
        let ssh_gitlab = workspace(serde_json::json!({
            "repository": "git@gitlab.example.com:group/sub/p.git",
            "publish": {"credentialsRef": {"name": "w"}, "branch": "fix/{namespace}", "pullRequest": {}},
        }));
        assert_eq!(
            ssh_gitlab.endpoints(),
            [("gitlab.example.com".to_owned(), 443)],
            "SSH does not go through the exit; the API does"
        );
        assert_eq!(
            ssh_gitlab.publish_lock("t", "ns").as_deref(),
            Some("gitlab.example.com/group/sub/p@fix/ns")
        );
        let push_only = workspace(serde_json::json!({
            "repository": "https://git.corp.example:8443/r",
            "publish": {"credentialsRef": {"name": "w"}},
        }));
        assert_eq!(
            push_only.endpoints(),
            [("git.corp.example".to_owned(), 8443)]
        );
        let not_publishing = workspace(serde_json::json!({"repository": "https://github.com/o/r"}));
        assert_eq!(not_publishing.publish_lock("t", "ns"), None);
    }
}
