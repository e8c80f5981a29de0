//! ID-token verification, and the identity a verified token stands for.
//!
//! Pure: the caller passes the provider's keys and the time. The checks of OpenID Connect Core
//! 3.1.3.7 and RFC 7515 are `openidconnect`'s verifier (signature with a key chosen by `kid` and
//! fit for signing, never one published with `use: enc`; asymmetric algorithms only, so
//! `alg: none` and HS256 "signed" with the public key fail; a `crit` header is refused; `aud`
//! must be a string or a list of strings naming us and no one else; `iss`; `exp`; `nonce`).
//! forwarden adds what that crate leaves to its callers: `azp`, when present, must be our
//! client id; `sub` must not be empty; `nbf` and `iat` must not be in the future; and Entra's
//! multi-tenant issuer `https://login.microsoftonline.com/{tenantid}/v2.0`, whose token `tid`
//! is substituted, must be a GUID on `allowed_tenants`, and must then equal `iss` exactly. Each
//! check has a test named after the attack it stops (`idtoken/tests.rs`).

use std::collections::BTreeMap;

use base64::Engine;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, ClientId, IssuerUrl, Nonce, SignatureVerificationError};
use serde::Deserialize;

use crate::identity::{EMAIL_SOURCE, Identity};

/// The provider's signing keys (a JWKS document).
pub type KeySet = openidconnect::core::CoreJsonWebKeySet;

/// Algorithms accepted for ID tokens: asymmetric only.
const ALLOWED: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
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
    /// Whether `iss` is this rule's issuer: equal, or for Entra's template the template with a
    /// tenant id (a GUID) in place of `{tenantid}`.
    pub fn admits(&self, iss: &str) -> bool {
        match self {
            IssuerRule::Exact(s) => iss == s,
            IssuerRule::EntraTemplate(t) => t.split_once("{tenantid}").is_some_and(|(head, tail)| {
                iss.strip_prefix(head)
                    .and_then(|rest| rest.strip_suffix(tail))
                    .is_some_and(is_guid)
            }),
        }
    }

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
    /// The provider is Entra ID: its `oid` and `tid` claims name the user. Another provider's
    /// `oid` or `tid` claim is just a claim and never overrides `sub`.
    pub entra: bool,
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
    /// A header forwarden must not ignore (`crit`, a nested or encrypted token).
    #[error("the ID token's header asks for something forwarden does not support")]
    Header,
    /// `azp` names another client.
    #[error("the ID token was issued to another client (azp)")]
    AuthorizedParty,
    /// `sub` is missing or empty.
    #[error("the ID token names no subject")]
    Subject,
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
    /// For a provider that is not Entra (`entra: false`), `tid` and `oid` are ordinary claims:
    /// the user is `sub`, with no tenant.
    pub fn identity(&self, entra: bool, home_tenants: &[String], extra_claims: &[String]) -> Identity {
        let verified = self.email_verified == Some(true) || self.xms_edov == Some(true);
        let tenant = if entra {
            self.tid.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let upn_counts = !tenant.is_empty() && home_tenants.iter().any(|t| t.eq_ignore_ascii_case(&tenant));
        let (email, source) = match (&self.email, verified) {
            (Some(e), true) => {
                let by = if self.xms_edov == Some(true) {
                    "xms_edov"
                } else {
                    "email_verified"
                };
                (Some(e.clone()), by)
            }
            _ if upn_counts => match self.preferred_username.clone().filter(|u| u.contains('@')) {
                Some(upn) => (Some(upn), "upn"),
                None => (None, "none"),
            },
            _ => (None, "none"),
        };
        let mut claims: BTreeMap<String, String> = extra_claims
            .iter()
            .filter_map(|c| {
                let v = self.extra.get(c)?;
                Some((c.clone(), crate::identity::claim_text(v)))
            })
            .collect();
        claims.insert(EMAIL_SOURCE.into(), source.into());
        // How the user signed in, for the step-up criteria (`amr`, `acr`, Entra's `acrs`).
        for name in STEP_UP_CLAIMS {
            if let Some(v) = self.extra.get(name).filter(|v| v.is_string() || v.is_array()) {
                claims.insert(name.to_string(), crate::identity::claim_text(v));
            }
        }
        Identity {
            subject: match (&self.oid, entra) {
                (Some(oid), true) if !oid.is_empty() => oid.clone(),
                _ => self.sub.clone(),
            },
            tenant,
            email,
            preferred_username: self.preferred_username.clone(),
            name: self.name.clone(),
            groups: self.groups.clone().unwrap_or_default(),
            roles: self.roles.clone().unwrap_or_default(),
            claims,
            ..Identity::default()
        }
    }
}

