//! Who the user is: what a session carries and what policies are evaluated against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The identity of a signed-in user.
///
/// `email` is the address that email and domain rules match: the login layer fills it only with
/// an address the provider vouches for (a verified email, or for Entra the UPN of an allowed
/// tenant), so the policy core can trust it as it is.
/// The claim that says where the identity's email came from: `xms_edov` or `email_verified`
/// (an email the provider vouches for), `upn` (the UPN of a user of `allowed_tenants`), or
/// `none`. `/oauth2/userinfo` shows it as `email_source`.
pub const EMAIL_SOURCE: &str = "forwarden:email_source";

/// The claim that keeps the identity provider's session id (`sid` of the ID token), for
/// back-channel and front-channel logout.
pub const PROVIDER_SID: &str = "forwarden:sid";

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Stable user id (`sub`; for Entra the object id `oid`).
    pub subject: String,
    /// Tenant id (Entra `tid`), empty for other providers.
    pub tenant: String,
    /// The address email and domain rules match, if any.
    pub email: Option<String>,
    /// `preferred_username` (Entra: the UPN).
    pub preferred_username: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Group ids or names.
    pub groups: Vec<String>,
    /// App roles.
    pub roles: Vec<String>,
    /// Extra claims chosen in the configuration, as text.
    pub claims: BTreeMap<String, String>,
    /// A bearer token's calling application (`azp`, `appid` or `client_id`). Bearer identities
    /// are never sealed into a session, so this and the next two are not serialized.
    #[serde(skip)]
    pub client_id: Option<String>,
    /// A bearer token's delegated scopes (`scp` or `scope`).
    #[serde(skip)]
    pub scopes: Vec<String>,
    /// An application's own token (client credentials): no user, so no email, username or
    /// group, and `authenticated_user` does not match it.
    #[serde(skip)]
    pub application: bool,
}

impl std::fmt::Debug for Identity {
    // Hand-written so that a debug print of a request never dumps every group and claim.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.subject)
            .field("tenant", &self.tenant)
            .field("email", &self.email)
            .field("groups", &self.groups.len())
            .field("roles", &self.roles.len())
            .field("client_id", &self.client_id)
            .field("application", &self.application)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The domain part of `email`, when the address has exactly one `@`.
    pub fn email_domain(&self) -> Option<&str> {
        self.email.as_deref().and_then(email_domain)
    }

    /// The value of a claim for `claim/<name>` rules; well-known names map to fields.
    pub fn claim_values(&self, name: &str) -> Vec<&str> {
        match name {
            "sub" | "oid" => vec![self.subject.as_str()],
            "tid" => vec![self.tenant.as_str()],
            "email" => self.email.as_deref().into_iter().collect(),
            "preferred_username" => self.preferred_username.as_deref().into_iter().collect(),
            "name" => self.name.as_deref().into_iter().collect(),
            "groups" => self.groups.iter().map(String::as_str).collect(),
            "roles" => self.roles.iter().map(String::as_str).collect(),
            "scp" | "scope" => self.scopes.iter().map(String::as_str).collect(),
            "azp" | "appid" | "client_id" => self.client_id.as_deref().into_iter().collect(),
            other => self
                .claims
                .get(other)
                .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        }
    }
}

/// The domain of an address with exactly one `@` and something on both sides; `None` for
/// anything else (`a@b@evil.com` has no domain, so it can never match a domain rule).
pub(crate) fn email_domain(email: &str) -> Option<&str> {
    let mut parts = email.split('@');
    let (local, domain) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_at_has_no_domain() {
        assert_eq!(email_domain("a@b@evil.com"), None);
        assert_eq!(email_domain("a@example.com"), Some("example.com"));
        assert_eq!(email_domain("@example.com"), None);
    }
}
