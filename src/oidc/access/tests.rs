//! Each refusal is named after the attack it stops.

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::oidc::testkeys::{KEY_A, KEY_B, NOW, PUB_A, TENANT, jwks};

const API: &str = "api://forwarden-apps";
const CALLER: &str = "11112222-3333-4444-5555-666677778888";
/// forwarden's own sign-in client, also an accepted audience (Entra's guide lists the app's
/// client id among `bearer.audiences`).
const SIGN_IN: &str = "99998888-7777-4666-8555-444433332222";

fn provider() -> TrustedIssuer {
    TrustedIssuer {
        rule: IssuerRule::Exact(format!("https://login.microsoftonline.com/{TENANT}/v2.0")),
        entra: true,
        foreign: None,
        name: String::new(),
        sign_in: None,
    }
}

/// An Entra v2 delegated access token for our API.
fn delegated() -> serde_json::Value {
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "aud": API,
        "sub": "pairwise-sub",
        "exp": NOW + 3600, "iat": NOW - 300, "nbf": NOW - 300,
        "tid": TENANT,
        "oid": "00000000-0000-0000-0000-0000000000aa",
        "azp": CALLER,
        "scp": "Files.Read user_impersonation",
        "preferred_username": "alice@contoso.com",
        "roles": ["Reader"],
        "ver": "2.0",
    })
}

/// An Entra v2 application token (client credentials).
fn application() -> serde_json::Value {
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "aud": API,
        "sub": "00000000-0000-0000-0000-0000000000bb",
        "oid": "00000000-0000-0000-0000-0000000000bb",
        "exp": NOW + 3600, "iat": NOW - 300,
        "tid": TENANT,
        "azp": CALLER,
        "idtyp": "app",
        "roles": ["Tasks.Write"],
        "email": "someone@contoso.com",
        "email_verified": true,
    })
}

fn sign_with(claims: &serde_json::Value, mut h: Header, key: &EncodingKey) -> String {
    h.kid.get_or_insert_with(|| "key-a".to_string());
    encode(&h, claims, key).unwrap()
}

fn sign(claims: &serde_json::Value) -> String {
    sign_with(
        claims,
        Header::new(Algorithm::RS256),
        &EncodingKey::from_rsa_pem(KEY_A).unwrap(),
    )
}

fn check(token: &str) -> Result<Verified, BearerError> {
    let issuer = provider();
    let keys = Keys::new(jwks("a"));
    let audiences = vec![API.to_string(), CALLER.to_string(), SIGN_IN.to_string()];
    let tenants = vec![TENANT.to_string()];
    verify(
        token,
        &[(&issuer, &keys)],
        &Expect {
            audiences: &audiences,
            now: NOW,
            leeway: 120,
            allowed_tenants: &tenants,
            extra_claims: &[],
            sign_in_client: Some(SIGN_IN),
        },
    )
}

fn with(mut c: serde_json::Value, k: &str, v: serde_json::Value) -> serde_json::Value {
    c[k] = v;
    c
}

#[test]
fn delegated_token_is_the_user_with_the_calling_app_and_scopes() {
    let v = check(&sign(&delegated())).unwrap();
    let id = v.identity;
    assert_eq!(id.subject, "00000000-0000-0000-0000-0000000000aa");
    assert_eq!(id.tenant, TENANT);
    assert_eq!(id.client_id.as_deref(), Some(CALLER));
    assert_eq!(id.scopes, vec!["Files.Read", "user_impersonation"]);
    assert!(!id.application);
    // The UPN of the issuer's own tenant, as for sign-in.
    assert_eq!(id.email.as_deref(), Some("alice@contoso.com"));
    assert_eq!(v.exp, NOW + 3600);
}

#[test]
fn application_token_has_no_user_so_email_rules_never_match_it() {
    let id = check(&sign(&application())).unwrap().identity;
    assert!(id.application);
    assert_eq!(
        id.email, None,
        "a verified email claim in an app token is not a user's"
    );
    assert_eq!(id.preferred_username, None);
    assert_eq!(id.roles, vec!["Tasks.Write"]);
    assert_eq!(id.client_id.as_deref(), Some(CALLER));
}

#[test]
fn entra_v1_token_with_the_sts_issuer_and_appid() {
    let mut c = delegated();
    c["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    c.as_object_mut().unwrap().remove("azp");
    c.as_object_mut().unwrap().remove("preferred_username");
    c["appid"] = json!(CALLER);
    c["upn"] = json!("alice@contoso.com");
    let id = check(&sign(&c)).unwrap().identity;
    assert_eq!(id.client_id.as_deref(), Some(CALLER));
    assert_eq!(id.preferred_username.as_deref(), Some("alice@contoso.com"));
    // The v1 issuer of another tenant is not the provider's.
    c["iss"] = json!("https://sts.windows.net/11111111-2222-4333-8444-555555555555/");
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Issuer);
}

