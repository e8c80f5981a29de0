//! API clients with bearer tokens from the real identity provider (client credentials and
//! sign-in with a resource indicator, JWT access tokens shaped like Entra's), through real
//! nginx and Caddy with the shipped configurations.

use base64::Engine;

use crate::util::*;

const API: &str = "api://forwarden-apps";
/// The same API, with tokens in Entra's v1 shape (`appid`, `upn`, no `azp`).
const API_V1: &str = "api://forwarden-apps-v1";
const CALLER: &str = "11112222-3333-4444-5555-666677778888";
const CALLER_SECRET: &str = "caller-secret-0123456789abcdef";
const OTHER: &str = "99998888-7777-4666-8555-444433332222";
const OTHER_SECRET: &str = "other-secret-0123456789abcdef";

/// /jobs is for the caller application, /tasks for the role Tasks.Write, the rest for people
/// of contoso.com.
const POLICY: &str = "\
- from: http://app.test
  prefix: /jobs
  allowed_client_ids: [11112222-3333-4444-5555-666677778888]
- from: http://app.test
  prefix: /files
  allowed_scopes: [Files.Read]
- from: http://app.test
  allowed_domains: [contoso.com]
";

/// The `WWW-Authenticate` header of an answer.
fn challenge(r: &reqwest::Response) -> &str {
    r.headers()["www-authenticate"].to_str().unwrap()
}

/// The same token with one claim changed and the signature kept.
fn tampered(token: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["azp"] = serde_json::json!(OTHER);
    format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2])
}

async fn setup() -> Option<(Idp, Fw, std::net::SocketAddr)> {
    let idp = idp(&["http://app.test/oauth2/callback".to_string()]).await?;
    let extra = oidc_config(&idp.issuer, "openid, profile, email", &home_tenant())
        + &format!("bearer:\n  audiences: [\"{API}\", \"{API_V1}\"]\n");
    let fw = Fw::start_with(POLICY, &extra).await;
    fw.discovered().await;
    Some((idp, fw, echo_upstream().await))
}

/// One API client's story through a proxy at `port` (host app.test).
async fn story(idp: &Idp, fw: &Fw, port: u16, logs: &dyn Fn() -> String) {
    let http = client(&[("app.test", port)]);
    let url = |p: &str| format!("http://app.test:{port}{p}");
    let caller = app_token(&idp.issuer, CALLER, CALLER_SECRET, API).await;
    let other = app_token(&idp.issuer, OTHER, OTHER_SECRET, API).await;
    let get = |path: &str, token: &str| {
        http.get(url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("x-auth-request-client-id", "forged")
            .header("accept", "application/json")
    };
    // The caller passes its route; the upstream is told which application calls.
    let r = get("/jobs/1", &caller).sent().await;
    assert_eq!(r.status(), 200, "{}", logs());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-client-id"], CALLER, "{body}");
    assert_eq!(
        body["headers"]["x-auth-request-user"], "00000065-aaaa-4bbb-8ccc-000000000065",
        "the service principal's object id: {body}"
    );
    let email = body["headers"]
        .get("x-auth-request-email")
        .and_then(|v| v.as_str());
    assert_eq!(email.unwrap_or(""), "", "an application has no email: {body}");
    // The same application with a token in Entra's v1 shape: the caller is its `appid`.
    let v1 = app_token(&idp.issuer, CALLER, CALLER_SECRET, API_V1).await;
    let r = get("/jobs/1", &v1).sent().await;
    assert_eq!(r.status(), 200, "{}", logs());
    // Another application: 403, with RFC 6750's insufficient_scope.
    let r = get("/jobs/1", &other).sent().await;
    assert_eq!(r.status(), 403, "{}", logs());
    assert!(challenge(&r).contains("insufficient_scope"), "{:?}", r.headers());
    // An application token never matches an email-domain rule.
    let r = get("/", &caller).sent().await;
    assert_eq!(r.status(), 403);
    // Tampered, foreign-audience and expired tokens: 401 with WWW-Authenticate, no redirect.
    let foreign = app_token(&idp.issuer, CALLER, CALLER_SECRET, "api://someone-else").await;
    for (what, token) in [("tampered", tampered(&caller)), ("foreign audience", foreign)] {
        let r = get("/jobs/1", &token).sent().await;
        assert_eq!(r.status(), 401, "{what}: {}", logs());
        assert_eq!(
            r.headers().get_all("www-authenticate").iter().count(),
            1,
            "{what}"
        );
        let challenge = challenge(&r).to_string();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    // No token on an API request: 401 asking for one, never a redirect.
    let r = http
        .get(url("/jobs/1"))
        .header("accept", "application/json")
        .sent()
        .await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).starts_with("Bearer"));
    // A token in the query string is refused, under any spelling of its name.
    for name in ["access_token", "access%5Ftoken", "ACCESS_TOKEN"] {
        let r = http.get(url(&format!("/jobs/1?{name}={caller}"))).sent().await;
        assert_eq!(r.status(), 401, "{name}");
        assert!(challenge(&r).contains("invalid_request"), "{name}");
    }
    // A browser without a session still goes to sign in.
    let r = http.get(url("/")).page().sent().await;
    assert_eq!(r.status(), 302);
    // Two hours later the cached caller token has expired.
    fw.clock.fetch_add(7200, std::sync::atomic::Ordering::SeqCst);
    let r = get("/jobs/1", &caller).sent().await;
    assert_eq!(r.status(), 401, "expired");
    assert!(challenge(&r).contains("expired"));
    fw.clock.fetch_sub(7200, std::sync::atomic::Ordering::SeqCst);
}

