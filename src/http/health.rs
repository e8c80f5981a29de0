//! Operating endpoints: `/healthz`, `/readyz`, `/.well-known/jwks.json`, and `/metrics` (on
//! its own listener only).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::jwt::Signer;
use crate::metrics::Metrics;
use crate::store::redis::RedisStore;

/// What `/readyz` reads: the identity providers and the session store.
#[derive(Clone)]
pub struct Readiness {
    providers: super::Providers,
    store: Option<Arc<RedisStore>>,
}

impl FromRef<Arc<AppState>> for Readiness {
    fn from_ref(st: &Arc<AppState>) -> Self {
        Readiness {
            providers: st.providers.clone(),
            store: st.sessions.store().cloned(),
        }
    }
}

/// What `/.well-known/jwks.json` reads: the identity JWT's signing key, when configured.
#[derive(Clone)]
pub struct Jwks(Option<Arc<Signer>>);

impl FromRef<Arc<AppState>> for Jwks {
    fn from_ref(st: &Arc<AppState>) -> Self {
        Jwks(st.config.identity_jwt.as_ref().map(|j| j.signer.clone()))
    }
}

/// `/metrics` reads the metrics alone.
impl FromRef<Arc<AppState>> for Metrics {
    fn from_ref(st: &Arc<AppState>) -> Self {
        st.metrics.clone()
    }
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 once policies are loaded and the provider is discovered (or none is
/// configured); otherwise 503 and why.
pub async fn readyz(State(st): State<Readiness>) -> Response {
    match st.providers.iter().find(|p| p.ready().is_none()) {
        Some(p) => {
            let why = p
                .last_error
                .load_full()
                .map(|e| e.to_string())
                .unwrap_or_default();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: identity provider not discovered: {why}\n"),
            )
                .into_response()
        }
        // Without Redis, sessions cached here still pass for their cache time and sign-in says
        // the store is unavailable: degraded, not out of service (taking every replica out of
        // the load balancer would stop the cached sessions too).
        _ => match &st.store {
            Some(s) if !s.is_up() => {
                // The store's own words: "the session store is unavailable: <why>", or that it
                // refuses forwarden's credentials.
                let why = s.last_error().map_or_else(
                    || "the session store is unavailable".to_string(),
                    |e| e.to_string(),
                );
                (StatusCode::OK, format!("ready; {why}\n")).into_response()
            }
            _ => (StatusCode::OK, "ready\n").into_response(),
        },
    }
}

/// `GET /.well-known/jwks.json`: the public key upstreams verify the identity JWT with (404
/// when `identity_jwt` is not configured).
pub async fn jwks(State(Jwks(signer)): State<Jwks>) -> Response {
    match signer {
        Some(signer) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            signer.jwks().to_string(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "identity_jwt is not configured\n").into_response(),
    }
}

/// The metrics listener's app: `GET /metrics` only.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(metrics): State<Metrics>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