/// The claims the step-up criteria read, kept in every identity that has them.
pub const STEP_UP_CLAIMS: [&str; 3] = ["amr", "acr", "acrs"];

/// A lower-case hyphenated GUID.
pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

/// Verify an ID token against the provider's keys.
pub fn verify(token: &str, keys: &KeySet, e: &Expect<'_>) -> Result<Claims, TokenError> {
    let parsed: CoreIdToken = token.parse().map_err(|_| TokenError::Malformed)?;
    let (issuer, exact) = match e.issuer {
        IssuerRule::Exact(iss) => (iss.as_str(), true),
        // Checked below, once the token's tenant is known.
        IssuerRule::EntraTemplate(t) => (t.as_str(), false),
    };
    let issuer = IssuerUrl::new(issuer.to_string()).map_err(|_| TokenError::Issuer)?;
    let now = e.now;
    let leeway = e.leeway;
    let verifier =
        CoreIdTokenVerifier::new_public_client(ClientId::new(e.client_id.to_string()), issuer, keys.clone())
            .require_issuer_match(exact)
            .set_allowed_algs(ALLOWED)
            // `exp` with the leeway: the token counts as expired once `now - leeway` reaches it.
            .set_time_fn(move || {
                let t = i64::try_from(now.saturating_sub(leeway)).unwrap_or(i64::MAX);
                chrono::DateTime::from_timestamp(t, 0).unwrap_or_default()
            })
            // `iat` is checked below with `nbf`, against the same clock.
            .set_issue_time_verifier_fn(|_| Ok(()));
    let expected_nonce = e.nonce;
    let nonce_check = move |n: Option<&Nonce>| match (expected_nonce, n) {
        (None, _) => Ok(()),
        (Some(want), Some(got)) if got.secret() == want => Ok(()),
        _ => Err("nonce mismatch".to_string()),
    };
    let verified = parsed.claims(&verifier, nonce_check).map_err(token_error)?;
    if verified
        .authorized_party()
        .is_some_and(|azp| azp.as_str() != e.client_id)
    {
        return Err(TokenError::AuthorizedParty);
    }
    // The signature holds: read forwarden's claims from the same payload.
    let c = payload(token)?;
    if c.sub.trim().is_empty() {
        return Err(TokenError::Subject);
    }
    if c.nbf.is_some_and(|nbf| nbf > e.now + e.leeway) || c.iat.is_some_and(|iat| iat > e.now + e.leeway) {
        return Err(TokenError::NotYetValid);
    }
    if let IssuerRule::EntraTemplate(t) = e.issuer {
        let tid = c
            .tid
            .as_deref()
            .filter(|t| is_guid(t))
            .ok_or(TokenError::Tenant)?;
        if c.iss != t.replace("{tenantid}", tid) {
            return Err(TokenError::Issuer);
        }
    }
    if !e.allowed_tenants.is_empty() {
        let tid = c.tid.as_deref().ok_or(TokenError::Tenant)?;
        if !e.allowed_tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
            return Err(TokenError::Tenant);
        }
    }
    Ok(c)
}

/// The claims of a token whose signature was verified.
fn payload(token: &str) -> Result<Claims, TokenError> {
    let part = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// What the verifier's error means for forwarden.
fn token_error(e: ClaimsVerificationError) -> TokenError {
    use SignatureVerificationError as S;
    match e {
        ClaimsVerificationError::Expired(_) => TokenError::Expired,
        ClaimsVerificationError::InvalidAudience(_) => TokenError::Audience,
        ClaimsVerificationError::InvalidIssuer(_) => TokenError::Issuer,
        ClaimsVerificationError::InvalidNonce(_) => TokenError::Nonce,
        ClaimsVerificationError::InvalidSubject(_) => TokenError::Subject,
        ClaimsVerificationError::Unsupported(_) => TokenError::Header,
        ClaimsVerificationError::SignatureVerification(s) => match s {
            S::NoMatchingKey | S::AmbiguousKeyId(_) => TokenError::UnknownKey,
            S::DisallowedAlg(_) | S::UnsupportedAlg(_) => TokenError::Algorithm,
            _ => TokenError::Signature,
        },
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests;
