//! Warnings for policies that load but probably do not say what was meant (`forwarden check`):
//! routes that can never be reached, overlapping wildcard hosts, and rules that can never
//! match. Pure; the policy still loads with warnings.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::diag::Diagnostic;

use super::PolicySet;
use super::ppl::{Action, Criterion, Expr, Rule, StrMatch, StrTest};
use super::route::{HostMatch, Route, segment_prefix};

fn warning(r: &Route, message: String) -> Diagnostic {
    Diagnostic::warning(&r.origin, message)
}

/// The part of a route that decides which requests reach it: two routes with the same key
/// match exactly the same requests.
type MatcherKey<'a> = (
    &'a HostMatch,
    &'a str,
    Option<u16>,
    Option<&'a [String]>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
);

fn matcher_key(r: &Route) -> MatcherKey<'_> {
    (
        &r.host,
        r.scheme.as_str(),
        r.port,
        r.methods.as_deref(),
        r.path.as_deref(),
        r.regex.as_ref().map(|x| x.as_str()),
        r.prefix.as_deref().unwrap_or_default(),
    )
}

impl PolicySet {
    /// Every warning about these policies, in file order. Linear in the number of routes (a
    /// reload of 100,000 routes lints them too).
    pub fn lint(&self) -> Vec<Diagnostic> {
        let routes = self.routes();
        let mut out = Vec::new();
        for f in &self.empty_files {
            out.push(Diagnostic::file_warning(
                f,
                "the file is empty: it defines no routes (a running server keeps its last good policy while a policy file is empty, as when an editor is saving it)",
            ));
        }
        // Shadowed: an earlier route with the same host, path and methods takes every request.
        let mut first_of: HashMap<MatcherKey<'_>, &Route> = HashMap::with_capacity(routes.len());
        for r in routes {
            match first_of.entry(matcher_key(r)) {
                Entry::Occupied(first) => out.push(warning(
                    r,
                    format!(
                        "this route is never used: the route at {} matches the same requests ({}) and comes first",
                        first.get().label,
                        r.describe()
                    ),
                )),
                Entry::Vacant(v) => {
                    v.insert(r);
                }
            }
        }
        // Overlapping wildcards: hosts under the longer suffix are decided by its routes first.
        let mut first_wildcard: HashMap<&str, &Route> = HashMap::new();
        for r in routes {
            if let HostMatch::Wildcard(suffix) = &r.host {
                first_wildcard.entry(suffix.as_str()).or_insert(r);
            }
        }
        let mut pairs_seen: HashSet<(&str, &str)> = HashSet::new();
        for r in routes {
            let HostMatch::Wildcard(inner) = &r.host else {
                continue;
            };
            // Every enclosing suffix: for a.b.example.com, b.example.com, example.com, com.
            let mut rest = inner.as_str();
            while let Some(i) = rest.find('.') {
                rest = &rest[i + 1..];
                let Some(o) = first_wildcard.get(rest) else {
                    continue;
                };
                if pairs_seen.insert((inner.as_str(), rest)) {
                    out.push(warning(
                        r,
                        format!(
                            "wildcard hosts *.{inner} and *.{rest} (at {}) overlap: a host under {inner} is decided by the *.{inner} routes; *.{rest} routes apply to it only for paths none of those cover",
                            o.label
                        ),
                    ));
                }
            }
        }
        // Rules that can never match.
        for r in routes {
            for rule in &r.rules {
                if let Some(why) = never(&rule.expr, r) {
                    out.push(rule_warning(rule, &format!("this rule can never match: {why}")));
                } else if rule.action == Action::Deny && always(&rule.expr) {
                    out.push(rule_warning(
                        rule,
                        "this deny rule matches every request: the route refuses everyone",
                    ));
                }
            }
        }
        out
    }
}

fn rule_warning(rule: &Rule, message: &str) -> Diagnostic {
    Diagnostic::warning(&rule.origin, format!("{message} ({rule})"))
}

/// Why `e` can never be true on this route, if it cannot.
fn never(e: &Expr, route: &Route) -> Option<String> {
    match e {
        Expr::Crit(Criterion::Reject) => Some("`reject` is never true".into()),
        Expr::Crit(c) => crit_never(c, route),
        Expr::Or(xs) if xs.is_empty() => Some("it lists no values".into()),
        Expr::Or(xs) => {
            let whys: Vec<String> = xs.iter().filter_map(|x| never(x, route)).collect();
            (whys.len() == xs.len()).then(|| whys.join("; "))
        }
        Expr::And(xs) => xs
            .iter()
            .find_map(|x| never(x, route))
            .or_else(|| contradiction(xs)),
        Expr::Not(xs) => xs
            .iter()
            .any(always)
            .then(|| "`not` of a condition that is always true".into()),
        Expr::Nor(_) => None,
    }
}

/// Whether `e` is true for every request.
fn always(e: &Expr) -> bool {
    match e {
        Expr::Crit(Criterion::Accept) => true,
        Expr::And(xs) => xs.iter().all(always),
        Expr::Or(xs) => xs.iter().any(always),
        _ => false,
    }
}

fn crit_never(c: &Criterion, route: &Route) -> Option<String> {
    match c {
        Criterion::Email(m) => {
            let bad = exact_values(m).find(|v| !v.contains('@'))?;
            Some(format!(
                "`{bad}` is not an email address, so no user's email equals it"
            ))
        }
        Criterion::Domain(m) => {
            let bad = exact_values(m).find(|v| v.contains('@') || v.contains('/'))?;
            Some(format!(
                "`{bad}` is not a domain (write it without `@` or a scheme), so no email domain equals it"
            ))
        }
        Criterion::Path(m) => path_outside(m, route),
        Criterion::Groups(l) => l
            .has
            .iter()
            .find(|g| l.exclude.contains(g))
            .map(|g| format!("group `{g}` is both required and excluded")),
        _ => None,
    }
}

