//! Any command (`KUBETASK_AGENT_CLI=command`, the command after `--`): its output is shown
//! as it is; the last line of its stdout that is a JSON object is its report, used as it is
//! when valid; otherwise its last lines are the summary. Its exit code is kept (3: permanent).

use kubetask_api::lifecycle::parse_report;

use super::{Adapter, Failure, Outcome, json_object};
use crate::config::Config;

/// Lines kept for a summary when the command printed no report.
const TAIL_LINES: usize = 10;

#[derive(Default)]
pub struct Command {
    last_json: Option<String>,
    tail: Vec<String>,
}

impl Adapter for Command {
    fn args(&self, _prompt: &str, config: &Config) -> Vec<String> {
        config.args.clone()
    }

    fn line(&mut self, line: &str) -> Option<String> {
        if json_object(line).is_some() {
            self.last_json = Some(line.trim().to_owned());
        } else if !line.trim().is_empty() {
            self.tail.push(line.to_owned());
            if self.tail.len() > TAIL_LINES {
                self.tail.remove(0);
            }
        }
        Some(line.to_owned())
    }

    fn finish(&mut self, code: Option<i32>) -> Outcome {
        let failure = match code {
            Some(0) => None,
            Some(code) => Some(Failure {
                permanent: code == kubetask_api::lifecycle::NO_RETRY_EXIT_CODE,
                message: format!("the command exited with code {code}"),
            }),
            None => Some(Failure {
                permanent: false,
                message: "the command was killed by a signal".to_owned(),
            }),
        };
        let report = self
            .last_json
            .take()
            .filter(|json| matches!(parse_report(json), Ok(Some(_))));
        Outcome {
            answer: (!self.tail.is_empty()).then(|| self.tail.join("\n")),
            usage: None,
            failure,
            report,
        }
    }
}
