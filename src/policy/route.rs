//! Routes: which requests a policy covers, and which route wins when several could.
//!
//! Precedence, most specific first: an exact host beats a wildcard host (and a longer wildcard
//! suffix a shorter one); within a host a route whose `from` names a port beats one that does
//! not; then an exact `path` beats a `regex`, which beats a `prefix`
//! (longer first), which beats a route without any path matcher; a route limited to `methods`
//! beats one that is not; among equals, the one written first wins. A prefix matches whole path
//! segments: `/admin` covers `/admin` and `/admin/x`, never `/administrator`.

use rustc_hash::FxHashMap as HashMap;

use regex::Regex;

use crate::diag::Origin;
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
    /// Where the route starts.
    pub origin: Origin,
    /// `file:line`, formatted once: the route's label in metrics and audit lines.
    pub label: String,
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
    /// Who may sign in to it: `identity_providers`, `idp_client_id`, `idp_client_secret`.
    pub sign_in: SignInWith,
}

/// Which sign-ins a route accepts (`identity_providers`, Pomerium's `idp_client_id` and
/// `idp_client_secret`). A session signed in otherwise counts as no session on this route: the
/// user is asked to sign in with one of these (never let in on another provider's word, or
/// through another app registration than the route's own).
#[derive(Debug, Clone, Default)]
pub struct SignInWith {
    /// The providers (by name) whose sessions and bearer tokens count; empty: every one.
    pub providers: Vec<String>,
    /// The app registration the sign-in goes through, instead of the provider's own client.
    pub client: Option<RouteClient>,
    /// Where the route says so (`identity_providers`, else `idp_client_id`), for problems.
    pub origin: Option<Origin>,
}

/// A route's own app registration at its provider.
#[derive(Debug, Clone)]
pub struct RouteClient {
    /// `idp_client_id`.
    pub id: String,
    /// `idp_client_secret` as written: the secret, or `${ENV_VAR}` read when it is used.
    pub secret: crate::secret::Secret,
}

impl SignInWith {
    /// Whether a session or token from provider `idp` through client `client` (`""`: the
    /// provider's own) counts on the route.
    pub fn accepts(&self, idp: &str, client: &str) -> bool {
        let provider = self.providers.is_empty() || self.providers.iter().any(|p| p == idp);
        let wanted = self.client.as_ref().map_or("", |c| c.id.as_str());
        provider && client == wanted
    }

    /// The route's own app registration when it is one at provider `name` (`only`: the
    /// configuration has this one provider, so a route naming none means it).
    pub fn client_at(&self, name: &str, only: bool) -> Option<&RouteClient> {
        let here = self.providers.iter().any(|p| p == name) || (self.providers.is_empty() && only);
        self.client.as_ref().filter(|_| here)
    }

    /// Whether a bearer token from the issuer tied to `idp` counts (the client is the token's
    /// caller, judged by the rules).
    pub fn accepts_issuer(&self, idp: &str) -> bool {
        self.providers.is_empty() || self.providers.iter().any(|p| p == idp)
    }

    /// Whether the route says anything (the default accepts any provider's own client).
    pub fn is_default(&self) -> bool {
        self.providers.is_empty() && self.client.is_none()
    }
}

impl Route {
    /// Whether the route covers the request (host already matched by the index).
    pub fn matches(&self, req: &Request) -> bool {
        if let Some(p) = self.port {
            // A port only the client wrote (Host: app:8080) never selects a port's route.
            if !req.site.port_stated || req.site.port_or_default() != p {
                return false;
            }
        }
        self.matches_but_port(req)
    }

    /// Whether the route covers the request, leaving its port aside.
    fn matches_but_port(&self, req: &Request) -> bool {
        if self.scheme != req.site.scheme {
            return false;
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

    /// How specific the route is within its host.
    pub fn precedence(&self) -> Precedence {
        let path = if self.path.is_some() {
            PathMatch::Exact
        } else if self.regex.is_some() {
            PathMatch::Regex
        } else if let Some(p) = &self.prefix {
            PathMatch::Prefix(p.len())
        } else {
            PathMatch::Any
        };
        Precedence {
            port: self.port.is_some(),
            path,
            methods: self.methods.is_some(),
        }
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

/// Whether `prefix` (no trailing slash) covers `path` on a segment boundary.
pub(crate) fn segment_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How a route matches paths, least specific first (the derived order is the precedence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathMatch {
    /// No path matcher: every path.
    Any,
    /// A segment prefix of this many bytes (a longer prefix is more specific).
    Prefix(usize),
    /// A whole-path regular expression.
    Regex,
    /// One exact path.
    Exact,
}

/// Which of two routes on the same host wins: compared field by field in declaration order,
/// the greater is more specific. Equal precedence falls back to file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence {
    /// `from` names a port: the route is for one listener, and outranks port-less routes.
    pub port: bool,
    /// The path matcher.
    pub path: PathMatch,
    /// Limited to `methods`.
    pub methods: bool,
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
            list.sort_by_key(|i| std::cmp::Reverse(routes[*i].precedence()));
        }
        idx
    }

    /// The most specific route covering `req`.
    pub fn find<'r>(&self, routes: &'r [Route], req: &Request) -> Found<'r> {
        let first = |list: Option<&Vec<usize>>| {
            let list = list?;
            for r in list.iter().map(|i| &routes[*i]) {
                // The port is not the proxy's word and this route names one: forwarden cannot
                // tell whether it applies, and never picks the other (perhaps wider) route.
                if r.port.is_some() && !req.site.port_stated && r.matches_but_port(req) {
                    return Some(Found::PortUnstated(r));
                }
                if r.matches(req) {
                    return Some(Found::Route(r));
                }
            }
            None
        };
        if let Some(f) = first(self.exact.get(req.site.host.as_ref())) {
            return f;
        }
        if self.wildcard.is_empty() {
            return Found::None;
        }
        // Longest suffix first: for a.b.example.com try b.example.com, then example.com, …
        let mut rest: &str = &req.site.host;
        while let Some(i) = rest.find('.') {
            rest = &rest[i + 1..];
            if let Some(f) = first(self.wildcard.get(rest)) {
                return f;
            }
        }
        Found::None
    }
}

/// What the index found for a request.
#[derive(Debug, Clone, Copy)]
pub enum Found<'r> {
    /// No route covers it.
    None,
    /// The most specific route covering it.
    Route(&'r Route),
    /// A route whose `from` names a port would cover it, but the proxy did not state the
    /// request's port: which route applies cannot be established.
    PortUnstated(&'r Route),
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

    #[test]
    fn precedence_orders_exact_regex_prefix_any_then_methods() {
        let p = |path, methods| Precedence {
            port: false,
            path,
            methods,
        };
        let mut v = vec![
            p(PathMatch::Any, true),
            p(PathMatch::Exact, false),
            p(PathMatch::Prefix(3), false),
            p(PathMatch::Regex, false),
            p(PathMatch::Prefix(10), false),
            p(PathMatch::Any, false),
        ];
        v.sort();
        v.reverse();
        assert_eq!(
            v,
            vec![
                p(PathMatch::Exact, false),
                p(PathMatch::Regex, false),
                p(PathMatch::Prefix(10), false),
                p(PathMatch::Prefix(3), false),
                p(PathMatch::Any, true),
                p(PathMatch::Any, false),
            ]
        );
    }
}
