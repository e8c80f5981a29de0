//! The auth endpoints: rebuild the request, open the session, decide, answer. This is the
//! path every proxied request takes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::bearer;
use super::cookies::find_cookie;
use super::edge::{Contract, Denial};
use super::session_cache::{open_session, opened_stored, signed_identity};
use crate::config::Audit;
use crate::diag::Origin;
use crate::identity::Identity;
use crate::oidc::access::{BearerError, Verified};
use crate::policy::{Narrowing, NarrowingError, Verdict};
use crate::request::{DESCRIBING, FORWARDED_FOR_LINES, Field, Sources, Subrequest, rebuild};
use crate::session;

/// `GET /oauth2/auth`: nginx `auth_request` and ingress-nginx `auth-url`.
pub async fn nginx(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    answer(&st, peer, req.uri(), req.headers(), Contract::Nginx, true).await
}

/// `GET /oauth2/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy.
pub async fn forward_auth(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    answer(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth, true).await
}

/// `GET /oauth2/forbidden`: the 403 page for nginx's `error_page 403`, after `/oauth2/auth`
/// refused. The same decision as `/oauth2/forward-auth`, but not audited or counted again.
pub async fn forbidden_page(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    answer(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth, false).await
}

/// One auth request, in the pipeline's order: describe and trust it (pure: nothing waits, so
/// an untrusted peer or an undescribable request never causes a key fetch, a signature check
/// or a Redis read), resolve the subject (the only step that may wait), decide (pure), answer.
pub(super) async fn answer(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    contract: Contract,
    record: bool,
) -> Response {
    // Counted only when metrics are served: with metrics off, the check reads no clock for them.
    let started = st.config.metrics_listen.map(|_| Instant::now());
    let seen = Seen::new(headers);
    let ask = match describe(st, peer, uri, &seen, contract) {
        Ok(ask) => ask,
        Err(refused) => {
            if record {
                AuditLine::early(refused.verdict(), refused.code(), &refused).record(
                    st,
                    started,
                    refused.request(),
                    None,
                    peer,
                );
            }
            return refused.into_response(seen.wants_html(), contract);
        }
    };
    let token = match (&st.bearer, ask.token) {
        (Some(b), Some(t)) => Some(bearer::verify(st, b, t).await),
        _ => None,
    };
    let stored = match (&token, &st.store) {
        (None, Some(_)) => super::sessions::stored(st, |n| seen.cookie(n)).await,
        _ => None,
    };
    check(
        st,
        peer,
        &ask,
        &seen,
        contract,
        Read {
            token,
            stored,
            started,
            record,
        },
    )
}

/// A request that is trusted and described: what the decision reads, before anything waits.
struct Ask<'a> {
    /// The original request, pinned to the location's host when it pins one.
    req: crate::request::Request<'a>,
    /// The proxy's narrowing for this location.
    narrow: Narrowing,
    /// A bearer token to verify (with `bearer:` on).
    token: Option<&'a str>,
}

/// Why a request was refused before its subject was looked at.
#[derive(Debug, thiserror::Error)]
enum Early<'a> {
    /// The peer is not trusted, or the request cannot be described.
    #[error(transparent)]
    Untrusted(#[from] crate::request::RequestError),
    /// The proxy's narrowing parameters cannot be used.
    #[error(transparent)]
    Narrowing(#[from] NarrowingError),
    /// The auth endpoint's query is the client's own (Caddy's `forward_auth` keeps the original
    /// query unless its `uri` sets one): the client would choose the narrowing and the pin.
    #[error(
        "the proxy passed the client's query string to the auth endpoint (set the auth URI's query explicitly, e.g. Caddy's `uri /oauth2/forward-auth?`)"
    )]
    ClientQuery(Box<crate::request::Request<'a>>),
    /// A bearer token that cannot be used before any verification (in the URL, or an
    /// unreadable `Authorization`).
    #[error("{0}")]
    Bearer(BearerError, Box<crate::request::Request<'a>>),
}

impl Early<'_> {
    fn verdict(&self) -> Verdict {
        match self {
            Early::Bearer(..) => Verdict::Login,
            _ => Verdict::Forbidden,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Early::Untrusted(_) => "untrusted_request",
            Early::Narrowing(_) | Early::ClientQuery(_) => "bad_narrowing",
            Early::Bearer(..) => "invalid_token",
        }
    }

    fn request(&self) -> Option<&crate::request::Request<'_>> {
        match self {
            Early::ClientQuery(r) | Early::Bearer(_, r) => Some(r),
            _ => None,
        }
    }

    fn into_response(self, html: bool, contract: Contract) -> Response {
        match self {
            Early::Bearer(e, _) => Denial::Bearer {
                error: Some(e.code()),
                description: e.to_string(),
            }
            .into_response(contract),
            Early::Untrusted(_) => untrusted(html, contract),
            Early::Narrowing(_) | Early::ClientQuery(_) => Denial::Forbidden {
                user: None,
                url: String::new(),
                reason: "The proxy's settings for this address are not valid, so forwarden refuses.".into(),
                html,
            }
            .into_response(contract),
        }
    }
}

