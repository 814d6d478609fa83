//! Claude Code: `claude -p PROMPT --output-format stream-json --verbose
//! --dangerously-skip-permissions`. One JSON object per line; the last, `type: result`, has the
//! answer (`result`), `is_error`, `subtype`, `total_cost_usd` and `usage`.

use kubetask_api::Usage;
use serde_json::Value;

use super::{Adapter, Failure, Outcome, add, count, exited, json_object};
use crate::config::Config;
use crate::report;

#[derive(Default)]
pub struct Claude {
    last_text: Option<String>,
    result: Option<Value>,
}

impl Adapter for Claude {
    fn args(&self, prompt: &str, config: &Config) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            // The pod is the sandbox: nobody is there to approve a tool call.
            "--dangerously-skip-permissions",
        ]
        .map(str::to_owned)
        .into();
        if let Some(model) = &config.model {
            args.extend(["--model".to_owned(), model.clone()]);
        }
        args.extend(config.args.iter().cloned());
        args
    }

    fn env(&self, config: &Config) -> Result<Vec<(String, String)>, String> {
        // Claude Code refuses --dangerously-skip-permissions as root unless told it runs in a
        // sandbox, which the pod is. ANTHROPIC_BASE_URL alone points it at the gateway.
        let mut env = vec![("IS_SANDBOX".to_owned(), "1".to_owned())];
        if let Some(gateway) = &config.gateway {
            env.push(("ANTHROPIC_BASE_URL".to_owned(), gateway.clone()));
        }
        Ok(env)
    }

    fn line(&mut self, line: &str) -> Option<String> {
        let Some(event) = json_object(line) else {
            return Some(line.to_owned());
        };
        match event.get("type").and_then(Value::as_str) {
            Some("assistant") => {
                let content = event.pointer("/message/content")?.as_array()?;
                let mut shown = Vec::new();
                for block in content {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            if let Some(text) = block.get("text").and_then(Value::as_str) {
                                self.last_text = Some(text.to_owned());
                                shown.push(text.to_owned());
                            }
                        }
                        Some("tool_use") => {
                            let name = block.get("name").and_then(Value::as_str).unwrap_or("tool");
                            shown.push(format!("→ {name}"));
                        }
                        _ => {}
                    }
                }
                (!shown.is_empty()).then(|| shown.join("\n"))
            }
            Some("result") => {
                let shown = event
                    .get("result")
                    .and_then(Value::as_str)
                    .map(|text| format!("result: {text}"));
                self.result = Some(event);
                shown
            }
            _ => None,
        }
    }

    fn finish(&mut self, code: Option<i32>) -> Outcome {
        let Some(result) = self.result.take() else {
            return Outcome {
                answer: self.last_text.take(),
                failure: exited(code).or_else(|| {
                    Some(Failure {
                        permanent: false,
                        message: "Claude Code ended without a result".to_owned(),
                    })
                }),
                ..Outcome::default()
            };
        };
        let text = result
            .get("result")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let subtype = result
            .get("subtype")
            .and_then(Value::as_str)
            .unwrap_or("success");
        let is_error = result
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let failure = if is_error || subtype != "success" {
            Some(Failure::from_message(match &text {
                Some(text) if !text.is_empty() => format!("{subtype}: {text}"),
                _ => subtype.to_owned(),
            }))
        } else {
            exited(code)
        };
        let mut usage = Usage {
            cost: result
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .and_then(report::cost),
            ..Usage::default()
        };
        if let Some(tokens) = result.get("usage") {
            add(
                &mut usage.input_tokens,
                count(tokens, "input_tokens")
                    + count(tokens, "cache_creation_input_tokens")
                    + count(tokens, "cache_read_input_tokens"),
            );
            add(&mut usage.output_tokens, count(tokens, "output_tokens"));
        }
        Outcome {
            answer: text.or_else(|| self.last_text.take()),
            usage: Some(usage),
            failure,
            report: None,
        }
    }
}
