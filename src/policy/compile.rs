//! Compiling one route: its YAML to a [`Route`]. Three parts, each on its own:
//! [`matcher`] (which requests the route covers: `from`, `prefix`, `path`, `regex`, `methods`),
//! [`legacy_rules`] (`allowed_users`, `allowed_domains`, … as allow rules) and [`policy_rules`]
//! (inline PPL or a named policy). Pomerium's proxy-only settings are set aside with a note.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::Regex;
use serde::Deserialize;

use super::ppl::{self, Action, Criterion, Expr, ListMatch, Rule, StrMatch, StrTest};
use super::route::{HostMatch, Route, RouteClient, SignInWith};
use crate::diag::Origin;
use crate::request::parse_host;
use crate::yaml::{Node, Pos, Problem, Value};

/// Proxy-only fields seen, by file and field: where first, and on how many routes.
pub(super) type Ignored<'f> = BTreeMap<(&'f str, &'static str), (Pos, usize)>;

/// Named policies: their rules, and where each is defined (`file:line`).
pub(super) type Named = HashMap<String, (Vec<Rule>, String)>;

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
    /// Bearer tokens: the calling applications allowed (their client ids).
    #[serde(default)]
    allowed_client_ids: Vec<String>,
    /// Bearer tokens: a token with any one of these scopes is allowed.
    #[serde(default)]
    allowed_scopes: Vec<String>,
    #[serde(default)]
    allow_any_authenticated_user: bool,
    #[serde(default)]
    allow_public_unauthenticated_access: bool,
    #[serde(default)]
    cors_allow_preflight: bool,
    /// The providers that may sign in (by name); Pomerium's name for its bearer list.
    #[serde(default)]
    identity_providers: Option<Vec<String>>,
    /// Another app registration at the route's provider (Pomerium).
    #[serde(default)]
    idp_client_id: Option<String>,
    /// Its secret, or `${ENV_VAR}`.
    #[serde(default)]
    idp_client_secret: Option<String>,
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

/// The part of a route that says which requests it covers.
struct Matcher {
    scheme: String,
    host: HostMatch,
    port: Option<u16>,
    prefix: Option<String>,
    path: Option<String>,
    regex: Option<Regex>,
    methods: Option<Vec<String>>,
}

/// Compile one route; its problems are added to `problems`.
pub(super) fn route<'f>(
    file: &'f Arc<str>,
    node: &Node,
    named: &Named,
    problems: &mut Vec<Problem>,
    ignored: &mut Ignored<'f>,
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
            Some(f) => ignored.entry((&**file, *f)).or_insert((k.pos, 0)).1 += 1,
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
    let before = problems.len();
    let m = matcher(node, &raw, problems);
    let at = |key: &str| Origin {
        file: file.clone(),
        pos: node.key(key).map_or(node.pos, |k| k.pos),
    };
    let mut rules = legacy_rules(&raw, at);
    rules.extend(policy_rules(file, node, named, problems));
    if raw.allow_public_unauthenticated_access && !rules.is_empty() {
        problems.push(Problem::new(
            at("allow_public_unauthenticated_access").pos,
            "a public route lets everyone in: remove its other rules, or the public flag",
        ));
    }
    let mut sign_in = sign_in_with(node, &raw, problems);
    if !sign_in.is_default() {
        let key = if raw.identity_providers.is_some() {
            "identity_providers"
        } else {
            "idp_client_id"
        };
        sign_in.origin = Some(at(key));
    }
    if problems.len() > before {
        return None;
    }
    let origin = Origin {
        file: file.clone(),
        pos: node.pos,
    };
    Some(Route {
        label: origin.file_line(),
        origin,
        from: raw.from.clone(),
        scheme: m.scheme,
        host: m.host,
        port: m.port,
        prefix: m.prefix,
        path: m.path,
        regex: m.regex,
        methods: m.methods,
        public: raw.allow_public_unauthenticated_access,
        cors_preflight: raw.cors_allow_preflight,
        rules,
        sign_in,
    })
}

