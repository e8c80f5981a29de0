//! ID-token verification, and the identity a verified token stands for.
//!
//! Pure: the caller passes the provider's keys (JWKS) and the time. Only asymmetric algorithms
//! are accepted (so `alg: none` and HS256 "signed" with the public key fail), the key is chosen by
//! `kid` (an unknown `kid` is reported so the caller can refetch the JWKS once), and `iss`,
//! `aud`, `exp`, `nbf` and `nonce` are checked with a leeway for clock skew. Entra's
//! multi-tenant authorities publish the issuer `https://login.microsoftonline.com/{tenantid}/v2.0`:
//! the token's `tid` is substituted, must be a GUID on `allowed_tenants`, and the result must
//! equal `iss` exactly.

use std::collections::BTreeMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::identity::Identity;

/// Algorithms accepted for ID tokens: asymmetric only.
const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How the issuer is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRule {
    /// `iss` must equal this.
    Exact(String),
    /// Entra multi-tenant: this template with `{tenantid}` replaced by the token's `tid`.
    EntraTemplate(String),
}

impl IssuerRule {
    /// The rule for the issuer a discovery document publishes.
    pub fn from_discovery(issuer: &str) -> Self {
        if issuer.contains("{tenantid}") {
            IssuerRule::EntraTemplate(issuer.to_string())
        } else {
            IssuerRule::Exact(issuer.to_string())
        }
    }
}

/// What a token must satisfy.
pub struct Expect<'a> {
    /// The issuer rule.
    pub issuer: &'a IssuerRule,
    /// Our client id (the audience).
    pub client_id: &'a str,
    /// The nonce of this login (`None` for a refresh: refreshed ID tokens need not carry one).
    pub nonce: Option<&'a str>,
    /// Now, Unix seconds.
    pub now: u64,
    /// Allowed clock skew, seconds (Entra back-dates `iat`/`nbf` by about five minutes, which
    /// needs none; this is for a provider's clock running ahead or behind ours).
    pub leeway: u64,
    /// Entra tenants allowed to sign in (empty: any tenant, for single-tenant issuers).
    pub allowed_tenants: &'a [String],
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or claims of the wrong type.
    #[error("the ID token is malformed")]
    Malformed,
    /// `alg` is not an accepted asymmetric algorithm.
    #[error("the ID token's algorithm is not accepted")]
    Algorithm,
    /// No key with this `kid` (refetch the JWKS once, then give up).
    #[error("the ID token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the ID token's signature is invalid")]
    Signature,
    /// `iss` is not the provider's.
    #[error("the ID token's issuer is wrong")]
    Issuer,
    /// `aud` does not name us.
    #[error("the ID token is for another application")]
    Audience,
    /// Past `exp`.
    #[error("the ID token has expired")]
    Expired,
    /// Before `nbf` or issued in the future.
    #[error("the ID token is not valid yet")]
    NotYetValid,
    /// Missing or different `nonce`.
    #[error("the ID token's nonce does not match this sign-in")]
    Nonce,
    /// An Entra tenant that is not allowed.
    #[error("the account's tenant is not allowed")]
    Tenant,
}

