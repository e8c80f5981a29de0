//! OpenID Connect Back-Channel Logout 1.0: the logout token an identity provider posts when a
//! user signs out there, verified before any session is revoked. Pure: keys and time come in.
//!
//! Checked (section 2.6): the signature with the provider's keys (asymmetric algorithms only,
//! the algorithm fitting the key), `iss` by the provider's issuer rule, `aud` naming our client
//! id, `iat` not in the future and not older than [`MAX_AGE`], `exp` if present, the
//! back-channel logout event in `events`, `sub` and/or `sid`, no `nonce`, a `jti` (the caller
//! refuses one it has seen), and a `typ` of `logout+jwt` or `JWT` if present.

use serde::Deserialize;

use super::idtoken::IssuerRule;
use super::jws::Keys;
use super::jws::{self, JwsError};

/// The event a logout token carries.
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be, seconds.
pub const MAX_AGE: u64 = 300;

/// The longest logout token read.
pub const MAX_BYTES: usize = 16 * 1024;

/// Why a logout token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    /// Not a JWT, too large, or claims of the wrong type.
    #[error("the logout token is malformed")]
    Malformed,
    /// An algorithm that is not accepted, or does not fit the key.
    #[error("the logout token's algorithm is not accepted")]
    Algorithm,
    /// No key with this `kid`.
    #[error("the logout token was signed with an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the logout token's signature is invalid")]
    Signature,
    /// Not the provider's issuer.
    #[error("the logout token's issuer is wrong")]
    Issuer,
    /// Not for our client.
    #[error("the logout token is for another client")]
    Audience,
    /// Too old, expired or from the future.
    #[error("the logout token is not current")]
    Time,
    /// Not a logout token: no logout event, a nonce, no `sub` nor `sid`, no `jti`.
    #[error("the token is not a logout token")]
    NotLogout,
}

impl From<JwsError> for LogoutError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::Malformed | JwsError::Critical => LogoutError::Malformed,
            JwsError::Algorithm => LogoutError::Algorithm,
            JwsError::UnknownKey => LogoutError::UnknownKey,
            JwsError::Signature => LogoutError::Signature,
        }
    }
}

/// What the provider signed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    /// The user (`sub`), if named.
    pub sub: Option<String>,
    /// The provider's session (`sid`), if named.
    pub sid: Option<String>,
    /// The token's id, remembered so it is never used twice.
    pub jti: String,
    /// `iss`, for the caller's log.
    pub iss: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: serde_json::Value,
    iat: u64,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    events: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

/// The issuer a logout token claims, unverified: which provider's keys to verify it with.
pub fn claimed_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    if token.len() > MAX_BYTES {
        return None;
    }
    jws::part::<Iss>(token, 1).ok()?.iss
}

