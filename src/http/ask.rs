//! The pipeline's first step, pure and without waiting: check the peer, describe the request
//! and read what the decision needs, in one pass over the headers. Each caller builds its
//! [`Ask`] straight from its own input: nginx and forward-auth from the subrequest's headers
//! ([`describe_subrequest`]), Envoy from the typed description it routed on
//! ([`describe_parts`]); nothing is dressed up as another caller's input.

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue};

use super::AppState;
use super::bearer;
use super::cookies::find_cookie;
use super::edge::{Contract, Denial};
use crate::oidc::access::BearerError;
use crate::policy::{Narrowing, NarrowingError, Verdict};
use crate::request::{
    DESCRIBING, FORWARDED_FOR_LINES, Field, Parts, Request, RequestError, Sources, Subrequest, classify,
    from_parts, rebuild,
};

/// The request headers the pipeline reads besides cookies and `X-Forwarded-For`, all in one
/// pass ([`Seen`]).
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

/// The headers of one request, found in a single pass (this runs on every request, and one
/// pass is cheaper than a hashed lookup per name).
pub(super) struct Seen<'a> {
    values: [Field<'a>; READ.len()],
    forwarded_for: [Option<&'a str>; FORWARDED_FOR_LINES],
    /// The first `Cookie` lines, without allocating; any further ones in `more_cookies`.
    cookies: [Option<&'a str>; 4],
    more_cookies: Vec<&'a str>,
    /// Every `Cookie` line, the unreadable and those past `MAX_COOKIE_BYTES` too.
    cookie_lines: usize,
}

impl<'a> Seen<'a> {
    /// From an HTTP request's headers. `HeaderValue::to_str` is the same visible-ASCII rule as
    /// [`Seen::from_pairs`]' in one vectorized pass, without a UTF-8 validation after it.
    pub(super) fn new(headers: &'a HeaderMap) -> Self {
        Self::from_texts(headers.iter().map(|(k, v)| (k.as_str(), v)), |v| v.to_str().ok())
    }

    /// From (lower-case name, value) pairs: a repeated name stays repeated, and a value that is
    /// not visible ASCII is unreadable.
    pub(super) fn from_pairs(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> Self {
        let text = |v: &'a [u8]| {
            // Without an early exit, so that the check runs over whole vectors (every header
            // value of every request passes here, the ~500-byte cookie too).
            let visible = v
                .iter()
                .fold(true, |ok, &b| ok & ((b == b'\t') | (b.wrapping_sub(b' ') < 0x5f)));
            visible.then(|| std::str::from_utf8(v).ok()).flatten()
        };
        Self::from_texts(pairs, text)
    }

    /// From (lower-case name, value) pairs, `text` reading a value (`None` when it is not
    /// visible ASCII) only when the pipeline reads that header.
    fn from_texts<V>(pairs: impl Iterator<Item = (&'a str, V)>, text: impl Fn(V) -> Option<&'a str>) -> Self {
        let mut seen = Seen {
            values: [Field::Absent; READ.len()],
            forwarded_for: [None; FORWARDED_FOR_LINES],
            cookies: [None; 4],
            more_cookies: Vec::new(),
            cookie_lines: 0,
        };
        let (mut n_cookies, mut cookie_bytes) = (0, 0);
        for (name, value) in pairs {
            if name == "cookie" {
                seen.cookie_lines += 1;
                let Some(v) = text(value) else { continue };
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
                seen.forwarded_for[FORWARDED_FOR_LINES - 1] = Some(text(value).unwrap_or("invalid"));
            } else if let Some(i) = READ.iter().position(|r| *r == name) {
                seen.values[i] = match (seen.values[i], text(value)) {
                    (Field::Absent, Some(v)) => Field::One(v),
                    _ => Field::Invalid,
                };
            }
        }
        seen
    }

    /// A header (by lower-case name).
    pub(super) fn get(&self, name: &str) -> Field<'a> {
        READ.iter()
            .position(|r| *r == name)
            .map_or(Field::Absent, |i| self.values[i])
    }

    /// Whether the client asked for a page (`Accept: text/html`), for a refusal made before the
    /// request was described; afterwards `Request::wants_html` decides.
    pub(super) fn wants_html(&self) -> bool {
        matches!(self.get("accept"), Field::One(a) if a.contains("text/html"))
    }

    /// The value of the first cookie called `name`.
    pub(super) fn cookie(&self, name: &str) -> Option<&'a str> {
        let all = self.cookies.iter().flatten().chain(&self.more_cookies).copied();
        find_cookie(all, name)
    }

    /// The upstream's `Cookie` ([`super::cookies::upstream_cookie`]) in the two cases this pass
    /// tells apart without reading the cookies again: no `Cookie` line (empty), or one line
    /// holding a single pair, forwarden's session cookie `name` (empty: nothing else is left).
    /// `None` for any other request.
    pub(super) fn upstream_cookie(&self, name: &str) -> Option<HeaderValue> {
        match (self.cookie_lines, self.cookies[0]) {
            (0, _) => Some(HeaderValue::from_static("")),
            (1, Some(line)) if memchr::memchr(b';', line.as_bytes()).is_none() => line
                .trim_ascii()
                .strip_prefix(name)
                .filter(|rest| rest.trim_ascii_start().starts_with('='))
                .map(|_| HeaderValue::from_static("")),
            _ => None,
        }
    }
}

/// A request that is trusted and described: what the decision reads, before anything waits.
pub(super) struct Ask<'a> {
    /// The original request, pinned to the location's host when it pins one.
    pub(super) req: Request<'a>,
    /// The proxy's narrowing for this location.
    pub(super) narrow: Narrowing,
    /// A bearer token to verify (with `bearer:` on).
    pub(super) token: Option<&'a str>,
}

