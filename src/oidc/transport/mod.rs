//! The one module that talks to the identity provider: discovery, JWKS, token exchange.
//!
//! One reqwest client (rustls, redirects off, `oidc.timeout` per call, answers of at most
//! `MAX_ANSWER` bytes read as a stream). Discovery and keys are cached; until
//! discovery succeeds the provider is "not ready" (sign-in answers 503, existing sessions keep
//! working). Keys live in [`KeySource`]s: an unknown `kid` triggers at most one fetch per
//! `JWKS_REFETCH`, and a failed
//! fetch keeps the last good keys.

use std::sync::Arc;
use std::time::Duration;

use crate::oidc::idtoken::KeySet as JwkSet;
use arc_swap::ArcSwapOption;
use serde::Deserialize;

use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::oidc::ProviderConfig;
use crate::oidc::idtoken::IssuerRule;
use crate::oidc::signin::{Next, SignIn, SignInError};

mod keys;
pub use keys::{
    KEYS_REFRESH_DEFAULT, KEYS_REFRESH_MAX, KEYS_REFRESH_MIN, KEYS_REFRESH_RETRY, KeySource, Refreshed,
    refresh_after,
};

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
    /// The provider's keys (`jwks_uri`).
    pub keys: KeySource,
}

/// A client (app registration) at a provider: its own `client_id`, or a route's
/// `idp_client_id` with its secret.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client id.
    pub id: String,
    /// Its secret (never printed).
    pub secret: crate::secret::Secret,
}

/// The provider as the server sees it: configuration, HTTP client, cached discovery and keys.
pub struct Provider {
    /// Configuration.
    pub config: ProviderConfig,
    http: reqwest::Client,
    ready: ArcSwapOption<Ready>,
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
            issuer,
            keys: KeySource::new(
                &d.jwks_uri,
                "identity provider",
                self.http.clone(),
                self.metrics.clone(),
            )
            .primed(jwks),
            discovery: d,
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

    /// The periodic key refresh (see [`KeySource::refresh`]); nothing before discovery.
    pub async fn refresh_keys(&self) -> Result<Refreshed, TransportError> {
        let Some(ready) = self.ready() else {
            return Ok(Refreshed {
                next: KEYS_REFRESH_RETRY,
                withdrawn: false,
            });
        };
        ready
            .keys
            .refresh()
            .await
            .inspect_err(|_| self.metrics.provider_error("jwks"))
    }

    /// Fetch the keys again after an unknown `kid` (see [`KeySource::refetch`]).
    pub async fn refetch_jwks(&self) -> bool {
        match self.ready() {
            Some(ready) => ready.keys.refetch().await,
            None => false,
        }
    }

    /// Its own client (`client_id` and secret of its configuration).
    pub fn own_client(&self) -> Client {
        Client {
            id: self.config.client_id.clone(),
            secret: self.config.client_secret.clone(),
        }
    }

    /// Exchange an authorization code as `client` (client_secret_post, PKCE verifier).
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens, TransportError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.expose()),
            ("code_verifier", verifier),
        ];
        self.token_request(&form, "token").await
    }

    /// Use a refresh token as `client` (client_secret_post). An error means the session cannot
    /// go on (revoked, expired, or the account disabled) or the provider is down.
    pub async fn refresh(&self, client: &Client, refresh_token: &str) -> Result<Tokens, TransportError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.expose()),
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
        let mut next = signin.start(&ready.keys.keys().set)?;
        loop {
            next = match next {
                Next::Done(identity) => return Ok(*identity),
                Next::FetchKeys => {
                    let fresh = ready.keys.refetch().await;
                    let keys = ready.keys.keys();
                    signin.keys(Some(&keys.set).filter(|_| fresh))?
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

/// The HTTP client for the provider and key sets: no redirects followed, every call bounded by
/// `timeout` (connecting by at most 5 s).
fn http_client(timeout: Duration) -> Result<reqwest::Client, TransportError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .user_agent(concat!("forwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(network)
}

/// A request that got no answer, with every cause reqwest gives (its own message stops at
/// "error sending request": whether the connection was refused, timed out or failed TLS is in
/// the sources, and that is what an operator reading `/readyz` or the log needs).
pub(super) fn network(e: reqwest::Error) -> TransportError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    TransportError::Network(message)
}

/// The largest answer read from the provider (token, keys, discovery, Graph): a few hundred
/// KiB is far more than any real one needs; a larger one is refused without being buffered.
pub(crate) const MAX_ANSWER: usize = 512 * 1024;

/// Send a request and read a JSON answer of at most [`MAX_ANSWER`] bytes.
async fn send<T: for<'de> Deserialize<'de>>(req: reqwest::RequestBuilder) -> Result<T, TransportError> {
    let r = req.send().await.map_err(network)?;
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
pub(super) async fn read_bounded(mut r: reqwest::Response, limit: usize) -> Result<Vec<u8>, TransportError> {
    let too_large = || TransportError::Body(format!("the answer is larger than {} KiB", limit / 1024));
    if r.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(network)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
