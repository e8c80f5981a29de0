//! The original request, rebuilt from what the proxy forwards.
//!
//! The auth endpoints never see the user's request itself, only a subrequest from the proxy
//! that describes it in headers. Those headers count only when the peer is a trusted proxy;
//! anything else could be forged by the client. The path is normalized here, once, so that
//! policy matching sees what the upstream will serve, and a path that cannot be normalized
//! safely is refused rather than guessed at.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;

mod site;

pub use site::Site;
pub(crate) use site::{parse_host, parse_port};

/// The request the user made, as far as policy is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The site: scheme, host, port and whether the proxy stated the port.
    pub site: Site<'a>,
    /// The normalized path used for matching (decoded, no dot segments, single slashes).
    pub path: Cow<'a, str>,
    /// Path and query exactly as the user sent them, for the redirect back after login.
    pub uri: Cow<'a, str>,
    /// Upper-case method.
    pub method: Cow<'a, str>,
    /// The user's address, from `X-Forwarded-For` / `X-Real-IP` of a trusted proxy.
    pub client_ip: Option<IpAddr>,
    /// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub preflight: bool,
    /// Whether the request looks like a browser navigation (`Accept: text/html`).
    pub wants_html: bool,
}

impl<'a> Request<'a> {
    /// The whole original URL, query included.
    pub fn url(&self) -> String {
        format!("{}{}", self.origin(), self.uri)
    }

    /// `scheme://host[:port]`, the port only when it is not the scheme's default.
    pub fn origin(&self) -> String {
        self.site.origin()
    }

    /// A request for `url` as `explain` and tests describe one.
    pub fn from_url(url: &'a str, method: &'a str) -> Result<Self, RequestError> {
        let (scheme, rest) = url.split_once("://").ok_or(RequestError::BadUrl)?;
        let (authority, uri) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], Cow::Borrowed(&rest[i..])),
            Some(i) => (&rest[..i], Cow::Owned(format!("/{}", &rest[i..]))),
            None => (rest, Cow::Borrowed("/")),
        };
        if authority.contains(',') {
            return Err(RequestError::BadHost);
        }
        let mut site = Site::new(Some(scheme), "https", authority, None)?;
        // A URL given whole is its own word on the port.
        site.port_stated = true;
        let path = match &uri {
            Cow::Borrowed(u) => normalize_path(u)?,
            Cow::Owned(u) => Cow::Owned(normalize_path(u)?.into_owned()),
        };
        Ok(Request {
            site,
            path,
            uri,
            method: parse_method(method)?,
            client_ip: None,
            preflight: false,
            wants_html: true,
        })
    }
}

/// Why the original request could not be established. Every one means "deny".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The peer is not a trusted proxy, so its forwarded headers do not count.
    #[error("the peer {0} is not a trusted proxy; its forwarded headers are ignored")]
    UntrustedPeer(IpAddr),
    /// No header said what the original request was.
    #[error("the proxy did not say which URL was requested (X-Original-URL or X-Forwarded-Uri)")]
    Missing,
    /// The forwarded URL is malformed.
    #[error("the forwarded URL is malformed")]
    BadUrl,
    /// The host is not a valid host name.
    #[error("the forwarded host is not a valid host name")]
    BadHost,
    /// The scheme is neither http nor https.
    #[error("the forwarded scheme is not http or https")]
    BadScheme,
    /// The method is not a valid HTTP method.
    #[error("the forwarded method is not a valid HTTP method")]
    BadMethod,
    /// The path cannot be normalized without guessing how the upstream reads it.
    #[error("the path cannot be normalized safely: {0}")]
    UnsafePath(&'static str),
    /// A header that describes the request came several times, as a list, or not as visible
    /// ASCII: forwarden does not guess which value the proxy used.
    #[error("the {0} header is ambiguous (several values, a list, or not ASCII)")]
    Ambiguous(&'static str),
    /// `X-Forwarded-Port` and the port in the host disagree.
    #[error("the forwarded port and the port in the forwarded host disagree")]
    PortMismatch,
}

/// One header of the subrequest, as the HTTP layer found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field<'a> {
    /// Not sent.
    Absent,
    /// Sent once, as visible ASCII.
    One(&'a str),
    /// Sent more than once, or with bytes that are not visible ASCII.
    Invalid,
}

/// Which headers describe the original request, by proxy contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sources {
    /// `/oauth2/auth`: `X-Original-URL` (ingress-nginx sets it; our nginx include clears it and
    /// sets `X-Forwarded-*`), then `X-Forwarded-*`.
    Nginx,
    /// `/oauth2/forward-auth`: `X-Forwarded-*` only. Traefik and Caddy copy every client header
    /// onto the subrequest but overwrite these, so a client's `X-Original-URL` must not count.
    ForwardAuth,
}

