//! The real identity provider (tests/e2e) against forwarden's ID-token verification.

use forwarden::oidc::flow::{self, Authorize, Randomness};
use forwarden::oidc::idtoken::{Expect, IssuerRule, TokenError, verify};

use crate::util::*;

#[tokio::test]
async fn provider_id_token_verifies_with_its_jwks() {
    let callback = "http://127.0.0.1/oauth2/callback".to_string();
    let Some(idp) = idp(std::slice::from_ref(&callback)).await else {
        return;
    };
    let http = browserless();
    let discovery = get_json(&http, &format!("{}/.well-known/openid-configuration", idp.issuer)).await;
    let scopes = vec!["openid".to_string(), "email".to_string(), "profile".to_string()];
    let random = Randomness {
        state: rand::random(),
        nonce: rand::random(),
        verifier: rand::random(),
    };
    let authorize = Authorize {
        endpoint: discovery["authorization_endpoint"].as_str().unwrap(),
        client_id: IDP_CLIENT,
        redirect_uri: &callback,
        scopes: &scopes,
        extra: &[],
    };
    let (url, pending) = flow::begin(&authorize, "/".into(), &random, now()).unwrap();
    let back = sign_in(&http, format!("{url}&login_hint=alice")).await;
    let q: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(q["state"], pending.state);
    let tokens: serde_json::Value = http
        .post(discovery["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", callback.as_str()),
            ("client_id", IDP_CLIENT),
            ("client_secret", IDP_SECRET),
            ("code_verifier", pending.verifier.as_str()),
        ])
        .json_answer()
        .await;
    let id_token = tokens["id_token"].as_str().unwrap_or_else(|| panic!("{tokens}"));
    let jwks: forwarden::oidc::idtoken::KeySet = http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .json_answer()
        .await;
    let issuer = IssuerRule::from_discovery(discovery["issuer"].as_str().unwrap());
    let tenants = vec![IDP_TENANT.to_string()];
    let expect = |nonce| Expect {
        issuer: &issuer,
        client_id: IDP_CLIENT,
        nonce: Some(nonce),
        now: now(),
        leeway: 120,
        allowed_tenants: &tenants,
        entra: true,
    };
    let claims = verify(id_token, &jwks, &expect(&pending.nonce)).unwrap();
    let id = claims.identity(true, &tenants, &[]);
    assert_eq!(id.subject, "00000001-aaaa-4bbb-8ccc-000000000001");
    assert_eq!(id.tenant, IDP_TENANT);
    assert_eq!(id.email.as_deref(), Some("alice@contoso.com"));
    assert_eq!(id.groups, vec!["000003e9-aaaa-4bbb-8ccc-0000000003e9"]);
    assert_eq!(id.roles, vec!["Reader", "Admin"]);
    // The same token for another login's nonce is refused.
    assert_eq!(
        verify(id_token, &jwks, &expect("another")).unwrap_err(),
        TokenError::Nonce
    );
}

/// `scripts/idp`, as a newcomer starts it: it prints the `oidc:` block and every user it has
/// (the users of `tests/e2e/server.mjs`), and its issuer serves discovery.
#[tokio::test]
async fn scripts_idp_prints_what_to_configure_and_serves_it() {
    if require("node").is_none() {
        return;
    }
    let port = free_port();
    let mut cmd = std::process::Command::new(repo().join("scripts/idp"));
    cmd.env("IDP_PORT", port.to_string());
    let p = spawn("scripts/idp", cmd, tempfile::TempDir::new().unwrap(), port).await;
    let issuer = format!("http://127.0.0.1:{port}/{IDP_TENANT}/v2.0");
    let discovery = get_json(
        &client(&[]),
        &format!("{issuer}/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(discovery["issuer"], issuer.as_str());
    let printed = std::fs::read_to_string(p.dir.path().join("stdout.log")).unwrap();
    assert!(printed.contains(&format!("issuer: {issuer}")), "{printed}");
    assert!(printed.contains("client_id: forwarden-local"), "{printed}");
    // Every user of the provider's home tenant is named.
    let server = std::fs::read_to_string(repo().join("tests/e2e/server.mjs")).unwrap();
    let users: Vec<&str> = server
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(": { oid: guid(") && !l.contains("tenant: TENANT2"))
        .filter_map(|l| l.trim().split(':').next())
        .collect();
    assert!(users.len() >= 6, "{users:?}");
    for u in users {
        assert!(
            printed.contains(&format!("\n    {u} ")),
            "scripts/idp does not name {u}:\n{printed}"
        );
    }
}

/// The local provider's own pages look like a provider's (item 4 of the newcomer path): a
/// sign-in page naming each user with what they are for, walked by keyboard alone, and its own
/// sign-out question and "signed out" page.
#[tokio::test]
async fn scripts_idp_pages_are_a_sign_in_and_a_sign_out_page_usable_by_keyboard() {
    for tool in ["node", "chromium"] {
        if require(tool).is_none() {
            return;
        }
    }
    let port = free_port();
    let redirect = "http://127.0.0.1:9/oauth2/callback";
    let mut cmd = std::process::Command::new(repo().join("scripts/idp"));
    cmd.env("IDP_PORT", port.to_string())
        .env("IDP_REDIRECT_URIS", redirect);
    let _p = spawn("scripts/idp", cmd, tempfile::TempDir::new().unwrap(), port).await;
    let seen = node_json(
        "tests/e2e/idp-pages.mjs",
        vec![
            ("ISSUER", format!("http://127.0.0.1:{port}/{IDP_TENANT}/v2.0")),
            ("CLIENT_ID", "forwarden-local".into()),
            ("REDIRECT_URI", redirect.into()),
        ],
    )
    .await;
    assert!(seen.get("error").is_none(), "{seen}");
    assert_eq!(seen["sign_in_heading"], "Sign in", "{seen}");
    let users = seen["users"].as_array().unwrap();
    let named = |who: &str| users.iter().any(|u| u.as_str().is_some_and(|u| u.contains(who)));
    assert!(
        named("Alice alice@contoso.com") && named("roles Reader, Admin"),
        "{seen}"
    );
    assert!(named("250 groups (overage: read from Graph)"), "{seen}");
    assert_eq!(
        seen["focused"], "alice",
        "the first Tab reaches the first user: {seen}"
    );
    assert_eq!(seen["callback_has_code"], true, "Enter signs in: {seen}");
    assert_eq!(seen["sign_out_heading"], "Sign out?", "{seen}");
    assert_eq!(seen["signed_out_heading"], "Signed out", "{seen}");
}
