//! An event a TaskTrigger reads, whichever source it came from: the fields the mapper filters
//! on and the agent reads, and what makes the event itself (its identity) and its piece of
//! work (its key) unique. The receiver reads events into this; a mapper plugin receives it as
//! JSON (camelCase) and the Rust plugin SDK reads it back with this same type.

use serde::{Deserialize, Serialize};

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    GitHub,
    GitLab,
    /// A generic signed webhook (`spec.source.webhook`).
    Webhook,
}

impl Provider {
    /// Its name, as the event file says where the text comes from.
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "GitHub",
            Provider::GitLab => "GitLab",
            Provider::Webhook => "a webhook",
        }
    }
}

/// An event, as a trigger reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Event {
    pub provider: Provider,
    /// GitHub: `X-GitHub-Event` (`issues`, `issue_comment`, `pull_request`, ...); GitLab: the
    /// `object_kind` (`issue`, `note`, `merge_request`); `webhook`.
    pub kind: String,
    /// `opened`, `labeled`, `created` (GitHub); `open`, `update`, `create` (GitLab).
    pub action: String,
    /// `owner/name`, or the GitLab project's path.
    pub repository: String,
    /// The or pull request's number (a GitLab `iid`).
    pub number: i64,
    /// A pull request (a GitLab merge request), not an issue.
    pub pull_request: bool,
    pub title: String,
    /// The or pull request's body, or a webhook's payload: untrusted text.
    pub body: String,
    /// Its web page.
    pub url: String,
    /// Who acted (GitHub: the or pull request's author; GitLab: the `user`).
    pub author: String,
    /// Their association with the repository (`OWNER`, `MEMBER`, `COLLABORATOR`, ...; on
    /// GitLab from their role, the receiver's lookup).
    pub author_association: String,
    /// GitLab: the acting user's id, to look their role up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<i64>,
    pub labels: Vec<String>,
    /// The comment of a comment event: untrusted text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<Comment>,
    /// A pull request's head branch and commit; a push's branch and the commit it ends at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
    /// Whether a pull request's head branch is in another repository (a fork); `None` when
    /// the event does not say (a GitHub comment on a pull request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_fork: Option<bool>,
    /// The branch a pull request goes into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    /// What makes this event itself (not its redeliveries) unique: its kind, action and the
    /// id of what it is about (the comment, the issue, the label added, the commit pushed).
    pub identity: String,
    /// A webhook's work key (the value at `keyPointer`), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work: Option<String>,
}

/// A comment on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Comment {
    /// Its id (GitHub's `comment.id`, GitLab's note id).
    pub id: i64,
    pub body: String,
    pub author: String,
    pub author_association: String,
    pub url: String,
}

impl Event {
    /// Who acted, and their association: the comment's author for a comment, else the issue's
    /// or pull request's.
    pub fn actor(&self) -> (&str, &str) {
        match &self.comment {
            Some(comment) => (&comment.author, &comment.author_association),
            None => (&self.author, &self.author_association),
        }
    }

    /// Sets the acting user's association (the comment's author for a comment).
    pub fn set_actor_association(&mut self, association: &str) {
        match &mut self.comment {
            Some(comment) => comment.author_association = association.to_owned(),
            None => self.author_association = association.to_owned(),
        }
    }

    /// `issues.opened`.
    pub fn name(&self) -> String {
        if self.action.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.action)
        }
    }

    /// A push (`push` on either provider).
    pub fn is_push(&self) -> bool {
        self.kind == "push" && self.provider != Provider::Webhook
    }

    /// The branch `spec.filter.branches` judges: a push's, or the one a pull request goes into.
    pub fn filtered_branch(&self) -> Option<&str> {
        if self.is_push() {
            self.branch.as_deref()
        } else {
            self.base_branch.as_deref()
        }
    }

    /// The issue or pull request, as people write it: `owner/name#42`, a GitLab merge
    /// request `group/name!42`, a push `owner/name@main`; a webhook's event, its work key.
    pub fn reference(&self) -> String {
        if self.is_push() {
            return format!(
                "{}@{}",
                self.repository,
                self.branch.as_deref().unwrap_or_default()
            );
        }
        match self.provider {
            Provider::GitHub => format!("{}#{}", self.repository, self.number),
            Provider::GitLab => format!(
                "{}{}{}",
                self.repository,
                if self.pull_request { '!' } else { '#' },
                self.number
            ),
            Provider::Webhook => self.work.clone().unwrap_or_else(|| self.identity.clone()),
        }
    }

    /// What makes two events the same piece of work (hashed into the `trigger-key` label):
    /// the repository and the issue or pull request (a push: the branch); a webhook's
    /// `keyPointer` value, else the event itself.
    pub fn work_key(&self) -> String {
        if self.is_push() {
            return format!("push:{}", self.reference().to_ascii_lowercase());
        }
        match self.provider {
            Provider::GitHub => format!("{}#{}", self.repository.to_ascii_lowercase(), self.number),
            Provider::GitLab => format!("gitlab:{}", self.reference().to_ascii_lowercase()),
            Provider::Webhook => {
                format!("webhook:{}", self.work.as_deref().unwrap_or(&self.identity))
            }
        }
    }
}
