//! `kubetask-agent publish`: a workspace's publish step (docs/workspaces.md). A container of
//! its own in the agent's pod, the only one that mounts the write credential: it waits for
//! the agent (handoff.rs), and when it succeeded commits what it left in the checkout, pushes
//! the branch (never force-pushed) and opens or updates the pull request through the
//! provider's API. Its termination message is a `Published`; exit 3 when what it was asked
//! cannot be done as asked (not retried), 1 when the repository or the API failed.

mod git;
mod provider;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kubetask_api::lifecycle::parse_report;
use kubetask_api::workspace::{
    PUBLISH_ENV, PUBLISH_REFUSED_EXIT_CODE, Provider, PublishPlan, Published, repository_endpoint,
};

use crate::handoff::{self, WaitError};

pub use git::Git;
pub use provider::Api;

/// Why publishing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Cannot be done as asked (a push refused, a 4xx of the API, a bad credential): exit 3.
    Refused(String),
    /// The repository or the API failed (network, 5xx after retries): exit 1.
    Failed(String),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Refused(message) | PublishError::Failed(message) => f.write_str(message),
        }
    }
}

/// Where the publish step finds what it needs (the variables the built-in plugin sets).
#[derive(Debug, Clone)]
pub struct Settings {
    pub plan: PublishPlan,
    /// The write credential's keys (`token`, `username`, `ssh-privatekey`, `known_hosts`).
    pub credentials: PathBuf,
    /// A directory of its own (its Git directory).
    pub scratch: PathBuf,
    pub termination_log: PathBuf,
    /// How long the agent's runner has to take the handoff lock.
    pub runner_appears_within: Duration,
    /// The author and committer of the commit of what the agent left.
    pub author: (String, String),
    /// Pauses between tries of the provider's API.
    pub backoff: Vec<Duration>,
}

impl Settings {
    /// Reads the settings from `env`.
    pub fn from(env: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let text = env(PUBLISH_ENV).ok_or_else(|| format!("{PUBLISH_ENV} is not set"))?;
        let plan: PublishPlan =
            serde_json::from_str(&text).map_err(|e| format!("{PUBLISH_ENV} is not a plan: {e}"))?;
        let path = |name: &str, default: &str| {
            PathBuf::from(env(name).unwrap_or_else(|| default.to_owned()))
        };
        let wait = env("KUBETASK_PUBLISH_WAIT_SECONDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        Ok(Settings {
            plan,
            credentials: path(
                "KUBETASK_PUBLISH_CREDENTIALS",
                "/var/run/kubetask/publish-credentials",
            ),
            scratch: path(
                "KUBETASK_PUBLISH_SCRATCH",
                "/var/run/kubetask/publish-scratch",
            ),
            termination_log: path("KUBETASK_TERMINATION_LOG", "/dev/termination-log"),
            runner_appears_within: Duration::from_secs(wait),
            author: (
                env("KUBETASK_GIT_AUTHOR_NAME").unwrap_or_else(|| "KubeTask".to_owned()),
                env("KUBETASK_GIT_AUTHOR_EMAIL")
                    .unwrap_or_else(|| "kubetask@users.noreply.kubetask.io".to_owned()),
            ),
            backoff: [1, 2, 4, 8].map(Duration::from_secs).to_vec(),
        })
    }
}

/// The publish step's entry point.
pub fn main(args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("kubetask-agent publish: takes no arguments (its plan is in {PUBLISH_ENV})");
        return ExitCode::from(2);
    }
    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, terminate.clone()) {
            eprintln!("kubetask-agent publish: cannot handle signal {signal}: {error}");
        }
    }
    let settings = match Settings::from(|name| std::env::var(name).ok().filter(|v| !v.is_empty())) {
        Ok(settings) => settings,
        Err(message) => return conclude(None, Err(PublishError::Refused(message))),
    };
    let outcome = after_the_agent(&settings, &terminate);
    conclude(Some(&settings), outcome)
}

/// Waits for the agent, then publishes what it left if it succeeded. `Ok(None)`: it did not
/// succeed, nothing is published (the pod fails on the agent's own exit code).
pub fn after_the_agent(
    settings: &Settings,
    terminate: &Arc<AtomicBool>,
) -> Result<Option<Published>, PublishError> {
    let plan = &settings.plan;
    println!("publish: waiting for the agent to finish");
    let exit = handoff::wait(
        std::path::Path::new(&plan.handoff),
        settings.runner_appears_within,
        terminate,
    );
    let exit = match exit {
        Ok(Some(exit)) => exit,
        Ok(None) => {
            println!(
                "publish: the agent ended without a report (it was killed): nothing to publish"
            );
            return Ok(None);
        }
        Err(WaitError::Terminated) => {
            println!("publish: stopped (the Task was cancelled or timed out): nothing published");
            return Ok(None);
        }
        Err(WaitError::NoRunner(after)) => {
            return Err(PublishError::Refused(format!(
                "the agent container did not start kubetask-agent within {}s: a workspace that publishes needs the agent runner as the agent's entrypoint (the KubeTask agent images, or the agent-runner plugin)",
                after.as_secs()
            )));
        }
        Err(WaitError::Io(error)) => {
            return Err(PublishError::Failed(format!(
                "cannot wait for the agent: {error}"
            )));
        }
    };
    if exit.exit_code != 0 {
        println!(
            "publish: the agent did not succeed (exit {}): nothing to publish",
            exit.exit_code
        );
        return Ok(None);
    }
    let summary = parse_report(&exit.report)
        .ok()
        .flatten()
        .map(|(result, _)| result.summary)
        .unwrap_or_default();
    publish(settings, &summary).map(Some)
}

