//! Prometheus metrics: what forwarden counts, and their text exposition.
//!
//! Served on their own listener (`metrics_listen`), never on the auth port, so a proxy that
//! forwards everything under `/oauth2/` cannot expose them. Names:
//! - `forwarden_decisions_total{result,route}`: auth checks by result (allow, login, forbidden,
//!   refresh) and the route's `file:line` (`-` when no route matched);
//! - `forwarden_check_duration_seconds`: histogram of the time an auth check takes inside
//!   forwarden;
//! - `forwarden_logins_total{result}`: sign-in callbacks (success, refused, bad_request,
//!   provider_error, unavailable);
//! - `forwarden_provider_errors_total{operation}`: failed calls to the identity provider
//!   (discovery, jwks, token, refresh, graph);
//! - `forwarden_jwks_refreshes_total{result}`: key refetches after an unknown `kid`;
//! - `forwarden_policy_reloads_total{result}`: policy reloads (ok, failed);
//! - `forwarden_session_refreshes_total{result}`: sessions refreshed at the provider (ok,
//!   ended).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    result: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// Every metric, shared by the server's parts (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    check_seconds: Histogram,
    logins: Family<ResultLabel, Counter>,
    provider_errors: Family<OperationLabel, Counter>,
    jwks_refreshes: Family<ResultLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    session_refreshes: Family<ResultLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("forwarden");
        let decisions = Family::<DecisionLabels, Counter>::default();
        // 25 µs to about 200 ms.
        let check_seconds = Histogram::new(exponential_buckets(0.000_025, 2.0, 14));
        let logins = Family::<ResultLabel, Counter>::default();
        let provider_errors = Family::<OperationLabel, Counter>::default();
        let jwks_refreshes = Family::<ResultLabel, Counter>::default();
        let reloads = Family::<ResultLabel, Counter>::default();
        let session_refreshes = Family::<ResultLabel, Counter>::default();
        registry.register("decisions", "Auth checks by result and route", decisions.clone());
        registry.register(
            "check_duration_seconds",
            "Time an auth check takes inside forwarden",
            check_seconds.clone(),
        );
        registry.register("logins", "Sign-in callbacks by result", logins.clone());
        registry.register(
            "provider_errors",
            "Failed calls to the identity provider by operation",
            provider_errors.clone(),
        );
        registry.register(
            "jwks_refreshes",
            "Identity provider key refetches after an unknown key id",
            jwks_refreshes.clone(),
        );
        registry.register("policy_reloads", "Policy reloads by result", reloads.clone());
        registry.register(
            "session_refreshes",
            "Sessions refreshed at the identity provider by result",
            session_refreshes.clone(),
        );
        // Every known series exists from the start at zero, so rates and alerts work before the
        // first event.
        for result in [
            "success",
            "refused",
            "bad_request",
            "provider_error",
            "unavailable",
        ] {
            let _ = logins.get_or_create(&ResultLabel { result });
        }
        for operation in ["discovery", "jwks", "token", "refresh", "graph"] {
            let _ = provider_errors.get_or_create(&OperationLabel { operation });
        }
        for result in ["ok", "failed"] {
            let _ = jwks_refreshes.get_or_create(&ResultLabel { result });
            let _ = reloads.get_or_create(&ResultLabel { result });
        }
        for result in ["ok", "ended"] {
            let _ = session_refreshes.get_or_create(&ResultLabel { result });
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                decisions,
                check_seconds,
                logins,
                provider_errors,
                jwks_refreshes,
                reloads,
                session_refreshes,
            }),
        }
    }

    /// One auth check: its result, the route's `file:line` and how long it took.
    pub fn decision(&self, result: &'static str, route: &str, seconds: f64) {
        self.inner
            .decisions
            .get_or_create(&DecisionLabels {
                result,
                route: route.to_owned(),
            })
            .inc();
        self.inner.check_seconds.observe(seconds);
    }

    /// One sign-in callback.
    pub fn login(&self, result: &'static str) {
        self.inner.logins.get_or_create(&ResultLabel { result }).inc();
    }

    /// A failed call to the identity provider.
    pub fn provider_error(&self, operation: &'static str) {
        self.inner
            .provider_errors
            .get_or_create(&OperationLabel { operation })
            .inc();
    }

    /// A key refetch.
    pub fn jwks_refresh(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.inner
            .jwks_refreshes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A policy reload.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.inner.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// A session refresh at the provider: `ok` or `ended`.
    pub fn session_refresh(&self, result: &'static str) {
        self.inner
            .session_refreshes
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// The Prometheus text exposition (OpenMetrics text format).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition() {
        let m = Metrics::new();
        m.decision("forbidden", "policy.yaml:3", 0.000_1);
        m.decision("forbidden", "policy.yaml:3", 0.000_1);
        m.login("success");
        m.provider_error("token");
        m.jwks_refresh(true);
        m.reload(false);
        m.session_refresh("ok");
        let text = m.encode();
        for line in [
            "forwarden_decisions_total{result=\"forbidden\",route=\"policy.yaml:3\"} 2",
            "forwarden_check_duration_seconds_count 2",
            "forwarden_logins_total{result=\"success\"} 1",
            "forwarden_provider_errors_total{operation=\"token\"} 1",
            "forwarden_jwks_refreshes_total{result=\"ok\"} 1",
            "forwarden_policy_reloads_total{result=\"failed\"} 1",
            "forwarden_session_refreshes_total{result=\"ok\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }
}
