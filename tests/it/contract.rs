//! Proxy contracts without the proxy: exactly the headers Traefik and ingress-nginx send
//! (Traefik itself runs the shipped configuration in `proxies.rs`).

use crate::util::*;

/// The proxy tests' policy, on https://app.example.com.
fn policy() -> String {
    app_policy_https("").replace("app.test", "app.example.com")
}

/// What Traefik's forwardAuth sends: Host is the auth server, the original request is in
/// X-Forwarded-*, and the client's own headers (cookies, Accept, anything forged) come along.
fn traefik(http: &reqwest::Client, fw: &Fw, query: &str, uri: &str) -> reqwest::RequestBuilder {
    http.get(fw.url(&format!("/oauth2/forward-auth{query}")))
        .header("x-forwarded-method", "GET")
        .forwarded("https", "app.example.com", uri)
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-real-ip", "203.0.113.7")
        .header("user-agent", "Mozilla/5.0")
}

#[tokio::test]
async fn caddy_style_subrequest_with_original_host_and_query() {
    // Caddy keeps the original Host on the subrequest; the shipped Caddyfile's
    // `uri /oauth2/forward-auth?` clears the client's query from it.
    let fw = Fw::start(&policy()).await;
    let http = client(&[("app.example.com", fw.addr.port())]);
    let ask = |query: &str| {
        http.get(format!(
            "http://app.example.com:{}/oauth2/forward-auth{query}",
            fw.addr.port()
        ))
        .header("host", "app.example.com")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-uri", "/docs?a=1&b=2")
        .page()
    };
    let r = ask("").sent().await;
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://app.example.com/oauth2/start?rd=")
    );
    // The attack: a proxy that copies the client's query onto the auth request lets the client
    // write the location's narrowing and pin (`?host=<a public host>`). A copied query is
    // refused, whatever it holds.
    let r = ask("?a=1&b=2").sent().await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn ingress_nginx_auth_url_contract() {
    let fw = Fw::start(&policy()).await;
    let http = client(&[]);
    // What ingress-nginx's auth subrequest carries.
    let ingress = |uri: &str| {
        http.get(fw.url("/oauth2/auth"))
            .header("x-original-url", format!("https://app.example.com{uri}"))
            .header("x-original-method", "GET")
            .header("x-sent-from", "nginx-ingress-controller")
            .header("x-real-ip", "203.0.113.7")
            .header("x-forwarded-for", "203.0.113.7")
            .header("x-auth-request-redirect", uri.to_string())
    };
    let r = ingress("/docs?a=1&b=2").sent().await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["x-forwarden-login"],
        "/oauth2/start?rd=https%3A%2F%2Fapp%2Eexample%2Ecom%2Fdocs%3Fa%3D1%26b%3D2"
    );
    let r = ingress("/x").header("cookie", fw.cookie(&alice())).sent().await;
    assert_eq!(r.status(), 200);
    let r = ingress("/admin/")
        .header("cookie", fw.cookie(&bob()))
        .sent()
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn auth_endpoint_only_ever_answers_200_401_403() {
    let fw = Fw::start(&policy()).await;
    let http = client(&[]);
    let cases: Vec<reqwest::RequestBuilder> = vec![
        http.get(fw.url("/oauth2/auth")),
        http.get(fw.url("/oauth2/auth"))
            .header("x-forwarded-uri", "not-a-path"),
        http.get(fw.url("/oauth2/auth")).header("x-original-url", "::::"),
        http.get(fw.url("/oauth2/auth"))
            .header("x-forwarded-uri", "/")
            .header("x-forwarded-host", "bad host"),
        http.get(fw.url("/oauth2/auth"))
            .header("x-forwarded-uri", "/")
            .header("x-forwarded-host", "a.test")
            .header("x-forwarded-method", "G E T"),
        http.get(fw.url("/oauth2/auth"))
            .header("x-forwarded-uri", "/")
            .header("x-forwarded-host", "app.example.com")
            .header("cookie", "_forwarden=%%%"),
    ];
    for c in cases {
        let s = c.sent().await.status().as_u16();
        assert!([200, 401, 403].contains(&s), "{s}");
    }
}

#[tokio::test]
async fn sign_out_clears_every_session_cookie() {
    let fw = Fw::start(&policy()).await;
    let r = client(&[]).get(fw.url("/oauth2/sign_out")).sent().await;
    assert_eq!(r.status(), 302);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    for name in ["_forwarden=", "_forwarden_0=", "_forwarden_7="] {
        let c = cookies
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("{name} {cookies:?}"));
        assert!(
            c.contains("Max-Age=0") && c.contains("HttpOnly") && c.contains("SameSite=Lax"),
            "{c}"
        );
    }
}

