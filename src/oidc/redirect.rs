//! Where a browser may be sent after login or sign-out (`rd`).
//!
//! Only a path on the same host (`/x`) or an absolute `http(s)` URL whose host is the protected
//! host or on `allowed_redirect_domains` passes. Everything browsers read leniently is refused
//! rather than interpreted: `//evil.com` and `/\evil.com` (protocol-relative), `https:evil.com`
//! (no slashes), `javascript:`, userinfo (`https://good.com@evil.com`), backslashes, control
//! characters and whitespace. A refused target falls back to `/`.

/// An allow-list entry: `.example.com` (the domain and every subdomain), `*.example.com`
/// (every subdomain, as oauth2-proxy's `--whitelist-domain` writes it) or `app.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedDomain {
    /// The host or domain, lower case, without `.` or `*.`.
    name: String,
    /// Which hosts of it: the name itself, its subdomains, or both.
    apex: bool,
    subdomains: bool,
}

impl AllowedDomain {
    /// Parse an entry; `None` when it is not a host name.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let (name, apex, subdomains) = if let Some(d) = s.strip_prefix("*.") {
            (d, false, true)
        } else if let Some(d) = s.strip_prefix('.') {
            (d, true, true)
        } else {
            (s.as_str(), true, false)
        };
        let ok = !name.is_empty()
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        ok.then(|| AllowedDomain {
            name: name.to_string(),
            apex,
            subdomains,
        })
    }

    fn allows(&self, host: &str) -> bool {
        (self.apex && host == self.name)
            || (self.subdomains
                && host.len() > self.name.len() + 1
                && host.ends_with(&self.name)
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.')
    }
}

/// The target to use: `rd` when it is safe, otherwise `/`.
pub(crate) fn safe_target(rd: &str, current_host: &str, allowed: &[AllowedDomain]) -> String {
    if is_safe(rd, current_host, allowed) {
        rd.to_string()
    } else {
        "/".to_string()
    }
}

/// Whether `rd` may be redirected to.
pub(crate) fn is_safe(rd: &str, current_host: &str, allowed: &[AllowedDomain]) -> bool {
    if rd.is_empty()
        || rd.len() > 8192
        || rd
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return false;
    }
    if let Some(rest) = rd.strip_prefix('/') {
        // A path on this host; `//host` would be another host.
        return !rest.starts_with('/');
    }
    let lower = rd.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return false;
    }
    let Ok(url) = url::Url::parse(rd) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let current = current_host.trim_end_matches('.').to_ascii_lowercase();
    host == current || allowed.iter().any(|a| a.allows(&host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<AllowedDomain> {
        vec![
            AllowedDomain::parse(".good.com").unwrap(),
            AllowedDomain::parse("partner.org").unwrap(),
        ]
    }

    fn ok(rd: &str) -> bool {
        is_safe(rd, "app.example.com", &allowed())
    }

    #[test]
    fn same_host_and_allowed_domains_pass() {
        assert!(ok("/"));
        assert!(ok("/docs?a=1&b=2#frag"));
        assert!(ok("https://app.example.com/x"));
        assert!(ok("https://APP.example.com./x"));
        assert!(ok("https://good.com/"));
        assert!(ok("https://wiki.good.com/page"));
        assert!(ok("http://partner.org:8080/"));
    }

    #[test]
    fn open_redirect_attacks_fall_back_to_root() {
        for rd in [
            "//evil.com",
            "//evil.com/path",
            "/\\evil.com",
            "\\\\evil.com",
            "https:evil.com",
            "https:/evil.com",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,hi",
            "https://good.com@evil.com/",
            "https://user:pass@good.com/",
            "https://good.com.evil.com/",
            "https://evilgood.com/",
            "https://sub.partner.org/",
            "https://evil.com/\ngood.com",
            "/x\r\nSet-Cookie: a=b",
            " https://good.com",
            "https://evil.com\\@good.com",
            "ftp://good.com/",
            "",
        ] {
            assert!(!ok(rd), "{rd:?} must be refused");
            assert_eq!(safe_target(rd, "app.example.com", &allowed()), "/");
        }
    }

    #[test]
    fn allowed_domain_entries_are_validated() {
        assert!(AllowedDomain::parse("*good.com").is_none());
        assert!(
            AllowedDomain::parse("*.good.com").is_some(),
            "oauth2-proxy's form"
        );
        assert!(AllowedDomain::parse("good..com").is_none());
        assert!(AllowedDomain::parse("").is_none());
    }

    #[test]
    fn oauth2_proxy_wildcard_entries_allow_subdomains_only() {
        let allowed = [AllowedDomain::parse("*.example.com").unwrap()];
        assert!(is_safe("https://app.example.com/x", "other.test", &allowed));
        assert!(!is_safe("https://example.com/x", "other.test", &allowed));
        assert!(!is_safe("https://evilexample.com/x", "other.test", &allowed));
        assert!(AllowedDomain::parse("*.").is_none());
        assert!(AllowedDomain::parse("app.example.com:8443").is_none());
    }
}