#[test]
fn id_token_presented_as_a_bearer_token_is_refused() {
    // An ID token for our client id (an accepted audience): no calling application.
    let mut c = delegated();
    c["aud"] = json!(CALLER);
    c.as_object_mut().unwrap().remove("azp");
    c.as_object_mut().unwrap().remove("scp");
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::NotAccessToken);
    // With a nonce, even one that names a client.
    let c = with(delegated(), "nonce", json!("n-1"));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::NotAccessToken);
    // A typ that says so.
    let mut h = Header::new(Algorithm::RS256);
    h.typ = Some("id_token+jwt".into());
    let t = sign_with(&delegated(), h, &EncodingKey::from_rsa_pem(KEY_A).unwrap());
    assert_eq!(check(&t).unwrap_err(), BearerError::Header);
}

#[test]
fn id_token_without_nonce_with_our_client_as_azp_is_refused_as_an_access_token() {
    // The attack: an ID token as Keycloak or Google issue them (or one from a refresh): `azp`
    // and `aud` are forwarden's own sign-in client, no nonce, `typ: JWT`; its roles would pass a
    // route that allows them.
    let id_token = json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "aud": SIGN_IN,
        "azp": SIGN_IN,
        "sub": "pairwise-sub",
        "oid": "00000000-0000-0000-0000-0000000000aa",
        "tid": TENANT,
        "exp": NOW + 3600, "iat": NOW - 300,
        "roles": ["Admin"],
        "ver": "2.0",
    });
    assert_eq!(check(&sign(&id_token)).unwrap_err(), BearerError::NotAccessToken);
    let as_list = with(id_token.clone(), "aud", json!([SIGN_IN]));
    assert_eq!(check(&sign(&as_list)).unwrap_err(), BearerError::NotAccessToken);
    // What only ID tokens carry, whoever the audience.
    for (k, v) in [
        ("at_hash", json!("x")),
        ("c_hash", json!("y")),
        ("typ", json!("ID")),
    ] {
        let c = with(delegated(), k, v);
        assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::NotAccessToken, "{k}");
    }
    // An access token for the API that forwarden's own client obtained is one.
    let c = with(delegated(), "azp", json!(SIGN_IN));
    assert!(check(&sign(&c)).is_ok());
    // Keycloak's access tokens carry auth_time: not refused for it.
    let c = with(delegated(), "auth_time", json!(NOW - 600));
    assert!(check(&sign(&c)).is_ok());
}

#[test]
fn rfc9068_typ_at_jwt_is_accepted() {
    let mut h = Header::new(Algorithm::RS256);
    h.typ = Some("at+jwt".into());
    let t = sign_with(&delegated(), h, &EncodingKey::from_rsa_pem(KEY_A).unwrap());
    assert!(check(&t).is_ok());
}

#[test]
fn token_for_another_audience_is_refused() {
    let c = with(delegated(), "aud", json!("api://someone-else"));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Audience);
    let c = with(delegated(), "aud", json!(["api://someone-else"]));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Audience);
    let mut c = delegated();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Audience);
}

#[test]
fn wrong_issuer_is_refused() {
    let c = with(delegated(), "iss", json!("https://evil.example/"));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Issuer);
}

#[test]
fn foreign_key_is_refused() {
    // Signed by key-b under key-a's kid, and under its own kid (not in the set).
    let b = EncodingKey::from_rsa_pem(KEY_B).unwrap();
    let t = sign_with(&delegated(), Header::new(Algorithm::RS256), &b);
    assert_eq!(check(&t).unwrap_err(), BearerError::Signature);
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("key-b".into());
    assert_eq!(
        check(&sign_with(&delegated(), h, &b)).unwrap_err(),
        BearerError::UnknownKey
    );
}

#[test]
fn algorithm_confusion_hs256_with_the_public_key_is_refused() {
    let t = sign_with(
        &delegated(),
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(PUB_A),
    );
    assert_eq!(check(&t).unwrap_err(), BearerError::Algorithm);
}

#[test]
fn alg_none_is_refused() {
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let t = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "key-a"})),
        b64(&delegated())
    );
    assert_eq!(check(&t).unwrap_err(), BearerError::Algorithm);
}

#[test]
fn tampered_payload_is_refused() {
    let t = sign(&delegated());
    let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    parts[1] = b64.encode(with(delegated(), "roles", json!(["Admin"])).to_string());
    assert_eq!(check(&parts.join(".")).unwrap_err(), BearerError::Signature);
}

