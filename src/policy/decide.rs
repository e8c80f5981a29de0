//! The decision for one request. Read this first: it is the whole of what forwarden judges.
//!
//! 1. no route covers the request: forbidden; a route whose `from` names a port would cover
//!    it but the proxy did not state the port: forbidden (which route applies is unknown);
//! 2. a public route: allow;
//! 3. a `deny` rule that holds: forbidden (deny beats allow). For an anonymous request a rule
//!    about the user is *unknown* (see [`Truth`]): a deny that may hold means "sign in first";
//! 4. an `allow` rule that definitely holds: allow. Otherwise, when an allow rule could hold
//!    once the user is known, sign in first; when one could hold for this user after a stronger
//!    sign-in (`amr`, `acr`, `acrs`), sign in again asking for it (step-up); when none can,
//!    forbidden;
//! 5. a CORS preflight on a route with `cors_allow_preflight` passes when step 3 did not
//!    refuse it (preflights carry no credentials, so a deny about the user refuses them too);
//! 6. parameters from the proxy (`allowed_groups`, `allowed_emails`, `allowed_email_domains`,
//!    `policy`) can then only narrow an allow, never widen a refusal.

use super::ppl::{Action, Facts, Rule, Truth};
use super::route::Found;
use super::{Decision, Narrowing, PolicySet, Reason, StepUp, Verdict};
use crate::identity::{Identity, email_domain};
use crate::request::Request;

impl PolicySet {
    /// Decide one request.
    pub fn decide<'a>(&'a self, req: &Request, user: Option<&Identity>, narrow: &Narrowing) -> Decision<'a> {
        let route = match self.find_route(req) {
            Found::Route(r) => r,
            Found::None => {
                return Decision {
                    verdict: Verdict::Forbidden,
                    route: None,
                    reason: Reason::NoRoute,
                };
            }
            Found::PortUnstated(r) => {
                return Decision {
                    verdict: Verdict::Forbidden,
                    route: Some(r),
                    reason: Reason::PortUnstated,
                };
            }
        };
        let decide = |verdict, reason| Decision {
            verdict,
            route: Some(route),
            reason,
        };
        // A session (or token) from a provider or app registration the route does not accept
        // counts as none here: the user may sign in with one it does.
        let other_sign_in = user.is_some_and(|u| !route.public && !accepted(&route.sign_in, u));
        let user = if other_sign_in { None } else { user };
        let facts = Facts {
            req,
            user,
            step_up: false,
        };
        let base = if route.public {
            decide(Verdict::Allow, Reason::Public)
        } else {
            match evaluate(&route.rules, &facts) {
                (_, Reason::Denied(r)) => decide(Verdict::Forbidden, Reason::Denied(r)),
                (v, Reason::DenyNeedsUser(r)) => decide(v, Reason::DenyNeedsUser(r)),
                _ if route.cors_preflight && req.preflight => decide(Verdict::Allow, Reason::Preflight),
                // Signed in, and no allow rule holds: would one hold after a stronger sign-in?
                (Verdict::Forbidden, Reason::NoAllowMatched) if user.is_some() => {
                    let stronger = Facts {
                        step_up: true,
                        ..facts
                    };
                    match evaluate(&route.rules, &stronger) {
                        (Verdict::Login, Reason::LoginRequired) => {
                            decide(Verdict::Login, Reason::StepUp(StepUp::of(route, user)))
                        }
                        _ => decide(Verdict::Forbidden, Reason::NoAllowMatched),
                    }
                }
                (Verdict::Login, _) if other_sign_in => decide(Verdict::Login, Reason::OtherSignIn),
                (verdict, reason) => decide(verdict, reason),
            }
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

/// Whether the route accepts the identity's sign-in: a session's provider and app
/// registration, or the provider a bearer token's issuer is tied to.
fn accepted(with: &super::SignInWith, u: &Identity) -> bool {
    if u.token {
        with.accepts_issuer(u.idp())
    } else {
        with.accepts(u.idp(), u.idp_client())
    }
}

/// Deny beats allow. For an anonymous request a rule about the user is unknown: an unknown
/// deny means "sign in first" (it may turn out true), and an allow must be definitely true.
fn evaluate<'a>(rules: &'a [Rule], facts: &Facts<'_>) -> (Verdict, Reason<'a>) {
    let mut deny_unknown = None;
    for r in rules.iter().filter(|r| r.action == Action::Deny) {
        match r.expr.eval(facts) {
            Truth::True => return (Verdict::Forbidden, Reason::Denied(r)),
            Truth::Unknown => {
                deny_unknown.get_or_insert(r);
            }
            Truth::False => {}
        }
    }
    if let Some(r) = deny_unknown {
        return (Verdict::Login, Reason::DenyNeedsUser(r));
    }
    let mut allow_unknown = false;
    for r in rules.iter().filter(|r| r.action == Action::Allow) {
        match r.expr.eval(facts) {
            Truth::True => return (Verdict::Allow, Reason::Allowed(r)),
            Truth::Unknown => allow_unknown = true,
            Truth::False => {}
        }
    }
    if allow_unknown {
        (Verdict::Login, Reason::LoginRequired)
    } else {
        (Verdict::Forbidden, Reason::NoAllowMatched)
    }
}
