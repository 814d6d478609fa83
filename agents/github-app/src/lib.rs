//! A GitHub App's JWT: RS256 with the App's private key (PEM, PKCS#1 as GitHub gives it, or
//! PKCS#8), `iss` the App's id, issued a minute back (clock drift) and valid nine minutes —
//! what `POST /app/installations/{id}/access_tokens` takes for an installation token. Shared
//! by the agent runner's workspace steps and the triggers' receiver. Pure: no I/O.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

/// What the private key is called in messages (the credential Secret's key).
pub const PRIVATE_KEY: &str = "github-app-private-key";

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

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
