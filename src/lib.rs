//! forwarden: a forward-auth sidecar.
//!
//! The proxy (nginx `auth_request`, ingress-nginx `auth-url`, Traefik `forwardAuth`, Caddy
//! `forward_auth`, HAProxy) asks forwarden once per request whether the request may pass.
//!
//! Map of the components:
//! - [`yaml`]: YAML with line and column on every value (the raw layer of config and policy).
//! - [`config`]: the configuration file, validated into typed values.
//! - [`policy`]: routes, Pomerium Policy Language, the decision. Pure.
//! - [`request`]: the original request rebuilt from a trusted proxy's headers. Pure.
//! - [`session`]: the sealed session cookie (AES-256-GCM, chunked, key rotation). Pure.
//! - [`identity`]: who the user is.
//! - [`jwt`]: the signed identity (ES256 JWT) for upstreams and its JWKS. Pure.
//! - [`metrics`]: Prometheus counters and histograms, and their text exposition.
//! - [`http`]: the axum router and the one mapping from decisions and errors to responses.
//! - [`server`]: listening, hot reload of policies, graceful shutdown.

pub mod config;
pub mod diag;
pub mod http;
pub mod identity;
pub mod jwt;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod request;
pub mod server;
pub mod session;
pub mod yaml;
