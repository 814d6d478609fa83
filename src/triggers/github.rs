//! GitHub's webhook deliveries: the signature (`X-Hub-Signature-256`, HMAC-SHA256 of the body
//! with the webhook's secret, checked in constant time before the body is parsed) and the
//! fields of an event a trigger reads (pure functions), and the HTTP client of the providers'
//! REST APIs.

use serde_json::Value;

use super::event::{Comment, Event, Provider};

/// Why a delivery is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "no X-Hub-Signature-256 header: every delivery must be signed with the webhook's secret"
    )]
    Missing,
    #[error("X-Hub-Signature-256 is not `sha256=<64 hex digits>`")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body signed with the webhook's secret")]
    Mismatch,
}

/// Checks `header` (`sha256=<hex>`) against `body` signed with `secret`, in constant time.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let tag = decode_hex(hex).ok_or(SignatureError::Malformed)?;
    if tag.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` of `body` signed with `secret` (what GitHub sends; for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Bytes of hex text (either case); `None` if it is not hex.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether pull request `pull`'s head is in another repository than `repository` (`owner/name`):
/// a fork, or a fork since deleted (`head.repo` is `null`); `None` when `pull` has no head (an
/// issue, or the issue object of a comment on a pull request).
pub fn head_fork(pull: &Value, repository: &str) -> Option<bool> {
    let head = pull.get("head").filter(|h| h.is_object())?;
    Some(
        head["repo"]["full_name"]
            .as_str()
            .is_none_or(|full_name| !full_name.eq_ignore_ascii_case(repository)),
    )
}

/// Parses the event `kind` (`X-GitHub-Event`) from its JSON body.
pub fn parse(kind: &str, body: &[u8]) -> Result<Event, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    if kind == "push" {
        return Ok(push(&payload));
    }
    let subject = match kind {
        "issues" | "issue_comment" => &payload["issue"],
        "pull_request" | "pull_request_review_comment" => &payload["pull_request"],
        other => return Err(format!("event {other:?} is not one a trigger takes")),
    };
    if !subject.is_object() {
        return Err(format!(
            "a {kind} event without its {} object",
            if kind.starts_with("issue") {
                "issue"
            } else {
                "pull_request"
            }
        ));
    }
    let action = text(&payload["action"]);
    let comment = payload["comment"].is_object().then(|| Comment {
        id: payload["comment"]["id"].as_i64().unwrap_or_default(),
        body: text(&payload["comment"]["body"]),
        author: text(&payload["comment"]["user"]["login"]),
        author_association: text(&payload["comment"]["author_association"]),
        url: text(&payload["comment"]["html_url"]),
    });
    let head_sha = subject["head"]["sha"].as_str().map(str::to_owned);
    let about = if let Some(id) = payload["comment"]["id"].as_i64() {
        format!("comment-{id}")
    } else {
        let mut about = format!(
            "{}-{}",
            if kind == "issues" { "issue" } else { "pr" },
            subject["id"].as_i64().unwrap_or_default()
        );
        if let Some(label) = payload["label"]["name"].as_str()
            && action == "labeled"
        {
            about.push_str(&format!("-label-{label}"));
        }
        if action == "synchronize"
            && let Some(sha) = &head_sha
        {
            about.push_str(&format!("-{sha}"));
        }
        about
    };
    Ok(Event {
        provider: Provider::GitHub,
        kind: kind.to_owned(),
        pull_request: kind.starts_with("pull_request") || subject["pull_request"].is_object(),
        actor_id: None,
        work: None,
        repository: text(&payload["repository"]["full_name"]),
        number: subject["number"].as_i64().unwrap_or_default(),
        title: text(&subject["title"]),
        body: text(&subject["body"]),
        url: text(&subject["html_url"]),
        author: text(&subject["user"]["login"]),
        author_association: text(&subject["author_association"]),
        labels: subject["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["name"].as_str().map(str::to_owned))
            .collect(),
        comment,
        branch: subject["head"]["ref"].as_str().map(str::to_owned),
        base_branch: subject["base"]["ref"].as_str().map(str::to_owned),
        head_fork: head_fork(
            subject,
            payload["repository"]["full_name"]
                .as_str()
                .unwrap_or_default(),
        ),
        head_sha,
        identity: format!("{kind}.{action}.{about}"),
        action,
    })
}

/// A `push`: to a branch (`pushed`), or of a tag (`tag`) or deleting a branch (`deleted`),
/// which no trigger runs on. The pusher has write access to the repository.
fn push(payload: &Value) -> Event {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let reference = text(&payload["ref"]);
    let (branch, action) = match reference.strip_prefix("refs/heads/") {
        _ if payload["deleted"].as_bool() == Some(true) => (None, "deleted"),
        Some(branch) => (Some(branch.to_owned()), "pushed"),
        None => (None, "tag"),
    };
    let after = text(&payload["after"]);
    Event {
        provider: Provider::GitHub,
        kind: "push".to_owned(),
        action: action.to_owned(),
        repository: text(&payload["repository"]["full_name"]),
        title: text(&payload["head_commit"]["message"])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        body: super::event::commit_lines(&payload["commits"]),
        url: text(&payload["compare"]),
        author: text(&payload["sender"]["login"]),
        identity: format!("push.{action}.{reference}-{after}"),
        branch,
        head_sha: Some(after).filter(|a| !a.is_empty()),
        ..Event::default()
    }
}

/// The HTTP client of GitHub's and GitLab's REST APIs (polling, reports): answers of every status returned
/// as they are, a deadline per request, proxies from the environment.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .user_agent("kubetask-events")
        .build()
        .new_agent()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_before_anything_is_read() {
        let body = br#"{"action":"opened"}"#;
        let good = sign(b"s3cret", body);
        assert_eq!(verify_signature(b"s3cret", body, Some(&good)), Ok(()));
        assert_eq!(
            verify_signature(b"other", body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"s3cret", br#"{"action":"closed"}"#, Some(&good)),
            Err(SignatureError::Mismatch),
            "a body changed in transit"
        );
        assert_eq!(
            verify_signature(b"s3cret", body, None),
            Err(SignatureError::Missing)
        );
        for malformed in [
            "sha1=abcd",
            "sha256=zz",
            "sha256=abcd",
            &good.replace("sha256=", ""),
        ] {
            assert_eq!(
                verify_signature(b"s3cret", body, Some(malformed)),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn events_are_read_with_their_identity() {
        let issue = br#"{"action":"labeled","label":{"name":"kubetask"},
            "issue":{"id":7,"number":42,"title":"Bump deps","body":"please","html_url":"https://github.com/o/r/issues/42",
                     "user":{"login":"ann"},"author_association":"MEMBER","labels":[{"name":"kubetask"},{"name":"deps"}]},
            "repository":{"full_name":"o/r"}}"#;
        let event = parse("issues", issue).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.name(), "issues.labeled");
        assert_eq!((event.number, event.repository.as_str()), (42, "o/r"));
        assert_eq!(event.labels, ["kubetask", "deps"]);
        assert_eq!(event.actor(), ("ann", "MEMBER"));
        assert_eq!(event.identity, "issues.labeled.issue-7-label-kubetask");
        let comment = br#"{"action":"created","comment":{"id":99,"body":"/kubetask fix","user":{"login":"bob"},"author_association":"CONTRIBUTOR"},
            "issue":{"id":7,"number":42,"title":"t","user":{"login":"ann"},"author_association":"MEMBER"},
            "repository":{"full_name":"o/r"}}"#;
        let event = parse("issue_comment", comment).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.actor(), ("bob", "CONTRIBUTOR"), "the commenter acts");
        assert_eq!(event.identity, "issue_comment.created.comment-99");
        assert!(parse("release", b"{}").is_err());
        assert!(parse("issues", b"{not json").is_err());
        assert!(parse("issues", br#"{"action":"opened"}"#).is_err());
    }
}
