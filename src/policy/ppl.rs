//! Pomerium Policy Language: rules, logical operators, criteria and matchers.
//!
//! Parsed from the positioned YAML tree so every problem has a line and column, and evaluated
//! against a request and an optional identity without any I/O. Unlike Pomerium, a block may
//! nest inside another (`and` inside `or`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::diag::Origin;
use crate::identity::{Identity, email_domain};
use crate::request::{Request, parse_cidr};
use crate::yaml::{Node, Pos, Problem, Value};

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Grant access.
    Allow,
    /// Refuse access; beats any allow.
    Deny,
}

/// One `allow:` or `deny:` rule, or a legacy field turned into one.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Allow or deny.
    pub action: Action,
    /// Where the rule is written.
    pub origin: Origin,
    /// The condition.
    pub expr: Expr,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = match self.action {
            Action::Allow => "allow",
            Action::Deny => "deny",
        };
        write!(f, "{a} if {} ({})", self.expr, self.origin)
    }
}

/// A condition.
#[derive(Debug, Clone)]
pub enum Expr {
    /// All must match.
    And(Vec<Expr>),
    /// At least one must match.
    Or(Vec<Expr>),
    /// None may match.
    Not(Vec<Expr>),
    /// Not all may match.
    Nor(Vec<Expr>),
    /// A single criterion.
    Crit(Criterion),
}

/// A criterion: one fact about the request or the user.
#[derive(Debug, Clone)]
pub enum Criterion {
    /// Always true.
    Accept,
    /// Always false.
    Reject,
    /// Any signed-in user.
    AuthenticatedUser,
    /// The user's email.
    Email(StrMatch),
    /// The domain of the user's email.
    Domain(StrMatch),
    /// The user id, username or email.
    User(StrMatch),
    /// Group membership.
    Groups(ListMatch),
    /// A claim, by name (`claim/<name>`): one of its values equals the given one.
    Claim(String, String),
    /// The HTTP method.
    Method(StrMatch),
    /// The (normalized) path.
    Path(StrMatch),
    /// The client's address.
    SourceIp(Vec<IpNet>),
}

/// String matchers; several in one block must all hold.
#[derive(Debug, Clone, Default)]
pub struct StrMatch {
    /// Compare ignoring ASCII case (emails, domains, methods).
    pub fold: bool,
    /// The tests.
    pub tests: Vec<StrTest>,
}

/// One string test.
#[derive(Debug, Clone)]
pub enum StrTest {
    /// Equal.
    Is(String),
    /// Starts with.
    StartsWith(String),
    /// Ends with.
    EndsWith(String),
    /// Contains.
    Contains(String),
    /// Equal to one of.
    In(Vec<String>),
    /// Equal to none of.
    NotIn(Vec<String>),
}

/// List matchers (for groups).
#[derive(Debug, Clone, Default)]
pub struct ListMatch {
    /// Values the list must contain.
    pub has: Vec<String>,
    /// Values the list must not contain.
    pub exclude: Vec<String>,
}

/// Everything a criterion can look at.
pub struct Facts<'a> {
    /// The request.
    pub req: &'a Request<'a>,
    /// The user, if signed in.
    pub user: Option<&'a Identity>,
}

fn eq(fold: bool, a: &str, b: &str) -> bool {
    if fold { a.eq_ignore_ascii_case(b) } else { a == b }
}

impl StrTest {
    fn holds(&self, fold: bool, s: &str) -> bool {
        let (sb, f) = (s.as_bytes(), fold);
        match self {
            StrTest::Is(v) => eq(f, s, v),
            StrTest::StartsWith(v) => sb.len() >= v.len() && bytes_eq(f, &sb[..v.len()], v.as_bytes()),
            StrTest::EndsWith(v) => {
                sb.len() >= v.len() && bytes_eq(f, &sb[sb.len() - v.len()..], v.as_bytes())
            }
            StrTest::Contains(v) => {
                if f {
                    s.to_ascii_lowercase().contains(&v.to_ascii_lowercase())
                } else {
                    s.contains(v.as_str())
                }
            }
            StrTest::In(vs) => vs.iter().any(|v| eq(f, s, v)),
            StrTest::NotIn(vs) => !vs.iter().any(|v| eq(f, s, v)),
        }
    }
}

