//! Every cookie forwarden reads or writes: the session (single or chunked) and the
//! pending-login cookie, with one set of attributes (HttpOnly, SameSite=Lax, Secure as
//! configured, the configured domain).

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use cookie::Cookie;

use crate::clock::Entropy;
use crate::config::CookieConfig;
use crate::oidc::flow::{self, LOGIN_TTL};
use crate::session::{self, MAX_CHUNKS, Session};

/// The value of the first cookie called `name` in these `Cookie` header values.
pub fn find_cookie<'a>(headers: impl Iterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers.into_iter().find_map(|h| {
        let mut rest = h;
        loop {
            let (kv, next) = match memchr::memchr(b';', rest.as_bytes()) {
                Some(i) => (rest.get(..i)?, rest.get(i + 1..)?),
                None => (rest, ""),
            };
            // `name`, spaces, `=`: the pair's name is `name` (a cookie name holds no `=`),
            // found without searching each pair for its `=`.
            let value = kv
                .trim_start()
                .strip_prefix(name)
                .and_then(|r| r.trim_start().strip_prefix('='));
            if let Some(v) = value {
                return Some(v.trim());
            }
            if next.is_empty() {
                return None;
            }
            rest = next;
        }
    })
}

/// Whether a cookie name is one of forwarden's session cookies: `name`, or a chunk `name_<n>`.
fn is_session_cookie(cookie: &[u8], name: &str) -> bool {
    cookie == name.as_bytes()
        || cookie
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"_"))
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// The cookie pairs of `Cookie` lines, trimmed, empty ones skipped, each with its name
/// (`memchr` finds the separators: the values, most of the bytes, are never looked at).
fn cookie_pairs<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    lines.into_iter().flat_map(|line| {
        let mut rest = Some(line);
        std::iter::from_fn(move || {
            loop {
                let r = rest?;
                let (pair, next) = match memchr::memchr(b';', r) {
                    Some(i) => (r.get(..i)?, r.get(i + 1..)),
                    None => (r, None),
                };
                rest = next;
                let pair = pair.trim_ascii();
                if pair.is_empty() {
                    continue;
                }
                let name = match memchr::memchr(b'=', pair) {
                    Some(i) => pair.get(..i)?.trim_ascii(),
                    None => pair,
                };
                return Some((name, pair));
            }
        })
    })
}

/// The request's cookies as the upstream should get them: every `Cookie` line's pairs joined by
/// `; `, without forwarden's session cookies (`name`, and `name_0`, `name_1`, … when chunked).
/// A session cookie is a credential for every host this forwarden protects, wherever a copy is
/// presented (a cookie's domain limits where browsers send it, not where it is accepted), so no
/// app behind it may see it. `None` when there is none to remove.
/// (`lines` gives the lines afresh: they are read twice when there is one to remove.)
pub(crate) fn without_session<'a, I>(lines: impl Fn() -> I, name: &str) -> Option<Vec<u8>>
where
    I: Iterator<Item = &'a [u8]>,
{
    // One pass tells the common cases apart: no session cookie (nothing to remove), or nothing
    // but session cookies (nothing left).
    let (mut session, mut other) = (false, false);
    for (n, _) in cookie_pairs(lines()) {
        if is_session_cookie(n, name) {
            session = true;
        } else {
            other = true;
        }
        if session && other {
            break;
        }
    }
    if !session {
        return None;
    }
    let mut kept = Vec::new();
    if !other {
        return Some(kept);
    }
    for (_, pair) in cookie_pairs(lines()).filter(|(n, _)| !is_session_cookie(n, name)) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    Some(kept)
}

