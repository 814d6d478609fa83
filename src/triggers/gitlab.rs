//! GitLab's webhook deliveries: the secret token (`X-Gitlab-Token`, compared in constant time
//! before the body is parsed), the event types (`X-Gitlab-Event`), the fields of an event a
//! trigger reads, and what an actor's role in the project makes them (pure functions).

use serde_json::Value;

use super::event::{Comment, Event, Provider};

/// Why a delivery is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no X-Gitlab-Token header: set the webhook's secret token in GitLab")]
    Missing,
    #[error("X-Gitlab-Token is not the webhook's secret token")]
    Mismatch,
}

/// Checks the `X-Gitlab-Token` header against the secret, in constant time.
pub fn verify_token(secret: &[u8], header: Option<&str>) -> Result<(), TokenError> {
    let presented = header.ok_or(TokenError::Missing)?;
    if equal_in_constant_time(secret.trim_ascii(), presented.trim().as_bytes()) {
        Ok(())
    } else {
        Err(TokenError::Mismatch)
    }
}

/// Whether `a` and `b` are equal, in time that depends on neither: both are MACed with one
/// key and the tags compared by `ring` in constant time (their lengths are not compared).
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"kubetask token comparison");
    let tag = ring::hmac::sign(&key, a);
    ring::hmac::verify(&key, b, tag.as_ref()).is_ok()
}

/// The event type of an `X-Gitlab-Event` header: `Issue Hook` → `issue`, `Note Hook` →
/// `note`, `Merge Request Hook` → `merge_request`. Confidential issues and notes are never
/// taken (their text must not leave GitLab's access control), nor is anything else.
pub fn event_kind(header: &str) -> Option<&'static str> {
    match header.trim() {
        "Issue Hook" => Some("issue"),
        "Note Hook" => Some("note"),
        "Merge Request Hook" => Some("merge_request"),
        "Push Hook" => Some("push"),
        _ => None,
    }
}

/// Parses an event of type `kind` (`issue`, `note`, `merge_request`) from its JSON body.
pub fn parse(kind: &str, body: &[u8]) -> Result<Event, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let object_kind = payload["object_kind"].as_str().unwrap_or_default();
    if object_kind != kind {
        return Err(format!(
            "object_kind {object_kind:?} is not the {kind:?} the X-Gitlab-Event header says"
        ));
    }
    if kind == "push" {
        return Ok(push(&payload));
    }
    let attributes = &payload["object_attributes"];
    if !attributes.is_object() {
        return Err(format!("a {kind} event without object_attributes"));
    }
    let user = &payload["user"];
    let actor = text(&user["username"]);
    let (subject, pull_request, comment, action) = match kind {
        "issue" => (attributes, false, None, text(&attributes["action"])),
        "merge_request" => (attributes, true, None, text(&attributes["action"])),
        "note" => {
            let (subject, pull_request) = match attributes["noteable_type"].as_str() {
                Some("Issue") => (&payload["issue"], false),
                Some("MergeRequest") => (&payload["merge_request"], true),
                other => {
                    return Err(format!(
                        "a note on {other:?}: only notes on issues and merge requests are taken"
                    ));
                }
            };
            if !subject.is_object() {
                return Err("a note event without its issue or merge_request object".to_owned());
            }
            let comment = Comment {
                id: attributes["id"].as_i64().unwrap_or_default(),
                body: text(&attributes["note"]),
                author: actor.clone(),
                author_association: String::new(),
                url: text(&attributes["url"]),
            };
            let action = attributes["action"].as_str().unwrap_or("create").to_owned();
            (subject, pull_request, Some(comment), action)
        }
        other => return Err(format!("event {other:?} is not one a trigger takes")),
    };
    let number = subject["iid"]
        .as_i64()
        .ok_or_else(|| format!("a {kind} event without the iid of its issue or merge request"))?;
    let head_sha = subject["last_commit"]["id"].as_str().map(str::to_owned);
    let id = subject["id"].as_i64().unwrap_or_default();
    let about = match (&comment, kind) {
        (Some(_), _) => format!("note-{}", attributes["id"].as_i64().unwrap_or_default()),
        // An update is its own event: what changed, at its time.
        (None, _) if action == "update" => format!(
            "{}-{id}-{}-{}",
            if pull_request { "mr" } else { "issue" },
            text(&attributes["updated_at"]),
            head_sha.as_deref().unwrap_or_default()
        ),
        (None, _) => format!("{}-{id}", if pull_request { "mr" } else { "issue" }),
    };
    let labels = if payload["labels"].is_array() {
        &payload["labels"]
    } else {
        &subject["labels"]
    };
    // A note's URL is the issue's with `#note_<id>`.
    let url = match subject["url"].as_str() {
        Some(url) => url.to_owned(),
        None => comment
            .as_ref()
            .map(|c| c.url.split('#').next().unwrap_or_default().to_owned())
            .unwrap_or_default(),
    };
    Ok(Event {
        provider: Provider::GitLab,
        kind: kind.to_owned(),
        repository: text(&payload["project"]["path_with_namespace"]),
        number,
        pull_request,
        title: text(&subject["title"]),
        body: text(&subject["description"]),
        url,
        author: actor,
        author_association: String::new(),
        actor_id: user["id"].as_i64(),
        labels: labels
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["title"].as_str().map(str::to_owned))
            .collect(),
        comment,
        branch: subject["source_branch"].as_str().map(str::to_owned),
        base_branch: subject["target_branch"].as_str().map(str::to_owned),
        head_fork: match (
            subject["source_project_id"].as_i64(),
            subject["target_project_id"].as_i64(),
        ) {
            (Some(source), Some(target)) => Some(source != target),
            _ => None,
        },
        head_sha,
        identity: format!("{kind}.{action}.{about}"),
        work: None,
        action,
    })
}

