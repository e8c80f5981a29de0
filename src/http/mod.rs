//! The HTTP layer: the only module that knows axum.
//!
//! `router(state)` builds the whole app so tests can drive it with `oneshot` or a real socket.
//! Endpoints:
//! - `GET /oauth2/auth`: nginx `auth_request`, ingress-nginx `auth-url` (200 / 401 / 403 only);
//! - `GET /oauth2/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy (200 /
//!   302 to the login page for browser navigations / 401 for other requests / 403 with a page);
//! - `GET /oauth2/forbidden`: the 403 page for nginx's `error_page 403` (not audited twice);
//! - `/oauth2/start`, `/oauth2/callback`, `/oauth2/refresh`, `/oauth2/sign_out`,
//!   `/oauth2/userinfo`: sign-in and the session;
//! - `/healthz`, `/readyz`, `/.well-known/jwks.json`;
//! - on the separate `metrics_listen` listener only: `GET /metrics`.

mod auth;
mod edge;
mod login;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{any, get};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::PolicySet;

pub use edge::Denial;

/// A source of the current time in Unix seconds (a parameter, so tests can move it).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock: the one place that reads it.
#[allow(clippy::disallowed_methods)]
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// Everything a request handler needs.
pub struct AppState {
    /// The validated configuration.
    pub config: Config,
    /// The current policies; swapped whole on reload, read without locks.
    pub policy: ArcSwap<PolicySet>,
    /// The clock.
    pub clock: Clock,
    /// Identity header names, parsed once.
    headers: auth::IdentityHeaders,
    /// Distinguishes server instances in the per-thread session cache.
    instance: u64,
    /// The identity provider, when one is configured.
    pub provider: Option<Arc<crate::oidc::transport::Provider>>,
    /// What is counted for Prometheus.
    pub metrics: Metrics,
}

impl AppState {
    /// State from a configuration and its loaded policies.
    pub fn new(config: Config, policy: PolicySet, clock: Clock) -> Arc<Self> {
        let headers = auth::IdentityHeaders::new(
            &config.headers,
            config.identity_jwt.as_ref().map(|j| j.header.as_str()),
        );
        let metrics = Metrics::new();
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let provider = config.oidc.clone().and_then(|o| {
            match crate::oidc::transport::Provider::new(o, metrics.clone()) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot set up the identity provider client");
                    None
                }
            }
        });
        Arc::new(AppState {
            config,
            policy: ArcSwap::from_pointee(policy),
            clock,
            headers,
            instance,
            provider,
            metrics,
        })
    }
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth2/auth", any(auth::nginx))
        .route("/oauth2/forward-auth", any(auth::forward_auth))
        .route("/oauth2/forbidden", any(auth::forbidden_page))
        .route("/oauth2/start", get(login::start))
        .route("/oauth2/sign_in", get(login::start))
        .route("/oauth2/callback", get(login::callback))
        .route("/oauth2/refresh", get(login::refresh))
        .route("/oauth2/sign_out", get(login::sign_out).post(login::sign_out))
        .route("/oauth2/userinfo", get(login::userinfo))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(login::readyz))
        .route("/.well-known/jwks.json", get(login::jwks))
        .with_state(state)
}

/// Serve [`metrics_router`] on its own listener until `shutdown` completes.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The metrics listener's app: `GET /metrics` only.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(st): axum::extract::State<Arc<AppState>>| async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        st.metrics.encode(),
                    )
                },
            ),
        )
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `shutdown` completes; requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
