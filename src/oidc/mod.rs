//! OpenID Connect sign-in.
//!
//! Pure, unit-tested, no I/O:
//! - [`flow`]: the code flow with PKCE S256, state and nonce, and the one pending-login cookie;
//! - [`idtoken`]: ID-token verification against a JWKS (Entra multi-tenant issuers, tenant
//!   allow-list, nonce, leeway) and the identity it stands for (the nOAuth rule);
//! - [`signin`]: the steps from a token response to an identity (verify, refetch the keys
//!   once on an unknown `kid`, ask Graph on group overage), as a machine that says what to
//!   fetch next and is fed the answer;
//! - [`redirect`]: the allow-list for where a login or sign-out may send the browser.
//!
//! The one module that makes outbound calls:
//! - [`transport`]: discovery, JWKS, token and Graph requests, and the driver that runs a
//!   [`signin`] machine against them.

pub mod flow;
pub mod idtoken;
pub mod redirect;
pub mod signin;
pub mod transport;

use crate::secret::Secret;

/// The identity provider's settings, as the configuration validated them.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The issuer; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client (application) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Entra tenants allowed to sign in (their users' UPNs count as email).
    pub allowed_tenants: Vec<String>,
    /// Microsoft Graph, for group overage.
    pub graph_url: String,
    /// Sign-out continues to the provider's `end_session_endpoint`.
    pub end_session: bool,
}
