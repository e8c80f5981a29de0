//! The session cookie: the identity, sealed.
//!
//! The whole session is encoded compactly (postcard; Entra group object ids as 16 raw bytes
//! instead of 36 characters), sealed once with AES-256-GCM under a key derived from the first
//! configured secret, with the cookie name as associated data, and base64url-encoded. When the
//! result exceeds `CHUNK` bytes it is split over `name_0`, `name_1`, …, the first chunk saying
//! how many there are. Because the seal covers the whole value, a truncated, reordered, mixed
//! or tampered set of chunks fails to open exactly like a forged one: "not logged in".
//!
//! Pure: the caller passes the time and the nonce.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;

/// Largest cookie value written; browsers allow about 4096 bytes per cookie with its name and
/// attributes.
pub(crate) const CHUNK: usize = 3800;
/// Most chunks read back: a bound on what a client can make us concatenate.
pub(crate) const MAX_CHUNKS: usize = 8;
/// The most session cookie bytes written before groups are reduced: with the application's own
/// cookies it stays within one 8 KiB header line, nginx's default `large_client_header_buffers`.
pub(crate) const BUDGET: usize = 6 * 1024;
/// The claim that marks a session whose groups were reduced to those the policies name.
pub(crate) const GROUPS_REDUCED: &str = "forwarden:groups_reduced";
/// Leeway for a session issued "in the future" by a server with a slightly different clock.
const SKEW: u64 = 60;
const FORMAT: u8 = 2;

/// A signed-in session.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// Who.
    pub identity: Identity,
    /// When it was issued (Unix seconds).
    pub issued_at: u64,
    /// When it stops being valid (Unix seconds).
    pub expires_at: u64,
    /// The provider's refresh token, when it gave one (sealed like the rest; never printed).
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("identity", &self.identity)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Why a cookie did not open. All of these mean "not logged in".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No session cookie.
    #[error("no session cookie")]
    Missing,
    /// Chunks missing, too many, or not base64.
    #[error("malformed session cookie")]
    Malformed,
    /// No key opens it: tampered, truncated, reordered, or sealed with a key we do not have.
    #[error("session cookie does not open with any configured key")]
    Sealed,
    /// It opened but its contents are not a session of this format.
    #[error("session cookie has an unknown format")]
    Format,
    /// Past its expiry.
    #[error("session expired")]
    Expired,
    /// Too large to write: more cookies than forwarden reads back, even with the groups
    /// reduced to those the policies name.
    #[error("the session is too large for cookies")]
    TooLarge,
}

/// The keys that seal and open sessions. The first seals; all open (key rotation).
#[derive(Clone)]
pub struct Keys {
    ciphers: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} keys, redacted)", self.ciphers.len())
    }
}

impl Keys {
    /// Derive one AES-256 key per secret (HKDF-SHA256). Secrets are validated by the config.
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        let ciphers = secrets
            .iter()
            .map(|s| {
                let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"forwarden session"), s.as_ref());
                let mut key = [0u8; 32];
                // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
                let _ = hk.expand(b"aes-256-gcm v1", &mut key);
                Aes256Gcm::new(&key.into())
            })
            .collect();
        Keys { ciphers }
    }
}

/// The encoded form: short field names are postcard positions, not text.
#[derive(Serialize, Deserialize)]
struct Wire {
    format: u8,
    issued_at: u64,
    expires_at: u64,
    subject: String,
    tenant: String,
    email: Option<String>,
    preferred_username: Option<String>,
    name: Option<String>,
    guid_groups: Vec<[u8; 16]>,
    other_groups: Vec<String>,
    roles: Vec<String>,
    claims: Vec<(String, String)>,
    refresh_token: Option<String>,
}

/// Lower-case hyphenated GUID to bytes, only when it prints back identically.
fn guid_bytes(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
    if hex.len() != 32 || !hex.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

fn guid_string(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 0xf)]));
    }
    s
}

fn aad(cookie_name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(cookie_name.len() + 12);
    v.extend_from_slice(b"forwarden/1/");
    v.extend_from_slice(cookie_name.as_bytes());
    v
}

