//! Virtual keys: what an agent holds instead of a provider's key. A key names its Task
//! (namespace, name, uid) and is signed with the gateway's signing key (HMAC-SHA256), so the
//! gateway authenticates a request without reading anything; whether the Task still runs is
//! checked apart (the key dies with its Task). Minted by the controller, which shares the
//! signing key; never derived from anything an agent could guess.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The prefix of every virtual key (so a leaked one is recognisable).
pub const PREFIX: &str = "ktk_";

/// The Task a virtual key was minted for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller {
    pub namespace: String,
    pub task: String,
    pub uid: String,
}

/// Fewest bytes of a signing key.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;

/// Reads a signing key (surrounding white space trimmed), refused with the path named when
/// missing or shorter than [`MIN_SIGNING_KEY_BYTES`].
pub fn read_signing_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let key = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let key = key.trim_ascii().to_vec();
    if key.len() < MIN_SIGNING_KEY_BYTES {
        anyhow::bail!(
            "{}: a signing key needs at least {MIN_SIGNING_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    Ok(key)
}

/// Mints the key of Task `namespace/task` (uid `uid`) with `signing_key`.
pub fn mint(signing_key: &[u8], caller: &Caller) -> String {
    let claims = format!("{}/{}/{}", caller.namespace, caller.task, caller.uid);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, signing_key);
    let tag = ring::hmac::sign(&key, claims.as_bytes());
    format!(
        "{PREFIX}{}.{}",
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The Task `presented` was minted for, if it was minted with `signing_key` (checked in
/// constant time); `None` for anything else.
pub fn verify(signing_key: &[u8], presented: &str) -> Option<Caller> {
    let (claims, tag) = presented.trim().strip_prefix(PREFIX)?.split_once('.')?;
    let claims = URL_SAFE_NO_PAD.decode(claims).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, signing_key);
    ring::hmac::verify(&key, &claims, &tag).ok()?;
    let claims = String::from_utf8(claims).ok()?;
    let mut parts = claims.splitn(3, '/');
    let (namespace, task, uid) = (parts.next()?, parts.next()?, parts.next()?);
    Some(Caller {
        namespace: namespace.to_owned(),
        task: task.to_owned(),
        uid: uid.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_task_and_nothing_else_passes() {
        let caller = Caller {
            namespace: "team-a".to_owned(),
            task: "fix-bug".to_owned(),
            uid: "0b5e-11".to_owned(),
        };
        let key = mint(b"signing", &caller);
        assert!(key.starts_with(PREFIX));
        assert_eq!(verify(b"signing", &key), Some(caller.clone()));
        assert_eq!(verify(b"other signing key", &key), None);
        // Another Task's name with this Task's signature.
        let other = mint(
            b"signing",
            &Caller {
                task: "other".to_owned(),
                ..caller
            },
        );
        let (claims, _) = other.split_once('.').unwrap_or_default();
        let (_, tag) = key.split_once('.').unwrap_or_default();
        assert_eq!(verify(b"signing", &format!("{claims}.{tag}")), None);
        for junk in ["", "sk-ant-api03-real-key", "ktk_", "ktk_a.b", "ktk_!!.??"] {
            assert_eq!(verify(b"signing", junk), None, "{junk}");
        }
    }
}
