//! Codex: `codex exec --json --skip-git-repo-check --dangerously-bypass-approvals-and-sandbox
//! PROMPT`. JSON Lines: `item.completed` items (`agent_message` text, `command_execution`),
//! `turn.completed` with `usage`, `turn.failed` and `error` with a message.

use kubetask_api::Usage;
use serde_json::Value;

use super::{Adapter, Failure, Outcome, add, count, exited, json_object};
use crate::config::Config;

#[derive(Default)]
pub struct Codex {
    answer: Option<String>,
    usage: Option<Usage>,
    error: Option<String>,
}

impl Adapter for Codex {
    fn args(&self, prompt: &str, config: &Config) -> Vec<String> {
        let mut args: Vec<String> = [
            "exec",
            "--json",
            "--skip-git-repo-check",
            // The pod is the sandbox, and nobody is there to approve.
            "--dangerously-bypass-approvals-and-sandbox",
        ]
        .map(str::to_owned)
        .into();
        if let Some(model) = &config.model {
            args.extend(["--model".to_owned(), model.clone()]);
        }
        if let Some(gateway) = &config.gateway {
            // Codex reads base URLs from its configuration, not OPENAI_BASE_URL: the gateway
            // as a provider of the Responses API over HTTPS (its built-in provider would try
            // WebSockets five times first). The URL as a TOML string.
            let url = serde_json::Value::String(format!("{gateway}/v1"));
            args.extend([
                "-c".to_owned(),
                format!(
                    "model_providers.kubetask={{name=\"KubeTask model gateway\", base_url={url}, env_key=\"OPENAI_API_KEY\", wire_api=\"responses\", supports_websockets=false}}"
                ),
                "-c".to_owned(),
                "model_provider=kubetask".to_owned(),
            ]);
        }
        args.extend(config.args.iter().cloned());
        args.push(prompt.to_owned());
        args
    }

    fn env(&self, _config: &Config) -> Result<Vec<(String, String)>, String> {
        // `codex exec` authenticates with CODEX_API_KEY; OPENAI_API_KEY alone sends no key.
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Ok(match (set("CODEX_API_KEY"), set("OPENAI_API_KEY")) {
            (None, Some(key)) => vec![("CODEX_API_KEY".to_owned(), key)],
            _ => Vec::new(),
        })
    }

    fn line(&mut self, line: &str) -> Option<String> {
        let Some(event) = json_object(line) else {
            return Some(line.to_owned());
        };
        match event.get("type").and_then(Value::as_str) {
            Some("item.started") => {
                let item = event.get("item")?;
                (item.get("type").and_then(Value::as_str) == Some("command_execution")).then(|| {
                    format!(
                        "$ {}",
                        item.get("command").and_then(Value::as_str).unwrap_or("")
                    )
                })
            }
            Some("item.completed") => {
                let item = event.get("item")?;
                match item.get("type").and_then(Value::as_str) {
                    Some("agent_message") => {
                        let text = item.get("text").and_then(Value::as_str)?.to_owned();
                        self.answer = Some(text.clone());
                        Some(text)
                    }
                    Some("file_change") => Some("(files changed)".to_owned()),
                    Some("error") => item
                        .get("message")
                        .and_then(Value::as_str)
                        .map(|message| format!("error: {message}")),
                    _ => None,
                }
            }
            Some("turn.completed") => {
                // A stream error Codex recovered from (its "Reconnecting... n/5" notices, a
                // fall-back from WebSockets to HTTPS) is not the turn's failure.
                self.error = None;
                if let Some(tokens) = event.get("usage") {
                    let usage = self.usage.get_or_insert_with(Usage::default);
                    add(&mut usage.input_tokens, count(tokens, "input_tokens"));
                    add(&mut usage.output_tokens, count(tokens, "output_tokens"));
                }
                None
            }
            Some("turn.failed") | Some("error") => {
                let message = event
                    .pointer("/error/message")
                    .or_else(|| event.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("Codex reported an error")
                    .to_owned();
                self.error = Some(message.clone());
                Some(format!("error: {message}"))
            }
            _ => None,
        }
    }

    fn finish(&mut self, code: Option<i32>) -> Outcome {
        let failure = match self.error.take() {
            Some(message) => Some(Failure::from_message(message)),
            None => exited(code),
        };
        Outcome {
            answer: self.answer.take(),
            usage: self.usage.take(),
            failure,
            report: None,
        }
    }
}
