//! Operating forwarden: audit logs, metrics, the signed identity JWT, and logs that never carry
//! a secret.

use std::time::Duration;

use forwarden::session::Keys;

use crate::util::*;

/// Everything a browser saw on the way: the final answer, the URLs, every Set-Cookie value.
struct Walk {
    status: u16,
    body: String,
    urls: Vec<String>,
    cookies: Vec<String>,
}

/// Follow redirects as a browser would (cookie jar in `http`), signing in as `user` at the test
/// provider with `login_hint`.
async fn walk(http: &reqwest::Client, start: &str, issuer: &str, user: &str) -> Walk {
    let mut url = start.to_string();
    let mut w = Walk {
        status: 0,
        body: String::new(),
        urls: Vec::new(),
        cookies: Vec::new(),
    };
    for _ in 0..15 {
        w.urls.push(url.clone());
        let r = http.get(&url).page().sent().await;
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
            if !value.is_empty() {
                w.cookies.push(value.to_string());
            }
        }
        if !r.status().is_redirection() {
            w.status = r.status().as_u16();
            w.body = r.text().await.unwrap();
            return w;
        }
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let mut next = url::Url::parse(&url).unwrap().join(&loc).unwrap().to_string();
        if next.starts_with(&format!("{issuer}/auth?")) {
            next.push_str(&format!("&login_hint={user}"));
        }
        url = next;
    }
    panic!("too many redirects: {:#?}", w.urls);
}

