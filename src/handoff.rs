//! Single sign-on across registrable domains: the one-time hand-off of a session from the
//! central sign-in host (`public_url`, whose cookies cover `cookie.domain`) to a host under
//! one of `cookie.other_domains`, whose browser cookies the central host cannot set.
//!
//! Pure: the caller gives the time and the random bytes. The target host first sets a pending
//! cookie holding a random nonce ([`Pending`]); the central host, which has the session, seals
//! a [`Code`] naming that host, the nonce's hash and the session's cookies, valid for
//! [`CODE_TTL`] seconds; the target host opens it only with its own pending cookie (so a code
//! copied from a log or another browser opens nothing), and with a session store also marks
//! its id used (so it opens once).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::session::{Keys, SessionError, open_bytes, seal_bytes};

/// How long a hand-off code is valid, in seconds.
pub const CODE_TTL: u64 = 60;
/// How long the target host waits for the central host's answer (the pending cookie's life).
pub const PENDING_TTL: u64 = 120;
/// The longest code sent in a URL: past this the session is too large to hand off in a
/// redirect (nginx reads at most 8 KiB of request line); a session store hands off a ticket.
pub const MAX_CODE: usize = 6000;
/// What a code's seal is bound to (never opens as a session cookie, or the other way round).
const CODE_LABEL: &str = "forwarden-handoff";
/// What a pending cookie's seal is bound to.
const PENDING_LABEL: &str = "forwarden-handoff-pending";

/// The target host's half: the nonce a code must be bound to, and for which host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    nonce: [u8; 16],
    host: String,
    expires: u64,
}

/// A hand-off code: for one host, bound to one browser's pending cookie, for a minute.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    /// Random: what the session store marks used.
    pub id: [u8; 16],
    /// The host it may be opened on.
    pub host: String,
    bind: [u8; 32],
    expires: u64,
    /// The session's cookies as the central host holds them (names and sealed values: a
    /// ticket with a session store, the sealed session otherwise).
    pub cookies: Vec<(String, String)>,
}

impl std::fmt::Debug for Code {
    // The cookies are the session: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Code")
            .field("host", &self.host)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why a hand-off is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// The code or the pending cookie does not open (tampered, another deployment's, garbage).
    #[error("the hand-off code does not open")]
    Sealed,
    /// Older than its minute (or the pending cookie older than its two).
    #[error("the hand-off code has expired")]
    Expired,
    /// For another host.
    #[error("the hand-off code is for another host")]
    OtherHost,
    /// Not started in this browser (no pending cookie, or another one's).
    #[error("the hand-off was not started in this browser")]
    NotThisBrowser,
    /// The session is too large to travel in a redirect.
    #[error("the session is too large to hand off without a session store")]
    TooLarge,
}

impl From<SessionError> for HandoffError {
    fn from(_: SessionError) -> Self {
        HandoffError::Sealed
    }
}

/// The nonce's hash, as the central host receives it (base64url).
pub fn bind_of(p: &Pending) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(p.nonce))
}

/// A pending hand-off for `host`: the sealed cookie value, and what it is.
pub fn pending(
    keys: &Keys,
    host: &str,
    nonce: [u8; 16],
    seal_nonce: [u8; 12],
    now: u64,
) -> (String, Pending) {
    let p = Pending {
        nonce,
        host: host.to_ascii_lowercase(),
        expires: now + PENDING_TTL,
    };
    let bytes = postcard::to_allocvec(&p).unwrap_or_default();
    (seal_bytes(&bytes, keys, PENDING_LABEL, seal_nonce), p)
}

/// The central host's code for `host`, bound to the `bind` the target host sent.
pub fn issue(
    keys: &Keys,
    host: &str,
    bind: &str,
    cookies: Vec<(String, String)>,
    id: [u8; 16],
    seal_nonce: [u8; 12],
    now: u64,
) -> Result<String, HandoffError> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(bind)
        .map_err(|_| HandoffError::NotThisBrowser)?;
    let bind: [u8; 32] = raw.try_into().map_err(|_| HandoffError::NotThisBrowser)?;
    let code = Code {
        id,
        host: host.to_ascii_lowercase(),
        bind,
        expires: now + CODE_TTL,
        cookies,
    };
    let bytes = postcard::to_allocvec(&code).map_err(|_| HandoffError::TooLarge)?;
    let sealed = seal_bytes(&bytes, keys, CODE_LABEL, seal_nonce);
    if sealed.len() > MAX_CODE {
        return Err(HandoffError::TooLarge);
    }
    Ok(sealed)
}

