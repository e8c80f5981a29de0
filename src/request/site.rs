//! Which site a request is for: one rule for every caller. The auth subrequests (nginx,
//! forward-auth), Envoy's typed description, the browser's own visits to sign in and out, and
//! `explain` all decide the scheme, host and port here, so they cannot disagree.

use std::borrow::Cow;

use super::RequestError;

/// The site a request was made to: what the route is chosen by, where sign-in and sign-out
/// send the browser back, and what `explain` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site<'a> {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Lower-case host name without port or trailing dot.
    pub host: Cow<'a, str>,
    /// Port, when the request named one.
    pub port: Option<u16>,
    /// Whether the port is the proxy's word (`X-Forwarded-Port`, the port Envoy's listener
    /// accepted on, a pinned host, or a URL given whole), not only a port the client wrote in
    /// its Host header. Only a stated port can select a route whose `from` names a port.
    pub port_stated: bool,
}

impl<'a> Site<'a> {
    /// The one rule, from what the caller was told:
    /// - `scheme`: `http` or `https` (`ws`, `wss` as their http counterparts; a list such as
    ///   `https, http` is refused: a client's value may come first). When nobody states one it
    ///   is `unstated`, the site's configured scheme (the configuration's `Config::scheme`).
    /// - `authority`: `host[:port]` (a list is refused).
    /// - `stated_port`: the proxy's own word on the port; it must agree with the authority's.
    pub(crate) fn new(
        scheme: Option<&str>,
        unstated: &'static str,
        authority: &'a str,
        stated_port: Option<u16>,
    ) -> Result<Self, RequestError> {
        let scheme = match scheme {
            Some(s) => parse_scheme(s)?,
            None => unstated,
        };
        // A list (`a.example, b.example`) is ambiguous, not merely a bad host: looked for only
        // when the authority is refused, as a comma never makes a valid one.
        let (host, in_authority) = parse_host(authority).map_err(|e| {
            if authority.contains(',') {
                RequestError::Ambiguous("x-forwarded-host")
            } else {
                e
            }
        })?;
        let port = match (in_authority, stated_port) {
            (Some(a), Some(s)) if a != s => return Err(RequestError::PortMismatch),
            (a, s) => s.or(a),
        };
        Ok(Site {
            scheme,
            host,
            port,
            port_stated: stated_port.is_some(),
        })
    }

    /// The port, or the scheme's default (443, 80) when the request named none.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(default_port(self.scheme))
    }

    /// `scheme://host[:port]`, the port only when it is not the scheme's default.
    pub fn origin(&self) -> String {
        match self.port {
            Some(p) if p != default_port(self.scheme) => format!("{}://{}:{}", self.scheme, self.host, p),
            _ => format!("{}://{}", self.scheme, self.host),
        }
    }

    /// Judge the request as the host a location pins (`host=`, `route=`), whatever it said.
    /// The pin's port is the proxy's word; without one, no port is (Traefik, for one, derives
    /// `X-Forwarded-Port` from the client's Host header). The server and `explain` both pin
    /// through here, so they cannot disagree.
    pub fn pin(&mut self, (host, port): &(String, Option<u16>)) {
        self.host = Cow::Owned(host.clone());
        self.port_stated = port.is_some();
        if port.is_some() {
            self.port = *port;
        }
    }

    /// The same site, owning its host.
    pub fn into_owned(self) -> Site<'static> {
        Site {
            scheme: self.scheme,
            host: Cow::Owned(self.host.into_owned()),
            port: self.port,
            port_stated: self.port_stated,
        }
    }
}

/// A port as a proxy states it (`X-Forwarded-Port`).
pub(crate) fn parse_port(text: &str) -> Result<u16, RequestError> {
    text.parse().map_err(|_| RequestError::BadHost)
}

/// `scheme`'s default port: 443 for https, 80 for http (the one place that says so).
pub(crate) fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// `http` or `https`, in any case, with surrounding spaces; `ws` and `wss` (Traefik's
/// `X-Forwarded-Proto` of a WebSocket upgrade) as `http` and `https`. Anything else, a list
/// included, is refused.
pub(crate) fn parse_scheme(s: &str) -> Result<&'static str, RequestError> {
    // What every proxy sends, compared first.
    match s {
        "https" => return Ok("https"),
        "http" => return Ok("http"),
        _ => {}
    }
    let s = s.trim();
    if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("wss") {
        Ok("https")
    } else if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("ws") {
        Ok("http")
    } else {
        Err(RequestError::BadScheme)
    }
}

/// What each byte may be in a host name ([`parse_host`]): 0 not allowed, [`UPPER`] an upper-case
/// letter, 1 any other letter, digit, `-`, `_` or `.` (one table lookup per byte).
const HOST_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_uppercase() {
            UPPER
        } else if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            1
        } else {
            0
        };
        c += 1;
    }
    t
};

/// [`HOST_BYTES`]' mark of an upper-case letter.
const UPPER: u8 = 2;

/// Split `host[:port]` and normalize the host: lower case, no trailing dot, only characters
/// that can appear in a DNS name or an IP literal.
pub(crate) fn parse_host(authority: &str) -> Result<(Cow<'_, str>, Option<u16>), RequestError> {
    if authority.starts_with('[') {
        return parse_ip_literal(authority);
    }
    // One scan of the bytes (this runs on every request): the name up to the first `:`, each
    // byte a letter, digit, `-`, `_` or a dot that follows no dot; then the port. An `@`, a
    // second `:` or anything else is refused.
    let bytes = authority.as_bytes();
    let end = bytes.iter().position(|&c| c == b':').unwrap_or(bytes.len());
    let name = &bytes[..end];
    let name = name.strip_suffix(b".").unwrap_or(name);
    let mut prev = b'.';
    let mut valid = !name.is_empty() && name.len() <= 253;
    let mut upper = false;
    for &c in name {
        let class = HOST_BYTES[c as usize];
        valid &= class != 0 && !(c == b'.' && prev == b'.');
        upper |= class == UPPER;
        prev = c;
    }
    if !valid {
        return Err(RequestError::BadHost);
    }
    let port = match authority.get(end + 1..) {
        Some(p) => Some(p.parse::<u16>().map_err(|_| RequestError::BadHost)?),
        None => None,
    };
    let host = &authority[..name.len()];
    let host = if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Ok((host, port))
}

/// [`parse_host`] of `[IPv6]` or `[IPv6]:port`.
pub(super) fn parse_ip_literal(authority: &str) -> Result<(Cow<'_, str>, Option<u16>), RequestError> {
    let rest = authority.strip_prefix('[').ok_or(RequestError::BadHost)?;
    if rest.contains('@') {
        return Err(RequestError::BadHost);
    }
    let (h, after) = rest.split_once(']').ok_or(RequestError::BadHost)?;
    let port = match after.strip_prefix(':') {
        Some(p) => Some(p.parse::<u16>().map_err(|_| RequestError::BadHost)?),
        None if after.is_empty() => None,
        None => return Err(RequestError::BadHost),
    };
    h.parse::<std::net::Ipv6Addr>()
        .map_err(|_| RequestError::BadHost)?;
    Ok((Cow::Owned(format!("[{}]", h.to_ascii_lowercase())), port))
}
