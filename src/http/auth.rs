//! The auth endpoints: rebuild the request, open the session, decide, answer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cookie::Cookie;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::edge::{Contract, Denial};
use crate::config::{Audit, CookieConfig, HeaderNames};
use crate::identity::Identity;
use crate::metrics::Verdict;
use crate::policy::{Narrowing, Outcome, Reason};
use crate::request::{Sources, Subrequest, rebuild};
use crate::session::{self, MAX_CHUNKS};

/// The identity header names, parsed once at startup.
pub struct IdentityHeaders {
    user: HeaderName,
    email: HeaderName,
    preferred_username: HeaderName,
    groups: HeaderName,
    roles: HeaderName,
    claims: Vec<(String, HeaderName)>,
    /// The signed identity JWT header, when `identity_jwt` is configured.
    jwt: Option<HeaderName>,
}

/// A configured header name as a static one. Cloning a name parsed at run time shares a
/// reference count between worker threads on every request; a static name clones for free.
/// The few bytes leaked here are allocated once per configuration.
fn name(s: &str) -> HeaderName {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(valid) => HeaderName::from_static(Box::leak(valid.as_str().to_owned().into_boxed_str())),
        // The config validated every name, so this fallback is never taken.
        Err(_) => HeaderName::from_static("x-auth-request-invalid"),
    }
}

impl IdentityHeaders {
    /// Parse the configured names.
    pub fn new(h: &HeaderNames, jwt: Option<&str>) -> Self {
        IdentityHeaders {
            user: name(&h.user),
            email: name(&h.email),
            preferred_username: name(&h.preferred_username),
            groups: name(&h.groups),
            roles: name(&h.roles),
            claims: h.claims.iter().map(|(c, n)| (c.clone(), name(n))).collect(),
            jwt: jwt.map(name),
        }
    }

    /// The values for a user, in the order of [`IdentityHeaders::names`].
    pub fn values(&self, id: &Identity) -> Vec<HeaderValue> {
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).unwrap_or(HeaderValue::from_static(""));
        let opt = |s: Option<&String>| s.map_or(HeaderValue::from_static(""), |s| value(s));
        let mut v = vec![
            value(&id.subject),
            opt(id.email.as_ref()),
            opt(id.preferred_username.as_ref()),
            value(&id.groups.join(",")),
            value(&id.roles.join(",")),
        ];
        v.extend(
            self.claims
                .iter()
                .map(|(c, _)| value(&id.claim_values(c).join(","))),
        );
        v
    }

    fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.user,
            &self.email,
            &self.preferred_username,
            &self.groups,
            &self.roles,
        ]
        .into_iter()
        .chain(self.claims.iter().map(|(_, h)| h))
    }

    /// Every header, always present, empty when there is no value (Caddy 2.6 would otherwise
    /// forward a literal placeholder).
    fn write(&self, values: Option<&[HeaderValue]>, out: &mut HeaderMap) {
        out.reserve(self.claims.len() + 5);
        for (i, name) in self.names().enumerate() {
            // A fresh copy: cloning the cached value would share its reference count between
            // worker threads, which costs more than copying a few bytes.
            let v = values
                .and_then(|v| v.get(i))
                .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok())
                .unwrap_or(HeaderValue::from_static(""));
            out.insert(name.clone(), v);
        }
    }
}

