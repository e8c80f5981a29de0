//! Pomerium Policy Language: rules, logical operators, criteria and matchers.
//!
//! Parsed from the positioned YAML tree so every problem has a line and column, and evaluated
//! against a request and an optional identity without any I/O. Unlike Pomerium, a block may
//! nest inside another (`and` inside `or`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::diag::Origin;
use crate::identity::{Identity, email_domain};
use crate::request::Request;

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
    /// A bearer token's calling application (`azp`/`appid`/`client_id`).
    ClientId(StrMatch),
    /// The identity provider the user signed in with (`providers:` name; for a bearer token the
    /// name its issuer is tied to).
    Idp(StrMatch),
    /// A bearer token's delegated scopes (`scp`/`scope`).
    Scope(ListMatch),
    /// The HTTP method.
    Method(StrMatch),
    /// The (normalized) path.
    Path(StrMatch),
    /// The client's address.
    SourceIp(Vec<IpNet>),
    /// How the user signed in (`amr`, `acr`, Entra's `acrs`): a session without it is sent to
    /// sign in again, asking the provider for it (step-up), instead of being refused.
    StepUp(StepUpKind, ListMatch),
}

/// What a step-up criterion looks at, in the ID token the session was signed in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepUpKind {
    /// Authentication methods (`amr`, RFC 8176: `mfa`, `otp`, `hwk`, …): must include the
    /// values. Asked for with a fresh sign-in (`max_age=0`).
    Amr,
    /// The authentication context class (`acr`): one of the values. Asked for with
    /// `acr_values`.
    Acr,
    /// Entra's Conditional Access authentication contexts (`acrs`, `c1` to `c99`): must include
    /// the values. Asked for with the `claims` parameter.
    Acrs,
}

impl StepUpKind {
    /// The claim it reads (kept in the session's claims under this name).
    pub fn claim(self) -> &'static str {
        match self {
            StepUpKind::Amr => "amr",
            StepUpKind::Acr => "acr",
            StepUpKind::Acrs => "acrs",
        }
    }

    /// Whether `value` can be asked for as written (it goes into the sign-in request).
    pub fn admits(self, value: &str) -> bool {
        let b = value.as_bytes();
        match self {
            StepUpKind::Acrs => {
                b.len() >= 2
                    && b.len() <= 3
                    && b[0] == b'c'
                    && b[1] != b'0'
                    && b[1..].iter().all(u8::is_ascii_digit)
            }
            StepUpKind::Amr => {
                !b.is_empty()
                    && b.len() <= 32
                    && b.iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
            }
            StepUpKind::Acr => {
                !b.is_empty()
                    && b.len() <= 256
                    && b.iter()
                        .all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\\' | b','))
            }
        }
    }

    /// What [`StepUpKind::admits`] expects, for the error.
    pub fn expected(self) -> &'static str {
        match self {
            StepUpKind::Amr => "an amr value (letters, digits, `_` and `-`: mfa, otp, hwk, …)",
            StepUpKind::Acr => "an acr value (printable ASCII without spaces, quotes, `\\` or `,`)",
            StepUpKind::Acrs => "an Entra authentication context id (c1 to c99)",
        }
    }
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
    /// Whether a step-up criterion the user lacks is unknown rather than false: a new sign-in
    /// asking for it could make it hold.
    pub step_up: bool,
}

fn eq(fold: bool, a: &str, b: &str) -> bool {
    // Equal bytes first (a memory compare): values mostly come in the case the rule names.
    a == b || (fold && a.eq_ignore_ascii_case(b))
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
    a == b || (fold && a.eq_ignore_ascii_case(b))
}

impl StrMatch {
    /// Whether every test holds for `s`.
    pub fn holds(&self, s: &str) -> bool {
        self.tests.iter().all(|t| t.holds(self.fold, s))
    }
}

/// A condition's value. For an anonymous request every criterion about the user is
/// [`Truth::Unknown`]: it depends on who signs in. `and`, `or` and `not` follow Kleene's
/// three-valued logic (`False < Unknown < True`: `and` is the least, `or` the greatest), so an
/// unknown part decides the whole only when the known parts cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Truth {
    /// Definitely does not hold.
    False,
    /// Depends on who the user is.
    Unknown,
    /// Definitely holds.
    True,
}

impl Truth {
    fn not(self) -> Truth {
        match self {
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
            Truth::True => Truth::False,
        }
    }

    fn all(xs: impl Iterator<Item = Truth>) -> Truth {
        xs.min().unwrap_or(Truth::True)
    }

