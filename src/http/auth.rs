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
use super::cookies::find_cookie;
use super::edge::{Contract, Denial};
use super::session_cache::{open_session, signed_identity};
use crate::config::Audit;
use crate::diag::Origin;
use crate::identity::Identity;
use crate::policy::{Narrowing, Verdict};
use crate::request::{Sources, Subrequest, rebuild};
use crate::session;

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
                    rule: None,
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
    let narrow = Narrowing::from_query(uri.query().unwrap_or(""));
    let policy = st.policy.load();
    let d = policy.decide(&req, user, &narrow);
    let route = d.route.map(|r| r.label.as_str()).unwrap_or("-");
    let rule = d.reason.rule().map(|r| &r.origin);
    match d.verdict {
        Verdict::Allow => {
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
        Verdict::Login | Verdict::Refresh => {
            audit(Verdict::Login, route, &d.reason, d.reason.code(), rule);
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
            Denial::Forbidden {
                user: user.cloned().map(Box::new),
                url: req.url(),
                reason: d.reason.explanation().into(),
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
    /// Where the deciding rule is written, if one decided.
    rule: Option<&'a Origin>,
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
