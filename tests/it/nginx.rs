//! Real nginx with the shipped includes (`nginx/`).

use forwarden::identity::Identity;

use crate::util::*;

/// A location restricted further by the proxy itself.
const NARROW: &str = "    location /narrow/ {\n      set $forwarden_args \"allowed_groups=admins\";\n      include NGINX/forwarden-location.conf;\n      proxy_pass http://app;\n    }\n";

struct Setup {
    fw: Fw,
    nginx: Proc,
    http: reqwest::Client,
}

async fn setup() -> Option<Setup> {
    let fw = Fw::start(APP_POLICY).await;
    let up = echo_upstream().await;
    let narrow = NARROW.replace("NGINX", &repo().join("nginx").display().to_string());
    let nginx = nginx(fw.addr, up, &narrow).await?;
    let http = client(&[("app.test", nginx.port)]);
    Some(Setup { fw, nginx, http })
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("http://app.test:{}{path}", self.nginx.port)
    }

    /// GET `path` through nginx, signed in as `user` when given.
    fn get(&self, path: &str, user: Option<&Identity>) -> reqwest::RequestBuilder {
        let r = self.http.get(self.url(path));
        match user {
            Some(u) => r.header("cookie", self.fw.cookie(u)),
            None => r,
        }
    }

    async fn status(&self, path: &str, user: Option<&Identity>) -> u16 {
        self.get(path, user).sent().await.status().as_u16()
    }
}

#[tokio::test]
async fn no_session_redirects_to_login_with_the_whole_url() {
    let Some(s) = setup().await else { return };
    let r = s.http.get(s.url("/docs/page?a=1&b=two%20words")).sent().await;
    assert_eq!(r.status(), 302, "{}", s.nginx.logs());
    let loc = r.headers()["location"].to_str().unwrap();
    let port = s.nginx.port;
    assert_eq!(
        loc,
        format!(
            "http://app.test:{port}/oauth2/start?rd=http%3A%2F%2Fapp%2Etest%3A{port}%2Fdocs%2Fpage%3Fa%3D1%26b%3Dtwo%2520words"
        )
    );
}

#[tokio::test]
async fn valid_session_reaches_upstream_with_identity_headers() {
    let Some(s) = setup().await else { return };
    let r = s
        .http
        .get(s.url("/x"))
        .header("cookie", s.fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 200, "{}", s.nginx.logs());
    let body: serde_json::Value = r.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(h["x-auth-request-user"], "alice-oid");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-preferred-username"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,staff");
    assert_eq!(h["x-auth-request-roles"], "Reader");
    assert_eq!(body["uri"], "/x");
}

/// An app that saw a user's session cookie could replay it at every other app this forwarden
/// protects: through the shipped include, the app gets the client's cookies without it, on a
/// protected page and on a public one.
#[tokio::test]
async fn session_cookie_never_reaches_the_upstream_only_the_apps_own_cookies() {
    let Some(s) = setup().await else { return };
    let session = s.fw.cookie(&alice());
    // An app's own large cookie passes too (the answer's headers fit the include's buffers).
    let big = format!("big={}", "b".repeat(6000));
    for (path, sent, expected) in [
        ("/x", format!("{session}; {big}"), Some(big.as_str())),
        (
            "/x",
            format!("theme=dark; {session}; lang=en"),
            Some("theme=dark; lang=en"),
        ),
        ("/x", session.clone(), None),
        ("/public/x", format!("{session}; a=1"), Some("a=1")),
        // A tampered or foreign session cookie opens nothing, and is still not passed on.
        ("/public/x", "a=1; _forwarden=tampered".to_string(), Some("a=1")),
        ("/public/x", "a=1; b=2".to_string(), Some("a=1; b=2")),
    ] {
        let r = s.http.get(s.url(path)).header("cookie", sent).sent().await;
        assert_eq!(r.status(), 200, "{}", s.nginx.logs());
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["headers"]["cookie"].as_str(), expected, "{path}: {body}");
    }
}

