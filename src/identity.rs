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
    /// A bearer token's identity (not a signed-in session).
    #[serde(skip)]
    pub token: bool,
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

/// The claim that keeps the name of the provider an identity signed in with (`providers:`);
/// absent for the one `oidc:` provider.
pub const IDP: &str = "forwarden:idp";

/// The claim that keeps the client (app registration) a session signed in through, when a
/// route's `idp_client_id` chose one; absent for the provider's own `client_id`.
pub const IDP_CLIENT: &str = "forwarden:client";

/// The step-up the sign-in that made this identity asked for, and when (`StepUp`'s parameter
/// and Unix seconds): a session that asked and did not get it is refused, not sent round again.
pub const STEP_UP_ASKED: &str = "forwarden:step_up";
/// See [`STEP_UP_ASKED`].
pub const STEP_UP_AT: &str = "forwarden:step_up_at";

impl Identity {
    /// A new sign-in (or refresh) of the same user keeps what the session's earlier sign-ins
    /// proved (`amr` methods and Entra `acrs` contexts are added up; the newest `acr` counts,
    /// else the earlier one): a step-up for one route does not undo another's.
    pub fn keep_step_up(&mut self, earlier: &Identity) {
        if earlier.subject != self.subject || earlier.tenant != self.tenant {
            return;
        }
        for name in ["amr", "acrs"] {
            let Some(old) = earlier.claims.get(name) else {
                continue;
            };
            let mut all: Vec<String> = self
                .claims
                .get(name)
                .map(|v| claim_members(v).into_iter().map(String::from).collect())
                .unwrap_or_default();
            for m in claim_members(old) {
                if !all.iter().any(|a| a == m) {
                    all.push(m.to_string());
                }
            }
            let merged = list_claim(all.iter().map(String::as_str));
            self.claims.insert(name.to_string(), merged);
        }
        for name in ["acr", STEP_UP_ASKED, STEP_UP_AT] {
            if let (None, Some(v)) = (self.claims.get(name), earlier.claims.get(name)) {
                self.claims.insert(name.to_string(), v.clone());
            }
        }
    }

    /// The name of the provider this identity signed in with (`""`: the one `oidc:` provider).
    pub fn idp(&self) -> &str {
        self.claims.get(IDP).map_or("", String::as_str)
    }

    /// The client the session signed in through when a route chose one (`idp_client_id`);
    /// `""`: the provider's own `client_id`.
    pub fn idp_client(&self) -> &str {
        self.claims.get(IDP_CLIENT).map_or("", String::as_str)
    }

    /// Mark an identity, as the provider named it, as signed in by provider `name` through
    /// `client` (`""`: its own client): the subject becomes `<name>#<subject>` for a named
    /// provider, so two providers' users never share one. Always prefixed, even when the
    /// subject already starts with `<name>#`: a `sub` of `entra#bob` is not the user `bob`.
    pub fn signed_in_by(&mut self, name: &str, client: &str) {
        if !name.is_empty() {
            self.subject = format!("{name}#{}", self.subject);
            // The provider's session ids are its own too (back- and front-channel logout).
            if let Some(sid) = self.claims.get_mut(PROVIDER_SID) {
                *sid = format!("{name}#{sid}");
            }
            self.claims.insert(IDP.into(), name.into());
        }
        if !client.is_empty() {
            self.claims.insert(IDP_CLIENT.into(), client.into());
        }
    }

    /// The identity as provider `name` itself names it (without the `<name>#` of
    /// [`Identity::signed_in_by`]): what a refreshed ID token is compared with.
    pub fn as_provider_names_it(&self, name: &str) -> Identity {
        let mut i = self.clone();
        if !name.is_empty() {
            let prefix = format!("{name}#");
            if let Some(s) = i.subject.strip_prefix(&prefix) {
                i.subject = s.to_string();
            }
            if let Some(sid) = i.claims.get_mut(PROVIDER_SID) {
                if let Some(s) = sid.strip_prefix(&prefix) {
                    *sid = s.to_string();
                }
            }
        }
        i
    }

