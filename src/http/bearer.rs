//! Bearer tokens on the auth endpoints: find the token, verify it once, and remember the answer.
//!
//! Verified tokens are cached, keyed by the SHA-256 of the token: at most
//! [`CACHE_BYTES`] in all (each entry counts its identity's size and at least
//! [`MIN_ENTRY_BYTES`], so at most 65,536 entries), each kept until the token's `exp` and at
//! most [`MAX_TTL`]. A refused token is not cached. Each worker thread keeps the tokens it
//! answered from that cache in front of it ([`NEAR`]: by the whole token, under the same time
//! limits, forgotten with it).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustc_hash::FxHashMap;

use sha2::{Digest, Sha256};

use super::AppState;
use crate::config::BearerConfig;
use crate::metrics::Metrics;
use crate::oidc::access::{self, BearerError, TrustedIssuer, Verified};
use crate::oidc::idtoken::IssuerRule;
use crate::oidc::signin::LEEWAY;
use crate::oidc::transport::{KeySource, TransportError};
use crate::request::Field;

/// The most bytes of verified tokens kept.
pub const CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// What one cached token counts at least.
pub const MIN_ENTRY_BYTES: u32 = 512;
/// The longest a verified token is kept (never past its `exp`).
pub const MAX_TTL: Duration = Duration::from_secs(300);

/// `bearer:` at run time.
pub struct Bearer {
    audiences: Vec<String>,
    extra: Vec<(TrustedIssuer, KeySource)>,
    cache: moka::sync::Cache<[u8; 32], Entry>,
    /// Moved on each time `cache` is emptied ([`Bearer::forget_verified`]): what a worker
    /// thread keeps in front of it ([`NEAR`]) counts only while this is unchanged.
    generation: AtomicU64,
    /// Cold verifications (signature math) running at once: half the cores, so that a flood of
    /// tokens that must be verified (valid-looking forgeries) leaves the other half to the
    /// requests with a session or a cached token. The rest wait their turn, in order.
    cold: tokio::sync::Semaphore,
    /// And at most [`COLD_PER_SECOND`] of them a second: a flood waits, and costs the valid
    /// users little (a token is verified once, then cached).
    pace: std::sync::Mutex<Pace>,
}

/// Cold verifications started per second, at most (each token is verified once and cached, so
/// this is the rate of new tokens; bursts of [`COLD_BURST`] pass at once).
pub const COLD_PER_SECOND: f64 = 1000.0;
/// Cold verifications that may start at once after a quiet time.
pub const COLD_BURST: f64 = 200.0;

/// A token bucket for [`Bearer::pace`].
struct Pace {
    tokens: f64,
    last: std::time::Instant,
}

impl Bearer {
    /// Wait for a cold verification's turn under [`COLD_PER_SECOND`].
    async fn paced(&self) {
        loop {
            let wait = {
                let Ok(mut p) = self.pace.lock() else { return };
                let now = std::time::Instant::now();
                p.tokens =
                    (p.tokens + now.duration_since(p.last).as_secs_f64() * COLD_PER_SECOND).min(COLD_BURST);
                p.last = now;
                if p.tokens >= 1.0 {
                    p.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - p.tokens) / COLD_PER_SECOND)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Clone)]
struct Entry {
    verified: Arc<Verified>,
    ttl: Duration,
    /// When the cache stops keeping it (Unix seconds): `ttl` from its verification.
    until: u64,
    weight: u32,
}

struct UntilExp;

impl moka::Expiry<[u8; 32], Entry> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], e: &Entry, _: std::time::Instant) -> Option<Duration> {
        Some(e.ttl)
    }
}

impl Bearer {
    /// From the configuration.
    pub fn new(config: &BearerConfig, timeout: Duration, metrics: &Metrics) -> Result<Self, TransportError> {
        let extra = config
            .issuers
            .iter()
            .map(|i| {
                let source = KeySource::with_timeout(&i.jwks_url, "bearer issuer", timeout, metrics.clone())?;
                let issuer = TrustedIssuer {
                    rule: IssuerRule::Exact(i.issuer.clone()),
                    entra: false,
                    foreign: Some(access::Foreign {
                        trust_client_id: i.trust_client_id,
                        trust_email: i.trust_email,
                    }),
                    // Its tie, else its issuer URL: the name its subjects read under.
                    name: i.provider.clone().unwrap_or_else(|| i.issuer.clone()),
                    sign_in: None,
                };
                Ok((issuer, source))
            })
            .collect::<Result<_, TransportError>>()?;
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_BYTES)
            .weigher(|_, e: &Entry| e.weight)
            .expire_after(UntilExp)
            .build();
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Ok(Bearer {
            audiences: config.audiences.clone(),
            extra,
            cache,
            generation: AtomicU64::new(0),
            cold: tokio::sync::Semaphore::new((cores / 2).max(1)),
            pace: std::sync::Mutex::new(Pace {
                tokens: COLD_BURST,
                last: std::time::Instant::now(),
            }),
        })
    }
}