/// Values a matcher requires exactly (`is`, or every one of `in`).
fn exact_values(m: &StrMatch) -> impl Iterator<Item = &String> {
    let all_in = m
        .tests
        .iter()
        .all(|t| matches!(t, StrTest::Is(_) | StrTest::In(_)));
    m.tests.iter().filter(move |_| all_in).flat_map(|t| match t {
        StrTest::Is(v) => std::slice::from_ref(v).iter(),
        StrTest::In(vs) => vs.iter(),
        _ => [].iter(),
    })
}

/// A path test that no request of this route can pass: the route's prefix or exact path
/// excludes it.
fn path_outside(m: &StrMatch, route: &Route) -> Option<String> {
    let under_prefix = |p: &str| match route.prefix.as_deref() {
        Some(pre) if !pre.is_empty() => segment_prefix(p, pre) || pre.starts_with(p),
        _ => true,
    };
    for t in &m.tests {
        let bad = match t {
            StrTest::Is(v) => {
                !under_prefix(v) || route.path.as_deref().is_some_and(|p| p != v) || !v.starts_with('/')
            }
            StrTest::StartsWith(v) => {
                let prefix_ok = match route.prefix.as_deref() {
                    Some(pre) if !pre.is_empty() => v.starts_with(pre) || pre.starts_with(v.as_str()),
                    _ => true,
                };
                !prefix_ok || !(v.starts_with('/') || v.is_empty())
            }
            _ => false,
        };
        if bad {
            let (op, v) = match t {
                StrTest::Is(v) => ("is", v),
                StrTest::StartsWith(v) => ("starts with", v),
                _ => continue,
            };
            return Some(format!(
                "it needs a path that {op} {v}, but the route covers only {}",
                match (&route.path, &route.prefix) {
                    (Some(p), _) => p.clone(),
                    (_, Some(p)) if !p.is_empty() => format!("{p}/…"),
                    _ => "paths starting with /".into(),
                }
            ));
        }
    }
    None
}

/// Two exact values for the same thing in one `and`: no request has both.
fn contradiction(xs: &[Expr]) -> Option<String> {
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    for x in xs {
        let Expr::Crit(c) = x else { continue };
        let (what, m) = match c {
            Criterion::Email(m) => ("email", m),
            Criterion::Domain(m) => ("domain", m),
            Criterion::Method(m) => ("http_method", m),
            Criterion::Path(m) => ("http_path", m),
            _ => continue,
        };
        let [StrTest::Is(v)] = m.tests.as_slice() else {
            continue;
        };
        let v = if m.fold { v.to_ascii_lowercase() } else { v.clone() };
        if let Some((_, other)) = seen.iter().find(|(w, o)| *w == what && *o != v) {
            return Some(format!("`and` requires {what} to be both `{other}` and `{v}`"));
        }
        seen.push((what, v));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(yaml: &str) -> Vec<String> {
        let set = PolicySet::from_sources(&[("p.yaml".to_string(), yaml.to_string())]).unwrap();
        set.lint().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_clean_policy_has_no_warnings() {
        let w = lint(
            "- from: https://app.example.com\n  allowed_domains: [example.com]\n- from: https://app.example.com\n  prefix: /admin\n  allowed_groups: [admins]\n",
        );
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn shadowed_overlapping_and_never_matching_are_each_reported_where_they_are() {
        let w = lint(
            "\
- from: https://app.example.com
  prefix: /admin
  allowed_groups: [admins]
- from: https://app.example.com
  prefix: /admin/
  allowed_users: [bob@example.com]
- from: https://*.example.com
  allowed_domains: [example.com]
- from: https://*.team.example.com
  allowed_domains: [example.com]
- from: https://app.example.com
  prefix: /api
  policy:
    allow:
      and:
        - email:
            is: alice@example.com
        - http_path:
            starts_with: /public
- from: https://app.example.com
  prefix: /ops
  policy:
    - allow:
        and:
          - http_method:
              is: GET
          - http_method:
              is: POST
    - deny:
        or:
          - accept: true
- from: https://app.example.com
  prefix: /mail
  policy:
    allow:
      or:
        - email:
            is: alice
",
        );
        insta::assert_snapshot!(w.join("\n"), @r"
        p.yaml:4:3: warning: this route is never used: the route at p.yaml:1 matches the same requests (https://app.example.com prefix /admin/) and comes first
        p.yaml:9:3: warning: wildcard hosts *.team.example.com and *.example.com (at p.yaml:7) overlap: a host under team.example.com is decided by the *.team.example.com routes; *.example.com routes apply to it only for paths none of those cover
        p.yaml:14:5: warning: this rule can never match: it needs a path that starts with /public, but the route covers only /api/… (allow if all of [email is alice@example.com; path starts with /public] (p.yaml:14:5))
        p.yaml:23:7: warning: this rule can never match: `and` requires http_method to be both `get` and `post` (allow if all of [method is GET; method is POST] (p.yaml:23:7))
        p.yaml:29:7: warning: this deny rule matches every request: the route refuses everyone (deny if anyone (accept) (p.yaml:29:7))
        p.yaml:35:5: warning: this rule can never match: `alice` is not an email address, so no user's email equals it (allow if email is alice (p.yaml:35:5))
        ");
    }
}