/// Seal bytes for the cookie `cookie_name`: base64url of nonce and AES-256-GCM ciphertext, the
/// cookie name bound as associated data. The first key seals.
pub(crate) fn seal_bytes(plain: &[u8], keys: &Keys, cookie_name: &str, nonce: [u8; 12]) -> String {
    let Some(cipher) = keys.ciphers.first() else {
        return String::new();
    };
    let aad = aad(cookie_name);
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    let mut raw = Vec::with_capacity(12 + sealed.len());
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&sealed);
    B64.encode(raw)
}

/// Open what [`seal_bytes`] sealed for `cookie_name`, with any of the keys.
pub(crate) fn open_bytes(value: &str, keys: &Keys, cookie_name: &str) -> Result<Vec<u8>, SessionError> {
    let raw = B64.decode(value).map_err(|_| SessionError::Malformed)?;
    if raw.len() < 12 + 16 {
        return Err(SessionError::Malformed);
    }
    let (nonce, sealed) = raw.split_at(12);
    let aad = aad(cookie_name);
    keys.ciphers
        .iter()
        .find_map(|c| {
            c.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()
        })
        .ok_or(SessionError::Sealed)
}

/// A session's compact encoding (what a cookie, or a store's record, seals).
pub(crate) fn encode(session: &Session) -> Vec<u8> {
    let id = &session.identity;
    let (mut guid_groups, mut other_groups) = (Vec::new(), Vec::new());
    for g in &id.groups {
        match guid_bytes(g) {
            Some(b) => guid_groups.push(b),
            None => other_groups.push(g.clone()),
        }
    }
    let wire = Wire {
        format: FORMAT,
        issued_at: session.issued_at,
        expires_at: session.expires_at,
        subject: id.subject.clone(),
        tenant: id.tenant.clone(),
        email: id.email.clone(),
        preferred_username: id.preferred_username.clone(),
        name: id.name.clone(),
        guid_groups,
        other_groups,
        roles: id.roles.clone(),
        claims: id.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        refresh_token: session.refresh_token.clone(),
    };
    postcard::to_allocvec(&wire).unwrap_or_default()
}

/// Seal a session into `(cookie name, value)` pairs: one cookie `name`, or chunks `name_0…`.
pub fn seal(session: &Session, keys: &Keys, cookie_name: &str, nonce: [u8; 12]) -> Vec<(String, String)> {
    let plain = encode(session);
    let value = seal_bytes(&plain, keys, cookie_name, nonce);
    if value.len() <= CHUNK {
        return vec![(cookie_name.to_string(), value)];
    }
    let parts: Vec<&str> = value
        .as_bytes()
        // Two bytes of room for the "n." count on the first chunk (n is at most MAX_CHUNKS).
        .chunks(CHUNK - 2)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    let n = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let v = if i == 0 {
                format!("{n}.{p}")
            } else {
                (*p).to_string()
            };
            (format!("{cookie_name}_{i}"), v)
        })
        .collect()
}

/// Seal a session so that it fits: when the whole identity is over [`BUDGET`], keep only the
/// groups `needed` says a policy names, and mark the session with [`GROUPS_REDUCED`]. Fails
/// when even that is more than forwarden reads back ([`MAX_CHUNKS`] cookies).
pub(crate) fn seal_fitting(
    session: &mut Session,
    keys: &Keys,
    cookie_name: &str,
    nonce: [u8; 12],
    needed: impl Fn(&str) -> bool,
) -> Result<Vec<(String, String)>, SessionError> {
    let size = |c: &[(String, String)]| c.iter().map(|(_, v)| v.len()).sum::<usize>();
    let cookies = seal(session, keys, cookie_name, nonce);
    if size(&cookies) <= BUDGET {
        return Ok(cookies);
    }
    let groups = &mut session.identity.groups;
    let before = groups.len();
    groups.retain(|g| needed(g));
    if groups.len() < before {
        session
            .identity
            .claims
            .insert(GROUPS_REDUCED.into(), format!("{} of {before}", groups.len()));
    }
    let cookies = seal(session, keys, cookie_name, nonce);
    if cookies.len() > MAX_CHUNKS {
        return Err(SessionError::TooLarge);
    }
    Ok(cookies)
}

