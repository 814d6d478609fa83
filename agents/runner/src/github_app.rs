//! A GitHub App's short-lived installation token, minted for one step from the App's keys in
//! the step's own credential Secret (`github-app-id`, `github-app-installation-id`,
//! `github-app-private-key`, PEM): a JWT signed RS256 with the private key, exchanged at
//! `POST {api}/app/installations/{id}/access_tokens` for a token limited to the one repository
//! and the permissions the step needs (the clone: `contents: read`; the publish step:
//! `contents` and `pull_requests: write`). It expires within the hour; the key never leaves
//! the step. `kubetask-agent github-app-token DIR API REPOSITORY PERMISSION...` prints one (the
//! clone step's script calls it).

use std::path::Path;
use std::time::SystemTime;

use serde_json::{Value, json};

/// The App's private key in a credential directory.
pub use kubetask_github_app::{PRIVATE_KEY, app_jwt};
pub const APP_ID: &str = "github-app-id";
pub const INSTALLATION_ID: &str = "github-app-installation-id";

/// Whether `credentials` holds a GitHub App's keys.
pub fn present(credentials: &Path) -> bool {
    credentials.join(PRIVATE_KEY).is_file()
}

/// Mints an installation token for `repository` (its name on GitHub, `repo` of `owner/repo`)
/// with `permissions` (`contents=read`, …) at the API `api`.
pub fn installation_token(
    credentials: &Path,
    api: &str,
    repository: &str,
    permissions: &[(&str, &str)],
) -> Result<String, String> {
    let read = |name: &str| {
        std::fs::read_to_string(credentials.join(name))
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("the GitHub App credentials lack {name}: {e}"))
    };
    let app_id = read(APP_ID)?;
    let installation: u64 = read(INSTALLATION_ID)?
        .parse()
        .map_err(|_| format!("{INSTALLATION_ID} is not a number"))?;
    let jwt = app_jwt(&app_id, &read(PRIVATE_KEY)?, SystemTime::now())?;
    let agent = crate::http::agent();
    let permissions: serde_json::Map<String, Value> = permissions
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let body = json!({"repositories": [repository], "permissions": permissions}).to_string();
    let url = format!(
        "{}/app/installations/{installation}/access_tokens",
        api.trim_end_matches('/')
    );
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {jwt}"))
        .header("Accept", "application/vnd.github+json")
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("POST {url}: {e}"))?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match answer["token"].as_str() {
        Some(token) if (200..300).contains(&status) => Ok(token.to_owned()),
        _ => Err(format!(
            "GitHub refused an installation token for the App {app_id} (POST {url}: {status} {})",
            answer["message"].as_str().unwrap_or(&text)
        )),
    }
}

/// `kubetask-agent github-app-token DIR API REPOSITORY [NAME=LEVEL...]`.
pub fn main(args: &[String]) -> std::process::ExitCode {
    let [dir, api, repository, permissions @ ..] = args else {
        eprintln!(
            "kubetask-agent: usage: kubetask-agent github-app-token CREDENTIALS_DIR API_URL REPOSITORY [PERMISSION=LEVEL...]"
        );
        return std::process::ExitCode::from(2);
    };
    let permissions: Vec<(&str, &str)> = permissions
        .iter()
        .filter_map(|p| p.split_once('='))
        .collect();
    match installation_token(Path::new(dir), api, repository, &permissions) {
        Ok(token) => {
            println!("{token}");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("kubetask-agent: {message}");
            std::process::ExitCode::from(3)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_are_named() {
        let dir = std::env::temp_dir().join(format!("kubetask-app-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let error = installation_token(&dir, "http://127.0.0.1:1", "r", &[]);
        assert!(error.is_err_and(|e| e.contains(APP_ID)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