/// A user's delegated token from sign-in with a resource indicator: the user's identity, the
/// calling application and its scopes.
#[tokio::test]
async fn delegated_token_from_sign_in_with_a_resource_indicator() {
    let Some((idp, fw, _up)) = setup().await else {
        return;
    };
    let http = browserless();
    let callback = "http://app.test/oauth2/callback";
    let verifier = "v".repeat(64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let url = format!(
        "{}/auth?client_id={IDP_CLIENT}&response_type=code&scope=openid%20Files.Read&redirect_uri={}&resource={}&code_challenge={challenge}&code_challenge_method=S256&state=s&nonce=n&login_hint=alice",
        idp.issuer,
        urlencode(callback),
        urlencode(API)
    );
    let back = sign_in(&http, url).await;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let tokens: serde_json::Value = http
        .post(format!("{}/token", idp.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", callback),
            ("client_id", IDP_CLIENT),
            ("client_secret", IDP_SECRET),
            ("code_verifier", verifier.as_str()),
            ("resource", API),
        ])
        .json_answer()
        .await;
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{tokens}"));
    let id_token = tokens["id_token"].as_str().unwrap();
    let ask = |path: &str, token: &str| forward_auth(&fw, path, token).send();
    let r = ask("/files/a", access).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-request-email"], "alice@contoso.com");
    assert_eq!(r.headers()["x-auth-request-client-id"], IDP_CLIENT);
    // A person's token passes the domain rule too.
    assert_eq!(ask("/", access).await.unwrap().status(), 200);
    // Identity confusion between cached tokens: each token's headers are its own, asked in
    // turn while both are cached (the headers are kept per verified token and worker thread).
    let caller = app_token(&idp.issuer, CALLER, CALLER_SECRET, API).await;
    for _ in 0..3 {
        let r = ask("/jobs/1", &caller).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-auth-request-client-id"], CALLER);
        assert_eq!(r.headers()["x-auth-request-email"], "");
        let r = ask("/files/a", access).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-auth-request-email"], "alice@contoso.com");
        assert_eq!(r.headers()["x-auth-request-client-id"], IDP_CLIENT);
    }
    // The ID token of the same sign-in is not an access token.
    let r = ask("/files/a", id_token).await.unwrap();
    assert_eq!(r.status(), 401);
}

/// forwarden's forward-auth endpoint asked directly about `path` on app.test with a token.
fn forward_auth(fw: &Fw, path: &str, token: &str) -> reqwest::RequestBuilder {
    client(&[])
        .get(fw.url("/oauth2/forward-auth"))
        .forwarded("http", "app.test", path.to_string())
        .header("x-forwarded-method", "GET")
        .header("authorization", format!("Bearer {token}"))
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `bearer.issuers`: another issuer's tokens (the test provider's second directory), verified
/// with the keys from its `jwks_url`; without the entry they are refused.
#[tokio::test]
async fn extra_issuer_tokens_are_verified_with_its_published_keys() {
    let Some(idp) = idp(&["http://app.test/oauth2/callback".to_string()]).await else {
        return;
    };
    let other = idp
        .issuer
        .replace(IDP_TENANT, "11111111-2222-4333-8444-555555555555");
    let oidc = oidc_config(&idp.issuer, "openid", &home_tenant());
    let trusting = format!(
        "{oidc}bearer:\n  audiences: [\"{API}\"]\n  issuers: [{{issuer: \"{other}\", jwks_url: \"{other}/jwks\", trusted_for: [client_id]}}]\n"
    );
    let fw = Fw::start_with(POLICY, &trusting).await;
    let plain = Fw::start_with(POLICY, &format!("{oidc}bearer:\n  audiences: [\"{API}\"]\n")).await;
    // The attack: the other issuer names a client id the policy allows for the provider's
    // tokens. Without `trusted_for: [client_id]` it is that issuer's own client, not ours.
    let untrusting = Fw::start_with(POLICY, &trusting.replace(", trusted_for: [client_id]", "")).await;
    fw.discovered().await;
    plain.discovered().await;
    untrusting.discovered().await;
    let token = app_token(&other, CALLER, CALLER_SECRET, API).await;
    let ask = |fw: &Fw| forward_auth(fw, "/jobs/1", &token).send();
    let r = ask(&fw).await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    assert_eq!(r.headers()["x-auth-request-client-id"], CALLER);
    // Its subject is (issuer, subject), whatever it is trusted for.
    let user = r.headers()["x-auth-request-user"].to_str().unwrap();
    assert!(user.starts_with(&format!("{other}#")), "{user}");
    let r = ask(&plain).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("issuer"));
    let r = ask(&untrusting).await.unwrap();
    assert_eq!(r.status(), 403, "another issuer's client id passed as ours");
}