impl Bearer {
    /// The extra issuers' key sources.
    pub(super) fn sources(&self) -> impl Iterator<Item = &KeySource> {
        self.extra.iter().map(|(_, s)| s)
    }

    /// Drop every verified token (a signing key was withdrawn): the shared cache first, then
    /// what the worker threads keep in front of it (a check that read the generation before
    /// this keeps what it finds under the old one, which no later check uses).
    pub(super) fn forget_verified(&self) {
        self.cache.invalidate_all();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the request's `Authorization` header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No bearer token: no header, or another scheme's single credential (`Basic <token68>`,
    /// for the upstream's own use).
    None,
    /// One token.
    Token(&'a str),
    /// Anything else: `Bearer` without a token, a token that is not a `b64token`, more than one
    /// `Authorization` header, a list, a tab, bytes that are not visible ASCII. Refused: the
    /// upstream receives the header, and could read a token forwarden did not verify.
    Malformed,
}

/// Read the `Authorization` header (RFC 7235: `scheme SP credentials`; RFC 6750 2.1:
/// `Bearer SP b64token`).
pub fn presented(field: Field<'_>) -> Presented<'_> {
    let value = match field {
        // An empty header carries no credential (HAProxy's Lua sends one when there is none).
        Field::Absent | Field::One("") => return Presented::None,
        Field::Invalid => return Presented::Malformed,
        Field::One(v) => v,
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.is_empty() || !scheme.bytes().all(is_tchar) {
        return Presented::Malformed;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return match is_b64token(rest) {
            true => Presented::Token(rest),
            false => Presented::Malformed,
        };
    }
    // Another scheme counts only as one token68 credential: a list (`Basic a, Bearer b`) or
    // parameters could carry a bearer token past the check.
    match rest.is_empty() || is_b64token(rest) {
        true => Presented::None,
        false => Presented::Malformed,
    }
}

/// RFC 7230's `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 6750's `b64token` (RFC 7235's `token68`): `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`.
/// Every byte is judged, without an early exit and by arithmetic only, so that the check runs
/// over whole vectors (a token is read on every bearer check, and is 1–2 KB).
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.bytes().fold(true, |ok, b| ok & is_b64token_byte(b))
}

/// A byte of a `b64token` before its padding.
fn is_b64token_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/')
}

/// The verified-token cache's key of a token it does not hold ([`verified_now`]'s miss): the
/// token's SHA-256, computed once per check.
pub struct Uncached([u8; 32]);

/// Verify a bearer token the cache does not hold, by its signature (the only step here that
/// may wait, for a key fetch), and cache it. The caller has established that the peer is
/// trusted and the request described, and asked [`verified_now`] first.
///
/// `accepts(name)`: whether the route takes tokens of the issuers tied to provider `name`
/// (its `identity_providers`). Another issuer's token is refused before its signature is
/// checked, and a cached token of such an issuer is refused too.
pub async fn verify(
    st: &AppState,
    b: &Bearer,
    token: &str,
    Uncached(key): Uncached,
    accepts: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Arc<Verified>, BearerError> {
    let now = (st.clock)();
    let mut refetched = false;
    loop {
        // A turn for the signature math; not held across a key refetch.
        b.paced().await;
        let turn = b.cold.acquire().await.map_err(|_| BearerError::Malformed)?;
        let verified = verify_once(st, b, token, now, accepts).await;
        drop(turn);
        match verified {
            Err(BearerError::UnknownKey) if !refetched => {
                refetched = true;
                refetch(st, b).await;
            }
            Ok(v) => {
                let verified = Arc::new(v);
                let ttl = Duration::from_secs((verified.exp + LEEWAY).saturating_sub(now)).min(MAX_TTL);
                let weight = weight(&verified);
                b.cache.insert(
                    key,
                    Entry {
                        verified: verified.clone(),
                        ttl,
                        until: now + ttl.as_secs(),
                        weight,
                    },
                );
                return Ok(verified);
            }
            Err(e) => return Err(e),
        }
    }
}

/// A bearer token's verification without waiting, when it can be answered: a token too large
/// to read, or one the verified-token cache holds (refused when the route does not accept its
/// issuer). `Err` when its signature must be checked ([`verify`]).
pub fn verified_now(
    st: &AppState,
    b: &Bearer,
    token: &str,
    accepts: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Result<Arc<Verified>, BearerError>, Uncached> {
    if token.len() > access::MAX_TOKEN_BYTES {
        return Ok(Err(BearerError::TooLarge));
    }
    let judged = |v: Arc<Verified>| match accepts(v.identity.idp()) {
        true => Ok(v),
        false => Err(BearerError::Issuer),
    };
    let now = (st.clock)();
    let generation = b.generation.load(Ordering::SeqCst);
    if let Some(v) = NEAR.with_borrow(|n| n.get(token, generation, now)) {
        return Ok(judged(v));
    }
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if let Some(e) = b.cache.get(&key) {
        if e.verified.exp + LEEWAY > now {
            NEAR.with_borrow_mut(|n| n.keep(token, generation, e.until, &e.verified));
            return Ok(judged(e.verified));
        }
        b.cache.invalidate(&key);
    }
    Err(Uncached(key))
}

thread_local! {
    /// This worker thread's verified tokens, in front of the shared cache: a client presents
    /// its token on every request, and the shared cache's key (the SHA-256 of 1–2 KB) costs a
    /// check more than the rest of its work. Keyed by the whole token and compared whole, so a
    /// fast hash is safe (and only verified tokens are kept).
    static NEAR: RefCell<Near> = RefCell::new(Near::default());
}

/// Bounds of each worker thread's [`NEAR`]; it is emptied when either is reached.
const NEAR_ENTRIES: usize = 1024;
const NEAR_BYTES: usize = 1024 * 1024;

/// [`NEAR`]: token → (the shared cache's generation, until when, the verification).
#[derive(Default)]
struct Near {
    tokens: FxHashMap<Box<str>, (u64, u64, Arc<Verified>)>,
    bytes: usize,
}

impl Near {
    /// The verification of `token`, kept under `generation` and still within its time.
    fn get(&self, token: &str, generation: u64, now: u64) -> Option<Arc<Verified>> {
        self.tokens
            .get(token)
            .filter(|(g, until, _)| *g == generation && *until > now)
            .map(|(_, _, v)| v.clone())
    }

    /// Keep what the shared cache held under `generation` (read before it was looked up).
    fn keep(&mut self, token: &str, generation: u64, until: u64, v: &Arc<Verified>) {
        if self.tokens.len() >= NEAR_ENTRIES || self.bytes + token.len() > NEAR_BYTES {
            self.tokens.clear();
            self.bytes = 0;
        }
        let old = self.tokens.insert(token.into(), (generation, until, v.clone()));
        if old.is_none() {
            self.bytes += token.len();
        }
    }
}

async fn verify_once(
    st: &AppState,
    b: &Bearer,
    token: &str,
    now: u64,
    accepts: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Verified, BearerError> {
    for (_, source) in &b.extra {
        if !source.fetched() {
            source.refetch().await;
        }
    }
    // The sign-in providers' issuers (each under its name, with its own client and tenants),
    // then the extra issuers; only those the route accepts.
    let providers: Vec<_> = st
        .providers
        .iter()
        .filter_map(|p| {
            let ready = p.ready()?;
            let issuer = TrustedIssuer {
                rule: ready.issuer.clone(),
                entra: p.config.entra,
                foreign: None,
                name: p.config.name.clone(),
                sign_in: Some((p.config.client_id.clone(), p.config.allowed_tenants.clone())),
            };
            Some((issuer, ready.keys.keys()))
        })
        .collect();
    let extra_keys: Vec<_> = b.extra.iter().map(|(i, s)| (i, s.keys())).collect();
    let mut issuers = Vec::with_capacity(extra_keys.len() + providers.len());
    issuers.extend(providers.iter().map(|(i, k)| (i, k.as_ref())));
    issuers.extend(extra_keys.iter().map(|(i, k)| (*i, k.as_ref())));
    issuers.retain(|(i, _)| accepts(&i.name));
    access::verify(
        token,
        &issuers,
        &access::Expect {
            audiences: &b.audiences,
            now,
            leeway: LEEWAY,
            allowed_tenants: &[],
            extra_claims: &st.extra_claims,
            sign_in_client: None,
        },
    )
}

/// Fetch every issuer's keys again (each at most once per refetch interval).
async fn refetch(st: &AppState, b: &Bearer) {
    for p in st.providers.iter() {
        p.refetch_jwks().await;
    }
    for (_, source) in &b.extra {
        source.refetch().await;
    }
}

/// What a cached token counts against [`CACHE_BYTES`].
fn weight(v: &Verified) -> u32 {
    let id = &v.identity;
    let strings = id.subject.len()
        + id.tenant.len()
        + id.email.as_ref().map_or(0, String::len)
        + id.preferred_username.as_ref().map_or(0, String::len)
        + id.name.as_ref().map_or(0, String::len)
        + id.groups
            .iter()
            .chain(&id.roles)
            .chain(&id.scopes)
            .map(String::len)
            .sum::<usize>()
        + id.claims.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    u32::try_from(strings + 256)
        .unwrap_or(u32::MAX)
        .max(MIN_ENTRY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_that_is_not_one_bearer_token_is_refused() {
        // The attack: a header the upstream may read as a token while forwarden reads none.
        for value in [
            "Bearer\tabc",
            "Bearer,abc",
            "Bearer  abc",
            "Bearer abc def",
            "Bearer ",
            "Bearer",
            "Basic YWxhZGRpbjpvcGVuc2VzYW1l, Bearer abc",
            "Digest username=\"a\", Bearer abc",
            " Bearer abc",
            "Bearer a\"b",
        ] {
            assert_eq!(presented(Field::One(value)), Presented::Malformed, "{value:?}");
        }
        // Repeated (`Basic …` then `Bearer x`) or not visible ASCII.
        assert_eq!(presented(Field::Invalid), Presented::Malformed);
        assert_eq!(
            presented(Field::One("Bearer abc.def-_~+/==")),
            Presented::Token("abc.def-_~+/==")
        );
        assert_eq!(presented(Field::One("bearer abc")), Presented::Token("abc"));
        assert_eq!(
            presented(Field::One("Basic YWxhZGRpbjpvcGVuc2VzYW1l")),
            Presented::None
        );
        assert_eq!(presented(Field::One("Negotiate")), Presented::None);
        assert_eq!(presented(Field::Absent), Presented::None);
    }

    /// A token the upstream reads apart from the one forwarden verified: every byte is judged
    /// as RFC 6750 defines a `b64token`, in any place of the token, before the padding and in it.
    #[test]
    fn token_smuggling_every_byte_is_judged_as_rfc_6750_b64token() {
        let rfc = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        for b in 0..=255u8 {
            assert_eq!(is_b64token_byte(b), rfc(b), "byte {b:#04x}");
            let Ok(one) = std::str::from_utf8(std::slice::from_ref(&b)) else {
                continue;
            };
            for (token, valid) in [
                (one.to_string(), rfc(b)),
                (format!("abc{one}def"), rfc(b)),
                // Last, `=` is padding.
                (format!("{}{one}", "a".repeat(100)), rfc(b) || b == b'='),
                (format!("abc{one}=="), rfc(b) || b == b'='),
                (format!("abc=={one}"), b == b'='),
            ] {
                assert_eq!(is_b64token(&token), valid, "{token:?}");
            }
        }
        assert!(!is_b64token("=="));
        assert!(is_b64token(&"a".repeat(4000)));
    }

    /// A worker thread's kept token outliving what the shared cache allows: past its time, or
    /// after the shared cache was emptied (a withdrawn signing key), it is not answered; a
    /// token is answered only by the whole of itself; the bounds empty it.
    #[test]
    fn withdrawn_or_expired_token_is_not_answered_from_a_worker_threads_copy() {
        let v = Arc::new(Verified {
            identity: crate::identity::Identity::default(),
            exp: 2_000,
        });
        let mut near = Near::default();
        near.keep("a.b.c", 7, 1_000, &v);
        assert!(near.get("a.b.c", 7, 999).is_some());
        assert!(near.get("a.b.c", 7, 1_000).is_none(), "past its time");
        assert!(
            near.get("a.b.c", 8, 999).is_none(),
            "after the shared cache was emptied"
        );
        assert!(near.get("a.b.", 7, 999).is_none());
        assert!(near.get("a.b.cd", 7, 999).is_none());
        for i in 0..NEAR_ENTRIES {
            near.keep(&format!("t{i}"), 7, 1_000, &v);
        }
        assert!(
            near.get("a.b.c", 7, 999).is_none(),
            "emptied at {NEAR_ENTRIES} tokens"
        );
        let big = "x".repeat(NEAR_BYTES / 2 + 1);
        near.keep(&big, 7, 1_000, &v);
        near.keep(&format!("{big}y"), 7, 1_000, &v);
        assert!(near.get(&big, 7, 999).is_none(), "emptied at {NEAR_BYTES} bytes");
        assert!(near.bytes <= NEAR_BYTES);
    }
}