/// Commits what the agent left, pushes the branch and opens or updates the pull request.
pub fn publish(settings: &Settings, summary: &str) -> Result<Published, PublishError> {
    let plan = &settings.plan;
    let message = commit_message(plan, summary);
    let token = write_token(settings)?;
    let git = Git::new(settings, token.as_deref())?;
    let Some(commit) = git.commit_the_checkout(&message)? else {
        println!("publish: the agent left no changes: nothing pushed, no pull request");
        return Ok(Published {
            no_changes: true,
            ..Published::default()
        });
    };
    let pushed = git.push(&commit)?;
    println!("publish: {} is at {pushed}", plan.branch);
    let pull_request = match &plan.pull_request {
        Some(pr) => {
            let title = pr
                .title
                .clone()
                .unwrap_or_else(|| message.lines().next().unwrap_or_default().to_owned());
            let body = pr.body.clone().unwrap_or_else(|| {
                let said = if summary.trim().is_empty() {
                    "The agent gave no summary."
                } else {
                    summary.trim()
                };
                format!("{said}\n\n---\nOpened by KubeTask for {}.", plan.task)
            });
            let token = token.as_deref().ok_or_else(|| {
                PublishError::Refused(
                    "a pull request needs a token in the Secret of spec.workspace.publish.credentialsRef (key `token`, or a GitHub App's keys)".to_owned(),
                )
            })?;
            let api = Api::new(pr, token, settings.backoff.clone());
            let opened = api.open_or_update(&plan.branch, &title, &body)?;
            println!("publish: pull request {}", opened.url);
            Some(opened)
        }
        None => None,
    };
    Ok(Published {
        branch: Some(plan.branch.clone()),
        commit: Some(pushed),
        no_changes: false,
        pull_request,
    })
}

/// The write token: the Secret's `token`, or an installation token minted from its GitHub
/// App's keys for this repository alone (`contents` and, with a pull request,
/// `pull_requests: write`). `None`: no token (an SSH key pushes).
fn write_token(settings: &Settings) -> Result<Option<String>, PublishError> {
    let plan = &settings.plan;
    if crate::github_app::present(&settings.credentials) {
        let api = match &plan.pull_request {
            Some(pr) if pr.provider == Provider::GitHub => pr.api_url.clone(),
            Some(_) => {
                return Err(PublishError::Refused(
                    "spec.workspace.publish.credentialsRef holds a GitHub App's keys, but the pull request is not on GitHub".to_owned(),
                ));
            }
            None => {
                let host = repository_endpoint(&plan.repository).map(|(host, _)| host);
                match host.filter(|h| Provider::of_host(h) == Some(Provider::GitHub)) {
                    Some(host) => Provider::GitHub.default_api_url(&host),
                    None => {
                        return Err(PublishError::Refused(format!(
                            "spec.workspace.publish.credentialsRef holds a GitHub App's keys, but {} is not on a host known to be GitHub's (set pullRequest.provider: GitHub and apiURL)",
                            plan.repository
                        )));
                    }
                }
            }
        };
        let name = plan
            .repository
            .rsplit(['/', ':'])
            .next()
            .unwrap_or_default()
            .trim_end_matches(".git")
            .to_owned();
        let mut permissions = vec![("contents", "write")];
        if plan.pull_request.is_some() {
            permissions.push(("pull_requests", "write"));
        }
        return crate::github_app::installation_token(
            &settings.credentials,
            &api,
            &name,
            &permissions,
        )
        .map(Some)
        .map_err(|e| {
            PublishError::Refused(format!(
                "the credentials of spec.workspace.publish.credentialsRef: {e}"
            ))
        });
    }
    match std::fs::read_to_string(settings.credentials.join("token")) {
        Ok(token) => Ok(Some(token.trim().to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(PublishError::Failed(format!(
            "cannot read the write token: {error}"
        ))),
    }
}

/// The commit message: the plan's, else the first line of the agent's summary, else one
/// naming the Task.
fn commit_message(plan: &PublishPlan, summary: &str) -> String {
    if let Some(message) = plan
        .commit_message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
    {
        return message.to_owned();
    }
    let first = summary.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(line) => {
            let line: String = line.chars().take(72).collect();
            format!("{line}\n\n{}", summary.trim())
        }
        None => format!("KubeTask: {}", plan.task),
    }
}

/// Writes the termination message and turns the outcome into the exit code.
fn conclude(
    settings: Option<&Settings>,
    outcome: Result<Option<Published>, PublishError>,
) -> ExitCode {
    let log = settings.map_or_else(
        || PathBuf::from("/dev/termination-log"),
        |s| s.termination_log.clone(),
    );
    let (message, code) = match &outcome {
        Ok(Some(published)) => (serde_json::to_string(published).unwrap_or_default(), 0),
        Ok(None) => (String::new(), 0),
        Err(error) => {
            eprintln!("publish: {error}");
            let code = match error {
                PublishError::Refused(_) => PUBLISH_REFUSED_EXIT_CODE,
                PublishError::Failed(_) => 1,
            };
            // The kubelet keeps 4 KiB of it.
            let text: String = error.to_string().chars().take(3800).collect();
            (text, code)
        }
    };
    if let Err(error) = std::fs::write(&log, &message) {
        eprintln!("publish: cannot write {}: {error}", log.display());
    }
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
