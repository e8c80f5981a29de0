//! Server-side sessions (`session_store:`), the pure part: what the cookie carries and how a
//! session is sealed in the store. The Redis transport is [`redis`].
//!
//! The cookie carries only a *ticket*: a random session id and a random per-session key, sealed
//! with the cookie keys like a cookie session (so a forged or altered ticket never opens). The
//! store keeps the session under the id, sealed with the ticket's key and bound to the id: a
//! copy of the store's data alone opens nothing, and a record cannot be moved to another id.
//! Beside the sealed record the store keeps what listing and revocation need in the clear: the
//! user's id and email, the issue and expiry times and the provider's session id (`sid`).

pub mod redis;

use crate::identity::Identity;
use crate::session::{self, Keys, Session, SessionError};

pub use crate::identity::PROVIDER_SID as SID;

/// A session's ticket: its id in the store and the key its record is sealed with.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The session id.
    pub id: [u8; 16],
    key: [u8; 32],
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({}, key redacted)", self.id_hex())
    }
}

/// The first byte of a sealed ticket: tells a ticket from a cookie session.
const TICKET: u8 = b'T';

impl Ticket {
    /// A new ticket from 48 random bytes.
    pub fn new(random: [u8; 48]) -> Self {
        let mut id = [0u8; 16];
        let mut key = [0u8; 32];
        id.copy_from_slice(&random[..16]);
        key.copy_from_slice(&random[16..]);
        Ticket { id, key }
    }

    /// The id as the store names it.
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// The cookie value.
    pub fn seal(&self, keys: &Keys, cookie_name: &str, nonce: [u8; 12]) -> String {
        let mut plain = Vec::with_capacity(49);
        plain.push(TICKET);
        plain.extend_from_slice(&self.id);
        plain.extend_from_slice(&self.key);
        session::seal_bytes(&plain, keys, cookie_name, nonce)
    }

    /// The ticket in a cookie value.
    pub fn open(value: &str, keys: &Keys, cookie_name: &str) -> Result<Self, SessionError> {
        if value.len() > 256 {
            return Err(SessionError::Malformed);
        }
        let plain = session::open_bytes(value, keys, cookie_name)?;
        if plain.len() != 49 || plain[0] != TICKET {
            return Err(SessionError::Format);
        }
        let mut random = [0u8; 48];
        random.copy_from_slice(&plain[1..]);
        Ok(Ticket::new(random))
    }

    fn record_keys(&self) -> (Keys, String) {
        (
            Keys::new(&[self.key]),
            format!("forwarden-record:{}", self.id_hex()),
        )
    }

    /// The session sealed for the store with this ticket's key, bound to its id.
    pub fn seal_record(&self, s: &Session, nonce: [u8; 12]) -> String {
        let (keys, aad) = self.record_keys();
        session::seal_bytes(&session::encode(s), &keys, &aad, nonce)
    }

    /// The session in a record, valid at `now`.
    pub fn open_record(&self, record: &str, now: u64) -> Result<Session, SessionError> {
        let (keys, aad) = self.record_keys();
        let plain = session::open_bytes(record, &keys, &aad)?;
        session::decode(&plain, now)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the store keeps in the clear beside a sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The session id (hex).
    pub id: String,
    /// The user id (`oid`, or `sub`).
    pub subject: String,
    /// The email (or UPN) `userinfo` shows, if any.
    pub email: String,
    /// When the session was signed in or last refreshed (Unix seconds).
    pub issued_at: u64,
    /// When it ends (Unix seconds).
    pub expires_at: u64,
    /// The identity provider's session id, if the ID token had one.
    pub sid: String,
}

impl Meta {
    /// The clear part of a session.
    pub fn of(id: &Ticket, s: &Session) -> Self {
        let i: &Identity = &s.identity;
        Meta {
            id: id.id_hex(),
            subject: i.subject.clone(),
            email: i
                .email
                .clone()
                .or_else(|| i.preferred_username.clone())
                .unwrap_or_default(),
            issued_at: s.issued_at,
            expires_at: s.expires_at,
            sid: i.claims.get(SID).cloned().unwrap_or_default(),
        }
    }