/// An opened session with its identity headers, as cached.
pub struct Opened {
    /// The session.
    pub session: session::Session,
    /// Identity header values, computed once per session.
    values: Vec<HeaderValue>,
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

/// `GET /oauth2/auth`: nginx `auth_request` and ingress-nginx `auth-url`.
pub async fn nginx(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    check(&st, peer, req.uri(), req.headers(), Contract::Nginx, true)
}

/// `GET /oauth2/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy.
pub async fn forward_auth(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    check(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth, true)
}

/// `GET /oauth2/forbidden`: the 403 page for nginx's `error_page 403`, after `/oauth2/auth`
/// refused. The same decision as `/oauth2/forward-auth`, but not audited or counted again.
pub async fn forbidden_page(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    check(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth, false)
}

/// The request headers the auth endpoints read.
const READ: [&str; 11] = [
    "x-original-url",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-method",
    "x-forwarded-for",
    "x-real-ip",
    "access-control-request-method",
    "accept",
    "host",
];

/// The headers of one auth subrequest, found in a single pass (this runs on every request,
/// and one pass is cheaper than a hashed lookup per name).
struct Seen<'a> {
    values: [Option<&'a str>; READ.len()],
    cookies: [Option<&'a str>; 4],
}

impl<'a> Seen<'a> {
    fn new(headers: &'a HeaderMap) -> Self {
        let mut seen = Seen {
            values: [None; READ.len()],
            cookies: [None; 4],
        };
        let mut n_cookies = 0;
        for (name, value) in headers {
            let name = name.as_str();
            if name == "cookie" {
                if let (Some(slot), Ok(v)) = (seen.cookies.get_mut(n_cookies), value.to_str()) {
                    *slot = Some(v);
                    n_cookies += 1;
                }
            } else if let Some(i) = READ.iter().position(|r| *r == name) {
                if seen.values[i].is_none() {
                    seen.values[i] = value.to_str().ok();
                }
            }
        }
        seen
    }

    /// The first value of a header (by lower-case name).
    fn get(&self, name: &str) -> Option<&'a str> {
        READ.iter().position(|r| *r == name).and_then(|i| self.values[i])
    }

    /// The value of the first cookie called `name`.
    fn cookie(&self, name: &str) -> Option<&'a str> {
        find_cookie(self.cookies.iter().flatten().copied(), name)
    }
}

/// Decide one auth subrequest; `record`: write the audit line and count it.
fn check(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    contract: Contract,
    record: bool,
) -> Response {
    // Counted only when metrics are served: with metrics off, the check reads no clock for them.
    let started = st.config.metrics_listen.map(|_| Instant::now());
    let sources = match contract {
        Contract::Nginx => Sources::Nginx,
        Contract::ForwardAuth => Sources::ForwardAuth,
    };
    let seen = Seen::new(headers);
    let sub = Subrequest {
        peer: peer.ip(),
        header: |n: &str| seen.get(n),
        sources,
    };
    let wants_html = seen.get("accept").is_some_and(|a| a.contains("text/html"));
    let req = match rebuild(&sub, &st.config.trusted_proxies) {
        Ok(r) => r,
        Err(e) => {
            if record {
                let line = AuditLine {
                    verdict: Verdict::Forbidden,
                    code: "untrusted_request",
                    route: "-",
                    rule: "-",
                    detail: &e,
                };
                line.record(st, started, None, None, peer);
            }
            return untrusted(wants_html, contract);
        }
    };
    let lookup = |n: &str| seen.cookie(n);
    let session = open_session(st, lookup);
    let user = session.as_deref().map(|s| &s.session.identity);
    let audit = |verdict, route, detail: &dyn std::fmt::Display, code, rule| {
        if record {
            let line = AuditLine {
                verdict,
                code,
                route,
                rule,
                detail,
            };
            line.record(st, started, Some(&req), user, peer);
        }
    };
    if let (Some(o), Some(every)) = (session.as_deref(), st.config.cookie.refresh) {
        // A page load with a session due for refresh goes through /oauth2/refresh, a plain
        // request that can set every cookie (a subrequest's Set-Cookie would not reach the
        // browser whole). Other requests pass on the still-valid session meanwhile.
        let due = (st.clock)() >= o.session.issued_at.saturating_add(every.as_secs());
        if due && req.wants_html && o.session.refresh_token.is_some() && st.provider.is_some() {
            audit(
                Verdict::Refresh,
                "-",
                &"the session is due for refresh at the identity provider",
                "refresh_due",
                "-",
            );
            let (login, absolute) = sign_in_urls(st, &req, "/oauth2/refresh");
            return Denial::Login {
                login,
                absolute,
                navigate: true,
            }
            .into_response(contract);
        }
    }
    let narrow = Narrowing::from_query(uri.query().unwrap_or(""));
    let policy = st.policy.load();
    let d = policy.decide(&req, user, &narrow);
    let route = d.route.map(|r| r.origin.as_str()).unwrap_or("-");
    let rule = d.reason.rule().map(|r| r.origin.as_str()).unwrap_or("-");
    match d.outcome {
        Outcome::Allow => {
            let mut r = StatusCode::OK.into_response();
            st.headers
                .write(session.as_deref().map(|o| o.values.as_slice()), r.headers_mut());
            if let (Some(jwt), Some(name), Some(o)) =
                (&st.config.identity_jwt, &st.headers.jwt, session.as_deref())
            {
                if let Some(v) = signed_identity(st, jwt, o, &req) {
                    r.headers_mut().insert(name.clone(), v);
                }
            }
            audit(Verdict::Allow, route, &d.reason, d.reason.code(), rule);
            r
        }
        Outcome::Login => {
            audit(Verdict::Login, route, &d.reason, d.reason.code(), rule);
            let (login, absolute) = sign_in_urls(st, &req, "/oauth2/start");
            Denial::Login {
                login,
                absolute,
                navigate: req.wants_html,
            }
            .into_response(contract)
        }
        Outcome::Forbidden => {
            audit(Verdict::Forbidden, route, &d.reason, d.reason.code(), rule);
            let reason = match d.reason {
                Reason::NoRoute => "This address is not protected by any route, so it is closed to everyone.",
                Reason::Denied(_) => "A rule of this site denies access to your account.",
                Reason::Narrowed(_) | Reason::UnknownPolicy(_) => {
                    "This part of the site is limited to other groups or accounts."
                }
                _ => "Your account is not on this site's access list.",
            };
            Denial::Forbidden {
                user: user.cloned().map(Box::new),
                url: req.url(),
                reason: reason.into(),
                html: req.wants_html,
            }
            .into_response(contract)
        }
    }
}

