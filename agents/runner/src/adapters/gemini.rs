//! Gemini CLI: `gemini -p PROMPT --output-format json --yolo`. One JSON object when it ends
//! (possibly over several lines): `response`, `stats.models.<model>.tokens` and, on failure,
//! `error`. Exit codes 41 (authentication), 42 (input) and 52 (configuration) are permanent.

use kubetask_api::Usage;
use serde_json::Value;

use super::{Adapter, Failure, Outcome, add, count, exited, set_path};
use crate::config::Config;

#[derive(Default)]
pub struct Gemini {
    output: String,
    /// Its stderr, where it prints its JSON when it fails talking to the API.
    errors: String,
}

/// The first JSON object in `text` that starts a line, with what follows it ignored.
fn json_in(text: &str) -> Option<Value> {
    let starts = std::iter::once(0).chain(text.match_indices("\n{").map(|(at, _)| at + 1));
    starts
        .filter(|&at| text[at..].starts_with('{'))
        .find_map(|at| {
            serde_json::Deserializer::from_str(&text[at..])
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok)
                .filter(Value::is_object)
        })
}

/// Exit codes Gemini CLI gives failures no retry fixes.
const PERMANENT_CODES: [i32; 3] = [41, 42, 52];

impl Adapter for Gemini {
    fn args(&self, prompt: &str, config: &Config) -> Vec<String> {
        let mut args: Vec<String> = ["-p", prompt, "--output-format", "json", "--yolo"]
            .map(str::to_owned)
            .into();
        if let Some(model) = &config.model {
            args.extend(["--model".to_owned(), model.clone()]);
        }
        args.extend(config.args.iter().cloned());
        args
    }

    fn env(&self, config: &Config) -> Result<Vec<(String, String)>, String> {
        // Headless Gemini CLI exits 55 in a folder it does not trust; the pod is the sandbox.
        let mut env = vec![("GEMINI_CLI_TRUST_WORKSPACE".to_owned(), "true".to_owned())];
        if let Some(gateway) = &config.gateway {
            // GOOGLE_GEMINI_BASE_URL alone makes it pick its "gateway" auth type, which
            // headless mode refuses: the API key is chosen in its user settings instead, kept
            // but for that one field (system settings are refused under a world-writable
            // directory such as /tmp).
            let home = std::env::var_os("HOME")
                .ok_or("HOME is not set: Gemini CLI keeps its settings there")?;
            let settings = std::path::Path::new(&home).join(".gemini/settings.json");
            let mut value = match std::fs::read_to_string(&settings) {
                Ok(text) => serde_json::from_str(&text)
                    .map_err(|error| format!("{} is not JSON: {error}", settings.display()))?,
                Err(_) => serde_json::json!({}),
            };
            set_path(
                &mut value,
                &["security", "auth", "selectedType"],
                Value::from("gemini-api-key"),
            )
            .ok_or_else(|| format!("{}: security.auth is not an object", settings.display()))?;
            let written = settings
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&settings, value.to_string()));
            written.map_err(|error| format!("cannot write {}: {error}", settings.display()))?;
            env.push(("GOOGLE_GEMINI_BASE_URL".to_owned(), gateway.clone()));
        }
        Ok(env)
    }

    fn error_line(&mut self, line: &str) {
        if self.errors.len() < 256 * 1024 {
            self.errors.push_str(line);
            self.errors.push('\n');
        }
    }

    fn line(&mut self, line: &str) -> Option<String> {
        self.output.push_str(line);
        self.output.push('\n');
        // The JSON arrives at the end, whole; the log shows the answer then.
        None
    }

    fn finish(&mut self, code: Option<i32>) -> Outcome {
        let text = self.output.trim();
        let parsed = text
            .find('{')
            .and_then(|start| serde_json::from_str::<Value>(&text[start..]).ok())
            .or_else(|| json_in(&self.errors).filter(|v| v.get("error").is_some()));
        let Some(output) = parsed else {
            let failure = match code {
                Some(code) if PERMANENT_CODES.contains(&code) => Some(Failure {
                    permanent: true,
                    message: format!("Gemini CLI exited with code {code}: {}", last_line(text)),
                }),
                _ => exited(code).map(|failure| Failure {
                    message: format!("{}: {}", failure.message, last_line(text)),
                    ..failure
                }),
            };
            return Outcome {
                answer: (!text.is_empty()).then(|| text.to_owned()),
                failure: failure.or_else(|| {
                    Some(Failure {
                        permanent: false,
                        message: "Gemini CLI printed no JSON result".to_owned(),
                    })
                }),
                ..Outcome::default()
            };
        };
        let mut usage = Usage::default();
        if let Some(models) = output.pointer("/stats/models").and_then(Value::as_object) {
            for model in models.values() {
                if let Some(tokens) = model.get("tokens") {
                    add(&mut usage.input_tokens, count(tokens, "prompt"));
                    add(
                        &mut usage.output_tokens,
                        count(tokens, "candidates") + count(tokens, "thoughts"),
                    );
                }
            }
        }
        let error = output.get("error").filter(|error| !error.is_null());
        let failure = match (error, code) {
            (Some(error), code) => {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Gemini CLI reported an error")
                    .to_owned();
                let error_code = error.get("code").and_then(Value::as_i64);
                let mut failure = Failure::from_message(message);
                failure.permanent |= code.is_some_and(|c| PERMANENT_CODES.contains(&c))
                    || error_code
                        .is_some_and(|c| PERMANENT_CODES.iter().any(|p| i64::from(*p) == c));
                Some(failure)
            }
            (None, Some(code)) if PERMANENT_CODES.contains(&code) => Some(Failure {
                permanent: true,
                message: format!("Gemini CLI exited with code {code}"),
            }),
            (None, code) => exited(code),
        };
        Outcome {
            answer: output
                .get("response")
                .and_then(Value::as_str)
                .map(str::to_owned),
            usage: Some(usage),
            failure,
            report: None,
        }
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("no output")
}
