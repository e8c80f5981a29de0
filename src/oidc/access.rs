//! Bearer tokens from API clients (RFC 6750): an OAuth 2.0 access token that is a JWT, verified
//! and turned into the identity the policies judge.
//!
//! Pure: the caller passes the issuers' keys and the time. The signature is checked by
//! `oidc/jws.rs` (`jsonwebtoken`, the issuer's signing key by `kid`, asymmetric algorithms
//! that fit the key). forwarden checks the rest:
//! - `iss` is a trusted issuer: the `oidc:` provider (for Entra also its v1 issuer
//!   `https://sts.windows.net/{tid}/`), or one listed under `bearer.issuers`;
//! - `aud` names one of `bearer.audiences`;
//! - `exp`, `nbf` and `iat` against the given time with the same leeway as ID tokens;
//! - Entra's tenant allow-list, as for sign-in;
//! - it is an access token: it names the calling application (`azp`, `appid` or `client_id`)
//!   and carries no `nonce`, so an ID token presented as a bearer token is refused even when its
//!   audience (the client id) is an accepted one; a `typ` header other than `JWT` or `at+jwt` is
//!   refused too;
//! - a `crit` header is refused, and the token is at most [`MAX_TOKEN_BYTES`].
//!
//! An application's own token (client credentials: Entra `idtyp: app`, or no `scp`) is an
//! identity with no user: no email, no username, and no group, so email, domain and
//! `authenticated_user` rules never match it; `client_id`, `scope` and `claim/roles` rules do.

use serde::Deserialize;

use super::idtoken::{Claims, IssuerRule, is_guid};
use super::jws::Keys;
use super::jws::{self, JwsError};
use crate::identity::{EMAIL_SOURCE, Identity};

/// The longest bearer token accepted, in bytes. Entra's largest tokens (200 groups) are about
/// 10 KB; anything longer is refused before any work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a bearer token was refused. Each maps to RFC 6750's `error` in [`BearerError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("the token is too large")]
    TooLarge,
    /// Not a JWT, or claims of the wrong type.
    #[error("the token is malformed")]
    Malformed,
    /// `alg` is not an accepted asymmetric algorithm, or does not fit the key.
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    /// A header forwarden must not ignore (`crit`), or a `typ` that is not an access token's.
    #[error("the token's header is not accepted")]
    Header,
    /// No trusted issuer has this `iss`.
    #[error("the token's issuer is not trusted")]
    Issuer,
    /// No key of the issuer has this `kid` (the caller may fetch the keys again once).
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `aud` names none of the accepted audiences.
    #[error("the token is for another audience")]
    Audience,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`, or issued in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// An Entra tenant that is not allowed.
    #[error("the token's tenant is not allowed")]
    Tenant,
    /// An ID token, or another token that names no calling application.
    #[error("the token is not an access token")]
    NotAccessToken,
    /// `sub` is missing or empty.
    #[error("the token names no subject")]
    Subject,
    /// A token in the URL's query (`access_token=`), which RFC 6750 5.3 says not to send there.
    #[error("tokens in the URL are refused: send Authorization: Bearer")]
    InQuery,
    /// An `Authorization` header forwarden cannot read as one bearer token nor as another
    /// scheme's single credential (several headers, a list, a tab, `Bearer,x`, not ASCII): the
    /// upstream could read a token forwarden did not verify.
    #[error("the Authorization header is not one bearer token (Authorization: Bearer <token>)")]
    Unreadable,
}

impl BearerError {
    /// RFC 6750's `error` code for `WWW-Authenticate`.
    pub fn code(&self) -> &'static str {
        match self {
            BearerError::TooLarge | BearerError::InQuery | BearerError::Unreadable => "invalid_request",
            _ => "invalid_token",
        }
    }
}

/// One trusted issuer.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// Its issuer rule (an Entra multi-tenant provider is a template).
    pub rule: IssuerRule,
    /// The issuer is Entra ID: `oid`/`tid` name the user, and its v1 issuer is accepted too.
    pub entra: bool,
    /// `None` for the sign-in provider; for an extra issuer, what its identities share with the
    /// sign-in provider's.
    pub foreign: Option<Foreign>,
    /// The provider name its tokens count as (`identity_providers`, the `idp` criterion): a
    /// named one's subjects read `<name>#<sub>`. `""`: the one `oidc:` provider (subjects as
    /// they are). An extra issuer always has one: its tie (`provider:`), else its issuer URL.
    pub name: String,
    /// For a sign-in provider: its own client id and allowed tenants, which replace
    /// [`Expect`]'s for its tokens.
    pub sign_in: Option<(String, Vec<String>)>,
}

