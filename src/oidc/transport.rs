//! The one module that talks to the identity provider: discovery, JWKS, token exchange.
//!
//! One reqwest client (rustls, redirects off, `oidc.timeout` per call, answers of at most
//! `MAX_ANSWER` bytes read as a stream). Discovery and keys are cached; until
//! discovery succeeds the provider is "not ready" (sign-in answers 503, existing sessions keep
//! working). An unknown `kid` triggers at most one JWKS refetch per `JWKS_REFETCH`; a failed
//! fetch keeps the last good keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::oidc::Keys;
use crate::oidc::idtoken::KeySet as JwkSet;
use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Deserialize;

use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::oidc::ProviderConfig;
use crate::oidc::idtoken::IssuerRule;
use crate::oidc::signin::{Next, SignIn, SignInError};

/// Least time between two JWKS refetches for an unknown `kid`.
pub(crate) const JWKS_REFETCH: Duration = Duration::from_secs(30);

/// What went wrong talking to the provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection, a timeout, TLS.
    #[error("cannot reach the identity provider: {0}")]
    Network(String),
    /// An HTTP error status (the provider's `error` code, when it sent one).
    #[error("the identity provider answered {0}: {1}")]
    Status(u16, String),
    /// A body that is not what the protocol says.
    #[error("the identity provider sent an unexpected answer: {0}")]
    Body(String),
    /// Microsoft Graph (group overage) failed: at this URL (`azure.graph_url`), for this reason.
    #[error("Microsoft Graph at {0} failed: {1}")]
    Graph(String, Box<TransportError>),
}

impl TransportError {
    /// Whether the provider refused the grant itself (`invalid_grant`: a refresh token that
    /// is revoked, expired, or whose account is disabled), as opposed to trouble reaching it.
    pub fn is_refusal(&self) -> bool {
        matches!(self, TransportError::Status(400 | 401, code) if code == "invalid_grant")
    }
}

/// The parts of the discovery document forwarden uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// The issuer (Entra multi-tenant: with `{tenantid}`).
    pub issuer: String,
    /// Where the browser signs in.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// The signing keys.
    pub jwks_uri: String,
    /// RP-initiated logout.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// The token endpoint's answer. Never printed.
#[derive(Clone, Deserialize)]
pub struct Tokens {
    /// The ID token.
    #[serde(default)]
    pub id_token: Option<String>,
    /// The access token (for Microsoft Graph).
    #[serde(default)]
    pub access_token: Option<String>,
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens([redacted])")
    }
}

/// The discovered provider.
pub struct Ready {
    /// Discovery.
    pub discovery: Discovery,
    /// How token issuers are checked.
    pub issuer: IssuerRule,
    /// The current keys.
    pub jwks: ArcSwap<Keys>,
}

/// The provider as the server sees it: configuration, HTTP client, cached discovery and keys.
pub struct Provider {
    /// Configuration.
    pub config: ProviderConfig,
    http: reqwest::Client,
    ready: ArcSwapOption<Ready>,
    last_refetch: std::sync::Mutex<Option<Instant>>,
    metrics: Metrics,
    /// Why discovery has not succeeded yet, for `/readyz` and the sign-in page.
    pub last_error: ArcSwapOption<String>,
}

impl Provider {
    /// A provider that has not been discovered yet.
    pub fn new(config: ProviderConfig, metrics: Metrics) -> Result<Self, TransportError> {
        let http = http_client(config.timeout)?;
        Ok(Provider {
            config,
            http,
            ready: ArcSwapOption::empty(),
            last_refetch: std::sync::Mutex::new(None),
            metrics,
            last_error: ArcSwapOption::from_pointee("discovery has not run yet".to_string()),
        })
    }

    /// Discovery and keys, once fetched.
    pub fn ready(&self) -> Option<Arc<Ready>> {
        self.ready.load_full()
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        operation: &'static str,
    ) -> Result<T, TransportError> {
        self.send(self.http.get(url), operation).await
    }

