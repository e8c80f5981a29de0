//! Single sign-on across registrable domains: one forwarden for app.example.com (under
//! `cookie.domain`, signed in at the central host auth.example.com) and wiki.example.org
//! (under `cookie.other_domains`), through nginx, against the test provider. The second domain
//! gets the session by a one-time hand-off from the central host, without a second sign-in at
//! the provider (which knows only the central redirect URI).

use crate::util::*;

const POLICY: &str = "\
- from: http://app.example.com
  allowed_domains: [contoso.com]
- from: http://wiki.example.org
  allowed_domains: [contoso.com]
- from: http://other.example.org
  allowed_domains: [contoso.com]
";

struct Site {
    _idp: Idp,
    fw: Fw,
    _nginx: Proc,
    port: u16,
    issuer: String,
}

async fn site(store: Option<&str>) -> Option<Site> {
    site_with(store, "").await
}

/// [`site`] with more `cookie:` lines (`refresh:`, with refresh tokens asked for).
async fn site_with(store: Option<&str>, cookie: &str) -> Option<Site> {
    let port = free_port();
    let idp = idp(&[format!("http://auth.example.com:{port}/oauth2/callback")]).await?;
    let scopes = if cookie.is_empty() {
        "openid, email"
    } else {
        "openid, email, offline_access"
    };
    let mut extra = oidc_config(&idp.issuer, scopes, &home_tenant());
    extra.push_str(&format!(
        "public_url: http://auth.example.com:{port}\nallowed_redirect_domains: [.example.com]\n"
    ));
    if let Some(url) = store {
        extra.push_str(&format!("session_store:\n  redis:\n    url: {url}\n"));
    }
    let fw = Fw::start_full(
        POLICY,
        &format!("  domain: .example.com\n  other_domains: [.example.org]\n{cookie}"),
        &extra,
    )
    .await;
    let nginx = fw.behind_nginx(port).await?;
    let issuer = idp.issuer.clone();
    Some(Site {
        _idp: idp,
        fw,
        _nginx: nginx,
        port,
        issuer,
    })
}

fn hosts() -> [&'static str; 4] {
    [
        "auth.example.com",
        "app.example.com",
        "wiki.example.org",
        "other.example.org",
    ]
}

