//! Each adapter against a fake CLI that replays a recorded output sample (`fixtures/`): success,
//! a rejected credential (exit code 3, never retried), a retryable failure, SIGTERM mid-run (a
//! partial report within the grace period), an answer longer than 4 KiB in non-ASCII text, and
//! garbage output. Every report is read back by the controller's own parser
//! (`kubetask_api::lifecycle::parse_report`, which fills `status.result` and `status.usage`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubetask_api::lifecycle::parse_report;
use kubetask_api::{TaskResult, Usage};

const CLIS: [&str; 5] = ["claude-code", "gemini", "codex", "opencode", "command"];
const ANSWER: &str = "Updated 12 dependencies; all 214 tests pass.";
const PR: &str = "https://github.com/acme/service-a/pull/42";

/// A workspace with the prompt, and a fake CLI replaying `FAKE_OUTPUT`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("workspace/configs")).unwrap();
        std::fs::write(
            dir.path().join("workspace/task.md"),
            "Update dependencies to latest versions.\nRun tests and create PR.\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("workspace/configs/app.yaml"), "a: 1\n").unwrap();
        // Records its arguments (NUL-separated), prints the sample, then either exits with
        // FAKE_EXIT or, with FAKE_HANG, waits for SIGTERM and records that it got it.
        let script = dir.path().join("fake-cli");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$FAKE_DIR/args\"\ncat \"$FAKE_OUTPUT\"\nif [ -n \"$FAKE_HANG\" ]; then\n  trap 'echo terminated > \"$FAKE_DIR/got-sigterm\"; exit 143' TERM\n  sleep 60 & wait\nfi\nexit \"${FAKE_EXIT:-0}\"\n",
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&script).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&script, permissions).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The runner for `cli`, replaying `output` and exiting with `exit`.
    fn command(&self, cli: &str, output: &Path, exit: i32) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBETASK_AGENT_CLI", cli)
            .env("KUBETASK_WORKSPACE", self.path("workspace"))
            .env("KUBETASK_REPORT_PATH", self.path("termination-log"))
            .env("FAKE_DIR", self.dir.path())
            .env("FAKE_OUTPUT", output)
            .env("FAKE_EXIT", exit.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if cli == "command" {
            command.arg("--").arg(self.path("fake-cli"));
        } else {
            command.env("KUBETASK_AGENT_BIN", self.path("fake-cli"));
        }
        command
    }

    fn report(&self) -> String {
        std::fs::read_to_string(self.path("termination-log")).unwrap_or_default()
    }

    fn args(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("args"))
            .unwrap_or_default()
            .split('\0')
            .filter(|arg| !arg.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

fn fixture(cli: &str, case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{cli}/{case}.jsonl"))
}

/// Runs to the end: exit code, the report as the controller reads it, and stdout.
fn run(
    sandbox: &Sandbox,
    cli: &str,
    output: &Path,
    exit: i32,
) -> (i32, TaskResult, Option<Usage>, String) {
    let out = sandbox.command(cli, output, exit).output().unwrap();
    let report = sandbox.report();
    assert!(report.len() <= 4096, "{} bytes", report.len());
    let (result, usage) = parse_report(&report)
        .unwrap_or_else(|e| panic!("{cli}: {e}: {report}"))
        .unwrap_or_else(|| panic!("{cli}: no report: {report:?}"));
    (
        out.status.code().unwrap_or(-1),
        result,
        usage,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn success_reports_the_answer_the_pull_request_and_usage() {
    let expected_usage = [
        ("claude-code", Some(106_200), Some(3400), Some("0.4213")),
        ("gemini", Some(100_000), Some(5650), None),
        ("codex", Some(24_763), Some(122), None),
        ("opencode", Some(29_000), Some(1120), Some("0.043")),
        ("command", Some(91_200), Some(3400), Some("0.4213")),
    ];
    for (cli, input, output, cost) in expected_usage {
        let sandbox = Sandbox::new();
        let (code, result, usage, stdout) = run(&sandbox, cli, &fixture(cli, "success"), 0);
        assert_eq!(code, 0, "{cli}: {stdout}");
        assert!(result.summary.contains(ANSWER), "{cli}: {}", result.summary);
        assert_eq!(
            result.outputs.get("pr").map(String::as_str),
            Some(PR),
            "{cli}"
        );
        let usage = usage.unwrap_or_default();
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cost.as_deref()
            ),
            (input, output, cost),
            "{cli}"
        );
        if cli != "gemini" {
            // Progress is in the log as it comes (Gemini CLI prints one JSON at the end).
            assert!(
                stdout.contains("Updated 12 dependencies"),
                "{cli}: {stdout}"
            );
        }
        let args = sandbox.args();
        if cli != "command" {
            let prompt = args
                .iter()
                .find(|arg| arg.starts_with("Update dependencies"))
                .unwrap_or_else(|| panic!("{cli}: no prompt in {args:?}"));
            assert!(prompt.contains("Run tests and create PR."), "{prompt}");
            assert!(
                prompt.contains("configs/app.yaml"),
                "the other context files are listed: {prompt}"
            );
        }
        let flags: &[&str] = match cli {
            "claude-code" => &[
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--dangerously-skip-permissions",
            ],
            "gemini" => &["-p", "--output-format", "json", "--yolo"],
            "codex" => &["exec", "--json", "--skip-git-repo-check"],
            "opencode" => &["run", "--format", "json"],
            _ => &[],
        };
        for flag in flags {
            assert!(
                args.iter().any(|arg| arg == flag),
                "{cli}: {flag} missing in {args:?}"
            );
        }
    }
}

/// Recorded from the real Codex 0.169.0 (`codex exec --json`) against a fake model API without
/// WebSockets: it reports its failed WebSocket attempts as `error` events, falls back to HTTPS
/// and completes the turn. The recovered errors are not the run's failure.
#[test]
fn codex_errors_it_recovered_from_do_not_fail_the_run() {
    let sandbox = Sandbox::new();
    let mut command = sandbox.command("codex", &fixture("codex", "recovered"), 0);
    command.env(
        "KUBETASK_MODEL_GATEWAY",
        "http://gateway.kubetask-system.svc/",
    );
    let out = command.output().unwrap();
    let (result, usage) = parse_report(&sandbox.report()).unwrap().unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{}", result.summary);
    assert_eq!(result.summary, "Hello from the fake model API.");
    let usage = usage.unwrap_or_default();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (Some(1200), Some(40))
    );
    // Through the gateway: Codex takes its base URL from its configuration.
    let args = sandbox.args();
    assert!(
        args.windows(2).any(|pair| pair[0] == "-c"
            && pair[1].starts_with("model_providers.kubetask={")
            && pair[1].contains(r#"base_url="http://gateway.kubetask-system.svc/v1""#)),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|pair| pair == ["-c", "model_provider=kubetask"]),
        "{args:?}"
    );
}

#[test]
fn a_rejected_credential_exits_3_and_a_retryable_failure_1() {
    let exits = [
        ("claude-code", 1, 1),
        ("gemini", 41, 1),
        ("codex", 1, 1),
        ("opencode", 1, 1),
        ("command", 3, 1),
    ];
    for (cli, auth_exit, failure_exit) in exits {
        let sandbox = Sandbox::new();
        let (code, result, _, stdout) = run(&sandbox, cli, &fixture(cli, "auth"), auth_exit);
        assert_eq!(code, 3, "{cli} auth: {} / {stdout}", result.summary);
        assert!(
            result.summary.starts_with("Failed: "),
            "{cli}: {}",
            result.summary
        );
        let (code, result, _, stdout) = run(&sandbox, cli, &fixture(cli, "failure"), failure_exit);
        assert_eq!(code, 1, "{cli} failure: {} / {stdout}", result.summary);
        assert!(
            result.summary.starts_with("Failed: "),
            "{cli}: {}",
            result.summary
        );
    }
}

#[test]
fn sigterm_mid_run_is_forwarded_and_a_partial_report_written() {
    let sandbox_and_children: Vec<(&str, Sandbox, Child)> = CLIS
        .iter()
        .map(|cli| {
            let sandbox = Sandbox::new();
            let child = sandbox
                .command(cli, &fixture(cli, "partial"), 0)
                .env("FAKE_HANG", "1")
                .env("KUBETASK_GRACE_SECONDS", "10")
                .spawn()
                .unwrap();
            (*cli, sandbox, child)
        })
        .collect();
    for (cli, sandbox, mut child) in sandbox_and_children {
        // Wait until the fake CLI runs (it records its arguments first).
        let start = Instant::now();
        while !sandbox.path("args").exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{cli} never started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(143), "{cli}");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{cli}: within the grace period"
        );
        assert!(
            sandbox.path("got-sigterm").exists(),
            "{cli}: the CLI got SIGTERM"
        );
        let report = sandbox.report();
        let (result, _) = parse_report(&report).unwrap().unwrap();
        assert!(
            result.summary.starts_with("Stopped by SIGTERM"),
            "{cli}: {}",
            result.summary
        );
        if cli != "gemini" {
            assert!(
                result.summary.contains("Updating express"),
                "{cli}: the partial answer is kept: {}",
                result.summary
            );
        }
    }
}