fn bytes_eq(fold: bool, a: &[u8], b: &[u8]) -> bool {
    if fold { a.eq_ignore_ascii_case(b) } else { a == b }
}

impl StrMatch {
    /// Whether every test holds for `s`.
    pub fn holds(&self, s: &str) -> bool {
        self.tests.iter().all(|t| t.holds(self.fold, s))
    }
}

impl Expr {
    /// Evaluate the condition.
    pub fn eval(&self, facts: &Facts<'_>) -> bool {
        match self {
            Expr::And(xs) => xs.iter().all(|x| x.eval(facts)),
            Expr::Or(xs) => xs.iter().any(|x| x.eval(facts)),
            Expr::Not(xs) => !xs.iter().any(|x| x.eval(facts)),
            Expr::Nor(xs) => !xs.iter().all(|x| x.eval(facts)),
            Expr::Crit(c) => c.eval(facts),
        }
    }

    /// Whether the condition looks at the user (so an anonymous request should log in first).
    pub fn needs_user(&self) -> bool {
        match self {
            Expr::And(xs) | Expr::Or(xs) | Expr::Not(xs) | Expr::Nor(xs) => xs.iter().any(Expr::needs_user),
            Expr::Crit(c) => !matches!(
                c,
                Criterion::Accept
                    | Criterion::Reject
                    | Criterion::Method(_)
                    | Criterion::Path(_)
                    | Criterion::SourceIp(_)
            ),
        }
    }
}

impl Criterion {
    fn eval(&self, facts: &Facts<'_>) -> bool {
        let user = facts.user;
        match self {
            Criterion::Accept => true,
            Criterion::Reject => false,
            Criterion::AuthenticatedUser => user.is_some(),
            Criterion::Email(m) => user
                .and_then(|u| u.email.as_deref())
                .is_some_and(|e| email_domain(e).is_some() && m.holds(e)),
            Criterion::Domain(m) => user.and_then(Identity::email_domain).is_some_and(|d| m.holds(d)),
            Criterion::User(m) => user.is_some_and(|u| {
                m.holds(&u.subject)
                    || u.email
                        .as_deref()
                        .is_some_and(|e| email_domain(e).is_some() && m.holds(e))
            }),
            Criterion::Groups(l) => user.is_some_and(|u| {
                l.has.iter().all(|g| u.groups.iter().any(|x| x == g))
                    && !l.exclude.iter().any(|g| u.groups.iter().any(|x| x == g))
            }),
            Criterion::Claim(name, value) => {
                user.is_some_and(|u| u.claim_values(name).iter().any(|v| v == value))
            }
            Criterion::Method(m) => m.holds(&facts.req.method),
            Criterion::Path(m) => m.holds(&facts.req.path),
            Criterion::SourceIp(nets) => facts
                .req
                .client_ip
                .is_some_and(|ip: IpAddr| nets.iter().any(|n| n.contains(&ip))),
        }
    }
}

// ---------- display, for `explain` ----------

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, xs) = match self {
            Expr::Crit(c) => return write!(f, "{c}"),
            Expr::And(xs) => ("all of", xs),
            Expr::Or(xs) => ("any of", xs),
            Expr::Not(xs) => ("none of", xs),
            Expr::Nor(xs) => ("not all of", xs),
        };
        if xs.len() == 1 && matches!(self, Expr::And(_) | Expr::Or(_)) {
            return write!(f, "{}", xs[0]);
        }
        write!(f, "{op} [")?;
        for (i, x) in xs.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{x}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Criterion::Accept => write!(f, "anyone (accept)"),
            Criterion::Reject => write!(f, "no one (reject)"),
            Criterion::AuthenticatedUser => write!(f, "any signed-in user"),
            Criterion::Email(m) => write!(f, "email {m}"),
            Criterion::Domain(m) => write!(f, "email domain {m}"),
            Criterion::User(m) => write!(f, "user {m}"),
            Criterion::Groups(l) => {
                let mut parts = Vec::new();
                if !l.has.is_empty() {
                    parts.push(format!("groups include {}", l.has.join(" and ")));
                }
                if !l.exclude.is_empty() {
                    parts.push(format!("groups exclude {}", l.exclude.join(" and ")));
                }
                write!(f, "{}", parts.join(", "))
            }
            Criterion::Claim(n, v) => write!(f, "claim {n} is {v}"),
            Criterion::Method(m) => write!(f, "method {m}"),
            Criterion::Path(m) => write!(f, "path {m}"),
            Criterion::SourceIp(nets) => {
                let s: Vec<String> = nets.iter().map(ToString::to_string).collect();
                write!(f, "client address in {}", s.join(", "))
            }
        }
    }
}

