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
        name: String::new(),
        sign_in: None,
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
    c.bench_function("bearer token, cold verification (RS256)", |b| {
        b.iter(|| black_box(verify(black_box(&token), &[(&issuer, &keys)], &expect).is_ok()))
    });

    // ES256: a P-256 key from a fixed scalar, published as a JWK.
    let es = {
        use base64::Engine;
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let point = secret.public_key().to_encoded_point(false);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": "key-es", "alg": "ES256",
            "x": b64.encode(point.x().unwrap()), "y": b64.encode(point.y().unwrap()),
        }]});
        let pem = secret.to_pkcs8_pem(Default::default()).unwrap();
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("key-es".into());
        let token = encode(&h, &claims, &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap();
        let set: KeySet = serde_json::from_value(jwks).unwrap();
        (token, forwarden::oidc::Keys::new(set))
    };
    assert!(verify(&es.0, &[(&issuer, &es.1)], &expect).is_ok());
    c.bench_function("bearer token, cold verification (ES256)", |b| {
        b.iter(|| black_box(verify(black_box(&es.0), &[(&issuer, &es.1)], &expect).is_ok()))
    });
    // What a flood of tokens that cannot verify costs: refused before the signature math.
    let unknown_kid = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("key-unknown".into());
        encode(&h, &claims, &key).unwrap()
    };
    assert!(verify(&unknown_kid, &[(&issuer, &keys)], &expect).is_err());
    c.bench_function("bearer token, refused (unknown kid)", |b| {
        b.iter(|| black_box(verify(black_box(&unknown_kid), &[(&issuer, &keys)], &expect).is_err()))
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
