//! The publish step's Git: a Git directory of its own, never the checkout's (whose config,
//! hooks and attributes the agent could have written), that fetches the agent's commits from
//! the checkout, stages its working tree with its own index, and pushes with the write
//! credential. Nothing of the checkout is run.

use std::path::PathBuf;
use std::process::Command;

use kubetask_api::workspace::BASE_REF;

use super::{PublishError, Settings};

/// The agent's HEAD and the clone's base, fetched from the checkout.
const HEAD: &str = "refs/kubetask/agent-head";
const BASE: &str = "refs/kubetask/agent-base";
const REMOTE: &str = "refs/kubetask/remote-branch";

/// Git as the publish step runs it.
pub struct Git {
    git_dir: PathBuf,
    home: PathBuf,
    checkout: PathBuf,
    repository: String,
    branch: String,
    /// `-c` options that hand Git the credential, when it is a token.
    credential_helper: Vec<String>,
    ssh_command: Option<String>,
    author: (String, String),
}

impl Git {
    /// A fresh Git directory in the scratch directory, with the credential ready: `token`
    /// (kept in the scratch directory for Git's credential helper) or the Secret's SSH key.
    pub fn new(settings: &Settings, token: Option<&str>) -> Result<Git, PublishError> {
        let home = settings.scratch.clone();
        let git_dir = home.join("publish.git");
        let credentials = &settings.credentials;
        let mut credential_helper = Vec::new();
        if let Some(token) = token {
            let file = home.join("token");
            write_private(&file, token)
                .map_err(|e| PublishError::Failed(format!("cannot keep the token: {e}")))?;
            let (file, username) = (file.display().to_string(), credentials.join("username"));
            let username = username.display().to_string();
            if file.contains('\'') || username.contains('\'') {
                return Err(PublishError::Refused(format!(
                    "{file:?}: a credentials path with a quote"
                )));
            }
            credential_helper = vec![
                "-c".to_owned(),
                "credential.helper=".to_owned(),
                "-c".to_owned(),
                format!(
                    "credential.helper=!f() {{ u=x-access-token; [ -f '{username}' ] && u=$(cat '{username}'); echo \"username=$u\"; echo \"password=$(cat '{file}')\"; }}; f"
                ),
            ];
        }
        let mut ssh_command = None;
        if credentials.join("ssh-privatekey").is_file() {
            let key = home.join("id");
            std::fs::copy(credentials.join("ssh-privatekey"), &key)
                .and_then(|_| {
                    let mut permissions = std::fs::metadata(&key)?.permissions();
                    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
                    std::fs::set_permissions(&key, permissions)
                })
                .map_err(|e| PublishError::Failed(format!("cannot copy the SSH key: {e}")))?;
            let known = credentials.join("known_hosts");
            let known = if known.is_file() {
                known.display().to_string()
            } else {
                "/dev/null".to_owned()
            };
            ssh_command = Some(format!(
                "ssh -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
                key.display()
            ));
        }
        let git = Git {
            git_dir,
            home,
            checkout: PathBuf::from(&settings.plan.directory),
            repository: settings.plan.repository.clone(),
            branch: settings.plan.branch.clone(),
            credential_helper,
            ssh_command,
            author: settings.author.clone(),
        };
        git.run(
            &["init", "-q", "--bare", &git.git_dir.display().to_string()],
            false,
        )
        .map_err(|e| {
            PublishError::Failed(format!(
                "cannot create the publish step's Git directory: {e}"
            ))
        })?;
        Ok(git)
    }