    /// The clear part as Redis holds it (`HMGET u e i x d`), or why it is damaged: a record
    /// without its user id, or whose times are not numbers, is listed as damaged (and removed by
    /// `revoke --all` or `--damaged`), never as a session.
    pub fn from_fields(id: &str, fields: [Option<String>; 5]) -> Result<Self, Damaged> {
        let [u, e, i, x, d] = fields;
        let damaged = |why: &'static str| Damaged {
            id: id.to_string(),
            why,
        };
        let subject = u
            .filter(|u| !u.is_empty())
            .ok_or_else(|| damaged("no user id (u)"))?;
        let time = |v: Option<String>, why| v.and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| damaged(why));
        Ok(Meta {
            id: id.to_string(),
            subject,
            email: e.unwrap_or_default(),
            issued_at: time(i, "no sign-in time (i) as a number")?,
            expires_at: time(x, "no end time (x) as a number")?,
            sid: d.unwrap_or_default(),
        })
    }

    /// Whether `user` (an email, compared without case, or a user id as `userinfo` shows it)
    /// names this session's user.
    pub fn is_user(&self, user: &str) -> bool {
        self.subject == user || (!self.email.is_empty() && self.email.eq_ignore_ascii_case(user))
    }
}

/// A stored session whose clear part is damaged (edited by hand, or by another program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damaged {
    /// The session id (hex).
    pub id: String,
    /// What is wrong.
    pub why: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_record_is_reported_not_listed_nor_fatal() {
        let f = |u: Option<&str>, i: Option<&str>| {
            let s = |v: Option<&str>| v.map(str::to_string);
            [s(u), s(Some("a@example.com")), s(i), s(Some("2000")), None]
        };
        let m = Meta::from_fields("ab", f(Some("oid-1"), Some("1000"))).unwrap();
        assert_eq!(
            (m.subject.as_str(), m.issued_at, m.expires_at),
            ("oid-1", 1000, 2000)
        );
        assert_eq!(
            Meta::from_fields("ab", f(Some("oid-1"), Some("yesterday")))
                .unwrap_err()
                .why,
            "no sign-in time (i) as a number"
        );
        assert_eq!(
            Meta::from_fields("ab", f(None, Some("1000"))).unwrap_err().why,
            "no user id (u)"
        );
        assert_eq!(
            Meta::from_fields("ab", f(Some(""), Some("1000")))
                .unwrap_err()
                .why,
            "no user id (u)"
        );
    }

    fn session() -> Session {
        Session {
            identity: Identity {
                subject: "oid-1".into(),
                email: Some("alice@example.com".into()),
                groups: (0..1000)
                    .map(|i| format!("{i:08x}-aaaa-4bbb-8ccc-000000000000"))
                    .collect(),
                ..Identity::default()
            },
            issued_at: 1_000,
            expires_at: 2_000,
            refresh_token: Some("rt".into()),
        }
    }

    #[test]
    fn ticket_cookie_is_small_and_opens_only_with_the_cookie_keys() {
        let keys = Keys::new(&["cookie-secret-0123456789abcdef0123"]);
        let t = Ticket::new([7; 48]);
        let v = t.seal(&keys, "_forwarden", [1; 12]);
        assert!(v.len() < 120, "{}", v.len());
        assert_eq!(Ticket::open(&v, &keys, "_forwarden").unwrap(), t);
        let other = Keys::new(&["another-secret-0123456789abcdef012"]);
        assert_eq!(
            Ticket::open(&v, &other, "_forwarden").unwrap_err(),
            SessionError::Sealed
        );
        assert!(
            !format!("{t:?}").contains("0707070707070707070707070707070707"),
            "Debug hides the key"
        );
    }

    #[test]
    fn cookie_session_is_not_a_ticket() {
        let keys = Keys::new(&["cookie-secret-0123456789abcdef0123"]);
        let cookie = session::seal(&session(), &keys, "_forwarden", [1; 12]);
        let v = &cookie[0].1;
        assert!(Ticket::open(v, &keys, "_forwarden").is_err());
    }

    #[test]
    fn store_copy_alone_opens_nothing_and_records_stay_with_their_id() {
        let t = Ticket::new([7; 48]);
        let record = t.seal_record(&session(), [2; 12]);
        assert_eq!(t.open_record(&record, 1_500).unwrap().identity.groups.len(), 1000);
        // Another ticket's key, or the same key under another id, opens nothing.
        let mut random = [7; 48];
        random[20] = 8;
        assert!(Ticket::new(random).open_record(&record, 1_500).is_err());
        random = [7; 48];
        random[0] = 9;
        assert!(Ticket::new(random).open_record(&record, 1_500).is_err());
        assert_eq!(t.open_record(&record, 2_000).unwrap_err(), SessionError::Expired);
    }

    #[test]
    fn meta_names_the_user_by_email_or_id() {
        let m = Meta::of(&Ticket::new([7; 48]), &session());
        assert!(m.is_user("Alice@Example.com") && m.is_user("oid-1") && !m.is_user("bob@example.com"));
    }
}