/// The headers that describe the original request: each must come at most once.
pub(crate) const DESCRIBING: [&str; 9] = [
    "x-original-url",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-method",
    "x-real-ip",
    "host",
];

/// How many `X-Forwarded-For` lines are kept (the last ones: hops are appended).
pub(crate) const FORWARDED_FOR_LINES: usize = 4;

/// The auth subrequest as the HTTP layer sees it.
pub(crate) struct Subrequest<'a, H: Fn(&'static str) -> Field<'a>> {
    /// The TCP peer of the subrequest.
    pub peer: IpAddr,
    /// Header lookup by lower-case name.
    pub header: H,
    /// The last [`FORWARDED_FOR_LINES`] `X-Forwarded-For` lines, oldest first.
    pub forwarded_for: [Option<&'a str>; FORWARDED_FOR_LINES],
    /// Which headers count.
    pub sources: Sources,
    /// The site's scheme when the proxy does not state one (the configuration's `Config::scheme`).
    pub scheme: &'static str,
}

/// Rebuild the original request from a trusted proxy's headers.
///
/// Sources, first match wins: `X-Original-URL` (ingress-nginx, with `X-Original-Method`);
/// `X-Forwarded-Uri` with `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-Port`
/// (Traefik, Caddy, our nginx include, HAProxy). When `X-Forwarded-Host` is absent the
/// subrequest's own `Host` is used (Caddy keeps the original host on the subrequest).
///
/// Nothing is guessed: a describing header sent twice, as a comma list, or with bytes that are
/// not visible ASCII refuses the request, and a malformed header never falls back to another.
pub(crate) fn rebuild<'a, H>(sub: &Subrequest<'a, H>, trusted: &[IpNet]) -> Result<Request<'a>, RequestError>
where
    H: Fn(&'static str) -> Field<'a>,
{
    if !is_trusted(sub.peer, trusted) {
        return Err(RequestError::UntrustedPeer(canonical(sub.peer)));
    }
    let h = |name: &'static str| -> Result<Option<&'a str>, RequestError> {
        match (sub.header)(name) {
            Field::Absent => Ok(None),
            Field::One(v) => Ok(Some(v.trim())),
            Field::Invalid => Err(RequestError::Ambiguous(name)),
        }
    };
    let client_ip = client_ip(&sub.forwarded_for, h("x-real-ip")?, trusted);
    let original = match sub.sources {
        Sources::Nginx => h("x-original-url")?,
        Sources::ForwardAuth => None,
    };
    let (mut req, method) = if let Some(url) = original {
        let method = match h("x-original-method")? {
            Some(m) => Some(m),
            None => h("x-forwarded-method")?,
        };
        let mut req = Request::from_url(url, "GET")?;
        // ingress-nginx builds this URL from the client's Host header.
        req.site.port_stated = false;
        (req, method)
    } else if let Some(uri) = h("x-forwarded-uri")? {
        let authority = match h("x-forwarded-host")? {
            Some(a) => a,
            None => h("host")?.ok_or(RequestError::Missing)?,
        };
        let stated_port = h("x-forwarded-port")?.map(parse_port).transpose()?;
        let site = Site::new(h("x-forwarded-proto")?, sub.scheme, authority, stated_port)?;
        if !uri.starts_with('/') {
            return Err(RequestError::BadUrl);
        }
        let path = normalize_path(uri)?;
        let req = Request {
            site,
            path,
            uri: Cow::Borrowed(uri),
            method: Cow::Borrowed("GET"),
            client_ip: None,
            preflight: false,
            wants_html: true,
        };
        (req, h("x-forwarded-method")?)
    } else {
        return Err(RequestError::Missing);
    };
    req.method = parse_method(method.unwrap_or("GET"))?;
    req.client_ip = client_ip;
    classify(
        &mut req,
        (sub.header)("access-control-request-method"),
        (sub.header)("accept"),
    );
    Ok(req)
}

/// The original request as a typed caller describes it (Envoy's `AttributeContext`, Envoy's
/// HTTP mode): nothing comes from a header the client could have written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parts<'a> {
    /// The method, as routed.
    pub method: &'a [u8],
    /// `http` or `https`, when the caller states it.
    pub scheme: Option<&'a [u8]>,
    /// The site's scheme when the caller does not state one (the configuration's `Config::scheme`).
    pub unstated_scheme: &'static str,
    /// The authority (`:authority`, or the Host the gateway routed on).
    pub authority: &'a [u8],
    /// The port the gateway accepted the connection on, when it says (the proxy's word).
    pub port: Option<u16>,
    /// Path and query.
    pub path: &'a [u8],
    /// The client's address, as the gateway saw it.
    pub client_ip: Option<IpAddr>,
}