/// One decision, for the audit log and the metrics.
struct AuditLine<'a> {
    verdict: Verdict,
    /// A short code for why ([`Reason::code`], or one of the edge's own).
    code: &'a str,
    route: &'a str,
    /// `file:line:column` of the deciding rule, or `-`.
    rule: &'a str,
    detail: &'a dyn std::fmt::Display,
}

impl AuditLine<'_> {
    /// Count the decision (when metrics are on; `started` is then when the check began) and
    /// write its audit line (every decision but a plain allow, or all with `audit: all`).
    fn record(
        &self,
        st: &AppState,
        started: Option<Instant>,
        req: Option<&crate::request::Request<'_>>,
        user: Option<&Identity>,
        peer: SocketAddr,
    ) {
        if let Some(t) = started {
            st.metrics
                .decision(self.verdict, self.route, t.elapsed().as_secs_f64());
        }
        if self.verdict == Verdict::Allow && st.config.audit != Audit::All {
            return;
        }
        tracing::info!(
            target: "forwarden::audit",
            result = self.verdict.as_str(),
            reason = self.code,
            rule = self.rule,
            route = self.route,
            user = or_dash(user.map(|u| u.subject.as_str())),
            email = or_dash(user.and_then(|u| u.email.as_deref())),
            tenant = or_dash(user.map(|u| u.tenant.as_str())),
            host = or_dash(req.map(|r| r.host.as_ref())),
            path = or_dash(req.map(|r| r.path.as_ref())),
            method = or_dash(req.map(|r| r.method.as_ref())),
            client_ip = %req.and_then(|r| r.client_ip).unwrap_or(peer.ip()),
            detail = %self.detail,
            "decision"
        );
    }
}

/// The value, or `-` when there is none (audit fields are always present).
fn or_dash(s: Option<&str>) -> &str {
    s.filter(|s| !s.is_empty()).unwrap_or("-")
}

fn untrusted(html: bool, contract: Contract) -> Response {
    Denial::Forbidden {
        user: None,
        url: String::new(),
        reason: "forwarden could not tell which address was requested, so it refuses.".into(),
        html,
    }
    .into_response(contract)
}