async fn wait_ready(http: &reqwest::Client, port: u16, p: &Proc) {
    for _ in 0..200 {
        let r = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("forwarden never became ready\n{}", p.logs());
}

/// Every string value in a JSON document (the tokens in the provider's answers).
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn full_sign_in_refresh_and_sign_out_leave_no_secret_in_the_logs() {
    let port = free_port();
    let Some(idp) = idp(&[app_at(port, "/oauth2/callback")]).await else {
        return;
    };
    let metrics_port = free_port();
    let policy = CONTOSO_POLICY;
    let config = format!(
        "{}metrics_listen: 127.0.0.1:{metrics_port}\naudit: all\nidentity_jwt: {{}}\n",
        oidc_config(
            &idp.issuer,
            "openid, profile, email, offline_access",
            &format!("  end_session: true\n{}", home_tenant())
        )
    );
    // Sessions are issued in whole seconds: 3 s leaves the walk back from a refresh 2 s or more
    // before the next one falls due.
    let fw = fw_process(policy, "  refresh: 3s\n", &config).await;
    let plain = client(&[]);
    wait_ready(&plain, fw.port, &fw).await;
    let up = echo_upstream().await;
    let fw_addr = std::net::SocketAddr::from(([127, 0, 0, 1], fw.port));
    let Some(nginx) = nginx_on(port, fw_addr, up, "").await else {
        return;
    };
    let http = browser(port, &["app.test"]);

    // Sign in, a forbidden page, a refresh at the provider, sign out.
    let start = app_at(port, "/docs?x=1");
    let signed_in = walk(&http, &start, &idp.issuer, "alice").await;
    assert_eq!(signed_in.status, 200, "{:#?}\n{}", signed_in.urls, nginx.logs());
    let upstream: serde_json::Value = serde_json::from_str(&signed_in.body).unwrap();
    let jwt = upstream["headers"]["x-forwarden-jwt"]
        .as_str()
        .unwrap()
        .to_string();
    let forbidden = walk(&http, &app_at(port, "/admin/"), &idp.issuer, "alice").await;
    assert_eq!(forbidden.status, 403);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let refreshed = walk(&http, &start, &idp.issuer, "alice").await;
    assert_eq!(refreshed.status, 200);
    assert!(
        refreshed.urls.iter().any(|u| u.contains("/oauth2/refresh?")),
        "{:#?}",
        refreshed.urls
    );
    let out = walk(&http, &app_at(port, "/oauth2/sign_out"), &idp.issuer, "alice").await;
    assert_eq!(out.status, 200, "{:#?}", out.urls);

    // What must never be logged.
    let mut secrets = vec![IDP_SECRET.to_string(), SECRET.to_string(), jwt];
    for w in [&signed_in, &forbidden, &refreshed, &out] {
        secrets.extend(w.cookies.iter().cloned());
        for u in &w.urls {
            let u = url::Url::parse(u).unwrap();
            if u.path() == "/oauth2/callback" {
                secrets.extend(
                    u.query_pairs()
                        .filter(|(k, _)| k == "code" || k == "state")
                        .map(|(_, v)| v.into_owned()),
                );
            }
        }
    }
    let issued: serde_json::Value = plain
        .get(format!(
            "{}/__test/tokens",
            idp.issuer.split("/72f9").next().unwrap()
        ))
        .json_answer()
        .await;
    let mut tokens = Vec::new();
    strings(&issued, &mut tokens);
    // Token values, not the short fields beside them ("Bearer", scopes).
    secrets.extend(tokens.into_iter().filter(|t| t.len() >= 20));
    assert!(
        secrets.len() >= 10,
        "the test saw cookies, codes and tokens: {}",
        secrets.len()
    );
    let logs = std::fs::read_to_string(fw.dir.path().join("stderr.log")).unwrap()
        + &std::fs::read_to_string(fw.dir.path().join("stdout.log")).unwrap();
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "debug logging was on:\n{logs}"
    );
    for s in &secrets {
        // Cookie chunks and tokens are long; any 16-byte piece of them would be a leak too.
        let probe = &s[..s.len().min(40)];
        assert!(
            !logs.contains(probe),
            "a secret ({}…) appears in the logs",
            &probe[..6]
        );
    }

    // One audit line per decision (audit: all), with who, what and why.
    let audit = audit_lines(&json_logs(&fw));
    let find = |result: &str, path: &str| {
        audit
            .iter()
            .find(|a| a["result"] == result && a["path"] == path)
            .unwrap_or_else(|| panic!("no {result} line for {path}: {audit:#?}"))
            .clone()
    };
    let login = find("login", "/docs");
    assert_eq!(login["user"], "-");
    assert_eq!(login["reason"], "login_required");
    let allow = find("allow", "/docs");
    assert_eq!(allow["user"], "00000001-aaaa-4bbb-8ccc-000000000001");
    assert_eq!(allow["email"], "alice@contoso.com");
    assert_eq!(allow["tenant"], IDP_TENANT);
    assert_eq!(allow["reason"], "allowed");
    assert!(
        allow["rule"].as_str().unwrap().ends_with("policy.yaml:2:3"),
        "{allow}"
    );
    let denied = find("forbidden", "/admin/");
    assert_eq!(
        audit.iter().filter(|a| a["path"] == "/admin/").count(),
        1,
        "nginx's 403 page does not log the decision twice: {audit:#?}"
    );
    assert_eq!(denied["host"], "app.test");
    assert_eq!(denied["method"], "GET");
    assert_eq!(denied["client_ip"], "127.0.0.1");
    assert_eq!(denied["reason"], "no_allow_matched");
    assert!(
        denied["route"].as_str().unwrap().ends_with("policy.yaml:3"),
        "{denied}"
    );
    let _ = find("refresh", "/docs");
    assert!(
        json_logs(&fw)
            .iter()
            .filter(|l| l["target"] == "forwarden::audit")
            .all(|l| l["timestamp"].is_string()),
        "every audit line has its time"
    );

    // The same story in the metrics.
    let text = get_text(&plain, &format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    assert_eq!(
        metric(&text, "forwarden_logins_total{result=\"success\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "forwarden_session_refreshes_total{result=\"ok\"}"),
        1.0,
        "{text}"
    );
    assert!(
        metric(&text, "forwarden_check_duration_seconds_count") >= 4.0,
        "{text}"
    );
    let forbidden_series = text
        .lines()
        .find(|l| l.starts_with("forwarden_decisions_total{result=\"forbidden\""))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(forbidden_series.contains("policy.yaml:3"), "{forbidden_series}");
}

async fn forward_auth(http: &reqwest::Client, port: u16, path: &str, cookie: &str) -> reqwest::Response {
    http.get(format!("http://127.0.0.1:{port}/oauth2/forward-auth"))
        .forwarded("http", "app.test", path)
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-for", "203.0.113.7")
        .header("cookie", cookie)
        .sent()
        .await
}

#[tokio::test]
async fn by_default_the_audit_log_has_every_refusal_and_no_plain_allow() {
    let fw = fw_process(APP_POLICY, "", "").await;
    let http = client(&[]);
    let cookie = cookie_with(&Keys::new(&[SECRET]), &bob(), now(), now() + 3600);
    assert_eq!(forward_auth(&http, fw.port, "/", &cookie).await.status(), 200);
    assert_eq!(
        forward_auth(&http, fw.port, "/admin", &cookie).await.status(),
        403
    );
    assert_eq!(forward_auth(&http, fw.port, "/", "").await.status(), 401);
    // Forwarded headers from an untrusted peer would not count; here the whole description is
    // missing, which is refused and audited too.
    let r = http
        .get(format!("http://127.0.0.1:{}/oauth2/auth", fw.port))
        .sent()
        .await;
    assert_eq!(r.status(), 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let audit = audit_lines(&json_logs(&fw));
    let results: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a["result"].as_str().unwrap(), a["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [("forbidden", "/admin"), ("login", "/"), ("forbidden", "-")],
        "{audit:#?}"
    );
    assert_eq!(audit[0]["user"], "bob-oid");
    assert_eq!(
        audit[0]["client_ip"], "203.0.113.7",
        "the proxy's client, not the proxy"
    );
    assert_eq!(audit[2]["reason"], "untrusted_request");
    let logs = std::fs::read_to_string(fw.dir.path().join("stderr.log")).unwrap();
    for (_, v) in cookie.split("; ").filter_map(|c| c.split_once('=')) {
        assert!(!logs.contains(&v[..32]), "a cookie value appears in the logs");
    }
}

#[tokio::test]
async fn metrics_count_decisions_reloads_and_provider_errors_on_their_own_listener() {
    // An identity provider nobody listens on: discovery fails and is counted.
    let dead = free_port();
    let extra = format!(
        "trusted_proxies: [127.0.0.1/32]\nmetrics_listen: 127.0.0.1:0\noidc:\n  issuer: http://127.0.0.1:{dead}/t/v2.0\n  client_id: c\n  client_secret: s\n"
    );
    let fw = Fw::start_with(APP_POLICY, &extra).await;
    let http = client(&[]);
    let cookie = fw.cookie(&bob());
    forward_auth(&http, fw.addr.port(), "/", &cookie).await;
    forward_auth(&http, fw.addr.port(), "/", &cookie).await;
    forward_auth(&http, fw.addr.port(), "/admin", &cookie).await;
    forward_auth(&http, fw.addr.port(), "/", "").await;
    // A broken policy is rejected (and counted), then a good one is loaded.
    let policy = fw.dir.path().join("policy.yaml");
    std::fs::write(&policy, "- from: http://app.test\n  allowed_userz: [x]\n").unwrap();
    let metrics = format!("http://{}/metrics", fw.metrics.unwrap());
    let scrape = || async {
        let r = http.get(&metrics).sent().await;
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
        );
        r.text().await.unwrap()
    };
    let mut text = String::new();
    for _ in 0..100 {
        text = scrape().await;
        if metric(&text, "forwarden_policy_reloads_total{result=\"failed\"}") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&policy, APP_POLICY.replace("example.com", "example.org")).unwrap();
    for _ in 0..100 {
        text = scrape().await;
        if metric(&text, "forwarden_policy_reloads_total{result=\"ok\"}") >= 1.0
            && metric(&text, "forwarden_provider_errors_total{operation=\"discovery\"}") >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let route = |line: u32| format!("{}:{line}", fw.dir.path().join("policy.yaml").display());
    assert_eq!(
        metric(
            &text,
            &format!(
                "forwarden_decisions_total{{result=\"allow\",route=\"{}\"}}",
                route(1)
            )
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "forwarden_decisions_total{{result=\"forbidden\",route=\"{}\"}}",
                route(3)
            )
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "forwarden_decisions_total{{result=\"login\",route=\"{}\"}}",
                route(1)
            )
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "forwarden_check_duration_seconds_count"),
        4.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "forwarden_policy_reloads_total{result=\"failed\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "forwarden_policy_reloads_total{result=\"ok\"}"),
        1.0,
        "{text}"
    );
    assert!(
        metric(&text, "forwarden_provider_errors_total{operation=\"discovery\"}") >= 1.0,
        "{text}"
    );
    // Series that have not happened yet are there at zero.
    for zero in [
        "forwarden_logins_total{result=\"success\"} 0",
        "forwarden_jwks_refreshes_total{result=\"failed\"} 0",
        "forwarden_session_refreshes_total{result=\"ended\"} 0",
    ] {
        assert!(text.lines().any(|l| l == zero), "{zero} missing:\n{text}");
    }
    // Never on the auth port, which proxies may expose.
    let r = http.get(fw.url("/metrics")).sent().await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn signed_identity_jwt_verifies_with_the_published_jwks_and_is_reused() {
    let fw = Fw::start_with(
        APP_POLICY,
        "trusted_proxies: [127.0.0.1/32]\nidentity_jwt:\n  header: X-Identity\n  lifetime: 2m\n",
    )
    .await;
    let http = client(&[]);
    let cookie = fw.cookie(&alice());
    let r = forward_auth(&http, fw.addr.port(), "/docs", &cookie).await;
    assert_eq!(r.status(), 200);
    let token = r.headers()["x-identity"].to_str().unwrap().to_string();
    let jwks: jsonwebtoken::jwk::JwkSet = http.get(fw.url("/.well-known/jwks.json")).json_answer().await;
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["app.test"]);
    v.set_issuer(&["http://app.test"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice-oid");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
    // Reused while it has more than half its life left; then signed anew.
    let again = forward_auth(&http, fw.addr.port(), "/other", &cookie).await;
    assert_eq!(again.headers()["x-identity"], token.as_str());
    fw.clock.fetch_add(61, std::sync::atomic::Ordering::SeqCst);
    let later = forward_auth(&http, fw.addr.port(), "/other", &cookie).await;
    assert_ne!(later.headers()["x-identity"], token.as_str());
    // No session (a public route): no token, and a client's own header does not pass through
    // forwarden (proxies copy only forwarden's answer headers).
    let public = forward_auth(&http, fw.addr.port(), "/public/x", "").await;
    assert_eq!(public.status(), 200);
    assert!(public.headers().get("x-identity").is_none());

    // Not configured: no JWKS.
    let plain = Fw::start(APP_POLICY).await;
    let r = http.get(plain.url("/.well-known/jwks.json")).sent().await;
    assert_eq!(r.status(), 404);
    let r = forward_auth(&http, plain.addr.port(), "/docs", &cookie).await;
    assert!(r.headers().get("x-forwarden-jwt").is_none());
}

#[tokio::test]
async fn sigterm_lets_a_sign_in_in_flight_finish_and_refuses_new_connections() {
    let port = free_port();
    let Some(idp) = idp(&[format!("http://127.0.0.1:{port}/oauth2/callback")]).await else {
        return;
    };
    let config = oidc_config(&idp.issuer, "openid, profile, email", &home_tenant());
    let mut fw = fw_process_on(port, APP_POLICY, "", &config).await;
    let http = browser(port, &[]);
    wait_ready(&http, port, &fw).await;
    // Start a sign-in and follow it to the callback, without visiting the callback yet.
    let start = format!("http://127.0.0.1:{port}/oauth2/start?rd=/");
    let callback = to_callback(&http, &start, &idp.issuer, "alice").await;
    // The provider's token endpoint now answers 1.5 s late: the callback is in flight when
    // SIGTERM arrives.
    let base = idp.issuer.split("/72f9").next().unwrap().to_string();
    http.get(format!("{base}/__test/slow-token?ms=1500")).sent().await;
    let in_flight = tokio::spawn({
        let http = http.clone();
        async move { http.get(&callback).send().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &fw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "no new connections after SIGTERM"
    );
    let r = in_flight
        .await
        .unwrap()
        .expect("the sign-in in flight gets its answer");
    assert_eq!(r.status(), 302, "{}", fw.logs());
    assert_eq!(r.headers()["location"], "/");
    assert!(r.headers().get_all("set-cookie").iter().count() >= 1);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = fw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "forwarden did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(fw.logs().contains("stopped"));
}