/// Describe a request from a trusted typed caller's [`Parts`]. Every field must be visible
/// ASCII as an HTTP request could carry it: a method `DELETE\0` is refused, never read as
/// another one; a port in the authority must agree with the listener's.
pub(crate) fn from_parts<'a>(
    p: &Parts<'a>,
    peer: IpAddr,
    trusted: &[IpNet],
) -> Result<Request<'a>, RequestError> {
    if !is_trusted(peer, trusted) {
        return Err(RequestError::UntrustedPeer(canonical(peer)));
    }
    let text = |v: &'a [u8], name: &'static str| -> Result<&'a str, RequestError> {
        match std::str::from_utf8(v) {
            Ok(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) => Ok(s),
            _ => Err(RequestError::Ambiguous(name)),
        }
    };
    let authority = text(p.authority, "host")?;
    if authority.contains(',') {
        return Err(RequestError::Ambiguous("host"));
    }
    let scheme = p.scheme.map(|s| text(s, "scheme")).transpose()?;
    let site = Site::new(scheme, p.unstated_scheme, authority, p.port)?;
    let uri = text(p.path, "path")?;
    if !uri.starts_with('/') {
        return Err(RequestError::BadUrl);
    }
    let method = text(p.method, "method")?;
    Ok(Request {
        site,
        path: normalize_path(uri)?,
        uri: Cow::Borrowed(uri),
        method: parse_method(method)?,
        client_ip: p.client_ip.map(canonical),
        preflight: false,
        wants_html: false,
    })
}

/// A request's preflight and page-load flags, from `Access-Control-Request-Method` and
/// `Accept` (for every way a request is described).
pub(crate) fn classify(req: &mut Request<'_>, acrm: Field<'_>, accept: Field<'_>) {
    let acrm = match acrm {
        Field::One(m) => !m.trim().is_empty(),
        Field::Invalid => true,
        Field::Absent => false,
    };
    req.preflight = req.method == "OPTIONS" && acrm;
    let accept = match accept {
        Field::One(a) => Some(a),
        _ => None,
    };
    req.wants_html = wants_html(&req.method, accept);
}

/// The client's address: the right-most `X-Forwarded-For` hop that is not a trusted proxy,
/// over every line (each proxy appends; everything left of the first untrusted hop is the
/// client's own word); `X-Real-IP` only when there is no `X-Forwarded-For` at all. An
/// unparsable hop ends the search: nothing left of it can be trusted, and no other header
/// stands in for it.
fn client_ip(lines: &[Option<&str>], real_ip: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let mut hops = lines.iter().rev().flatten().flat_map(|l| l.rsplit(','));
    let from_xff = loop {
        let Some(hop) = hops.next() else { break None };
        let hop = hop.trim();
        if hop.is_empty() {
            continue;
        }
        match hop.parse::<IpAddr>().map(canonical) {
            Ok(ip) if is_trusted(ip, trusted) => continue,
            Ok(ip) => break Some(ip),
            Err(_) => break None,
        }
    };
    if lines.iter().any(Option::is_some) {
        return from_xff;
    }
    real_ip.and_then(|v| v.parse::<IpAddr>().ok()).map(canonical)
}

/// `10.0.0.0/8`, or a bare address meaning just that address.
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Whether `peer` is one of the trusted proxies (an IPv4-mapped IPv6 peer, as a dual-stack
/// listener reports IPv4 clients, counts as its IPv4 address).
pub(crate) fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|n| n.contains(&peer))
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A browser navigation: GET or HEAD that accepts HTML and does not come from `fetch`/XHR.
fn wants_html(method: &str, accept: Option<&str>) -> bool {
    (method == "GET" || method == "HEAD") && accept.is_some_and(|a| a.contains("text/html"))
}

