//! Policies: routes and rules loaded from YAML, and the decision for one request. Pure: no
//! clock, no randomness, no I/O beyond [`PolicySet::load`] reading the files.
//!
//! Where things are:
//! - `load`: files to a [`PolicySet`] (every problem of every file at once);
//! - `compile`: one route's YAML to a [`Route`] (its matcher, the legacy allow fields, PPL);
//! - [`route`]: which route covers a request, with a typed [`route::Precedence`];
//! - [`ppl`]: the Pomerium Policy Language: rules, operators, criteria;
//! - `decide`: the decision (read this first);
//! - `lint`: warnings for policies that load but probably do not say what was meant.

mod compile;
mod decide;
mod lint;
pub mod load;
pub mod ppl;
pub mod route;
mod step_up;

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::diag::Diagnostic;
use crate::request::Request;
use ppl::Rule;
pub use route::{HostMatch, Route, RouteClient, SignInWith};
pub use step_up::StepUp;

/// Every route and named policy of the configured files, indexed for lookup.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// Whether any route limits who may sign in (`identity_providers`, `idp_client_id`): without
    /// one, the bearer path need not look the route up before the token is verified.
    limits_sign_in: bool,
    routes: Vec<Route>,
    index: route::Index,
    named: HashMap<String, Vec<Rule>>,
    /// Every group a rule names: what a session must keep when it is too large for all.
    groups: HashSet<String>,
    /// Notes (ignored fields) found while loading.
    pub notes: Vec<Diagnostic>,
    /// Files that were empty or blank: most likely being written. A reload keeps the last
    /// good policy instead of loading one without their routes.
    pub empty_files: Vec<String>,
}

/// Restrictions the proxy adds for one location (query parameters of the auth endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// `allowed_groups`: the user must be in one of these.
    pub groups: Vec<String>,
    /// `allowed_emails`: the user's email must be one of these.
    pub emails: Vec<String>,
    /// `allowed_email_domains`: the user's email domain must be one of these.
    pub domains: Vec<String>,
    /// `policy`: this named policy must allow too.
    pub policy: Option<String>,
    /// `host`: the location pins the host it protects (`host=app.example.com[:port]`); the
    /// request is judged as that host whatever it says, and its port counts only when the pin
    /// names one. Not a narrowing: it picks the route.
    pub host: Option<(String, Option<u16>)>,
}

/// Why the proxy's narrowing parameters cannot be used. Each one refuses the request: a
/// parameter forwarden does not understand would otherwise leave the location wider than its
/// author wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarrowingError {
    /// A key forwarden does not know (a typo such as `allowed_group`, or another case).
    #[error(
        "the auth request's parameter `{0}` is not one forwarden knows (host, route, policy, allowed_groups, allowed_emails, allowed_email_domains)"
    )]
    UnknownKey(String),
    /// A key given twice: forwarden does not pick one of the values.
    #[error("the auth request's parameter `{0}` is given more than once")]
    Repeated(String),
    /// A pin (`host`, `route`) that names no host.
    #[error("the auth request's `{0}` does not name a host")]
    BadPin(&'static str),
    /// `host` and `route` name different hosts.
    #[error("the auth request's `host` and `route` name different hosts")]
    PinsDisagree,
    /// A key with no value.
    #[error("the auth request's parameter `{0}` is empty")]
    Empty(String),
}

impl NarrowingError {
    /// The parameter the error is about (for logging each one once).
    pub fn key(&self) -> &str {
        match self {
            NarrowingError::UnknownKey(k) | NarrowingError::Repeated(k) | NarrowingError::Empty(k) => k,
            NarrowingError::BadPin(k) => k,
            NarrowingError::PinsDisagree => "host",
        }
    }
}

/// The keys of the auth endpoints' query (and of Envoy's `context_extensions`).
pub const NARROWING_KEYS: [&str; 6] = [
    "host",
    "route",
    "policy",
    "allowed_groups",
    "allowed_emails",
    "allowed_email_domains",
];

