//! Single sign-on across registrable domains, the HTTP side ([`crate::handoff`] is the pure
//! part): `/oauth2/handoff` on a host under `cookie.other_domains` (where the auth check sends a
//! browser without a session), `/oauth2/handoff/issue` on the central sign-in host
//! (`public_url`), `/oauth2/handoff/accept` back on the host, which sets the session cookies for
//! its own domain. The provider knows only the central host's redirect URI.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;

use super::HandOff;
use super::cookies::{request_cookie, session_cookie_values, set_cookie, set_raw_session};
use super::edge::{ErrorPage, RouteError, enc, redirect};
use super::login::browser_origin;
use super::sessions;
use crate::handoff::{self, HandoffError};
use crate::policy::StepUp;

/// The pending hand-off cookie (host-only: never sent to another host).
const PENDING_COOKIE: &str = "_forwarden_handoff";

/// Query of `/oauth2/handoff` and `/oauth2/handoff/issue`.
#[derive(Deserialize)]
pub struct HandoffQuery {
    #[serde(default)]
    rd: Option<String>,
    /// The host the session goes to (issue).
    #[serde(default)]
    to: Option<String>,
    /// The pending cookie's nonce hash (issue).
    #[serde(default)]
    bind: Option<String>,
    /// The code (accept).
    #[serde(default)]
    code: Option<String>,
    /// A step-up the page asks for (passed on to the sign-in, when one is needed).
    #[serde(default)]
    step_up: Option<String>,
    /// The providers the page accepts (`idp=a,b`, passed on like the step-up).
    #[serde(default)]
    idp: Option<String>,
    /// The page's own app registration (`client=`).
    #[serde(default)]
    client: Option<String>,
}

impl HandoffQuery {
    /// `&idp=…&client=…` as this request carried them, for the next link.
    fn sign_in_params(&self) -> String {
        let mut out = String::new();
        if let Some(i) = self.idp.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(&format!("&idp={}", enc(i)));
        }
        if let Some(c) = self.client.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(&format!("&client={}", enc(c)));
        }
        out
    }

    /// Whether a session's sign-in is one the page accepts (its provider among `idp`, through
    /// the page's app registration): otherwise the central host signs in again first.
    fn accepts(&self, identity: &crate::identity::Identity) -> bool {
        let idp_ok = self
            .idp
            .as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|list| list.split(',').any(|n| n == identity.idp()));
        idp_ok && self.client.as_deref().unwrap_or("") == identity.idp_client()
    }
}

/// `host[:port]` of an origin URL (`scheme://host[:port]`): what a code is bound to.
fn authority(origin_url: &str) -> &str {
    origin_url.split_once("://").map_or(origin_url, |(_, a)| a)
}

/// `rd` when it is a URL of this very origin (`scheme://host[:port]`) or a path, else the
/// origin's root.
fn on_host(rd: Option<&str>, origin_url: &str) -> String {
    let root = format!("{origin_url}/");
    let Some(rd) = rd else { return root };
    let host = authority(origin_url).split(':').next().unwrap_or_default();
    if !crate::oidc::redirect::is_safe(rd, host, &[]) {
        return root;
    }
    if rd.starts_with('/') {
        return format!("{origin_url}{rd}");
    }
    match url::Url::parse(rd) {
        Ok(u) if u.origin().ascii_serialization().eq_ignore_ascii_case(origin_url) => rd.to_string(),
        _ => root,
    }
}

/// `GET /oauth2/handoff?rd=…` on a host under one of `cookie.other_domains`: remember a nonce
/// in a host-only cookie, and ask the central sign-in host for the session.
pub async fn start(
    State(st): State<HandOff>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HandoffQuery>,
    headers: HeaderMap,
) -> Result<Response, ErrorPage> {
    begin(&st, peer, &q, &headers).map_err(|e| e.for_client(&headers))
}

