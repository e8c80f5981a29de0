//! Signing keys as fetched: one [`KeySource`] per key set (the identity provider's, each extra
//! bearer issuer's), with the one periodic refresh and the one rate-limited refetch after an
//! unknown `kid` that every verifier (sign-in, bearer tokens, logout tokens) goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::{MAX_ANSWER, TransportError, read_bounded};
use crate::metrics::Metrics;
use crate::oidc::Keys;
use crate::oidc::idtoken::KeySet as JwkSet;

/// Least time between two fetches of one key set for an unknown `kid`.
pub(crate) const JWKS_REFETCH: Duration = Duration::from_secs(30);

/// One key set: where it is published, the keys last fetched (parsed once per fetch), and when
/// it was last fetched for an unknown `kid`. A failed fetch keeps the last good keys.
pub struct KeySource {
    url: String,
    /// What the logs call it ("identity provider", "bearer issuer").
    what: &'static str,
    http: reqwest::Client,
    current: ArcSwap<Keys>,
    fetched: AtomicBool,
    last_fetch: std::sync::Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl KeySource {
    /// A source that has fetched nothing yet (no key verifies anything).
    pub fn new(url: &str, what: &'static str, http: reqwest::Client, metrics: Metrics) -> Self {
        KeySource {
            url: url.to_string(),
            what,
            http,
            current: ArcSwap::from_pointee(Keys::new(JwkSet::new(Vec::new()))),
            fetched: AtomicBool::new(false),
            last_fetch: std::sync::Mutex::new(None),
            metrics,
        }
    }

    /// A source with its own HTTP client (a bearer issuer's `jwks_url`), bounded by `timeout`.
    pub fn with_timeout(
        url: &str,
        what: &'static str,
        timeout: Duration,
        metrics: Metrics,
    ) -> Result<Self, TransportError> {
        Ok(KeySource::new(url, what, super::http_client(timeout)?, metrics))
    }

    /// A source whose keys were just fetched (discovery).
    pub fn primed(self, keys: JwkSet) -> Self {
        self.current.store(Arc::new(Keys::new(keys)));
        self.fetched.store(true, Ordering::Relaxed);
        self
    }

    /// The current keys (empty until the first fetch succeeds).
    pub fn keys(&self) -> Arc<Keys> {
        self.current.load_full()
    }

    /// Whether a fetch has ever succeeded.
    pub fn fetched(&self) -> bool {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The periodic refresh (whatever the tokens say): a key the publisher withdrew stops being
    /// trusted within the refresh interval. A failed fetch keeps the last good keys.
    pub async fn refresh(&self) -> Result<Refreshed, TransportError> {
        let fetched = fetch_keys(&self.http, &self.url).await;
        self.metrics.jwks_refresh(fetched.is_ok());
        let (set, next) = fetched?;
        let old = self.fetched().then(|| self.keys());
        let (keys, withdrawn) = replace_keys(old.as_deref(), set);
        self.store(keys);
        Ok(Refreshed { next, withdrawn })
    }

    /// Fetch the keys again after an unknown `kid` (or on first use): at most once per
    /// `JWKS_REFETCH`; a failed fetch keeps the last good keys. Returns whether new keys were
    /// stored.
    pub async fn refetch(&self) -> bool {
        if !turn(&self.last_fetch) {
            return false;
        }
        let fetched = fetch_keys(&self.http, &self.url).await;
        self.metrics.jwks_refresh(fetched.is_ok());
        match fetched {
            Ok((keys, _)) => {
                self.store(Keys::new(keys));
                tracing::info!(url = %self.url, "{} keys fetched", self.what);
                true
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "{} keys fetch failed; keeping the last good keys", self.what);
                false
            }
        }
    }

    fn store(&self, keys: Keys) {
        self.current.store(Arc::new(keys));
        self.fetched.store(true, Ordering::Relaxed);
    }
}

/// Key sets are fetched again at least this often ...
pub const KEYS_REFRESH_MIN: Duration = Duration::from_secs(5 * 60);
/// ... and at most this seldom, whatever `Cache-Control` says.
pub const KEYS_REFRESH_MAX: Duration = Duration::from_secs(24 * 3600);
/// Without a `Cache-Control: max-age`, key sets are fetched again this often.
pub const KEYS_REFRESH_DEFAULT: Duration = Duration::from_secs(3600);
/// After a failed periodic fetch (the last good keys are kept), the next try.
pub const KEYS_REFRESH_RETRY: Duration = Duration::from_secs(60);

/// When to fetch a key set again: its `Cache-Control: max-age`, within
/// [`KEYS_REFRESH_MIN`]..=[`KEYS_REFRESH_MAX`]; [`KEYS_REFRESH_DEFAULT`] without one (or with
/// `no-cache`/`no-store`, which would mean every request: the minimum then).
pub fn refresh_after(cache_control: Option<&str>) -> Duration {
    let Some(cc) = cache_control else {
        return KEYS_REFRESH_DEFAULT;
    };
    let directives = cc.split(',').map(|d| d.trim().to_ascii_lowercase());
    let mut max_age = None;
    for d in directives {
        if d == "no-cache" || d == "no-store" {
            return KEYS_REFRESH_MIN;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.map_or(KEYS_REFRESH_DEFAULT, |s| {
        Duration::from_secs(s).clamp(KEYS_REFRESH_MIN, KEYS_REFRESH_MAX)
    })
}

/// What a periodic key refresh found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// When to fetch again.
    pub next: Duration,
    /// Whether a key id the last set had is gone (tokens it signed are no longer trusted).
    pub withdrawn: bool,
}

/// Fetch a key set, and when to fetch it again.
pub(super) async fn fetch_keys(
    http: &reqwest::Client,
    url: &str,
) -> Result<(JwkSet, Duration), TransportError> {
    let r = http.get(url).send().await.map_err(super::network)?;
    let next = refresh_after(
        r.headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
    );
    let status = r.status();
    let body = read_bounded(r, MAX_ANSWER).await?;
    if !status.is_success() {
        return Err(TransportError::Status(status.as_u16(), String::new()));
    }
    let set = serde_json::from_slice(&body).map_err(|e| TransportError::Body(e.to_string()))?;
    Ok((set, next))
}

/// Store a periodically fetched key set; whether a key id of the old one is gone.
fn replace_keys(old: Option<&Keys>, new: JwkSet) -> (Keys, bool) {
    let kids = |set: &JwkSet| -> Vec<String> {
        set.keys()
            .iter()
            .filter_map(|k| openidconnect::JsonWebKey::key_id(k).map(|id| id.to_string()))
            .collect()
    };
    let fresh = kids(&new);
    let withdrawn = old.is_some_and(|o| kids(&o.set).iter().any(|k| !fresh.contains(k)));
    (Keys::new(new), withdrawn)
}

/// Whether a key fetch may go now: at most one per `JWKS_REFETCH` for each source (an unknown
/// `kid` in a flood of forged tokens must not turn into a flood of fetches).
fn turn(last: &std::sync::Mutex<Option<Instant>>) -> bool {
    let Ok(mut last) = last.lock() else {
        return false;
    };
    if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_refresh_follows_cache_control_within_bounds() {
        assert_eq!(refresh_after(None), KEYS_REFRESH_DEFAULT);
        assert_eq!(
            refresh_after(Some("public, max-age=7200")),
            Duration::from_secs(7200)
        );
        assert_eq!(refresh_after(Some("max-age=10")), KEYS_REFRESH_MIN);
        assert_eq!(refresh_after(Some("max-age=999999999")), KEYS_REFRESH_MAX);
        assert_eq!(refresh_after(Some("no-cache")), KEYS_REFRESH_MIN);
        assert_eq!(refresh_after(Some("max-age=nonsense")), KEYS_REFRESH_DEFAULT);
    }
}