/// Regression: with the provider not discovered yet, `/oauth2/auth` sent a page load due for
/// refresh to `/oauth2/refresh`, which sent it straight back: a redirect loop.
#[tokio::test]
async fn refresh_due_while_the_provider_is_unreachable_is_no_redirect_loop() {
    let extra = "trusted_proxies: [127.0.0.1/32]\noidc:\n  issuer: http://127.0.0.1:9/x/v2.0\n  client_id: x\n  client_secret: not-used-secret\n";
    let fw = Fw::start_full(&policy(), "  refresh: 1h\n", extra).await;
    let keys = forwarden::session::Keys::new(&[SECRET]);
    let s = forwarden::session::Session {
        identity: alice(),
        issued_at: now() - 7200,
        expires_at: now() + 3600,
        refresh_token: Some("rt".into()),
    };
    let cookie: Vec<String> = forwarden::session::seal(&s, &keys, "_forwarden", [5; 12])
        .into_iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let cookie = cookie.join("; ");
    let http = client(&[]);
    // Nothing can be refreshed while the provider is unknown: the still-valid session passes.
    let r = traefik(&http, &fw, "", "/docs?a=1")
        .header("cookie", &cookie)
        .page()
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    // A browser that arrives at /oauth2/refresh anyway goes back to its page with the session
    // kept (refresh postponed), never to sign-in and never back to /oauth2/refresh.
    let r = http
        .get(fw.url("/oauth2/refresh?rd=/docs"))
        .header("host", "app.example.com")
        .header("cookie", &cookie)
        .sent()
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/docs");
    let set: Vec<&str> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|c| c.starts_with("_forwarden=") && !c.contains("Max-Age=0"))
        .collect();
    assert_eq!(set.len(), 1, "the session is set again, postponed: {set:?}");
}

/// The listener answers the check endpoints without the router (every request a proxy passes
/// asks one of them). Each answer must be the router's own: for every method, both endpoints
/// and each verdict (allow, sign in, refusal, undescribable), the same status, headers (but the
/// `Date` hyper adds) and body, and no body for `HEAD`.
#[tokio::test]
async fn check_endpoints_answered_without_the_router_answer_as_the_router_does() {
    use tower::ServiceExt;
    let fw = Fw::start(&policy()).await;
    let http = client(&[]);
    let cookie = fw.cookie(&alice());
    let cases: [(&str, &[(&str, &str)]); 5] = [
        (
            "allowed",
            &[("cookie", &cookie), ("x-forwarded-host", "app.example.com")],
        ),
        (
            "sign in",
            &[("accept", "text/html"), ("x-forwarded-host", "app.example.com")],
        ),
        (
            "refused",
            &[("cookie", &cookie), ("x-forwarded-host", "other.example.com")],
        ),
        (
            "sign in, API",
            &[
                ("cookie", "_forwarden=%%%; theme=dark"),
                ("x-forwarded-host", "app.example.com"),
            ],
        ),
        ("undescribable", &[("x-forwarded-host", "bad host")]),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for endpoint in ["/oauth2/auth", "/oauth2/forward-auth"] {
        for method in ["GET", "HEAD", "POST", "OPTIONS", "DELETE"] {
            for (what, headers) in &cases {
                let base = [("x-forwarded-proto", "https"), ("x-forwarded-uri", "/docs?a=1")];
                let all = || base.iter().chain(headers.iter());
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                let mut served = http.request(method.clone(), fw.url(endpoint));
                let mut routed = axum::http::Request::builder()
                    .method(method.as_str())
                    .uri(endpoint);
                for (k, v) in all() {
                    served = served.header(*k, *v);
                    routed = routed.header(*k, *v);
                }
                let served = served.sent().await;
                let mut routed = routed.body(axum::body::Body::empty()).unwrap();
                routed
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                        [127, 0, 0, 1],
                        40000,
                    ))));
                let routed = forwarden::http::router(fw.state.clone())
                    .oneshot(routed)
                    .await
                    .unwrap();
                let case = format!("{method} {endpoint}, {what}");
                assert_eq!(served.status().as_u16(), routed.status().as_u16(), "{case}");
                statuses.insert(served.status().as_u16());
                let headers_of = |h: &axum::http::HeaderMap| {
                    let mut v: Vec<(String, String)> = h
                        .iter()
                        .filter(|(k, _)| *k != "date")
                        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                        .collect();
                    v.sort();
                    v
                };
                let routed_headers = headers_of(routed.headers());
                let routed_body = axum::body::to_bytes(routed.into_body(), 1 << 20).await.unwrap();
                assert_eq!(headers_of(served.headers()), routed_headers, "{case}");
                let served_body = served.bytes().await.unwrap();
                assert_eq!(served_body, routed_body, "{case}");
                if method == reqwest::Method::HEAD {
                    assert!(served_body.is_empty(), "{case}");
                }
            }
        }
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [200, 302, 401, 403]);
}
