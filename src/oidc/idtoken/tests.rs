use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use jsonwebtoken::Algorithm;

use super::*;

use crate::oidc::testkeys::{KEY_A, KEY_B, NOW, PUB_A, TENANT, jwks};

fn claims() -> serde_json::Value {
    json!({
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "sub": "sub-1",
        "aud": "client-1",
        "exp": NOW + 3600,
        // Entra back-dates these by about five minutes.
        "iat": NOW - 300,
        "nbf": NOW - 300,
        "nonce": "nonce-1",
        "tid": TENANT,
        "oid": "00000000-0000-0000-0000-0000000000aa",
        "preferred_username": "alice@contoso.com",
        "groups": ["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"],
        "roles": ["Reader"],
    })
}

fn sign(claims: &serde_json::Value, key: &[u8], kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_string());
    encode(&h, claims, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
}

fn entra() -> IssuerRule {
    IssuerRule::from_discovery("https://login.microsoftonline.com/{tenantid}/v2.0")
}

fn check(token: &str, set: &KeySet) -> Result<Claims, TokenError> {
    let issuer = entra();
    let tenants = vec![TENANT.to_string()];
    verify(
        token,
        set,
        &Expect {
            issuer: &issuer,
            client_id: "client-1",
            nonce: Some("nonce-1"),
            now: NOW,
            leeway: 120,
            allowed_tenants: &tenants,
            entra: true,
        },
    )
}

#[test]
fn valid_entra_token_with_backdated_iat() {
    let c = check(&sign(&claims(), KEY_A, "key-a"), &jwks("a")).unwrap();
    assert_eq!(c.tid.as_deref(), Some(TENANT));
    let id = c.identity(true, &[TENANT.to_string()], &[]);
    assert_eq!(id.subject, "00000000-0000-0000-0000-0000000000aa");
    assert_eq!(
        id.email.as_deref(),
        Some("alice@contoso.com"),
        "the UPN of a home tenant counts"
    );
    assert_eq!(id.claims[crate::identity::EMAIL_SOURCE], "upn");
}

#[test]
fn wrong_aud() {
    let mut c = claims();
    c["aud"] = json!("another-app");
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Audience
    );
}

#[test]
fn wrong_iss() {
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com/v2.0");
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Issuer
    );
    // The issuer of another tenant than the token's tid.
    let mut c = claims();
    c["iss"] = json!("https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/v2.0");
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Issuer
    );
}

#[test]
fn wrong_or_missing_nonce() {
    let mut c = claims();
    c["nonce"] = json!("another");
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Nonce
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("nonce");
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Nonce
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let mut c = claims();
    c["exp"] = json!(NOW - 121);
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Expired
    );
    let mut c = claims();
    c["nbf"] = json!(NOW + 600);
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::NotYetValid
    );
    // Within the leeway both pass.
    let mut c = claims();
    c["exp"] = json!(NOW - 60);
    c["nbf"] = json!(NOW + 60);
    assert!(check(&sign(&c, KEY_A, "key-a"), &jwks("a")).is_ok());
}

#[test]
fn bad_signature() {
    // Signed by key b, claiming to be key a.
    assert_eq!(
        check(&sign(&claims(), KEY_B, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Signature
    );
    // A payload swapped under a valid signature.
    let good = sign(&claims(), KEY_A, "key-a");
    let mut c = claims();
    c["oid"] = json!("someone-else");
    let other = sign(&c, KEY_B, "key-b");
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
    assert_eq!(check(&forged, &jwks("a")).unwrap_err(), TokenError::Signature);
}

#[test]
fn alg_none() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims().to_string())
    );
    assert!(check(&token, &jwks("a")).is_err());
}

#[test]
fn hs256_signed_with_the_public_key() {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("key-a".into());
    let token = encode(&h, &claims(), &EncodingKey::from_secret(PUB_A)).unwrap();
    assert_eq!(check(&token, &jwks("a")).unwrap_err(), TokenError::Algorithm);
}

#[test]
fn new_kid_after_rotation_needs_the_new_jwks() {
    let token = sign(&claims(), KEY_B, "key-b");
    assert_eq!(check(&token, &jwks("a")).unwrap_err(), TokenError::UnknownKey);
    assert!(
        check(&token, &jwks("ab")).is_ok(),
        "accepted once the JWKS is refetched"
    );
}

#[test]
fn tenant_not_allowed() {
    let other = "11111111-1111-1111-1111-111111111111";
    let mut c = claims();
    c["tid"] = json!(other);
    c["iss"] = json!(format!("https://login.microsoftonline.com/{other}/v2.0"));
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Tenant
    );
    let mut c = claims();
    c["tid"] = json!("not-a-guid");
    assert_eq!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).unwrap_err(),
        TokenError::Tenant
    );
}

