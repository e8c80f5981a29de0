//! Opened sessions: the cookie opened once per worker thread and kept with what every later
//! request of that session needs (its answer headers, its signed identity JWTs).

use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue};

use super::cookies::request_cookie;
use super::memo::{self, Memo};
use super::sessions::SessionKeeper;
use crate::config::IdentityJwt;
use crate::oidc::access::Verified;
use crate::request::Request;
use crate::session;
use crate::store::Ticket;

/// An opened session with its identity headers, as cached.
pub struct Opened {
    /// The session.
    pub session: Arc<session::Session>,
    /// The identity headers, computed once per session and shared: Envoy's answer reads them,
    /// an HTTP answer copies the map (no value copied, checked or hashed again).
    pub(crate) headers: Arc<HeaderMap>,
    /// The whole sealed value: a cache hit must match it exactly.
    sealed: String,
    /// Which server state opened it (keys differ between instances).
    instance: u64,
    /// Signed identity JWTs by audience, with the time each was issued (at most a few).
    jwts: RefCell<Vec<(String, u64, HeaderValue)>>,
}

/// The cache key of a sealed value: its last 22 characters, which encode the AES-GCM tag
/// (unique to each seal). Hashing these instead of the whole ~500-byte cookie matters on a
/// path every request takes; the full value is compared on a hit.
fn cache_key(sealed: &str) -> &str {
    let start = sealed.len().saturating_sub(22);
    sealed.get(start..).unwrap_or(sealed)
}

/// The signed identity JWT for this session and host: reused from the session's cache while
/// it has more than half its lifetime left (ES256 signing costs far more than the rest of a
/// check), signed anew otherwise.
pub(crate) fn signed_identity(
    public_url: Option<&url::Url>,
    jwt: &IdentityJwt,
    o: &Opened,
    req: &Request<'_>,
    now: u64,
) -> Option<HeaderValue> {
    let lifetime = jwt.lifetime.as_secs();
    // The host without a port: what the upstream sees as its Host behind nginx's `$host`.
    let aud = req.site.host.as_ref();
    let mut cache = o.jwts.borrow_mut();
    if let Some((_, _, v)) = cache
        .iter()
        .find(|(a, iat, _)| a == aud && now < iat.saturating_add(lifetime / 2) && now >= *iat)
    {
        return Some(v.clone());
    }
    let iss = match public_url {
        Some(p) => p.as_str().trim_end_matches('/').to_string(),
        None => req.origin(),
    };
    let token = match jwt.signer.sign(&o.session.identity, &iss, aud, now, lifetime) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign the identity JWT");
            return None;
        }
    };
    let v = HeaderValue::from_str(&token).ok()?;
    cache.retain(|(a, iat, _)| a != aud && now < iat.saturating_add(lifetime / 2));
    if cache.len() >= 8 {
        cache.clear();
    }
    cache.push((aud.to_string(), now, v.clone()));
    Some(v)
}

/// Bounds of each worker thread's cache; it is emptied when either is reached.
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 4 << 20;

/// Sessions a worker thread has opened, by [`cache_key`], and their sealed bytes.
#[derive(Default)]
struct ThreadCache {
    map: HashMap<Box<str>, Rc<Opened>>,
    bytes: usize,
}

thread_local! {
    /// Each worker thread keeps its own, so the hot path shares nothing between cores (no lock,
    /// no shared reference count). Only successfully opened sessions are kept; a hit must match
    /// the whole sealed value and the server instance, and expiry is checked again on every
    /// hit, so a hit answers exactly what opening the cookie again would.
    static OPENED: RefCell<ThreadCache> = RefCell::new(ThreadCache::default());
}

/// The request's session, from this thread's cache or by opening the cookie.
pub(crate) fn open_session<'a>(
    k: &SessionKeeper,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Option<Rc<Opened>> {
    open_session_at(k, lookup, (k.clock)())
}

