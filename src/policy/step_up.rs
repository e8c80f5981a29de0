//! Step-up: what a stronger sign-in must bring for a route whose allow rules ask how the user
//! signed in (`amr`, `acr`, Entra's `acrs`), and how that request travels to `/oauth2/start`
//! (one query parameter, parsed back strictly: its values go into the provider's sign-in
//! request).

use std::fmt;

use super::Route;
use super::ppl::{Action, Criterion, Expr, StepUpKind};

use crate::identity::Identity;

/// The step-up values a sign-in should ask the provider for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// Authentication methods (`amr`): asked for with a fresh sign-in (`max_age=0`).
    pub amr: Vec<String>,
    /// Authentication context classes (`acr`), in order of preference (`acr_values`).
    pub acr: Vec<String>,
    /// Entra authentication contexts (`acrs`): asked for with the `claims` parameter.
    pub acrs: Vec<String>,
}

/// The most values one step-up request carries (a longer one is refused).
const MAX_VALUES: usize = 16;

impl StepUp {
    /// Nothing to ask for.
    pub fn is_empty(&self) -> bool {
        self.amr.is_empty() && self.acr.is_empty() && self.acrs.is_empty()
    }

    fn list(&mut self, kind: StepUpKind) -> &mut Vec<String> {
        match kind {
            StepUpKind::Amr => &mut self.amr,
            StepUpKind::Acr => &mut self.acr,
            StepUpKind::Acrs => &mut self.acrs,
        }
    }

    /// What the route's allow rules ask that `user` does not have (everything they ask, for an
    /// anonymous request: its first sign-in asks for it at once).
    pub fn of(route: &Route, user: Option<&Identity>) -> StepUp {
        let mut s = StepUp::default();
        for r in route.rules.iter().filter(|r| r.action == Action::Allow) {
            r.expr.step_ups(&mut |kind, values| {
                let got = user.map(|u| u.claim_values(kind.claim())).unwrap_or_default();
                let held = |v: &String| got.iter().any(|g| g == v);
                // One acr of the list is enough: ask for the list unless one is held.
                if kind == StepUpKind::Acr && values.iter().any(held) {
                    return;
                }
                let list = s.list(kind);
                for v in values.iter().filter(|v| kind == StepUpKind::Acr || !held(v)) {
                    if !list.contains(v) {
                        list.push(v.clone());
                    }
                }
            });
        }
        s
    }

    /// As one query parameter: `amr:mfa acrs:c1 acr:urn:x` (values are checked when the
    /// policy is loaded: no spaces).
    pub fn to_param(&self) -> String {
        let mut parts = Vec::new();
        for (kind, values) in [
            (StepUpKind::Amr, &self.amr),
            (StepUpKind::Acr, &self.acr),
            (StepUpKind::Acrs, &self.acrs),
        ] {
            parts.extend(values.iter().map(|v| format!("{}:{v}", kind.claim())));
        }
        parts.join(" ")
    }

    /// Parsed back from the query parameter, strictly: an unknown kind, a value that could not
    /// have come from a policy, or too many values is refused.
    pub fn from_param(text: &str) -> Option<StepUp> {
        let mut s = StepUp::default();
        let mut n = 0;
        for part in text.split(' ').filter(|p| !p.is_empty()) {
            let (kind, value) = part.split_once(':')?;
            let kind = match kind {
                "amr" => StepUpKind::Amr,
                "acr" => StepUpKind::Acr,
                "acrs" => StepUpKind::Acrs,
                _ => return None,
            };
            n += 1;
            if !kind.admits(value) || n > MAX_VALUES {
                return None;
            }
            let list = s.list(kind);
            if !list.iter().any(|v| v == value) {
                list.push(value.to_string());
            }
        }
        Some(s)
    }

    /// Entra's `claims` request for the authentication contexts (`None` without any).
    pub fn claims_request(&self) -> Option<String> {
        let acrs = match self.acrs.as_slice() {
            [] => return None,
            [one] => serde_json::json!({"essential": true, "value": one}),
            many => serde_json::json!({"essential": true, "values": many}),
        };
        Some(serde_json::json!({"id_token": {"acrs": acrs}}).to_string())
    }

    /// Whether `user` signed in with everything asked for.
    pub fn held_by(&self, user: &Identity) -> bool {
        let has = |kind: StepUpKind, v: &String| user.claim_values(kind.claim()).iter().any(|g| g == v);
        self.amr.iter().all(|v| has(StepUpKind::Amr, v))
            && self.acrs.iter().all(|v| has(StepUpKind::Acrs, v))
            && (self.acr.is_empty() || self.acr.iter().any(|v| has(StepUpKind::Acr, v)))
    }
}

impl fmt::Display for StepUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.amr.is_empty() {
            parts.push(format!("amr {}", self.amr.join(" and ")));
        }
        if !self.acr.is_empty() {
            parts.push(format!("acr {}", self.acr.join(" or ")));
        }
        if !self.acrs.is_empty() {
            parts.push(format!("authentication context {}", self.acrs.join(" and ")));
        }
        f.write_str(&parts.join(", "))
    }
}

impl Expr {
    /// Call `f` with each step-up criterion's kind and wanted values (never an `exclude`).
    pub(crate) fn step_ups(&self, f: &mut dyn FnMut(StepUpKind, &[String])) {
        match self {
            Expr::And(xs) | Expr::Or(xs) => xs.iter().for_each(|x| x.step_ups(f)),
            // Under a negation a value is something not to have: nothing to ask for.
            Expr::Not(_) | Expr::Nor(_) => {}
            Expr::Crit(Criterion::StepUp(kind, l)) => f(*kind, &l.has),
            Expr::Crit(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_round_trips_and_refuses_what_no_policy_could_write() {
        let s = StepUp {
            amr: vec!["mfa".into()],
            acr: vec!["urn:x:gold".into()],
            acrs: vec!["c1".into(), "c25".into()],
        };
        assert_eq!(s.to_param(), "amr:mfa acr:urn:x:gold acrs:c1 acrs:c25");
        assert_eq!(StepUp::from_param(&s.to_param()), Some(s.clone()));
        for bad in [
            "acrs:c0",
            "acrs:c100",
            "acrs:x1",
            "amr:m\"fa",
            "nope:mfa",
            "amr",
            "acr:a\\\"b",
        ] {
            assert_eq!(StepUp::from_param(bad), None, "{bad}");
        }
        assert_eq!(
            s.claims_request().unwrap(),
            r#"{"id_token":{"acrs":{"essential":true,"values":["c1","c25"]}}}"#
        );
    }
}