/// The `Cookie` header an allowed HTTP answer gives the proxy to send the upstream instead of
/// the client's: [`without_session`], empty when nothing else is left. Every answer carries it,
/// so that a proxy replacing the header never forwards the client's.
pub(crate) fn upstream_cookie(headers: &HeaderMap, name: &str) -> HeaderValue {
    let lines = headers.get_all(header::COOKIE);
    let kept = match without_session(|| lines.iter().map(HeaderValue::as_bytes), name) {
        Some(kept) => kept,
        None => {
            let mut it = lines.iter();
            if let (Some(one), None) = (it.next(), it.next()) {
                return one.clone();
            }
            let all: Vec<&[u8]> = lines.iter().map(HeaderValue::as_bytes).collect();
            all.join(&b"; "[..])
        }
    };
    if kept.is_empty() {
        return HeaderValue::from_static("");
    }
    // Pairs of valid header values joined by `; ` are a valid value; should one not be, the
    // upstream gets no cookie rather than forwarden's.
    HeaderValue::from_bytes(&kept).unwrap_or_else(|_| HeaderValue::from_static(""))
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

/// A `Set-Cookie` value with forwarden's attributes. `max_age` in seconds (`Some(0)` deletes).
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

/// Every name a session may use: the single cookie and each chunk.
fn session_names(c: &CookieConfig) -> impl Iterator<Item = String> + '_ {
    std::iter::once(c.name.clone()).chain((0..MAX_CHUNKS).map(|i| format!("{}_{i}", c.name)))
}

/// `Set-Cookie` values deleting every session cookie name.
pub fn clear_session(c: &CookieConfig) -> Vec<HeaderValue> {
    session_names(c)
        .filter_map(|n| set_cookie(c, &n, "", "/", Some(0)))
        .collect()
}

