//! A fake GitHub and GitLab on loopback: the REST endpoints KubeTask's publish step uses
//! (a repository's default branch; pull requests, or GitLab merge requests: list open ones of
//! a branch, open, update; labels; a GitHub App's installation token) and the triggers'
//! reports use (issue comments: post, edit), with their
//! authentication (`Authorization: Bearer` for GitHub, `PRIVATE-TOKEN` for GitLab, an App's
//! JWT checked RS256 against its key), their error shapes (GitHub's 422 "A pull request
//! already exists", GitLab's 409) and injected failures (5xx with `Retry-After`, 4xx). The
//! GitLab API is under `/api/v4`, GitHub's at the root. Plain threads and HTTP/1.1, so
//! synchronous tests can use it.

use std::collections::VecDeque;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// A pull request (or merge request) the fake holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pull {
    pub provider: &'static str,
    /// When it was opened (RFC 3339).
    pub created_at: String,
    /// `owner/repo` (GitHub) or the URL-decoded project path (GitLab).
    pub project: String,
    pub number: i64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub draft: bool,
    pub labels: Vec<String>,
}

/// A comment on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueComment {
    pub id: i64,
    pub provider: &'static str,
    /// `owner/repo`, or the GitLab project's path.
    pub project: String,
    pub number: i64,
    /// On a GitLab merge request (not an issue).
    pub merge_request: bool,
    pub body: String,
    /// How many times it was edited.
    pub edits: u32,
    /// Reactions put on it (GitHub's `content`, GitLab's emoji name).
    pub reactions: Vec<String>,
    /// Who wrote it: `kubetask-bot` (the API token's user) or, for [`Forge::add_comment`],
    /// `octocat`, a member.
    pub author: String,
    pub created_at: String,
}

/// A check run (GitHub) or commit status (GitLab) the fake holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub id: i64,
    pub provider: &'static str,
    pub project: String,
    pub name: String,
    pub head_sha: String,
    /// GitHub's `status` (`in_progress`, `completed`), GitLab's `state`.
    pub status: String,
    pub conclusion: Option<String>,
    pub summary: String,
}

/// One request the fake answered: method, path with query, status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub status: u16,
}

/// A GitHub App the fake knows: its id, its public key (PKCS#1 DER), its installation.
#[derive(Clone)]
struct App {
    id: String,
    public_key: Vec<u8>,
    installation: u64,
}

/// An installation token the fake minted: what it was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub installation: u64,
    pub repositories: Vec<String>,
    pub permissions: Value,
}

#[derive(Default)]
struct State {
    pulls: Vec<Pull>,
    seen: Vec<Seen>,
    /// Answers given before the real one, in order: status and body.
    faults: VecDeque<(u16, Value)>,
    app: Option<App>,
    minted: Vec<Minted>,
    comments: Vec<IssueComment>,
    /// Open issues, by project: the REST API's issue objects.
    issues: Vec<(String, Value)>,
    /// GitLab project members: project, user id, access level.
    members: Vec<(String, i64, i64)>,
    check_runs: Vec<CheckRun>,
    /// GitHub's rate limit, when set: requests left, and when it resets (Unix seconds).
    rate: Option<(u32, u64)>,
}

/// The fake, serving until dropped (its thread ends with the process).
#[derive(Clone)]
pub struct Forge {
    port: u16,
    token: String,
    state: Arc<Mutex<State>>,
}

