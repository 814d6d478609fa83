//! The event model of triggers (one definition, in the API crate: a mapper plugin reads the
//! same type).

pub use kubetask_api::trigger_event::{Comment, Event, Provider};

/// A push's `commits` (GitHub's and GitLab's have the same fields), one line each: the short
/// id and the message.
pub fn commit_lines(commits: &serde_json::Value) -> String {
    commits
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {}",
                c["id"]
                    .as_str()
                    .unwrap_or_default()
                    .chars()
                    .take(12)
                    .collect::<String>(),
                c["message"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_and_merge_requests_are_different_work_on_gitlab_and_the_same_on_github() {
        let gitlab = |pull_request| Event {
            provider: Provider::GitLab,
            repository: "Group/Sub/P".to_owned(),
            number: 5,
            pull_request,
            ..Event::default()
        };
        assert_eq!(gitlab(false).reference(), "Group/Sub/P#5");
        assert_eq!(gitlab(true).reference(), "Group/Sub/P!5");
        assert_ne!(gitlab(false).work_key(), gitlab(true).work_key());
        let github = |pull_request| Event {
            repository: "O/R".to_owned(),
            number: 5,
            pull_request,
            ..Event::default()
        };
        assert_eq!(github(false).work_key(), "o/r#5");
        assert_eq!(github(true).work_key(), github(false).work_key());
        let webhook = |work: Option<&str>| Event {
            provider: Provider::Webhook,
            identity: "webhook.abc".to_owned(),
            work: work.map(str::to_owned),
            ..Event::default()
        };
        assert_eq!(webhook(None).work_key(), "webhook:webhook.abc");
        assert_eq!(webhook(Some("fp-1")).work_key(), "webhook:fp-1");
    }
}
