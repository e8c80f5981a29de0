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
use crate::policy::{Narrowing, Verdict};
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

/// Verify the bearer token, if any (the only step that may wait), then decide.
pub(super) async fn answer(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    contract: Contract,
    record: bool,
) -> Response {
    let token = bearer::verify(st, headers).await;
    let stored = match (&token, &st.store) {
        (None, Some(_)) => super::sessions::stored(st, headers).await,
        _ => None,
    };
    check(st, peer, uri, headers, contract, record, Read { token, stored })
}

/// The request headers the auth endpoints read besides cookies and `X-Forwarded-For`.
const READ: [&str; DESCRIBING.len() + 2] = {
    let mut all = [""; DESCRIBING.len() + 2];
    let mut i = 0;
    while i < DESCRIBING.len() {
        all[i] = DESCRIBING[i];
        i += 1;
    }
    all[i] = "access-control-request-method";
    all[i + 1] = "accept";
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
}

/// Decide one auth subrequest; `record`: write the audit line and count it; `read`: what the
/// handler read first (a bearer token's verification, or the stored session).
fn check(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    contract: Contract,
    record: bool,
    read: Read,
) -> Response {
    let Read { token, stored } = read;
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
        forwarded_for: seen.forwarded_for,
        sources,
    };
    let wants_html = matches!(seen.get("accept"), Field::One(a) if a.contains("text/html"));
    let narrow = Narrowing::from_query(uri.query().unwrap_or(""));
    let req = match rebuild(&sub, &st.config.trusted_proxies) {
        // A location that pins its host is judged as that host, whatever the request says.
        Ok(mut r) => {
            if let Some((host, port)) = &narrow.host {
                r.host = std::borrow::Cow::Owned(host.clone());
                // The pin's port is the proxy's word; without one, no port is (Traefik, for one,
                // derives X-Forwarded-Port from the client's Host header).
                r.port_stated = port.is_some();
                if port.is_some() {
                    r.port = *port;
                }
            }
            r
        }
        Err(e) => {
            if record {
                AuditLine::early(Verdict::Forbidden, "untrusted_request", &e)
                    .record(st, started, None, None, peer);
            }
            return untrusted(wants_html, contract);
        }
    };
    let bearer_on = st.bearer.is_some();
    // With bearer tokens on, a token in the URL is refused: it would end up in logs and
    // browser histories (RFC 6750 5.3).
    let in_query = bearer_on
        && req.uri.split_once('?').is_some_and(|(_, q)| {
            q.split('&').any(|p| {
                p.split('=')
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("access_token"))
            })
        });
    let token = match (token, in_query) {
        (_, true) => Err(BearerError::InQuery),
        (Some(Err(e)), _) => Err(e),
        (Some(Ok(v)), _) => Ok(Some(v)),
        (None, _) => Ok(None),
    };
    let verified = match token {
        Ok(v) => v,
        Err(e) => {
            if record {
                AuditLine::early(Verdict::Login, "invalid_token", &e).record(
                    st,
                    started,
                    Some(&req),
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
            line.record(st, started, Some(&req), user, peer);
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
            let (login, absolute) = sign_in_urls(st, &req, "/oauth2/refresh");
            return Denial::Login {
                login,
                absolute,
                navigate: true,
            }
            .into_response(contract);
        }
    }
    let policy = st.policy.load();
    let d = policy.decide(&req, user, &narrow);
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
                if let Some(v) = signed_identity(st, jwt, o, &req) {
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
            let (login, absolute) = sign_in_urls(st, &req, "/oauth2/start");
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