#[test]
fn noauth_unverified_email_of_another_tenant_is_ignored() {
    // A user of another (allowed, multi-tenant) directory sets their unverified email to the
    // victim's address.
    let attacker: Claims = serde_json::from_value(json!({
        "iss": "x", "sub": "s", "exp": 1, "tid": "11111111-1111-1111-1111-111111111111",
        "email": "victim@contoso.com", "preferred_username": "mallory@fabrikam.com"
    }))
    .unwrap();
    let id = attacker.identity(true, &[TENANT.to_string()], &[]);
    assert_eq!(id.email, None);
    // The same claim, verified, counts.
    let verified: Claims = serde_json::from_value(json!({
        "iss": "x", "sub": "s", "exp": 1, "email": "bob@example.org", "email_verified": true
    }))
    .unwrap();
    let id = verified.identity(true, &[], &[]);
    assert_eq!(id.email.as_deref(), Some("bob@example.org"));
    assert_eq!(id.claims[crate::identity::EMAIL_SOURCE], "email_verified");
    assert_eq!(
        attacker.identity(true, &[TENANT.to_string()], &[]).claims[crate::identity::EMAIL_SOURCE],
        "none"
    );
}

#[test]
fn overage_is_detected() {
    let c: Claims = serde_json::from_value(json!({
        "iss": "x", "sub": "s", "exp": 1,
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}
    }))
    .unwrap();
    assert!(c.groups_overage());
    assert!(
        !check(&sign(&claims(), KEY_A, "key-a"), &jwks("a"))
            .unwrap()
            .groups_overage()
    );
}

// ---- a hostile provider: tokens OpenID Connect Core 3.1.3.7 and RFC 7515 refuse ----

fn refused(c: &serde_json::Value) -> TokenError {
    check(&sign(c, KEY_A, "key-a"), &jwks("a")).unwrap_err()
}

#[test]
fn hostile_provider_aud_missing_null_number_object_or_mixed_list() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).is_err(),
        "aud missing"
    );
    for bad in [
        json!(null),
        json!(42),
        json!({"client-1": true}),
        json!(["client-1", 7]),
        json!([]),
    ] {
        let mut c = claims();
        c["aud"] = bad.clone();
        assert!(check(&sign(&c, KEY_A, "key-a"), &jwks("a")).is_err(), "aud {bad}");
    }
}

#[test]
fn hostile_provider_empty_sub() {
    let mut c = claims();
    c["sub"] = json!("");
    assert_eq!(refused(&c), TokenError::Subject);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).is_err(),
        "sub missing"
    );
}

#[test]
fn hostile_provider_several_audiences_without_azp_or_azp_of_another_client() {
    let mut c = claims();
    c["aud"] = json!(["client-1", "another-app"]);
    assert_eq!(refused(&c), TokenError::Audience);
    c["azp"] = json!("client-1");
    assert_eq!(refused(&c), TokenError::Audience, "an audience we do not trust");
    let mut c = claims();
    c["azp"] = json!("another-app");
    assert_eq!(refused(&c), TokenError::AuthorizedParty);
    let mut c = claims();
    c["azp"] = json!("client-1");
    assert!(
        check(&sign(&c, KEY_A, "key-a"), &jwks("a")).is_ok(),
        "azp naming us is fine"
    );
}

#[test]
fn hostile_provider_crit_header_with_an_unknown_extension() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // Sign a header that carries `crit` (jsonwebtoken's Header cannot), with key a.
    let header = json!({"alg": "RS256", "kid": "key-a", "typ": "JWT", "crit": ["x-must-understand"], "x-must-understand": true});
    let input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims().to_string())
    );
    let key = EncodingKey::from_rsa_pem(KEY_A).unwrap();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).unwrap();
    let token = format!("{input}.{sig}");
    assert_eq!(check(&token, &jwks("a")).unwrap_err(), TokenError::Header);
}

#[test]
fn hostile_provider_key_published_for_encryption_verifies_nothing() {
    let mut set: serde_json::Value = serde_json::from_str(include_str!("../testdata/jwks-a.json")).unwrap();
    for k in set["keys"].as_array_mut().unwrap() {
        k["use"] = json!("enc");
    }
    let enc: KeySet = serde_json::from_value(set).unwrap();
    assert_eq!(
        check(&sign(&claims(), KEY_A, "key-a"), &enc).unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn hostile_provider_oid_does_not_override_sub_outside_entra() {
    let c: Claims = serde_json::from_value(json!({
        "iss": "https://idp.example.org", "sub": "real-subject", "exp": 1,
        "oid": "00000000-0000-0000-0000-0000000000aa", "tid": TENANT,
    }))
    .unwrap();
    let generic = c.identity(false, &[], &[]);
    assert_eq!(generic.subject, "real-subject");
    assert_eq!(generic.tenant, "", "another provider's tid is just a claim");
    assert_eq!(
        c.identity(true, &[], &[]).subject,
        "00000000-0000-0000-0000-0000000000aa"
    );
}

#[test]
fn issuer_rule_admits_only_its_issuer_and_guid_tenants() {
    let t = entra();
    assert!(t.admits(&format!("https://login.microsoftonline.com/{TENANT}/v2.0")));
    assert!(!t.admits("https://login.microsoftonline.com/evil/v2.0"));
    assert!(!t.admits(&format!("https://login.microsoftonline.com/{TENANT}/v2.0/extra")));
    assert!(!t.admits(&format!("https://evil.example/{TENANT}/v2.0")));
    let e = IssuerRule::Exact("https://idp.example/".into());
    assert!(e.admits("https://idp.example/") && !e.admits("https://idp.example"));
}