/// An issuer besides the sign-in provider. Its users and applications are its own: a subject
/// is (issuer, subject), so its `sub` reads `<issuer>#<sub>` in policies and identity headers
/// and can never be the provider's user of the same `sub`.
#[derive(Debug, Clone, Default)]
pub struct Foreign {
    /// Its calling applications' ids are the provider's name space (else `<issuer>#<azp>`).
    pub trust_client_id: bool,
    /// Its verified emails count for email and domain rules (else its users have none).
    pub trust_email: bool,
}

impl TrustedIssuer {
    /// Whether `iss` (with the token's `tid`) is this issuer.
    fn accepts(&self, iss: &str, tid: Option<&str>) -> bool {
        let v1 = |tenant: &str| format!("https://sts.windows.net/{tenant}/");
        match &self.rule {
            IssuerRule::Exact(s) => {
                iss == s
                    || (self.entra
                        && entra_tenant(s).is_some_and(|t| iss == v1(t) && tid.is_some_and(|x| x == t)))
            }
            IssuerRule::EntraTemplate(t) => tid
                .filter(|tid| is_guid(tid))
                .is_some_and(|tid| iss == t.replace("{tenantid}", tid) || (self.entra && iss == v1(tid))),
        }
    }
}

/// The tenant id of an Entra v2 issuer `https://login.microsoftonline.com/{tid}/v2.0`.
fn entra_tenant(issuer: &str) -> Option<&str> {
    let rest = issuer.split_once("://")?.1;
    let tenant = rest.split('/').nth(1)?;
    is_guid(tenant).then_some(tenant)
}

/// What a token must satisfy.
pub struct Expect<'a> {
    /// The accepted audiences.
    pub audiences: &'a [String],
    /// Now, Unix seconds.
    pub now: u64,
    /// Allowed clock skew, seconds.
    pub leeway: u64,
    /// Entra tenants allowed (empty: any tenant the issuer rule admits).
    pub allowed_tenants: &'a [String],
    /// Claims copied into the identity for headers and `claim/…` rules.
    pub extra_claims: &'a [String],
    /// forwarden's own sign-in client id (`oidc.client_id`), when it signs users in: a token
    /// issued to it for itself alone is the login's ID token, not an access token.
    pub sign_in_client: Option<&'a str>,
}

/// A verified token: who it stands for, and until when.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The identity the policies judge.
    pub identity: Identity,
    /// `exp`, Unix seconds.
    pub exp: u64,
}

/// The issuer's part of the payload, read to choose the keys (trusted only after the signature).
#[derive(Deserialize)]
struct Routing {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            Audience::One(a) => f(a),
            Audience::Many(v) => v.iter().any(|a| f(a)),
        }
    }

    fn all(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            Audience::One(a) => f(a),
            Audience::Many(v) => v.iter().all(|a| f(a)),
        }
    }
}

impl From<JwsError> for BearerError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Malformed => BearerError::Malformed,
            JwsError::Critical => BearerError::Header,
            JwsError::Algorithm => BearerError::Algorithm,
            JwsError::UnknownKey => BearerError::UnknownKey,
            JwsError::Signature => BearerError::Signature,
        }
    }
}