    /// `git` with the publish step's environment: no system or global config, no prompt.
    fn command(&self, with_credential: bool) -> Command {
        let mut command = Command::new("git");
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", &self.author.0)
            .env("GIT_AUTHOR_EMAIL", &self.author.1)
            .env("GIT_COMMITTER_NAME", &self.author.0)
            .env("GIT_COMMITTER_EMAIL", &self.author.1);
        // The egress exit (docs/security.md) is reached through these.
        for proxy in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            if let Some(value) = std::env::var_os(proxy) {
                command.env(proxy, value);
            }
        }
        command.args([
            "-c",
            "safe.directory=*",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
        ]);
        if with_credential {
            command.args(&self.credential_helper);
            if let Some(ssh) = &self.ssh_command {
                command.env("GIT_SSH_COMMAND", ssh);
            }
        }
        command.arg(format!("--git-dir={}", self.git_dir.display()));
        command
    }

    /// Runs `git args`; its stdout, or its stderr as the error.
    fn run(&self, args: &[&str], with_credential: bool) -> Result<String, String> {
        output_of(self.command(with_credential).args(args))
    }

    /// Runs `git args` in the checkout's working tree with the publish step's own index.
    fn in_checkout(&self, args: &[&str]) -> Result<String, String> {
        let mut command = self.command(false);
        command
            .env("GIT_WORK_TREE", &self.checkout)
            .env("GIT_INDEX_FILE", self.home.join("publish.index"))
            .current_dir(&self.checkout)
            .args(args);
        output_of(&mut command)
    }

    /// Fetches `refspec` (`+SRC:DST`) from the checkout, and checks that DST exists (a fetch
    /// from a shallow checkout — `depth` — needs `--update-shallow`, or it skips the ref).
    fn fetch_checkout(&self, refspec: &str) -> Result<(), String> {
        let checkout = self.checkout.display().to_string();
        let fetch = [
            "-c",
            "protocol.file.allow=always",
            "fetch",
            "-q",
            "--no-tags",
            "--update-shallow",
            &checkout,
            refspec,
        ];
        self.run(&fetch, false)?;
        let fetched = refspec.rsplit(':').next().unwrap_or_default();
        self.run(&["rev-parse", "--verify", "-q", fetched], false)
            .map(|_| ())
            .map_err(|_| format!("{refspec}: nothing fetched"))
    }

    /// The agent's work as one commit: its HEAD, plus a commit of what it left uncommitted.
    /// `None` when it is the same tree as the clone checked out (nothing to publish).
    pub fn commit_the_checkout(&self, message: &str) -> Result<Option<String>, PublishError> {
        let checkout = self.checkout.display().to_string();
        self.fetch_checkout(&format!("+HEAD:{HEAD}")).map_err(|e| {
            PublishError::Refused(format!(
                "the checkout {checkout} has no commit to publish (the agent removed or broke its repository): {e}"
            ))
        })?;
        let base = self
            .fetch_checkout(&format!("+{BASE_REF}:{BASE}"))
            .ok()
            .and_then(|_| {
                self.run(&["rev-parse", &format!("{BASE}^{{tree}}")], false)
                    .ok()
            });
        fn failed(what: &'static str) -> impl Fn(String) -> PublishError {
            move |e| PublishError::Failed(format!("cannot {what}: {e}"))
        }
        self.in_checkout(&["read-tree", HEAD])
            .map_err(failed("read the agent's commit"))?;
        self.in_checkout(&["add", "-A", "."])
            .map_err(failed("stage what the agent left"))?;
        let tree = self
            .in_checkout(&["write-tree"])
            .map_err(failed("write the tree"))?;
        let head_tree = self
            .run(&["rev-parse", &format!("{HEAD}^{{tree}}")], false)
            .map_err(failed("read the agent's tree"))?;
        if base.as_deref() == Some(tree.as_str()) {
            return Ok(None);
        }
        let head = self
            .run(&["rev-parse", HEAD], false)
            .map_err(failed("read the agent's HEAD"))?;
        if tree == head_tree {
            return Ok(Some(head));
        }
        let commit = self
            .run(&["commit-tree", &tree, "-p", &head, "-m", message], false)
            .map_err(failed("commit what the agent left"))?;
        Ok(Some(commit))
    }

    /// Pushes `commit` to the branch without force: a branch that exists must be in its
    /// history, or hold the same tree (published before, by an earlier attempt). Returns the
    /// commit the branch points to.
    pub fn push(&self, commit: &str) -> Result<String, PublishError> {
        let target = format!("refs/heads/{}", self.branch);
        let remote = self
            .run(&["ls-remote", &self.repository, &target], true)
            .map_err(|e| classify(&e, "read the branches of"))?;
        let existing = remote.split_whitespace().next().map(str::to_owned);
        if let Some(existing) = &existing {
            if existing == commit {
                return Ok(commit.to_owned());
            }
            self.run(
                &[
                    "fetch",
                    "-q",
                    "--no-tags",
                    &self.repository,
                    &format!("+{target}:{REMOTE}"),
                ],
                true,
            )
            .map_err(|e| classify(&e, "fetch the branch from"))?;
            let tree = |rev: &str| {
                self.run(&["rev-parse", &format!("{rev}^{{tree}}")], false)
                    .ok()
            };
            if tree(REMOTE).is_some() && tree(REMOTE) == tree(commit) {
                println!("publish: {} already holds this work", self.branch);
                return Ok(existing.clone());
            }
            if self
                .run(&["merge-base", "--is-ancestor", REMOTE, commit], false)
                .is_err()
            {
                return Err(PublishError::Refused(format!(
                    "branch {:?} exists and has commits this Task's work does not build on; it is never force-pushed: set spec.workspace.ref to that branch to build on it, or publish.branch to another branch",
                    self.branch
                )));
            }
        }
        self.run(
            &[
                "push",
                "-q",
                &self.repository,
                &format!("{commit}:{target}"),
            ],
            true,
        )
        .map_err(|e| classify(&e, "push to"))?;
        Ok(commit.to_owned())
    }
}

/// Runs `command`: its stdout, or its stderr as the error.
fn output_of(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Writes `text` to `path`, readable by its owner alone.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// A Git failure against the remote: refused (credentials, a rejected push) or failed.
fn classify(stderr: &str, what: &str) -> PublishError {
    let lower = stderr.to_ascii_lowercase();
    let credentials = [
        "authentication failed",
        "could not read username",
        "could not read password",
        "permission denied",
        "access denied",
        "returned error: 401",
        "returned error: 403",
        "error: 403",
    ];
    if credentials.iter().any(|p| lower.contains(p)) {
        return PublishError::Refused(format!(
            "the repository refused the credentials of spec.workspace.publish.credentialsRef (they must allow pushing): {stderr}"
        ));
    }
    let rejected = [
        "[rejected]",
        "non-fast-forward",
        "fetch first",
        "[remote rejected]",
        "protected branch",
        "declined",
        "pre-receive hook",
    ];
    if rejected.iter().any(|p| lower.contains(p)) {
        return PublishError::Refused(format!("the repository refused the push: {stderr}"));
    }
    PublishError::Failed(format!("cannot {what} the repository: {stderr}"))
}
