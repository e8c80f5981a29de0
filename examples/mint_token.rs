//! Prints a bearer token (an application's access token, RS256, signed with the test key
//! `key-a` of `src/oidc/testdata/`) for the benchmark's bearer mode.
//! `cargo run --example mint_token -- <issuer> <audience> <client id>`

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

#[allow(clippy::disallowed_methods)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [issuer, audience, client] = args.as_slice() else {
        eprintln!("usage: mint_token <issuer> <audience> <client id>");
        std::process::exit(2);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": issuer, "aud": audience, "sub": client, "azp": client, "idtyp": "app",
        "iat": now, "exp": now + 3600, "roles": ["Bench.Read"],
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("key-a".into());
    header.typ = Some("at+jwt".into());
    let key = match EncodingKey::from_rsa_pem(include_bytes!("../src/oidc/testdata/rsa-a.pem")) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("the test key: {e}");
            std::process::exit(1);
        }
    };
    match encode(&header, &claims, &key) {
        Ok(t) => println!("{t}"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
