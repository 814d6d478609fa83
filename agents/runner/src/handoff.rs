//! The handoff between the agent and the publish step, two containers of one pod that share
//! only the `/workspace` volume (docs/workspaces.md). While the agent runs, the runner holds
//! an exclusive lock on `agent.lock` in the handoff directory; when the CLI has exited it
//! writes `agent.json` (its exit code and report) and exits, and the kernel releases the lock
//! however the runner ended (SIGKILL and the OOM killer included). The publish step waits for
//! the lock, then reads `agent.json`: no file, or a failure, and it publishes nothing.
//!
//! The lock file appears already locked (locked under a temporary name, then renamed), so the
//! publish step can never take it before the runner does. The agent can write this directory
//! too: what it could forge there (an early "done") only changes when its own work is
//! published, never what the publish step runs or which credential it uses.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The lock the runner holds while the agent runs.
pub const LOCK_FILE: &str = "agent.lock";
/// What the runner leaves when the CLI has exited.
pub const EXIT_FILE: &str = "agent.json";

/// How the agent ended, as the runner left it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentExit {
    pub exit_code: i32,
    /// The report (docs/agent-image.md) the runner wrote.
    pub report: String,
}

/// The lock held for the agent's run; dropped (or the process gone), it is released.
#[derive(Debug)]
pub struct Held {
    dir: PathBuf,
    _file: File,
}

/// Takes the lock in `dir` (created if missing) for the agent's run.
pub fn hold(dir: &Path) -> std::io::Result<Held> {
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{LOCK_FILE}.{}", std::process::id()));
    let file = File::create(&temporary)?;
    file.lock()?;
    std::fs::rename(&temporary, dir.join(LOCK_FILE))?;
    // A report of an earlier run in this pod must not be taken for this one's.
    match std::fs::remove_file(dir.join(EXIT_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    Ok(Held {
        dir: dir.to_owned(),
        _file: file,
    })
}

impl Held {
    /// Leaves the agent's exit for the publish step (written whole, then renamed).
    pub fn finish(self, exit: &AgentExit) -> std::io::Result<()> {
        let temporary = self.dir.join(format!(".{EXIT_FILE}.tmp"));
        std::fs::write(&temporary, serde_json::to_vec(exit).unwrap_or_default())?;
        std::fs::rename(&temporary, self.dir.join(EXIT_FILE))
        // `self` is dropped here: the lock is released after the exit is in place.
    }
}

/// Why the wait for the agent ended without its exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitError {
    /// The lock never appeared: the agent container does not run the runner.
    NoRunner(Duration),
    /// SIGTERM (the Task was cancelled or timed out).
    Terminated,
    Io(String),
}

/// Waits for the agent's run in `dir` to end: for the lock to appear (at most `appear`), then
/// to be released. Returns the exit the runner left, `None` if it left none (it was killed).
pub fn wait(
    dir: &Path,
    appear: Duration,
    terminate: &Arc<AtomicBool>,
) -> Result<Option<AgentExit>, WaitError> {
    let poll = Duration::from_millis(200);
    let since = Instant::now();
    let file = loop {
        if terminate.load(Ordering::Relaxed) {
            return Err(WaitError::Terminated);
        }
        match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => break file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if since.elapsed() > appear {
                    return Err(WaitError::NoRunner(appear));
                }
                std::thread::sleep(poll);
            }
            Err(error) => return Err(WaitError::Io(error.to_string())),
        }
    };
    loop {
        if terminate.load(Ordering::Relaxed) {
            return Err(WaitError::Terminated);
        }
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(poll),
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(WaitError::Io(error.to_string()));
            }
        }
    }
    match std::fs::read(dir.join(EXIT_FILE)) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(WaitError::Io(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_step_waits_for_the_run_and_reads_its_exit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let terminate = Arc::new(AtomicBool::new(false));
        let held = hold(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let waiter = {
            let (dir, terminate) = (dir.path().to_owned(), terminate.clone());
            std::thread::spawn(move || wait(&dir, Duration::from_secs(5), &terminate))
        };
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            !waiter.is_finished(),
            "the lock is held while the agent runs"
        );
        let exit = AgentExit {
            exit_code: 0,
            report: r#"{"summary":"done"}"#.to_owned(),
        };
        held.finish(&exit).unwrap_or_else(|e| panic!("{e}"));
        let got = waiter.join().unwrap_or_else(|_| panic!("join"));
        assert_eq!(got, Ok(Some(exit)));
    }

    #[test]
    fn a_runner_that_died_leaves_no_exit_and_one_that_never_ran_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let terminate = Arc::new(AtomicBool::new(false));
        drop(hold(dir.path()).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            wait(dir.path(), Duration::from_secs(1), &terminate),
            Ok(None)
        );
        let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            wait(empty.path(), Duration::from_millis(300), &terminate),
            Err(WaitError::NoRunner(Duration::from_millis(300)))
        );
        terminate.store(true, Ordering::Relaxed);
        assert_eq!(
            wait(empty.path(), Duration::from_secs(60), &terminate),
            Err(WaitError::Terminated)
        );
    }
}
