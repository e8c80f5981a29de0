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

/// An example file with its addresses swapped: each `(from, to)` must occur in it.
fn example(path: &str, swaps: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(repo().join(path)).unwrap();
    for (from, to) in swaps {
        assert!(text.contains(from), "{path} no longer contains {from}");
        text = text.replace(from, to);
    }
    text
}

const GUIDE_POLICY: &str = "\
- from: http://code.example.com
  allowed_domains: [example.com]
- from: https://code.example.com
  allowed_domains: [example.com]
";

#[tokio::test]
async fn nginx_site_example_runs_as_written() {
    let fw = Fw::start(GUIDE_POLICY).await;
    let up = echo_upstream().await;
    let port = free_port();
    let http = example(
        "examples/nginx/site.conf",
        &[
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
            ("/etc/nginx/forwarden/", format!("{}/", repo().join("nginx").display())),
            ("server 127.0.0.1:4180;", format!("server {};", fw.addr)),
            ("http://127.0.0.1:8443", format!("http://{up}")),
        ],
    );
    let Some(nginx) = nginx_http(port, &http).await else { return };
    let c = client(&[("code.example.com", port)]);
    let url = |p: &str| format!("http://code.example.com:{port}{p}");
    let r = c
        .get(url("/files?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", nginx.logs());
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(loc.contains("/oauth2/start?rd="), "{loc}");
    let r = c
        .get(url("/files"))
        .header("cookie", fw.cookie(&alice()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-auth-request-email"], "alice@example.com");
    // /admin/ also needs the group in the location's allowed_groups: Alice is not in it.
    let r = c
        .get(url("/admin/"))
        .header("cookie", fw.cookie(&alice()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut member = alice();
    member.groups = vec!["0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()];
    let r = c
        .get(url("/admin/"))
        .header("cookie", fw.cookie(&member))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn nginx_letsencrypt_example_serves_challenges_redirects_and_protects_https() {
    if require("openssl").is_none() {
        return;
    }
    let fw = Fw::start(GUIDE_POLICY).await;
    let up = echo_upstream().await;
    let dir = TempDir::new().unwrap();
    // A self-signed certificate where certbot would put Let's Encrypt's.
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
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
    std::fs::write(webroot.join(".well-known/acme-challenge/token123"), "token123.key").unwrap();
    let (http_port, https_port) = (free_port(), free_port());
    let http = example(
        "examples/nginx/letsencrypt.conf",
        &[
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            ("listen 443 ssl http2;", format!("listen 127.0.0.1:{https_port} ssl http2;")),
            (
                "return 301 https://$host$request_uri;",
                format!("return 301 https://$host:{https_port}$request_uri;"),
            ),
            ("/etc/letsencrypt/live/code.example.com", live.display().to_string()),
            ("/var/www/certbot", webroot.display().to_string()),
            ("/etc/nginx/forwarden/", format!("{}/", repo().join("nginx").display())),
            ("server 127.0.0.1:4180;", format!("server {};", fw.addr)),
            ("http://127.0.0.1:8443", format!("http://{up}")),
        ],
    );
    let Some(nginx) = nginx_http(https_port, &http).await else { return };
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
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", nginx.logs());
    assert_eq!(r.text().await.unwrap(), "token123.key");
    let r = c
        .get(format!("http://code.example.com:{http_port}/files"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://code.example.com:{https_port}/files").as_str()
    );
    // Over https: sign in first, then through with the session.
    let r = c
        .get(format!("https://code.example.com:{https_port}/files"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{}", nginx.logs());
    let r = c
        .get(format!("https://code.example.com:{https_port}/files"))
        .header("cookie", fw.cookie(&alice()))
        .send()
        .await
        .unwrap();
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
    let oidc = cfg.oidc.as_ref().unwrap();
    assert_eq!(
        oidc.issuer,
        format!("https://login.microsoftonline.com/{IDP_TENANT}/v2.0")
    );
    let set = PolicySet::load(&cfg.policy_files).unwrap();
    assert!(set.lint().is_empty());
    assert_eq!(set.routes().len(), 2);
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
        let backend = addr(rule["http"]["paths"][0]["backend"]["service"]["name"].as_str().unwrap());
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
                let signin = signin.replace("https://auth.example.com", &format!("http://auth.example.com:{port}"));
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
    let policy = example("examples/ingress-nginx/policy.yaml", &[("https://", "http://".into())]);
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
    let Some(nginx) = nginx_http(port, &http).await else { return };
    let hosts = [
        ("wiki.example.com", port),
        ("grafana.example.com", port),
        ("auth.example.com", port),
    ];
    let c = client(&hosts);
    // Not signed in: to the one sign-in host, with the whole URL to come back to.
    let r = c
        .get(format!("http://wiki.example.com:{port}/docs"))
        .send()
        .await
        .unwrap();
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
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "no identity provider in this test: {}", nginx.logs());
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
