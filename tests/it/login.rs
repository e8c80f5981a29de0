//! Sign-in end to end: a protected URL behind real nginx, the real identity provider, and back.

use std::time::Duration;

use crate::util::*;

#[tokio::test]
async fn central_mode_one_callback_for_every_app() {
    let port = free_port();
    let Some(idp) = idp(&[format!("http://auth.example.test:{port}/oauth2/callback")]).await else {
        return;
    };
    let policy = "\
- from: http://app.example.test
  allowed_domains: [contoso.com]
- from: http://wiki.example.test
  allowed_domains: [contoso.com]
";
    let extra = format!(
        "public_url: http://auth.example.test:{port}\nallowed_redirect_domains: [.example.test]\noidc:\n  issuer: {}\n  client_id: {IDP_CLIENT}\n  client_secret: {IDP_SECRET}\n  scopes: [openid, profile, email]\n  azure:\n    allowed_tenants: [{IDP_TENANT}]\n",
        idp.issuer
    );
    let fw = Fw::start_full(policy, "  domain: .example.test\n", &extra).await;
    let Some(nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let http = browser(
        port,
        &["app.example.test", "wiki.example.test", "auth.example.test"],
    );
    let start = format!("http://app.example.test:{port}/docs?a=1&b=2");
    let (r, path) = browse(&http, &start, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}\n{}", nginx.logs());
    assert_eq!(path.last().unwrap(), &start);
    assert!(
        path.iter()
            .any(|u| u.starts_with(&format!("http://auth.example.test:{port}/oauth2/start?rd="))),
        "{path:#?}"
    );
    assert!(
        path.iter()
            .any(|u| u.starts_with(&format!("http://auth.example.test:{port}/oauth2/callback?"))),
        "{path:#?}"
    );
    // The session (cookie domain .example.test) opens the other app without signing in again.
    let r = http.get(format!("http://wiki.example.test:{port}/")).sent().await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-email"], "alice@contoso.com");
}

#[tokio::test]
async fn protected_url_to_provider_and_back_through_nginx() {
    let port = free_port();
    let callback = app_at(port, "/oauth2/callback");
    let Some(idp) = idp(&[callback]).await else { return };
    let policy = "\
- from: http://app.test
  allowed_domains: [contoso.com]
- from: http://app.test
  prefix: /admin
  allowed_groups: [000003e9-aaaa-4bbb-8ccc-0000000003e9]
- from: http://app.test
  prefix: /ops
  allowed_roles: [Admin]
";
    let extra = oidc_config(
        &idp.issuer,
        "openid, profile, email",
        &format!("  end_session: true\n{}", home_tenant()),
    );
    let fw = Fw::start_with(policy, &extra).await;
    let provider = fw.state.providers[0].clone();
    for _ in 0..100 {
        if provider.ready().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        provider.ready().is_some(),
        "provider never discovered: {}",
        idp.proc.logs()
    );
    let up = echo_upstream().await;
    let Some(nginx) = nginx_on(port, fw.addr, up, "").await else {
        return;
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .resolve("app.test", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .no_proxy()
        .build()
        .unwrap();

    // Alice: the protected URL, the provider, and back at the URL she asked for.
    let start = app_at(port, "/docs/page?a=1&b=two");
    let (r, path) = browse(&http, &start, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}\n{}{}", nginx.logs(), idp.proc.logs());
    assert_eq!(
        path.last().unwrap(),
        &start,
        "back at the original URL, query intact"
    );
    let body: serde_json::Value = r.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(h["x-auth-request-user"], "00000001-aaaa-4bbb-8ccc-000000000001");
    assert_eq!(h["x-auth-request-email"], "alice@contoso.com");
    assert_eq!(h["x-auth-request-groups"], "000003e9-aaaa-4bbb-8ccc-0000000003e9");
    assert_eq!(h["x-auth-request-roles"], "Reader,Admin");
    // Her group opens /admin.
    let r = http.get(app_at(port, "/admin/")).sent().await;
    assert_eq!(r.status(), 200);

    // Who am I.
    let r = http.get(app_at(port, "/oauth2/userinfo")).sent().await;
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["email"], "alice@contoso.com");
    assert_eq!(me["tenant"], IDP_TENANT);
    let r = http.get(fw.url("/readyz")).sent().await;
    assert_eq!(r.status(), 200);

    // Sign-out: an open redirect in rd falls back to this host's root, the session cookies are
    // cleared, and the browser continues to the provider's end-session endpoint, which accepts
    // the registered post_logout_redirect_uri.
    let r = http
        .get(app_at(port, "/oauth2/sign_out?rd=//evil.com/"))
        .sent()
        .await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let expected = format!(
        "{}/session/end?client_id={IDP_CLIENT}&post_logout_redirect_uri=http%3A%2F%2Fapp.test%3A{port}%2F&logout_hint=O.hint-alice",
        idp.issuer
    );
    assert_eq!(loc, expected);
    let cleared = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter(|c| c.to_str().unwrap().contains("Max-Age=0"))
        .count();
    assert!(cleared >= 2);
    assert_eq!(
        http.get(&loc).sent().await.status(),
        200,
        "the provider accepts the logout request"
    );
    let r = http.get(app_at(port, "/docs")).sent().await;
    assert_eq!(r.status(), 302, "signed out");

    // Bob, in another browser: signed in, but /admin is not for him.
    let bob = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .resolve("app.test", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .no_proxy()
        .build()
        .unwrap();
    let (r, _) = browse(&bob, &app_at(port, "/admin/"), &idp.issuer, "bob").await;
    assert_eq!(r.status(), 403);

    // A callback this browser did not start: a clear page, no session.
    let fresh = client(&[("app.test", port)]);
    let r = fresh
        .get(format!(
            "http://app.test:{port}/oauth2/callback?code=x&state=forged"
        ))
        .sent()
        .await;
    assert_eq!(r.status(), 400);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("state mismatch") && page.contains("/oauth2/start"),
        "{page}"
    );

    // The provider's own error.
    let r = fresh
        .get(format!(
            "http://app.test:{port}/oauth2/callback?error=access_denied&error_description=User%20cancelled"
        ))
        .sent()
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("User cancelled"));
}

#[tokio::test]
async fn start_rejects_open_redirects_and_answers_503_without_provider() {
    let fw = Fw::start(APP_POLICY).await;
    let r = client(&[])
        .get(fw.url("/oauth2/start?rd=https://evil.com/"))
        .sent()
        .await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("no identity provider"));
}