impl Forge {
    /// Starts a fake that accepts `token` and says every repository's default branch is
    /// `main`.
    pub fn start(token: &str) -> Forge {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let forge = Forge {
            port,
            token: token.to_owned(),
            state: Arc::default(),
        };
        let serving = forge.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let forge = serving.clone();
                std::thread::spawn(move || forge.serve(stream));
            }
        });
        forge
    }

    /// GitHub's API base URL here.
    pub fn github_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GitLab's API base URL here.
    pub fn gitlab_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v4", self.port)
    }

    /// Knows the GitHub App `id` (its private key in PEM, PKCS#1) installed as
    /// `installation`: its JWT gets an installation token, the fake's own token.
    pub fn with_app(self, id: &str, private_key_pem: &str, installation: u64) -> Forge {
        let body: String = private_key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body)
            .unwrap_or_else(|e| panic!("the App's key: {e}"));
        let key =
            ring::rsa::KeyPair::from_der(&der).unwrap_or_else(|e| panic!("the App's key: {e}"));
        self.lock().app = Some(App {
            id: id.to_owned(),
            public_key: key.public().as_ref().to_vec(),
            installation,
        });
        self
    }

    /// Opens issue `number` of `project` (as GitHub lists it: `GET /repos/{project}/issues`).
    pub fn open_issue(&self, project: &str, number: i64, title: &str, labels: &[&str]) {
        let issue = json!({
            "id": 5_000_000 + number, "number": number, "title": title, "body": "Found by polling.",
            "html_url": format!("https://github.com/{project}/issues/{number}"),
            "user": {"login": "octocat"}, "author_association": "MEMBER", "state": "open",
            "labels": labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
            "created_at": now(),
        });
        self.lock().issues.push((project.to_owned(), issue));
    }

    /// Opens GitLab issue `iid` of `project` (`GET /projects/:id/issues`), by user `author`.
    pub fn open_gitlab_issue(
        &self,
        project: &str,
        iid: i64,
        title: &str,
        labels: &[&str],
        author: (i64, &str),
    ) {
        let issue = json!({
            "id": 7_000_000 + iid, "iid": iid, "title": title, "description": "Found by polling.",
            "web_url": format!("https://gitlab.example/{project}/-/issues/{iid}"),
            "author": {"id": author.0, "username": author.1}, "state": "opened", "labels": labels,
            "created_at": now(),
        });
        self.lock()
            .issues
            .push((format!("gitlab:{project}"), issue));
    }

    /// Makes GitLab user `user` a member of `project` with `access_level` (30 Developer, ...).
    pub fn add_member(&self, project: &str, user: i64, access_level: i64) {
        self.lock()
            .members
            .push((project.to_owned(), user, access_level));
    }

    /// Opens a pull request, as someone else would: `head` into `main` (GitHub).
    pub fn open_pull(&self, project: &str, number: i64, title: &str, head: &str) {
        self.lock().pulls.push(Pull {
            created_at: now(),
            provider: "github",
            project: project.to_owned(),
            number,
            head: head.to_owned(),
            base: "main".to_owned(),
            title: title.to_owned(),
            body: "Found by polling.".to_owned(),
            draft: false,
            labels: Vec::new(),
        });
    }

    /// The head commit the fake gives pull request `number` of `project`.
    pub fn pull_head_sha(&self, project: &str, number: i64) -> Option<String> {
        self.lock()
            .pulls
            .iter()
            .find(|p| p.project == project && p.number == number)
            .map(head_sha)
    }

    /// Puts a comment on an issue, as someone else would (`provider`: `github`, `gitlab`).
    pub fn add_comment(
        &self,
        provider: &'static str,
        project: &str,
        number: i64,
        body: &str,
    ) -> i64 {
        let mut state = self.lock();
        let id = 9000 + i64::try_from(state.comments.len()).unwrap_or(0);
        state.comments.push(IssueComment {
            id,
            provider,
            project: project.to_owned(),
            number,
            merge_request: false,
            body: body.to_owned(),
            edits: 0,
            reactions: Vec::new(),
            author: "octocat".to_owned(),
            created_at: now(),
        });
        id
    }

    /// Gives GitHub's API a rate limit: `remaining` requests (304s are free, as on GitHub),
    /// then `403 API rate limit exceeded` until `reset` (Unix seconds). Every GitHub answer
    /// carries the `X-RateLimit-*` headers from then on.
    pub fn rate_limit(&self, remaining: u32, reset: u64) {
        self.lock().rate = Some((remaining, reset));
    }

    /// The check runs and commit statuses, as they are now (a GitLab status's updates are
    /// one entry, like a check run's).
    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.lock().check_runs.clone()
    }

    /// The comments posted on issues and pull requests.
    pub fn comments(&self) -> Vec<IssueComment> {
        self.lock().comments.clone()
    }

    /// The installation tokens minted, in order.
    pub fn minted(&self) -> Vec<Minted> {
        self.lock().minted.clone()
    }

    /// The next requests get these answers instead of the real ones.
    pub fn fail_next(&self, answers: impl IntoIterator<Item = (u16, Value)>) {
        self.lock().faults.extend(answers);
    }

    pub fn pulls(&self) -> Vec<Pull> {
        self.lock().pulls.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn serve(&self, stream: std::net::TcpStream) {
        let Some(crate::http1::Request {
            method,
            target,
            headers,
            body,
        }) = crate::http1::read(&stream)
        else {
            return;
        };
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let github_api = !target.starts_with("/api/v4/") && !target.starts_with("/app/");
        let spent = github_api
            && self
                .lock()
                .rate
                .is_some_and(|(remaining, _)| remaining == 0);
        let (mut status, answer, retry_after) = if spent {
            (
                403,
                json!({"message": "API rate limit exceeded for installation ID 77.", "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}),
                None,
            )
        } else {
            self.answer(&method, &target, &headers, &body)
        };
        // ETags, as GitHub sends them on every GET: `If-None-Match` of the same answer is 304.
        let etag = (method == "GET" && status == 200).then(|| {
            let digest = ring::digest::digest(&ring::digest::SHA256, answer.to_string().as_bytes());
            let hex: String = digest
                .as_ref()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("\"{hex}\"")
        });
        let unchanged = etag.is_some() && headers.get("if-none-match") == etag.as_ref();
        if unchanged {
            status = 304;
        }
        self.lock().seen.push(Seen {
            method,
            target,
            status,
        });
        let text = if unchanged {
            String::new()
        } else {
            answer.to_string()
        };
        let mut stream = stream;
        let mut retry = retry_after.map_or_else(String::new, |s| format!("Retry-After: {s}\r\n"));
        if let Some(etag) = &etag {
            retry.push_str(&format!("ETag: {etag}\r\n"));
        }
        if github_api && let Some((remaining, reset)) = self.lock().rate.as_mut() {
            if !unchanged && !spent {
                *remaining = remaining.saturating_sub(1);
            }
            retry.push_str(&format!(
                "X-RateLimit-Limit: 5000\r\nX-RateLimit-Remaining: {remaining}\r\nX-RateLimit-Reset: {reset}\r\n"
            ));
        }
        let _ = write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
    }

    fn answer(
        &self,
        method: &str,
        target: &str,
        headers: &std::collections::BTreeMap<String, String>,
        body: &Value,
    ) -> (u16, Value, Option<u64>) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query: std::collections::BTreeMap<String, String> = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let gitlab = path.starts_with("/api/v4/");
        if let Some(installation) = path
            .strip_prefix("/app/installations/")
            .and_then(|rest| rest.strip_suffix("/access_tokens"))
        {
            return self.mint(method, installation, headers, body);
        }
        let authorized = if gitlab {
            headers.get("private-token") == Some(&self.token)
        } else {
            headers.get("authorization") == Some(&format!("Bearer {}", self.token))
        };
        if !authorized {
            return (
                401,
                json!({"message": if gitlab { "401 Unauthorized" } else { "Bad credentials" }}),
                None,
            );
        }
        if let Some((status, answer)) = self.lock().faults.pop_front() {
            let retry = (status == 503 || status == 429).then_some(0);
            return (status, answer, retry);
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut state = self.lock();
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        if gitlab {
            let project = decode(segments.get(3).copied().unwrap_or_default());
            match (method, &segments[2..]) {
                ("GET", ["projects", _]) => (
                    200,
                    json!({"path_with_namespace": project, "default_branch": "main"}),
                    None,
                ),
                ("GET", ["projects", _, "merge_requests"]) => {
                    let open: Vec<Value> = state
                        .pulls
                        .iter()
                        .filter(|p| p.provider == "gitlab" && p.project == project)
                        .filter(|p| query.get("source_branch").is_none_or(|b| *b == p.head))
                        .map(gitlab_json)
                        .collect();
                    (200, json!(open), None)
                }
                ("POST", ["projects", _, "merge_requests"]) => {
                    let head = text(body, "source_branch");
                    if state
                        .pulls
                        .iter()
                        .any(|p| p.provider == "gitlab" && p.project == project && p.head == head)
                    {
                        return (
                            409,
                            json!({"message": [format!("Another open merge request already exists for this source branch")]}),
                            None,
                        );
                    }
                    let title = text(body, "title");
                    let pull = Pull {
                        created_at: now(),
                        provider: "gitlab",
                        project,
                        number: i64::try_from(state.pulls.len()).unwrap_or(0) + 1,
                        head,
                        base: text(body, "target_branch"),
                        draft: title.starts_with("Draft:"),
                        title,
                        body: text(body, "description"),
                        labels: labels(&text(body, "labels")),
                    };
                    let answer = gitlab_json(&pull);
                    state.pulls.push(pull);
                    (201, answer, None)
                }
                ("PUT", ["projects", _, "merge_requests", iid]) => {
                    let Some(pull) = state.pulls.iter_mut().find(|p| {
                        p.provider == "gitlab"
                            && p.project == project
                            && p.number.to_string() == *iid
                    }) else {
                        return (404, json!({"message": "404 Not found"}), None);
                    };
                    pull.title = text(body, "title");
                    pull.body = text(body, "description");
                    pull.labels.extend(labels(&text(body, "add_labels")));
                    (200, gitlab_json(pull), None)
                }
                ("POST", ["projects", _, "statuses", sha]) => {
                    let name = text(body, "name");
                    let next = 700 + i64::try_from(state.check_runs.len()).unwrap_or(0);
                    let existing = state.check_runs.iter_mut().find(|c| {
                        c.provider == "gitlab"
                            && c.project == project
                            && c.head_sha == *sha
                            && c.name == name
                    });
                    let id = match existing {
                        Some(run) => {
                            run.status = text(body, "state");
                            run.summary = text(body, "description");
                            run.id
                        }
                        None => {
                            state.check_runs.push(CheckRun {
                                id: next,
                                provider: "gitlab",
                                project,
                                name: name.clone(),
                                head_sha: (*sha).to_owned(),
                                status: text(body, "state"),
                                conclusion: None,
                                summary: text(body, "description"),
                            });
                            next
                        }
                    };
                    (
                        201,
                        json!({"id": id, "name": name, "status": text(body, "state")}),
                        None,
                    )
                }
                ("GET", ["projects", _, "members", "all", user]) => {
                    match state
                        .members
                        .iter()
                        .find(|(p, u, _)| *p == project && u.to_string() == *user)
                    {
                        Some((_, user, level)) => {
                            (200, json!({"id": user, "access_level": level}), None)
                        }
                        None => (404, json!({"message": "404 Not found"}), None),
                    }
                }
                ("GET", ["projects", _, "issues"]) => {
                    let open: Vec<Value> = state
                        .issues
                        .iter()
                        .filter(|(p, _)| *p == format!("gitlab:{project}"))
                        .map(|(_, issue)| issue.clone())
                        .collect();
                    (200, json!(open), None)
                }
                (
                    "GET",
                    [
                        "projects",
                        _,
                        kind @ ("issues" | "merge_requests"),
                        iid,
                        "notes",
                    ],
                ) => {
                    let notes: Vec<Value> = state
                        .comments
                        .iter()
                        .rev()
                        .filter(|c| {
                            c.provider == "gitlab"
                                && c.project == project
                                && c.merge_request == (*kind == "merge_requests")
                                && c.number.to_string() == *iid
                        })
                        .map(|c| json!({"id": c.id, "body": c.body}))
                        .collect();
                    (200, json!(notes), None)
                }
                (
                    "POST",
                    [
                        "projects",
                        _,
                        kind @ ("issues" | "merge_requests"),
                        iid,
                        "notes",
                    ],
                ) => {
                    let id = 9000 + i64::try_from(state.comments.len()).unwrap_or(0);
                    let comment = IssueComment {
                        id,
                        provider: "gitlab",
                        project,
                        number: iid.parse().unwrap_or_default(),
                        merge_request: *kind == "merge_requests",
                        body: text(body, "body"),
                        edits: 0,
                        reactions: Vec::new(),
                        author: "kubetask-bot".to_owned(),
                        created_at: now(),
                    };
                    let answer = json!({"id": id, "body": comment.body});
                    state.comments.push(comment);
                    (201, answer, None)
                }
                ("PUT", ["projects", _, "issues" | "merge_requests", _, "notes", id]) => {
                    let Some(comment) = state
                        .comments
                        .iter_mut()
                        .find(|c| c.provider == "gitlab" && c.id.to_string() == *id)
                    else {
                        return (404, json!({"message": "404 Not found"}), None);
                    };
                    comment.body = text(body, "body");
                    comment.edits += 1;
                    (200, json!({"id": comment.id, "body": comment.body}), None)
                }
                (
                    "POST",
                    [
                        "projects",
                        _,
                        "issues" | "merge_requests",
                        _,
                        "notes",
                        id,
                        "award_emoji",
                    ],
                ) => {
                    let Some(comment) = state
                        .comments
                        .iter_mut()
                        .find(|c| c.provider == "gitlab" && c.id.to_string() == *id)
                    else {
                        return (404, json!({"message": "404 Not found"}), None);
                    };
                    let name = text(body, "name");
                    if comment.reactions.contains(&name) {
                        return (
                            404,
                            json!({"message": "404 Award Emoji Name has already been taken"}),
                            None,
                        );
                    }
                    comment.reactions.push(name.clone());
                    (201, json!({"name": name}), None)
                }
                _ => (404, json!({"message": "404 Not found"}), None),
            }
        } else {
            let project = segments.get(1..3).map(|p| p.join("/")).unwrap_or_default();
            match (method, segments.as_slice()) {
                ("GET", ["repos", _, _]) => (
                    200,
                    json!({"full_name": project, "default_branch": "main"}),
                    None,
                ),
                ("GET", ["repos", _, _, "issues"]) => {
                    let open: Vec<Value> = state
                        .issues
                        .iter()
                        .filter(|(p, _)| *p == project)
                        .map(|(_, issue)| issue.clone())
                        .collect();
                    (200, json!(open), None)
                }
                ("GET", ["repos", owner, _, "pulls"]) => {
                    let open: Vec<Value> = state
                        .pulls
                        .iter()
                        .filter(|p| p.provider == "github" && p.project == project)
                        .filter(|p| {
                            query
                                .get("head")
                                .is_none_or(|h| *h == format!("{owner}:{}", p.head))
                        })
                        .map(github_json)
                        .collect();
                    (200, json!(open), None)
                }
                ("POST", ["repos", owner, _, "pulls"]) => {
                    let head = text(body, "head");
                    let base = text(body, "base");
                    if base.is_empty() || head.is_empty() {
                        return (
                            422,
                            json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "missing_field", "field": if base.is_empty() { "base" } else { "head" }}]}),
                            None,
                        );
                    }
                    if state
                        .pulls
                        .iter()
                        .any(|p| p.provider == "github" && p.project == project && p.head == head)
                    {
                        return (
                            422,
                            json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {owner}:{head}.")}]}),
                            None,
                        );
                    }
                    let pull = Pull {
                        created_at: now(),
                        provider: "github",
                        project,
                        number: i64::try_from(state.pulls.len()).unwrap_or(0) + 1,
                        head,
                        base,
                        title: text(body, "title"),
                        body: text(body, "body"),
                        draft: body["draft"].as_bool().unwrap_or(false),
                        labels: Vec::new(),
                    };
                    let answer = github_json(&pull);
                    state.pulls.push(pull);
                    (201, answer, None)
                }
                ("GET", ["repos", _, _, "pulls", number]) => {
                    match state.pulls.iter().find(|p| {
                        p.provider == "github"
                            && p.project == project
                            && p.number.to_string() == *number
                    }) {
                        Some(pull) => (200, github_json(pull), None),
                        None => (404, json!({"message": "Not Found"}), None),
                    }
                }
                ("PATCH", ["repos", _, _, "pulls", number]) => {
                    let Some(pull) = state.pulls.iter_mut().find(|p| {
                        p.provider == "github"
                            && p.project == project
                            && p.number.to_string() == *number
                    }) else {
                        return (404, json!({"message": "Not Found"}), None);
                    };
                    pull.title = text(body, "title");
                    pull.body = text(body, "body");
                    (200, github_json(pull), None)
                }
                ("POST", ["repos", _, _, "check-runs"]) => {
                    let id = 800 + i64::try_from(state.check_runs.len()).unwrap_or(0);
                    let run = CheckRun {
                        id,
                        provider: "github",
                        project,
                        name: text(body, "name"),
                        head_sha: text(body, "head_sha"),
                        status: text(body, "status"),
                        conclusion: body["conclusion"].as_str().map(str::to_owned),
                        summary: text(&body["output"], "summary"),
                    };
                    if run.name.is_empty() || run.head_sha.is_empty() {
                        return (
                            422,
                            json!({"message": "Invalid request.", "errors": ["name and head_sha are required"]}),
                            None,
                        );
                    }
                    state.check_runs.push(run);
                    (201, json!({"id": id, "status": text(body, "status")}), None)
                }
                ("PATCH", ["repos", _, _, "check-runs", id]) => {
                    let Some(run) = state.check_runs.iter_mut().find(|c| {
                        c.provider == "github" && c.project == project && c.id.to_string() == *id
                    }) else {
                        return (404, json!({"message": "Not Found"}), None);
                    };
                    run.status = text(body, "status");
                    run.conclusion = body["conclusion"].as_str().map(str::to_owned);
                    run.summary = text(&body["output"], "summary");
                    (200, json!({"id": run.id, "status": run.status}), None)
                }
                ("GET", ["repos", _, _, "issues", "comments"]) => {
                    let base = format!("http://127.0.0.1:{}", self.port);
                    let comments: Vec<Value> = state
                        .comments
                        .iter()
                        .filter(|c| c.provider == "github" && c.project == project)
                        .filter(|c| query.get("since").is_none_or(|since| c.created_at >= *since))
                        .map(|c| json!({
                            "id": c.id, "body": c.body, "user": {"login": c.author},
                            "author_association": "MEMBER", "created_at": c.created_at,
                            "html_url": format!("https://github.example/{}/issues/{}#issuecomment-{}", c.project, c.number, c.id),
                            "issue_url": format!("{base}/repos/{}/issues/{}", c.project, c.number),
                        }))
                        .collect();
                    (200, json!(comments), None)
                }
                ("GET", ["repos", _, _, "issues", number]) => {
                    match state.issues.iter().find(|(p, issue)| {
                        *p == project && number.parse::<i64>().ok() == issue["number"].as_i64()
                    }) {
                        Some((_, issue)) => (200, issue.clone(), None),
                        None => (404, json!({"message": "Not Found"}), None),
                    }
                }
                ("GET", ["repos", _, _, "issues", number, "comments"]) => {
                    let comments: Vec<Value> = state
                        .comments
                        .iter()
                        .filter(|c| {
                            c.provider == "github"
                                && c.project == project
                                && c.number.to_string() == *number
                        })
                        .map(|c| json!({"id": c.id, "body": c.body}))
                        .collect();
                    (200, json!(comments), None)
                }
                ("POST", ["repos", _, _, "issues", "comments", id, "reactions"]) => {
                    let Some(comment) = state.comments.iter_mut().find(|c| {
                        c.provider == "github" && c.project == project && c.id.to_string() == *id
                    }) else {
                        return (404, json!({"message": "Not Found"}), None);
                    };
                    let content = text(body, "content");
                    // GitHub answers 200 with the existing reaction for a repeat.
                    if comment.reactions.contains(&content) {
                        return (200, json!({"content": content}), None);
                    }
                    comment.reactions.push(content.clone());
                    (201, json!({"content": content}), None)
                }
                ("POST", ["repos", _, _, "issues", number, "comments"]) => {
                    let id = 9000 + i64::try_from(state.comments.len()).unwrap_or(0);
                    let comment = IssueComment {
                        id,
                        provider: "github",
                        project,
                        number: number.parse().unwrap_or_default(),
                        merge_request: false,
                        body: text(body, "body"),
                        edits: 0,
                        reactions: Vec::new(),
                        author: "kubetask-bot".to_owned(),
                        created_at: now(),
                    };
                    let answer = json!({"id": id, "body": comment.body, "html_url": format!("https://github.example/{}/issues/{}#issuecomment-{id}", comment.project, comment.number)});
                    state.comments.push(comment);
                    (201, answer, None)
                }
                ("PATCH", ["repos", _, _, "issues", "comments", id]) => {
                    let Some(comment) = state.comments.iter_mut().find(|c| {
                        c.provider == "github" && c.project == project && c.id.to_string() == *id
                    }) else {
                        return (404, json!({"message": "Not Found"}), None);
                    };
                    comment.body = text(body, "body");
                    comment.edits += 1;
                    (200, json!({"id": comment.id, "body": comment.body}), None)
                }
                ("POST", ["repos", _, _, "issues", number, "labels"]) => {
                    let Some(pull) = state.pulls.iter_mut().find(|p| {
                        p.provider == "github"
                            && p.project == project
                            && p.number.to_string() == *number
                    }) else {
                        return (404, json!({"message": "Not Found"}), None);
                    };
                    for label in body["labels"].as_array().into_iter().flatten() {
                        let label = label.as_str().unwrap_or_default().to_owned();
                        if !pull.labels.contains(&label) {
                            pull.labels.push(label);
                        }
                    }
                    (
                        200,
                        json!(
                            pull.labels
                                .iter()
                                .map(|l| json!({"name": l}))
                                .collect::<Vec<_>>()
                        ),
                        None,
                    )
                }
                _ => (404, json!({"message": "Not Found"}), None),
            }
        }
    }
}

