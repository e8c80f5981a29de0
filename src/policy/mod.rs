//! Policies: routes and rules loaded from YAML, and the decision for one request.
//!
//! Pure: no I/O beyond [`PolicySet::load`] reading the files, no clock, no randomness. The
//! decision is one of three outcomes, which the HTTP edge maps to 200, 401 and 403:
//!
//! 1. no route covers the request: forbidden;
//! 2. a public route, or a CORS preflight on a route that allows them: allow;
//! 3. a matching `deny` rule: forbidden (deny beats allow). For an anonymous request, deny rules
//!    about the user wait until the user is known;
//! 4. a matching `allow` rule: allow; otherwise an anonymous request must log in first and a
//!    signed-in one is forbidden;
//! 5. parameters from the proxy (`allowed_groups`, `allowed_emails`, `allowed_email_domains`,
//!    `policy`) can then only narrow an allow, never widen a refusal.

mod lint;
pub mod ppl;
pub mod route;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use crate::diag::{Diagnostic, has_errors};
use crate::identity::{Identity, email_domain};
use crate::request::{Request, parse_host};
use crate::yaml::{self, Node, Pos, Problem, Value};
use ppl::{Action, Criterion, Expr, Facts, ListMatch, Rule, StrMatch, StrTest};
pub use route::{HostMatch, Route};

/// Pomerium route settings about proxying. forwarden decides and the proxy forwards, so these
/// are accepted, so that existing files load unchanged, and ignored with a note.
const PROXY_ONLY_FIELDS: &[&str] = &[
    "to",
    "allow_websockets",
    "allow_spdy",
    "preserve_host_header",
    "pass_identity_headers",
    "timeout",
    "idle_timeout",
    "tls_skip_verify",
    "tls_server_name",
    "tls_upstream_server_name",
    "tls_downstream_server_name",
    "tls_custom_ca",
    "tls_custom_ca_file",
    "tls_client_cert",
    "tls_client_key",
    "tls_client_cert_file",
    "tls_client_key_file",
    "tls_downstream_client_ca",
    "tls_downstream_client_ca_file",
    "set_request_headers",
    "remove_request_headers",
    "set_response_headers",
    "rewrite_response_headers",
    "host_rewrite",
    "host_rewrite_header",
    "host_path_regex_rewrite_pattern",
    "host_path_regex_rewrite_substitution",
    "prefix_rewrite",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
    "regex_priority_order",
    "name",
    "description",
    "logo_url",
    "id",
    "kubernetes_service_account_token",
    "kubernetes_service_account_token_file",
    "enable_google_cloud_serverless_authentication",
    "show_error_details",
    "load_balancing_policy",
];

