//! Parsing PPL from the positioned YAML tree, collecting every problem with its position.

use std::sync::Arc;

use ipnet::IpNet;

use super::{Action, Criterion, Expr, ListMatch, Rule, StepUpKind, StrMatch, StrTest};
use crate::diag::Origin;
use crate::request::parse_cidr;
use crate::yaml::{Node, Pos, Problem, Value};

/// Parses PPL from positioned YAML, collecting every problem.
pub struct Parser {
    /// The file name, for rule origins.
    pub file: Arc<str>,
    /// Problems found so far.
    pub problems: Vec<Problem>,
}

impl Parser {
    /// A parser for `file`.
    pub fn new(file: Arc<str>) -> Self {
        Self {
            file,
            problems: Vec::new(),
        }
    }

    fn origin(&self, pos: Pos) -> Origin {
        Origin {
            file: self.file.clone(),
            pos,
        }
    }

    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.problems.push(Problem::new(pos, msg));
    }

    /// A PPL document: one rule object or a list of them.
    pub fn policy(&mut self, node: &Node) -> Vec<Rule> {
        let mut rules = Vec::new();
        match &node.value {
            Value::Seq(items) => {
                for item in items {
                    self.rule_object(item, &mut rules);
                }
            }
            Value::Map(_) => self.rule_object(node, &mut rules),
            _ => self.err(
                node.pos,
                format!(
                    "a policy must be a mapping of allow/deny rules or a list of them, not {}",
                    node.kind()
                ),
            ),
        }
        rules
    }

    fn rule_object(&mut self, node: &Node, out: &mut Vec<Rule>) {
        let Some(entries) = node.as_map() else {
            self.err(
                node.pos,
                format!("expected a mapping with allow or deny, found {}", node.kind()),
            );
            return;
        };
        for (k, v) in entries {
            let action = match k.name.as_str() {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                other => {
                    self.err(k.pos, format!("unknown action `{other}`: expected allow or deny"));
                    continue;
                }
            };
            if let Some(expr) = self.block(v) {
                out.push(Rule {
                    action,
                    origin: self.origin(k.pos),
                    expr,
                });
            }
        }
    }

    /// A block: a mapping of operators (`and`, `or`, `not`, `nor`) to lists. Several operators
    /// in one block match when any of them does, as in Pomerium.
    fn block(&mut self, node: &Node) -> Option<Expr> {
        let Some(entries) = node.as_map() else {
            self.err(
                node.pos,
                format!("expected a mapping of and/or/not/nor, found {}", node.kind()),
            );
            return None;
        };
        let mut ops = Vec::new();
        for (k, v) in entries {
            let make: fn(Vec<Expr>) -> Expr = match k.name.as_str() {
                "and" => Expr::And,
                "or" => Expr::Or,
                "not" => Expr::Not,
                "nor" => Expr::Nor,
                other => {
                    self.err(
                        k.pos,
                        format!("unknown operator `{other}`: expected and, or, not or nor"),
                    );
                    continue;
                }
            };
            let Value::Seq(items) = &v.value else {
                self.err(
                    v.pos,
                    format!("`{}` takes a list of criteria, found {}", k.name, v.kind()),
                );
                continue;
            };
            if items.is_empty() {
                // `and: []` would match everyone, anonymous included; `or: []` no one. Neither
                // is what anybody means.
                self.err(
                    v.pos,
                    format!("`{}` has an empty list: name at least one criterion", k.name),
                );
                continue;
            }
            let xs: Vec<Expr> = items.iter().filter_map(|i| self.item(i)).collect();
            ops.push(make(xs));
        }
        match ops.len() {
            0 if entries.is_empty() => {
                self.err(node.pos, "an empty rule matches nothing: add and/or/not/nor");
                None
            }
            // Each operator that failed has said why.
            0 => None,
            1 => ops.pop(),
            _ => Some(Expr::Or(ops)),
        }
    }

    /// A list item: a one-key mapping naming a criterion or a nested operator.
    fn item(&mut self, node: &Node) -> Option<Expr> {
        let entries = match node.as_map() {
            Some(e) if e.len() == 1 => e,
            _ => {
                self.err(
                    node.pos,
                    "each item must be a mapping with exactly one criterion, like `email: {is: a@b.c}`",
                );
                return None;
            }
        };
        let (k, v) = &entries[0];
        let name = k.name.as_str();
        if matches!(name, "and" | "or" | "not" | "nor") {
            return self.block(node);
        }
        let crit = match name {
            "accept" => self
                .flag(v, name)
                .map(|b| if b { Criterion::Accept } else { Criterion::Reject }),
            "reject" => self
                .flag(v, name)
                .map(|b| if b { Criterion::Reject } else { Criterion::Accept }),
            "authenticated_user" => self.flag(v, name).map(|b| {
                if b {
                    Criterion::AuthenticatedUser
                } else {
                    Criterion::Accept
                }
            }),
            "email" => self.str_match(v, true).map(Criterion::Email),
            "domain" => self.str_match(v, true).map(Criterion::Domain),
            "user" => self.str_match(v, true).map(Criterion::User),
            "groups" => self.list_match(v).map(Criterion::Groups),
            "client_id" => self.str_match(v, false).map(Criterion::ClientId),
            "idp" => self.str_match(v, false).map(Criterion::Idp),
            "scope" => self.list_match(v).map(Criterion::Scope),
            "amr" => self
                .list_match(v)
                .and_then(|l| self.step_up(v, StepUpKind::Amr, l)),
            // One of these levels (in order of preference, as `acr_values` asks for them).
            "acr" => self
                .scalars(v)
                .map(|has| ListMatch { has, exclude: vec![] })
                .and_then(|l| self.step_up(v, StepUpKind::Acr, l)),
            "acrs" => self
                .list_match(v)
                .and_then(|l| self.step_up(v, StepUpKind::Acrs, l)),
            "http_method" => self.str_match(v, true).map(Criterion::Method),
            "http_path" => self.str_match(v, false).map(Criterion::Path),
            "source_ip" => self.cidrs(v).map(Criterion::SourceIp),
            _ => match name.strip_prefix("claim/") {
                Some(claim) if !claim.is_empty() => {
                    let vals = self.scalars(v)?;
                    let xs = vals
                        .into_iter()
                        .map(|x| Expr::Crit(Criterion::Claim(claim.to_string(), x)))
                        .collect();
                    return Some(Expr::Or(xs));
                }
                _ => {
                    self.err(k.pos, format!(
                        "unknown criterion `{name}`: expected accept, reject, authenticated_user, email, domain, user, groups, client_id, scope, amr, acr, acrs, claim/<name>, http_method, http_path or source_ip"
                    ));
                    None
                }
            },
        };
        crit.map(Expr::Crit)
    }

    fn flag(&mut self, v: &Node, name: &str) -> Option<bool> {
        match v.value {
            Value::Bool(b) => Some(b),
            Value::Null => Some(true),
            _ => {
                self.err(v.pos, format!("`{name}` takes true or false, found {}", v.kind()));
                None
            }
        }
    }

    fn scalars(&mut self, v: &Node) -> Option<Vec<String>> {
        match &v.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    match i.as_scalar() {
                        Some(s) => out.push(s),
                        None => self.err(i.pos, format!("expected a value, found {}", i.kind())),
                    }
                }
                Some(out)
            }
            _ => match v.as_scalar() {
                Some(s) => Some(vec![s]),
                None => {
                    self.err(
                        v.pos,
                        format!("expected a value or a list of values, found {}", v.kind()),
                    );
                    None
                }
            },
        }
    }

    fn str_match(&mut self, v: &Node, fold: bool) -> Option<StrMatch> {
        if let Some(s) = v.as_scalar() {
            return Some(StrMatch {
                fold,
                tests: vec![StrTest::Is(s)],
            });
        }
        let Some(entries) = v.as_map() else {
            self.err(
                v.pos,
                format!("expected a value or a matcher like `is: …`, found {}", v.kind()),
            );
            return None;
        };
        let mut tests = Vec::new();
        let before = self.problems.len();
        for (k, val) in entries {
            let one = |p: &mut Self| match val.as_scalar() {
                Some(s) => Some(s),
                None => {
                    p.err(
                        val.pos,
                        format!("`{}` takes a single value, found {}", k.name, val.kind()),
                    );
                    None
                }
            };
            let t = match k.name.as_str() {
                "is" => one(self).map(StrTest::Is),
                "starts_with" => one(self).map(StrTest::StartsWith),
                "ends_with" => one(self).map(StrTest::EndsWith),
                "contains" => one(self).map(StrTest::Contains),
                "in" => self.scalars(val).map(StrTest::In),
                "not_in" => self.scalars(val).map(StrTest::NotIn),
                other => {
                    self.err(k.pos, format!("unknown matcher `{other}`: expected is, starts_with, ends_with, contains, in or not_in"));
                    None
                }
            };
            tests.extend(t);
        }
        if tests.is_empty() {
            if self.problems.len() == before {
                self.err(v.pos, "a matcher needs at least one test");
            }
            return None;
        }
        Some(StrMatch { fold, tests })
    }

    fn list_match(&mut self, v: &Node) -> Option<ListMatch> {
        if let Some(s) = v.as_scalar() {
            return Some(ListMatch {
                has: vec![s],
                exclude: vec![],
            });
        }
        let Some(entries) = v.as_map() else {
            self.err(
                v.pos,
                format!(
                    "expected `has: <group>` or `exclude: <group>`, found {}",
                    v.kind()
                ),
            );
            return None;
        };
        let mut m = ListMatch::default();
        for (k, val) in entries {
            match k.name.as_str() {
                "has" => m.has.extend(self.scalars(val).unwrap_or_default()),
                "exclude" => m.exclude.extend(self.scalars(val).unwrap_or_default()),
                other => self.err(
                    k.pos,
                    format!("unknown list matcher `{other}`: expected has or exclude"),
                ),
            }
        }
        if m.has.is_empty() && m.exclude.is_empty() {
            self.err(v.pos, "a list matcher needs `has` or `exclude`");
            return None;
        }
        Some(m)
    }

    /// A step-up criterion, its values checked: they go into the sign-in request
    /// (`acr_values`, Entra's `claims`) as written.
    fn step_up(&mut self, v: &Node, kind: StepUpKind, l: ListMatch) -> Option<Criterion> {
        let mut ok = true;
        for value in l.has.iter().chain(&l.exclude) {
            if !kind.admits(value) {
                self.err(v.pos, format!("`{value}` is not {}", kind.expected()));
                ok = false;
            }
        }
        ok.then_some(Criterion::StepUp(kind, l))
    }

    fn cidrs(&mut self, v: &Node) -> Option<Vec<IpNet>> {
        let vals = self.scalars(v)?;
        let mut nets = Vec::new();
        for s in vals {
            match parse_cidr(&s) {
                Some(n) => nets.push(n),
                None => self.err(v.pos, format!("`{s}` is not an IP address or CIDR range")),
            }
        }
        Some(nets)
    }
}