fn parse_method(m: &str) -> Result<Cow<'_, str>, RequestError> {
    if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(RequestError::BadMethod);
    }
    Ok(if m.bytes().all(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(m)
    } else {
        Cow::Owned(m.to_ascii_uppercase())
    })
}

/// Normalize the path of a request URI for matching.
///
/// Decodes percent-encoding, resolves `.` and `..` segments (encoded ones too), merges repeated
/// slashes. Refuses what different upstreams read differently: an encoded slash (`%2F`), a
/// backslash (raw or `%5C`), `;` path parameters, a `#` fragment, control characters, invalid
/// UTF-8 and `..` above the root.
pub(crate) fn normalize_path(uri: &str) -> Result<Cow<'_, str>, RequestError> {
    if !uri.starts_with('/') {
        return Err(RequestError::UnsafePath("it does not start with /"));
    }
    // Already normal (the common case), found in one pass that also finds the query: nothing
    // refused or to decode (`#`, `\`, `;`, `%`, control characters), no dot segment and no
    // empty segment (`/.`, `//`). Anything else takes the careful way below, which refuses or
    // normalizes it.
    let mut prev = 0u8;
    let mut plain = true;
    let mut end = uri.len();
    for (i, &c) in uri.as_bytes().iter().enumerate() {
        if c == b'?' {
            end = i;
            break;
        }
        let dot_or_empty_segment = prev == b'/' && matches!(c, b'/' | b'.');
        plain &= !(ODD_IN_PATH[c as usize] || dot_or_empty_segment);
        prev = c;
    }
    let raw = uri.get(..end).unwrap_or(uri);
    if plain {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_careful(raw)
}

/// The bytes that send a path the careful way ([`normalize_path`]): control characters, `#`,
/// backslash, `;` and `%` (one table lookup per byte).
const ODD_IN_PATH: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b < 0x20 || b == 0x7f || matches!(b, b'#' | b'\\' | b';' | b'%');
        c += 1;
    }
    t
};

/// [`normalize_path`] of a path (no query) that starts with `/`, every rule checked in turn.
fn normalize_careful(raw: &str) -> Result<Cow<'_, str>, RequestError> {
    if raw.contains('#') {
        return Err(RequestError::UnsafePath("it contains a fragment (#)"));
    }
    if raw.contains('\\') {
        return Err(RequestError::UnsafePath("it contains a backslash"));
    }
    if raw.contains(';') {
        return Err(RequestError::UnsafePath("it contains ; path parameters"));
    }
    // Already normal (the common case): nothing to decode, no dot segments, no empty segments.
    let plain = !raw.contains(['%', '\\'])
        && !raw.contains("//")
        && !raw.contains("/.")
        && !raw.bytes().any(|b| b.is_ascii_control());
    if plain {
        return Ok(Cow::Borrowed(raw));
    }
    // Segments are pushed onto `path` and popped by truncating to the previous slash.
    let mut path = String::with_capacity(raw.len());
    let mut decoded_buf = String::new();
    for seg in raw.split('/').skip(1) {
        let seg: &str = if seg.contains('%') {
            let d = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| RequestError::UnsafePath("it is not valid UTF-8 once decoded"))?;
            if d.contains('/') {
                return Err(RequestError::UnsafePath("it contains an encoded slash (%2F)"));
            }
            if d.contains('\\') {
                return Err(RequestError::UnsafePath("it contains an encoded backslash (%5C)"));
            }
            decoded_buf.clear();
            decoded_buf.push_str(&d);
            &decoded_buf
        } else {
            seg
        };
        if seg.chars().any(char::is_control) {
            return Err(RequestError::UnsafePath("it contains control characters"));
        }
        match seg {
            "" | "." => {}
            ".." => match path.rfind('/') {
                Some(i) => path.truncate(i),
                None => return Err(RequestError::UnsafePath("it climbs above the root (..)")),
            },
            s => {
                path.push('/');
                path.push_str(s);
            }
        }
    }
    let last = raw.rsplit('/').next().unwrap_or_default();
    let trailing = matches!(last, "" | "." | "..") || is_dot_segment(last);
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(Cow::Owned(path))
}

/// An encoded `.` or `..` segment (`%2e`, `.%2E`, …).
fn is_dot_segment(seg: &str) -> bool {
    seg.contains('%')
        && matches!(
            percent_encoding::percent_decode_str(seg).decode_utf8().as_deref(),
            Ok(".") | Ok("..")
        )
}

#[cfg(test)]
mod tests;