#[tokio::test]
async fn unreachable_provider_keeps_sessions_and_its_details_stay_off_the_public_page() {
    let port = free_port();
    let extra = format!(
        "trusted_proxies: [127.0.0.1/32]\noidc:\n  issuer: http://127.0.0.1:{port}/nowhere/v2.0\n  client_id: x\n  client_secret: not-used-secret\n"
    );
    let fw = Fw::start_with(APP_POLICY, &extra).await;
    let http = client(&[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = http.get(fw.url("/readyz")).sent().await;
    assert_eq!(r.status(), 503);
    let ready = r.text().await.unwrap();
    assert!(ready.contains("identity provider"), "{ready}");
    // Why, not only that, for the operator: the cause under reqwest's "error sending request".
    assert!(ready.contains("Connection refused"), "{ready}");
    let r = http
        .get(fw.url("/oauth2/start"))
        .header("host", "app.test")
        .sent()
        .await;
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(page.contains("cannot reach the identity provider"), "{page}");
    // The public page does not describe the inside of the deployment: neither the provider's
    // address nor the network error.
    for inside in ["Connection refused", "127.0.0.1", "nowhere"] {
        assert!(!page.contains(inside), "{inside} in {page}");
    }
    // An existing session still passes.
    let r = http
        .get(fw.url("/oauth2/auth"))
        .forwarded("http", "app.test", "/x")
        .header("cookie", fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn group_overage_fetches_every_group_from_graph_and_fails_closed() {
    let (good, bad) = (free_port(), free_port());
    let callbacks = [good, bad].map(|p| format!("http://app.test:{p}/oauth2/callback"));
    let Some(idp) = idp(&callbacks).await else { return };
    let idp_origin = idp
        .issuer
        .split(&format!("/{IDP_TENANT}"))
        .next()
        .unwrap()
        .to_string();
    // The 250th group, which only Graph knows about.
    let policy = "\
- from: http://app.test
  allowed_domains: [contoso.com]
- from: http://app.test
  prefix: /admin
  allowed_groups: [000008ca-aaaa-4bbb-8ccc-0000000008ca]
";
    let config = |graph: &str| {
        format!(
            "trusted_proxies: [127.0.0.1/32]\noidc:\n  issuer: {}\n  client_id: {IDP_CLIENT}\n  client_secret: {IDP_SECRET}\n  scopes: [openid, profile, email]\n  azure:\n    allowed_tenants: [{IDP_TENANT}]\n    graph_url: {graph}\n",
            idp.issuer
        )
    };
    let dave_opens_admin = async |fw: &Fw, port: u16| {
        let nginx = fw.behind_nginx(port).await?;
        let http = browser(port, &["app.test"]);
        let url = app_at(port, "/admin/");
        let (r, path) = browse(&http, &url, &idp.issuer, "dave").await;
        Some((nginx, http, r, path))
    };

    // Graph answers: all 250 groups, and the 250th opens /admin.
    let fw = Fw::start_with(policy, &config(&format!("{idp_origin}/graph"))).await;
    let Some((_nginx, _, r, path)) = dave_opens_admin(&fw, good).await else {
        return;
    };
    assert_eq!(r.status(), 200, "{path:#?}\n{}", idp.proc.logs());
    let body: serde_json::Value = r.json().await.unwrap();
    let groups = body["headers"]["x-auth-request-groups"].as_str().unwrap();
    assert_eq!(groups.split(',').count(), 250);

    // Graph unreachable: Dave signs in, his domain rule still allows, his group rule denies.
    let closed = free_port();
    let fw2 = Fw::start_with(policy, &config(&format!("http://127.0.0.1:{closed}/graph"))).await;
    let Some((_nginx2, http, r, _)) = dave_opens_admin(&fw2, bad).await else {
        return;
    };
    assert_eq!(r.status(), 403);
    let r = http.get(format!("http://app.test:{bad}/docs")).sent().await;
    assert_eq!(r.status(), 200);
}

/// Alice signed in through nginx with the test provider, `cookie.refresh` set.
struct RefreshSetup {
    idp: Idp,
    fw: Fw,
    nginx: Proc,
    http: reqwest::Client,
    port: u16,
    /// The page she opened.
    url: String,
}

async fn signed_in_with_refresh(refresh: &str, path: &str) -> Option<RefreshSetup> {
    let port = free_port();
    let idp = idp(&[app_at(port, "/oauth2/callback")]).await?;
    let extra = oidc_config(
        &idp.issuer,
        "openid, profile, email, offline_access",
        &home_tenant(),
    );
    let policy = "- from: http://app.test\n  allowed_domains: [contoso.com]\n";
    let fw = Fw::start_full(policy, &format!("  refresh: {refresh}\n"), &extra).await;
    let nginx = fw.behind_nginx(port).await?;
    let http = browser(port, &["app.test"]);
    let url = format!("http://app.test:{port}{path}");
    let (r, seen) = browse(&http, &url, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{seen:#?}\n{}", nginx.logs());
    Some(RefreshSetup {
        idp,
        fw,
        nginx,
        http,
        port,
        url,
    })
}

#[tokio::test]
async fn refresh_rereads_the_session_and_a_disabled_account_loses_access() {
    let Some(RefreshSetup {
        idp,
        fw,
        nginx: _nginx,
        http,
        port,
        url,
    }) = signed_in_with_refresh("1s", "/docs?a=1").await
    else {
        return;
    };
    let me = |http: reqwest::Client| async move {
        let r = http.get(app_at(port, "/oauth2/userinfo")).sent().await;
        r.json::<serde_json::Value>().await.unwrap()
    };
    let first = me(http.clone()).await["issued_at"].as_u64().unwrap();

    // Time passes for forwarden (its clock is the test's to move).
    fw.clock.fetch_add(2, std::sync::atomic::Ordering::SeqCst);
    // An API call passes on the still-valid session, without a redirect.
    let r = http.get(&url).header("accept", "application/json").sent().await;
    assert_eq!(r.status(), 200);
    // A page load goes through /oauth2/refresh (the provider, by refresh token) and back.
    let (r, path) = browse(&http, &url, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(
        path[1].starts_with(&app_at(port, "/oauth2/refresh?rd=")),
        "{path:#?}"
    );
    assert_eq!(path.len(), 3, "no interactive sign-in: {path:#?}");
    assert!(
        me(http.clone()).await["issued_at"].as_u64().unwrap() > first,
        "a new session was set"
    );

    // The account is disabled at the provider: the next refresh fails, the session ends, and
    // signing in again is refused.
    let disable = format!(
        "{}/__test/disable?user=alice",
        idp.issuer.split(&format!("/{IDP_TENANT}")).next().unwrap()
    );
    assert_eq!(client(&[]).get(&disable).sent().await.status(), 204);
    fw.clock.fetch_add(2, std::sync::atomic::Ordering::SeqCst);
    let (r, path) = browse(&http, &url, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 403, "{path:#?}");
    assert!(path.iter().any(|p| p.contains("/oauth2/start?rd=")), "{path:#?}");
    assert!(r.text().await.unwrap().contains("disabled"));
    let r = http.get(app_at(port, "/oauth2/userinfo")).sent().await;
    assert_eq!(r.status(), 401, "the session is gone");
}

/// Regression: a network error or a 5xx from the token endpoint during refresh ended the
/// session. Only a refusal of the refresh token (`invalid_grant`) may; on trouble the
/// still-valid session stays and the refresh is tried again later, without a redirect loop.
#[tokio::test]
async fn provider_trouble_during_refresh_keeps_the_session() {
    let Some(RefreshSetup {
        idp,
        fw,
        nginx: _nginx,
        http,
        port,
        url,
    }) = signed_in_with_refresh("100s", "/docs").await
    else {
        return;
    };
    let control = idp
        .issuer
        .split(&format!("/{IDP_TENANT}"))
        .next()
        .unwrap()
        .to_string();
    let fail = format!("{control}/__test/fail-token?status=503&count=1");
    assert_eq!(client(&[]).get(&fail).sent().await.status(), 204);
    fw.clock.fetch_add(101, std::sync::atomic::Ordering::SeqCst);
    // The refresh meets a 503: the page still loads on the kept session, through
    // /oauth2/refresh once and back, never to sign-in.
    let (r, path) = browse(&http, &url, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert_eq!(path.len(), 3, "{path:#?}");
    assert!(path[1].contains("/oauth2/refresh?rd="), "{path:#?}");
    // Postponed: the next page load does not try again at once.
    let (r, path) = browse(&http, &url, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200);
    assert_eq!(path.len(), 1, "no refresh before the retry time: {path:#?}");
    // After the retry time the provider answers again and the session is renewed.
    fw.clock.fetch_add(61, std::sync::atomic::Ordering::SeqCst);
    let (r, path) = browse(&http, &url, &idp.issuer, "alice").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    assert!(path[1].contains("/oauth2/refresh?rd="), "{path:#?}");
    let me = http
        .get(app_at(port, "/oauth2/userinfo"))
        .sent()
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        me["issued_at"].as_u64(),
        Some(fw.clock.load(std::sync::atomic::Ordering::SeqCst))
    );
}

#[tokio::test]
async fn key_rotation_at_the_provider_is_followed_by_one_refetch() {
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    let extra = oidc_config(&idp.issuer, "openid, email", "");
    let fw = Fw::start_with(
        "- from: http://app.test\n  allowed_domains: [contoso.com]\n",
        &extra,
    )
    .await;
    fw.discovered().await;
    let provider = fw.state.providers[0].clone();
    let old_kids: Vec<String> = provider
        .ready()
        .unwrap()
        .keys
        .keys()
        .set
        .keys()
        .iter()
        .filter_map(|k| openidconnect::JsonWebKey::key_id(k).map(|id| id.to_string()))
        .collect();
    // The provider now signs with a key forwarden has not seen.
    let rotate = format!(
        "{}/__test/rotate",
        idp.issuer.split(&format!("/{IDP_TENANT}")).next().unwrap()
    );
    assert_eq!(client(&[]).get(&rotate).sent().await.status(), 204);
    let up = echo_upstream().await;
    let Some(_nginx) = nginx_on(port, fw.addr, up, "").await else {
        return;
    };
    let http = browser(port, &["app.test"]);
    let (r, path) = browse(&http, &app_at(port, "/x"), &idp.issuer, "carol").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    let new_kids: Vec<String> = provider
        .ready()
        .unwrap()
        .keys
        .keys()
        .set
        .keys()
        .iter()
        .filter_map(|k| openidconnect::JsonWebKey::key_id(k).map(|id| id.to_string()))
        .collect();
    assert_ne!(old_kids, new_kids, "the keys were refetched");
}

#[tokio::test]
async fn organizations_authority_second_tenant_and_noauth() {
    let (one, both) = (free_port(), free_port());
    let callbacks = [one, both].map(|p| format!("http://app.test:{p}/oauth2/callback"));
    let Some(idp) = idp(&callbacks).await else { return };
    let origin = idp
        .issuer
        .split(&format!("/{IDP_TENANT}"))
        .next()
        .unwrap()
        .to_string();
    let orgs = format!("{origin}/organizations/v2.0");
    const TENANT2: &str = "11111111-2222-4333-8444-555555555555";
    let policy = "\
- from: http://app.test
  allowed_users: [alice@contoso.com]
- from: http://app.test
  prefix: /team
  allow_any_authenticated_user: true
";
    let config = |tenants: &str| {
        format!(
            "trusted_proxies: [127.0.0.1/32]\noidc:\n  issuer: {orgs}\n  client_id: {IDP_CLIENT}\n  client_secret: {IDP_SECRET}\n  scopes: [openid, profile, email]\n  azure:\n    allowed_tenants: [{tenants}]\n"
        )
    };
    let up = echo_upstream().await;

    // Only the first tenant is allowed: a user of the second cannot sign in.
    let fw = Fw::start_with(policy, &config(IDP_TENANT)).await;
    fw.discovered().await;
    let Some(_n1) = nginx_on(one, fw.addr, up, "").await else {
        return;
    };
    let (r, path) = browse(
        &browser(one, &["app.test"]),
        &format!("http://app.test:{one}/team/"),
        &orgs,
        "erin",
    )
    .await;
    assert_eq!(r.status(), 403, "{path:#?}");
    assert!(r.text().await.unwrap().contains("organization may not sign in"));
    let (r, _) = browse(
        &browser(one, &["app.test"]),
        &format!("http://app.test:{one}/"),
        &orgs,
        "alice",
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "a first-tenant user signs in through the organizations authority"
    );

    // Both tenants allowed: Erin signs in; Mallory's unverified email names Alice's address,
    // but it does not count, so Alice's rule does not let her in (nOAuth).
    let fw2 = Fw::start_with(policy, &config(&format!("{IDP_TENANT}, {TENANT2}"))).await;
    fw2.discovered().await;
    let Some(_n2) = nginx_on(both, fw2.addr, up, "").await else {
        return;
    };
    let erin = browser(both, &["app.test"]);
    let (r, path) = browse(&erin, &format!("http://app.test:{both}/team/"), &orgs, "erin").await;
    assert_eq!(r.status(), 200, "{path:#?}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-email"], "erin@fabrikam.com");
    let mallory = browser(both, &["app.test"]);
    let (r, _) = browse(&mallory, &format!("http://app.test:{both}/"), &orgs, "mallory").await;
    assert_eq!(
        r.status(),
        403,
        "an unverified email of another tenant never matches the victim's rule"
    );
    let me = get_json(&mallory, &format!("http://app.test:{both}/oauth2/userinfo")).await;
    assert_eq!(me["tenant"], TENANT2);
    assert_eq!(
        me["email"], "mallory@fabrikam.com",
        "her own tenant's UPN, not the claimed address"
    );
}

#[tokio::test]
async fn several_tabs_sign_in_at_once_and_an_expired_login_is_explained() {
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    let extra = oidc_config(&idp.issuer, "openid, email", "");
    let fw = Fw::start_with(
        "- from: http://app.test\n  allowed_domains: [contoso.com]\n",
        &extra,
    )
    .await;
    let Some(_nginx) = fw.behind_nginx(port).await else {
        return;
    };
    let http = browser(port, &["app.test"]);
    // Three tabs start signing in; they come back in another order. Each lands where it began.
    let tabs: Vec<String> = (1..=3)
        .map(|i| format!("http://app.test:{port}/tab{i}"))
        .collect();
    let mut callbacks = Vec::new();
    for t in &tabs {
        callbacks.push(to_callback(&http, t, &idp.issuer, "alice").await);
    }
    for i in [2, 0, 1] {
        let r = http.get(&callbacks[i]).sent().await;
        assert_eq!(r.status(), 302, "tab {i}");
        assert_eq!(r.headers()["location"].to_str().unwrap(), tabs[i]);
    }
    // One login cookie for all of them, never one per attempt.
    let cookies = fw.state.config.cookie.name.clone() + "_login";
    let r = http.get(app_at(port, "/oauth2/start?rd=/x")).sent().await;
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        set.iter().filter(|c| c.starts_with(&cookies)).count(),
        1,
        "{set:?}"
    );

    // A login that took longer than ten minutes (another browser, not signed in yet).
    let slow = browser(port, &["app.test"]);
    let late = to_callback(&slow, &app_at(port, "/late"), &idp.issuer, "alice").await;
    fw.clock.fetch_add(601, std::sync::atomic::Ordering::SeqCst);
    let r = slow.get(&late).sent().await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("took too long"));
}

#[tokio::test]
async fn a_failed_key_refetch_keeps_the_last_good_keys() {
    let Some(idp) = idp(&["http://app.test/oauth2/callback".to_string()]).await else {
        return;
    };
    let extra = format!(
        "oidc:\n  issuer: {}\n  client_id: {IDP_CLIENT}\n  client_secret: {IDP_SECRET}\n",
        idp.issuer
    );
    let fw = Fw::start_with(APP_POLICY, &extra).await;
    fw.discovered().await;
    let provider = fw.state.providers[0].clone();
    let before = provider.ready().unwrap().keys.keys().set.keys().len();
    assert!(before > 0);
    drop(idp); // the provider goes away
    assert!(!provider.refetch_jwks().await, "the refetch fails");
    assert_eq!(
        provider.ready().unwrap().keys.keys().set.keys().len(),
        before,
        "the last good keys stay"
    );
    assert!(!provider.refetch_jwks().await, "and is rate-limited");
}