/// Set the session cookies, and delete the names a previous, differently sized session used.
/// A session too large for every group keeps those a policy names (`needed`); one that does
/// not fit even then is refused, so the browser is never sent round a sign-in loop.
pub fn set_session(
    c: &CookieConfig,
    entropy: &Entropy,
    s: &mut Session,
    needed: impl Fn(&str) -> bool,
    r: &mut Response,
) -> Result<(), session::SessionError> {
    let cookies = session::seal_fitting(s, &c.keys, &c.name, entropy.bytes(), needed)?;
    let max_age = c.lifetime.as_secs() as i64;
    for name in session_names(c) {
        let v = match cookies.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => set_cookie(c, &name, value, "/", Some(max_age)),
            None => set_cookie(c, &name, "", "/", Some(0)),
        };
        if let Some(v) = v {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(())
}

/// Set the ticket cookie (session store), deleting any chunks a cookie session left.
pub fn set_ticket(c: &CookieConfig, value: &str, r: &mut Response) {
    let max_age = i64::try_from(c.lifetime.as_secs()).unwrap_or(i64::MAX);
    for name in session_names(c) {
        let v = if name == c.name {
            set_cookie(c, &name, value, "/", Some(max_age))
        } else {
            set_cookie(c, &name, "", "/", Some(0))
        };
        if let Some(v) = v {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// Delete every session cookie on a response.
pub fn end_session(c: &CookieConfig, r: &mut Response) {
    for v in clear_session(c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn login_cookie_name(c: &CookieConfig) -> String {
    format!("{}_login", c.name)
}

/// The logins this browser has started and not finished (several tabs), from the sealed
/// pending-login cookie; none when it is missing or does not open.
pub fn pending_logins(c: &CookieConfig, headers: &HeaderMap) -> Vec<flow::Pending> {
    let name = login_cookie_name(c);
    request_cookie(headers, &name)
        .and_then(|v| session::open_bytes(v, &c.keys, &name).ok())
        .map(|b| flow::decode(&b))
        .unwrap_or_default()
}

/// Store the pending logins (or delete the cookie when there are none).
pub fn store_pending(c: &CookieConfig, entropy: &Entropy, list: &[flow::Pending], r: &mut Response) {
    let name = login_cookie_name(c);
    let v = if list.is_empty() {
        set_cookie(c, &name, "", "/oauth2", Some(0))
    } else {
        let sealed = session::seal_bytes(&flow::encode(list), &c.keys, &name, entropy.bytes());
        set_cookie(c, &name, &sealed, "/oauth2", Some(LOGIN_TTL as i64))
    };
    if let Some(v) = v {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The session's cookies as this request sent them (the single one or the chunks, or the
/// ticket with a session store): names and sealed values, as a hand-off carries them.
pub fn session_cookie_values(c: &CookieConfig, headers: &HeaderMap) -> Vec<(String, String)> {
    session_names(c)
        .filter_map(|n| request_cookie(headers, &n).map(|v| (n, v.to_string())))
        .collect()
}

/// Set these session cookies (sealed values from [`session_cookie_values`]) under `c`'s
/// domain, and delete every other session name.
pub fn set_raw_session(c: &CookieConfig, values: &[(String, String)], r: &mut Response) {
    let max_age = i64::try_from(c.lifetime.as_secs()).unwrap_or(i64::MAX);
    for name in session_names(c) {
        let v = match values.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => set_cookie(c, &name, value, "/", Some(max_age)),
            None => set_cookie(c, &name, "", "/", Some(0)),
        };
        if let Some(v) = v {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{find_cookie, upstream_cookie, without_session};
    use axum::http::{HeaderMap, HeaderValue, header};

    fn upstream(lines: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(header::COOKIE, HeaderValue::from_str(l).unwrap());
        }
        upstream_cookie(&h, "_forwarden").to_str().unwrap().to_string()
    }

    /// An app behind forwarden never receives the session cookie (a credential for every app
    /// this forwarden protects), whole or chunked, in any `Cookie` line; its own cookies arrive.
    #[test]
    fn session_cookie_is_kept_from_the_upstream_and_the_apps_own_cookies_pass() {
        assert_eq!(upstream(&["_forwarden=sealed"]), "");
        assert_eq!(
            upstream(&["theme=dark; _forwarden=sealed; lang=en"]),
            "theme=dark; lang=en"
        );
        assert_eq!(upstream(&["_forwarden_0=2.abc; a=1", "_forwarden_1=def"]), "a=1");
        assert_eq!(upstream(&[" _forwarden = x ;b=2;;"]), "b=2");
        // Look-alikes are the app's: another prefix, a suffix that is not a chunk number.
        assert_eq!(
            upstream(&["x_forwarden=1; _forwarden_x=2; _forwarden_=3; _forwardenx=4"]),
            "x_forwarden=1; _forwarden_x=2; _forwarden_=3; _forwardenx=4"
        );
        // Untouched when there is nothing to remove, joined when there are several lines.
        assert_eq!(upstream(&["a=1;b=2"]), "a=1;b=2");
        assert_eq!(upstream(&["a=1", "b=2"]), "a=1; b=2");
        assert_eq!(upstream(&[]), "");
        assert_eq!(
            without_session(|| [b"a=1; b".as_slice()].into_iter(), "_forwarden"),
            None
        );
        assert_eq!(
            without_session(
                || [b"_forwarden_1=x;b;; c=3 ".as_slice()].into_iter(),
                "_forwarden"
            ),
            Some(b"b; c=3".to_vec())
        );
    }

    /// The plain reading of a `Cookie` header: pairs split at `;`, the name and value at the
    /// first `=`, both trimmed.
    fn reference<'a>(headers: &[&'a str], name: &str) -> Option<&'a str> {
        headers.iter().find_map(|h| {
            h.split(';').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| v.trim())
            })
        })
    }

    #[test]
    fn the_first_cookie_of_the_name_across_lines() {
        let lines = ["a=1; _f=x", " _f = y ;_f=z", "b"];
        assert_eq!(find_cookie(lines.iter().copied(), "_f"), Some("x"));
        assert_eq!(find_cookie(lines[1..].iter().copied(), "_f"), Some("y"));
        assert_eq!(find_cookie(["a=1;;b=2;"].into_iter(), "b"), Some("2"));
        assert_eq!(find_cookie(["a=1; b"].into_iter(), "b"), None);
    }

    proptest::proptest! {
        /// The scan with `memchr` reads every header as the plain reading does.
        #[test]
        fn reads_as_the_plain_split(
            lines in proptest::collection::vec("[ab=; _]{0,12}", 0..3),
            name in "[ab_]{1,2}",
        ) {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(find_cookie(refs.iter().copied(), &name), reference(&refs, &name));
        }
    }
}