    /// Send a request and read a JSON answer, counting failures by operation. An error status
    /// carries the OAuth `error` code when the body has one.
    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
        operation: &'static str,
    ) -> Result<T, TransportError> {
        let r = send(req).await;
        if r.is_err() {
            self.metrics.provider_error(operation);
        }
        r
    }

    /// Fetch discovery and keys; on success the provider is ready.
    pub async fn discover(&self) -> Result<(), TransportError> {
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
        let d: Discovery = self.get_json(&url, "discovery").await?;
        // The discovery issuer must be the configured one, except for Entra's multi-tenant
        // authorities, which publish a `{tenantid}` template checked against each token.
        if !d.issuer.contains("{tenantid}") && d.issuer.trim_end_matches('/') != self.config.issuer {
            return Err(TransportError::Body(format!(
                "discovery names the issuer {} but the configuration says {}",
                d.issuer, self.config.issuer
            )));
        }
        let jwks: JwkSet = self.get_json(&d.jwks_uri, "jwks").await?;
        let issuer = IssuerRule::from_discovery(&d.issuer);
        self.ready.store(Some(Arc::new(Ready {
            discovery: d,
            issuer,
            jwks: ArcSwap::from_pointee(Keys::new(jwks)),
        })));
        self.last_error.store(None);
        Ok(())
    }

    /// Discover, retrying every few seconds until it works or `stop` resolves.
    pub async fn discover_until_ready(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.discover().await {
                Ok(()) => {
                    tracing::info!(issuer = %self.config.issuer, "identity provider discovered");
                    return;
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.config.issuer, error = %e, "identity provider discovery failed; retrying");
                    self.last_error.store(Some(Arc::new(e.to_string())));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The periodic key refresh (whatever the tokens say): a key the provider withdrew stops
    /// being trusted within the refresh interval. A failed fetch keeps the last good keys.
    pub async fn refresh_keys(&self) -> Result<Refreshed, TransportError> {
        let Some(ready) = self.ready() else {
            return Ok(Refreshed {
                next: KEYS_REFRESH_RETRY,
                withdrawn: false,
            });
        };
        let fetched = fetch_keys(&self.http, &ready.discovery.jwks_uri).await;
        self.metrics.jwks_refresh(fetched.is_ok());
        let (set, next) = fetched.inspect_err(|_| self.metrics.provider_error("jwks"))?;
        let (keys, withdrawn) = replace_keys(Some(&ready.jwks.load()), set);
        ready.jwks.store(Arc::new(keys));
        Ok(Refreshed { next, withdrawn })
    }

    /// Fetch the keys again after an unknown `kid`: at most once per `JWKS_REFETCH`; a failed
    /// fetch keeps the last good keys. Returns whether new keys were stored.
    pub async fn refetch_jwks(&self) -> bool {
        let Some(ready) = self.ready() else { return false };
        if !turn(&self.last_refetch) {
            return false;
        }
        let fetched = self.get_json::<JwkSet>(&ready.discovery.jwks_uri, "jwks").await;
        self.metrics.jwks_refresh(fetched.is_ok());
        match fetched {
            Ok(keys) => {
                ready.jwks.store(Arc::new(Keys::new(keys)));
                tracing::info!("identity provider keys refetched");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "identity provider keys refetch failed; keeping the last good keys");
                false
            }
        }
    }

    /// Exchange an authorization code (client_secret_post, PKCE verifier).
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens, TransportError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose()),
            ("code_verifier", verifier),
        ];
        self.token_request(&form, "token").await
    }

    /// Use a refresh token (client_secret_post). An error means the session cannot go on
    /// (revoked, expired, or the account disabled) or the provider is down.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, TransportError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.expose()),
        ];
        self.token_request(&form, "refresh").await
    }

    async fn token_request(
        &self,
        form: &[(&str, &str)],
        operation: &'static str,
    ) -> Result<Tokens, TransportError> {
        let ready = self
            .ready()
            .ok_or_else(|| TransportError::Network("not discovered yet".into()))?;
        self.send(
            self.http.post(&ready.discovery.token_endpoint).form(form),
            operation,
        )
        .await
    }

    /// Every group the user is a member of, from Microsoft Graph (`/me/getMemberObjects`),
    /// for tokens whose groups did not fit (overage).
    pub async fn member_objects(&self, access_token: &str) -> Result<Vec<String>, TransportError> {
        #[derive(Deserialize)]
        struct Objects {
            value: Vec<String>,
        }
        let url = format!("{}/v1.0/me/getMemberObjects", self.config.graph_url);
        let req = self
            .http
            .post(&url)
            .bearer_auth(access_token)
            .json(&serde_json::json!({ "securityEnabledOnly": false }));
        match self.send::<Objects>(req, "graph").await {
            Ok(o) => Ok(o.value),
            Err(e) => Err(TransportError::Graph(url, Box::new(e))),
        }
    }
}

