//! The auth endpoints: rebuild the request, open the session, decide, answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cookie::Cookie;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::edge::{Contract, Denial, page};
use crate::config::HeaderNames;
use crate::identity::Identity;
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
}

fn name(s: &str) -> HeaderName {
    // The config validated every name, so this fallback is never taken.
    HeaderName::from_bytes(s.as_bytes()).unwrap_or(HeaderName::from_static("x-auth-request-invalid"))
}

impl IdentityHeaders {
    /// Parse the configured names.
    pub fn new(h: &HeaderNames) -> Self {
        IdentityHeaders {
            user: name(&h.user),
            email: name(&h.email),
            preferred_username: name(&h.preferred_username),
            groups: name(&h.groups),
            roles: name(&h.roles),
            claims: h.claims.iter().map(|(c, n)| (c.clone(), name(n))).collect(),
        }
    }

    /// Every header, always present, empty when there is no value (Caddy 2.6 would otherwise
    /// forward a literal placeholder).
    fn write(&self, id: Option<&Identity>, out: &mut HeaderMap) {
        let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).unwrap_or(HeaderValue::from_static(""));
        let get = |f: fn(&Identity) -> String| id.map(f).unwrap_or_default();
        out.insert(self.user.clone(), value(&get(|i| i.subject.clone())));
        out.insert(
            self.email.clone(),
            value(&get(|i| i.email.clone().unwrap_or_default())),
        );
        out.insert(
            self.preferred_username.clone(),
            value(&get(|i| i.preferred_username.clone().unwrap_or_default())),
        );
        out.insert(self.groups.clone(), value(&get(|i| i.groups.join(","))));
        out.insert(self.roles.clone(), value(&get(|i| i.roles.join(","))));
        for (claim, h) in &self.claims {
            let v = id.map(|i| i.claim_values(claim).join(",")).unwrap_or_default();
            out.insert(h.clone(), value(&v));
        }
    }
}

/// `GET /oauth2/auth`: nginx `auth_request` and ingress-nginx `auth-url`.
pub async fn nginx(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    check(&st, peer, &uri, &headers, Contract::Nginx)
}

/// `GET /oauth2/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy.
pub async fn forward_auth(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    check(&st, peer, &uri, &headers, Contract::ForwardAuth)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Every cookie of the request, by name (first wins).
fn cookies(headers: &HeaderMap) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    for h in headers.get_all(header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for c in Cookie::split_parse(s).flatten() {
            if let (Some(n), Some(v)) = (c.name_raw(), c.value_raw()) {
                out.push((n, v));
            }
        }
    }
    out
}

fn check(st: &AppState, peer: SocketAddr, uri: &Uri, headers: &HeaderMap, contract: Contract) -> Response {
    let sources = match contract {
        Contract::Nginx => Sources::Nginx,
        Contract::ForwardAuth => Sources::ForwardAuth,
    };
    let sub = Subrequest {
        peer: peer.ip(),
        header: |n: &str| header_str(headers, n),
        sources,
    };
    let wants_html = header_str(headers, "accept").is_some_and(|a| a.contains("text/html"));
    let req = match rebuild(&sub, &st.config.trusted_proxies) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(peer = %peer.ip(), error = %e, "denied: original request unknown");
            return Denial::Forbidden {
                user: None,
                url: String::new(),
                reason: "forwarden could not tell which address was requested, so it refuses.".into(),
                html: wants_html,
            }
            .into_response(contract);
        }
    };
    let jar = cookies(headers);
    let lookup = |n: &str| jar.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    let cookie_name = &st.config.cookie.name;
    let session = session::open(lookup, &st.config.cookie.keys, cookie_name, (st.clock)());
    if let Err(e) = &session {
        if *e != session::SessionError::Missing {
            tracing::debug!(error = %e, "session cookie ignored");
        }
    }
    let user = session.as_ref().ok().map(|s| &s.identity);
    let narrow = Narrowing::from_query(uri.query().unwrap_or(""));
    let policy = st.policy.load();
    let d = policy.decide(&req, user, &narrow);
    let route = d.route.map(|r| r.origin.as_str()).unwrap_or("-");
    match d.outcome {
        Outcome::Allow => {
            tracing::debug!(host = %req.host, path = %req.path, route, "allow");
            let mut r = StatusCode::OK.into_response();
            st.headers.write(user, r.headers_mut());
            r
        }
        Outcome::Login => {
            tracing::info!(host = %req.host, path = %req.path, method = %req.method, route, reason = %d.reason, "login required");
            let url = req.url();
            let login = format!("/oauth2/start?rd={}", utf8_percent_encode(&url, NON_ALPHANUMERIC));
            let absolute = match req.port {
                Some(p) => format!("{}://{}:{}{login}", req.scheme, req.host, p),
                None => format!("{}://{}{login}", req.scheme, req.host),
            };
            Denial::Login {
                login,
                absolute,
                navigate: req.wants_html,
            }
            .into_response(contract)
        }
        Outcome::Forbidden => {
            tracing::info!(
                host = %req.host, path = %req.path, method = %req.method, route,
                user = user.map(|u| u.subject.as_str()).unwrap_or("-"),
                reason = %d.reason, "forbidden"
            );
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

/// `GET /oauth2/start`: sign-in, which the OpenID Connect login builds on.
pub async fn start() -> Response {
    let body = page(
        "Sign-in is not available",
        "<p>This forwarden has no identity provider configured yet, so nobody can sign in.</p>",
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `GET|POST /oauth2/sign_out`: clear the session cookies (every chunk) and go home.
pub async fn sign_out(State(st): State<Arc<AppState>>) -> Response {
    let mut r = (StatusCode::FOUND, [(header::LOCATION, "/")]).into_response();
    let c = &st.config.cookie;
    let names = std::iter::once(c.name.clone()).chain((0..MAX_CHUNKS).map(|i| format!("{}_{i}", c.name)));
    for n in names {
        let mut k = Cookie::build((n, ""))
            .path("/")
            .http_only(true)
            .secure(c.secure)
            .max_age(cookie::time::Duration::ZERO);
        if let Some(d) = &c.domain {
            k = k.domain(d.clone());
        }
        if let Ok(v) = HeaderValue::from_str(&k.build().to_string()) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}