fn begin(
    st: &HandOff,
    peer: SocketAddr,
    q: &HandoffQuery,
    headers: &HeaderMap,
) -> Result<Response, RouteError> {
    let (central, origin) = central_and_origin(st, peer, headers)?;
    if st.sessions.handoff_domain(&origin.host).is_none() {
        return Err(RouteError::Bad(
            "This site is not one the central sign-in hands sessions to (cookie.other_domains).".into(),
        ));
    }
    let rd = on_host(q.rd.as_deref(), &origin.url);
    let now = (st.clock)();
    let c = &st.config.cookie;
    let here = authority(&origin.url);
    let (sealed, pending) = handoff::pending(&c.keys, here, st.entropy.bytes(), st.entropy.bytes(), now);
    let mut to = format!(
        "{central}/oauth2/handoff/issue?to={}&bind={}&rd={}",
        enc(here),
        handoff::bind_of(&pending),
        enc(&rd)
    );
    if let Some(s) = q.step_up.as_deref().filter(|s| !s.is_empty()) {
        to.push_str(&format!("&step_up={}", enc(s)));
    }
    to.push_str(&q.sign_in_params());
    let mut r = redirect(&to);
    // Host-only (no Domain), for the hand-off's endpoints only.
    let host_only = crate::config::CookieConfig {
        domain: None,
        ..c.clone()
    };
    if let Some(v) = set_cookie(
        &host_only,
        PENDING_COOKIE,
        &sealed,
        "/oauth2/handoff",
        Some(handoff::PENDING_TTL as i64),
    ) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// The central sign-in host (`public_url`, without a trailing `/`) and the request's origin.
fn central_and_origin(
    st: &HandOff,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(String, super::login::BrowserOrigin), RouteError> {
    let central = st
        .config
        .public_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .ok_or_else(|| RouteError::Bad("Single sign-on across domains needs public_url.".into()))?;
    let origin = browser_origin(&st.config, peer, headers)
        .ok_or_else(|| RouteError::Bad("The request did not say which site it is for.".into()))?;
    Ok((central, origin))
}

/// `GET /oauth2/handoff/issue?to=…&bind=…&rd=…` on the central host: with a session, a code
/// for `to` (a host under `cookie.other_domains` that a route names; never any other), sent
/// back to `to`; without one, sign in first and come back here.
pub async fn issue(
    State(st): State<HandOff>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HandoffQuery>,
    headers: HeaderMap,
) -> Result<Response, ErrorPage> {
    let r = issue_code(&st, peer, &q, &headers).await;
    r.map_err(|e| e.for_client(&headers))
}

async fn issue_code(
    st: &HandOff,
    peer: SocketAddr,
    q: &HandoffQuery,
    headers: &HeaderMap,
) -> Result<Response, RouteError> {
    let (central, origin) = central_and_origin(st, peer, headers)?;
    let central_host = url::Url::parse(&central)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
    if central_host.as_deref() != Some(origin.host.as_str()) {
        return Err(RouteError::Bad(
            "Sessions are handed off only by the central sign-in host.".into(),
        ));
    }
    let refuse = || RouteError::Bad("This hand-off is not for a site this forwarden protects.".into());
    let to = q.to.as_deref().map(str::to_ascii_lowercase).ok_or_else(refuse)?;
    let (to_host, to_port) = crate::request::parse_host(&to).map_err(|_| refuse())?;
    // Only to a host some route names, under a configured domain, on a port the proxy serves
    // it on (the central host's, or one a route for it names): never an open redirect.
    let central_port = url::Url::parse(&central).ok().and_then(|u| u.port());
    let port_ok =
        to_port.is_none_or(|p| Some(p) == central_port || st.policy.load().names_host_port(&to_host, p));
    if st.sessions.handoff_domain(&to_host).is_none() || !st.policy.load().names_host(&to_host) || !port_ok {
        tracing::warn!(to = %to, "hand-off to a host no route names refused");
        return Err(refuse());
    }
    let bind = q.bind.as_deref().ok_or_else(refuse)?;
    let scheme = central.split("://").next().unwrap_or("https");
    let target_url = format!("{scheme}://{to}");
    let rd = on_host(q.rd.as_deref(), &target_url);
    let step_up = match q.step_up.as_deref() {
        None | Some("") => StepUp::default(),
        Some(p) => StepUp::from_param(p).ok_or_else(refuse)?,
    };
    let session = sessions::current(&st.sessions, headers).await.map_err(|e| {
        tracing::warn!(error = %e, "hand-off: the session store is unavailable");
        RouteError::Unavailable("The session store is unavailable. Try again in a moment.".into())
    })?;
    let usable = session
        .filter(|(s, _)| step_up.is_empty() || step_up.held_by(&s.identity))
        .filter(|(s, _)| q.accepts(&s.identity));
    if usable.is_none() {
        // Sign in here first (with the step-up the page asks for), then come back.
        let back = format!(
            "{central}/oauth2/handoff/issue?to={}&bind={}&rd={}{}",
            enc(&to),
            enc(bind),
            enc(&rd),
            if step_up.is_empty() {
                String::new()
            } else {
                format!("&step_up={}", enc(&step_up.to_param()))
            }
        );
        let back = format!("{back}{}", q.sign_in_params());
        let mut login = format!("{central}/oauth2/start?rd={}", enc(&back));
        if !step_up.is_empty() {
            login.push_str(&format!("&step_up={}", enc(&step_up.to_param())));
        }
        login.push_str(&q.sign_in_params());
        return Ok(redirect(&login));
    }
    let c = &st.config.cookie;
    let cookies = session_cookie_values(c, headers);
    let now = (st.clock)();
    let code = handoff::issue(&c.keys, &to, bind, cookies, st.entropy.bytes(), st.entropy.bytes(), now).map_err(|e| match e {
        HandoffError::TooLarge => RouteError::Refused(
            "Your session is too large to hand to this site in a redirect (hundreds of groups). Ask the administrator to keep sessions on the server (session_store).".into(),
        ),
        _ => refuse(),
    })?;
    tracing::info!(to = %to, "session handed off");
    Ok(redirect(&format!(
        "{target_url}/oauth2/handoff/accept?code={}&rd={}",
        enc(&code),
        enc(&rd)
    )))
}

/// `GET /oauth2/handoff/accept?code=…&rd=…` back on the host: the code opens only here, in the
/// browser that started the hand-off, within its minute, and once; then the session cookies are
/// set for this host's domain.
pub async fn accept(
    State(st): State<HandOff>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HandoffQuery>,
    headers: HeaderMap,
) -> Result<Response, ErrorPage> {
    let r = accept_code(&st, peer, &q, &headers).await;
    r.map_err(|e| e.for_client(&headers))
}

async fn accept_code(
    st: &HandOff,
    peer: SocketAddr,
    q: &HandoffQuery,
    headers: &HeaderMap,
) -> Result<Response, RouteError> {
    let origin = browser_origin(&st.config, peer, headers)
        .ok_or_else(|| RouteError::Bad("The request did not say which site it is for.".into()))?;
    let here = authority(&origin.url).to_string();
    if st.sessions.handoff_domain(&origin.host).is_none() {
        return Err(RouteError::Bad(
            "This site does not take sessions handed off.".into(),
        ));
    }
    let c = &st.config.cookie;
    let now = (st.clock)();
    let refused = |e: HandoffError| {
        tracing::warn!(host = %origin.host, error = %e, "hand-off refused");
        RouteError::Bad(format!(
            "This sign-in link cannot be used: {e}. Open the page again to sign in."
        ))
    };
    let code = q.code.as_deref().ok_or(HandoffError::Sealed).map_err(refused)?;
    let pending = request_cookie(headers, PENDING_COOKIE);
    let code = handoff::accept(&c.keys, code, pending, &here, now).map_err(refused)?;
    // With a session store, once: a replay within the minute is refused too.
    if let Some(store) = st.sessions.store() {
        match store.claim_once(&code.id, handoff::CODE_TTL).await {
            Ok(true) => {}
            Ok(false) => return Err(refused(HandoffError::NotThisBrowser)),
            Err(e) => {
                tracing::warn!(error = %e, "hand-off: the session store is unavailable");
                return Err(RouteError::Unavailable(
                    "The session store is unavailable. Try again in a moment.".into(),
                ));
            }
        }
    }
    let rd = on_host(q.rd.as_deref(), &origin.url);
    let mut r = redirect(&rd);
    set_raw_session(&st.sessions.cookie_for(Some(&origin.host)), &code.cookies, &mut r);
    let host_only = crate::config::CookieConfig {
        domain: None,
        ..c.clone()
    };
    if let Some(v) = set_cookie(&host_only, PENDING_COOKIE, "", "/oauth2/handoff", Some(0)) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    tracing::info!(host = %origin.host, "session handed off to this host");
    Ok(r)
}
