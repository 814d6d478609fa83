//! One adapter per CLI: how to run it non-interactively, how to read its output (progress for
//! the log, the final answer, usage, errors), and which failures no retry can fix.

mod claude;
mod codex;
mod command;
mod gemini;
mod opencode;

use kubetask_api::Usage;
use serde_json::Value;

use crate::config::{Cli, Config};

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The agent's final answer (or the last one seen, when interrupted).
    pub answer: Option<String>,
    pub usage: Option<Usage>,
    pub failure: Option<Failure>,
    /// A report the command printed itself (`command` mode), used as it is.
    pub report: Option<String>,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// No retry can fix it (authentication, configuration): exit code 3.
    pub permanent: bool,
    pub message: String,
}

impl Failure {
    /// A failure whose message decides whether it is permanent ([`is_permanent`]).
    pub fn from_message(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            permanent: is_permanent(&message),
            message,
        }
    }
}

/// Reads one CLI's output.
pub trait Adapter: Send {
    /// The arguments to run the CLI with (its program is `Config::program`).
    fn args(&self, prompt: &str, config: &Config) -> Vec<String>;
    /// Environment variables the CLI runs with besides the pod's, e.g. what points it at the
    /// model gateway where its own base-URL variable is not enough; an error is a setting the
    /// CLI cannot run with (permanent).
    fn env(&self, _config: &Config) -> Result<Vec<(String, String)>, String> {
        Ok(Vec::new())
    }
    /// Takes one line of the CLI's stderr (already in the log).
    fn error_line(&mut self, _line: &str) {}
    /// Takes one line of the CLI's stdout; returns what the log shows for it, if anything.
    fn line(&mut self, line: &str) -> Option<String>;
    /// The outcome, once the CLI exited with `code` (`None`: killed by a signal).
    fn finish(&mut self, code: Option<i32>) -> Outcome;
}

/// The adapter of `cli`.
pub fn for_cli(cli: Cli) -> Box<dyn Adapter> {
    match cli {
        Cli::ClaudeCode => Box::<claude::Claude>::default(),
        Cli::Gemini => Box::<gemini::Gemini>::default(),
        Cli::Codex => Box::<codex::Codex>::default(),
        Cli::OpenCode => Box::<opencode::OpenCode>::default(),
        Cli::Command => Box::<command::Command>::default(),
    }
}

/// Whether an error message says the CLI cannot work as configured: a missing or rejected
/// credential, no login, a Task over its budget (the model gateway's refusal). Retrying such
/// a run cannot help.
pub fn is_permanent(message: &str) -> bool {
    let lower = message.to_lowercase();
    [
        "invalid api key",
        "invalid x-api-key",
        "api key not valid",
        "api_key_invalid",
        "incorrect api key",
        "missing api key",
        "no api key",
        "api key is missing",
        "unauthorized",
        "401",
        "authentication",
        "not logged in",
        "please run /login",
        "login required",
        "credit balance is too low",
        "is over its budget",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Sets `value` at `path` in `root`, making the objects on the way; `None` where something on
/// the way is not an object.
pub(crate) fn set_path(root: &mut Value, path: &[&str], value: Value) -> Option<()> {
    let (last, parents) = path.split_last()?;
    let mut node = root;
    for key in parents {
        node = node
            .as_object_mut()?
            .entry(*key)
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    node.as_object_mut()?.insert((*last).to_owned(), value);
    Some(())
}

/// The line as a JSON object, if it is one.
fn json_object(line: &str) -> Option<Value> {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(trimmed)
        .ok()
        .filter(Value::is_object)
}

/// A non-negative integer field.
fn count(value: &Value, field: &str) -> i64 {
    value.get(field).and_then(Value::as_i64).unwrap_or(0).max(0)
}

/// A failure for a CLI that exited non-zero without saying why in its output.
fn exited(code: Option<i32>) -> Option<Failure> {
    match code {
        Some(0) => None,
        Some(code) => Some(Failure {
            permanent: false,
            message: format!("the CLI exited with code {code}"),
        }),
        None => Some(Failure {
            permanent: false,
            message: "the CLI was killed by a signal".to_owned(),
        }),
    }
}

/// Adds `tokens` to an optional running total.
fn add(total: &mut Option<i64>, tokens: i64) {
    *total = Some(total.unwrap_or(0).saturating_add(tokens));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_and_configuration_errors_are_permanent() {
        for message in [
            "Invalid API key · Please run /login",
            "API key not valid. Please pass a valid API key.",
            "unexpected status 401 Unauthorized: Incorrect API key provided",
            "ProviderAuthError: missing api key",
        ] {
            assert!(is_permanent(message), "{message}");
        }
        for message in [
            "rate limited (429), retry later",
            "tests failed",
            "network unreachable",
        ] {
            assert!(!is_permanent(message), "{message}");
        }
    }
}
