//! The HTTP layer: the only module that knows axum.
//!
//! `router(state)` builds the whole app so tests can drive it with `oneshot` or a real socket.
//! One file per endpoint group:
//! - `auth`: `GET /oauth2/auth` (nginx `auth_request`, ingress-nginx `auth-url`: 200 / 401 /
//!   403 only), `GET /oauth2/forward-auth` (Traefik, Caddy, HAProxy: 200 / 302 to the login page
//!   for browser navigations / 401 / 403 with a page), `GET /oauth2/forbidden` (the 403 page for
//!   nginx's `error_page 403`, not audited twice);
//! - `login`: `/oauth2/start`, `/oauth2/callback`; `refresh`: `/oauth2/refresh`;
//! - `account`: `/oauth2/sign_out`, `/oauth2/userinfo`;
//! - `health`: `/healthz`, `/readyz`, `/.well-known/jwks.json`, and `GET /metrics` on the
//!   separate `metrics_listen` listener only.
//!
//! Shared pieces: `audit` writes each decision's audit line and counts it, `edge` turns
//! refusals and errors into responses (the one mapping),
//! `cookies` reads and writes every cookie, `session_cache` keeps opened sessions per worker
//! thread, `headers` holds the identity header names.

mod account;
mod ask;
mod audit;
mod auth;
mod bearer;
mod cookies;
mod edge;
mod ext_authz;
mod handoff;
mod headers;
mod health;
mod listen;
mod login;
mod logout;
mod memo;
mod parts;
mod refresh;
mod session_cache;
mod sessions;

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{any, get};

use crate::clock::{Clock, Entropy};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::oidc::transport::Provider;
use crate::policy::PolicySet;

pub use parts::{ClientError, HandOff, Providers, Refreshing, SignOut, SigningIn};

/// Everything a request handler needs, in parts. A handler takes only the parts it reads (axum
/// substates): `/readyz` its `health::Readiness`, the JWKS its `health::Jwks`, `/metrics` the
/// `Metrics`, `/oauth2/userinfo` the sessions (`sessions::SessionsOnly`), sign-in a
/// [`SigningIn`], the three sign-out handlers a [`SignOut`], `/oauth2/refresh` a
/// [`Refreshing`], the three hand-off handlers a [`HandOff`]; the session code (`sessions`,
/// `session_cache`) sees only `sessions::SessionKeeper`, never the rest. Only the pipeline
/// (every contract's check) takes the whole: it reads eight of its ten fields (not the
/// randomness, nor the policy files' fingerprint, which is the reload watcher's). Only what
/// the integration tests build on (`config`, `providers`, `sessions`) is public outside the
/// crate.
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The current policies; swapped whole on reload, read without locks.
    pub(crate) policy: parts::Policies,
    /// The policy files' fingerprint when the state was made (just after they were loaded):
    /// where the reload watcher starts.
    pub(crate) policy_stamp: u64,
    /// The clock.
    pub(crate) clock: Clock,
    /// Randomness for state, nonce, PKCE verifiers and seals.
    pub(crate) entropy: Entropy,
    /// The claims copied into identities for `headers.claims`.
    extra_claims: Arc<[String]>,
    /// The identity providers (`oidc:`, or `providers:` in their order; empty when none is
    /// configured) and the app registrations the routes name at them.
    pub providers: parts::Providers,
    /// What is counted for Prometheus.
    pub(crate) metrics: Metrics,
    /// Bearer tokens (`bearer:`): the accepted audiences, extra issuers and verified tokens.
    bearer: Option<bearer::Bearer>,
    /// Sessions: where they live (the cookies, or the session store of `session_store:`) and
    /// what reading, opening, writing and ending one takes.
    pub sessions: Arc<sessions::SessionKeeper>,
}

/// A part the configuration names whose client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The identity provider's or a bearer issuer's HTTP client.
    #[error("cannot set up the identity provider client: {0}")]
    Provider(crate::oidc::transport::TransportError),
    /// The session store's client (a bad URL, for instance).
    #[error("cannot set up the session store client: {0}")]
    Store(crate::store::redis::StoreError),
}

impl AppState {
    /// State from a configuration, its loaded policies, and the clock and randomness to use.
    ///
    /// A configured identity provider, bearer issuer or session store whose client cannot be
    /// built is an error: forwarden does not start without a part its configuration names
    /// (sessions would otherwise silently go to cookies, where no sign-out revokes them).
    pub fn new(
        config: Config,
        policy: PolicySet,
        clock: Clock,
        entropy: Entropy,
    ) -> Result<Arc<Self>, StateError> {
        let headers = headers::IdentityHeaders::new(
            &config.headers,
            config.identity_jwt.as_ref().map(|j| j.header.as_str()),
        );
        let extra_claims = config.headers.claims.iter().map(|(c, _)| c.clone()).collect();
        let metrics = Metrics::new();
        let providers = config
            .providers
            .iter()
            .map(|o| Provider::new(o.clone(), metrics.clone()).map(Arc::new))
            .collect::<Result<Arc<[_]>, _>>()
            .map_err(StateError::Provider)?;
        let policy_stamp = crate::policy::load::fingerprint(&config.policy_files);
        let timeout = config
            .providers
            .first()
            .map_or(std::time::Duration::from_secs(10), |o| o.timeout);
        let bearer = match &config.bearer {
            Some(b) => Some(bearer::Bearer::new(b, timeout, &metrics).map_err(StateError::Provider)?),
            None => None,
        };
        let place = match &config.session_store {
            Some(r) => sessions::Sessions::Store(Arc::new(
                crate::store::redis::RedisStore::new(r, metrics.clone()).map_err(StateError::Store)?,
            )),
            None => sessions::Sessions::Cookies,
        };
        let sessions = Arc::new(sessions::SessionKeeper::new(
            place,
            config.cookie.clone(),
            clock.clone(),
            entropy.clone(),
            headers,
        ));
        let policy = Arc::new(ArcSwap::from_pointee(policy));
        Ok(Arc::new(AppState {
            config: Arc::new(config),
            providers: parts::Providers::new(providers, policy.clone()),
            policy,
            policy_stamp,
            clock,
            entropy,
            extra_claims,
            metrics,
            bearer,
            sessions,
        }))
    }
}

