//! The decision for one request. Read this first: it is the whole of what forwarden judges.
//!
//! 1. no route covers the request: forbidden;
//! 2. a public route, or a CORS preflight on a route that allows them: allow;
//! 3. a matching `deny` rule: forbidden (deny beats allow). For an anonymous request, deny rules
//!    about the user wait until the user is known;
//! 4. a matching `allow` rule: allow; otherwise an anonymous request must log in first and a
//!    signed-in one is forbidden;
//! 5. parameters from the proxy (`allowed_groups`, `allowed_emails`, `allowed_email_domains`,
//!    `policy`) can then only narrow an allow, never widen a refusal.

use super::ppl::{Action, Facts, Rule};
use super::{Decision, Narrowing, PolicySet, Reason, Verdict};
use crate::identity::{Identity, email_domain};
use crate::request::Request;

impl PolicySet {
    /// Decide one request.
    pub fn decide<'a>(&'a self, req: &Request, user: Option<&Identity>, narrow: &Narrowing) -> Decision<'a> {
        let Some(route) = self.find_route(req) else {
            return Decision {
                verdict: Verdict::Forbidden,
                route: None,
                reason: Reason::NoRoute,
            };
        };
        let decide = |verdict, reason| Decision {
            verdict,
            route: Some(route),
            reason,
        };
        let facts = Facts { req, user };
        let base = if route.public {
            decide(Verdict::Allow, Reason::Public)
        } else if route.cors_preflight && req.preflight {
            decide(Verdict::Allow, Reason::Preflight)
        } else {
            let (verdict, reason) = evaluate(&route.rules, &facts);
            decide(verdict, reason)
        };
        if base.verdict != Verdict::Allow || narrow.is_empty() {
            return base;
        }
        // The proxy's parameters only narrow: each one present must hold as well.
        let Some(u) = user else {
            return decide(Verdict::Login, Reason::LoginRequired);
        };
        if !narrow.groups.is_empty() && !narrow.groups.iter().any(|g| u.groups.contains(g)) {
            return decide(Verdict::Forbidden, Reason::Narrowed("allowed_groups"));
        }
        let email = u.email.as_deref().filter(|e| email_domain(e).is_some());
        if !narrow.emails.is_empty()
            && !email.is_some_and(|e| narrow.emails.iter().any(|w| e.eq_ignore_ascii_case(w)))
        {
            return decide(Verdict::Forbidden, Reason::Narrowed("allowed_emails"));
        }
        if !narrow.domains.is_empty() {
            let dom = email.and_then(email_domain);
            if !dom.is_some_and(|d| {
                narrow
                    .domains
                    .iter()
                    .any(|w| d.eq_ignore_ascii_case(w.trim_start_matches('@')))
            }) {
                return decide(Verdict::Forbidden, Reason::Narrowed("allowed_email_domains"));
            }
        }
        if let Some(name) = &narrow.policy {
            let Some(rules) = self.named(name) else {
                return decide(Verdict::Forbidden, Reason::UnknownPolicy(name.clone()));
            };
            let (verdict, reason) = evaluate(rules, &facts);
            if verdict != Verdict::Allow {
                return decide(verdict, reason);
            }
        }
        base
    }
}

/// Deny beats allow; an anonymous request is sent to log in when the user could matter.
fn evaluate<'a>(rules: &'a [Rule], facts: &Facts<'_>) -> (Verdict, Reason<'a>) {
    let anonymous = facts.user.is_none();
    for r in rules.iter().filter(|r| r.action == Action::Deny) {
        if anonymous && r.expr.needs_user() {
            continue;
        }
        if r.expr.eval(facts) {
            return (Verdict::Forbidden, Reason::Denied(r));
        }
    }
    for r in rules.iter().filter(|r| r.action == Action::Allow) {
        if r.expr.eval(facts) {
            return (Verdict::Allow, Reason::Allowed(r));
        }
    }
    if anonymous {
        (Verdict::Login, Reason::LoginRequired)
    } else {
        (Verdict::Forbidden, Reason::NoAllowMatched)
    }
}