/// [`open_session`] at `now` (the check reads the clock once for all it does).
pub(crate) fn open_session_at<'a>(
    k: &SessionKeeper,
    lookup: impl Fn(&str) -> Option<&'a str>,
    now: u64,
) -> Option<Rc<Opened>> {
    let cookie = &k.cookie;
    let value = match session::sealed_value(lookup, &cookie.name) {
        Ok(v) => v,
        Err(session::SessionError::Missing) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "session cookie ignored");
            return None;
        }
    };
    let key = cache_key(&value);
    let hit = OPENED.with_borrow(|m| {
        m.map
            .get(key)
            .filter(|o| o.instance == k.instance && o.sealed == value)
            .cloned()
    });
    if let Some(o) = hit {
        return session::is_current(&o.session, now).then_some(o);
    }
    match session::open_value(&value, &cookie.keys, &cookie.name, now) {
        Ok(s) => {
            let headers = Arc::new(k.headers.map(Some(&s.identity)));
            let key: Box<str> = key.into();
            let o = Rc::new(Opened {
                session: Arc::new(s),
                headers,
                sealed: value.into_owned(),
                instance: k.instance,
                jwts: RefCell::new(Vec::new()),
            });
            OPENED.with_borrow_mut(|c| {
                if c.map.len() >= CACHE_ENTRIES || c.bytes + o.sealed.len() > CACHE_BYTES {
                    c.map.clear();
                    c.bytes = 0;
                }
                c.bytes += o.sealed.len();
                if let Some(old) = c.map.insert(key, o.clone()) {
                    c.bytes = c.bytes.saturating_sub(old.sealed.len());
                }
            });
            Some(o)
        }
        Err(e) => {
            tracing::debug!(error = %e, "session cookie ignored");
            None
        }
    }
}

thread_local! {
    /// With a session store: the ticket each cookie value opens to (opening it costs an AES-GCM
    /// decryption; a cookie value always opens to the same ticket), and the opened session of
    /// each ticket with its header values, reused while the store cache holds the very same
    /// loaded session (a refresh or a revocation replaces or removes it there).
    static TICKETS: RefCell<HashMap<Box<str>, Ticket>> = RefCell::new(HashMap::default());
    static STORED: RefCell<HashMap<[u8; 16], Rc<Opened>>> = RefCell::new(HashMap::default());
}

/// The ticket of the request's cookie (session store).
pub(crate) fn ticket<'a>(k: &SessionKeeper, lookup: impl Fn(&str) -> Option<&'a str>) -> Option<Ticket> {
    let c = &k.cookie;
    let value = session::sealed_value(lookup, &c.name).ok()?;
    if let Some(t) = TICKETS.with_borrow(|m| m.get(value.as_ref()).cloned()) {
        return Some(t);
    }
    let t = Ticket::open(&value, &c.keys, &c.name).ok()?;
    TICKETS.with_borrow_mut(|m| {
        if m.len() >= CACHE_ENTRIES {
            m.clear();
        }
        m.insert(value.as_ref().into(), t.clone());
    });
    Some(t)
}

/// The opened form of a session the store returned, reused per thread while it is the same.
pub(crate) fn opened_stored(
    k: &SessionKeeper,
    id: [u8; 16],
    s: Arc<session::Session>,
    now: u64,
) -> Option<Rc<Opened>> {
    if !session::is_current(&s, now) {
        return None;
    }
    let hit = STORED.with_borrow(|m| {
        m.get(&id)
            .filter(|o| Arc::ptr_eq(&o.session, &s) && o.instance == k.instance)
            .cloned()
    });
    if hit.is_some() {
        return hit;
    }
    let o = Rc::new(Opened {
        headers: Arc::new(k.headers.map(Some(&s.identity))),
        session: s,
        sealed: String::new(),
        instance: k.instance,
        jwts: RefCell::new(Vec::new()),
    });
    STORED.with_borrow_mut(|m| {
        if m.len() >= CACHE_ENTRIES {
            m.clear();
        }
        m.insert(id, o.clone());
    });
    Some(o)
}

thread_local! {
    /// The identity headers of each verified bearer token this thread answered, by its entry in
    /// the verified-token cache.
    static TOKENS: RefCell<Memo<Verified, (), Arc<HeaderMap>>> = RefCell::new(Memo::default());
}

/// A verified bearer token's identity headers, made once per token and thread (a token is
/// checked on every request of its client, like a session cookie).
pub(crate) fn token_headers(k: &SessionKeeper, v: &Arc<Verified>) -> Arc<HeaderMap> {
    memo::get_or_make(&TOKENS, v, (), || Arc::new(k.headers.map(Some(&v.identity))))
}

/// The session of a request that is not an auth subrequest (userinfo, sign-out).
pub fn session_of(k: &SessionKeeper, headers: &HeaderMap) -> Option<Rc<Opened>> {
    open_session(k, |n: &str| request_cookie(headers, n))
}