/// Verify a logout token for one of `client_ids` (the provider's own and the routes' app
/// registrations at it), issued by the provider of `issuer` and `keys`.
pub fn verify(
    token: &str,
    keys: &Keys,
    issuer: &IssuerRule,
    client_ids: &[String],
    now: u64,
) -> Result<Logout, LogoutError> {
    if token.len() > MAX_BYTES {
        return Err(LogoutError::Malformed);
    }
    let header = jws::header(token)?;
    if header.typ.as_deref().is_some_and(|t| {
        !matches!(
            t.to_ascii_lowercase().as_str(),
            "jwt" | "logout+jwt" | "application/logout+jwt"
        )
    }) {
        return Err(LogoutError::NotLogout);
    }
    let payload = jws::verify(token, &header, keys)?;
    let c: Claims = serde_json::from_value(payload).map_err(|_| LogoutError::Malformed)?;
    let issuer_ok = issuer.admits(&c.iss);
    if !issuer_ok {
        return Err(LogoutError::Issuer);
    }
    let ours = |a: &str| client_ids.iter().any(|c| c == a);
    let aud_ok = match &c.aud {
        serde_json::Value::String(a) => ours(a),
        serde_json::Value::Array(a) => a.iter().any(|x| x.as_str().is_some_and(ours)),
        _ => false,
    };
    if !aud_ok {
        return Err(LogoutError::Audience);
    }
    let leeway = 120;
    if c.iat > now + leeway || c.iat + MAX_AGE + leeway < now || c.exp.is_some_and(|e| e + leeway <= now) {
        return Err(LogoutError::Time);
    }
    let event = c
        .events
        .as_ref()
        .is_some_and(|e| e.get(EVENT).is_some_and(|v| v.is_object()));
    let named =
        c.sub.as_deref().is_some_and(|s| !s.is_empty()) || c.sid.as_deref().is_some_and(|s| !s.is_empty());
    let jti = c.jti.filter(|j| !j.is_empty() && j.len() <= 256);
    match (event, named, c.nonce, jti) {
        (true, true, None, Some(jti)) => Ok(Logout {
            sub: c.sub.filter(|s| !s.is_empty()),
            sid: c.sid.filter(|s| !s.is_empty()),
            jti,
            iss: c.iss,
        }),
        _ => Err(LogoutError::NotLogout),
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, encode};
    use serde_json::json;

    use super::*;
    use crate::oidc::testkeys::{KEY_A, KEY_B, NOW, PUB_A, jwks};

    const ISS: &str = "https://idp.example/tenant/v2.0";

    fn token(claims: &serde_json::Value) -> String {
        let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
        h.kid = Some("key-a".into());
        h.typ = Some("logout+jwt".into());
        encode(&h, claims, &EncodingKey::from_rsa_pem(KEY_A).unwrap()).unwrap()
    }

    fn claims() -> serde_json::Value {
        json!({
            "iss": ISS, "aud": "client-1", "iat": NOW - 5, "jti": "j-1",
            "events": {EVENT: {}}, "sub": "u-1", "sid": "s-1",
        })
    }

    fn check(t: &str) -> Result<Logout, LogoutError> {
        verify(
            t,
            &Keys::new(jwks("a")),
            &IssuerRule::Exact(ISS.into()),
            &["client-1".to_string()],
            NOW,
        )
    }

    #[test]
    fn a_logout_token_names_the_session() {
        let l = check(&token(&claims())).unwrap();
        assert_eq!(
            (l.sub.as_deref(), l.sid.as_deref(), l.jti.as_str()),
            (Some("u-1"), Some("s-1"), "j-1")
        );
    }

    #[test]
    fn forged_logout_tokens_are_refused() {
        let mut c = claims();
        c["aud"] = json!("another-client");
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::Audience);
        let mut c = claims();
        c["iss"] = json!("https://evil.example/");
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::Issuer);
        // An ID token is not a logout token: no event, a nonce.
        let mut c = claims();
        c.as_object_mut().unwrap().remove("events");
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::NotLogout);
        let mut c = claims();
        c["nonce"] = json!("n");
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::NotLogout);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("jti");
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::NotLogout);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("sub");
        c.as_object_mut().unwrap().remove("sid");
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::NotLogout);
        // Old, or from the future.
        let mut c = claims();
        c["iat"] = json!(NOW - MAX_AGE - 200);
        assert_eq!(check(&token(&c)).unwrap_err(), LogoutError::Time);
        // Another key, HS256 with the public key, alg none.
        let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
        h.kid = Some("key-a".into());
        let b = encode(&h, &claims(), &EncodingKey::from_rsa_pem(KEY_B).unwrap()).unwrap();
        assert_eq!(check(&b).unwrap_err(), LogoutError::Signature);
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some("key-a".into());
        let hs = encode(&h, &claims(), &EncodingKey::from_secret(PUB_A)).unwrap();
        assert_eq!(check(&hs).unwrap_err(), LogoutError::Algorithm);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none"}"#),
            b64.encode(claims().to_string())
        );
        assert_eq!(check(&none).unwrap_err(), LogoutError::Algorithm);
    }
}