/// The signed identity JWT for this session and host: reused from the session's cache while
/// it has more than half its lifetime left (ES256 signing costs far more than the rest of a
/// check), signed anew otherwise.
fn signed_identity(
    st: &AppState,
    jwt: &crate::config::IdentityJwt,
    o: &Opened,
    req: &crate::request::Request<'_>,
) -> Option<HeaderValue> {
    let now = (st.clock)();
    let lifetime = jwt.lifetime.as_secs();
    // The host without a port: what the upstream sees as its Host behind nginx's `$host`.
    let aud = req.host.as_ref();
    let mut cache = o.jwts.borrow_mut();
    if let Some((_, _, v)) = cache
        .iter()
        .find(|(a, iat, _)| a == aud && now < iat.saturating_add(lifetime / 2) && now >= *iat)
    {
        return HeaderValue::from_bytes(v.as_bytes()).ok();
    }
    let iss = match &st.config.public_url {
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

/// The URL of a sign-in endpoint (`/oauth2/start`, `/oauth2/refresh`) that returns to the
/// original URL: relative and absolute on this host, or on `public_url` in central mode.
fn sign_in_urls(st: &AppState, req: &crate::request::Request<'_>, endpoint: &str) -> (String, String) {
    let path = format!(
        "{endpoint}?rd={}",
        utf8_percent_encode(&req.url(), NON_ALPHANUMERIC)
    );
    match &st.config.public_url {
        Some(p) => {
            let abs = format!("{}{path}", p.as_str().trim_end_matches('/'));
            (abs.clone(), abs)
        }
        None => {
            let abs = format!("{}{path}", req.origin());
            (path, abs)
        }
    }
}

/// The request's session, from this thread's cache or by opening the cookie.
fn open_session<'a>(st: &AppState, lookup: impl Fn(&str) -> Option<&'a str>) -> Option<Rc<Opened>> {
    let cookie = &st.config.cookie;
    let now = (st.clock)();
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
            .filter(|o| o.instance == st.instance && o.sealed == value)
            .cloned()
    });
    if let Some(o) = hit {
        return session::is_current(&o.session, now).then_some(o);
    }
    match session::open_value(&value, &cookie.keys, &cookie.name, now) {
        Ok(s) => {
            let values = st.headers.values(&s.identity);
            let key: Box<str> = key.into();
            let o = Rc::new(Opened {
                session: s,
                values,
                sealed: value.into_owned(),
                instance: st.instance,
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

/// The session of a request that is not an auth subrequest (userinfo, sign-out).
pub fn session_of(st: &AppState, headers: &HeaderMap) -> Option<Rc<Opened>> {
    open_session(st, |n: &str| request_cookie(headers, n))
}

/// `Set-Cookie` values deleting every session cookie name (the single one and every chunk).
pub fn clear_session(c: &CookieConfig) -> Vec<HeaderValue> {
    std::iter::once(c.name.clone())
        .chain((0..MAX_CHUNKS).map(|i| format!("{}_{i}", c.name)))
        .filter_map(|n| set_cookie(c, &n, "", "/", Some(0)))
        .collect()
}

/// The value of the first cookie called `name` in these `Cookie` header values.
pub fn find_cookie<'a>(headers: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers.into_iter().find_map(|h| {
        h.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
    })
}

/// The value of the first cookie called `name` in a request.
pub fn request_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    find_cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// A `Set-Cookie` value with forwarden's attributes: HttpOnly, SameSite=Lax, Secure as
/// configured, the configured domain. `max_age` in seconds (`Some(0)` deletes).
pub fn set_cookie(
    c: &CookieConfig,
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<i64>,
) -> Option<HeaderValue> {
    let mut k = Cookie::build((name.to_string(), value.to_string()))
        .path(path.to_string())
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(c.secure);
    if let Some(s) = max_age {
        k = k.max_age(cookie::time::Duration::seconds(s));
    }
    if let Some(d) = &c.domain {
        k = k.domain(d.clone());
    }
    HeaderValue::from_str(&k.build().to_string()).ok()
}
