//! The publish step (`kubetask-agent publish`, agents/runner/src/publish/) against a real Git
//! server (`git http-backend`) and the fake GitHub/GitLab of the test server crate: what the
//! agent left is committed and pushed, the pull request opened then updated; nothing to
//! publish is `noChanges`; a branch with someone else's commits is never force-pushed; refused
//! credentials, rejected pushes and API errors each end with their reason; nothing of the
//! checkout (config, hooks, filters) is ever run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kubetask_agent::publish::{self, PublishError, Settings};
use kubetask_api::workspace::{PlannedPullRequest, Provider, PublishPlan, Published};
use kubetask_test_apiserver::forge::Forge;
use kubetask_test_apiserver::git_http::git;
use serde_json::json;

const TOKEN: &str = "s3cret";

/// A served repository `service-a.git` (README, a `.gitignore` of `node_modules/`) and a
/// checkout of it made by the clone step's own script, as in the pod.
struct Fixture {
    dir: tempfile::TempDir,
    served: PathBuf,
    url: String,
    checkout: PathBuf,
    forge: Forge,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let work = dir.path().join("upstream");
        std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{e}"));
        git(&work, &["init", "-q", "-b", "main"]);
        std::fs::write(work.join("README.md"), "service a\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(work.join(".gitignore"), "node_modules/\n")
            .unwrap_or_else(|e| panic!("{e}"));
        git(&work, &["add", "."]);
        git(&work, &["commit", "-q", "-m", "first"]);
        let root = dir.path().join("served");
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        git(
            &root,
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap_or_default(),
                "service-a.git",
            ],
        );
        let port = kubetask_test_apiserver::git_http::serve(&root, TOKEN);
        let url = format!("http://127.0.0.1:{port}/service-a.git");
        let fixture = Fixture {
            checkout: dir.path().join("workspace/repo"),
            served: root.join("service-a.git"),
            url,
            forge: Forge::start(TOKEN),
            dir,
        };
        fixture.clone_step();
        fixture
    }

    /// Runs the clone step's script into the checkout.
    fn clone_step(&self) {
        let scratch = self.dir.path().join("clone-scratch");
        let credentials = self.dir.path().join("read");
        std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&credentials).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(credentials.join("token"), TOKEN).unwrap_or_else(|e| panic!("{e}"));
        let output = std::process::Command::new("sh")
            .args([
                "-c",
                kubetask_default_plugin::workspace::CLONE_SCRIPT,
                "workspace-clone",
            ])
            .args([
                &self.url,
                "main",
                "",
                "false",
                self.checkout.to_str().unwrap_or_default(),
            ])
            .env("KUBETASK_CREDENTIALS", &credentials)
            .env("KUBETASK_SCRATCH", &scratch)
            .env(
                "KUBETASK_TERMINATION_LOG",
                self.dir.path().join("clone-log"),
            )
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The publish step's settings, for a fresh attempt `name` (its own scratch).
    fn settings(&self, name: &str, provider: Option<Provider>, token: &str) -> Settings {
        let case = self.dir.path().join(name);
        let credentials = case.join("credentials");
        let scratch = case.join("scratch");
        std::fs::create_dir_all(&credentials).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(credentials.join("token"), format!("{token}\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let pull_request = provider.map(|provider| PlannedPullRequest {
            provider,
            api_url: match provider {
                Provider::GitHub => self.forge.github_url(),
                Provider::GitLab => self.forge.gitlab_url(),
            },
            project: "myorg/service-a".to_owned(),
            base: None,
            labels: vec!["kubetask".to_owned()],
            ..PlannedPullRequest::default()
        });
        Settings {
            plan: PublishPlan {
                repository: self.url.clone(),
                branch: "kubetask/deps".to_owned(),
                directory: self.checkout.display().to_string(),
                handoff: self
                    .dir
                    .path()
                    .join("workspace/.kubetask")
                    .display()
                    .to_string(),
                commit_message: None,
                task: "Task/deps in team-a".to_owned(),
                pull_request,
            },
            credentials,
            scratch,
            termination_log: case.join("termination-log"),
            runner_appears_within: Duration::from_secs(5),
            author: ("KubeTask".to_owned(), "kubetask@example.com".to_owned()),
            backoff: vec![Duration::from_millis(10); 3],
        }
    }

    /// The served branch's commit, if it exists.
    fn branch(&self, name: &str) -> Option<String> {
        let listed = git(
            &self.served,
            &[
                "for-each-ref",
                "--format=%(objectname)",
                &format!("refs/heads/{name}"),
            ],
        );
        (!listed.is_empty()).then_some(listed)
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.checkout.join(path);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.checkout))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn published(result: Result<Published, PublishError>) -> Published {
    result.unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn the_agents_work_is_pushed_and_proposed_then_a_second_attempt_updates_it() {
    let f = Fixture::new();
    let base = git(&f.checkout, &["rev-parse", "HEAD"]);
    f.write("README.md", "service a, updated\n");
    f.write("CHANGELOG.md", "deps updated\n");
    f.write("node_modules/left/index.js", "ignored\n");
    let summary = "Updated dependencies\n\nAll tests pass.";
    let got = published(publish::publish(
        &f.settings("first", Some(Provider::GitHub), TOKEN),
        summary,
    ));
    let pushed = f
        .branch("kubetask/deps")
        .unwrap_or_else(|| panic!("no branch"));
    assert_eq!(got.branch.as_deref(), Some("kubetask/deps"));
    assert_eq!(got.commit.as_deref(), Some(pushed.as_str()));
    assert!(!got.no_changes);
    let pr = got
        .pull_request
        .clone()
        .unwrap_or_else(|| panic!("no pull request"));
    assert_eq!(pr.number, 1);
    assert!(pr.url.ends_with("/myorg/service-a/pull/1"), "{}", pr.url);
    // The commit: the agent's files on top of the clone's commit, the ignored ones left out,
    // the message from the agent's summary.
    assert_eq!(git(&f.served, &["rev-parse", &format!("{pushed}^")]), base);
    let files = git(&f.served, &["ls-tree", "-r", "--name-only", &pushed]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        [".gitignore", "CHANGELOG.md", "README.md"]
    );
    assert_eq!(
        git(&f.served, &["log", "-1", "--format=%s", &pushed]),
        "Updated dependencies"
    );
    let pulls = f.forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (
            pulls[0].head.as_str(),
            pulls[0].base.as_str(),
            pulls[0].title.as_str()
        ),
        ("kubetask/deps", "main", "Updated dependencies"),
        "the base is the repository's default branch"
    );
    assert!(pulls[0].body.starts_with(summary), "{}", pulls[0].body);
    assert_eq!(pulls[0].labels, ["kubetask"]);

    // A retry of the Task redoes the same work: the branch already holds it (not pushed
    // again, never forced) and the open pull request is updated, not opened twice.
    let again = published(publish::publish(
        &f.settings("second", Some(Provider::GitHub), TOKEN),
        "Updated dependencies, again",
    ));
    assert_eq!(f.branch("kubetask/deps").as_deref(), Some(pushed.as_str()));
    assert_eq!(again.pull_request.map(|p| p.number), Some(1));
    let pulls = f.forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].title, "Updated dependencies, again");
}