#[tokio::test]
async fn one_sign_in_reaches_both_registrable_domains_and_a_hand_off_code_opens_once_on_its_host() {
    let Some(s) = site(None).await else { return };
    let url = |host: &str, p: &str| format!("http://{host}:{}{p}", s.port);
    let http = browser(s.port, &hosts());

    // Signed in once, for app.example.com (at the provider, through the central host).
    let (r, path) = browse(&http, &url("app.example.com", "/x"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(path.iter().any(|u| u.starts_with(&s.issuer)), "{path:#?}");

    // wiki.example.org: handed off by the central host, never at the provider.
    let (r, path) = browse(&http, &url("wiki.example.org", "/page"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert_eq!(r.url().as_str(), url("wiki.example.org", "/page"), "{path:#?}");
    assert!(
        !path.iter().any(|u| u.starts_with(&s.issuer)),
        "no second sign-in: {path:#?}"
    );
    let issued = path
        .iter()
        .find(|u| u.contains("/oauth2/handoff/issue?"))
        .unwrap();
    assert!(issued.starts_with(&url("auth.example.com", "/")), "{path:#?}");
    let accept = path
        .iter()
        .find(|u| u.contains("/oauth2/handoff/accept?"))
        .unwrap()
        .clone();
    let body = r.text().await.unwrap();
    assert!(body.contains("alice@contoso.com"), "{body}");

    // The same code again, in the same browser: its pending cookie is gone.
    let again = http.get(&accept).sent().await;
    assert_eq!(again.status(), 400, "a replayed hand-off code is refused");
    // In another browser (a code copied from a log): no pending cookie there.
    let other = browser(s.port, &hosts());
    let stolen = other.get(&accept).sent().await;
    assert_eq!(stolen.status(), 400, "a copied hand-off code is refused");
    let (r, _) = browse(&other, &url("wiki.example.org", "/page"), &s.issuer, "bob").await;
    assert!(
        !r.text().await.unwrap().contains("alice@contoso.com"),
        "the copied code made nobody alice"
    );

    // A code for wiki.example.org opened on another host of the same domain: refused.
    let fresh = browser(s.port, &hosts());
    let _ = browse(&fresh, &url("app.example.com", "/"), &s.issuer, "alice").await;
    let start = fresh
        .get(url("wiki.example.org", "/oauth2/handoff?rd=%2F"))
        .sent()
        .await;
    let issue = start.headers()["location"].to_str().unwrap().to_string();
    let issued = fresh.get(&issue).sent().await;
    let accept = issued.headers()["location"].to_str().unwrap().to_string();
    assert!(accept.contains("/oauth2/handoff/accept?"), "{accept}");
    let elsewhere = accept.replace("wiki.example.org", "other.example.org");
    let r = fresh.get(&elsewhere).sent().await;
    assert_eq!(r.status(), 400, "a code for another host is refused");

    // A hand-off to a host no route names is refused at the central host (no open redirect).
    for to in ["evil.example.org", "evil.example.net", "wiki.example.org:1"] {
        let r = fresh
            .get(url(
                "auth.example.com",
                &format!("/oauth2/handoff/issue?to={to}&bind=AAAA&rd=%2F"),
            ))
            .sent()
            .await;
        assert_eq!(r.status(), 400, "{to}");
        assert!(r.headers().get("location").is_none(), "{to}");
    }
    drop(s.fw);
}

/// With a session store: alice signed in on app.example.com, then handed to wiki.example.org
/// (the redirects of that, in `path`).
async fn signed_in_on_both_with_a_store() -> Option<(Proc, Site, reqwest::Client, Vec<String>)> {
    let redis = redis_server(&[]).await?;
    let s = site(Some(&format!("redis://127.0.0.1:{}/0", redis.port))).await?;
    let url = |host: &str, p: &str| format!("http://{host}:{}{p}", s.port);
    let http = browser(s.port, &hosts());
    let (r, _) = browse(&http, &url("app.example.com", "/"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200);
    let (r, path) = browse(&http, &url("wiki.example.org", "/"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    Some((redis, s, http, path))
}

#[tokio::test]
async fn sign_out_with_a_session_store_ends_the_session_on_every_domain() {
    let Some((_redis, s, http, path)) = signed_in_on_both_with_a_store().await else {
        return;
    };
    let url = |host: &str, p: &str| format!("http://{host}:{}{p}", s.port);
    // With a store, a code opens once even with its pending cookie still there.
    let accept = path
        .iter()
        .find(|u| u.contains("/oauth2/handoff/accept?"))
        .unwrap();
    assert!(accept.contains("code="));

    // Sign out on app.example.com: the ticket both domains hold is revoked.
    let out = http.get(url("app.example.com", "/oauth2/sign_out")).sent().await;
    assert!(out.status().is_redirection(), "{}", out.status());
    let r = http.get(url("wiki.example.org", "/")).page().sent().await;
    assert_eq!(r.status(), 302, "signed out on the other domain too");
    let to = r.headers()["location"].to_str().unwrap();
    assert!(to.contains("/oauth2/handoff?rd="), "{to}");
}

/// Front-channel logout loaded on the other domain's host (the provider's iframe for that
/// host) ends the session there and deletes that host's own cookies (`Domain=example.org`), never the
/// central domain's in their place.
#[tokio::test]
async fn front_channel_logout_on_another_domain_deletes_that_domains_cookies() {
    let Some((_redis, s, http, _)) = signed_in_on_both_with_a_store().await else {
        return;
    };
    let url = |host: &str, p: &str| format!("http://{host}:{}{p}", s.port);
    // Without a `sid` (this provider puts none in its ID tokens here), the browser's own
    // session ends.
    let r = http
        .get(url("wiki.example.org", "/oauth2/frontchannel-logout"))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    let deleted: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!deleted.is_empty(), "no cookie deleted");
    for c in &deleted {
        let c = c.to_ascii_lowercase();
        assert!(
            c.contains("domain=example.org") || c.contains("domain=.example.org"),
            "{c}"
        );
        assert!(!c.contains("example.com"), "{c}");
    }
    let r = http.get(url("wiki.example.org", "/")).page().sent().await;
    assert_eq!(r.status(), 302, "signed out on the other domain");
}

/// examples/sso (docs/sso.md's configuration) loads and `check` is quiet about it; a route on a
/// third registrable domain is named as one whose browsers could never keep the session.
#[test]
fn check_names_a_route_no_cookie_domain_covers() {
    let dir = tempfile::TempDir::new().unwrap();
    for f in ["forwarden.yaml", "policy.yaml"] {
        std::fs::copy(repo().join("examples/sso").join(f), dir.path().join(f)).unwrap();
    }
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarden"))
            .args(["check", "--config"])
            .arg(dir.path().join("forwarden.yaml"))
            .env("FORWARDEN_COOKIE_SECRET", SECRET)
            .env("FORWARDEN_CLIENT_SECRET", "x")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let quiet = check();
    assert!(!quiet.contains("warning"), "{quiet}");
    let mut policy = std::fs::read_to_string(dir.path().join("policy.yaml")).unwrap();
    policy.push_str("- from: https://grafana.example.net\n  allowed_domains: [example.com]\n");
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let warned = check();
    assert!(
        warned.contains("(https://grafana.example.net) is under no cookie domain")
            && warned.contains("cookie.other_domains"),
        "{warned}"
    );
}

/// The same in Chromium (host names mapped with --host-resolver-rules), with a session store:
/// one sign-in reaches both domains, the hand-off is never a visit to the provider, its code
/// opened again is refused, and signing out on app.example.com ends wiki.example.org's session.
#[tokio::test]
async fn single_sign_on_across_domains_in_chromium() {
    let Some(_) = require("chromium") else { return };
    let Some(redis) = redis_server(&[]).await else {
        return;
    };
    let Some(s) = site(Some(&format!("redis://127.0.0.1:{}/0", redis.port))).await else {
        return;
    };
    let url = |host: &str, p: &str| format!("http://{host}:{}{p}", s.port);
    // Every name to this machine (the provider is addressed by IP).
    let rules = "MAP * 127.0.0.1".to_string();
    let seen = journey(vec![
        ("JOURNEY", "sso".into()),
        ("FIRST_URL", url("app.example.com", "/x")),
        ("SECOND_URL", url("wiki.example.org", "/page")),
        ("USER", "alice".into()),
        ("ISSUER", s.issuer.clone()),
        ("HOST_RULES", rules),
    ])
    .await;
    assert!(seen.get("error").is_none(), "{seen}");
    saw(&seen, "first_text", "alice@contoso.com");
    saw(&seen, "second_text", "alice@contoso.com");
    let chain: Vec<&str> = urls(&seen, "second_chain");
    assert!(
        chain.iter().any(|u| u.contains("/oauth2/handoff/issue?")),
        "{seen}"
    );
    assert!(
        !chain.iter().any(|u| u.starts_with(&s.issuer)),
        "no second sign-in: {seen}"
    );
    assert_eq!(seen["replay_status"], 400, "{seen}");
    assert_eq!(seen["sign_out_status"], 401, "signed out, userinfo: {seen}");
    // Signed out on app.example.com: wiki.example.org's session is gone too, and so is the
    // central one, so opening it goes through a sign-in at the provider.
    let after: Vec<&str> = urls(&seen, "after_sign_out_chain");
    assert!(
        after.iter().any(|u| u.starts_with(&s.issuer)),
        "signed out on app.example.com, wiki.example.org needs a sign-in again: {seen}"
    );
}

/// Regression: a session handed to wiki.example.org and due for refresh was sent to the central
/// host's /oauth2/refresh, whose cookies wiki.example.org never receives, so every page load
/// went round again. The refresh happens on the host itself, for its own domain.
#[tokio::test]
async fn refresh_of_a_handed_off_session_happens_on_its_own_domain() {
    let Some(s) = site_with(None, "  refresh: 1m\n").await else {
        return;
    };
    let url = |host: &str, p: &str| format!("http://{host}:{}{p}", s.port);
    let http = browser(s.port, &hosts());
    let (r, _) = browse(&http, &url("app.example.com", "/"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200);
    let (r, _) = browse(&http, &url("wiki.example.org", "/"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200);
    s.fw.clock.fetch_add(120, std::sync::atomic::Ordering::SeqCst);
    let (r, path) = browse(&http, &url("wiki.example.org", "/page"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(
        path.iter()
            .any(|u| u.starts_with(&url("wiki.example.org", "/oauth2/refresh?rd="))),
        "refreshed on wiki.example.org itself: {path:#?}"
    );
    // Refreshed: the next page load passes without a round.
    let (r, path) = browse(&http, &url("wiki.example.org", "/again"), &s.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert_eq!(path.len(), 1, "{path:#?}");
}
