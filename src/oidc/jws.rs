//! The signature check shared by bearer tokens ([`super::access`]) and logout tokens
//! ([`super::logout`]): the provider's published signing key chosen by `kid` (never one published
//! with `use: enc`), asymmetric algorithms only, and the algorithm must fit the key's type (so
//! `alg: none` and HS256 "signed" with the public key fail). Keys are parsed once per fetch
//! (`jsonwebtoken`'s JWK types), and the signature is checked by `ring`. The callers check the
//! claims, against the time they are given.

use base64::Engine;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
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
    /// `alg`, checked against the accepted algorithms and the key.
    #[serde(default)]
    alg: Option<String>,
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

/// The kind of a signing key, and so the algorithms that fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Family {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm as A;
        match self {
            Family::Rsa => matches!(
                alg,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ),
            Family::P256 => alg == A::ES256,
            Family::P384 => alg == A::ES384,
            Family::Ed25519 => alg == A::EdDSA,
        }
    }
}

/// One signing key, parsed once into what verifies with it.
struct SigningKey {
    kid: Option<String>,
    family: Family,
    /// The public key as `ring` takes it: RSA's modulus and exponent, or the EC point / Ed25519
    /// key bytes.
    key: PublicKey,
}

/// A public key's material, ready for `ring`.
enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Bytes(Vec<u8>),
}

/// A key set as the issuer publishes it (`set`, for `openidconnect`'s ID-token verifier) and its
/// signing keys parsed once into verifying keys (for bearer and logout tokens): a cold
/// verification converts nothing, and what cannot verify (an unknown `kid`, an algorithm that
/// does not fit the key) is refused before any signature math.
pub struct Keys {
    /// The key set as published.
    pub set: KeySet,
    signing: Vec<SigningKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("signing", &self.signing.len())
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Parse the signing keys of `set` (never one published with `use: enc`; a key of a kind
    /// forwarden does not verify with is left out).
    pub fn new(set: KeySet) -> Self {
        use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
        let json = serde_json::to_value(&set).unwrap_or_default();
        let signing = json
            .get("keys")
            .and_then(|k| k.as_array())
            .into_iter()
            .flatten()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
            .filter_map(|jwk| {
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Family::Rsa,
                    AlgorithmParameters::EllipticCurve(p) => match p.curve {
                        EllipticCurve::P256 => Family::P256,
                        EllipticCurve::P384 => Family::P384,
                        _ => return None,
                    },
                    AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                        Family::Ed25519
                    }
                    _ => return None,
                };
                let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).ok();
                let key = match &jwk.algorithm {
                    AlgorithmParameters::RSA(p) => PublicKey::Rsa {
                        n: b64(&p.n)?,
                        e: b64(&p.e)?,
                    },
                    AlgorithmParameters::EllipticCurve(p) => {
                        let (x, y) = (b64(&p.x)?, b64(&p.y)?);
                        let size = if family == Family::P256 { 32 } else { 48 };
                        if x.len() != size || y.len() != size {
                            return None;
                        }
                        PublicKey::Bytes([&[4u8][..], &x, &y].concat())
                    }
                    AlgorithmParameters::OctetKeyPair(p) => PublicKey::Bytes(b64(&p.x)?),
                    _ => return None,
                };
                Some(SigningKey {
                    kid: jwk.common.key_id.clone(),
                    family,
                    key,
                })
            })
            .collect();
        Keys { set, signing }
    }

    /// The key a token's `kid` names; without a `kid`, only a set of one key says which.
    fn find(&self, kid: Option<&str>) -> Option<&SigningKey> {
        match kid {
            Some(kid) => self.signing.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.signing.len() == 1 => self.signing.first(),
            None => None,
        }
    }
}

/// The payload of a token whose signature verifies with one of `keys`.
pub(crate) fn verify(token: &str, header: &Header, keys: &Keys) -> Result<serde_json::Value, JwsError> {
    use ring::signature as sig;
    let alg = header
        .alg
        .as_deref()
        .and_then(|a| a.parse::<Algorithm>().ok())
        .ok_or(JwsError::Algorithm)?;
    if !ASYMMETRIC.contains(&alg) {
        return Err(JwsError::Algorithm);
    }
    let signing = keys.find(header.kid.as_deref()).ok_or(JwsError::UnknownKey)?;
    // Refused before the signature math: an algorithm that does not fit the key.
    if !signing.family.fits(alg) {
        return Err(JwsError::Algorithm);
    }
    let (message, signature) = token.rsplit_once('.').ok_or(JwsError::Malformed)?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwsError::Malformed)?;
    let rsa = |params: &'static sig::RsaParameters| match &signing.key {
        PublicKey::Rsa { n, e } => sig::RsaPublicKeyComponents { n, e }
            .verify(params, message.as_bytes(), &signature)
            .map_err(|_| JwsError::Signature),
        PublicKey::Bytes(_) => Err(JwsError::Algorithm),
    };
    let other = |algorithm: &'static dyn sig::VerificationAlgorithm| match &signing.key {
        PublicKey::Bytes(k) => sig::UnparsedPublicKey::new(algorithm, k)
            .verify(message.as_bytes(), &signature)
            .map_err(|_| JwsError::Signature),
        PublicKey::Rsa { .. } => Err(JwsError::Algorithm),
    };
    match alg {
        Algorithm::RS256 => rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&sig::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => other(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => other(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => other(&sig::ED25519),
        _ => Err(JwsError::Algorithm),
    }?;
    // The signature holds: the payload, for the caller's claim checks.
    part(token, 1)
}