/// The claims forwarden reads from an ID token.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Expiry.
    pub exp: u64,
    /// Not before.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Issued at.
    #[serde(default)]
    pub iat: Option<u64>,
    /// The login's nonce.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Entra tenant id.
    #[serde(default)]
    pub tid: Option<String>,
    /// Entra object id.
    #[serde(default)]
    pub oid: Option<String>,
    /// Email, trusted only when verified.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the provider verified `email`.
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// Entra: the email's domain is verified by the tenant.
    #[serde(default)]
    pub xms_edov: Option<bool>,
    /// Username (Entra: the UPN).
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Group ids.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// App roles.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Entra: the user has too many groups for the token (implicit flow marker).
    #[serde(default)]
    pub hasgroups: Option<bool>,
    /// Entra overage: where the groups are instead.
    #[serde(default, rename = "_claim_names")]
    pub claim_names: Option<serde_json::Value>,
    /// Everything else, for chosen extra claims.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Claims {
    /// Whether the groups did not fit in the token (Entra overage) and must be fetched.
    pub fn groups_overage(&self) -> bool {
        self.hasgroups == Some(true)
            || self
                .claim_names
                .as_ref()
                .is_some_and(|c| c.get("groups").is_some())
    }

    /// The identity, with the rule that keeps email rules honest (the nOAuth attack): `email`
    /// counts only when verified (`email_verified`, or Entra's `xms_edov`); otherwise an Entra
    /// user of one of `home_tenants` is known by the `preferred_username` (UPN) that tenant
    /// issued. A user of any other tenant whose unverified `email` names someone else's address
    /// gets no email at all, so that person's email rule never matches.
    pub fn identity(&self, home_tenants: &[String], extra_claims: &[String]) -> Identity {
        let verified = self.email_verified == Some(true) || self.xms_edov == Some(true);
        let tenant = self.tid.clone().unwrap_or_default();
        let upn_counts = !tenant.is_empty() && home_tenants.iter().any(|t| t.eq_ignore_ascii_case(&tenant));
        let email = match (&self.email, verified) {
            (Some(e), true) => Some(e.clone()),
            _ if upn_counts => self.preferred_username.clone().filter(|u| u.contains('@')),
            _ => None,
        };
        let claims = extra_claims
            .iter()
            .filter_map(|c| {
                let v = self.extra.get(c)?;
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(a) => {
                        a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(",")
                    }
                    other => other.to_string(),
                };
                Some((c.clone(), text))
            })
            .collect();
        Identity {
            subject: self.oid.clone().unwrap_or_else(|| self.sub.clone()),
            tenant,
            email,
            preferred_username: self.preferred_username.clone(),
            name: self.name.clone(),
            groups: self.groups.clone().unwrap_or_default(),
            roles: self.roles.clone().unwrap_or_default(),
            claims,
        }
    }
}

/// A lower-case hyphenated GUID.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// Verify an ID token against the provider's keys.
pub fn verify(token: &str, jwks: &JwkSet, e: &Expect<'_>) -> Result<Claims, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !ALLOWED.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid).ok_or(TokenError::UnknownKey)?,
        None if jwks.keys.len() == 1 => &jwks.keys[0],
        None => return Err(TokenError::UnknownKey),
    };
    if let Some(alg) = jwk.common.key_algorithm {
        if alg.to_string() != format!("{:?}", header.alg) {
            return Err(TokenError::Algorithm);
        }
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)?;
    let mut v = Validation::new(header.alg);
    // Time is checked below against the caller's clock, not the library's.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims.clear();
    v.set_audience(&[e.client_id]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|err| {
        use jsonwebtoken::errors::ErrorKind as K;
        match err.kind() {
            K::InvalidSignature => TokenError::Signature,
            K::InvalidAudience | K::MissingRequiredClaim(_) => TokenError::Audience,
            K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::Algorithm,
            _ => TokenError::Malformed,
        }
    })?;
    let c = data.claims;
    if e.now >= c.exp.saturating_add(e.leeway) {
        return Err(TokenError::Expired);
    }
    if c.nbf.is_some_and(|nbf| nbf > e.now + e.leeway) || c.iat.is_some_and(|iat| iat > e.now + e.leeway) {
        return Err(TokenError::NotYetValid);
    }
    match e.issuer {
        IssuerRule::Exact(iss) => {
            if c.iss != *iss {
                return Err(TokenError::Issuer);
            }
        }
        IssuerRule::EntraTemplate(t) => {
            let tid = c
                .tid
                .as_deref()
                .filter(|t| is_guid(t))
                .ok_or(TokenError::Tenant)?;
            if c.iss != t.replace("{tenantid}", tid) {
                return Err(TokenError::Issuer);
            }
        }
    }
    if !e.allowed_tenants.is_empty() {
        let tid = c.tid.as_deref().ok_or(TokenError::Tenant)?;
        if !e.allowed_tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
            return Err(TokenError::Tenant);
        }
    }
    if let Some(n) = e.nonce {
        if c.nonce.as_deref() != Some(n) {
            return Err(TokenError::Nonce);
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests;
