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

pub mod access;
pub mod flow;
pub mod idtoken;
mod jws;
pub use jws::Keys;
pub mod logout;
pub mod redirect;
pub mod signin;
pub mod transport;

#[cfg(test)]
mod testkeys;

use crate::secret::Secret;

/// The identity provider's settings, as the configuration validated them.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Its name in `providers:` (sessions, the `idp` criterion, `identity_providers`, the
    /// namespaced subject `<name>#<sub>`); empty for the one `oidc:` provider, whose subjects are
    /// not namespaced.
    pub name: String,
    /// What the chooser page shows for it.
    pub display_name: String,
    /// The issuer; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client (application) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Entra tenants allowed to sign in (their users' UPNs count as email); empty: any.
    pub allowed_tenants: Vec<String>,
    /// The provider is Entra ID (an `azure:` section, or a Microsoft login host): `oid` and
    /// `tid` name the user. For any other provider the user is `sub`.
    pub entra: bool,
    /// Microsoft Graph, for group overage.
    pub graph_url: String,
    /// Sign-out continues to the provider's `end_session_endpoint`.
    pub end_session: bool,
    /// The longest a call to the provider may take (connecting, sending, reading the answer).
    pub timeout: std::time::Duration,
}

/// Whether an issuer URL is one of Entra ID's login hosts (public and national clouds).
pub(crate) fn is_entra_issuer(issuer: &str) -> bool {
    const HOSTS: [&str; 4] = [
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
    ];
    url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| HOSTS.contains(&h.as_str()) || h == "sts.windows.net")
}

/// Whether an issuer is a multi-tenant authority (`organizations`, `common`, `consumers`),
/// which lets accounts of every tenant sign in unless `allowed_tenants` narrows it.
pub(crate) fn is_multi_tenant_issuer(issuer: &str) -> bool {
    url::Url::parse(issuer).ok().is_some_and(|u| {
        u.path_segments()
            .and_then(|mut s| s.next())
            .is_some_and(|first| matches!(first, "organizations" | "common" | "consumers"))
    })
}
