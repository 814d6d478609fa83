//! The providers' REST APIs, as triggers use them (reports, polling, GitLab roles): the
//! trigger's API token read from its Secret (or a GitHub App's installation token, minted), and calls authenticated as each provider wants
//! (GitHub `Authorization: Bearer`, GitLab `PRIVATE-TOKEN`), run off the async threads,
//! retried with backoff on 5xx, 429 and network errors.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt as _};
use kubetask_api::TaskTrigger;
use kubetask_api::task_trigger::{GitHubApp, GitHubSource, SourceKind};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Pauses between tries of a call.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// A provider's API and the token to call it with.
#[derive(Clone)]
pub struct Credentials {
    /// Its base URL, without a trailing `/`.
    pub url: String,
    token: String,
    gitlab: bool,
}

/// Why a trigger's API cannot be called.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("the trigger's source has no API (spec.source.webhook)")]
    NoApi,
    #[error("{0} is not set: the API cannot be called")]
    NoToken(&'static str),
    #[error("the Secret {name:?} of {path} has no key {key:?}")]
    SecretMissing {
        name: String,
        key: String,
        path: &'static str,
    },
    #[error("cannot read the Secret of the API token: {0}")]
    Kube(#[from] kube::Error),
    /// The GitHub App's key or installation was refused, or GitHub could not be reached.
    #[error("{0}")]
    App(String),
}

impl CredentialsError {
    /// The reason of the `CredentialsValid` condition it makes `False`.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialsError::NoApi | CredentialsError::NoToken(_) => "NoToken",
            CredentialsError::SecretMissing { .. } | CredentialsError::Kube(_) => "SecretMissing",
            CredentialsError::App(_) => "Refused",
        }
    }
}

/// Installation tokens minted, by App, installation, repository and key: the token and when
/// to mint another (five minutes before it expires).
type Minted = HashMap<String, (String, Instant)>;

fn minted() -> &'static Mutex<Minted> {
    static MINTED: OnceLock<Mutex<Minted>> = OnceLock::new();
    MINTED.get_or_init(Mutex::default)
}

/// The installation token of `github.app` for `github.repository`: minted with the App's JWT
/// (`POST /app/installations/{id}/access_tokens`, the repository alone, permission to comment
/// and write check runs), kept until five minutes before it expires.
async fn app_token(
    client: &kube::Client,
    trigger: &TaskTrigger,
    github: &GitHubSource,
    app: &GitHubApp,
    url: &str,
) -> Result<String, CredentialsError> {
    let key_ref = &app.private_key_secret_ref;
    let key_name = key_ref.key_or("private-key");
    let pem = Api::<Secret>::namespaced(client.clone(), &trigger.namespace().unwrap_or_default())
        .get_opt(&key_ref.name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(key_name))
        .map(|k| String::from_utf8_lossy(&k.0).into_owned())
        .ok_or_else(|| CredentialsError::SecretMissing {
            name: key_ref.name.clone(),
            key: key_name.to_owned(),
            path: "spec.source.github.app.privateKeySecretRef",
        })?;
    let digest: String = Sha256::digest(pem.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let cache_key = format!(
        "{url}|{}|{}|{}|{digest}",
        app.app_id, app.installation_id, github.repository
    );
    if let Ok(minted) = minted().lock()
        && let Some((token, renew)) = minted.get(&cache_key)
        && Instant::now() < *renew
    {
        return Ok(token.clone());
    }
    let jwt = kubetask_github_app::app_jwt(&app.app_id, &pem, std::time::SystemTime::now())
        .map_err(|e| CredentialsError::App(format!("spec.source.github.app: {e}")))?;
    let name = github
        .repository
        .split_once('/')
        .map_or(github.repository.as_str(), |(_, name)| name)
        .to_owned();
    let mint_url = format!(
        "{url}/app/installations/{}/access_tokens",
        app.installation_id
    );
    let body = serde_json::json!({
        "repositories": [name],
        "permissions": {"issues": "write", "pull_requests": "write", "checks": "write"},
    });
    let bearer = Credentials {
        url: url.to_owned(),
        token: jwt,
        gitlab: false,
    };
    let answer = request(
        &bearer,
        "POST",
        mint_url.clone(),
        Some(body),
        Vec::new(),
        &[],
    )
    .await
    .map_err(|e| CredentialsError::App(format!("POST {mint_url}: {e:#}")))?;
    let token = answer.body["token"].as_str().map(str::to_owned);
    let Some(token) = token.filter(|_| (200..300).contains(&answer.status)) else {
        return Err(CredentialsError::App(format!(
            "GitHub refused an installation token for the App {} (POST {mint_url}: {} {})",
            app.app_id, answer.status, answer.body["message"]
        )));
    };
    let lifetime = answer.body["expires_at"]
        .as_str()
        .and_then(|at| at.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|at| at.as_second() - k8s_openapi::jiff::Timestamp::now().as_second())
        .unwrap_or(3600);
    let renew =
        Instant::now() + Duration::from_secs(u64::try_from(lifetime - 300).unwrap_or(0).min(3600));
    if let Ok(mut minted) = minted().lock() {
        minted.insert(cache_key, (token.clone(), renew));
    }
    Ok(token)
}

/// The trigger's API and token.
pub async fn credentials(
    client: &kube::Client,
    trigger: &TaskTrigger,
) -> Result<Credentials, CredentialsError> {
    let source = &trigger.spec.source;
    if let Some(SourceKind::GitHub(github)) = source.kind()
        && let Some(app) = &github.app
    {
        let url = github
            .api_url
            .as_deref()
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
            .to_owned();
        let token = app_token(client, trigger, github, app, &url).await?;
        return Ok(Credentials {
            url,
            token,
            gitlab: false,
        });
    }
    let path = match source.kind() {
        Some(SourceKind::GitHub(_)) => "spec.source.github.tokenSecretRef",
        Some(SourceKind::GitLab(_)) => "spec.source.gitlab.tokenSecretRef",
        _ => return Err(CredentialsError::NoApi),
    };
    let Some((secret_ref, url, path)) = source.api() else {
        return Err(CredentialsError::NoToken(path));
    };
    let key = secret_ref.key_or("token");
    let token = Api::<Secret>::namespaced(client.clone(), &trigger.namespace().unwrap_or_default())
        .get_opt(&secret_ref.name)
        .await?
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(key))
        .map(|t| String::from_utf8_lossy(&t.0).trim().to_owned())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(CredentialsError::SecretMissing {
            name: secret_ref.name.clone(),
            key: key.to_owned(),
            path,
        });
    };
    Ok(Credentials {
        url: url.trim_end_matches('/').to_owned(),
        token,
        gitlab: matches!(source.kind(), Some(SourceKind::GitLab(_))),
    })
}

