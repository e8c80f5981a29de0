//! Real Caddy, HAProxy and Traefik with the shipped configurations.

use crate::util::*;

/// The same story through any forward-auth proxy.
async fn story(p: &Proc, fw: &Fw) {
    let http = client(&[("app.test", p.port)]);
    let url = |path: &str| format!("http://app.test:{}{path}", p.port);
    // A browser without a session goes to sign in, with the whole URL.
    let r = http.get(url("/docs?a=1&b=2")).page().sent().await;
    assert_eq!(r.status(), 302, "{}", p.logs());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        loc,
        format!(
            "http://app.test:{0}/oauth2/start?rd=http%3A%2F%2Fapp%2Etest%3A{0}%2Fdocs%3Fa%3D1%26b%3D2",
            p.port
        )
    );
    // An API client gets 401.
    let r = http
        .get(url("/api"))
        .header("accept", "application/json")
        .sent()
        .await;
    assert_eq!(r.status(), 401);
    // A valid session reaches the upstream with identity headers; the client's copy is replaced.
    let r = http
        .get(url("/x"))
        .header("cookie", fw.cookie(&alice()))
        .header("x-auth-request-user", "mallory")
        .sent()
        .await;
    assert_eq!(r.status(), 200, "{}", p.logs());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-user"], "alice-oid", "{body}");
    assert_eq!(body["headers"]["x-auth-request-groups"], "admins,staff");
    // forwarden's session cookie never reaches the app (it could replay it at every other app
    // behind this forwarden); the app's own cookies do.
    for (sent, expected) in [
        (
            format!("theme=dark; {}; lang=en", fw.cookie(&alice())),
            "theme=dark; lang=en",
        ),
        (fw.cookie(&alice()), ""),
    ] {
        let r = http.get(url("/x")).header("cookie", sent).sent().await;
        assert_eq!(r.status(), 200, "{}", p.logs());
        let body: serde_json::Value = r.json().await.unwrap();
        let cookie = body["headers"]
            .get("cookie")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        assert_eq!(cookie, expected, "{body}");
    }
    // Forbidden: 403 with forwarden's page.
    let r = http
        .get(url("/admin/"))
        .header("cookie", fw.cookie(&bob()))
        .page()
        .sent()
        .await;
    let page = forbidden_page(r, "bob@example.com").await;
    assert!(!page.contains("%0A"), "no escaped newlines on the page: {page}");
    // A public route: no identity, and the client's forged header never arrives as it was sent.
    let r = http
        .get(url("/public/x"))
        .header("x-auth-request-user", "mallory")
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let user = body["headers"]
        .get("x-auth-request-user")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    assert_eq!(user, "", "{body}");
    // A spoofed X-Original-URL is not believed on the forward-auth endpoint.
    let r = http
        .get(url("/admin/"))
        .header("cookie", fw.cookie(&bob()))
        .header("x-original-url", "http://app.test/public/")
        .sent()
        .await;
    assert_eq!(r.status(), 403);
    // Sign-out through the proxy reaches forwarden.
    let r = http.get(url("/oauth2/sign_out")).sent().await;
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("_forwarden=;"))
    );
}

#[tokio::test]
async fn caddy_forward_auth() {
    let fw = Fw::start(APP_POLICY).await;
    let up = echo_upstream().await;
    let Some(p) = caddy(fw.addr, up).await else { return };
    story(&p, &fw).await;
}

#[tokio::test]
async fn caddy_current_release_forward_auth() {
    let fw = Fw::start(APP_POLICY).await;
    let up = echo_upstream().await;
    let Some(p) = caddy_current(fw.addr, up).await else {
        return;
    };
    story(&p, &fw).await;
}

#[tokio::test]
async fn haproxy_lua_httpclient() {
    let fw = Fw::start(APP_POLICY).await;
    let up = echo_upstream().await;
    let Some(p) = haproxy(fw.addr, up).await else {
        return;
    };
    story(&p, &fw).await;
}

#[tokio::test]
async fn traefik_forward_auth() {
    let fw = Fw::start_with(APP_POLICY, "identity_jwt: {}\n").await;
    let up = echo_upstream().await;
    let Some(p) = traefik(fw.addr, up).await else {
        return;
    };
    story(&p, &fw).await;
    let http = client(&[("app.test", p.port)]);
    // Every header the shipped middleware copies reaches the upstream, the signed identity too.
    let r = http
        .get(format!("http://app.test:{}/x", p.port))
        .header("cookie", fw.cookie(&alice()))
        .sent()
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    for h in ["user", "email", "preferred-username", "groups", "roles"] {
        assert!(
            body["headers"].get(format!("x-auth-request-{h}")).is_some(),
            "{h}: {body}"
        );
    }
    assert!(
        body["headers"]["x-forwarden-jwt"]
            .as_str()
            .is_some_and(|j| j.len() > 100),
        "{body}"
    );
    // The stricter middleware on /admin/ lets the admins' group in.
    let r = http
        .get(format!("http://app.test:{}/admin/x", p.port))
        .header("cookie", fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 200, "{}", p.logs());
}
