//! A GitHub App's short-lived installation token, minted for one step from the App's keys in
//! the step's own credential Secret (`github-app-id`, `github-app-installation-id`,
//! `github-app-private-key`, PEM): a JWT signed RS256 with the private key, exchanged at
//! `POST {api}/app/installations/{id}/access_tokens` for a token limited to the one repository
//! and the permissions the step needs (the clone: `contents: read`; the publish step:
//! `contents` and `pull_requests: write`). It expires within the hour; the key never leaves
//! the step. `kubetask-agent github-app-token DIR API REPOSITORY PERMISSION...` prints one (the
//! clone step's script calls it).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The App's private key in a credential directory.
pub const PRIVATE_KEY: &str = "github-app-private-key";
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

/// The App's JWT at `now`: issued a minute back (clock drift), valid nine minutes.
pub fn app_jwt(app_id: &str, private_key_pem: &str, now: SystemTime) -> Result<String, String> {
    let key = private_key(private_key_pem)?;
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = json!({"iat": seconds.saturating_sub(60), "exp": seconds + 540, "iss": app_id});
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "cannot sign the GitHub App's JWT".to_owned())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// An RSA private key from PEM: PKCS#1 (`RSA PRIVATE KEY`, what GitHub gives) or PKCS#8.
pub fn private_key(pem: &str) -> Result<ring::rsa::KeyPair, String> {
    let pkcs1 = pem.contains("BEGIN RSA PRIVATE KEY");
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| format!("{PRIVATE_KEY} is not a PEM private key"))?;
    let parsed = if pkcs1 {
        ring::rsa::KeyPair::from_der(&der)
    } else {
        ring::rsa::KeyPair::from_pkcs8(&der)
    };
    parsed.map_err(|e| format!("{PRIVATE_KEY} is not an RSA private key: {e}"))
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
    use std::time::Duration;

    use super::*;

    const KEY: &str = include_str!("../../../tests/apiserver/fixtures/github-app-test-key.pem");

    #[test]
    fn the_jwt_is_signed_rs256_with_the_apps_claims() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let jwt = app_jwt("12345", KEY, now).unwrap_or_else(|e| panic!("{e}"));
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |part: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap_or_default())
                .unwrap_or(Value::Null)
        };
        assert_eq!(decode(parts[0])["alg"], "RS256");
        let claims = decode(parts[1]);
        assert_eq!(
            (
                claims["iss"].clone(),
                claims["iat"].clone(),
                claims["exp"].clone()
            ),
            (
                json!("12345"),
                json!(1_799_999_940u64),
                json!(1_800_000_540u64)
            )
        );
        let key = private_key(KEY).unwrap_or_else(|e| panic!("{e}"));
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public().as_ref(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        assert!(
            public
                .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
                .is_ok()
        );
    }

    #[test]
    fn a_key_that_is_not_one_is_named() {
        let error = app_jwt(
            "1",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            SystemTime::now(),
        );
        assert!(error.is_err_and(|e| e.contains(PRIVATE_KEY)));
    }
}