/// The sealed value from the request's cookies: the single cookie, or the chunks joined in
/// the order the first chunk announces (`get` looks a cookie up by name).
pub(crate) fn sealed_value<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    cookie_name: &str,
) -> Result<std::borrow::Cow<'a, str>, SessionError> {
    if let Some(v) = get(cookie_name) {
        return Ok(std::borrow::Cow::Borrowed(v));
    }
    let first = get(&format!("{cookie_name}_0")).ok_or(SessionError::Missing)?;
    let (n, head) = first.split_once('.').ok_or(SessionError::Malformed)?;
    let n: usize = n.parse().map_err(|_| SessionError::Malformed)?;
    if !(2..=MAX_CHUNKS).contains(&n) {
        return Err(SessionError::Malformed);
    }
    let mut all = String::with_capacity(n * CHUNK);
    all.push_str(head);
    for i in 1..n {
        all.push_str(get(&format!("{cookie_name}_{i}")).ok_or(SessionError::Malformed)?);
    }
    Ok(std::borrow::Cow::Owned(all))
}

/// Open the session from the request's cookies (`get` looks a cookie up by name).
pub fn open<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    keys: &Keys,
    cookie_name: &str,
    now: u64,
) -> Result<Session, SessionError> {
    let value = sealed_value(get, cookie_name)?;
    open_value(&value, keys, cookie_name, now)
}

/// The session with its refresh put off: due again `retry` from `now` (the identity provider
/// had trouble). `issued_at` is moved so that `issued_at + every` falls then; the expiry stays.
pub(crate) fn postpone_refresh(
    mut s: Session,
    every: std::time::Duration,
    retry: std::time::Duration,
    now: u64,
) -> Session {
    let due_again = now.saturating_add(retry.as_secs());
    s.issued_at = due_again.saturating_sub(every.as_secs()).min(now);
    s
}

/// Whether a session is due for refresh at the identity provider: it is older than `every`
/// (`cookie.refresh`; `None`: never) and has a refresh token to use.
pub(crate) fn refresh_due(s: &Session, every: Option<std::time::Duration>, now: u64) -> bool {
    match every {
        Some(every) => s.refresh_token.is_some() && now >= s.issued_at.saturating_add(every.as_secs()),
        None => false,
    }
}

/// Whether a session is valid at `now` (not expired, not issued in the future).
pub(crate) fn is_current(s: &Session, now: u64) -> bool {
    now < s.expires_at && s.issued_at <= now + SKEW
}

/// Open a sealed value (as [`sealed_value`] returns it).
pub(crate) fn open_value(
    value: &str,
    keys: &Keys,
    cookie_name: &str,
    now: u64,
) -> Result<Session, SessionError> {
    if value.len() > MAX_CHUNKS * CHUNK {
        return Err(SessionError::Malformed);
    }
    let plain = open_bytes(value, keys, cookie_name)?;
    decode(&plain, now)
}