/// A route as written, after the proxy-only fields were set aside.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    from: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    allowed_users: Vec<String>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    allowed_groups: Vec<String>,
    /// App roles; `roles:` is accepted as a shorthand.
    #[serde(default, alias = "roles")]
    allowed_roles: Vec<String>,
    #[serde(default)]
    allowed_idp_claims: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    allow_any_authenticated_user: bool,
    #[serde(default)]
    allow_public_unauthenticated_access: bool,
    #[serde(default)]
    cors_allow_preflight: bool,
    /// Inline PPL, or the name of a named policy; read from the positioned tree.
    #[serde(default, rename = "policy")]
    _policy: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(ScalarText),
    Many(Vec<ScalarText>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScalarText {
    S(String),
    B(bool),
    I(i64),
    F(f64),
}

impl ScalarText {
    fn text(&self) -> String {
        match self {
            ScalarText::S(s) => s.clone(),
            ScalarText::B(b) => b.to_string(),
            ScalarText::I(i) => i.to_string(),
            ScalarText::F(f) => f.to_string(),
        }
    }
}

/// Every route and named policy of the configured files, indexed for lookup.
#[derive(Debug, Default)]
pub struct PolicySet {
    routes: Vec<Route>,
    index: route::Index,
    named: HashMap<String, Vec<Rule>>,
    /// Notes (ignored fields) found while loading.
    pub notes: Vec<Diagnostic>,
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
}

impl Narrowing {
    /// Whether the proxy asked for any restriction.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.emails.is_empty() && self.domains.is_empty() && self.policy.is_none()
    }

    /// Parse the auth endpoint's query string. Values may be repeated or comma-separated.
    pub fn from_query(query: &str) -> Self {
        let mut n = Narrowing::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let values = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from);
            match k.as_ref() {
                "allowed_groups" => n.groups.extend(values),
                "allowed_emails" => n.emails.extend(values),
                "allowed_email_domains" => n.domains.extend(values),
                "policy" => n.policy = Some(v.trim().to_string()),
                _ => {}
            }
        }
        n
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let it pass (200).
    Allow,
    /// Not signed in, and signing in could change the answer (401 / login redirect).
    Login,
    /// Refused (403).
    Forbidden,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Allow => "allow",
            Outcome::Login => "login",
            Outcome::Forbidden => "deny",
        })
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
    /// No allow rule matched a signed-in user.
    NoAllowMatched,
    /// No allow rule matched without a user: sign in first.
    LoginRequired,
    /// The proxy's parameter refused it.
    Narrowed(&'static str),
    /// The proxy named a policy that does not exist.
    UnknownPolicy(String),
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
            Reason::NoAllowMatched => "no_allow_matched",
            Reason::LoginRequired => "login_required",
            Reason::Narrowed(_) => "narrowed",
            Reason::UnknownPolicy(_) => "unknown_policy",
        }
    }

    /// The rule that decided, when one did.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Reason::Allowed(r) | Reason::Denied(r) => Some(r),
            _ => None,
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
            Reason::NoAllowMatched => write!(f, "no allow rule of the route matches this user"),
            Reason::LoginRequired => write!(f, "no allow rule matches an anonymous request: sign in first"),
            Reason::Narrowed(p) => write!(f, "the proxy's {p} parameter does not include this user"),
            Reason::UnknownPolicy(n) => write!(
                f,
                "the proxy asked for policy `{n}`, which no policy file defines"
            ),
        }
    }
}

/// A decision: the outcome, the route it was made on, and why.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// Allow, login or forbidden.
    pub outcome: Outcome,
    /// The route that matched.
    pub route: Option<&'a Route>,
    /// Why.
    pub reason: Reason<'a>,
}

impl PolicySet {
    /// Read and load policy files; every problem of every file is returned at once.
    pub fn load(files: &[impl AsRef<Path>]) -> Result<Self, Vec<Diagnostic>> {
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for f in files {
            let name = f.as_ref().display().to_string();
            match std::fs::read_to_string(f) {
                Ok(text) => sources.push((name, text)),
                Err(e) => diags.push(Diagnostic::file_error(
                    &name,
                    format!("cannot read policy file: {e}"),
                )),
            }
        }
        match Self::from_sources(&sources) {
            Ok(set) if diags.is_empty() => Ok(set),
            Ok(_) => Err(diags),
            Err(mut more) => {
                diags.append(&mut more);
                Err(diags)
            }
        }
    }