/// A `Push Hook`: to a branch (`pushed`), or deleting one (`deleted`: no commit after it).
fn push(payload: &Value) -> Event {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let reference = text(&payload["ref"]);
    let after = text(&payload["after"]);
    let deleted = after.chars().all(|c| c == '0');
    let branch = reference.strip_prefix("refs/heads/").map(str::to_owned);
    let action = match (&branch, deleted) {
        (_, true) => "deleted",
        (Some(_), false) => "pushed",
        (None, false) => "tag",
    };
    let last = payload["commits"].as_array().and_then(|c| c.last());
    Event {
        provider: Provider::GitLab,
        kind: "push".to_owned(),
        action: action.to_owned(),
        repository: text(&payload["project"]["path_with_namespace"]),
        title: last
            .map(|c| text(&c["message"]))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        body: super::event::commit_lines(&payload["commits"]),
        url: last.map(|c| text(&c["url"])).unwrap_or_default(),
        author: text(&payload["user_username"]),
        actor_id: payload["user_id"].as_i64(),
        identity: format!("push.{action}.{reference}-{after}"),
        branch: branch.filter(|_| !deleted),
        head_sha: Some(after).filter(|_| !deleted),
        ..Event::default()
    }
}

/// What a role in the project (its `access_level`) counts as in `spec.filter.authorAssociation`:
/// Owner `OWNER`; Maintainer and Developer `MEMBER`; Reporter, Planner, Guest `CONTRIBUTOR`;
/// none `NONE`. The default (`OWNER`, `MEMBER`, `COLLABORATOR`) is thus Developers and above.
pub fn association(access_level: Option<i64>) -> &'static str {
    match access_level {
        Some(50..) => "OWNER",
        Some(30..=49) => "MEMBER",
        Some(1..=29) => "CONTRIBUTOR",
        _ => "NONE",
    }
}