/// Describe and trust one auth request: pure, nothing waits.
fn describe<'a>(
    st: &AppState,
    peer: SocketAddr,
    uri: &'a Uri,
    seen: &Seen<'a>,
    contract: Contract,
) -> Result<Ask<'a>, Early<'a>> {
    let sources = match contract {
        Contract::Nginx => Sources::Nginx,
        Contract::ForwardAuth => Sources::ForwardAuth,
    };
    let sub = Subrequest {
        peer: peer.ip(),
        header: |n: &str| seen.get(n),
        forwarded_for: seen.forwarded_for,
        sources,
    };
    let mut req = rebuild(&sub, &st.config.trusted_proxies)?;
    let query = uri.query().unwrap_or("");
    if !query.is_empty() && req.uri.split_once('?').is_some_and(|(_, q)| q == query) {
        return Err(Early::ClientQuery(Box::new(req)));
    }
    let narrow = Narrowing::from_query(query).inspect_err(log_once)?;
    // A location that pins its host is judged as that host, whatever the request says.
    if let Some(pin) = &narrow.host {
        req.pin(pin);
    }
    let token = match st.bearer {
        None => None,
        Some(_) => {
            // With bearer tokens on, a token in the URL is refused before it is verified: it
            // would end up in logs and browser histories (RFC 6750 5.3). Names are compared
            // decoded (`access%5Ftoken` is `access_token`).
            let in_query = req.uri.split_once('?').is_some_and(|(_, q)| {
                url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k.eq_ignore_ascii_case("access_token"))
            });
            if in_query {
                return Err(Early::Bearer(BearerError::InQuery, Box::new(req)));
            }
            match bearer::presented(seen.get("authorization")) {
                bearer::Presented::None => None,
                bearer::Presented::Token(t) => Some(t),
                bearer::Presented::Malformed => {
                    return Err(Early::Bearer(BearerError::Unreadable, Box::new(req)));
                }
            }
        }
    };
    Ok(Ask { req, narrow, token })
}

/// Log a narrowing error once per parameter name (a misconfigured location would otherwise
/// write one line per request); at most [`LOGGED_KEYS`] names are remembered.
fn log_once(e: &NarrowingError) {
    static LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut logged) = LOGGED.lock() else { return };
    if logged.len() < LOGGED_KEYS && !logged.iter().any(|k| k == e.key()) {
        logged.push(e.key().to_string());
        tracing::warn!(error = %e, "the proxy's auth request cannot be used; every such request is refused");
    }
}

/// How many distinct narrowing parameter names [`log_once`] remembers.
const LOGGED_KEYS: usize = 64;

/// The request headers the auth endpoints read besides cookies and `X-Forwarded-For`, all in
/// one pass ([`Seen`]).
const READ: [&str; DESCRIBING.len() + 3] = {
    let mut all = [""; DESCRIBING.len() + 3];
    let mut i = 0;
    while i < DESCRIBING.len() {
        all[i] = DESCRIBING[i];
        i += 1;
    }
    all[i] = "access-control-request-method";
    all[i + 1] = "accept";
    all[i + 2] = "authorization";
    all
};

/// The most `Cookie` header bytes read; the rest of a larger set is ignored.
const MAX_COOKIE_BYTES: usize = 64 * 1024;

