//! Workspaces: the repository a Task's agent works in, cloned at a ref before it starts, with
//! a setup command run in the checkout (docs/workspaces.md). `spec.workspace` on an Agent is
//! the default of its Tasks; a Task's fields replace the Agent's one by one.

use serde::{Deserialize, Serialize};

use crate::lifecycle::DURATION_PATTERN;
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
    /// with `username`, default `x-access-token`), or `ssh-privatekey` and `known_hosts` (SSH).
    /// Only the clone step mounts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<SecretRef>,
    /// A command run in the checkout before the agent starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<Setup>,
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
        };
        merged.repository.is_some().then_some(merged)
    }

    /// Where the checkout goes.
    pub fn directory(&self) -> &str {
        self.directory.as_deref().unwrap_or(DEFAULT_DIRECTORY)
    }
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
}
