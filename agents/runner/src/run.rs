//! Running the CLI: spawn it in its own process group in the workspace, show its output as it
//! comes, forward SIGTERM (then SIGKILL after the grace period), and turn what it said into
//! the report and the exit code.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kubetask_api::lifecycle::{NO_RETRY_EXIT_CODE, parse_report};

use crate::adapters::{self, Failure, Outcome};
use crate::config::{Cli, Config};
use crate::{prompt, report};

/// The exit code after SIGTERM (128 + 15, as a shell reports it).
pub const TERMINATED_EXIT_CODE: i32 = 143;

/// How a run ended: the exit code to exit with and the report written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub exit_code: i32,
    pub report: String,
}

/// Runs the CLI of `config` until it exits, or until `terminate` is set (SIGTERM) and it
/// stopped; writes the report to `config.report_path`.
pub fn run(config: &Config, terminate: &Arc<AtomicBool>) -> Finished {
    let finished = execute(config, terminate);
    if let Err(error) = std::fs::write(&config.report_path, &finished.report) {
        eprintln!(
            "kubetask-agent: cannot write the report to {}: {error}",
            config.report_path.display()
        );
    }
    println!(
        "kubetask-agent: exit {}, report {}",
        finished.exit_code, finished.report
    );
    finished
}

fn execute(config: &Config, terminate: &Arc<AtomicBool>) -> Finished {
    let prompt = if config.cli == Cli::Command {
        String::new()
    } else {
        match prompt::build(
            &config.prompt_file,
            &config.workspace,
            config.list_context_files,
        ) {
            Ok(prompt) => prompt,
            Err(message) => return permanent(&message),
        }
    };
    let mut adapter = adapters::for_cli(config.cli);
    let env = match adapter.env(config) {
        Ok(env) => env,
        Err(message) => return permanent(&message),
    };
    let mut command = Command::new(&config.program);
    command
        .args(adapter.args(&prompt, config))
        .envs(env)
        .env("KUBETASK_PROMPT_FILE", &config.prompt_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if config.workdir.is_dir() {
        command.current_dir(&config.workdir);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return permanent(&format!(
                "cannot run {:?}: not found (is the CLI installed in the image? set KUBETASK_AGENT_BIN to its path)",
                config.program
            ));
        }
        Err(error) => {
            return permanent(&format!("cannot run {:?}: {error}", config.program));
        }
    };
    let lines = read_lines(&mut child);
    let mut stop: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;
    let mut status = None;
    let stdout = std::io::stdout();
    loop {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(Line::Err(line)) => adapter.error_line(&line),
            Ok(Line::Out(line)) => {
                if let Some(shown) = adapter.line(&line) {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{shown}");
                    let _ = out.flush();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) if status.is_some() => break,
            Err(mpsc::RecvTimeoutError::Disconnected | mpsc::RecvTimeoutError::Timeout) => {}
        }
        if status.is_none()
            && let Ok(Some(exit)) = child.try_wait()
        {
            status = Some(exit);
            exited_at = Some(Instant::now());
        }
        // A process the CLI left behind may keep its stdout open: stop reading a second
        // after the CLI itself exited.
        if exited_at.is_some_and(|at| at.elapsed() > Duration::from_secs(1)) {
            break;
        }
        if terminate.load(Ordering::Relaxed) && status.is_none() {
            match stop {
                None => {
                    signal(&child, libc::SIGTERM);
                    stop = Some(Instant::now() + config.grace);
                }
                Some(deadline) if Instant::now() > deadline => {
                    signal(&child, libc::SIGKILL);
                    stop = Some(Instant::now() + Duration::from_secs(3600));
                }
                Some(_) => {}
            }
        }
    }
    let code = status.and_then(|status| status.code());
    let outcome = adapter.finish(code);
    conclude(outcome, terminate.load(Ordering::Relaxed))
}

/// A line the CLI printed (invalid UTF-8 replaced).
enum Line {
    Out(String),
    /// On stderr: passed on to the runner's stderr (the pod's log) as it comes, and shown to
    /// the adapter (Gemini CLI prints its JSON error there).
    Err(String),
}

/// The CLI's stdout and stderr, line by line, in one channel, from a reader thread each.
fn read_lines(child: &mut Child) -> mpsc::Receiver<Line> {
    let (send, receive) = mpsc::channel();
    fn pump(
        stream: impl std::io::Read + Send + 'static,
        send: mpsc::Sender<Line>,
        wrap: fn(String) -> Line,
        echo: bool,
    ) {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                match reader.read_until(b'\n', &mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if echo {
                            let mut err = std::io::stderr().lock();
                            let _ = err.write_all(&buffer);
                            let _ = err.flush();
                        }
                        let line = String::from_utf8_lossy(&buffer);
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        if send.send(wrap(line)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    if let Some(stdout) = child.stdout.take() {
        pump(stdout, send.clone(), Line::Out, false);
    }
    if let Some(stderr) = child.stderr.take() {
        pump(stderr, send, Line::Err, true);
    }
    receive
}

/// Sends `signal` to the CLI's process group (the CLI and what it started).
#[allow(unsafe_code)]
fn signal(child: &Child, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of this process; the group
    // is the child's own (spawned with process_group(0)), so no unrelated process is hit.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// A failure before the CLI ran (no prompt, no executable): exit 3 with its reason.
fn permanent(message: &str) -> Finished {
    eprintln!("kubetask-agent: {message}");
    Finished {
        exit_code: NO_RETRY_EXIT_CODE,
        report: report::render(message, &Default::default(), None),
    }
}

/// The report and exit code of a run.
pub fn conclude(outcome: Outcome, interrupted: bool) -> Finished {
    let answer = outcome.answer.unwrap_or_default();
    let outputs = report::pull_requests(&answer);
    if !interrupted
        && let Some(json) = &outcome.report
        && let Ok(Some((result, usage))) = parse_report(json)
    {
        let exit_code = match &outcome.failure {
            None => 0,
            Some(Failure {
                permanent: true, ..
            }) => NO_RETRY_EXIT_CODE,
            Some(_) => 1,
        };
        return Finished {
            exit_code,
            report: report::render(&result.summary, &result.outputs, usage.as_ref()),
        };
    }
    let answer = answer.trim();
    let (summary, exit_code) = if interrupted {
        let summary = if answer.is_empty() {
            "Stopped by SIGTERM (the Task was cancelled or timed out) before the agent answered."
                .to_owned()
        } else {
            format!("Stopped by SIGTERM (the Task was cancelled or timed out); so far: {answer}")
        };
        (summary, TERMINATED_EXIT_CODE)
    } else if let Some(failure) = &outcome.failure {
        let summary = if answer.is_empty() || failure.message.contains(answer) {
            format!("Failed: {}", failure.message)
        } else {
            format!("Failed: {}\n\n{answer}", failure.message)
        };
        let code = if failure.permanent {
            NO_RETRY_EXIT_CODE
        } else {
            1
        };
        (summary, code)
    } else if answer.is_empty() {
        ("The agent finished without an answer.".to_owned(), 0)
    } else {
        (answer.to_owned(), 0)
    };
    Finished {
        exit_code,
        report: report::render(&summary, &outputs, outcome.usage.as_ref()),
    }
}