impl Narrowing {
    /// Whether the proxy asked for any restriction.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.emails.is_empty() && self.domains.is_empty() && self.policy.is_none()
    }

    /// Parse the auth endpoint's query string: each key at most once, list values
    /// comma-separated. An unknown, repeated or empty key, or a pin that names no host, is an
    /// error (the request is refused), never ignored.
    pub fn from_query(query: &str) -> Result<Self, NarrowingError> {
        Self::from_pairs(url::form_urlencoded::parse(query.as_bytes()))
    }

    /// The same from key-value pairs (Envoy's `context_extensions`).
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self, NarrowingError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut n = Narrowing::default();
        let mut seen = [false; NARROWING_KEYS.len()];
        let (mut host, mut route) = (None, None);
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref().trim());
            let Some(i) = NARROWING_KEYS.iter().position(|n| *n == k) else {
                return Err(NarrowingError::UnknownKey(printable(k)));
            };
            if std::mem::replace(&mut seen[i], true) {
                return Err(NarrowingError::Repeated(k.to_string()));
            }
            if v.is_empty() {
                return Err(NarrowingError::Empty(k.to_string()));
            }
            let values = || {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            };
            match k {
                "allowed_groups" => n.groups = values(),
                "allowed_emails" => n.emails = values(),
                "allowed_email_domains" => n.domains = values(),
                "policy" => n.policy = Some(v.to_string()),
                "host" => match crate::request::parse_host(v) {
                    Ok((h, p)) => host = Some((h.into_owned(), p)),
                    Err(_) => return Err(NarrowingError::BadPin("host")),
                },
                // `route=<a route's from URL>` (an Envoy route's context extension): the same
                // pin, written as the route names itself.
                _ => {
                    let u = url::Url::parse(v).map_err(|_| NarrowingError::BadPin("route"))?;
                    match u.host_str().map(crate::request::parse_host) {
                        // The route's scheme says its port when it names none.
                        Some(Ok((h, _))) => route = Some((h.into_owned(), u.port_or_known_default())),
                        _ => return Err(NarrowingError::BadPin("route")),
                    }
                }
            }
        }
        n.host = match (host, route) {
            // Both: the same host, and a port only one of them names, or the same port.
            (Some((h, p)), Some((g, q))) => match h == g && (p.is_none() || q.is_none() || p == q) {
                true => Some((h, p.or(q))),
                false => return Err(NarrowingError::PinsDisagree),
            },
            (a, b) => a.or(b),
        };
        Ok(n)
    }
}

/// A key as it can be logged: at most 64 characters, control characters escaped.
fn printable(k: &str) -> String {
    k.chars().take(64).flat_map(char::escape_debug).collect()
}

/// What forwarden answers about a request: the one vocabulary of the decision, the audit
/// log's `result`, the decisions metric's label, `explain`'s first line, and what the HTTP edge
/// turns into 200, 401/302 or 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it pass (200).
    Allow = 0,
    /// Not signed in, and signing in could change the answer (401 / login redirect).
    Login = 1,
    /// Refused (403).
    Forbidden = 2,
    /// A valid session that is due for refresh: the browser goes through `/oauth2/refresh`
    /// first. Decided at the edge from the session's age (`crate::session::refresh_due`),
    /// never by a policy.
    Refresh = 3,
}

impl Verdict {
    /// Every verdict, in order.
    pub const ALL: [Verdict; 4] = [
        Verdict::Allow,
        Verdict::Login,
        Verdict::Forbidden,
        Verdict::Refresh,
    ];

    /// Its name in logs, metrics and `explain`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Login => "login",
            Verdict::Forbidden => "forbidden",
            Verdict::Refresh => "refresh",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason<'a> {
    /// No route covers the request.
    NoRoute,
    /// The route is public.
    Public,
    /// A CORS preflight on a route with `cors_allow_preflight`.
    Preflight,
    /// This allow rule matched.
    Allowed(&'a Rule),
    /// This deny rule matched.
    Denied(&'a Rule),
    /// This deny rule is about the user and the request is anonymous: it may hold.
    DenyNeedsUser(&'a Rule),
    /// No allow rule matched a signed-in user.
    NoAllowMatched,
    /// No allow rule matched without a user: sign in first.
    LoginRequired,
    /// The proxy's parameter refused it.
    Narrowed(&'static str),
    /// The proxy named a policy that does not exist.
    UnknownPolicy(String),
    /// A route for this host names a port, and the proxy did not state the request's port.
    PortUnstated,
    /// Signed in, but not as strongly as an allow rule asks (`amr`, `acr`, `acrs`): sign in
    /// again, asking the provider for this.
    StepUp(StepUp),
    /// Signed in with a provider or app registration the route does not accept
    /// (`identity_providers`, `idp_client_id`): sign in with one it does.
    OtherSignIn,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin && self.action == other.action
    }
}

impl Reason<'_> {
    /// A short, stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::Public => "public",
            Reason::Preflight => "preflight",
            Reason::Allowed(_) => "allowed",
            Reason::Denied(_) => "denied",
            Reason::DenyNeedsUser(_) => "deny_needs_user",
            Reason::NoAllowMatched => "no_allow_matched",
            Reason::LoginRequired => "login_required",
            Reason::Narrowed(_) => "narrowed",
            Reason::UnknownPolicy(_) => "unknown_policy",
            Reason::PortUnstated => "port_unstated",
            Reason::StepUp(_) => "step_up",
            Reason::OtherSignIn => "other_sign_in",
        }
    }