#[test]
fn a_long_non_ascii_answer_is_cut_to_fit() {
    let long = "Abhängigkeiten aktualisiert ✓ — 依存関係を更新しました. ".repeat(200);
    assert!(long.len() > 8 * 1024);
    for cli in CLIS {
        let sandbox = Sandbox::new();
        let sample = std::fs::read_to_string(fixture(cli, "success"))
            .unwrap()
            .replace(ANSWER, &long);
        let path = sandbox.path("long.jsonl");
        std::fs::write(&path, sample).unwrap();
        let (code, result, _, _) = run(&sandbox, cli, &path, 0);
        assert_eq!(code, 0, "{cli}");
        assert!(
            result.summary.starts_with("Abhängigkeiten aktualisiert ✓"),
            "{cli}"
        );
        assert!(
            result.summary.len() <= 1024,
            "{cli}: {}",
            result.summary.len()
        );
        if cli != "command" {
            assert!(result.summary.ends_with('…'), "{cli}: {}", result.summary);
        }
    }
}

#[test]
fn garbage_output_still_gives_a_report_and_a_clear_exit_code() {
    for cli in CLIS {
        let sandbox = Sandbox::new();
        let path = sandbox.path("garbage.jsonl");
        let mut bytes = b"\x00\xff\xfe not json {\"type\": \n{\"type\":\"result\"\n".to_vec();
        bytes.extend((0..=255u8).cycle().take(3000));
        bytes.extend(b"\n[1,2,3]\n{\"unexpected\": true}\n");
        std::fs::write(&path, bytes).unwrap();
        let out = sandbox.command(cli, &path, 0).output().unwrap();
        let code = out.status.code();
        assert!(matches!(code, Some(0 | 1)), "{cli}: {code:?}");
        let report = sandbox.report();
        assert!(report.len() <= 4096);
        assert!(parse_report(&report).is_ok(), "{cli}: {report}");
    }
}