/// The headers of one auth subrequest, found in a single pass (this runs on every request,
/// and one pass is cheaper than a hashed lookup per name).
struct Seen<'a> {
    values: [Field<'a>; READ.len()],
    forwarded_for: [Option<&'a str>; FORWARDED_FOR_LINES],
    /// The first `Cookie` lines, without allocating; any further ones in `more_cookies`.
    cookies: [Option<&'a str>; 4],
    more_cookies: Vec<&'a str>,
}

impl<'a> Seen<'a> {
    fn new(headers: &'a HeaderMap) -> Self {
        let mut seen = Seen {
            values: [Field::Absent; READ.len()],
            forwarded_for: [None; FORWARDED_FOR_LINES],
            cookies: [None; 4],
            more_cookies: Vec::new(),
        };
        let (mut n_cookies, mut cookie_bytes) = (0, 0);
        for (name, value) in headers {
            let name = name.as_str();
            if name == "cookie" {
                let Ok(v) = value.to_str() else { continue };
                cookie_bytes += v.len();
                if cookie_bytes > MAX_COOKIE_BYTES {
                    continue;
                }
                match seen.cookies.get_mut(n_cookies) {
                    Some(slot) => *slot = Some(v),
                    None => seen.more_cookies.push(v),
                }
                n_cookies += 1;
            } else if name == "x-forwarded-for" {
                // Keep the last lines: the right-most hops are the ones proxies added.
                seen.forwarded_for.rotate_left(1);
                seen.forwarded_for[FORWARDED_FOR_LINES - 1] = Some(value.to_str().unwrap_or("invalid"));
            } else if let Some(i) = READ.iter().position(|r| *r == name) {
                seen.values[i] = match (seen.values[i], value.to_str()) {
                    (Field::Absent, Ok(v)) => Field::One(v),
                    _ => Field::Invalid,
                };
            }
        }
        seen
    }

    /// A header (by lower-case name).
    fn get(&self, name: &str) -> Field<'a> {
        READ.iter()
            .position(|r| *r == name)
            .map_or(Field::Absent, |i| self.values[i])
    }

    /// Whether the client asked for a page (`Accept: text/html`), for a refusal made before the
    /// request was described; afterwards `Request::wants_html` decides.
    fn wants_html(&self) -> bool {
        matches!(self.get("accept"), Field::One(a) if a.contains("text/html"))
    }

    /// The value of the first cookie called `name`.
    fn cookie(&self, name: &str) -> Option<&'a str> {
        let all = self.cookies.iter().flatten().chain(&self.more_cookies).copied();
        find_cookie(all, name)
    }
}

/// What the handler read before the (synchronous) decision.
struct Read {
    /// The bearer token's verification, with `bearer:` on and a token sent.
    token: Option<Result<Arc<Verified>, BearerError>>,
    /// With a session store, the ticket's id and its session.
    stored: Option<([u8; 16], Arc<crate::session::Session>)>,
    /// When the check began (with metrics on).
    started: Option<Instant>,
    /// Write the audit line and count the decision.
    record: bool,
}