impl Provider {
    /// Run a sign-in's verification against this provider: fetch the keys again and ask
    /// Microsoft Graph when it asks (see [`crate::oidc::signin`]).
    pub async fn identity(&self, ready: &Ready, mut signin: SignIn<'_>) -> Result<Identity, SignInError> {
        let mut next = signin.start(&ready.jwks.load().set)?;
        loop {
            next = match next {
                Next::Done(identity) => return Ok(*identity),
                Next::FetchKeys => {
                    let fresh = self.refetch_jwks().await;
                    let keys = self.ready().map(|r| r.jwks.load_full());
                    signin.keys(keys.as_deref().filter(|_| fresh).map(|k| &k.set))?
                }
                Next::FetchGroups { access_token } => {
                    let groups = match self.member_objects(&access_token).await {
                        Ok(g) => Some(g),
                        Err(e) => {
                            tracing::warn!(error = %e, "group overage: the user's groups could not be read (set azure.graph_url for a Graph other than Microsoft's); group rules will deny");
                            None
                        }
                    };
                    return Ok(signin.groups(groups));
                }
            };
        }
    }
}

/// The signing keys of an issuer trusted for bearer tokens besides the provider
/// (`bearer.issuers`): fetched on first use, and again after an unknown `kid` at most once per
/// `JWKS_REFETCH`; a failed fetch keeps the last good keys.
pub struct KeySource {
    url: String,
    http: reqwest::Client,
    keys: ArcSwapOption<Keys>,
    last_fetch: std::sync::Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl KeySource {
    /// A source that has fetched nothing yet.
    pub fn new(url: &str, timeout: Duration, metrics: Metrics) -> Result<Self, TransportError> {
        let http = http_client(timeout)?;
        Ok(KeySource {
            url: url.to_string(),
            http,
            keys: ArcSwapOption::empty(),
            last_fetch: std::sync::Mutex::new(None),
            metrics,
        })
    }

    /// The keys, once fetched.
    pub fn keys(&self) -> Option<Arc<Keys>> {
        self.keys.load_full()
    }

    /// The periodic refresh (see [`Provider::refresh_keys`]).
    pub async fn refresh_keys(&self) -> Result<Refreshed, TransportError> {
        let fetched = fetch_keys(&self.http, &self.url).await;
        self.metrics.jwks_refresh(fetched.is_ok());
        let (set, next) = fetched?;
        let old = self.keys.load_full();
        let (keys, withdrawn) = replace_keys(old.as_deref(), set);
        self.keys.store(Some(Arc::new(keys)));
        Ok(Refreshed { next, withdrawn })
    }

    /// Fetch the keys (rate-limited). Returns whether new keys were stored.
    pub async fn fetch(&self) -> bool {
        if !turn(&self.last_fetch) {
            return false;
        }
        let fetched = fetch_keys(&self.http, &self.url).await;
        self.metrics.jwks_refresh(fetched.is_ok());
        match fetched {
            Ok((keys, _)) => {
                self.keys.store(Some(Arc::new(Keys::new(keys))));
                true
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "bearer issuer keys fetch failed");
                false
            }
        }
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
async fn fetch_keys(http: &reqwest::Client, url: &str) -> Result<(JwkSet, Duration), TransportError> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| TransportError::Network(e.to_string()))?;
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

/// The HTTP client for the provider and key sets: no redirects followed, every call bounded by
/// `timeout` (connecting by at most 5 s).
fn http_client(timeout: Duration) -> Result<reqwest::Client, TransportError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("forwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TransportError::Network(e.to_string()))
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

/// The largest answer read from the provider (token, keys, discovery, Graph): a few hundred
/// KiB is far more than any real one needs; a larger one is refused without being buffered.
pub(crate) const MAX_ANSWER: usize = 512 * 1024;

/// Send a request and read a JSON answer of at most [`MAX_ANSWER`] bytes.
async fn send<T: for<'de> Deserialize<'de>>(req: reqwest::RequestBuilder) -> Result<T, TransportError> {
    let r = req
        .send()
        .await
        .map_err(|e| TransportError::Network(e.to_string()))?;
    let status = r.status();
    let body = read_bounded(r, MAX_ANSWER).await?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct OAuthError {
            #[serde(default)]
            error: String,
        }
        let code = serde_json::from_slice::<OAuthError>(&body)
            .map(|e| e.error)
            .unwrap_or_default();
        return Err(TransportError::Status(status.as_u16(), code));
    }
    serde_json::from_slice(&body).map_err(|e| TransportError::Body(e.to_string()))
}

/// The body, read as a stream and refused as soon as it passes `limit` bytes.
async fn read_bounded(mut r: reqwest::Response, limit: usize) -> Result<Vec<u8>, TransportError> {
    let too_large = || TransportError::Body(format!("the answer is larger than {} KiB", limit / 1024));
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|e| TransportError::Network(e.to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