#[test]
fn a_missing_cli_or_prompt_exits_3_with_the_reason() {
    let sandbox = Sandbox::new();
    let out = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"))
        .env_clear()
        .env("KUBETASK_AGENT_CLI", "claude-code")
        .env("KUBETASK_AGENT_BIN", "/nonexistent/claude")
        .env("KUBETASK_WORKSPACE", sandbox.path("workspace"))
        .env("KUBETASK_REPORT_PATH", sandbox.path("termination-log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let (result, _) = parse_report(&sandbox.report()).unwrap().unwrap();
    assert!(result.summary.contains("not found"), "{}", result.summary);

    let out = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"))
        .env_clear()
        .env("KUBETASK_AGENT_CLI", "gemini")
        .env("KUBETASK_PROMPT_FILE", sandbox.path("nowhere.md"))
        .env("KUBETASK_REPORT_PATH", sandbox.path("termination-log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let (result, _) = parse_report(&sandbox.report()).unwrap().unwrap();
    assert!(
        result.summary.contains("KUBETASK_PROMPT_FILE"),
        "{}",
        result.summary
    );

    let out = Command::new(env!("CARGO_BIN_EXE_kubetask-agent"))
        .env_clear()
        .env("KUBETASK_AGENT_CLI", "cursor")
        .env("KUBETASK_REPORT_PATH", sandbox.path("termination-log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not one of"));
}
