//! The test identity provider and the browser-like clients that sign in through it.

use std::process::Command;

use tempfile::TempDir;

use super::*;

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
    // Ready once it prints its issuer line (the port opens before its keys and providers are
    // set up). A start that never gets there is described (`idp_state`: where it waits) and
    // tried once more. Such hangs were a Node.js deadlock in the key's JWK export, worked
    // around in `tests/e2e/server.mjs`; this stays for any other, and reports each one.
    for attempt in 1..=2 {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let mut cmd = Command::new(&node);
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
        cmd.envs(env.iter().copied()).env("START_STEPS", "1");
        let proc = spawn("idp", cmd, dir, port).await;
        let issuer = format!("http://127.0.0.1:{port}/{IDP_TENANT}/v2.0");
        STARTED
            .lock()
            .unwrap()
            .push((issuer.clone(), proc.dir.path().to_path_buf(), proc.child.id()));
        let stdout = proc.dir.path().join("stdout.log");
        for _ in 0..400 {
            if std::fs::read_to_string(&stdout).is_ok_and(|t| t.contains("\"issuer\"")) {
                return Some(Idp { proc, issuer });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = idp_state(&issuer);
        assert!(attempt < 2, "the test provider did not start twice: {state}");
        let warning =
            format!("WARNING: the test provider did not finish starting in 20 s; starting another: {state}");
        eprintln!("{warning}");
        // Also kept where a passing run shows it (libtest hides a passing test's stderr).
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("idp-restarts.log");
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            use std::io::Write;
            let _ = writeln!(f, "{warning}");
        }
    }
    unreachable!()
}

/// Every test provider this process started: issuer, log folder, pid.
static STARTED: std::sync::Mutex<Vec<(String, std::path::PathBuf, u32)>> = std::sync::Mutex::new(Vec::new());

/// For a failure message: what became of the test provider at `issuer` (its process, whether its
/// port answers, the end of its logs).
pub fn idp_state(issuer: &str) -> String {
    let started = STARTED.lock().unwrap();
    let Some((_, dir, pid)) = started.iter().find(|(i, ..)| i == issuer) else {
        return format!("{issuer} is not a test provider of this process");
    };
    let process = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Where each thread waits (kernel function, system call), the main one first.
            let mut threads = String::new();
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                let mut ids: Vec<u32> = tasks
                    .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
                    .collect();
                ids.sort();
                for t in ids {
                    let read = |f: &str| {
                        std::fs::read_to_string(format!("/proc/{pid}/task/{t}/{f}")).unwrap_or_default()
                    };
                    let syscall = read("syscall");
                    threads += &format!(
                        "\n  thread {t} {}: wchan {}, syscall {}",
                        read("comm").trim(),
                        read("wchan").trim(),
                        syscall.split_whitespace().next().unwrap_or("?")
                    );
                }
            }
            // And the main thread's stack, where gdb is installed.
            let stack = std::process::Command::new("gdb")
                .args([
                    "-p",
                    &pid.to_string(),
                    "-batch",
                    "-ex",
                    "thread 1",
                    "-ex",
                    "bt 30",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let stack: String = stack
                .lines()
                .filter(|l| l.starts_with('#'))
                .map(|l| format!("\n    {l}"))
                .collect();
            let state = stat.rsplit(')').next().unwrap_or("").split_whitespace().next();
            format!("process {pid} state {}{threads}{stack}", state.unwrap_or("?"))
        }
        Err(_) => format!("process {pid} is gone"),
    };
    let port = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or_default();
    let connect = match std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) {
        Ok(_) => {
            // And whose port it is.
            let owner = std::process::Command::new("ss")
                .args(["-ltnpH", &format!("sport = :{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            format!("its port accepts connections ({owner})")
        }

        Err(e) => format!("its port: {e}"),
    };
    let mut logs = String::new();
    for f in ["stderr.log", "stdout.log"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        logs += &format!(
            "\n--- idp {f}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    format!("{process}; {connect}{logs}")
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
        let r = http.get(&url).page().sent().await;
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
        let r = http.get(&url).sent().await;
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
        let r = http.get(&url).page().sent().await;
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

/// A client-credentials token for `resource` from the test provider at `issuer`.
pub async fn app_token(issuer: &str, client: &str, secret: &str, resource: &str) -> String {
    let r = browserless()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", secret),
            ("resource", resource),
        ])
        .sent()
        .await;
    let r: serde_json::Value = r.json().await.unwrap();
    r["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string()
}

/// The user signs out at the test provider (its own page, in the browser `http` that has its
/// session): the provider then posts its back-channel logout tokens.
pub async fn sign_out_at_provider(http: &reqwest::Client, issuer: &str) -> reqwest::StatusCode {
    let end = http
        .get(format!("{issuer}/session/end"))
        .sent()
        .await
        .text()
        .await
        .unwrap();
    let xsrf = end
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no xsrf in the provider's logout page: {end}"))
        .to_string();
    http.post(format!("{issuer}/session/end/confirm"))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .sent()
        .await
        .status()
}