/// Decide one described auth request on what the handler read, and answer it.
fn check(
    st: &AppState,
    peer: SocketAddr,
    ask: &Ask<'_>,
    seen: &Seen<'_>,
    contract: Contract,
    read: Read,
) -> Response {
    let Read {
        token,
        stored,
        started,
        record,
    } = read;
    let Ask { req, narrow, .. } = ask;
    let bearer_on = st.bearer.is_some();
    let verified = match token.transpose() {
        Ok(v) => v,
        Err(e) => {
            if record {
                AuditLine::early(Verdict::Login, "invalid_token", &e).record(
                    st,
                    started,
                    Some(req),
                    None,
                    peer,
                );
            }
            return Denial::Bearer {
                error: Some(e.code()),
                description: e.to_string(),
            }
            .into_response(contract);
        }
    };
    let lookup = |n: &str| seen.cookie(n);
    // A bearer token speaks for the request; cookies are not read then.
    let session = match (&verified, &st.store) {
        (Some(_), _) => None,
        // A session store: the session the handler read (from the cache or from Redis).
        (None, Some(_)) => stored.and_then(|(id, s)| opened_stored(st, id, s)),
        (None, None) => open_session(st, lookup),
    };
    let user = match &verified {
        Some(v) => Some(&v.identity),
        None => session.as_deref().map(|s| &s.session.identity),
    };
    let audit = |verdict, route, detail: &dyn std::fmt::Display, code, rule| {
        if record {
            let line = AuditLine {
                verdict,
                code,
                route,
                rule,
                detail,
            };
            line.record(st, started, Some(req), user, peer);
        }
    };
    if let Some(o) = session.as_deref() {
        // A page load with a session due for refresh goes through /oauth2/refresh, a plain
        // request that can set every cookie (a subrequest's Set-Cookie would not reach the
        // browser whole). Other requests pass on the still-valid session meanwhile.
        let due = session::refresh_due(&o.session, st.config.cookie.refresh, (st.clock)());
        if due && req.wants_html && st.provider.as_ref().is_some_and(|p| p.ready().is_some()) {
            audit(
                Verdict::Refresh,
                "-",
                &"the session is due for refresh at the identity provider",
                "refresh_due",
                None,
            );
            let (login, absolute) = sign_in_urls(st, req, "/oauth2/refresh");
            return Denial::Login {
                login,
                absolute,
                navigate: true,
            }
            .into_response(contract);
        }
    }
    let policy = st.policy.load();
    let d = policy.decide(req, user, narrow);
    let route = d.route.map(|r| r.label.as_str()).unwrap_or("-");
    let rule = d.reason.rule().map(|r| &r.origin);
    match d.verdict {
        Verdict::Allow => {
            let mut r = StatusCode::OK.into_response();
            match &verified {
                Some(v) => st
                    .headers
                    .write(Some(&st.headers.values(&v.identity)), r.headers_mut()),
                None => st
                    .headers
                    .write(session.as_deref().map(|o| o.values.as_slice()), r.headers_mut()),
            }
            if let (Some(jwt), Some(name), Some(o)) =
                (&st.config.identity_jwt, &st.headers.jwt, session.as_deref())
            {
                if let Some(v) = signed_identity(st, jwt, o, req) {
                    r.headers_mut().insert(name.clone(), v);
                }
            }
            audit(Verdict::Allow, route, &d.reason, d.reason.code(), rule);
            r
        }
        Verdict::Login | Verdict::Refresh => {
            audit(Verdict::Login, route, &d.reason, d.reason.code(), rule);
            // An API client is asked for a bearer token, never sent to a sign-in page.
            if bearer_on && (verified.is_some() || !req.wants_html) {
                return Denial::Bearer {
                    error: None,
                    description: "sign in, or send a bearer token (Authorization: Bearer …)".into(),
                }
                .into_response(contract);
            }
            let (login, absolute) = sign_in_urls(st, req, "/oauth2/start");
            Denial::Login {
                login,
                absolute,
                navigate: req.wants_html,
            }
            .into_response(contract)
        }
        Verdict::Forbidden => {
            audit(Verdict::Forbidden, route, &d.reason, d.reason.code(), rule);
            let mut r = Denial::Forbidden {
                user: user.cloned().map(Box::new),
                url: req.url(),
                reason: d.reason.explanation().into(),
                html: req.wants_html,
            }
            .into_response(contract);
            if verified.is_some() {
                // RFC 6750 3.1: a valid token that does not allow this.
                r.headers_mut().insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static(
                        "Bearer realm=\"forwarden\", error=\"insufficient_scope\"",
                    ),
                );
            }
            r
        }
    }
}

/// One decision, for the audit log and the metrics.
struct AuditLine<'a> {
    verdict: Verdict,
    /// A short code for why ([`Reason::code`], or one of the edge's own).
    code: &'a str,
    route: &'a str,
    /// Where the deciding rule is written, if one decided.
    rule: Option<&'a Origin>,
    detail: &'a dyn std::fmt::Display,
}

impl<'a> AuditLine<'a> {
    /// A decision the edge made before any route was chosen.
    fn early(verdict: Verdict, code: &'a str, detail: &'a dyn std::fmt::Display) -> Self {
        AuditLine {
            verdict,
            code,
            route: "-",
            rule: None,
            detail,
        }
    }

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
            rule = %OrDash(self.rule),
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

/// An optional place, printed as `-` when there is none.
struct OrDash<'a>(Option<&'a Origin>);

impl std::fmt::Display for OrDash<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(o) => o.fmt(f),
            None => f.write_str("-"),
        }
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
