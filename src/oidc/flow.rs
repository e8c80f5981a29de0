//! The authorization code flow with PKCE: the redirect to the provider, and the check when the
//! browser comes back.
//!
//! Pure: the caller passes the time and the random bytes. Pending logins live in one sealed
//! cookie holding at most `MAX_PENDING` recent ones, so logins in several tabs at once work
//! and cookies never pile up (one CSRF cookie per attempt is how oauth2-proxy users end up with
//! 431 errors).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most pending logins kept (the newest win).
pub(crate) const MAX_PENDING: usize = 5;
/// How long a login may take, in seconds.
pub const LOGIN_TTL: u64 = 600;
/// The longest return address kept; a longer one returns to the site's root instead.
pub(crate) const MAX_RD: usize = 2048;
/// The most bytes of pending logins kept: sealed and base64-encoded, with the cookie's name and
/// attributes, that stays under the 4 KB browsers allow one cookie (older logins give way).
pub(crate) const MAX_PENDING_BYTES: usize = 2800;

/// One login in progress.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The `state` sent to the provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Where to go after login (already checked against the allow-list).
    pub rd: String,
    /// When the login began (Unix seconds).
    pub created: u64,
    /// The step-up this sign-in asked the provider for (`crate::policy::StepUp`'s parameter;
    /// empty for an ordinary sign-in).
    #[serde(default)]
    pub step_up: String,
    /// The provider the sign-in went to (`""`: the one `oidc:` provider).
    #[serde(default)]
    pub idp: String,
    /// The app registration it went through (`""`: the provider's own client).
    #[serde(default)]
    pub client: String,
}

impl std::fmt::Debug for Pending {
    // The verifier and nonce are secrets of the login: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("rd", &self.rd)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Fresh random bytes for one login, from the caller's RNG.
pub struct Randomness {
    /// For `state`.
    pub state: [u8; 16],
    /// For `nonce`.
    pub nonce: [u8; 16],
    /// For the PKCE verifier (43 characters once encoded).
    pub verifier: [u8; 32],
}

/// What the authorization request is made of.
pub struct Authorize<'a> {
    /// The provider's `authorization_endpoint`.
    pub endpoint: &'a str,
    /// The client id.
    pub client_id: &'a str,
    /// Our callback URL.
    pub redirect_uri: &'a str,
    /// Scopes (`openid` is added when missing).
    pub scopes: &'a [String],
    /// More parameters (a step-up's `acr_values`, `claims`, `max_age`).
    pub extra: &'a [(&'static str, String)],
}

/// Why a login cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The authorization endpoint is not a URL.
    #[error("the provider's authorization endpoint is not a valid URL")]
    BadEndpoint,
    /// No login in progress in this browser has this state (a forged callback, another
    /// browser's link, or cookies cleared meanwhile).
    #[error("this sign-in was not started in this browser (state mismatch)")]
    UnknownState,
    /// The login took longer than [`LOGIN_TTL`].
    #[error("this sign-in took too long and expired")]
    Expired,
}

/// The S256 code challenge of a verifier (RFC 7636).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// Start a login: the URL to send the browser to, and what to remember until it returns.
pub fn begin(
    a: &Authorize<'_>,
    rd: String,
    random: &Randomness,
    now: u64,
) -> Result<(String, Pending), FlowError> {
    let rd = if rd.len() > MAX_RD { "/".to_string() } else { rd };
    let pending = Pending {
        state: B64.encode(random.state),
        nonce: B64.encode(random.nonce),
        verifier: B64.encode(random.verifier),
        rd,
        created: now,
        step_up: String::new(),
        idp: String::new(),
        client: String::new(),
    };
    let mut url = url::Url::parse(a.endpoint).map_err(|_| FlowError::BadEndpoint)?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(FlowError::BadEndpoint);
    }
    let mut scopes: Vec<&str> = a.scopes.iter().map(String::as_str).collect();
    if !scopes.contains(&"openid") {
        scopes.insert(0, "openid");
    }
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", a.client_id)
        .append_pair("redirect_uri", a.redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
        .append_pair("code_challenge_method", "S256");
    for (k, v) in a.extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    Ok((url.into(), pending))
}

/// Add a login to the pending ones: expired ones dropped, newest first, at most `MAX_PENDING`
/// and `MAX_PENDING_BYTES` encoded (the oldest give way).
pub fn push(mut list: Vec<Pending>, p: Pending, now: u64) -> Vec<Pending> {
    list.retain(|x| now < x.created + LOGIN_TTL);
    list.insert(0, p);
    list.truncate(MAX_PENDING);
    while list.len() > 1 && encode(&list).len() > MAX_PENDING_BYTES {
        list.pop();
    }
    list
}

