//! Signed identity for upstreams: an ES256 JWT on every allowed request, and the JWKS an
//! upstream verifies it with. Pure: the time is a parameter.
//!
//! The identity headers (`X-Auth-Request-*`) are only as trustworthy as the network path
//! between the proxy and the upstream. The JWT lets an upstream check for itself that a request
//! passed forwarden, for which host (`aud`), and until when (`exp`).
//!
//! The key is either a P-256 private key from a PEM file (PKCS#8 or SEC1), or derived from the
//! first cookie secret with HKDF, so every replica sharing the cookie secret signs with the same
//! key and nothing else has to be distributed. The key id is the RFC 7638 thumbprint.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::identity::Identity;

/// What can go wrong with the signing key.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The PEM file does not hold a P-256 private key.
    #[error("not a P-256 private key in PEM (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`)")]
    BadKey,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The signing key, its public JWK and key id.
pub struct Signer {
    key: jsonwebtoken::EncodingKey,
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    tid: &'a str,
    /// The identity provider (`providers:` name) the user signed in with; `sub` then reads
    /// `<idp>#<sub>`.
    #[serde(skip_serializing_if = "str::is_empty")]
    idp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preferred_username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    groups: &'a [String],
    roles: &'a [String],
}

impl Signer {
    /// The key derived from a cookie secret (HKDF-SHA256, its own `info`, so it is independent of
    /// the cookie keys).
    pub fn from_secret(secret: &[u8]) -> Result<Self, JwtError> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"forwarden identity jwt"), secret);
        // A 32-byte string is a valid P-256 scalar unless it is zero or above the group order
        // (probability about 2^-32); the counter picks the next candidate then.
        for counter in 0u8..=255 {
            let mut bytes = [0u8; 32];
            hk.expand(&[b"es256 key ".as_slice(), &[counter]].concat(), &mut bytes)
                .map_err(|_| JwtError::BadKey)?;
            if let Ok(k) = p256::SecretKey::from_slice(&bytes) {
                return Self::from_key(&k);
            }
        }
        Err(JwtError::BadKey)
    }

    /// The key in a PEM file's text.
    pub fn from_pem(pem: &str) -> Result<Self, JwtError> {
        let key = p256::SecretKey::from_pkcs8_pem(pem)
            .or_else(|_| p256::SecretKey::from_sec1_pem(pem))
            .map_err(|_| JwtError::BadKey)?;
        Self::from_key(&key)
    }

    fn from_key(key: &p256::SecretKey) -> Result<Self, JwtError> {
        let der = key.to_pkcs8_der().map_err(|_| JwtError::BadKey)?;
        let point = key.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(JwtError::BadKey);
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Ok(Signer {
            key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
            kid,
            x,
            y,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JSON Web Key Set with the public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": self.x,
                "y": self.y,
                "kid": self.kid,
                "use": "sig",
                "alg": "ES256",
            }]
        })
    }

    /// A JWT saying that `id` was allowed to `aud` (the requested host) at `now`, valid for
    /// `lifetime` seconds.
    pub fn sign(
        &self,
        id: &Identity,
        iss: &str,
        aud: &str,
        now: u64,
        lifetime: u64,
    ) -> Result<String, JwtError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            iss,
            aud,
            sub: &id.subject,
            iat: now,
            nbf: now.saturating_sub(30),
            exp: now.saturating_add(lifetime),
            tid: &id.tenant,
            idp: id.idp(),
            email: id.email.as_deref(),
            preferred_username: id.preferred_username.as_deref(),
            name: id.name.as_deref(),
            groups: &id.groups,
            roles: &id.roles,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| JwtError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            subject: "alice-oid".into(),
            tenant: "t1".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["admins".into()],
            ..Identity::default()
        }
    }

    fn verify(s: &Signer, token: &str, aud: &str, now: u64) -> Result<serde_json::Value, String> {
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(s.jwks()).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .ok_or("unknown key id")?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&["https://auth.example.com"]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(|e| e.to_string())?;
        let exp = data.claims["exp"].as_u64().unwrap();
        if now >= exp {
            return Err("expired".into());
        }
        Ok(data.claims)
    }

    #[test]
    fn signed_identity_verifies_with_the_published_jwks() {
        let s = Signer::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let t = s
            .sign(&alice(), "https://auth.example.com", "app.example.com", 1_000, 60)
            .unwrap();
        let c = verify(&s, &t, "app.example.com", 1_010).unwrap();
        assert_eq!(c["sub"], "alice-oid");
        assert_eq!(c["email"], "alice@example.com");
        assert_eq!(c["groups"][0], "admins");
        assert_eq!(c["tid"], "t1");
        assert!(
            verify(&s, &t, "other.example.com", 1_010).is_err(),
            "audience is the host"
        );
        assert!(verify(&s, &t, "app.example.com", 1_060).is_err(), "expired");
    }

    #[test]
    fn the_signed_identity_names_the_provider() {
        let s = Signer::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let c = |id: &Identity| {
            let t = s.sign(id, "https://auth.example.com", "app", 1_000, 60).unwrap();
            verify(&s, &t, "app", 1_001).unwrap()
        };
        let one = c(&alice());
        assert!(one.get("idp").is_none(), "the one oidc: provider: no idp claim");
        let mut partner = alice();
        partner.signed_in_by("partners", "");
        let named = c(&partner);
        assert_eq!(named["idp"], "partners");
        assert_eq!(named["sub"], "partners#alice-oid");
    }

    #[test]
    fn derived_key_is_stable_and_depends_on_the_secret() {
        let a = Signer::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let b = Signer::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        let c = Signer::from_secret(b"another-secret-another-secret-xx").unwrap();
        assert_eq!(a.kid(), b.kid());
        assert_ne!(a.kid(), c.kid());
        let t = c
            .sign(&alice(), "https://auth.example.com", "app", 1_000, 60)
            .unwrap();
        assert!(
            verify(&a, &t, "app", 1_001).is_err(),
            "a foreign key's token is refused"
        );
    }

    #[test]
    fn pem_keys_load_and_garbage_is_refused() {
        let k = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pem = k.to_pkcs8_pem(Default::default()).unwrap();
        let s = Signer::from_pem(&pem).unwrap();
        let sec1 = k.to_sec1_pem(Default::default()).unwrap();
        assert_eq!(Signer::from_pem(&sec1).unwrap().kid(), s.kid());
        assert!(Signer::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err());
        assert!(!format!("{s:?}").contains(&*pem), "Debug never shows the key");
    }
}