    fn any(xs: impl Iterator<Item = Truth>) -> Truth {
        xs.max().unwrap_or(Truth::False)
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Truth {
        if b { Truth::True } else { Truth::False }
    }
}

impl Expr {
    /// Evaluate the condition.
    pub fn eval(&self, facts: &Facts<'_>) -> Truth {
        match self {
            Expr::And(xs) => Truth::all(xs.iter().map(|x| x.eval(facts))),
            Expr::Or(xs) => Truth::any(xs.iter().map(|x| x.eval(facts))),
            Expr::Not(xs) => Truth::any(xs.iter().map(|x| x.eval(facts))).not(),
            Expr::Nor(xs) => Truth::all(xs.iter().map(|x| x.eval(facts))).not(),
            Expr::Crit(c) if facts.user.is_none() && c.needs_user() => Truth::Unknown,
            Expr::Crit(c @ Criterion::StepUp(..)) if facts.step_up && !c.eval(facts) => Truth::Unknown,
            Expr::Crit(c) => c.eval(facts).into(),
        }
    }
}

impl Expr {
    /// Add every group this condition names (`groups`, `claim/groups`) to `out`.
    pub fn groups_named(&self, out: &mut std::collections::HashSet<String>) {
        match self {
            Expr::And(xs) | Expr::Or(xs) | Expr::Not(xs) | Expr::Nor(xs) => {
                xs.iter().for_each(|x| x.groups_named(out));
            }
            Expr::Crit(Criterion::Groups(l)) => out.extend(l.has.iter().chain(&l.exclude).cloned()),
            Expr::Crit(Criterion::Claim(name, value)) if name == "groups" => {
                out.insert(value.clone());
            }
            Expr::Crit(_) => {}
        }
    }
}

impl Criterion {
    /// Whether the criterion looks at the user (so it is unknown for an anonymous request).
    pub fn needs_user(&self) -> bool {
        !matches!(
            self,
            Criterion::Accept
                | Criterion::Reject
                | Criterion::Method(_)
                | Criterion::Path(_)
                | Criterion::SourceIp(_)
        )
    }

    fn eval(&self, facts: &Facts<'_>) -> bool {
        let user = facts.user;
        match self {
            Criterion::Accept => true,
            Criterion::Reject => false,
            // An application's own token is an authenticated client, not a user.
            Criterion::AuthenticatedUser => user.is_some_and(|u| !u.application),
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
            Criterion::ClientId(m) => user
                .and_then(|u| u.client_id.as_deref())
                .is_some_and(|c| m.holds(c)),
            Criterion::Idp(m) => user.is_some_and(|u| m.holds(u.idp())),
            Criterion::Scope(l) => user.is_some_and(|u| {
                l.has.iter().all(|g| u.scopes.iter().any(|x| x == g))
                    && !l.exclude.iter().any(|g| u.scopes.iter().any(|x| x == g))
            }),
            Criterion::StepUp(kind, l) => user.is_some_and(|u| {
                let got = u.claim_values(kind.claim());
                let has = |v: &String| got.iter().any(|g| g == v);
                match kind {
                    StepUpKind::Acr => l.has.iter().any(has),
                    StepUpKind::Amr | StepUpKind::Acrs => l.has.iter().all(has) && !l.exclude.iter().any(has),
                }
            }),
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

/// `groups include a and b, groups exclude c`.
fn list_text(what: &str, l: &ListMatch) -> String {
    let mut parts = Vec::new();
    if !l.has.is_empty() {
        parts.push(format!("{what} include {}", l.has.join(" and ")));
    }
    if !l.exclude.is_empty() {
        parts.push(format!("{what} exclude {}", l.exclude.join(" and ")));
    }
    parts.join(", ")
}

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
            Criterion::Groups(l) => write!(f, "{}", list_text("groups", l)),
            Criterion::Claim(n, v) => write!(f, "claim {n} is {v}"),
            Criterion::StepUp(StepUpKind::Acr, l) => write!(f, "acr is one of {}", l.has.join(", ")),
            Criterion::StepUp(kind, l) => write!(f, "{}", list_text(kind.claim(), l)),
            Criterion::ClientId(m) => write!(f, "calling application {m}"),
            Criterion::Idp(m) => write!(f, "identity provider {m}"),
            Criterion::Scope(l) => write!(f, "{}", list_text("scopes", l)),
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

mod parse;
pub use parse::Parser;

#[cfg(test)]
mod tests;
