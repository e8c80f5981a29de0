//! What `forwarden check` reports beyond validation: the configuration and the policies read
//! together (a `Secure` cookie on an http site, identity headers a proxy configuration does not
//! handle, the redirect URIs to register).

use super::Config;
use crate::policy::{HostMatch, PolicySet};

/// The shipped nginx include, compiled in: the identity headers it sets are read from it, so
/// `check` cannot disagree with the file.
const NGINX_LOCATION_INCLUDE: &str = include_str!("../../nginx/forwarden-location.conf");

/// The headers the shipped nginx location include sets from forwarden's answer: each
/// `proxy_set_header <Name> $forwarden_…` line.
fn nginx_include_headers() -> Vec<&'static str> {
    NGINX_LOCATION_INCLUDE
        .lines()
        .filter_map(|l| l.trim().strip_prefix("proxy_set_header "))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            value.trim().starts_with("$forwarden_").then_some(name)
        })
        .filter(|n| !n.eq_ignore_ascii_case("upgrade") && !n.eq_ignore_ascii_case("connection"))
        .collect()
}

/// Warnings about the configuration and the policies together: a `Secure` session cookie on a
/// site served over http is never sent back, so sign-in there fails with "state mismatch".
pub fn cookie_scheme_warnings(cfg: &Config, set: &PolicySet) -> Vec<String> {
    if !cfg.cookie.secure {
        return Vec::new();
    }
    let mut http: Vec<String> = set
        .routes()
        .iter()
        .filter(|r| r.scheme == "http" && !r.public)
        .map(|r| r.label.clone())
        .collect();
    if cfg.public_url.as_ref().is_some_and(|u| u.scheme() == "http") {
        http.insert(0, "public_url".into());
    }
    if http.is_empty() {
        return Vec::new();
    }
    let more = if http.len() > 3 {
        format!(" and {} more", http.len() - 3)
    } else {
        String::new()
    };
    http.truncate(3);
    vec![format!(
        "warning: cookie.secure is on, but {}{more} use http: browsers do not send Secure cookies over http, so signing in there fails with \"state mismatch\". Serve those sites over https, or set cookie.secure: false for a local test",
        http.join(", ")
    )]
}

/// In central mode (`public_url` with `cookie.domain`), a route whose host no cookie domain
/// covers (neither `cookie.domain` nor one of `cookie.other_domains`) can never keep the
/// session the central host signs in: its browsers come back without a cookie, and the
/// sign-in starts again. Each such route is named, with what to add.
pub fn cookie_domain_warnings(cfg: &Config, set: &PolicySet) -> Vec<String> {
    let (Some(_), Some(central)) = (&cfg.public_url, &cfg.cookie.domain) else {
        return Vec::new();
    };
    let covers = |d: &str, host: &str| {
        let bare = d.trim_start_matches('.').to_ascii_lowercase();
        host == bare || host.ends_with(&format!(".{bare}"))
    };
    set.routes()
        .iter()
        .filter(|r| !r.public)
        .filter_map(|r| {
            let host = match &r.host {
                crate::policy::HostMatch::Exact(h) => h.to_ascii_lowercase(),
                crate::policy::HostMatch::Wildcard(s) => format!("x.{}", s.to_ascii_lowercase()),
            };
            let covered = covers(central, &host) || cfg.cookie.other_domains.iter().any(|d| covers(d, &host));
            (!covered).then(|| {
                format!(
                    "warning: {} ({}) is under no cookie domain: its browsers cannot keep the session signed in at public_url (cookie.domain is {central}); add its registrable domain to cookie.other_domains",
                    r.label, r.from
                )
            })
        })
        .collect()
}

