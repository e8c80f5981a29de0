//! The test keys and key sets the `oidc` unit tests sign and verify with (`testdata/`).

use super::idtoken::KeySet;

/// RSA private keys `key-a` and `key-b`, and `key-a`'s public key.
pub(crate) const KEY_A: &[u8] = include_bytes!("testdata/rsa-a.pem");
pub(crate) const KEY_B: &[u8] = include_bytes!("testdata/rsa-b.pem");
pub(crate) const PUB_A: &[u8] = include_bytes!("testdata/rsa-a.pub.pem");
/// An Entra tenant id, and a fixed "now" for the tokens.
pub(crate) const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub(crate) const NOW: u64 = 1_800_000_000;

/// The key set with `key-a` only (`"a"`), or with both keys.
pub(crate) fn jwks(name: &str) -> KeySet {
    let text = match name {
        "a" => include_str!("testdata/jwks-a.json"),
        _ => include_str!("testdata/jwks-ab.json"),
    };
    match serde_json::from_str(text) {
        Ok(k) => k,
        Err(e) => panic!("testdata key set: {e}"),
    }
}
