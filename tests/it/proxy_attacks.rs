//! Attacks on the shipped proxy configurations, sent through the real nginx, Caddy and HAProxy:
//! making the proxy route on one host while forwarden judges another, forging the identity
//! headers forwarden sets, smuggling an h2c upgrade, and overflowing the auth subrequest.
//! Each test is named after its attack.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

/// www.test is public, app.test is protected, and a port-specific route on app.test:8080 and
/// app.test over https (the proxies here serve http) are public: each of these is what an
/// attacker would love forwarden to judge instead.
const HOSTS_POLICY: &str = "\
- from: http://app.test
  allowed_domains: [example.com]
- from: http://app.test:8080
  allow_public_unauthenticated_access: true
- from: https://app.test
  allow_public_unauthenticated_access: true
- from: http://www.test
  allow_public_unauthenticated_access: true
- from: http://x.pub.test
  allow_public_unauthenticated_access: true
";

/// Every header forwarden may set, as a client would forge it: the defaults, a claim header, the
/// signed identity, and underscore spellings that CGI and WSGI servers read as dashes.
const FORGED: [(&str, &str); 10] = [
    ("X-Auth-Request-User", "mallory"),
    ("X-Auth-Request-Email", "ceo@example.com"),
    ("X-Auth-Request-Preferred-Username", "ceo@example.com"),
    ("X-Auth-Request-Groups", "admins"),
    ("X-Auth-Request-Roles", "Admin"),
    // The calling application of a bearer token: a browser session has none.
    ("X-Auth-Request-Client-Id", "11112222-3333-4444-5555-666677778888"),
    ("X-Auth-Request-Department", "finance"),
    ("X-Forwarden-Jwt", "eyJhbGciOiJub25lIn0.e30."),
    ("X_Auth_Request_User", "mallory"),
    ("x_forwarden_jwt", "forged"),
];

/// A raw request (absolute-form request lines, odd Host headers) and the status line's code.
async fn raw(port: u16, request: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).get(9..12)?.parse().ok()
}

/// A raw request's whole answer, as text.
async fn raw_answer(port: u16, request: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let _ = s.write_all(request.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// The attack: `GET /oauth2/sign_out?rd=https://evil.com/` with the client's own
/// `X-Forwarded-Host: evil.com` (and proto, port), through the proxy on `port`. Every shipped
/// proxy sets the describing headers on forwarden's own endpoints, so forwarden never takes
/// evil.com for the request's host, and the redirect stays at home.
async fn open_redirect_by_forged_forwarded_host_is_refused(port: u16, logs: impl Fn() -> String) {
    for forged in [
        "X-Forwarded-Host: evil.com\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n",
        "X-Forwarded-Host: evil.com\r\n",
        "X-Original-URL: https://evil.com/\r\n",
    ] {
        let answer = raw_answer(
            port,
            &format!(
                "GET /oauth2/sign_out?rd=https%3A%2F%2Fevil.com%2F HTTP/1.1\r\nHost: app.test\r\n{forged}Connection: close\r\n\r\n"
            ),
        )
        .await;
        let location = answer
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or_else(|| l.strip_prefix("Location: "))
            })
            .unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 302"), "{answer}\n{}", logs());
        assert!(
            !location.contains("evil.com"),
            "open redirect to {location}\n{}",
            logs()
        );
    }
}

