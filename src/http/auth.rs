//! The auth endpoints: rebuild the request, open the session, decide, answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
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
        for (i, name) in self.names().enumerate() {
            let v = values
                .and_then(|v| v.get(i))
                .cloned()
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
}

/// `GET /oauth2/auth`: nginx `auth_request` and ingress-nginx `auth-url`.
pub async fn nginx(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    check(&st, peer, req.uri(), req.headers(), Contract::Nginx)
}

/// `GET /oauth2/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy.
pub async fn forward_auth(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    check(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth)
}

/// The headers the auth endpoints read, parsed once (a lookup by `&str` parses the name on
/// every call, and this runs on every request).
static KNOWN: [(&str, HeaderName); 10] = [
    ("x-original-url", HeaderName::from_static("x-original-url")),
    ("x-original-method", HeaderName::from_static("x-original-method")),
    ("x-forwarded-uri", HeaderName::from_static("x-forwarded-uri")),
    ("x-forwarded-proto", HeaderName::from_static("x-forwarded-proto")),
    ("x-forwarded-host", HeaderName::from_static("x-forwarded-host")),
    (
        "x-forwarded-method",
        HeaderName::from_static("x-forwarded-method"),
    ),
    ("x-forwarded-for", HeaderName::from_static("x-forwarded-for")),
    ("x-real-ip", HeaderName::from_static("x-real-ip")),
    (
        "access-control-request-method",
        HeaderName::from_static("access-control-request-method"),
    ),
    ("accept", header::ACCEPT),
];

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = match KNOWN.iter().find(|(n, _)| *n == name) {
        Some((_, h)) => headers.get(h),
        None => headers.get(name),
    };
    value.and_then(|v| v.to_str().ok())
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
    let session = open_session(st, lookup);
    let user = session.as_deref().map(|s| &s.session.identity);
    let narrow = Narrowing::from_query(uri.query().unwrap_or(""));
    let policy = st.policy.load();
    let d = policy.decide(&req, user, &narrow);
    let route = d.route.map(|r| r.origin.as_str()).unwrap_or("-");
    match d.outcome {
        Outcome::Allow => {
            tracing::debug!(host = %req.host, path = %req.path, route, "allow");
            let mut r = StatusCode::OK.into_response();
            st.headers
                .write(session.as_deref().map(|o| o.values.as_slice()), r.headers_mut());
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

/// The request's session, from the cache of opened sessions or by opening the cookie.
fn open_session<'a>(st: &AppState, lookup: impl Fn(&str) -> Option<&'a str>) -> Option<Arc<Opened>> {
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
    if let Some(s) = st.sessions.get(value.as_ref()) {
        return session::is_current(&s.session, now).then_some(s);
    }
    match session::open_value(&value, &cookie.keys, &cookie.name, now) {
        Ok(s) => {
            let values = st.headers.values(&s.identity);
            let s = Arc::new(Opened { session: s, values });
            st.sessions.insert(value.into_owned(), s.clone());
            Some(s)
        }
        Err(e) => {
            tracing::debug!(error = %e, "session cookie ignored");
            None
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
