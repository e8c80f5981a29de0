//! Routes: which requests a policy covers, and which route wins when several could.
//!
//! Precedence, most specific first: an exact host beats a wildcard host (and a longer wildcard
//! suffix a shorter one); within a host an exact `path` beats a `regex`, which beats a `prefix`
//! (longer first), which beats a route without any path matcher; a route limited to `methods`
//! beats one that is not; among equals, the one written first wins. A prefix matches whole path
//! segments: `/admin` covers `/admin` and `/admin/x`, never `/administrator`.

use std::collections::HashMap;

use regex::Regex;

use crate::policy::ppl::Rule;
use crate::request::Request;

/// The host part of `from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Exactly this host.
    Exact(String),
    /// `*.suffix`: any host ending in `.suffix`.
    Wildcard(String),
}

/// One route of a policy file.
#[derive(Debug, Clone)]
pub struct Route {
    /// `file:line` of the route.
    pub origin: String,
    /// The file, as named in the configuration.
    pub file: String,
    /// Where the route starts in it.
    pub pos: crate::yaml::Pos,
    /// The `from` URL as written.
    pub from: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The host matcher.
    pub host: HostMatch,
    /// A port, when `from` names one.
    pub port: Option<u16>,
    /// Segment prefix, without trailing slash (`""` for `/`).
    pub prefix: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Whole-path regular expression.
    pub regex: Option<Regex>,
    /// Allowed methods (upper case); `None` for any.
    pub methods: Option<Vec<String>>,
    /// `allow_public_unauthenticated_access`.
    pub public: bool,
    /// `cors_allow_preflight`: CORS preflights pass without a session.
    pub cors_preflight: bool,
    /// Allow and deny rules (inline, named and legacy fields together).
    pub rules: Vec<Rule>,
}

impl Route {
    /// Whether the route covers the request (host already matched by the index).
    pub fn matches(&self, req: &Request) -> bool {
        if self.scheme != req.scheme {
            return false;
        }
        if let Some(p) = self.port {
            if req.port.unwrap_or(default_port(req.scheme)) != p {
                return false;
            }
        }
        if let Some(m) = &self.methods {
            if !m.iter().any(|x| x == req.method.as_ref()) {
                return false;
            }
        }
        if let Some(p) = &self.path {
            if p.as_str() != req.path.as_ref() {
                return false;
            }
        }
        if let Some(p) = &self.prefix {
            if !segment_prefix(&req.path, p) {
                return false;
            }
        }
        if let Some(r) = &self.regex {
            if !r.is_match(&req.path) {
                return false;
            }
        }
        true
    }

    /// Rank within one host: higher is more specific.
    fn rank(&self) -> (u8, usize, bool) {
        let kind = if self.path.is_some() {
            3
        } else if self.regex.is_some() {
            2
        } else if self.prefix.is_some() {
            1
        } else {
            0
        };
        (
            kind,
            self.prefix.as_ref().map_or(0, String::len),
            self.methods.is_some(),
        )
    }

    /// A short description for `explain`.
    pub fn describe(&self) -> String {
        let mut s = self.from.clone();
        if let Some(p) = &self.path {
            s.push_str(&format!(" path {p}"));
        }
        if let Some(p) = &self.prefix {
            s.push_str(&format!(" prefix {}/", p));
        }
        if let Some(r) = &self.regex {
            s.push_str(&format!(" regex {}", r.as_str()));
        }
        if let Some(m) = &self.methods {
            s.push_str(&format!(" methods {}", m.join(",")));
        }
        s
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// Whether `prefix` (no trailing slash) covers `path` on a segment boundary.
pub fn segment_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Routes by host, each list sorted most specific first.
#[derive(Debug, Default)]
pub struct Index {
    exact: HashMap<String, Vec<usize>>,
    wildcard: HashMap<String, Vec<usize>>,
}

impl Index {
    /// Build the index over `routes` (file order breaks ties).
    pub fn build(routes: &[Route]) -> Self {
        let mut idx = Index::default();
        for (i, r) in routes.iter().enumerate() {
            match &r.host {
                HostMatch::Exact(h) => idx.exact.entry(h.clone()).or_default().push(i),
                HostMatch::Wildcard(s) => idx.wildcard.entry(s.clone()).or_default().push(i),
            }
        }
        for list in idx.exact.values_mut().chain(idx.wildcard.values_mut()) {
            // Stable sort: equal ranks keep file order.
            list.sort_by(|a, b| routes[*b].rank().cmp(&routes[*a].rank()));
        }
        idx
    }

    /// The most specific route covering `req`.
    pub fn find<'r>(&self, routes: &'r [Route], req: &Request) -> Option<&'r Route> {
        let first = |list: Option<&Vec<usize>>| {
            list.and_then(|l| l.iter().map(|i| &routes[*i]).find(|r| r.matches(req)))
        };
        if let Some(r) = first(self.exact.get(req.host.as_ref())) {
            return Some(r);
        }
        if self.wildcard.is_empty() {
            return None;
        }
        // Longest suffix first: for a.b.example.com try b.example.com, then example.com, …
        let mut rest: &str = &req.host;
        while let Some(i) = rest.find('.') {
            rest = &rest[i + 1..];
            if let Some(r) = first(self.wildcard.get(rest)) {
                return Some(r);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_segments() {
        assert!(segment_prefix("/admin", "/admin"));
        assert!(segment_prefix("/admin/x", "/admin"));
        assert!(!segment_prefix("/administrator", "/admin"));
        assert!(segment_prefix("/anything", ""));
    }
}