/// The attack: the client's own `X-Forwarded-Proto: https` (or a list starting with it) on the
/// plain-http site, whose https twin is public. Every shipped proxy states the scheme itself,
/// so forwarden never judges the https route: sign in, or refused.
async fn scheme_confusion_by_forged_forwarded_proto_is_refused(port: u16, logs: impl Fn() -> String) {
    for forged in ["https", "https, http", "wss"] {
        let code = raw(
            port,
            &format!(
                "GET /secret HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-Proto: {forged}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            matches!(code, Some(302 | 401 | 403)),
            "{forged}: {code:?} {}",
            logs()
        );
    }
}

/// The headers the upstream received for a request through a proxy on `port` with `host`.
async fn upstream_headers(
    port: u16,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
    cookie: Option<&str>,
) -> (u16, serde_json::Value) {
    let http = client(&[(host, port)]);
    let mut r = http.get(format!("http://{host}:{port}{path}"));
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    let r = r.sent().await;
    let status = r.status().as_u16();
    let body = r.json::<serde_json::Value>().await.unwrap_or_default();
    (status, body["headers"].clone())
}

/// forwarden's config for the forged-header tests: it sends a claim header too.
const CLAIM_CONFIG: &str =
    "trusted_proxies: [127.0.0.1/32]\nheaders:\n  claims:\n    department: X-Auth-Request-Department\n";

/// No forged header reaches the upstream, anonymous on `public` and signed in on `private`;
/// signed in, the identity headers are forwarden's.
async fn forged_headers_never_arrive(port: u16, fw: &Fw, proxy: &Proc, public: &str, private: &str) {
    for cookie in [None, Some(fw.cookie(&alice()))] {
        let path = if cookie.is_some() { private } else { public };
        let (status, h) = upstream_headers(port, "app.test", path, &FORGED, cookie.as_deref()).await;
        assert_eq!(status, 200, "{}", proxy.logs());
        let names: Vec<&String> = h.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        for (forged, value) in FORGED {
            for (name, got) in h.as_object().into_iter().flatten() {
                let same = name
                    .replace('_', "-")
                    .eq_ignore_ascii_case(&forged.replace('_', "-"));
                assert!(
                    !(same && got == value),
                    "forged {forged}: {value} reached the upstream: {names:?}"
                );
            }
        }
        if cookie.is_some() {
            assert_eq!(h["x-auth-request-user"], "alice-oid");
            assert_eq!(h["x-auth-request-groups"], "admins,staff");
        }
    }
}

/// `Upgrade: h2c` (a way past the proxy's per-request checks) never reaches the upstream.
async fn h2c_upgrade_never_arrives(port: u16) {
    let (status, h) = upstream_headers(
        port,
        "app.test",
        "/public/x",
        &[
            ("Upgrade", "h2c"),
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ],
        None,
    )
    .await;
    assert!(status == 400 || h.get("upgrade").is_none(), "{status} {h}");
}

/// A forward-auth proxy with its shipped configuration.
#[derive(Clone, Copy)]
enum Proxy {
    Caddy,
    CaddyCurrent,
    Haproxy,
    Traefik,
}

/// forwarden with `policy` and `config`, an echo upstream, and `proxy` in front of them.
async fn behind(proxy: Proxy, policy: &str, config: &str) -> Option<(Fw, Proc)> {
    let fw = Fw::start_with(policy, config).await;
    let up = echo_upstream().await;
    let p = match proxy {
        Proxy::Caddy => caddy(fw.addr, up).await?,
        Proxy::CaddyCurrent => caddy_current(fw.addr, up).await?,
        Proxy::Haproxy => haproxy(fw.addr, up).await?,
        Proxy::Traefik => traefik(fw.addr, up).await?,
    };
    Some((fw, p))
}

/// The forged headers and the h2c upgrade through a forward-auth proxy.
async fn forged_through(proxy: Proxy) {
    let Some((fw, p)) = behind(proxy, APP_POLICY, CLAIM_CONFIG).await else {
        return;
    };
    forged_headers_never_arrive(p.port, &fw, &p, "/public/x", "/x").await;
    h2c_upgrade_never_arrives(p.port).await;
}

/// `Host: app.test:8080` through a forward-auth proxy listening elsewhere: the public route of
/// port 8080 is never picked (sign in, or refused); nor is the https one by a forged scheme.
async fn client_port_or_scheme_through(proxy: Proxy) {
    let Some((_fw, p)) = behind(proxy, HOSTS_POLICY, "trusted_proxies: [127.0.0.1/32]\n").await else {
        return;
    };
    let code = raw(
        p.port,
        "GET /secret HTTP/1.1\r\nHost: app.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(code, Some(302 | 401 | 403)), "{code:?} {}", p.logs());
    scheme_confusion_by_forged_forwarded_proto_is_refused(p.port, || p.logs()).await;
}

async fn nginx_setup(policy: &str) -> Option<(Fw, Proc, SocketAddr)> {
    let fw = Fw::start(policy).await;
    let up = echo_upstream().await;
    let p = nginx(fw.addr, up, "").await?;
    Some((fw, p, up))
}

#[tokio::test]
async fn host_confusion_absolute_form_request_line_through_nginx() {
    let Some((_fw, p, _)) = nginx_setup(HOSTS_POLICY).await else {
        return;
    };
    // nginx routes on the request line's host; forwarden must judge that one, not Host.
    let code = raw(
        p.port,
        "GET http://app.test/secret HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(code, Some(302 | 401)), "{code:?} {}", p.logs());
    let code = raw(
        p.port,
        "GET http://www.test/ HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, Some(200), "the public host still passes");
}

#[tokio::test]
async fn host_or_scheme_confusion_client_chosen_port_or_proto_through_nginx() {
    let Some((_fw, p, _)) = nginx_setup(HOSTS_POLICY).await else {
        return;
    };
    // nginx does not listen on 8080: the port-specific public route must not be picked.
    let code = raw(
        p.port,
        "GET /secret HTTP/1.1\r\nHost: app.test:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(code, Some(302 | 401)), "{code:?} {}", p.logs());
    scheme_confusion_by_forged_forwarded_proto_is_refused(p.port, || p.logs()).await;
}

#[tokio::test]
async fn host_confusion_through_ingress_nginx_is_stopped_by_the_pinned_host() {
    let fw = Fw::start(HOSTS_POLICY).await;
    let up = echo_upstream().await;
    let port = free_port();
    // The way ingress-nginx describes the request: X-Original-URL from the client's Host.
    let location = format!(
        "    location = /_external-auth {{\n        internal;\n        proxy_pass_request_body off;\n        proxy_set_header Content-Length \"\";\n        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n        proxy_set_header X-Original-Method $request_method;\n        proxy_set_header X-Forwarded-For $remote_addr;\n        proxy_pass http://{}/oauth2/auth?host=app.test;\n    }}\n    location /pinned/ {{\n        auth_request /_external-auth;\n        proxy_pass http://{up};\n    }}\n    location = /_external-auth-port {{\n        internal;\n        proxy_pass_request_body off;\n        proxy_set_header Content-Length \"\";\n        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n        proxy_set_header X-Forwarded-For $remote_addr;\n        proxy_pass http://{}/oauth2/auth?host=app.test:80;\n    }}\n    location /pinned-port/ {{\n        auth_request /_external-auth-port;\n        proxy_pass http://{up};\n    }}\n",
        fw.addr, fw.addr
    );
    let Some(p) = nginx_on(port, fw.addr, up, &location).await else {
        return;
    };
    let code = raw(
        port,
        "GET http://app.test/pinned/x HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    // app.test has a route for port 8080 and the pin names no port: which route applies
    // cannot be established, so the request is refused.
    assert_eq!(code, Some(403), "{}", p.logs());
    // A pin with the port judges the request as that host and port: sign in first.
    let code = raw(
        port,
        "GET http://app.test/pinned-port/x HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, Some(401), "{}", p.logs());
}

/// nginx cannot remove headers by pattern: each claim header needs its pair of lines beside the
/// include, and `forwarden check` prints them. This test takes them from `check`'s output, as a
/// user would.
#[tokio::test]
async fn forged_identity_headers_through_nginx() {
    let fw = Fw::start_with(APP_POLICY, CLAIM_CONFIG).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_forwarden"))
        .args(["check", "--config"])
        .arg(fw.dir.path().join("forwarden.yaml"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let pairs: String = out
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("auth_request_set") || l.trim_start().starts_with("proxy_set_header")
        })
        .map(|l| format!("      {}\n", l.trim()))
        .collect();
    assert!(pairs.contains("X-Auth-Request-Department"), "{out}");
    let up = echo_upstream().await;
    let include = repo().join("nginx/forwarden-location.conf");
    let location = format!(
        "    location /public/ {{\n      include {};\n{pairs}      proxy_pass http://app;\n    }}\n",
        include.display()
    );
    let Some(p) = nginx(fw.addr, up, &location).await else {
        return;
    };
    forged_headers_never_arrive(p.port, &fw, &p, "/public/x", "/public/y").await;
    h2c_upgrade_never_arrives(p.port).await;
}

#[tokio::test]
async fn header_flood_through_nginx_stays_within_the_auth_request_contract() {
    let Some((fw, p, _)) = nginx_setup(APP_POLICY).await else {
        return;
    };
    let extra: Vec<(String, String)> = (0..120)
        .map(|i| (format!("X-Extra-{i}"), "x".repeat(20)))
        .collect();
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, _) = upstream_headers(p.port, "app.test", "/x", &extra, Some(&fw.cookie(&alice()))).await;
    // nginx passes forwarden only the headers it reads, so the check is answered (the test's
    // upstream, plain hyper, then refuses more than 100 headers itself with 431).
    assert!(matches!(status, 200 | 431), "{status}: {}", p.logs());
    assert!(
        !p.logs().contains("auth request unexpected status"),
        "{}",
        p.logs()
    );
}

#[tokio::test]
async fn forged_identity_headers_through_caddy() {
    forged_through(Proxy::Caddy).await;
}

#[tokio::test]
async fn host_or_scheme_confusion_client_chosen_port_or_proto_through_caddy() {
    client_port_or_scheme_through(Proxy::Caddy).await;
}

#[tokio::test]
async fn forged_identity_headers_through_haproxy() {
    forged_through(Proxy::Haproxy).await;
}

#[tokio::test]
async fn host_or_scheme_confusion_through_haproxy_other_hosts_lists_ports_and_proto() {
    let Some((_fw, p)) = behind(Proxy::Haproxy, HOSTS_POLICY, "trusted_proxies: [127.0.0.1/32]\n").await
    else {
        return;
    };
    let send = |host: &str| format!("GET /secret HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // A host HAProxy does not serve is refused, not sent to the one backend.
    assert_eq!(raw(p.port, &send("www.test")).await, Some(421), "{}", p.logs());
    // A list is refused, whichever element either side would have picked.
    for host in ["www.test,app.test", "app.test,www.test"] {
        let code = raw(p.port, &send(host)).await;
        assert!(matches!(code, Some(400 | 421)), "{host}: {code:?}");
    }
    // A client-chosen port disagrees with the port HAProxy listens on: refused.
    let code = raw(p.port, &send("app.test:8080")).await;
    assert!(matches!(code, Some(302 | 401 | 403)), "{code:?} {}", p.logs());
    scheme_confusion_by_forged_forwarded_proto_is_refused(p.port, || p.logs()).await;
}

#[tokio::test]
async fn cors_preflight_through_haproxy_reaches_forwarden_with_its_method() {
    let fw = Fw::start(
        "- from: http://app.test\n  cors_allow_preflight: true\n  allowed_domains: [example.com]\n",
    )
    .await;
    let up = echo_upstream().await;
    let Some(p) = haproxy(fw.addr, up).await else {
        return;
    };
    let http = client(&[("app.test", p.port)]);
    let r = http
        .request(
            reqwest::Method::OPTIONS,
            format!("http://app.test:{}/api", p.port),
        )
        .header("origin", "http://other.test")
        .header("access-control-request-method", "POST")
        .sent()
        .await;
    assert_eq!(r.status(), 200, "{}", p.logs());
}

#[tokio::test]
async fn forged_identity_headers_through_traefik() {
    forged_through(Proxy::Traefik).await;
}

#[tokio::test]
async fn host_or_scheme_confusion_client_chosen_port_or_proto_through_traefik() {
    client_port_or_scheme_through(Proxy::Traefik).await;
}

#[tokio::test]
async fn forged_identity_headers_through_current_caddy() {
    forged_through(Proxy::CaddyCurrent).await;
}

#[tokio::test]
async fn host_or_scheme_confusion_client_chosen_port_or_proto_through_current_caddy() {
    client_port_or_scheme_through(Proxy::CaddyCurrent).await;
}

#[tokio::test]
async fn open_redirect_by_forged_forwarded_host_through_nginx() {
    let Some((_fw, p, _)) = nginx_setup(APP_POLICY).await else {
        return;
    };
    open_redirect_by_forged_forwarded_host_is_refused(p.port, || p.logs()).await;
}

/// The same attack through each forward-auth proxy's shipped configuration.
async fn open_redirect_through(proxy: Proxy) {
    let Some((_fw, p)) = behind(proxy, APP_POLICY, "trusted_proxies: [127.0.0.1/32]\n").await else {
        return;
    };
    open_redirect_by_forged_forwarded_host_is_refused(p.port, || p.logs()).await;
}

#[tokio::test]
async fn open_redirect_by_forged_forwarded_host_through_haproxy() {
    open_redirect_through(Proxy::Haproxy).await;
}

#[tokio::test]
async fn open_redirect_by_forged_forwarded_host_through_caddy() {
    open_redirect_through(Proxy::Caddy).await;
}

#[tokio::test]
async fn open_redirect_by_forged_forwarded_host_through_current_caddy() {
    open_redirect_through(Proxy::CaddyCurrent).await;
}

#[tokio::test]
async fn open_redirect_by_forged_forwarded_host_through_traefik() {
    open_redirect_through(Proxy::Traefik).await;
}

/// The attack: the client writes the location's pin in its own query
/// (`/secret?host=www.test`, a public host). A proxy that copied the client's query onto the
/// auth request (Caddy's `forward_auth` keeps it unless `uri` sets one) would have forwarden
/// judge www.test while the proxy serves app.test. Through every forward-auth proxy's shipped
/// configuration, the request is never let through.
async fn client_query_pin_through(proxy: Proxy) {
    let Some((_fw, p)) = behind(proxy, HOSTS_POLICY, "trusted_proxies: [127.0.0.1/32]\n").await else {
        return;
    };
    for query in [
        "host=www.test",
        "host=www.test&policy=x",
        "route=http%3A%2F%2Fwww.test",
    ] {
        let code = raw(
            p.port,
            &format!("GET /secret?{query} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(
            matches!(code, Some(302 | 401 | 403)),
            "{query}: {code:?} {}",
            p.logs()
        );
    }
    // A query of the client's own is still just part of the URL (on a host without
    // port-specific routes: Traefik's pin names no port, so app.test's are refused there).
    let Some((_fw, p)) = behind(proxy, APP_POLICY, "trusted_proxies: [127.0.0.1/32]\n").await else {
        return;
    };
    let code = raw(
        p.port,
        "GET /secret?a=1 HTTP/1.1\r\nHost: app.test\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(code, Some(302 | 401)), "{code:?} {}", p.logs());
}

#[tokio::test]
async fn client_query_pins_a_public_host_through_caddy() {
    client_query_pin_through(Proxy::Caddy).await;
}

#[tokio::test]
async fn client_query_pins_a_public_host_through_current_caddy() {
    client_query_pin_through(Proxy::CaddyCurrent).await;
}

#[tokio::test]
async fn client_query_pins_a_public_host_through_haproxy() {
    client_query_pin_through(Proxy::Haproxy).await;
}

#[tokio::test]
async fn client_query_pins_a_public_host_through_traefik() {
    client_query_pin_through(Proxy::Traefik).await;
}
