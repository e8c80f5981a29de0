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
//!   ended, postponed: provider trouble, the session stays and the refresh is tried again).

use std::sync::Arc;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::policy::Verdict;

/// How many verdicts there are: one decision count per verdict and route.
const RESULTS: usize = Verdict::ALL.len();

/// Upper bounds of the check-duration buckets: 25 µs doubling to about 200 ms.
const BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6,
    0.051_2, 0.102_4, 0.204_8,
];

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's shard of each live `Metrics`, by id.
    static SHARDS: RefCell<Vec<(u64, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// One thread's decision counts and check durations. Only that thread writes it, so its lock
/// is uncontended except during a scrape.
#[derive(Default)]
struct Shard {
    data: Mutex<ShardData>,
}

#[derive(Default)]
struct ShardData {
    decisions: HashMap<Box<str>, [u64; RESULTS]>,
    /// One more than BUCKETS: the last counts durations above every bound.
    buckets: [u64; BUCKETS.len() + 1],
    count: u64,
    sum: f64,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
    /// Distinguishes instances in the per-thread shard lists.
    id: u64,
    registry: Registry,
    /// Decisions and check durations, one shard per worker thread.
    shards: Mutex<Vec<Arc<Shard>>>,
    logins: Family<ResultLabel, Counter>,
    provider_errors: Family<OperationLabel, Counter>,
    jwks_refreshes: Family<ResultLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
    session_refreshes: Family<ResultLabel, Counter>,
    store_up: prometheus_client::metrics::gauge::Gauge,
    connections_closed: Family<ReasonLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
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
        let logins = Family::<ResultLabel, Counter>::default();
        let provider_errors = Family::<OperationLabel, Counter>::default();
        let jwks_refreshes = Family::<ResultLabel, Counter>::default();
        let reloads = Family::<ResultLabel, Counter>::default();
        let session_refreshes = Family::<ResultLabel, Counter>::default();
        let store_up = prometheus_client::metrics::gauge::Gauge::default();
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections forwarden closed to keep its bounds, by reason: an untrusted peer over its share, an idle one shed under pressure, a request head or TLS handshake not finished in time, an HTTP/2 connection idle too long",
            connections_closed.clone(),
        );
        for reason in [
            "untrusted_over_share",
            "idle_shed",
            "header_timeout",
            "handshake_timeout",
            "idle_timeout",
        ] {
            let _ = connections_closed.get_or_create(&ReasonLabel { reason });
        }
        registry.register(
            "session_store_up",
            "1 while the session store (session_store) answers, 0 when it does not or there is none",
            store_up.clone(),
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
        for result in ["ok", "ended", "postponed"] {
            let _ = session_refreshes.get_or_create(&ResultLabel { result });
        }
        Metrics {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                registry,
                shards: Mutex::new(Vec::new()),
                logins,
                provider_errors,
                jwks_refreshes,
                reloads,
                session_refreshes,
                store_up,
                connections_closed,
            }),
        }
    }

    /// One auth check: its result, the route's `file:line` and how long it took.
    ///
    /// This runs on every request, so it touches only the calling thread's shard: no lock or
    /// counter is shared between cores (shared atomics cost more here than the rest of the
    /// bookkeeping). A scrape adds the shards up.
    pub fn decision(&self, result: Verdict, route: &str, seconds: f64) {
        let r = result as usize;
        let b = BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(BUCKETS.len());
        self.with_shard(|shard| {
            let Ok(mut d) = shard.data.lock() else { return };
            match d.decisions.get_mut(route) {
                Some(counts) => counts[r] += 1,
                None => {
                    let mut counts = [0; RESULTS];
                    counts[r] = 1;
                    d.decisions.insert(route.into(), counts);
                }
            }
            d.buckets[b] += 1;
            d.count += 1;
            d.sum += seconds;
        });
    }

    /// Run `f` on this thread's shard of this instance, created on first use.
    fn with_shard(&self, f: impl FnOnce(&Shard)) {
        SHARDS.with_borrow_mut(|mine| {
            if let Some((_, s)) = mine.iter().find(|(id, _)| *id == self.inner.id) {
                return f(s);
            }
            // Forget shards of instances that are gone (only this list still holds them).
            mine.retain(|(_, s)| Arc::strong_count(s) > 1);
            let s = Arc::new(Shard::default());
            if let Ok(mut all) = self.inner.shards.lock() {
                all.push(s.clone());
            }
            f(&s);
            mine.push((self.inner.id, s));
        })
    }

    /// Decisions and the check-duration histogram, summed over the shards, as exposition text.
    fn encode_decisions(&self, out: &mut String) {
        use std::fmt::Write;
        let mut decisions: BTreeMap<String, [u64; RESULTS]> = BTreeMap::new();
        let mut buckets = [0u64; BUCKETS.len() + 1];
        let (mut count, mut sum) = (0u64, 0f64);
        let shards = self.inner.shards.lock().map(|s| s.clone()).unwrap_or_default();
        for shard in shards {
            let Ok(d) = shard.data.lock() else { continue };
            for (route, counts) in &d.decisions {
                let total = decisions.entry(route.to_string()).or_default();
                for (t, c) in total.iter_mut().zip(counts) {
                    *t += c;
                }
            }
            for (t, c) in buckets.iter_mut().zip(&d.buckets) {
                *t += c;
            }
            count += d.count;
            sum += d.sum;
        }
        // Writing into a String cannot fail.
        let _ = writeln!(out, "# HELP forwarden_decisions Auth checks by result and route.");
        let _ = writeln!(out, "# TYPE forwarden_decisions counter");
        for (route, counts) in &decisions {
            for (result, n) in Verdict::ALL
                .iter()
                .map(|v| v.as_str())
                .zip(counts)
                .filter(|(_, n)| **n > 0)
            {
                let _ = writeln!(
                    out,
                    "forwarden_decisions_total{{result=\"{result}\",route=\"{}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP forwarden_check_duration_seconds Time an auth check takes inside forwarden."
        );
        let _ = writeln!(out, "# TYPE forwarden_check_duration_seconds histogram");
        let _ = writeln!(out, "forwarden_check_duration_seconds_sum {sum}");
        let _ = writeln!(out, "forwarden_check_duration_seconds_count {count}");
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(&buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "forwarden_check_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "forwarden_check_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
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

    /// A connection closed to keep the listener's bounds.
    pub fn connection_closed(&self, reason: &'static str) {
        self.inner
            .connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Whether the session store answers.
    pub fn store_up(&self, up: bool) {
        self.inner.store_up.set(i64::from(up));
    }

    /// The Prometheus text exposition (OpenMetrics text format).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.encode_decisions(&mut out);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_from_every_thread_are_summed_and_labels_escaped() {
        let m = Metrics::new();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        m.decision(Verdict::Allow, "a \"quoted\" path.yaml:1", 0.000_03);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        m.decision(Verdict::Login, "a \"quoted\" path.yaml:1", 1.0);
        let other = Metrics::new();
        other.decision(Verdict::Allow, "x:1", 0.1);
        let text = m.encode();
        assert!(
            text.contains(
                "forwarden_decisions_total{result=\"allow\",route=\"a \\\"quoted\\\" path.yaml:1\"} 1000"
            ),
            "{text}"
        );
        assert!(
            text.contains("forwarden_check_duration_seconds_count 1001"),
            "{text}"
        );
        assert!(
            text.contains("forwarden_check_duration_seconds_bucket{le=\"0.00005\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("forwarden_check_duration_seconds_bucket{le=\"+Inf\"} 1001"),
            "{text}"
        );
        assert!(!text.contains("x:1"), "instances are separate");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counts_appear_in_the_exposition() {
        let m = Metrics::new();
        m.decision(Verdict::Forbidden, "policy.yaml:3", 0.000_1);
        m.decision(Verdict::Forbidden, "policy.yaml:3", 0.000_1);
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