/// `identity_providers`, `idp_client_id` and `idp_client_secret`, checked. The names are
/// checked against the configuration's providers where both are known (`check`, start, reload).
fn sign_in_with(node: &Node, raw: &RawRoute, problems: &mut Vec<Problem>) -> SignInWith {
    let vat = |key: &str| node.get(key).map_or(node.pos, |v| v.pos);
    let providers = raw.identity_providers.clone().unwrap_or_default();
    if raw.identity_providers.as_ref().is_some_and(Vec::is_empty) {
        problems.push(Problem::new(
            vat("identity_providers"),
            "identity_providers is empty: nobody could sign in; list provider names, or remove it (every provider)",
        ));
    }
    let client = match (&raw.idp_client_id, &raw.idp_client_secret) {
        (None, None) => None,
        (Some(id), Some(secret)) if !id.trim().is_empty() && !secret.is_empty() => {
            if providers.len() > 1 {
                problems.push(Problem::new(
                    vat("idp_client_id"),
                    "idp_client_id is an app registration at one provider: name exactly one in identity_providers",
                ));
            }
            Some(RouteClient {
                id: id.trim().to_string(),
                secret: crate::secret::Secret::new(secret.clone()),
            })
        }
        (Some(_), None) | (Some(_), Some(_)) => {
            problems.push(Problem::new(
                vat("idp_client_id"),
                "idp_client_id needs idp_client_secret (the secret, or ${ENV_VAR}), and neither may be empty",
            ));
            None
        }
        (None, Some(_)) => {
            problems.push(Problem::new(
                vat("idp_client_secret"),
                "idp_client_secret without idp_client_id",
            ));
            None
        }
    };
    SignInWith {
        providers,
        client,
        origin: None,
    }
}

/// `from`, `prefix`, `path`, `regex` and `methods`, checked.
fn matcher(node: &Node, raw: &RawRoute, problems: &mut Vec<Problem>) -> Matcher {
    let vat = |key: &str| node.get(key).map_or(node.pos, |v| v.pos);
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
    Matcher {
        scheme,
        host,
        port,
        prefix,
        path,
        regex,
        methods,
    }
}

/// Pomerium's route-level allow fields, each as one allow rule (any of its values matches).
fn legacy_rules(raw: &RawRoute, at: impl Fn(&str) -> Origin) -> Vec<Rule> {
    let mut rules = Vec::new();
    let allow = |key: &str, crits: Vec<Criterion>| Rule {
        action: Action::Allow,
        origin: at(key),
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
    if !raw.allowed_client_ids.is_empty() {
        let exact = |v: &String| StrMatch {
            fold: false,
            tests: vec![StrTest::Is(v.clone())],
        };
        let crits = raw
            .allowed_client_ids
            .iter()
            .map(|c| Criterion::ClientId(exact(c)));
        rules.push(allow("allowed_client_ids", crits.collect()));
    }
    if !raw.allowed_scopes.is_empty() {
        let crits = raw.allowed_scopes.iter().map(|s| {
            Criterion::Scope(ListMatch {
                has: vec![s.clone()],
                exclude: vec![],
            })
        });
        rules.push(allow("allowed_scopes", crits.collect()));
    }
    if raw.allow_any_authenticated_user {
        rules.push(allow(
            "allow_any_authenticated_user",
            vec![Criterion::AuthenticatedUser],
        ));
    }
    rules
}

/// `policy:`: inline PPL, or the name of a named policy.
fn policy_rules(file: &Arc<str>, node: &Node, named: &Named, problems: &mut Vec<Problem>) -> Vec<Rule> {
    let Some(pnode) = node.get("policy") else {
        return Vec::new();
    };
    match &pnode.value {
        Value::Str(name) => match named.get(name) {
            Some((r, _)) => r.clone(),
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
                Vec::new()
            }
        },
        _ => {
            let mut p = ppl::Parser::new(file.clone());
            let rules = p.policy(pnode);
            problems.append(&mut p.problems);
            rules
        }
    }
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