/// Take the login `state` names out of the pending ones; the rest stay for other tabs.
pub fn take(mut list: Vec<Pending>, state: &str, now: u64) -> Result<(Pending, Vec<Pending>), FlowError> {
    let i = list
        .iter()
        .position(|p| p.state == state)
        .ok_or(FlowError::UnknownState)?;
    let p = list.remove(i);
    list.retain(|x| now < x.created + LOGIN_TTL);
    if now >= p.created + LOGIN_TTL {
        return Err(FlowError::Expired);
    }
    Ok((p, list))
}

/// The pending logins as bytes for the sealed login cookie.
pub fn encode(list: &[Pending]) -> Vec<u8> {
    postcard::to_allocvec(list).unwrap_or_default()
}

/// The pending logins from the opened login cookie (nothing when unreadable).
pub fn decode(bytes: &[u8]) -> Vec<Pending> {
    postcard::from_bytes(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u8) -> Randomness {
        Randomness {
            state: [seed; 16],
            nonce: [seed.wrapping_add(1); 16],
            verifier: [seed.wrapping_add(2); 32],
        }
    }

    fn authorize() -> Authorize<'static> {
        Authorize {
            endpoint: "https://login.example.com/tenant/oauth2/v2.0/authorize?p=policy",
            client_id: "client-1",
            redirect_uri: "https://auth.example.com/oauth2/callback",
            scopes: &[],
            extra: &[],
        }
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorize_url_carries_pkce_state_and_nonce() {
        let (url, p) = begin(&authorize(), "/x".into(), &random(1), 100).unwrap();
        let u = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["p"], "policy", "the endpoint's own query is kept");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["scope"], "openid");
        assert_eq!(q["state"], p.state);
        assert_eq!(q["nonce"], p.nonce);
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], pkce_challenge(&p.verifier));
        assert_eq!(p.verifier.len(), 43);
        assert_ne!(p.state, p.nonce);
        assert!(
            !format!("{p:?}").contains(&p.verifier),
            "Debug never prints the verifier"
        );
    }

    #[test]
    fn several_tabs_and_no_pile_up() {
        let mut list = Vec::new();
        for i in 0..8u8 {
            let (_, p) = begin(&authorize(), format!("/tab{i}"), &random(i * 3), 100).unwrap();
            list = push(list, p, 100);
        }
        assert_eq!(list.len(), MAX_PENDING);
        let tab7 = list[0].state.clone();
        let tab5 = list[2].state.clone();
        let (p, rest) = take(list, &tab5, 200).unwrap();
        assert_eq!(p.rd, "/tab5");
        let (p, rest) = take(rest, &tab7, 200).unwrap();
        assert_eq!(p.rd, "/tab7");
        assert_eq!(rest.len(), MAX_PENDING - 2);
        let bytes = encode(&rest);
        assert_eq!(decode(&bytes), rest);
    }

    #[test]
    fn state_mismatch_and_expiry() {
        let (_, p) = begin(&authorize(), "/".into(), &random(9), 100).unwrap();
        let state = p.state.clone();
        let list = push(Vec::new(), p, 100);
        assert_eq!(
            take(list.clone(), "forged", 150).unwrap_err(),
            FlowError::UnknownState
        );
        assert_eq!(
            take(list, &state, 100 + LOGIN_TTL).unwrap_err(),
            FlowError::Expired
        );
        assert!(decode(b"garbage").is_empty());
    }

    #[test]
    fn pending_login_cookie_stays_small_whatever_the_rd_and_the_tabs() {
        let a = Authorize {
            endpoint: "https://idp.example/authorize",
            client_id: "c",
            redirect_uri: "https://app.example/oauth2/callback",
            scopes: &[],
            extra: &[],
        };
        let mut list = Vec::new();
        for i in 0..20u8 {
            let r = Randomness {
                state: [i; 16],
                nonce: [i; 16],
                verifier: [i; 32],
            };
            let rd = format!("https://app.example/{}", "x".repeat(100 * usize::from(i)));
            let (_, p) = begin(&a, rd, &r, 1000).unwrap();
            list = push(list, p, 1000);
            assert!(
                encode(&list).len() <= MAX_PENDING_BYTES,
                "{} bytes",
                encode(&list).len()
            );
        }
        let (_, huge) = begin(
            &a,
            format!("/{}", "y".repeat(100_000)),
            &Randomness {
                state: [1; 16],
                nonce: [1; 16],
                verifier: [1; 32],
            },
            1000,
        )
        .unwrap();
        assert_eq!(huge.rd, "/", "an over-long return address goes to the root");
    }
}