    /// The rule that decided, when one did.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Reason::Allowed(r) | Reason::Denied(r) | Reason::DenyNeedsUser(r) => Some(r),
            _ => None,
        }
    }

    /// What the 403 page tells the user about a refusal for this reason.
    pub fn explanation(&self) -> &'static str {
        match self {
            Reason::NoRoute => "This address is not protected by any route, so it is closed to everyone.",
            Reason::PortUnstated => "forwarden could not tell which port was requested, so it refuses.",
            Reason::Denied(_) => "A rule of this site denies access to your account.",
            Reason::Narrowed(_) | Reason::UnknownPolicy(_) => {
                "This part of the site is limited to other groups or accounts."
            }
            _ => "Your account is not on this site's access list.",
        }
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoRoute => write!(f, "no route covers this URL; requests no route covers are denied"),
            Reason::Public => write!(f, "the route allows public unauthenticated access"),
            Reason::Preflight => write!(f, "a CORS preflight on a route with cors_allow_preflight"),
            Reason::Allowed(r) | Reason::Denied(r) => write!(f, "{r}"),
            Reason::DenyNeedsUser(r) => write!(f, "{r} depends on who the user is: sign in first"),
            Reason::NoAllowMatched => write!(f, "no allow rule of the route matches this user"),
            Reason::LoginRequired => write!(f, "no allow rule matches an anonymous request: sign in first"),
            Reason::Narrowed(p) => write!(f, "the proxy's {p} parameter does not include this user"),
            Reason::UnknownPolicy(n) => write!(
                f,
                "the proxy asked for policy `{n}`, which no policy file defines"
            ),
            Reason::PortUnstated => write!(
                f,
                "a route for this host names a port, and the proxy did not state the request's port (X-Forwarded-Port, or a pin with a port): refused rather than judged by another route"
            ),
            Reason::StepUp(s) => write!(
                f,
                "an allow rule asks for a stronger sign-in ({s}): sign in again"
            ),
            Reason::OtherSignIn => write!(
                f,
                "the session's identity provider or app registration is not one this route accepts (identity_providers, idp_client_id): sign in with one it does"
            ),
        }
    }
}

/// A decision: the verdict, the route it was made on, and why.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// Allow, login or forbidden.
    pub verdict: Verdict,
    /// The route that matched.
    pub route: Option<&'a Route>,
    /// Why.
    pub reason: Reason<'a>,
}

impl Decision<'_> {
    /// Where it was decided, for the audit log: the route's label (`-` without one) and the
    /// deciding rule's place in its file, if a rule decided.
    pub fn place(&self) -> (&str, Option<&crate::diag::Origin>) {
        let route = self.route.map_or("-", |r| r.label.as_str());
        (route, self.reason.rule().map(|r| &r.origin))
    }
}

impl PolicySet {
    /// Every route, in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The names of the named policies.
    pub fn policy_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.named.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The most specific route covering the request.
    pub fn find_route(&self, req: &Request) -> route::Found<'_> {
        self.index.find(&self.routes, req)
    }

    /// Whether some route is for this host (exactly, or by its wildcard): where a session may
    /// be handed off to.
    pub fn names_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.routes.iter().any(|r| match &r.host {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(&host),
            HostMatch::Wildcard(suffix) => {
                let suffix = suffix.trim_start_matches('.').to_ascii_lowercase();
                host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
            }
        })
    }

    /// Whether a route for this host names this port in its `from`.
    pub fn names_host_port(&self, host: &str, port: u16) -> bool {
        self.routes.iter().any(|r| {
            r.port == Some(port) && matches!(&r.host, HostMatch::Exact(h) if h.eq_ignore_ascii_case(host))
        })
    }

    /// Whether any rule names this group (sessions too large for every group keep these).
    pub fn names_group(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// The rules of a named policy.
    /// Whether any route limits who may sign in (`identity_providers`, `idp_client_id`).
    pub fn limits_sign_in(&self) -> bool {
        self.limits_sign_in
    }

    /// Routes whose sign-in settings the configuration cannot satisfy: a name in
    /// `identity_providers` that is neither a provider of `sign_in` (`providers:` names) nor a
    /// bearer issuer's of `bearer`; an `idp_client_id` without exactly one sign-in provider to
    /// belong to. Errors: the route would refuse everyone, or worse, be read more widely.
    pub fn provider_problems(&self, sign_in: &[&str], bearer: &[&str]) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for r in self.routes() {
            let w = &r.sign_in;
            let Some(at) = &w.origin else { continue };
            let mut problem = |message: String| {
                out.push(Diagnostic::error(
                    &at.file,
                    crate::yaml::Problem::new(at.pos, message),
                ));
            };
            for name in &w.providers {
                if !sign_in.contains(&name.as_str()) && !bearer.contains(&name.as_str()) {
                    let known: Vec<&str> = sign_in
                        .iter()
                        .chain(bearer)
                        .copied()
                        .filter(|n| !n.is_empty())
                        .collect();
                    problem(match known.is_empty() {
                        true => format!(
                            "identity_providers names `{name}`, but the configuration names no provider (identity_providers needs providers:, each with a name)"
                        ),
                        false => format!(
                            "identity_providers names `{name}`, which is not a provider of the configuration ({})",
                            known.join(", ")
                        ),
                    });
                }
            }
            if w.client.is_some() {
                let one = match w.providers.as_slice() {
                    [] => sign_in.len() == 1,
                    [p] => sign_in.contains(&p.as_str()),
                    _ => false,
                };
                if !one {
                    problem("idp_client_id is an app registration at one sign-in provider: name it in identity_providers".into());
                }
            }
        }
        out
    }

    pub(crate) fn named(&self, name: &str) -> Option<&[Rule]> {
        self.named.get(name).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests;
