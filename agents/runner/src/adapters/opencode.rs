//! OpenCode: `opencode run --format json PROMPT`. JSON Lines: `step_start`, `text` (a part's
//! text), `tool_use`, `step_finish` (the step's `tokens` and `cost`), `error` (`name`, and
//! `data.message`). The answer is the text of the last step.

use kubetask_api::Usage;
use serde_json::Value;

use super::{Adapter, Failure, Outcome, add, count, exited, json_object, set_path};
use crate::config::Config;
use crate::report;

#[derive(Default)]
pub struct OpenCode {
    step_text: String,
    answer: Option<String>,
    usage: Option<Usage>,
    cost: f64,
    error: Option<Failure>,
}

impl Adapter for OpenCode {
    fn args(&self, prompt: &str, config: &Config) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--format", "json"].map(str::to_owned).into();
        if let Some(model) = &config.model {
            args.extend(["--model".to_owned(), model.clone()]);
        }
        args.extend(config.args.iter().cloned());
        args.push(prompt.to_owned());
        args
    }

    fn env(&self, config: &Config) -> Result<Vec<(String, String)>, String> {
        let Some(gateway) = &config.gateway else {
            return Ok(Vec::new());
        };
        // OpenCode takes base URLs from its configuration: each provider the gateway fronts,
        // merged into any inline configuration the pod already gives it.
        let mut inline = match std::env::var("OPENCODE_CONFIG_CONTENT") {
            Ok(text) if !text.trim().is_empty() => serde_json::from_str::<Value>(&text)
                .map_err(|error| format!("OPENCODE_CONFIG_CONTENT is not JSON: {error}"))?,
            _ => serde_json::json!({}),
        };
        for (provider, path) in [
            ("anthropic", "/v1"),
            ("openai", "/v1"),
            ("google", "/v1beta"),
        ] {
            let url = Value::String(format!("{gateway}{path}"));
            set_path(
                &mut inline,
                &["provider", provider, "options", "baseURL"],
                url,
            )
            .ok_or_else(|| {
                format!("OPENCODE_CONFIG_CONTENT: provider.{provider}.options is not an object")
            })?;
        }
        Ok(vec![(
            "OPENCODE_CONFIG_CONTENT".to_owned(),
            inline.to_string(),
        )])
    }

    fn line(&mut self, line: &str) -> Option<String> {
        let Some(event) = json_object(line) else {
            return Some(line.to_owned());
        };
        let part = event.get("part").cloned().unwrap_or(Value::Null);
        match event.get("type").and_then(Value::as_str) {
            Some("step_start") => {
                self.step_text.clear();
                None
            }
            Some("text") => {
                let text = part.get("text").and_then(Value::as_str)?;
                self.step_text.push_str(text);
                self.answer = Some(self.step_text.clone());
                Some(text.to_owned())
            }
            Some("tool_use") => {
                let tool = part.get("tool").and_then(Value::as_str).unwrap_or("tool");
                Some(format!("→ {tool}"))
            }
            Some("step_finish") => {
                if let Some(tokens) = part.get("tokens") {
                    let usage = self.usage.get_or_insert_with(Usage::default);
                    let cache = tokens.get("cache").cloned().unwrap_or(Value::Null);
                    add(
                        &mut usage.input_tokens,
                        count(tokens, "input") + count(&cache, "read") + count(&cache, "write"),
                    );
                    add(
                        &mut usage.output_tokens,
                        count(tokens, "output") + count(tokens, "reasoning"),
                    );
                }
                self.cost += part.get("cost").and_then(Value::as_f64).unwrap_or(0.0);
                None
            }
            Some("error") => {
                let error = event.get("error").cloned().unwrap_or(Value::Null);
                let name = error.get("name").and_then(Value::as_str).unwrap_or("Error");
                let message = error
                    .pointer("/data/message")
                    .or_else(|| error.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("OpenCode reported an error");
                let text = format!("{name}: {message}");
                let mut failure = Failure::from_message(text.clone());
                failure.permanent |= name.contains("Auth");
                self.error = Some(failure);
                Some(format!("error: {text}"))
            }
            _ => None,
        }
    }

    fn finish(&mut self, code: Option<i32>) -> Outcome {
        let mut usage = self.usage.take();
        if let Some(usage) = usage.as_mut() {
            usage.cost = report::cost(self.cost);
        }
        Outcome {
            answer: self.answer.take(),
            usage,
            failure: self.error.take().or_else(|| exited(code)),
            report: None,
        }
    }
}
