#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The cold cost of a bearer token (verified from scratch: RS256 signature, claims, identity),
//! beside opening a session cookie, measured in the same run. A cached token costs a SHA-256 and
//! a cache lookup instead (`BENCH_BEARER=1 bench/run` measures that through the server).
//! `cargo bench --bench bearer`

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use forwarden::identity::Identity;
use forwarden::oidc::access::{Expect, TrustedIssuer, verify};
use forwarden::oidc::idtoken::{IssuerRule, KeySet};
use forwarden::session::{Keys, Session, open, seal};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

fn bench(c: &mut Criterion) {
    let now = 1_800_000_000;
    let claims = serde_json::json!({
        "iss": "https://issuer.bench.test/", "aud": "api://bench", "sub": "bench-client",
        "azp": "bench-client", "idtyp": "app", "iat": now, "exp": now + 3600, "roles": ["Bench.Read"],
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-a".into());
    let key = EncodingKey::from_rsa_pem(include_bytes!("../src/oidc/testdata/rsa-a.pem")).unwrap();
    let token = encode(&header, &claims, &key).unwrap();
    let keys: KeySet = serde_json::from_str(include_str!("../src/oidc/testdata/jwks-a.json")).unwrap();
    let keys = forwarden::oidc::Keys::new(keys);
    let issuer = TrustedIssuer {
        rule: IssuerRule::Exact("https://issuer.bench.test/".into()),
        entra: false,
        foreign: None,
    };
    let audiences = vec!["api://bench".to_string()];
    let expect = Expect {
        audiences: &audiences,
        now,
        leeway: 120,
        allowed_tenants: &[],
        extra_claims: &[],
        sign_in_client: None,
    };
    assert!(verify(&token, &[(&issuer, &keys)], &expect).is_ok());
    c.bench_function("bearer token, cold verification", |b| {
        b.iter(|| black_box(verify(black_box(&token), &[(&issuer, &keys)], &expect).is_ok()))
    });

    let secret = Keys::new(&["bench-secret-0123456789abcdef0123456789"]);
    let session = Session {
        identity: Identity {
            subject: "bench-user".into(),
            email: Some("alice@example.com".into()),
            groups: vec!["00000000-aaaa-4bbb-8ccc-000000000000".into(); 3],
            ..Identity::default()
        },
        issued_at: now,
        expires_at: now + 3600,
        refresh_token: None,
    };
    let cookies = seal(&session, &secret, "_forwarden", [7; 12]);
    let get = |n: &str| cookies.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert!(open(get, &secret, "_forwarden", now).is_ok());
    c.bench_function("session cookie, open", |b| {
        b.iter(|| black_box(open(get, &secret, "_forwarden", now).is_ok()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