#[test]
fn an_agent_that_changed_nothing_publishes_nothing() {
    let f = Fixture::new();
    f.write("node_modules/only/ignored.js", "x\n");
    let got = published(publish::publish(
        &f.settings("none", Some(Provider::GitHub), TOKEN),
        "Nothing to do",
    ));
    assert!(got.no_changes);
    assert_eq!((got.branch, got.pull_request), (None, None));
    assert_eq!(f.branch("kubetask/deps"), None);
    assert!(f.forge.seen().is_empty(), "no empty pull request");
}

#[test]
fn the_agents_own_commits_and_what_it_left_are_both_published() {
    let f = Fixture::new();
    f.write("src.txt", "committed by the agent\n");
    git(&f.checkout, &["add", "src.txt"]);
    git(&f.checkout, &["commit", "-q", "-m", "agent: add src"]);
    let agents = git(&f.checkout, &["rev-parse", "HEAD"]);
    f.write("README.md", "left uncommitted\n");
    let got = published(publish::publish(&f.settings("mixed", None, TOKEN), ""));
    let pushed = f
        .branch("kubetask/deps")
        .unwrap_or_else(|| panic!("no branch"));
    assert_eq!(
        git(&f.served, &["rev-parse", &format!("{pushed}^")]),
        agents
    );
    assert_eq!(
        git(&f.served, &["log", "-1", "--format=%s", &pushed]),
        "KubeTask: Task/deps in team-a"
    );
    assert_eq!(got.pull_request, None, "no pullRequest asked: only pushed");

    // Only the agent's commits, nothing left: pushed as they are.
    let g = Fixture::new();
    g.write("src.txt", "x\n");
    git(&g.checkout, &["add", "."]);
    git(&g.checkout, &["commit", "-q", "-m", "agent"]);
    let head = git(&g.checkout, &["rev-parse", "HEAD"]);
    published(publish::publish(&g.settings("commits", None, TOKEN), ""));
    assert_eq!(g.branch("kubetask/deps"), Some(head));
}

