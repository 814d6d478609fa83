//! The report written to the termination message (docs/agent-image.md): a summary, outputs
//! (pull-request URLs the agent printed) and usage, within the kubelet's 4 KiB and accepted by
//! the controller's own parser.

use std::collections::BTreeMap;

use kubetask_api::Usage;
use kubetask_api::lifecycle::{MAX_OUTPUTS, MAX_SUMMARY_BYTES, parse_report};
use serde_json::{Value, json};

/// The most the kubelet keeps of a termination message.
pub const MAX_REPORT_BYTES: usize = 4096;
/// Most pull-request URLs reported.
const MAX_PULL_REQUESTS: usize = 8;
/// Longest output value kept.
const MAX_OUTPUT_BYTES: usize = 512;

/// The report's JSON text: `summary` cut at a character boundary (with `…`) to fit, outputs
/// and usage; never more than [`MAX_REPORT_BYTES`].
pub fn render(summary: &str, outputs: &BTreeMap<String, String>, usage: Option<&Usage>) -> String {
    let outputs: BTreeMap<&String, &String> = outputs
        .iter()
        .filter(|(_, value)| value.len() <= MAX_OUTPUT_BYTES)
        .take(MAX_OUTPUTS)
        .collect();
    let mut budget = MAX_SUMMARY_BYTES;
    loop {
        let mut report = serde_json::Map::new();
        let cut = cut(summary.trim(), budget);
        if !cut.is_empty() {
            report.insert("summary".into(), Value::String(cut));
        }
        if !outputs.is_empty() {
            report.insert("outputs".into(), json!(outputs));
        }
        if let Some(usage) = usage.filter(|usage| **usage != Usage::default()) {
            report.insert("usage".into(), json!(usage));
        }
        let text = Value::Object(report).to_string();
        if text.len() <= MAX_REPORT_BYTES && parse_report(&text).is_ok() {
            return text;
        }
        if budget == 0 {
            // Outputs and usage alone never come near 4 KiB; this is a last resort.
            return "{}".to_owned();
        }
        budget /= 2;
    }
}

/// `text` cut to at most `max` bytes at a character boundary, ending with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let ellipsis = "…";
    let mut end = max.saturating_sub(ellipsis.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// The pull- and merge-request URLs in `text` (GitHub, GitLab, Bitbucket, Gitea), in order,
/// as outputs `pr`, `pr-2`, ….
pub fn pull_requests(text: &str) -> BTreeMap<String, String> {
    let mut found: Vec<&str> = Vec::new();
    for start in text.match_indices("https://").map(|(at, _)| at) {
        let rest = &text[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || "\"'<>()[]{}`,".contains(c))
            .unwrap_or(rest.len());
        let url = rest[..end].trim_end_matches(['.', ':', ';', '!', '?']);
        let is_request = ["/pull/", "/pulls/", "/-/merge_requests/", "/pull-requests/"]
            .iter()
            .any(|marker| {
                url.split_once(marker).is_some_and(|(_, number)| {
                    let digits = number.split(['/', '#', '?']).next().unwrap_or_default();
                    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
                })
            });
        if is_request && !found.contains(&url) {
            found.push(url);
        }
    }
    found
        .into_iter()
        .take(MAX_PULL_REQUESTS)
        .enumerate()
        .map(|(index, url)| {
            let key = if index == 0 {
                "pr".to_owned()
            } else {
                format!("pr-{}", index + 1)
            };
            (key, url.to_owned())
        })
        .collect()
}

/// A cost in dollars as the decimal string the report takes (`0.4213`), or `None` when it is
/// not a finite, non-negative number.
pub fn cost(dollars: f64) -> Option<String> {
    if !dollars.is_finite() || dollars < 0.0 {
        return None;
    }
    let text = format!("{dollars:.6}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    Some(if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_answer_is_cut_to_fit_and_parses() {
        let long = "ü".repeat(5000);
        let usage = Usage {
            input_tokens: Some(1200),
            output_tokens: Some(300),
            cost: Some("0.42".into()),
            ..Usage::default()
        };
        let outputs = pull_requests("opened https://github.com/org/repo/pull/7.");
        let text = render(&long, &outputs, Some(&usage));
        assert!(text.len() <= MAX_REPORT_BYTES);
        let (result, parsed_usage) = parse_report(&text).expect("valid").expect("a report");
        assert!(result.summary.ends_with('…'));
        assert!(result.summary.len() <= MAX_SUMMARY_BYTES);
        assert_eq!(result.outputs["pr"], "https://github.com/org/repo/pull/7");
        assert_eq!(parsed_usage, Some(usage));
    }

    #[test]
    fn control_characters_that_escape_long_still_fit() {
        let text = render(&"\u{1}".repeat(4000), &BTreeMap::new(), None);
        assert!(text.len() <= MAX_REPORT_BYTES, "{}", text.len());
        assert!(parse_report(&text).is_ok());
    }

    #[test]
    fn pull_requests_are_found_in_the_answer() {
        let found = pull_requests(
            "See https://github.com/o/r/pull/12, and (https://gitlab.com/g/p/-/merge_requests/3). \
             Not https://github.com/o/r/pulls or https://github.com/o/r/issues/4; again https://github.com/o/r/pull/12",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found["pr"], "https://github.com/o/r/pull/12");
        assert_eq!(found["pr-2"], "https://gitlab.com/g/p/-/merge_requests/3");
    }

    #[test]
    fn costs_are_decimal_strings() {
        assert_eq!(cost(0.4213).as_deref(), Some("0.4213"));
        assert_eq!(cost(1.0).as_deref(), Some("1"));
        assert_eq!(cost(0.0).as_deref(), Some("0"));
        assert_eq!(cost(0.00000012).as_deref(), Some("0"));
        assert_eq!(cost(f64::NAN), None);
        assert_eq!(cost(-1.0), None);
    }

    #[test]
    fn an_empty_report_is_an_empty_object() {
        assert_eq!(
            render("  ", &BTreeMap::new(), Some(&Usage::default())),
            "{}"
        );
    }
}
