//! Security cases, each named after the attack it pins.

use forwarden::session::Keys;

use crate::util::*;

const POLICY: &str = "\
- from: https://app.example.com
  allow_any_authenticated_user: true
- from: https://app.example.com
  prefix: /admin
  allowed_groups: [admins]
- from: https://app.example.com
  prefix: /public
  allow_public_unauthenticated_access: true
- from: https://*.example.com
  allow_public_unauthenticated_access: true
- from: https://secret.example.com
  allowed_domains: [example.com]
";

async fn fw() -> (Fw, reqwest::Client) {
    (Fw::start(POLICY).await, client(&[]))
}

/// Status of `/oauth2/auth` for an original request, with an optional Cookie header.
async fn status(fw: &Fw, http: &reqwest::Client, host: &str, uri: &str, cookie: Option<&str>) -> u16 {
    let mut r = http.get(fw.url("/oauth2/auth")).forwarded("https", host, uri);
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.sent().await.status().as_u16()
}

/// [`status`] on `app.example.com`.
async fn app_status(fw: &Fw, http: &reqwest::Client, uri: &str, cookie: Option<&str>) -> u16 {
    status(fw, http, "app.example.com", uri, cookie).await
}

#[tokio::test]
async fn forwarded_headers_from_untrusted_peer_are_ignored() {
    let fw = Fw::start_with(POLICY, "trusted_proxies: [192.0.2.1/32]\n").await;
    let http = client(&[]);
    // Even a public route: without a trusted proxy the original URL is unknown, so: deny.
    assert_eq!(app_status(&fw, &http, "/public/x", None).await, 403);
    let c = fw.cookie(&alice());
    assert_eq!(app_status(&fw, &http, "/x", Some(&c)).await, 403);
}

#[tokio::test]
async fn path_normalizing_into_another_route() {
    let (fw, http) = fw().await;
    let bob = fw.cookie(&bob());
    assert_eq!(app_status(&fw, &http, "/public/x", None).await, 200);
    for p in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/",
        "/public/..%2Fadmin",
        "/public%2F..%2Fadmin",
        "//admin",
        "/public/./../admin",
        "/admin;/public",
        "/public;/../admin",
        "/public/..\\admin",
        "/public/..%5Cadmin",
        "/public/%2e%2e%2fadmin",
    ] {
        let anon = app_status(&fw, &http, p, None).await;
        assert_ne!(anon, 200, "anonymous {p}");
        let s = app_status(&fw, &http, p, Some(&bob)).await;
        assert_eq!(s, 403, "bob {p}");
    }
    // `/admin` never grants `/administrator`, and `/public` never grants `/publicity`.
    assert_eq!(app_status(&fw, &http, "/publicity", None).await, 401);
}

#[tokio::test]
async fn fragment_in_x_forwarded_uri() {
    let (fw, http) = fw().await;
    assert_eq!(app_status(&fw, &http, "/public#/../admin", None).await, 403);
    assert_eq!(app_status(&fw, &http, "/public/x#frag", None).await, 403);
}

#[tokio::test]
async fn host_case_and_trailing_dot() {
    let (fw, http) = fw().await;
    // The wildcard route is public; secret.example.com is not. Case and a trailing dot must not
    // turn the exact host into one the wildcard catches.
    assert_eq!(status(&fw, &http, "other.example.com", "/", None).await, 200);
    for host in [
        "secret.example.com",
        "SECRET.Example.COM",
        "secret.example.com.",
        "Secret.Example.Com.:443",
    ] {
        assert_eq!(status(&fw, &http, host, "/", None).await, 401, "{host}");
    }
    assert_eq!(status(&fw, &http, "secret.example.com..", "/", None).await, 403);
}

#[tokio::test]
async fn double_at_email_against_domain_rule() {
    let (fw, http) = fw().await;
    let mut u = bob();
    u.email = Some("mallory@evil.com@example.com".into());
    let c = fw.cookie(&u);
    assert_eq!(status(&fw, &http, "secret.example.com", "/", Some(&c)).await, 403);
    u.email = Some("a@b@example.com".into());
    let c = fw.cookie(&u);
    assert_eq!(status(&fw, &http, "secret.example.com", "/", Some(&c)).await, 403);
    let c = fw.cookie(&bob());
    assert_eq!(status(&fw, &http, "secret.example.com", "/", Some(&c)).await, 200);
}