/// A session from its encoding ([`encode`]), valid at `now`.
pub(crate) fn decode(plain: &[u8], now: u64) -> Result<Session, SessionError> {
    let wire: Wire = postcard::from_bytes(plain).map_err(|_| SessionError::Format)?;
    if wire.format != FORMAT {
        return Err(SessionError::Format);
    }
    if now >= wire.expires_at || wire.issued_at > now + SKEW {
        return Err(SessionError::Expired);
    }
    let mut groups: Vec<String> = wire.guid_groups.iter().map(guid_string).collect();
    groups.extend(wire.other_groups);
    Ok(Session {
        issued_at: wire.issued_at,
        expires_at: wire.expires_at,
        refresh_token: wire.refresh_token,
        identity: Identity {
            subject: wire.subject,
            tenant: wire.tenant,
            email: wire.email,
            preferred_username: wire.preferred_username,
            name: wire.name,
            groups,
            roles: wire.roles,
            claims: wire.claims.into_iter().collect::<BTreeMap<_, _>>(),
            ..Identity::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample(groups: usize) -> Session {
        Session {
            identity: Identity {
                subject: "00000000-0000-0000-0000-00000000000a".into(),
                tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                email: Some("alice@example.com".into()),
                preferred_username: Some("alice@example.com".into()),
                name: Some("Alice".into()),
                groups: (0..groups)
                    .map(|i| format!("{:08x}-1111-2222-3333-{:012x}", i, i * 7919))
                    .collect(),
                roles: vec!["Admin".into()],
                claims: BTreeMap::from([("department".into(), "R&D".into())]),
                ..Identity::default()
            },
            issued_at: 1_000,
            expires_at: 2_000,
            refresh_token: Some("rt-0123".into()),
        }
    }

    fn jar(c: &[(String, String)]) -> HashMap<String, String> {
        c.iter().cloned().collect()
    }

    fn open_jar(j: &HashMap<String, String>, keys: &Keys, now: u64) -> Result<Session, SessionError> {
        open(|n| j.get(n).map(String::as_str), keys, "_fw", now)
    }

    #[test]
    fn roundtrip_small() {
        let k = Keys::new(&["a".repeat(32)]);
        let c = seal(&sample(3), &k, "_fw", [1; 12]);
        assert_eq!(c.len(), 1);
        assert_eq!(open_jar(&jar(&c), &k, 1_500).unwrap(), sample(3));
    }

    #[test]
    fn two_hundred_guid_groups_fit_in_two_small_cookies() {
        let k = Keys::new(&["a".repeat(32)]);
        let c = seal(&sample(200), &k, "_fw", [2; 12]);
        let total: usize = c.iter().map(|(n, v)| n.len() + v.len() + 3).sum();
        assert!(c.len() <= 2, "{} chunks", c.len());
        assert!(c.iter().all(|(_, v)| v.len() <= CHUNK));
        // nginx's default large_client_header_buffers is 8k per header line.
        assert!(total < 7000, "cookie header would be {total} bytes");
        assert_eq!(open_jar(&jar(&c), &k, 1_500).unwrap(), sample(200));
    }

    #[test]
    fn key_rotation_opens_old_sessions() {
        let old = Keys::new(&["o".repeat(32)]);
        let both = Keys::new(&["n".repeat(32), "o".repeat(32)]);
        let c = seal(&sample(1), &old, "_fw", [3; 12]);
        assert!(open_jar(&jar(&c), &both, 1_500).is_ok());
        assert_eq!(
            open_jar(&jar(&c), &Keys::new(&["n".repeat(32)]), 1_500),
            Err(SessionError::Sealed)
        );
    }

    #[test]
    fn guids_roundtrip_exactly() {
        let g = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(guid_string(&guid_bytes(g).unwrap()), g);
        assert!(guid_bytes("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0").is_none());
    }

    fn guid(i: usize) -> String {
        format!("{i:08x}-0000-4000-8000-000000000000")
    }

    #[test]
    fn a_user_in_a_thousand_groups_keeps_the_groups_policies_name() {
        let keys = Keys::new(&["0123456789abcdef0123456789abcdef"]);
        let mut s = Session {
            identity: Identity {
                subject: "u".into(),
                // Upper case: not packed into 16 bytes, the worst case.
                groups: (0..1000).map(|i| guid(i).to_uppercase()).collect(),
                ..Identity::default()
            },
            issued_at: 1,
            expires_at: 2,
            refresh_token: None,
        };
        let named = [guid(7).to_uppercase(), guid(999).to_uppercase()];
        let cookies = seal_fitting(&mut s, &keys, "_f", [1; 12], |g| named.iter().any(|n| n == g)).unwrap();
        assert_eq!(cookies.len(), 1, "one small cookie");
        assert_eq!(s.identity.groups, named.to_vec());
        assert_eq!(s.identity.claims[GROUPS_REDUCED], "2 of 1000");
        // When the policies name them all, it cannot fit: an error, not an endless sign-in loop.
        let mut all = s.clone();
        all.identity.groups = (0..2000).map(|i| guid(i).to_uppercase()).collect();
        assert_eq!(
            seal_fitting(&mut all, &keys, "_f", [1; 12], |_| true).unwrap_err(),
            SessionError::TooLarge
        );
    }
}