/// The target host opens a code: sealed by this deployment, not expired, for this host, and
/// bound to this browser's pending cookie (`pending`: its sealed value, if the browser sent
/// one).
pub fn accept(
    keys: &Keys,
    code: &str,
    pending: Option<&str>,
    host: &str,
    now: u64,
) -> Result<Code, HandoffError> {
    let code: Code =
        postcard::from_bytes(&open_bytes(code, keys, CODE_LABEL)?).map_err(|_| HandoffError::Sealed)?;
    if now > code.expires {
        return Err(HandoffError::Expired);
    }
    if !code.host.eq_ignore_ascii_case(host) {
        return Err(HandoffError::OtherHost);
    }
    let pending = pending.ok_or(HandoffError::NotThisBrowser)?;
    let p: Pending = open_bytes(pending, keys, PENDING_LABEL)
        .ok()
        .and_then(|b| postcard::from_bytes(&b).ok())
        .ok_or(HandoffError::NotThisBrowser)?;
    if now > p.expires || !p.host.eq_ignore_ascii_case(host) {
        return Err(HandoffError::NotThisBrowser);
    }
    let hash: [u8; 32] = Sha256::digest(p.nonce).into();
    // Equal-length hashes of a secret nonce: comparing them reveals nothing useful.
    if hash != code.bind {
        return Err(HandoffError::NotThisBrowser);
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&["0123456789abcdef0123456789abcdef"])
    }

    #[test]
    fn a_code_opens_once_per_pending_cookie_on_its_host_within_its_minute() {
        let k = keys();
        let (cookie, p) = pending(&k, "wiki.example.org", [1; 16], [2; 12], 1000);
        let cookies = vec![("_forwarden".to_string(), "sealed".to_string())];
        let code = issue(
            &k,
            "wiki.example.org",
            &bind_of(&p),
            cookies.clone(),
            [3; 16],
            [4; 12],
            1001,
        )
        .unwrap();
        let opened = accept(&k, &code, Some(&cookie), "WIKI.example.org", 1030).unwrap();
        assert_eq!(opened.cookies, cookies);
        // Another host, another browser (no pending cookie, or another's), too late, tampered.
        assert_eq!(
            accept(&k, &code, Some(&cookie), "evil.example.org", 1030),
            Err(HandoffError::OtherHost)
        );
        assert_eq!(
            accept(&k, &code, None, "wiki.example.org", 1030),
            Err(HandoffError::NotThisBrowser)
        );
        let (other, _) = pending(&k, "wiki.example.org", [9; 16], [5; 12], 1000);
        assert_eq!(
            accept(&k, &code, Some(&other), "wiki.example.org", 1030),
            Err(HandoffError::NotThisBrowser)
        );
        assert_eq!(
            accept(&k, &code, Some(&cookie), "wiki.example.org", 1062),
            Err(HandoffError::Expired)
        );
        let mut bad = code.clone();
        bad.replace_range(10..12, "AA");
        assert!(accept(&k, &bad, Some(&cookie), "wiki.example.org", 1030).is_err());
        // A pending cookie never opens as a code, nor the other way round.
        assert_eq!(
            accept(&k, &cookie, Some(&code), "wiki.example.org", 1030),
            Err(HandoffError::Sealed)
        );
        // Another deployment's keys open nothing.
        let theirs = Keys::new(&["fedcba9876543210fedcba9876543210"]);
        assert_eq!(
            accept(&theirs, &code, Some(&cookie), "wiki.example.org", 1030),
            Err(HandoffError::Sealed)
        );
    }

    #[test]
    fn a_session_too_large_for_a_redirect_is_refused_not_truncated() {
        let k = keys();
        let (_, p) = pending(&k, "wiki.example.org", [1; 16], [2; 12], 1000);
        let big = vec![("_forwarden_0".to_string(), "x".repeat(7000))];
        assert_eq!(
            issue(&k, "wiki.example.org", &bind_of(&p), big, [3; 16], [4; 12], 1000),
            Err(HandoffError::TooLarge)
        );
    }
}