impl Forge {
    /// `POST /app/installations/{id}/access_tokens`: the App's JWT checked as GitHub does
    /// (RS256 with the App's key, `iss` the App's id, not expired, at most ten minutes long).
    fn mint(
        &self,
        method: &str,
        installation: &str,
        headers: &std::collections::BTreeMap<String, String>,
        body: &Value,
    ) -> (u16, Value, Option<u64>) {
        let Some(app) = self.lock().app.clone() else {
            return (404, json!({"message": "Not Found"}), None);
        };
        let refused = |message: &str| (401, json!({"message": message}), None);
        let Some(jwt) = headers
            .get("authorization")
            .and_then(|a| a.strip_prefix("Bearer "))
        else {
            return refused("A JSON web token could not be decoded");
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let decode = |part: &str| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part)
                .unwrap_or_default()
        };
        if parts.len() != 3 {
            return refused("A JSON web token could not be decoded");
        }
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap_or(Value::Null);
        let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap_or(Value::Null);
        let signed = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &app.public_key,
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &decode(parts[2]),
        )
        .is_ok();
        if header["alg"] != "RS256" || !signed {
            return refused(
                "'Issuer' claim ('iss') must be an Integer, and the JWT signature must verify",
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap_or(0),
            claims["exp"].as_u64().unwrap_or(0),
        );
        if claims["iss"] != json!(app.id) || exp <= now || exp.saturating_sub(iat) > 600 {
            return refused(
                "'Expiration time' claim ('exp') is too far in the future, expired, or the issuer is not this App",
            );
        }
        if method != "POST" || installation != app.installation.to_string() {
            return (404, json!({"message": "Not Found"}), None);
        }
        let minted = Minted {
            installation: app.installation,
            repositories: body["repositories"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            permissions: body["permissions"].clone(),
        };
        self.lock().minted.push(minted);
        (
            201,
            json!({"token": self.token, "expires_at": "2099-01-01T00:00:00Z", "permissions": body["permissions"]}),
            None,
        )
    }
}