impl fmt::Display for StrMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .tests
            .iter()
            .map(|t| match t {
                StrTest::Is(v) => format!("is {v}"),
                StrTest::StartsWith(v) => format!("starts with {v}"),
                StrTest::EndsWith(v) => format!("ends with {v}"),
                StrTest::Contains(v) => format!("contains {v}"),
                StrTest::In(vs) => format!("in [{}]", vs.join(", ")),
                StrTest::NotIn(vs) => format!("not in [{}]", vs.join(", ")),
            })
            .collect();
        write!(f, "{}", parts.join(" and "))
    }
}

// ---------- parsing ----------

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
            let xs: Vec<Expr> = items.iter().filter_map(|i| self.item(i)).collect();
            ops.push(make(xs));
        }
        match ops.len() {
            0 => {
                self.err(node.pos, "an empty rule matches nothing: add and/or/not/nor");
                None
            }
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
                        "unknown criterion `{name}`: expected accept, reject, authenticated_user, email, domain, user, groups, claim/<name>, http_method, http_path or source_ip"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn rules(src: &str) -> Vec<Rule> {
        let mut p = Parser::new("t.yaml".into());
        let r = p.policy(&parse(src).unwrap());
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        r
    }

    fn user(email: &str, groups: &[&str]) -> Identity {
        Identity {
            subject: "s".into(),
            email: Some(email.into()),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            ..Identity::default()
        }
    }

    fn eval(r: &Rule, u: Option<&Identity>, url: &str) -> bool {
        let req = Request::from_url(url, "GET").unwrap();
        r.expr.eval(&Facts { req: &req, user: u })
    }

    #[test]
    fn nested_blocks() {
        let r = rules(
            "allow:\n  or:\n    - and:\n        - domain: {is: example.com}\n        - groups: {has: admins}\n    - email: {is: boss@other.com}\n",
        );
        let u = "https://a.example.com/";
        assert!(eval(&r[0], Some(&user("a@example.com", &["admins"])), u));
        assert!(!eval(&r[0], Some(&user("a@example.com", &[])), u));
        assert!(eval(&r[0], Some(&user("BOSS@other.com", &[])), u));
    }

    #[test]
    fn not_and_nor() {
        let r = rules("allow:\n  not:\n    - email: a@x.com\n    - email: b@x.com\n");
        assert!(!eval(&r[0], Some(&user("a@x.com", &[])), "https://h/"));
        assert!(eval(&r[0], Some(&user("c@x.com", &[])), "https://h/"));
        let r = rules("allow:\n  nor:\n    - domain: x.com\n    - groups: g\n");
        assert!(eval(&r[0], Some(&user("a@x.com", &[])), "https://h/"));
        assert!(!eval(&r[0], Some(&user("a@x.com", &["g"])), "https://h/"));
    }

    #[test]
    fn all_problems_reported() {
        let mut p = Parser::new("t.yaml".into());
        p.policy(
            &parse("allow:\n  or:\n    - emial: a\n    - email: {iz: b}\n    - source_ip: nope\n").unwrap(),
        );
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
        assert_eq!(p.problems[0].pos, Pos { line: 3, column: 7 });
    }

    #[test]
    fn matchers() {
        let m = StrMatch {
            fold: true,
            tests: vec![StrTest::EndsWith("@Example.com".into())],
        };
        assert!(m.holds("a@example.COM"));
        assert!(!m.holds("com"));
        let m = StrMatch {
            fold: false,
            tests: vec![
                StrTest::StartsWith("/api".into()),
                StrTest::NotIn(vec!["/api/x".into()]),
            ],
        };
        assert!(m.holds("/api/y"));
        assert!(!m.holds("/api/x"));
    }
}
