//! The pull request through the provider's REST API: GitHub (`/repos/{owner}/{repo}/pulls`)
//! or GitLab (`/projects/{id}/merge_requests`). An open one of the branch is updated, else
//! one is opened. 5xx, 429 and network errors are retried with backoff (`Retry-After`
//! honoured); a 4xx is refused with the API's own message.

use std::time::Duration;

use kubetask_api::workspace::{PlannedPullRequest, Provider, PullRequestRef};
use serde_json::{Value, json};

use super::PublishError;

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A provider's API with the write token.
pub struct Api {
    plan: PlannedPullRequest,
    token: String,
    agent: ureq::Agent,
    backoff: Vec<Duration>,
}

impl Api {
    /// The API of `plan`, with the write `token`.
    pub fn new(plan: &PlannedPullRequest, token: &str, backoff: Vec<Duration>) -> Api {
        let agent = crate::http::agent();
        Api {
            plan: plan.clone(),
            token: token.to_owned(),
            agent,
            backoff,
        }
    }

    /// Opens the pull request of `branch`, or updates the open one.
    pub fn open_or_update(
        &self,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequestRef, PublishError> {
        match self.plan.provider {
            Provider::GitHub => self.github(branch, title, body),
            Provider::GitLab => self.gitlab(branch, title, body),
        }
    }

    fn github(
        &self,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequestRef, PublishError> {
        let repo = format!("/repos/{}", self.plan.project);
        let owner = self.plan.project.split('/').next().unwrap_or_default();
        let open = self.call(
            "GET",
            &format!("{repo}/pulls?state=open&head={owner}:{branch}"),
            None,
        )?;
        let existing = open.as_array().and_then(|a| a.first()).cloned();
        let pull = match existing {
            Some(pull) => {
                let number = number(&pull, "number")?;
                self.call(
                    "PATCH",
                    &format!("{repo}/pulls/{number}"),
                    Some(json!({"title": title, "body": body})),
                )?
            }
            None => {
                let base = match &self.plan.base {
                    Some(base) => base.clone(),
                    None => text(&self.call("GET", &repo, None)?, "default_branch")?,
                };
                self.call(
                    "POST",
                    &format!("{repo}/pulls"),
                    Some(json!({"title": title, "body": body, "head": branch, "base": base, "draft": self.plan.draft})),
                )?
            }
        };
        let number = number(&pull, "number")?;
        if !self.plan.labels.is_empty() {
            self.call(
                "POST",
                &format!("{repo}/issues/{number}/labels"),
                Some(json!({"labels": self.plan.labels})),
            )?;
        }
        Ok(PullRequestRef {
            url: text(&pull, "html_url")?,
            number,
        })
    }

    fn gitlab(
        &self,
        branch: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequestRef, PublishError> {
        let project = format!("/projects/{}", encode(&self.plan.project));
        let title = if self.plan.draft && !title.starts_with("Draft:") {
            format!("Draft: {title}")
        } else {
            title.to_owned()
        };
        let labels = self.plan.labels.join(",");
        let open = self.call(
            "GET",
            &format!("{project}/merge_requests?state=opened&source_branch={branch}"),
            None,
        )?;
        let existing = open.as_array().and_then(|a| a.first()).cloned();
        let request = match existing {
            Some(request) => {
                let iid = number(&request, "iid")?;
                let mut update = json!({"title": title, "description": body});
                if !labels.is_empty() {
                    update["add_labels"] = json!(labels);
                }
                self.call(
                    "PUT",
                    &format!("{project}/merge_requests/{iid}"),
                    Some(update),
                )?
            }
            None => {
                let base = match &self.plan.base {
                    Some(base) => base.clone(),
                    None => text(&self.call("GET", &project, None)?, "default_branch")?,
                };
                let mut create = json!({"source_branch": branch, "target_branch": base, "title": title, "description": body});
                if !labels.is_empty() {
                    create["labels"] = json!(labels);
                }
                self.call("POST", &format!("{project}/merge_requests"), Some(create))?
            }
        };
        Ok(PullRequestRef {
            url: text(&request, "web_url")?,
            number: number(&request, "iid")?,
        })
    }

    /// One call of the API, retried on 5xx, 429 and network errors.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, PublishError> {
        let url = format!("{}{path}", self.plan.api_url);
        let mut pauses = self.backoff.iter();
        loop {
            let (retry, error) = match self.send(method, &url, body.as_ref()) {
                Ok((status, text, _)) if (200..300).contains(&status) => {
                    return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Ok((status, text, retry_after)) if status >= 500 || status == 429 => (
                    retry_after,
                    format!("{method} {url}: {status} {}", api_message(&text)),
                ),
                Ok((status, text, _)) => {
                    return Err(PublishError::Refused(format!(
                        "the {:?} API refused {method} {url}: {status} {}",
                        self.plan.provider,
                        api_message(&text)
                    )));
                }
                Err(error) => (None, format!("{method} {url}: {error}")),
            };
            let Some(pause) = pauses.next() else {
                return Err(PublishError::Failed(format!(
                    "the {:?} API kept failing ({} tries): {error}",
                    self.plan.provider,
                    self.backoff.len() + 1
                )));
            };
            let pause = retry.map_or(*pause, |r| r.min(MAX_RETRY_AFTER));
            eprintln!("publish: {error}; retrying in {}s", pause.as_secs_f32());
            std::thread::sleep(pause);
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String, Option<Duration>), ureq::Error> {
        let (auth_name, auth_value) = match self.plan.provider {
            Provider::GitHub => ("Authorization", format!("Bearer {}", self.token)),
            Provider::GitLab => ("PRIVATE-TOKEN", self.token.clone()),
        };
        let response = match (method, body) {
            ("GET", _) => self
                .agent
                .get(url)
                .header(auth_name, &auth_value)
                .header("Accept", "application/vnd.github+json")
                .call(),
            (_, body) => {
                let text = body.map(Value::to_string).unwrap_or_default();
                let request = match method {
                    "POST" => self.agent.post(url),
                    "PATCH" => self.agent.patch(url),
                    _ => self.agent.put(url),
                };
                request
                    .header(auth_name, &auth_value)
                    .header("Accept", "application/vnd.github+json")
                    .header("Content-Type", "application/json")
                    .send(text.as_bytes())
            }
        };
        let mut response = response?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let text = response.body_mut().read_to_string()?;
        Ok((status, text, retry_after))
    }
}

/// The API's own message of an error body (GitHub's `message` and `errors`, GitLab's
/// `message` or `error`), else the body cut short.
fn api_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let said = parsed.as_ref().and_then(|v| {
        let message = v.get("message").or_else(|| v.get("error"))?;
        let mut said = match message {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(errors) = v.get("errors") {
            said.push_str(&format!(" {errors}"));
        }
        Some(said)
    });
    said.unwrap_or_else(|| text.chars().take(300).collect())
}

fn number(value: &Value, field: &str) -> Result<i64, PublishError> {
    value
        .get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| PublishError::Failed(format!("the API's answer has no {field}: {value}")))
}

fn text(value: &Value, field: &str) -> Result<String, PublishError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| PublishError::Failed(format!("the API's answer has no {field}: {value}")))
}

/// A GitLab project path as one URL path segment (`group%2Fproject`).
fn encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