/// Identity headers the shipped nginx include does not name: nginx cannot remove headers by
/// pattern, so each needs a pair of lines beside the include, or a client's copy of it would
/// reach the upstream. Headers outside the `X-Auth-Request-*` and `X-Forwarden-*` patterns that
/// the shipped Caddy, HAProxy and Traefik configurations remove need listing there too.
pub fn proxy_header_notes(cfg: &Config) -> Vec<String> {
    let in_include = nginx_include_headers();
    let mut names: Vec<&str> = cfg.headers.all();
    if let Some(j) = &cfg.identity_jwt {
        names.push(&j.header);
    }
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !in_include.iter().any(|h| h.eq_ignore_ascii_case(n)))
        .collect();
    let mut out = Vec::new();
    if !missing.is_empty() {
        out.push(
            "nginx: forwarden-location.conf names the default identity headers only; add these lines after it in each protected location, so that a client's own copy of each header forwarden sets is replaced:".to_string(),
        );
        for n in &missing {
            let var = n.to_ascii_lowercase().replace('-', "_");
            out.push(format!(
                "    auth_request_set $forwarden_h_{var} $upstream_http_{var};"
            ));
            out.push(format!("    proxy_set_header {n} $forwarden_h_{var};"));
        }
    }
    for n in names.iter().filter(|n| {
        let l = n.to_ascii_lowercase().replace('_', "-");
        !l.starts_with("x-auth-request-") && !l.starts_with("x-forwarden-")
    }) {
        out.push(format!(
            "warning: the header {n} is not named X-Auth-Request-* or X-Forwarden-*: the shipped Caddy, HAProxy and Traefik configurations do not remove a client's copy of it; add it to the list of headers they remove"
        ));
    }
    out
}

/// Warnings about the session store's settings that load but cannot work: an empty password
/// (`password: ${REDIS_PASSWORD}` with the variable set but empty) makes Redis refuse every
/// command, and every sign-in with it.
pub fn store_warnings(cfg: &Config) -> Vec<String> {
    let empty = cfg
        .session_store
        .as_ref()
        .and_then(|r| r.password.as_ref())
        .is_some_and(|p| p.expose().is_empty());
    match empty {
        true => vec![
            "warning: session_store.redis.password is empty (a variable set to nothing?): a Redis without a password refuses AUTH, one with a password refuses the empty one; leave password out for a Redis without one".to_string(),
        ],
        false => Vec::new(),
    }
}

/// The redirect URIs to register at the identity provider.
pub fn redirect_uris(cfg: &Config, set: &PolicySet) -> Vec<String> {
    if let Some(p) = &cfg.public_url {
        return vec![format!(
            "redirect URI to register at the identity provider: {}/oauth2/callback",
            p.as_str().trim_end_matches('/')
        )];
    }
    let mut hosts: Vec<String> = Vec::new();
    let mut wildcards = false;
    for r in set.routes().iter().filter(|r| !r.public) {
        match &r.host {
            HostMatch::Exact(h) => {
                let uri = match r.port {
                    Some(p) => format!("{}://{h}:{p}/oauth2/callback", r.scheme),
                    None => format!("{}://{h}/oauth2/callback", r.scheme),
                };
                if !hosts.contains(&uri) {
                    hosts.push(uri);
                }
            }
            HostMatch::Wildcard(_) => wildcards = true,
        }
    }
    let at = if cfg.providers.len() > 1 {
        "each identity provider"
    } else {
        "the identity provider"
    };
    let mut out = vec![format!(
        "redirect URIs to register at {at} (one per protected host):"
    )];
    out.extend(hosts.into_iter().map(|h| format!("  {h}")));
    if wildcards {
        out.push(
            "  (wildcard routes need their hosts registered one by one, or public_url for central mode)"
                .into(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nginx_include_names_the_default_identity_headers() {
        let h = nginx_include_headers();
        for name in [
            "X-Auth-Request-User",
            "X-Auth-Request-Email",
            "X-Auth-Request-Preferred-Username",
            "X-Auth-Request-Groups",
            "X-Auth-Request-Roles",
            "X-Auth-Request-Client-Id",
            "X-Auth-Request-Name",
            "X-Forwarden-Jwt",
        ] {
            assert!(h.contains(&name), "{name}: {h:?}");
        }
        assert!(!h.iter().any(|n| n.eq_ignore_ascii_case("upgrade")), "{h:?}");
    }
}