    /// Load from `(file name, contents)` pairs.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut trees = Vec::new();
        for (name, text) in sources {
            match yaml::parse(text) {
                Ok(node) => trees.push((name.as_str(), node)),
                Err(p) => diags.push(Diagnostic::error(name, p)),
            }
        }
        // Named policies first, from every file, so any route may use any of them.
        let mut named: HashMap<String, (Vec<Rule>, String)> = HashMap::new();
        let mut route_nodes: Vec<(&str, &Node)> = Vec::new();
        for (file, tree) in &trees {
            let mut problems = Vec::new();
            match &tree.value {
                Value::Null => {}
                Value::Seq(items) => route_nodes.extend(items.iter().map(|n| (*file, n))),
                Value::Map(entries) => {
                    for (k, v) in entries {
                        match (k.name.as_str(), &v.value) {
                            ("routes", Value::Seq(items)) => {
                                route_nodes.extend(items.iter().map(|n| (*file, n)))
                            }
                            ("routes", Value::Map(m)) => route_nodes.extend(m.iter().map(|(_, n)| (*file, n))),
                            ("routes", Value::Null) => {}
                            ("routes", _) => problems.push(Problem::new(v.pos, "`routes` must be a list of routes")),
                            ("policies", Value::Map(m)) => {
                                for (pk, pv) in m {
                                    let mut p = ppl::Parser::new(file);
                                    let rules = p.policy(pv);
                                    problems.append(&mut p.problems);
                                    let here = format!("{file}:{}", pk.pos.line);
                                    if let Some((_, first)) = named.get(&pk.name) {
                                        problems.push(Problem::new(pk.pos, format!("policy `{}` is already defined at {first}", pk.name)));
                                    } else {
                                        named.insert(pk.name.clone(), (rules, here));
                                    }
                                }
                            }
                            ("policies", Value::Null) => {}
                            ("policies", _) => problems.push(Problem::new(v.pos, "`policies` must be a mapping of names to policies")),
                            (other, _) => problems.push(Problem::new(k.pos, format!(
                                "unknown top-level key `{other}`: a policy file is a list of routes, or a mapping with `routes` and `policies`"
                            ))),
                        }
                    }
                }
                _ => problems.push(Problem::new(
                    tree.pos,
                    "a policy file must be a list of routes or a mapping with `routes`",
                )),
            }
            diags.extend(problems.into_iter().map(|p| Diagnostic::error(file, p)));
        }
        let mut routes = Vec::new();
        let mut ignored: BTreeMap<(&str, &str), (Pos, usize)> = BTreeMap::new();
        for (file, node) in &route_nodes {
            let mut problems = Vec::new();
            if let Some(route) = compile_route(file, node, &named, &mut problems, &mut ignored) {
                routes.push(route);
            }
            diags.extend(problems.into_iter().map(|p| Diagnostic::error(file, p)));
        }
        if has_errors(&diags) {
            diags.sort();
            return Err(diags);
        }
        let notes = ignored
            .into_iter()
            .map(|((file, field), (pos, n))| {
                let routes = if n == 1 {
                    "1 route".to_string()
                } else {
                    format!("{n} routes")
                };
                let why = if field == "to" {
                    "the proxy forwards the traffic, forwarden only decides"
                } else {
                    "it is a Pomerium proxy setting; configure it in your proxy"
                };
                Diagnostic::note(
                    file,
                    Some(pos),
                    format!("`{field}` is accepted and ignored ({routes}): {why}"),
                )
            })
            .collect();
        let index = route::Index::build(&routes);
        let named = named.into_iter().map(|(k, (rules, _))| (k, rules)).collect();
        Ok(PolicySet {
            routes,
            index,
            named,
            notes,
        })
    }

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
    pub fn find_route(&self, req: &Request) -> Option<&Route> {
        self.index.find(&self.routes, req)
    }

    /// Decide one request.
    pub fn decide<'a>(&'a self, req: &Request, user: Option<&Identity>, narrow: &Narrowing) -> Decision<'a> {
        let Some(route) = self.find_route(req) else {
            return Decision {
                outcome: Outcome::Forbidden,
                route: None,
                reason: Reason::NoRoute,
            };
        };
        let decide = |outcome, reason| Decision {
            outcome,
            route: Some(route),
            reason,
        };
        let facts = Facts { req, user };
        let base = if route.public {
            decide(Outcome::Allow, Reason::Public)
        } else if route.cors_preflight && req.preflight {
            decide(Outcome::Allow, Reason::Preflight)
        } else {
            let (outcome, reason) = evaluate(&route.rules, &facts);
            decide(outcome, reason)
        };
        if base.outcome != Outcome::Allow || narrow.is_empty() {
            return base;
        }
        // The proxy's parameters only narrow: each one present must hold as well.
        let Some(u) = user else {
            return decide(Outcome::Login, Reason::LoginRequired);
        };
        if !narrow.groups.is_empty() && !narrow.groups.iter().any(|g| u.groups.contains(g)) {
            return decide(Outcome::Forbidden, Reason::Narrowed("allowed_groups"));
        }
        let email = u.email.as_deref().filter(|e| email_domain(e).is_some());
        if !narrow.emails.is_empty()
            && !email.is_some_and(|e| narrow.emails.iter().any(|w| e.eq_ignore_ascii_case(w)))
        {
            return decide(Outcome::Forbidden, Reason::Narrowed("allowed_emails"));
        }
        if !narrow.domains.is_empty() {
            let dom = email.and_then(email_domain);
            if !dom.is_some_and(|d| {
                narrow
                    .domains
                    .iter()
                    .any(|w| d.eq_ignore_ascii_case(w.trim_start_matches('@')))
            }) {
                return decide(Outcome::Forbidden, Reason::Narrowed("allowed_email_domains"));
            }
        }
        if let Some(name) = &narrow.policy {
            let Some(rules) = self.named.get(name) else {
                return decide(Outcome::Forbidden, Reason::UnknownPolicy(name.clone()));
            };
            let (outcome, reason) = evaluate(rules, &facts);
            if outcome != Outcome::Allow {
                return decide(outcome, reason);
            }
        }
        base
    }
}

