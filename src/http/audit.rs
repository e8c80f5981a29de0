//! The audit line of a decision (target `forwarden::audit`) and its count in the metrics: one
//! per check, written by the pipeline (`auth`).

use std::net::SocketAddr;
use std::time::Instant;

use super::AppState;
use crate::config::Audit;
use crate::diag::Origin;
use crate::identity::Identity;
use crate::policy::Verdict;

/// One decision, for the audit log and the metrics.
pub(super) struct AuditLine<'a> {
    pub(super) verdict: Verdict,
    /// A short code for why ([`Reason::code`], or one of the edge's own).
    pub(super) code: &'a str,
    pub(super) route: &'a str,
    /// Where the deciding rule is written, if one decided.
    pub(super) rule: Option<&'a Origin>,
    pub(super) detail: &'a dyn std::fmt::Display,
}

impl<'a> AuditLine<'a> {
    /// A decision the edge made before any route was chosen.
    pub(super) fn early(verdict: Verdict, code: &'a str, detail: &'a dyn std::fmt::Display) -> Self {
        AuditLine {
            verdict,
            code,
            route: "-",
            rule: None,
            detail,
        }
    }

    /// Count the decision (when metrics are on; `started` is then when the check began) and
    /// write its audit line (every decision but a plain allow, or all with `audit: all`).
    pub(super) fn record(
        &self,
        st: &AppState,
        started: Option<Instant>,
        req: Option<&crate::request::Request<'_>>,
        user: Option<&Identity>,
        peer: SocketAddr,
    ) {
        if let Some(t) = started {
            st.metrics
                .decision(self.verdict, self.route, t.elapsed().as_secs_f64());
        }
        if self.verdict == Verdict::Allow && st.config.audit != Audit::All {
            return;
        }
        tracing::info!(
            target: "forwarden::audit",
            result = self.verdict.as_str(),
            reason = self.code,
            rule = %OrDash(self.rule),
            route = self.route,
            user = or_dash(user.map(|u| u.subject.as_str())),
            email = or_dash(user.and_then(|u| u.email.as_deref())),
            tenant = or_dash(user.map(|u| u.tenant.as_str())),
            host = or_dash(req.map(|r| r.site.host.as_ref())),
            path = or_dash(req.map(|r| r.path.as_ref())),
            method = or_dash(req.map(|r| r.method.as_ref())),
            client_ip = %req.and_then(|r| r.client_ip).unwrap_or(peer.ip()),
            detail = %self.detail,
            "decision"
        );
    }
}

/// An optional place, printed as `-` when there is none.
struct OrDash<'a>(Option<&'a Origin>);

impl std::fmt::Display for OrDash<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(o) => o.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The value, or `-` when there is none (audit fields are always present).
fn or_dash(s: Option<&str>) -> &str {
    s.filter(|s| !s.is_empty()).unwrap_or("-")
}

/// How a check is kept: `record` writes its audit line and counts the decision; `started` is
/// when the check began (with metrics on).
#[derive(Clone, Copy)]
pub(super) struct Tally {
    pub(super) record: bool,
    pub(super) started: Option<Instant>,
}

impl Tally {
    /// Recorded (the check's one audit line and count), begun at `started`.
    pub(super) fn recorded(started: Option<Instant>) -> Self {
        Tally {
            record: true,
            started,
        }
    }
}