    /// The provider's session id, as the provider `name` wrote it in its logout tokens, stored
    /// the way [`Identity::signed_in_by`] keeps it.
    pub fn stored_sid(name: &str, sid: &str) -> String {
        if name.is_empty() {
            sid.to_string()
        } else {
            format!("{name}#{sid}")
        }
    }

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
                .map(|v| claim_members(v))
                .unwrap_or_default(),
        }
    }
}

/// Marks a chosen claim's text as a list: each member follows one of these. Claim text is
/// kept without control characters ([`claim_text`]), so a string claim never holds it, and a
/// string claim a user can edit (`"x,Finance"`) is never read as a list.
const LIST_MARK: char = '\u{1f}';

/// A claim's JSON value as the text an identity keeps: a string as it is, a list of strings
/// as a list (matched by member), anything else as its JSON. Control characters are dropped.
pub fn claim_text(v: &serde_json::Value) -> String {
    let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
    match v {
        serde_json::Value::String(s) => clean(s),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .flat_map(|m| std::iter::once(LIST_MARK.to_string()).chain(std::iter::once(clean(m))))
            .collect(),
        other => clean(&other.to_string()),
    }
}

/// The text of a list claim from its members (`explain --claim name=a --claim name=b`).
pub fn list_claim<'a>(members: impl IntoIterator<Item = &'a str>) -> String {
    members
        .into_iter()
        .flat_map(|m| [LIST_MARK.to_string(), m.to_string()])
        .collect()
}

/// The values a claim's text matches: a list claim's members, or a string claim whole.
pub fn claim_members(text: &str) -> Vec<&str> {
    match text.strip_prefix(LIST_MARK) {
        Some(list) => list.split(LIST_MARK).filter(|m| !m.is_empty()).collect(),
        None if text.is_empty() => Vec::new(),
        None => vec![text],
    }
}

/// A claim's text for `/oauth2/userinfo`: a list as a JSON array, a string as a string.
pub fn claim_json(text: &str) -> serde_json::Value {
    match text.starts_with(LIST_MARK) {
        true => claim_members(text).into_iter().collect(),
        false => text.into(),
    }
}

/// The domain of an address with exactly one `@` and something on both sides; `None` for
/// anything else (`a@b@evil.com` has no domain, so it can never match a domain rule).
pub(crate) fn email_domain(email: &str) -> Option<&str> {
    // A byte search, not `split`: a domain rule asks this on every check (an address is short).
    let at = email.bytes().position(|b| b == b'@')?;
    let (local, domain) = (email.get(..at)?, email.get(at + 1..)?);
    if local.is_empty() || domain.is_empty() || domain.bytes().any(|b| b == b'@') {
        return None;
    }
    Some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_in_a_string_claim_never_matches_as_a_member() {
        // The attack: a user-editable string claim (say a job title) set to "x,Finance" must not
        // match a rule for the claim value Finance; a list claim matches by member.
        let mut id = Identity::default();
        id.claims
            .insert("title".into(), claim_text(&serde_json::json!("x,Finance")));
        id.claims
            .insert("teams".into(), claim_text(&serde_json::json!(["x", "Finance"])));
        id.claims
            .insert("odd".into(), claim_text(&serde_json::json!("\u{1f}Finance")));
        assert_eq!(id.claim_values("title"), vec!["x,Finance"]);
        assert_eq!(id.claim_values("teams"), vec!["x", "Finance"]);
        assert_eq!(id.claim_values("odd"), vec!["Finance"]);
        assert!(!id.claims["odd"].starts_with(LIST_MARK));
        assert_eq!(
            claim_json(&id.claims["teams"]),
            serde_json::json!(["x", "Finance"])
        );
        assert_eq!(claim_json(&id.claims["title"]), serde_json::json!("x,Finance"));
        assert_eq!(claim_members(&list_claim(["a", "b"])), vec!["a", "b"]);
    }

    #[test]
    fn double_at_has_no_domain() {
        assert_eq!(email_domain("a@b@evil.com"), None);
        assert_eq!(email_domain("a@example.com"), Some("example.com"));
        assert_eq!(email_domain("@example.com"), None);
    }
}