#[test]
fn expired_and_future_tokens_are_refused() {
    let c = with(delegated(), "exp", json!(NOW - 121));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Expired);
    let c = with(delegated(), "exp", json!(NOW - 60));
    assert!(check(&sign(&c)).is_ok(), "within the leeway");
    let c = with(delegated(), "nbf", json!(NOW + 600));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::NotYetValid);
}

#[test]
fn tenant_not_allowed_is_refused() {
    let c = with(delegated(), "tid", json!("11111111-2222-4333-8444-555555555555"));
    assert_eq!(check(&sign(&c)).unwrap_err(), BearerError::Tenant);
}

#[test]
fn oversized_token_is_refused_before_any_work() {
    let t = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(check(&t).unwrap_err(), BearerError::TooLarge);
    assert_eq!(BearerError::TooLarge.code(), "invalid_request");
    assert_eq!(check("not.a-token").unwrap_err(), BearerError::Malformed);
}

#[test]
fn crit_header_is_refused() {
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let t = sign(&delegated());
    let rest = t.split_once('.').unwrap().1;
    let h = b64(&json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"]}));
    assert_eq!(check(&format!("{h}.{rest}")).unwrap_err(), BearerError::Header);
}

#[test]
fn another_issuers_user_and_application_never_become_the_providers() {
    // The attack: an extra issuer mints `sub` = the provider's alice and `azp` = a client the
    // policies allow, with a verified email of alice's.
    const OTHER: &str = "https://other.example/";
    let other = |foreign: Foreign| TrustedIssuer {
        rule: IssuerRule::Exact(OTHER.into()),
        entra: false,
        foreign: Some(foreign),
        name: OTHER.into(),
        sign_in: None,
    };
    let claims = json!({
        "iss": OTHER, "aud": API, "sub": "00000000-0000-0000-0000-0000000000aa",
        "exp": NOW + 3600, "iat": NOW - 300, "azp": CALLER, "scp": "Files.Read",
        "email": "alice@contoso.com", "email_verified": true,
    });
    let verify_with = |issuer: &TrustedIssuer| {
        let keys = Keys::new(jwks("a"));
        let audiences = vec![API.to_string()];
        verify(
            &sign(&claims),
            &[(issuer, &keys)],
            &Expect {
                audiences: &audiences,
                now: NOW,
                leeway: 120,
                allowed_tenants: &[],
                extra_claims: &[],
                sign_in_client: Some(SIGN_IN),
            },
        )
        .unwrap()
        .identity
    };
    let id = verify_with(&other(Foreign::default()));
    assert_eq!(
        id.subject,
        format!("{OTHER}#00000000-0000-0000-0000-0000000000aa")
    );
    assert_eq!(
        id.client_id.as_deref(),
        Some(format!("{OTHER}#{CALLER}").as_str())
    );
    assert_eq!(id.email, None);
    // Trusted for client ids and emails: those read as they are; the subject stays its own.
    let id = verify_with(&other(Foreign {
        trust_client_id: true,
        trust_email: true,
    }));
    assert_eq!(
        id.subject,
        format!("{OTHER}#00000000-0000-0000-0000-0000000000aa")
    );
    assert_eq!(id.client_id.as_deref(), Some(CALLER));
    assert_eq!(id.email.as_deref(), Some("alice@contoso.com"));
}

#[test]
fn cheap_refusals_happen_before_the_signature_math() {
    // The attack: a flood of tokens that cannot verify. What the token's own header and claims
    // already refuse costs no signature check: a wrong algorithm for the key (an ES256 header
    // naming the RSA key), another audience, an expired token, an unknown kid.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("key-a".into());
    let rs = sign_with(&delegated(), h, &EncodingKey::from_rsa_pem(KEY_A).unwrap());
    let mut parts: Vec<&str> = rs.split('.').collect();
    let es_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(br#"{"alg":"ES256","kid":"key-a","typ":"JWT"}"#);
    parts[0] = &es_header;
    assert_eq!(check(&parts.join(".")).unwrap_err(), BearerError::Algorithm);
    // The signature is garbage in each of these: the refusal says what was checked first.
    let garbage = |claims: &serde_json::Value| {
        let t = sign(claims);
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.AAAA")
    };
    assert_eq!(
        check(&garbage(&with(delegated(), "aud", json!("api://other")))).unwrap_err(),
        BearerError::Audience
    );
    assert_eq!(
        check(&garbage(&with(delegated(), "exp", json!(NOW - 3600)))).unwrap_err(),
        BearerError::Expired
    );
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("key-unknown".into());
    let t = sign_with(&delegated(), h, &EncodingKey::from_rsa_pem(KEY_A).unwrap());
    assert_eq!(check(&t).unwrap_err(), BearerError::UnknownKey);
}