impl AppState {
    /// Fetch every key set again (the provider's and each bearer issuer's), whatever the tokens
    /// say: a key an issuer withdrew stops being trusted, and tokens verified with it are
    /// dropped from the verified-token cache. Returns when to run again: the soonest of the
    /// sets' `Cache-Control` (within 5 minutes and 24 hours), or a minute after a failure.
    pub async fn refresh_keys(&self) -> std::time::Duration {
        use crate::oidc::transport::{KEYS_REFRESH_MAX, KEYS_REFRESH_RETRY};
        let mut next = KEYS_REFRESH_MAX;
        let mut withdrawn = false;
        let mut note = |r: Result<
            crate::oidc::transport::Refreshed,
            crate::oidc::transport::TransportError,
        >,
                        what: &str| {
            match r {
                Ok(r) => {
                    next = next.min(r.next);
                    withdrawn |= r.withdrawn;
                }
                Err(e) => {
                    tracing::warn!(error = %e, keys = what, "key refresh failed; keeping the last good keys");
                    next = next.min(KEYS_REFRESH_RETRY);
                }
            }
        };
        for p in self.providers.iter() {
            note(p.refresh_keys().await, "identity provider");
        }
        if let Some(b) = &self.bearer {
            for source in b.sources() {
                note(source.refresh().await, "bearer issuer");
            }
        }
        if withdrawn {
            tracing::info!("a signing key was withdrawn; tokens it signed are no longer trusted");
            if let Some(b) = &self.bearer {
                b.forget_verified();
            }
        }
        next
    }
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(auth::NGINX_PATH, any(auth::nginx))
        .route(auth::FORWARD_AUTH_PATH, any(auth::forward_auth))
        .route("/oauth2/forbidden", any(auth::forbidden_page))
        .route("/oauth2/ext-authz", any(ext_authz::http_mode))
        // An app's root page: `path_prefix` makes `/` into `/oauth2/ext-authz/`.
        .route("/oauth2/ext-authz/", any(ext_authz::http_mode))
        .route("/oauth2/ext-authz/{*original}", any(ext_authz::http_mode))
        .route("/oauth2/start", get(login::start))
        .route("/oauth2/sign_in", get(login::start))
        .route("/oauth2/callback", get(login::callback))
        .route("/oauth2/handoff", get(handoff::start))
        .route("/oauth2/handoff/issue", get(handoff::issue))
        .route("/oauth2/handoff/accept", get(handoff::accept))
        .route("/oauth2/refresh", get(refresh::refresh))
        .route("/oauth2/sign_out", get(account::sign_out).post(account::sign_out))
        .route("/oauth2/userinfo", get(account::userinfo))
        .route(
            "/oauth2/backchannel-logout",
            axum::routing::post(logout::backchannel)
                .layer(axum::extract::DefaultBodyLimit::max(logout::MAX_BODY)),
        )
        .route("/oauth2/frontchannel-logout", get(logout::frontchannel))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/.well-known/jwks.json", get(health::jwks))
        .with_state(state)
}

/// The metrics listener's app: `GET /metrics` only.
pub(crate) fn metrics_router(state: Arc<AppState>) -> Router {
    health::metrics_router(state)
}

/// Serve `metrics_router` on its own listener until `shutdown` completes, within
/// `config.limits` (nobody's is the reserved half: the scraper is not a proxy).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let door = listen::Door {
        app: listen::App::Http1(metrics_router(state.clone()), None),
        trusted: Vec::new(),
        tls: None,
        limits: state.config.limits,
        metrics: state.metrics.clone(),
    };
    listen::serve(listener, door, shutdown).await
}

/// Serve Envoy's gRPC `ext_authz` on its own listener until `shutdown` completes, within the
/// same bounds as every listener (and over TLS with `ext_authz_tls`).
pub async fn serve_ext_authz(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match &state.config.ext_authz_tls {
        Some(t) => Some(ext_authz::tls_acceptor(t)?),
        None => None,
    };
    let door = listen::Door {
        app: listen::App::Grpc(ext_authz::grpc_service(state.clone())),
        trusted: state.config.trusted_proxies.clone(),
        tls,
        limits: state.config.limits,
        metrics: state.metrics.clone(),
    };
    Ok(listen::serve(listener, door, shutdown).await?)
}

/// Why a listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Its TLS settings cannot be used.
    #[error(transparent)]
    Tls(#[from] ext_authz::TlsError),
    /// Listening failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serve `router(state)` on `listener` until `shutdown` completes, within `config.limits`:
/// requests in flight finish, and the rest is closed at the shutdown deadline. The trusted
/// proxies have half of the connections to themselves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let door = listen::Door {
        app: listen::App::Http1(router(state.clone()), Some(state.clone())),
        trusted: state.config.trusted_proxies.clone(),
        tls: None,
        limits: state.config.limits,
        metrics: state.metrics.clone(),
    };
    listen::serve(listener, door, shutdown).await
}