/// The story through one proxy running its shipped configuration.
async fn through(proxy: &str) {
    let Some((idp, fw, up)) = setup().await else {
        return;
    };
    let p = match proxy {
        "nginx" => nginx_on(free_port(), fw.addr, up, "").await,
        "caddy" => caddy(fw.addr, up).await,
        "haproxy" => haproxy(fw.addr, up).await,
        _ => traefik(fw.addr, up).await,
    };
    let Some(p) = p else { return };
    story(&idp, &fw, p.port, &|| p.logs()).await;
}

#[tokio::test]
async fn api_client_tokens_through_nginx() {
    through("nginx").await;
}

#[tokio::test]
async fn api_client_tokens_through_caddy() {
    through("caddy").await;
}

#[tokio::test]
async fn api_client_tokens_through_haproxy() {
    through("haproxy").await;
}

#[tokio::test]
async fn api_client_tokens_through_traefik() {
    through("traefik").await;
}

/// The attack: a signing key the provider withdrew stays trusted (until a restart, unless some
/// token names an unknown kid). The periodic key refresh (the same step the server runs every
/// `Cache-Control` interval) stops trusting it, and drops the tokens verified with it.
#[tokio::test]
async fn withdrawn_signing_key_stops_being_trusted_at_the_periodic_refresh() {
    let Some((idp, fw, _)) = setup().await else { return };
    let token = app_token(&idp.issuer, CALLER, CALLER_SECRET, API).await;
    let r = forward_auth(&fw, "/jobs/1", &token).sent().await;
    assert_eq!(r.status(), 200, "signed with the current key");
    // The provider replaces its keys: the one that signed `token` is withdrawn.
    let rotate = format!(
        "{}/__test/rotate",
        idp.issuer.split(&format!("/{IDP_TENANT}")).next().unwrap()
    );
    assert_eq!(client(&[]).get(&rotate).sent().await.status(), 204);
    // Still cached and still trusted until the refresh.
    assert_eq!(forward_auth(&fw, "/jobs/1", &token).sent().await.status(), 200);
    let next = fw.state.refresh_keys().await;
    assert!(next >= std::time::Duration::from_secs(300), "{next:?}");
    let r = forward_auth(&fw, "/jobs/1", &token).sent().await;
    assert_eq!(r.status(), 401, "a token signed with a withdrawn key passed");
    // A token signed with the new key passes.
    let fresh = app_token(&idp.issuer, CALLER, CALLER_SECRET, API).await;
    assert_eq!(forward_auth(&fw, "/jobs/1", &fresh).sent().await.status(), 200);
}