/// Why a request was refused before its subject was looked at.
#[derive(Debug, thiserror::Error)]
pub(super) enum Early<'a> {
    /// The peer is not trusted, or the request cannot be described.
    #[error(transparent)]
    Untrusted(#[from] RequestError),
    /// The proxy's narrowing parameters cannot be used.
    #[error(transparent)]
    Narrowing(#[from] NarrowingError),
    /// The auth endpoint's query is the client's own (Caddy's `forward_auth` keeps the original
    /// query unless its `uri` sets one): the client would choose the narrowing and the pin.
    #[error(
        "the proxy passed the client's query string to the auth endpoint (set the auth URI's query explicitly, e.g. Caddy's `uri /oauth2/forward-auth?`)"
    )]
    ClientQuery(Box<Request<'a>>),
    /// A bearer token that cannot be used before any verification (in the URL, or an
    /// unreadable `Authorization`).
    #[error("{0}")]
    Bearer(BearerError, Box<Request<'a>>),
}

impl Early<'_> {
    /// The verdict for the audit line and the metrics.
    pub(super) fn verdict(&self) -> Verdict {
        match self {
            Early::Bearer(..) => Verdict::Login,
            _ => Verdict::Forbidden,
        }
    }

    /// The audit line's reason.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Early::Untrusted(_) => "untrusted_request",
            Early::Narrowing(_) | Early::ClientQuery(_) => "bad_narrowing",
            Early::Bearer(..) => "invalid_token",
        }
    }

    /// The request, when it was described before the refusal.
    pub(super) fn request(&self) -> Option<&Request<'_>> {
        match self {
            Early::ClientQuery(r) | Early::Bearer(_, r) => Some(r),
            _ => None,
        }
    }

    /// What the client is told.
    pub(super) fn denial(self, html: bool) -> Denial {
        match self {
            Early::Bearer(e, _) => Denial::Bearer {
                error: Some(e.code()),
                description: e.to_string(),
            },
            Early::Untrusted(_) => undescribable(html),
            Early::Narrowing(_) | Early::ClientQuery(_) => Denial::Forbidden {
                user: None,
                url: String::new(),
                reason: "The proxy's settings for this address are not valid, so forwarden refuses.".into(),
                html,
                insufficient_scope: false,
            },
        }
    }
}

/// The refusal of a request forwarden cannot describe.
pub(super) fn undescribable(html: bool) -> Denial {
    Denial::Forbidden {
        user: None,
        url: String::new(),
        reason: "forwarden could not tell which address was requested, so it refuses.".into(),
        html,
        insufficient_scope: false,
    }
}

/// Describe a proxy's auth subrequest (nginx, forward-auth): the peer, the describing headers of
/// a trusted proxy, the narrowing in `query`.
pub(super) fn describe_subrequest<'a>(
    st: &AppState,
    peer: SocketAddr,
    query: &'a str,
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
        scheme: st.config.scheme(),
    };
    let req = rebuild(&sub, &st.config.trusted_proxies)?;
    if !query.is_empty() && req.uri.split_once('?').is_some_and(|(_, q)| q == query) {
        return Err(Early::ClientQuery(Box::new(req)));
    }
    let narrow = Narrowing::from_query(query).inspect_err(log_once)?;
    finish(st, req, narrow, seen)
}