/// Verify a bearer token. `issuers` pairs each trusted issuer with its current keys.
pub fn verify(
    token: &str,
    issuers: &[(&TrustedIssuer, &Keys)],
    e: &Expect<'_>,
) -> Result<Verified, BearerError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(BearerError::TooLarge);
    }
    let header = jws::header(token)?;
    if let Some(typ) = &header.typ {
        let t = typ.to_ascii_lowercase();
        if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
            return Err(BearerError::Header);
        }
    }
    let routing: Routing = jws::part(token, 1)?;
    let iss = routing.iss.as_deref().ok_or(BearerError::Issuer)?;
    let (issuer, keys) = issuers
        .iter()
        .find(|(i, _)| i.accepts(iss, routing.tid.as_deref()))
        .ok_or(BearerError::Issuer)?;
    // Refused before any signature math (the token's own word can only refuse it): another
    // audience, or past its `exp`.
    let aud_ok = routing
        .aud
        .as_ref()
        .is_some_and(|a| a.any(|a| e.audiences.iter().any(|x| x == a)));
    if !aud_ok {
        return Err(BearerError::Audience);
    }
    if routing.exp.is_some_and(|exp| exp + e.leeway <= e.now) {
        return Err(BearerError::Expired);
    }
    let payload = jws::verify(token, &header, keys)?;
    // The signature holds: the payload is the issuer's word from here on.
    let mut claims: Claims = serde_json::from_value(payload).map_err(|_| BearerError::Malformed)?;
    if claims.exp + e.leeway <= e.now {
        return Err(BearerError::Expired);
    }
    if claims.nbf.is_some_and(|t| t > e.now + e.leeway) || claims.iat.is_some_and(|t| t > e.now + e.leeway) {
        return Err(BearerError::NotYetValid);
    }
    if claims.sub.trim().is_empty() {
        return Err(BearerError::Subject);
    }
    let (sign_in_client, allowed_tenants) = match &issuer.sign_in {
        Some((c, t)) => (Some(c.as_str()), t.as_slice()),
        None => (e.sign_in_client, e.allowed_tenants),
    };
    if issuer.entra && !allowed_tenants.is_empty() {
        let tid = claims.tid.as_deref().unwrap_or_default();
        if !allowed_tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
            return Err(BearerError::Tenant);
        }
    }
    // An access token names the application that asked for it; an ID token does not, and
    // carries the login's nonce.
    let text = |c: &Claims, k: &str| c.extra.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let client = ["azp", "appid", "client_id"]
        .iter()
        .find_map(|k| text(&claims, k))
        .filter(|c| !c.is_empty())
        .ok_or(BearerError::NotAccessToken)?;
    if is_id_token(&claims, &client, routing.aud.as_ref(), sign_in_client) {
        return Err(BearerError::NotAccessToken);
    }
    let scopes: Vec<String> = ["scp", "scope"]
        .iter()
        .find_map(|k| text(&claims, k))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    // Client credentials: Entra says `idtyp: app`; elsewhere the token has no delegated scope,
    // or its subject is the client itself (RFC 9068 2.2).
    let app = text(&claims, "idtyp").is_some_and(|t| t == "app") || scopes.is_empty() || claims.sub == client;
    // Entra v1 tokens name the user in `upn` (or `unique_name`), not `preferred_username`.
    if claims.preferred_username.is_none() {
        claims.preferred_username = text(&claims, "upn").or_else(|| text(&claims, "unique_name"));
    }
    let home: Vec<String> = match (&issuer.rule, claims.tid.as_deref()) {
        // A single-tenant Entra issuer's own tenant vouches for its UPNs.
        (IssuerRule::Exact(s), _) if issuer.entra => {
            entra_tenant(s).map(str::to_string).into_iter().collect()
        }
        _ => allowed_tenants.to_vec(),
    };
    let mut identity = claims.identity(issuer.entra, &home, e.extra_claims);
    if app {
        identity.email = None;
        identity.preferred_username = None;
        identity.groups.clear();
        identity.claims.insert(EMAIL_SOURCE.into(), "none".into());
    }
    identity.client_id = Some(client);
    identity.scopes = scopes;
    identity.application = app;
    identity.token = true;
    if !issuer.name.is_empty() {
        // (provider, subject): another provider's users never look like this one's.
        identity.subject = format!("{}#{}", issuer.name, identity.subject);
        identity
            .claims
            .insert(crate::identity::IDP.into(), issuer.name.clone());
    }
    if let Some(f) = &issuer.foreign {
        // Another issuer's users never look like the provider's: its name (its tie, or its
        // issuer URL) prefixes them above.
        identity.tenant.clear();
        if !f.trust_client_id {
            identity.client_id = identity.client_id.map(|c| format!("{iss}#{c}"));
        }
        if !f.trust_email {
            identity.email = None;
            identity.claims.insert(EMAIL_SOURCE.into(), "none".into());
        }
    }
    Ok(Verified {
        identity,
        exp: claims.exp,
    })
}

/// Whether a verified token has the shape of an ID token (OpenID Connect Core 2, 3.1.3.6)
/// rather than an access token, whatever its `typ` header says (Keycloak and Google issue ID
/// tokens with `typ: JWT`, and a refreshed one has no `nonce`):
/// - it carries what only ID tokens carry: `nonce`, `at_hash`, `c_hash`, or Keycloak's `typ`
///   claim `ID`;
/// - or it was issued to forwarden's own sign-in client (`azp`/`appid`) for that client alone
///   (`aud`): a token an application obtained for an API names the API as its audience.
///
/// `auth_time` alone decides nothing: Keycloak puts it in access tokens too.
fn is_id_token(claims: &Claims, client: &str, aud: Option<&Audience>, sign_in: Option<&str>) -> bool {
    let has = |k: &str| claims.extra.get(k).is_some_and(|v| !v.is_null());
    let keycloak_id = claims
        .extra
        .get("typ")
        .and_then(|v| v.as_str())
        .is_some_and(|t| t.eq_ignore_ascii_case("id"));
    let to_itself = sign_in.is_some_and(|own| client == own && aud.is_some_and(|a| a.all(|a| a == own)));
    claims.nonce.is_some() || has("at_hash") || has("c_hash") || keycloak_id || to_itself
}

#[cfg(test)]
mod tests;