#[test]
fn a_branch_with_someone_elses_commits_is_never_force_pushed() {
    let f = Fixture::new();
    // Someone else's branch of the same name.
    let other = f.dir.path().join("other");
    git(
        f.dir.path(),
        &[
            "clone",
            "-q",
            f.served.to_str().unwrap_or_default(),
            "other",
        ],
    );
    std::fs::write(other.join("theirs.txt"), "theirs\n").unwrap_or_else(|e| panic!("{e}"));
    git(&other, &["add", "."]);
    git(&other, &["commit", "-q", "-m", "theirs"]);
    git(
        &other,
        &["push", "-q", "origin", "HEAD:refs/heads/kubetask/deps"],
    );
    let theirs = f.branch("kubetask/deps");
    f.write("README.md", "ours\n");
    let got = publish::publish(
        &f.settings("diverged", Some(Provider::GitHub), TOKEN),
        "ours",
    );
    match got {
        Err(PublishError::Refused(message)) => {
            assert!(message.contains("never force-pushed"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.branch("kubetask/deps"), theirs, "their commits are kept");
    assert!(f.forge.pulls().is_empty());
}

#[test]
fn refused_credentials_and_rejected_pushes_are_refused_with_their_reason() {
    let f = Fixture::new();
    f.write("README.md", "change\n");
    match publish::publish(&f.settings("wrong-token", None, "guess"), "") {
        Err(PublishError::Refused(message)) => {
            assert!(message.contains("publish.credentialsRef"), "{message}");
            assert!(!message.contains(TOKEN));
        }
        other => panic!("{other:?}"),
    }
    // A protected branch: the server's hook declines the push.
    let hook = f.served.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho 'GH006: Protected branch update failed' >&2\nexit 1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut permissions = std::fs::metadata(&hook)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&hook, permissions).unwrap_or_else(|e| panic!("{e}"));
    match publish::publish(&f.settings("protected", None, TOKEN), "") {
        Err(PublishError::Refused(message)) => {
            assert!(message.contains("refused the push"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.branch("kubetask/deps"), None);
}

#[test]
fn the_api_is_retried_on_5xx_and_refused_on_4xx() {
    let f = Fixture::new();
    f.write("README.md", "change\n");
    f.forge
        .fail_next([(503, json!({"message": "unavailable"})), (502, json!({}))]);
    let got = published(publish::publish(
        &f.settings("retried", Some(Provider::GitHub), TOKEN),
        "Fix",
    ));
    assert_eq!(got.pull_request.map(|p| p.number), Some(1));
    let statuses: Vec<u16> = f.forge.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses[..3], [503, 502, 200], "{statuses:?}");

    let g = Fixture::new();
    g.write("README.md", "change\n");
    g.forge.fail_next([(
        403,
        json!({"message": "Resource not accessible by integration"}),
    )]);
    match publish::publish(
        &g.settings("forbidden", Some(Provider::GitHub), TOKEN),
        "Fix",
    ) {
        Err(PublishError::Refused(message)) => {
            assert!(
                message.contains("403 Resource not accessible by integration"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    g.forge.fail_next(std::iter::repeat_n((500, json!({})), 4));
    match publish::publish(&g.settings("down", Some(Provider::GitHub), TOKEN), "Fix") {
        Err(PublishError::Failed(message)) => {
            assert!(message.contains("kept failing (4 tries)"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match publish::publish(
        &g.settings("bad-token", Some(Provider::GitHub), "guess"),
        "Fix",
    ) {
        // The push is refused before the API is asked.
        Err(PublishError::Refused(message)) => {
            assert!(message.contains("credentials"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gitlab_merge_request_is_opened_then_updated() {
    let f = Fixture::new();
    f.write("README.md", "change\n");
    let mut settings = f.settings("gitlab", Some(Provider::GitLab), TOKEN);
    if let Some(pr) = settings.plan.pull_request.as_mut() {
        pr.draft = true;
        pr.base = Some("main".to_owned());
    }
    let got = published(publish::publish(&settings, "Bump deps"));
    let pr = got
        .pull_request
        .unwrap_or_else(|| panic!("no merge request"));
    assert!(
        pr.url.ends_with("/myorg/service-a/-/merge_requests/1"),
        "{}",
        pr.url
    );
    let again = published(publish::publish(
        &f.settings("gitlab-again", Some(Provider::GitLab), TOKEN),
        "Bump deps again",
    ));
    assert_eq!(again.pull_request.map(|p| p.number), Some(1));
    let pulls = f.forge.pulls();
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        (pulls[0].provider, pulls[0].base.as_str()),
        ("gitlab", "main")
    );
    assert_eq!(pulls[0].title, "Bump deps again");
    assert!(pulls[0].draft);
    let targets: Vec<String> = f.forge.seen().iter().map(|s| s.target.clone()).collect();
    assert!(
        targets
            .iter()
            .all(|t| t.starts_with("/api/v4/projects/myorg%2Fservice-a")),
        "{targets:?}"
    );
}

/// What the agent wrote in the checkout's Git directory (config, hooks, attributes with a
/// filter driver) is never run by the publish step, which holds the write credential.
#[test]
fn nothing_the_agent_wrote_in_the_checkout_is_run() {
    let f = Fixture::new();
    let marker = f.dir.path().join("pwned");
    let touch = format!("touch {}", marker.display());
    for (key, value) in [
        ("core.fsmonitor", touch.as_str()),
        ("core.hooksPath", ".git/evil-hooks"),
        ("filter.evil.clean", touch.as_str()),
        ("credential.helper", &format!("!{touch};")),
        ("core.sshCommand", touch.as_str()),
        ("uploadpack.packObjectsHook", touch.as_str()),
    ] {
        git(&f.checkout, &["config", key, value]);
    }
    for hook in [
        "pre-commit",
        "post-commit",
        "pre-push",
        "reference-transaction",
    ] {
        let path = f.checkout.join(".git/hooks").join(hook);
        std::fs::write(&path, format!("#!/bin/sh\n{touch}\n")).unwrap_or_else(|e| panic!("{e}"));
        let mut permissions = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap_or_else(|e| panic!("{e}"));
    }
    f.write(".gitattributes", "* filter=evil\n");
    f.write("README.md", "change\n");
    std::fs::remove_file(&marker).ok();
    published(publish::publish(
        &f.settings("hostile", Some(Provider::GitHub), TOKEN),
        "x",
    ));
    assert!(
        !marker.exists(),
        "the publish step ran something the agent wrote"
    );
    assert!(f.branch("kubetask/deps").is_some());
}

/// The publish step after the agent, through the handoff: a failed agent publishes nothing;
/// a successful one its work.
#[test]
fn only_an_agent_that_succeeded_is_published() {
    let f = Fixture::new();
    f.write("README.md", "half done\n");
    let settings = f.settings("failed-agent", Some(Provider::GitHub), TOKEN);
    let handoff = PathBuf::from(&settings.plan.handoff);
    let terminate = Arc::new(AtomicBool::new(false));
    let held = kubetask_agent::handoff::hold(&handoff).unwrap_or_else(|e| panic!("{e}"));
    held.finish(&kubetask_agent::handoff::AgentExit {
        exit_code: 1,
        report: r#"{"summary":"Failed: tests do not pass"}"#.to_owned(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let got = publish::after_the_agent(&settings, &terminate).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(got, None);
    assert_eq!(f.branch("kubetask/deps"), None);

    let held = kubetask_agent::handoff::hold(&handoff).unwrap_or_else(|e| panic!("{e}"));
    held.finish(&kubetask_agent::handoff::AgentExit {
        exit_code: 0,
        report: r#"{"summary":"Done: README updated"}"#.to_owned(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let got = publish::after_the_agent(
        &f.settings("succeeded-agent", Some(Provider::GitHub), TOKEN),
        &terminate,
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
    .unwrap_or_else(|| panic!("nothing published"));
    assert_eq!(got.pull_request.map(|p| p.number), Some(1));
    assert_eq!(f.forge.pulls()[0].title, "Done: README updated");
}

const APP_KEY: &str = include_str!("../../../tests/apiserver/fixtures/github-app-test-key.pem");

/// Writes a GitHub App's keys (and no token) into `dir`.
fn app_credentials(dir: &Path, app_id: &str) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(dir.join("token")).ok();
    for (name, value) in [
        ("github-app-id", app_id),
        ("github-app-installation-id", "99"),
        ("github-app-private-key", APP_KEY),
    ] {
        std::fs::write(dir.join(name), value).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A GitHub App's keys in a step's Secret: each step mints its own short-lived installation
/// token, for this repository alone and the permissions it needs — the clone `contents: read`
/// (through `kubetask-agent github-app-token`, from its script), the publish step `contents`
/// and `pull_requests: write`. A JWT the provider refuses refuses the step.
#[test]
fn a_github_apps_keys_mint_a_token_per_step_for_this_repository_alone() {
    let f = Fixture::new();
    let forge = f.forge.clone().with_app("4242", APP_KEY, 99);

    // The clone step's script, with the runner on PATH as in our agent images.
    let read = f.dir.path().join("app-read");
    app_credentials(&read, "4242");
    let runner = Path::new(env!("CARGO_BIN_EXE_kubetask-agent"));
    let path = format!(
        "{}:{}",
        runner.parent().unwrap_or(Path::new("/")).display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let checkout = f.dir.path().join("app-checkout");
    let scratch = f.dir.path().join("app-scratch");
    std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
    let clone = |credentials: &Path, api: &str| {
        std::process::Command::new("sh")
            .args([
                "-c",
                kubetask_default_plugin::workspace::CLONE_SCRIPT,
                "workspace-clone",
            ])
            .args([
                &f.url,
                "main",
                "",
                "false",
                checkout.to_str().unwrap_or_default(),
                api,
            ])
            .env("PATH", &path)
            .env("KUBETASK_CREDENTIALS", credentials)
            .env("KUBETASK_SCRATCH", &scratch)
            .env(
                "KUBETASK_TERMINATION_LOG",
                f.dir.path().join("app-clone-log"),
            )
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let cloned = clone(&read, &forge.github_url());
    assert!(
        cloned.status.success(),
        "{}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert!(checkout.join("README.md").is_file());
    let minted = forge.minted();
    assert_eq!(minted.len(), 1);
    assert_eq!(minted[0].repositories, ["service-a"]);
    assert_eq!(minted[0].permissions, json!({"contents": "read"}));
    // Another App's id: the JWT is refused, the clone fails as refused credentials (exit 3).
    let other = f.dir.path().join("other-app");
    app_credentials(&other, "1");
    std::fs::remove_dir_all(&checkout).ok();
    let refused = clone(&other, &forge.github_url());
    assert_eq!(
        refused.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The publish step.
    f.write("README.md", "change\n");
    let settings = f.settings("app-publish", Some(Provider::GitHub), TOKEN);
    app_credentials(&settings.credentials, "4242");
    let got = published(publish::publish(&settings, "Fix via App"));
    assert_eq!(got.pull_request.map(|p| p.number), Some(1));
    let minted = forge.minted();
    assert_eq!(minted.len(), 2);
    assert_eq!(minted[1].repositories, ["service-a"]);
    assert_eq!(
        minted[1].permissions,
        json!({"contents": "write", "pull_requests": "write"})
    );
    let mut settings = f.settings("app-refused", Some(Provider::GitHub), TOKEN);
    app_credentials(&settings.credentials, "1");
    settings.plan.branch = "kubetask/other".to_owned();
    match publish::publish(&settings, "x") {
        Err(PublishError::Refused(message)) => {
            assert!(
                message.contains("refused an installation token"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}