#[tokio::test]
async fn spoofed_x_original_url_on_forward_auth() {
    let (fw, http) = fw().await;
    let r = http
        .get(fw.url("/oauth2/forward-auth"))
        .forwarded("https", "app.example.com", "/admin/")
        .header("x-original-url", "https://app.example.com/public/")
        .sent()
        .await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn spoofed_x_forwarded_for_cannot_pick_the_client_address() {
    let fw = Fw::start("- from: https://app.example.com\n  policy:\n    allow:\n      or:\n        - source_ip: 10.0.0.0/8\n").await;
    let http = client(&[]);
    // The trusted proxy appended the real address last; the first entry is the client's word.
    let r = http
        .get(fw.url("/oauth2/auth"))
        .forwarded("https", "app.example.com", "/")
        .header("x-forwarded-for", "10.1.1.1, 198.51.100.9")
        .sent()
        .await;
    // Refused outright: the only allow rule is about the address, so signing in cannot help.
    assert_eq!(r.status(), 403);
}

// ---- cookies: every broken one means "not logged in" (401), never a 500 ----

fn pairs(cookie: &str) -> Vec<(String, String)> {
    cookie
        .split("; ")
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn join(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn cookie_tampering() {
    let (fw, http) = fw().await;
    let good = fw.cookie(&alice());
    assert_eq!(app_status(&fw, &http, "/x", Some(&good)).await, 200);
    let mut p = pairs(&good);
    let v = &mut p[0].1;
    let mid = v.len() / 2;
    let flipped = if &v[mid..mid + 1] == "A" { "B" } else { "A" };
    v.replace_range(mid..mid + 1, flipped);
    assert_eq!(app_status(&fw, &http, "/x", Some(&join(&p))).await, 401);
    // Not even base64.
    assert_eq!(
        status(
            &fw,
            &http,
            "app.example.com",
            "/x",
            Some("_forwarden=!!!notbase64")
        )
        .await,
        401
    );
}

#[tokio::test]
async fn cookie_truncation() {
    let (fw, http) = fw().await;
    let mut p = pairs(&fw.cookie(&alice()));
    let n = p[0].1.len();
    p[0].1.truncate(n - 5);
    assert_eq!(app_status(&fw, &http, "/x", Some(&join(&p))).await, 401);
    p[0].1.truncate(10);
    assert_eq!(app_status(&fw, &http, "/x", Some(&join(&p))).await, 401);
    // A chunked session with its last chunk missing.
    let p = pairs(&fw.cookie(&many_groups(300)));
    assert!(p.len() >= 2);
    assert_eq!(
        status(
            &fw,
            &http,
            "app.example.com",
            "/x",
            Some(&join(&p[..p.len() - 1]))
        )
        .await,
        401
    );
}

#[tokio::test]
async fn cookie_swapped_chunks() {
    let (fw, http) = fw().await;
    let p = pairs(&fw.cookie(&many_groups(500)));
    assert!(p.len() >= 3, "{} chunks", p.len());
    assert_eq!(app_status(&fw, &http, "/x", Some(&join(&p))).await, 200);
    // Swap the values of chunks 1 and 2.
    let mut s = p.clone();
    let (a, b) = (s[1].1.clone(), s[2].1.clone());
    s[1].1 = b;
    s[2].1 = a;
    assert_eq!(app_status(&fw, &http, "/x", Some(&join(&s))).await, 401);
    // A chunk from another session of the same user.
    let other = pairs(&fw.cookie(&many_groups(500)));
    let mut mixed = p.clone();
    mixed[1] = other[1].clone();
    assert_eq!(app_status(&fw, &http, "/x", Some(&join(&mixed))).await, 401);
}

#[tokio::test]
async fn cookie_expiry() {
    let (fw, http) = fw().await;
    let keys = Keys::new(&[SECRET]);
    let expired = cookie_with(&keys, &alice(), now() - 7200, now() - 3600);
    assert_eq!(app_status(&fw, &http, "/x", Some(&expired)).await, 401);
    // A valid session stops working when the clock passes its expiry.
    let c = fw.cookie(&alice());
    assert_eq!(app_status(&fw, &http, "/x", Some(&c)).await, 200);
    fw.clock.fetch_add(3601, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(app_status(&fw, &http, "/x", Some(&c)).await, 401);
}

#[tokio::test]
async fn cookie_wrong_key() {
    let (fw, http) = fw().await;
    let other = Keys::new(&["another-secret-that-is-long-enough-0123456789"]);
    let c = cookie_with(&other, &alice(), now(), now() + 3600);
    assert_eq!(app_status(&fw, &http, "/x", Some(&c)).await, 401);
}

#[tokio::test]
async fn cookie_from_another_cookie_name_is_foreign() {
    let (fw, http) = fw().await;
    // A value sealed with our key but for another cookie name (associated data differs).
    let keys = Keys::new(&[SECRET]);
    let s = forwarden::session::Session {
        identity: alice(),
        issued_at: now(),
        expires_at: now() + 3600,
        refresh_token: None,
    };
    let sealed = forwarden::session::seal(&s, &keys, "_other", [7; 12]);
    let c = format!("_forwarden={}", sealed[0].1);
    assert_eq!(app_status(&fw, &http, "/x", Some(&c)).await, 401);
}