/// Deny beats allow; an anonymous request is sent to log in when the user could matter.
fn evaluate<'a>(rules: &'a [Rule], facts: &Facts<'_>) -> (Outcome, Reason<'a>) {
    let anonymous = facts.user.is_none();
    for r in rules.iter().filter(|r| r.action == Action::Deny) {
        if anonymous && r.expr.needs_user() {
            continue;
        }
        if r.expr.eval(facts) {
            return (Outcome::Forbidden, Reason::Denied(r));
        }
    }
    for r in rules.iter().filter(|r| r.action == Action::Allow) {
        if r.expr.eval(facts) {
            return (Outcome::Allow, Reason::Allowed(r));
        }
    }
    if anonymous {
        (Outcome::Login, Reason::LoginRequired)
    } else {
        (Outcome::Forbidden, Reason::NoAllowMatched)
    }
}

fn compile_route<'f>(
    file: &'f str,
    node: &Node,
    named: &HashMap<String, (Vec<Rule>, String)>,
    problems: &mut Vec<Problem>,
    ignored: &mut BTreeMap<(&'f str, &'static str), (Pos, usize)>,
) -> Option<Route> {
    let Some(entries) = node.as_map() else {
        problems.push(Problem::new(
            node.pos,
            format!("a route must be a mapping with `from`, found {}", node.kind()),
        ));
        return None;
    };
    // Set the proxy-only settings aside, then read the rest strictly.
    let mut kept = Vec::new();
    for (k, v) in entries {
        match PROXY_ONLY_FIELDS.iter().find(|f| **f == k.name) {
            Some(f) => ignored.entry((file, *f)).or_insert((k.pos, 0)).1 += 1,
            None => kept.push((k.clone(), v.clone())),
        }
    }
    let stripped = Node {
        pos: node.pos,
        value: Value::Map(kept),
    };
    let raw: RawRoute = match stripped.typed() {
        Ok(r) => r,
        Err(p) => {
            problems.push(p);
            return None;
        }
    };
    let at = |key: &str| node.key(key).map_or(node.pos, |k| k.pos);
    let vat = |key: &str| node.get(key).map_or(node.pos, |v| v.pos);
    let before = problems.len();

    let (scheme, host, port) = match parse_from(&raw.from) {
        Ok(x) => x,
        Err(msg) => {
            problems.push(Problem::new(vat("from"), msg));
            (String::new(), HostMatch::Exact(String::new()), None)
        }
    };
    let prefix = raw.prefix.as_ref().and_then(|p| {
        if !p.starts_with('/') {
            problems.push(Problem::new(vat("prefix"), "`prefix` must start with /"));
            return None;
        }
        Some(p.trim_end_matches('/').to_string())
    });
    let path = raw
        .path
        .as_ref()
        .and_then(|p| match crate::request::normalize_path(p) {
            Ok(n) if n.as_ref() == p.as_str() => Some(n.into_owned()),
            Ok(n) => {
                problems.push(Problem::new(
                    vat("path"),
                    format!("`path` must be normalized; write `{n}`"),
                ));
                None
            }
            Err(e) => {
                problems.push(Problem::new(
                    vat("path"),
                    format!("`path` is not a valid path: {e}"),
                ));
                None
            }
        });
    let regex = raw
        .regex
        .as_ref()
        .and_then(|r| match Regex::new(&format!("^(?:{r})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim()
                    .to_string();
                problems.push(Problem::new(vat("regex"), format!("invalid regex: {msg}")));
                None
            }
        });
    let methods = raw.methods.as_ref().map(|ms| {
        ms.iter()
            .filter_map(|m| {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    problems.push(Problem::new(
                        vat("methods"),
                        format!("`{m}` is not an HTTP method"),
                    ));
                    None
                } else {
                    Some(m.to_ascii_uppercase())
                }
            })
            .collect::<Vec<_>>()
    });

    let mut rules = Vec::new();
    let origin = |key: &str| {
        let p = at(key);
        format!("{file}:{}:{}", p.line, p.column)
    };
    let allow = |key: &str, crits: Vec<Criterion>| Rule {
        action: Action::Allow,
        origin: origin(key),
        expr: Expr::Or(crits.into_iter().map(Expr::Crit).collect()),
    };
    let is = |v: &String| StrMatch {
        fold: true,
        tests: vec![StrTest::Is(v.clone())],
    };
    if !raw.allowed_users.is_empty() {
        rules.push(allow(
            "allowed_users",
            raw.allowed_users.iter().map(|u| Criterion::User(is(u))).collect(),
        ));
    }
    if !raw.allowed_domains.is_empty() {
        rules.push(allow(
            "allowed_domains",
            raw.allowed_domains
                .iter()
                .map(|d| Criterion::Domain(is(d)))
                .collect(),
        ));
    }
    if !raw.allowed_groups.is_empty() {
        let crits = raw.allowed_groups.iter().map(|g| {
            Criterion::Groups(ListMatch {
                has: vec![g.clone()],
                exclude: vec![],
            })
        });
        rules.push(allow("allowed_groups", crits.collect()));
    }
    if !raw.allowed_roles.is_empty() {
        let crits = raw
            .allowed_roles
            .iter()
            .map(|r| Criterion::Claim("roles".into(), r.clone()));
        rules.push(allow("allowed_roles", crits.collect()));
    }
    if !raw.allowed_idp_claims.is_empty() {
        let mut crits = Vec::new();
        for (claim, vals) in &raw.allowed_idp_claims {
            let vals: Vec<String> = match vals {
                OneOrMany::One(v) => vec![v.text()],
                OneOrMany::Many(vs) => vs.iter().map(ScalarText::text).collect(),
            };
            crits.extend(vals.into_iter().map(|v| Criterion::Claim(claim.clone(), v)));
        }
        rules.push(allow("allowed_idp_claims", crits));
    }
    if raw.allow_any_authenticated_user {
        rules.push(allow(
            "allow_any_authenticated_user",
            vec![Criterion::AuthenticatedUser],
        ));
    }
    if let Some(pnode) = node.get("policy") {
        match &pnode.value {
            Value::Str(name) => match named.get(name) {
                Some((r, _)) => rules.extend(r.iter().cloned()),
                None => {
                    let mut known: Vec<&String> = named.keys().collect();
                    known.sort();
                    let hint = if known.is_empty() {
                        "no policy file defines named policies".to_string()
                    } else {
                        format!(
                            "known: {}",
                            known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        )
                    };
                    problems.push(Problem::new(
                        pnode.pos,
                        format!("unknown policy `{name}` ({hint})"),
                    ));
                }
            },
            _ => {
                let mut p = ppl::Parser::new(file);
                rules.extend(p.policy(pnode));
                problems.append(&mut p.problems);
            }
        }
    }
    if raw.allow_public_unauthenticated_access && !rules.is_empty() {
        problems.push(Problem::new(
            at("allow_public_unauthenticated_access"),
            "a public route lets everyone in: remove its other rules, or the public flag",
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(Route {
        origin: format!("{file}:{}", node.pos.line),
        file: file.to_string(),
        pos: node.pos,
        from: raw.from.clone(),
        scheme,
        host,
        port,
        prefix,
        path,
        regex,
        methods,
        public: raw.allow_public_unauthenticated_access,
        cors_preflight: raw.cors_allow_preflight,
        rules,
    })
}

/// `https://app.example.com`, `https://*.example.com:8443`.
fn parse_from(from: &str) -> Result<(String, HostMatch, Option<u16>), String> {
    let (scheme, rest) = from
        .split_once("://")
        .ok_or_else(|| format!("`from` must be a URL like https://app.example.com, not `{from}`"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("`from` must use http or https, not `{scheme}`"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("`from` is scheme and host only; use `prefix`, `path` or `regex` for paths".into());
    }
    let (wild, authority) = match authority.strip_prefix("*.") {
        Some(a) => (true, a),
        None => (false, authority),
    };
    let (host, port) =
        parse_host(authority).map_err(|_| format!("`{authority}` is not a valid host name"))?;
    let host = if wild {
        HostMatch::Wildcard(host.into_owned())
    } else {
        HostMatch::Exact(host.into_owned())
    };
    Ok((scheme, host, port))
}

#[cfg(test)]
mod tests;