fn github_json(pull: &Pull) -> Value {
    json!({
        "id": 2000 + pull.number, "number": pull.number, "state": "open", "title": pull.title, "body": pull.body,
        "draft": pull.draft, "head": {"ref": pull.head, "sha": head_sha(pull), "repo": {"full_name": pull.project}},
        "base": {"ref": pull.base, "repo": {"full_name": pull.project}},
        "html_url": format!("https://github.example/{}/pull/{}", pull.project, pull.number),
        "user": {"login": "octocat"}, "author_association": "MEMBER", "created_at": pull.created_at,
        "labels": pull.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
    })
}

/// A pull request's head commit here: made up from its number.
fn head_sha(pull: &Pull) -> String {
    format!("{:040x}", 0xc0ffee + pull.number)
}

/// Now, as the providers write times.
fn now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn gitlab_json(pull: &Pull) -> Value {
    json!({
        "created_at": pull.created_at, "author": {"id": 1, "username": "root"}, "sha": head_sha(pull),
        "web_url": format!("https://gitlab.example/{}/-/merge_requests/{}", pull.project, pull.number),
        "iid": pull.number, "id": 1000 + pull.number, "state": "opened", "title": pull.title,
        "description": pull.body, "source_branch": pull.head, "target_branch": pull.base,
        "source_project_id": 42, "target_project_id": 42,
        "labels": pull.labels, "draft": pull.draft,
    })
}

fn labels(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `%XX` decoded (and `+` kept: the publish step encodes what it means).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
