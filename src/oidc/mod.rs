//! OpenID Connect login: the flow logic without I/O.
//!
//! Built so far, each pure and unit-tested:
//! - [`flow`]: the code flow with PKCE S256, state and nonce, and the one pending-login cookie;
//! - [`idtoken`]: ID-token verification against a JWKS (Entra multi-tenant issuers, tenant
//!   allow-list, nonce, leeway) and the identity it stands for (the nOAuth rule);
//! - [`redirect`]: the allow-list for where a login or sign-out may send the browser.
//!
//! Still to come (issue 3): the transport module (discovery, JWKS with refetch, token and Graph
//! calls), the `/oauth2/start`, `/callback`, `/sign_out`, `/userinfo` endpoints, refresh, and
//! the tests against the `oidc-provider` identity provider and Chromium.

pub mod flow;
pub mod idtoken;
pub mod redirect;
pub mod transport;