/// An answer: its status, its JSON body (`null` when not JSON) and the headers asked for.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<Option<String>>,
}

impl Answer {
    /// Whether the provider refused the token itself (401, or 403 without a spent rate limit).
    pub fn refused_credentials(&self) -> bool {
        self.status == 401
    }
}

/// One request, not retried: `headers` are sent, `read` are the answer's headers returned.
pub async fn request(
    api: &Credentials,
    method: &'static str,
    url: String,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    read: &'static [&'static str],
) -> anyhow::Result<Answer> {
    let api = api.clone();
    tokio::task::spawn_blocking(move || send(&api, method, &url, body.as_ref(), &headers, read))
        .await?
}

fn send(
    api: &Credentials,
    method: &str,
    url: &str,
    body: Option<&Value>,
    headers: &[(&str, String)],
    read: &[&str],
) -> anyhow::Result<Answer> {
    let agent = super::github::client();
    let request = ureq::http::Request::builder().method(method).uri(url);
    let request = if api.gitlab {
        request.header("PRIVATE-TOKEN", &api.token)
    } else {
        request
            .header("Authorization", format!("Bearer {}", api.token))
            .header("Accept", "application/vnd.github+json")
    };
    let request = headers.iter().fold(request, |request, (name, value)| {
        request.header(*name, value)
    });
    let mut response = match body {
        Some(body) => agent.run(
            request
                .header("Content-Type", "application/json")
                .body(body.to_string())?,
        )?,
        None => agent.run(request.body(())?)?,
    };
    let status = response.status().as_u16();
    let headers = read
        .iter()
        .map(|name| {
            response
                .headers()
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .collect();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    })
}

/// A GET: its status and JSON body.
pub async fn get(api: Credentials, url: String) -> anyhow::Result<(u16, Value)> {
    let answer = request(&api, "GET", url, None, Vec::new(), &[]).await?;
    Ok((answer.status, answer.body))
}

/// A write retried on 5xx, 429 and network errors; a 4xx is refused with the provider's
/// message. The answer's JSON body.
pub async fn call(
    api: &Credentials,
    method: &'static str,
    url: String,
    body: Value,
) -> Result<Value, CallError> {
    let mut pauses = BACKOFF.iter();
    loop {
        let error = match request(
            api,
            method,
            url.clone(),
            Some(body.clone()),
            Vec::new(),
            &[],
        )
        .await
        {
            Ok(answer) if (200..300).contains(&answer.status) => return Ok(answer.body),
            Ok(answer) if answer.status < 500 && answer.status != 429 => {
                return Err(CallError::Refused {
                    status: answer.status,
                    message: format!("{method} {url}: {} {}", answer.status, answer.body),
                });
            }
            Ok(answer) => format!("{} {}", answer.status, answer.body),
            Err(error) => error.to_string(),
        };
        let Some(pause) = pauses.next() else {
            return Err(CallError::Failing(format!("{method} {url}: {error}")));
        };
        tokio::time::sleep(*pause).await;
    }
}

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A 4xx: retrying would not help.
    #[error("the provider refused {message}")]
    Refused { status: u16, message: String },
    /// 5xx, 429 or the network, every try.
    #[error("the provider kept failing {0}")]
    Failing(String),
}

impl CallError {
    /// The token itself was refused (401).
    pub fn refused_credentials(&self) -> bool {
        matches!(self, CallError::Refused { status: 401, .. })
    }
}
