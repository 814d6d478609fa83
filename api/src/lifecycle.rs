//! The lifecycle part of the API: timeouts, cancel, retries, TTL, the queue limit, and what
//! a finished attempt reports (result, usage). One definition for the CRD schema, the
//! controller and offline render.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};

/// Most retries a Task or Agent may ask for.
pub const MAX_RETRIES: i32 = 10;
/// Exit code with which an agent says "do not retry me" (the failure is permanent).
pub const NO_RETRY_EXIT_CODE: i32 = 3;
/// Longest `status.result.summary` kept (longer ones are cut at a character boundary).
pub const MAX_SUMMARY_BYTES: usize = 1024;
/// Most `status.result.outputs` entries kept.
pub const MAX_OUTPUTS: usize = 32;
/// The pattern of a duration string: one or more `<integer><unit>` with units `h`, `m`, `s`.
pub const DURATION_PATTERN: &str = "^([0-9]{1,9}[hms])+$";

/// `spec.cancel`: stop the Task. Added once; never changed or removed.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct Cancel {
    /// Why, for people (shown in the Task's condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// One run of the agent pod (a Job's pod).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The pod that ran it (`kubetask logs` reads its agent container).
    pub pod_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// `Succeeded`, `Failed`, `Disrupted` (not counted against retries), `DeadlineExceeded`,
    /// or `Running` while it runs.
    pub reason: String,
    /// The agent container's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// What the agent reported (a summary and named outputs), and the pull request its
/// workspace's publish step opened.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    #[serde(default)]
    pub summary: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// Set by the publish step only (an agent's report cannot name one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<PullRequestRef>,
}

/// A pull request (or GitLab merge request), as `status.result.pullRequest` records it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
pub struct PullRequestRef {
    /// Its web page.
    #[schemars(length(max = 2048))]
    pub url: String,
    /// Its number (GitLab's `iid`).
    pub number: i64,
}

/// What the agent reported it used.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    /// A decimal string (e.g. `"0.42"`), in the currency the agent documents (usually USD;
    /// always USD when metered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// `true`: counted by the model gateway from the providers' responses as they passed
    /// (authoritative, live while the Task runs); absent: what the agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metered: Option<bool>,
    /// Responses the gateway could not price (no usage in them, or a model its price table
    /// does not know): their cost is missing from `cost`, never taken as free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpriced_responses: Option<i64>,
}

/// A duration string the API accepts is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected e.g. 90s, 30m, 2h or 1h30m")]
pub struct InvalidDuration(pub String);

/// Parses `90s`, `30m`, `2h`, `1h30m` (the `DURATION_PATTERN` forms); zero is invalid.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(text.to_owned());
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let value = number.unwrap_or(0);
            number = Some(
                value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(digit)))
                    .ok_or_else(invalid)?,
            );
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let value = number.take().ok_or_else(invalid)?;
        total = value
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(invalid)?;
    }
    if number.is_some() || total == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `90s` stays `1m30s`).
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// The agent's termination-message report (docs/agent-image.md).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Report {
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    outputs: BTreeMap<String, String>,
    #[serde(default)]
    usage: Option<Usage>,
}

/// A termination message that is not a valid report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the agent's termination message is not a valid report: {0}")]
pub struct InvalidReport(pub String);

/// Reads an agent's termination message: `None` when it wrote none (or plain text, as with
/// `FallbackToLogsOnError`, which does not start with `{`), else the result and usage, bounded.
pub fn parse_report(message: &str) -> Result<Option<(TaskResult, Option<Usage>)>, InvalidReport> {
    let trimmed = message.trim();
    if !trimmed.starts_with('{') {
        return Ok(None);
    }
    let report: Report = serde_json::from_str(trimmed).map_err(|e| InvalidReport(e.to_string()))?;
    if report.outputs.len() > MAX_OUTPUTS {
        return Err(InvalidReport(format!(
            "outputs: {} entries, at most {MAX_OUTPUTS}",
            report.outputs.len()
        )));
    }
    if let Some(cost) = report.usage.as_ref().and_then(|u| u.cost.as_deref()) {
        let decimal = !cost.is_empty()
            && cost.split('.').count() <= 2
            && cost.chars().all(|c| c.is_ascii_digit() || c == '.')
            && !cost.starts_with('.')
            && !cost.ends_with('.');
        if !decimal {
            return Err(InvalidReport(format!(
                "usage.cost: {cost:?} is not a decimal string like \"0.42\""
            )));
        }
    }
    if let Some(usage) = &report.usage {
        for (field, value) in [
            ("usage.inputTokens", usage.input_tokens),
            ("usage.outputTokens", usage.output_tokens),
        ] {
            if value.is_some_and(|v| v < 0) {
                return Err(InvalidReport(format!("{field}: must not be negative")));
            }
        }
    }
    // What an agent reports is never the gateway's meter, whatever it claims.
    let usage = report.usage.map(|usage| Usage {
        metered: None,
        unpriced_responses: None,
        ..usage
    });
    let summary = cut(report.summary.unwrap_or_default(), MAX_SUMMARY_BYTES);
    Ok(Some((
        TaskResult {
            summary,
            outputs: report.outputs,
            pull_request: None,
        },
        usage,
    )))
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, seconds) in [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400)] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        for bad in [
            "",
            "0s",
            "10",
            "s",
            "1d",
            "1.5h",
            "-1s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_pattern_and_the_parser_agree() {
        // The CRD uses DURATION_PATTERN; every form it admits (except zero) parses.
        assert_eq!(DURATION_PATTERN, "^([0-9]{1,9}[hms])+$");
        assert!(parse_duration("999999999h").is_ok());
    }

    #[test]
    fn an_agent_cannot_pass_its_report_off_as_the_gateways_meter() {
        let (_, usage) = parse_report(
            r#"{"usage": {"inputTokens": 1, "metered": true, "unpricedResponses": 0}}"#,
        )
        .unwrap()
        .unwrap();
        let usage = usage.unwrap();
        assert_eq!((usage.metered, usage.unpriced_responses), (None, None));
        assert_eq!(usage.input_tokens, Some(1));
    }

    #[test]
    fn reports_are_read_and_bounded() {
        let (result, usage) = parse_report(
            r#"{"summary": "fixed it", "outputs": {"pr": "https://x/1"}, "usage": {"inputTokens": 10, "outputTokens": 2, "cost": "0.42"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(result.summary, "fixed it");
        assert_eq!(result.outputs["pr"], "https://x/1");
        assert_eq!(usage.unwrap().cost.as_deref(), Some("0.42"));
        assert_eq!(parse_report("plain log text"), Ok(None));
        assert_eq!(parse_report(""), Ok(None));
        let long = format!(r#"{{"summary": "{}"}}"#, "é".repeat(1000));
        let (result, _) = parse_report(&long).unwrap().unwrap();
        assert!(result.summary.len() <= MAX_SUMMARY_BYTES);
        assert!(result.summary.chars().all(|c| c == 'é'));
        for bad in [
            "{not json",
            r#"{"summary": 3}"#,
            r#"{"usage": {"cost": "a lot"}}"#,
            r#"{"usage": {"inputTokens": -1}}"#,
            r#"{"summery": "typo"}"#,
        ] {
            assert!(parse_report(bad).is_err(), "{bad}");
        }
    }
}
