//! Per-Task credentials of the exit: the proxy URL's userinfo is `<namespace>.<task>:<token>`,
//! the token an HMAC-SHA256 of the Task's namespace, name and uid under a key only the
//! controller and the exit hold. Nothing is stored per Task: the exit recomputes the token of
//! the Task the user name names and compares in constant time, so another Task's token, a
//! deleted Task's or one of an earlier Task of the same name (another uid) is refused.

use ring::hmac;

/// The key tokens are signed with (the `kubetask-egress-key` Secret, at least 32 bytes).
#[derive(Clone)]
pub struct TokenKey(hmac::Key);

/// Fewest bytes of a token key.
pub const MIN_KEY_BYTES: usize = 32;

impl TokenKey {
    /// A key from its bytes; `None` when shorter than [`MIN_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_KEY_BYTES).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// A random key nobody else holds (offline rendering: its tokens open nothing).
    pub fn throwaway() -> Option<Self> {
        hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .ok()
            .map(Self)
    }

    /// The token of one Task (64 lower-case hex digits: safe in a URL's userinfo).
    pub fn token(&self, namespace: &str, name: &str, uid: &str) -> String {
        let tag = hmac::sign(&self.0, &message(namespace, name, uid));
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `token` is this Task's, compared in constant time.
    pub fn verify(&self, namespace: &str, name: &str, uid: &str, token: &str) -> bool {
        let Some(tag) = from_hex(token) else {
            return false;
        };
        hmac::verify(&self.0, &message(namespace, name, uid), &tag).is_ok()
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

fn message(namespace: &str, name: &str, uid: &str) -> Vec<u8> {
    // Separated by NUL, which none of the three can hold.
    format!("kubetask-egress\0{namespace}\0{name}\0{uid}").into_bytes()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digits = text.as_bytes();
    digits
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// The user name of a Task in the proxy URL: `<namespace>.<task>` (a namespace holds no dot).
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// The namespace and Task a user name names.
pub fn parse_user_name(user: &str) -> Option<(&str, &str)> {
    user.split_once('.')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TokenKey {
        match TokenKey::new(&[byte; 32]) {
            Some(k) => k,
            None => panic!("32 bytes refused"),
        }
    }

    #[test]
    fn a_token_is_valid_for_its_task_only() {
        let key = key(7);
        let token = key.token("team-a", "fix.bug", "uid-1");
        assert_eq!(token.len(), 64);
        assert!(key.verify("team-a", "fix.bug", "uid-1", &token));
        assert!(
            !key.verify("team-a", "fix.bug", "uid-2", &token),
            "recreated Task"
        );
        assert!(
            !key.verify("team-a", "other", "uid-1", &token),
            "another Task"
        );
        assert!(
            !key.verify("team-b", "fix.bug", "uid-1", &token),
            "another namespace"
        );
        assert!(
            !TokenKey::new(&[8; 32])
                .is_some_and(|k| k.verify("team-a", "fix.bug", "uid-1", &token))
        );
        let mut flipped = token.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert!(!key.verify("team-a", "fix.bug", "uid-1", &flipped));
        assert!(!key.verify("team-a", "fix.bug", "uid-1", &"zz".repeat(32)));
        assert!(!key.verify("team-a", "fix.bug", "uid-1", ""));
        assert!(!key.verify("team-a", "fix.bug", "uid-1", &token[..62]));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenKey::new(&[1; 31]).is_none());
    }

    #[test]
    fn user_names_split_at_the_namespace() {
        assert_eq!(
            parse_user_name(&user_name("ns", "a.b")),
            Some(("ns", "a.b"))
        );
        assert_eq!(parse_user_name("nodot"), None);
        assert_eq!(parse_user_name(".x"), None);
        assert_eq!(parse_user_name("x."), None);
    }
}