/// A project's path as one segment of an API URL (`group%2Fname`).
pub fn project_id(path: &str) -> String {
    path.replace('%', "%25").replace('/', "%2F")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE: &[u8] = include_bytes!("../../tests/fixtures/gitlab/issue-open.json");
    const NOTE: &[u8] = include_bytes!("../../tests/fixtures/gitlab/note-on-issue.json");
    const MERGE_REQUEST: &[u8] =
        include_bytes!("../../tests/fixtures/gitlab/merge-request-update.json");

    #[test]
    fn the_token_is_compared_whole() {
        assert_eq!(verify_token(b"s3cret\n", Some("s3cret")), Ok(()));
        assert_eq!(
            verify_token(b"s3cret", Some("s3cre")),
            Err(TokenError::Mismatch)
        );
        assert_eq!(
            verify_token(b"s3cret", Some("s3cret-and-more")),
            Err(TokenError::Mismatch)
        );
        assert_eq!(verify_token(b"s3cret", Some("")), Err(TokenError::Mismatch));
        assert_eq!(verify_token(b"s3cret", None), Err(TokenError::Missing));
    }

    #[test]
    fn only_the_public_hooks_are_taken() {
        assert_eq!(event_kind("Issue Hook"), Some("issue"));
        assert_eq!(event_kind("Merge Request Hook"), Some("merge_request"));
        assert_eq!(event_kind("Confidential Issue Hook"), None);
        assert_eq!(event_kind("Confidential Note Hook"), None);
        assert_eq!(event_kind("Push Hook"), Some("push"));
        assert_eq!(event_kind("Tag Push Hook"), None);
    }

    #[test]
    fn gitlabs_documented_payloads_are_read() {
        let issue = parse("issue", ISSUE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(issue.name(), "issue.open");
        assert_eq!(issue.reference(), "gitlabhq/gitlab-test#23");
        assert_eq!(issue.labels, ["API", "kubetask"]);
        assert_eq!(issue.actor(), ("root", ""));
        assert_eq!(issue.actor_id, Some(1));
        assert_eq!(issue.identity, "issue.open.issue-301");
        assert!(issue.url.ends_with("/issues/23"), "{}", issue.url);

        let note = parse("note", NOTE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(note.reference(), "gitlab-org/gitlab-test#17");
        let comment = note.comment.clone().unwrap_or_default();
        assert!(comment.body.starts_with("/kubetask"), "{}", comment.body);
        assert_eq!(note.identity, "note.create.note-1241");
        assert!(note.url.ends_with("/issues/17"), "{}", note.url);

        let merge_request = parse("merge_request", MERGE_REQUEST).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(merge_request.reference(), "gitlabhq/gitlab-test!1");
        assert_eq!(merge_request.branch.as_deref(), Some("ms-viewport"));
        assert!(
            merge_request
                .identity
                .starts_with("merge_request.update.mr-99-"),
            "{}",
            merge_request.identity
        );

        assert!(
            parse("note", ISSUE).is_err(),
            "the header and the payload disagree"
        );
        assert!(parse("issue", b"{not json").is_err());
        assert!(parse("issue", br#"{"object_kind":"issue"}"#).is_err());
    }

    #[test]
    fn roles_count_as_associations() {
        assert_eq!(association(Some(50)), "OWNER");
        assert_eq!(association(Some(40)), "MEMBER");
        assert_eq!(association(Some(30)), "MEMBER");
        assert_eq!(association(Some(20)), "CONTRIBUTOR");
        assert_eq!(association(None), "NONE");
        assert_eq!(project_id("group/sub/p"), "group%2Fsub%2Fp");
    }
}

#[cfg(test)]
mod push_tests {
    use super::*;

    #[test]
    fn a_push_hook_is_read_with_its_branch_and_deletions_are_told() {
        let body = br#"{"object_kind":"push","ref":"refs/heads/master","after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "user_id":4,"user_username":"jsmith","project":{"path_with_namespace":"mike/diaspora"},
            "commits":[{"id":"b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327","message":"Update Catalan translation to e38cb41.","url":"http://example.com/mike/diaspora/commit/b6568db1"}]}"#;
        let event = parse("push", body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (event.action.as_str(), event.reference()),
            ("pushed", "mike/diaspora@master".to_owned())
        );
        assert_eq!(event.actor_id, Some(4));
        let deleted = String::from_utf8_lossy(body).replace(
            "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "0000000000000000000000000000000000000000",
        );
        assert_eq!(
            parse("push", deleted.as_bytes())
                .map(|e| e.action)
                .ok()
                .as_deref(),
            Some("deleted")
        );
    }
}
