//! forwarden: a forward-auth sidecar.
//!
//! The proxy (nginx `auth_request`, ingress-nginx `auth-url`, Traefik `forwardAuth`, Caddy
//! `forward_auth`, HAProxy) asks forwarden once per request whether the request may pass.
//! `ARCHITECTURE.md` walks the request path; this is the map of the components.
//!
//! The pure core (no axum, tokio or reqwest; time and randomness come in as parameters):
//! - [`yaml`]: YAML with line and column on every value (the raw layer of config and policy).
//! - [`diag`]: places in files ([`diag::Origin`]) and the problems found there.
//! - [`request`]: the original request rebuilt from a trusted proxy's headers.
//! - [`identity`]: who the user is.
//! - [`policy`]: routes, Pomerium Policy Language, the decision and its [`policy::Verdict`].
//! - [`session`]: the sealed session cookie (AES-256-GCM, chunked, key rotation).
//! - [`jwt`]: the signed identity (ES256 JWT) for upstreams and its JWKS.
//! - [`oidc`]: sign-in logic (`flow`, `idtoken`, `signin`, `redirect`) and the one transport
//!   module that talks to the identity provider (`oidc::transport`).
//! - [`clock`]: the clock and the randomness everything above is given.
//! - [`secret`]: secret strings that never print.
//!
//! The shell:
//! - [`config`]: the configuration file, validated into typed values for the modules above.
//! - [`metrics`]: Prometheus counters and histograms, and their text exposition.
//! - [`http`]: the axum router, one file per endpoint group, and the one mapping from
//!   decisions and errors to responses.
//! - [`server`]: listening, hot reload of policies, graceful shutdown.
//! - [`cli`]: the commands behind the command line (`check`, `explain`, `sessions`, `serve`,
//!   `healthcheck`); `main.rs` only parses the arguments.
//! - [`handoff`]: single sign-on across registrable domains: the one-time code that hands a
//!   session from the central sign-in host to a host under `cookie.other_domains`.
//! - [`store`]: sessions kept on the server (`session_store:`): the ticket in the cookie, the
//!   sealed record, and the Redis transport with each replica's cache.

// The server's future (every listener, the gRPC service and the HTTP routes in one) is deeper
// than the compiler's default layout-query limit once `cli::serve` builds it in the library.
#![recursion_limit = "256"]

pub mod cli;
pub mod clock;
pub mod config;
pub mod diag;
pub mod handoff;
pub mod http;
pub mod identity;
pub mod jwt;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod request;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod yaml;
