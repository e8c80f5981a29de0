//! The signature check shared by bearer tokens ([`super::access`]) and logout tokens
//! ([`super::logout`]): `jsonwebtoken` verifies with the provider's published signing key chosen
//! by `kid` (never one published with `use: enc`), asymmetric algorithms only, and the algorithm
//! must fit the key's type (so `alg: none` and HS256 "signed" with the public key fail). The
//! callers check the claims, against the time they are given.

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::idtoken::KeySet;

/// Algorithms accepted: asymmetric only.
const ASYMMETRIC: [Algorithm; 9] = [
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

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsError {
    /// Not a JWS in compact form, or a header or payload that is not JSON.
    Malformed,
    /// A `crit` header, which forwarden does not support.
    Critical,
    /// An algorithm that is not accepted, or does not fit the key.
    Algorithm,
    /// No signing key with this `kid`.
    UnknownKey,
    /// The signature does not verify.
    Signature,
}

/// The header fields read before the signature is checked.
#[derive(Deserialize)]
pub(crate) struct Header {
    #[serde(default)]
    kid: Option<String>,
    /// `typ`, for the caller's rules.
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A part of a compact JWS (0 header, 1 payload), decoded, unverified.
pub(crate) fn part<T: for<'de> Deserialize<'de>>(token: &str, i: usize) -> Result<T, JwsError> {
    let text = token.split('.').nth(i).ok_or(JwsError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwsError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwsError::Malformed)
}

/// The header of a token that has three parts and no `crit`, unverified.
pub(crate) fn header(token: &str) -> Result<Header, JwsError> {
    if token.split('.').count() != 3 {
        return Err(JwsError::Malformed);
    }
    let h: Header = part(token, 0)?;
    if h.crit.is_some() {
        return Err(JwsError::Critical);
    }
    Ok(h)
}

/// The payload of a token whose signature verifies with one of `keys`.
pub(crate) fn verify(token: &str, header: &Header, keys: &KeySet) -> Result<serde_json::Value, JwsError> {
    let alg = jsonwebtoken::decode_header(token)
        .map_err(|_| JwsError::Algorithm)?
        .alg;
    if !ASYMMETRIC.contains(&alg) {
        return Err(JwsError::Algorithm);
    }
    let json = serde_json::to_value(keys).map_err(|_| JwsError::UnknownKey)?;
    let signing: Vec<Jwk> = json
        .get("keys")
        .and_then(|k| k.as_array())
        .into_iter()
        .flatten()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .collect();
    let jwk = match header.kid.as_deref() {
        Some(kid) => signing.iter().find(|k| k.common.key_id.as_deref() == Some(kid)),
        // Without a `kid`, only a set of one key says which key it is.
        None if signing.len() == 1 => signing.first(),
        None => None,
    }
    .ok_or(JwsError::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwsError::UnknownKey)?;
    // The signature and the algorithm's fit to the key; the claims are the caller's.
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature => JwsError::Signature,
                K::InvalidAlgorithm
                | K::InvalidAlgorithmName
                | K::UnsupportedAlgorithm
                | K::InvalidEcdsaKey
                | K::InvalidEddsaKey
                | K::InvalidRsaKey(_)
                | K::InvalidKeyFormat => JwsError::Algorithm,
                _ => JwsError::Malformed,
            }
        })
}