#[tokio::test]
async fn forbidden_is_403() {
    let Some(s) = setup().await else { return };
    assert_eq!(s.status("/admin/users", Some(&bob())).await, 403);
    assert_eq!(s.status("/admin/users", Some(&alice())).await, 200);
}

#[tokio::test]
async fn forbidden_page_says_who_you_are_through_nginx() {
    let Some(s) = setup().await else { return };
    let r = s.get("/admin/users", Some(&bob())).page().sent().await;
    forbidden_page(r, "bob@example.com").await;
}

#[tokio::test]
async fn spoofed_identity_header_never_reaches_upstream() {
    let Some(s) = setup().await else { return };
    // On a public route (no identity) the client's header is removed…
    let r = s
        .http
        .get(s.url("/public/x"))
        .header("x-auth-request-user", "admin")
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["headers"].get("x-auth-request-user").is_none(), "{body}");
    // …and with a session it is replaced by the real one.
    let r = s
        .http
        .get(s.url("/x"))
        .header("cookie", s.fw.cookie(&bob()))
        .header("x-auth-request-user", "admin")
        .header("x-auth-request-groups", "admins")
        .sent()
        .await;
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-user"], "bob-oid");
    assert_eq!(body["headers"]["x-auth-request-groups"], "staff");
}

#[tokio::test]
async fn spoofed_x_original_url_through_nginx_is_ignored() {
    let Some(s) = setup().await else { return };
    let r = s
        .http
        .get(s.url("/admin/users"))
        .header("x-original-url", "http://app.test/public/x")
        .sent()
        .await;
    assert_eq!(
        r.status(),
        302,
        "the /admin route decides, so an anonymous user must log in"
    );
}

#[tokio::test]
async fn websocket_upgrade_is_checked_like_any_request() {
    let Some(s) = setup().await else { return };
    let ws = |req: reqwest::RequestBuilder| {
        req.header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    let r = ws(s.http.get(s.url("/socket"))).sent().await;
    assert_eq!(r.status(), 302);
    let r = ws(s.http.get(s.url("/admin/socket")))
        .header("cookie", s.fw.cookie(&bob()))
        .sent()
        .await;
    assert_eq!(r.status(), 403);
    let r = ws(s.http.get(s.url("/socket")))
        .header("cookie", s.fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["upgrade"], "websocket");
    assert_eq!(body["headers"]["x-auth-request-user"], "alice-oid");
}

#[tokio::test]
async fn two_hundred_entra_groups_pass_default_header_buffers() {
    let Some(s) = setup().await else { return };
    let cookie = s.fw.cookie(&many_groups(200));
    assert!(
        cookie.contains("_forwarden_1="),
        "the session is split over cookies"
    );
    let r = s.http.get(s.url("/x")).header("cookie", cookie).sent().await;
    assert_eq!(r.status(), 200, "{}", s.nginx.logs());
    let body: serde_json::Value = r.json().await.unwrap();
    let groups = body["headers"]["x-auth-request-groups"].as_str().unwrap();
    assert_eq!(groups.split(',').count(), 200);
}

#[tokio::test]
async fn per_location_allowed_groups_narrow_the_route() {
    let Some(s) = setup().await else { return };
    assert_eq!(s.status("/narrow/x", Some(&bob())).await, 403);
    assert_eq!(s.status("/narrow/x", Some(&alice())).await, 200);
}

#[tokio::test]
async fn path_traversal_through_nginx_never_reaches_admin() {
    let Some(s) = setup().await else { return };
    for p in [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/..%2Fadmin/x",
        "//admin/x",
        "/public;/../admin/x",
    ] {
        let r = s
            .http
            .get(s.url(p))
            .header("cookie", s.fw.cookie(&bob()))
            .sent()
            .await;
        assert_ne!(r.status(), 200, "{p}");
    }
}