/// Describe a request from a typed caller's own description (Envoy), with the narrowing as
/// key-value pairs (`context_extensions`).
pub(super) fn describe_parts<'a, K: AsRef<str>, V: AsRef<str>>(
    st: &AppState,
    peer: SocketAddr,
    parts: &Parts<'a>,
    narrowing: impl IntoIterator<Item = (K, V)>,
    seen: &Seen<'a>,
) -> Result<Ask<'a>, Early<'a>> {
    let mut req = from_parts(parts, peer.ip(), &st.config.trusted_proxies)?;
    classify(
        &mut req,
        seen.get("access-control-request-method"),
        seen.get("accept"),
    );
    let narrow = Narrowing::from_pairs(narrowing).inspect_err(log_once)?;
    finish(st, req, narrow, seen)
}

/// What every caller does once the request is described: the pin, and the bearer token's
/// presentation (refused before any verification when it cannot be used).
fn finish<'a>(
    st: &AppState,
    mut req: Request<'a>,
    narrow: Narrowing,
    seen: &Seen<'a>,
) -> Result<Ask<'a>, Early<'a>> {
    // A location that pins its host is judged as that host, whatever the request says.
    if let Some(pin) = &narrow.host {
        req.site.pin(pin);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP request's headers (`HeaderValue::to_str`) and Envoy's pairs (the visible-ASCII
    /// fold) read every byte a header value can hold alike: a value the one refuses is never
    /// read by the other.
    #[test]
    fn header_smuggling_every_byte_is_read_alike_from_headers_and_from_pairs() {
        for b in (0u8..=255).filter(|b| *b == b'\t' || *b >= b' ' && *b != 0x7f) {
            let raw = [b'a', b, b'z'];
            let Ok(value) = HeaderValue::from_bytes(&raw) else {
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-host", value);
            let from_map = Seen::new(&headers).get("x-forwarded-host");
            let from_pairs =
                Seen::from_pairs([("x-forwarded-host", &raw[..])].into_iter()).get("x-forwarded-host");
            assert_eq!(from_map, from_pairs, "byte {b:#04x}");
            assert_eq!(from_map == Field::Invalid, b >= 0x7f, "byte {b:#04x}");
        }
    }

    /// A session cookie leaked to the upstream, or the client's cookies lost: where the single
    /// pass answers the upstream's `Cookie` itself, it answers what reading every line again
    /// does, for the shapes a client can send (spacing, chunks, look-alike names, empty pairs,
    /// several lines, an unreadable line, more than the pass reads).
    #[test]
    fn session_cookie_leak_the_single_pass_upstream_cookie_agrees_with_reading_every_line() {
        let name = "_forwarden";
        let big = format!("_forwarden={}", "a".repeat(MAX_COOKIE_BYTES));
        let cases: Vec<Vec<&[u8]>> = vec![
            vec![],
            vec![b"_forwarden=sealed"],
            vec![b"  _forwarden = sealed  "],
            vec![b"_forwarden=sealed;"],
            vec![b";_forwarden=sealed"],
            vec![b"_forwarden=sealed; theme=dark"],
            vec![b"theme=dark; _forwarden=sealed"],
            vec![b"_forwarden_0=sealed"],
            vec![b"_forwarden_0=a; _forwarden_1=b"],
            vec![b"_forwardenx=sealed"],
            vec![b"x_forwarden=sealed"],
            vec![b"_forwarden"],
            vec![b"_forwarden sealed"],
            vec![b"theme=dark"],
            vec![b""],
            vec![b"  "],
            vec![b"_forwarden=sealed", b"theme=dark"],
            vec![b"_forwarden=sealed", b"_forwarden=other"],
            vec![b"_forwarden=\xffsealed"],
            vec![b"_forwarden=sealed", b"theme=\xff"],
            vec![big.as_bytes()],
            vec![big.as_bytes(), b"_forwarden=sealed"],
        ];
        let mut quick = 0;
        for lines in &cases {
            let mut headers = HeaderMap::new();
            for l in lines {
                headers.append("cookie", HeaderValue::from_bytes(l).expect("a header value"));
            }
            let full = super::super::cookies::upstream_cookie(&headers, name);
            if let Some(fast) = Seen::new(&headers).upstream_cookie(name) {
                assert_eq!(fast, full, "{lines:?}");
                quick += 1;
            }
        }
        // No cookie, and the session alone (two spellings): the cases most checks meet.
        assert_eq!(quick, 3);
    }
}
