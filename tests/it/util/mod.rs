//! Test helpers, by concern: forwarden in-process on port 0 and what it needs (here), real
//! components as processes (`procs`), the shipped proxies (`proxies`), the identity provider and
//! sign-in (`idp`), Redis (`redis`).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
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

/// The test identity provider's tenant on `app.test`: its users sign in, and `/admin` is for
/// the group …03ea (Bob's; Alice is in …03e9).
pub const CONTOSO_POLICY: &str = "\
- from: http://app.test
  allowed_domains: [contoso.com]
- from: http://app.test
  prefix: /admin
  allowed_groups: [000003ea-aaaa-4bbb-8ccc-0000000003ea]
";

/// A listener on `at` when it is configured, and the address it got.
async fn bind_if(at: Option<SocketAddr>) -> (Option<tokio::net::TcpListener>, Option<SocketAddr>) {
    match at {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a).await.unwrap();
            let got = l.local_addr().unwrap();
            (Some(l), Some(got))
        }
        None => (None, None),
    }
}

/// [`APP_POLICY`] on https, each line indented by `indent` (to sit under `routes:`).
pub fn app_policy_https(indent: &str) -> String {
    APP_POLICY
        .replace("http://", "https://")
        .lines()
        .map(|l| format!("{indent}{l}\n"))
        .collect()
}

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
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (metrics_listener, metrics) = bind_if(state.config.metrics_listen).await;
        let (ext_authz_listener, ext_authz) = bind_if(state.config.ext_authz_listen).await;
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

    /// Wait until the identity provider has been discovered (the server's own retries, up to
    /// 30 s: with every test's provider and browser starting at once on two cores, a node
    /// process can take more than one 10 s attempt to answer). Then one discovery from here:
    /// its error, if it fails, is the panic's message; if it succeeds while the server's own
    /// attempts had not, that is said on stderr (two such runs were seen, cause not found).
    pub async fn discovered(&self) {
        assert!(!self.state.providers.is_empty(), "an oidc section");
        for provider in self.state.providers.iter() {
            self.discovered_one(provider).await;
        }
    }

    async fn discovered_one(&self, provider: &forwarden::oidc::transport::Provider) {
        for _ in 0..600 {
            if provider.ready().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let last = provider.last_error.load_full();
        match provider.discover().await {
            Ok(()) => eprintln!(
                "WARNING: the server had not discovered the identity provider in 30 s (last error: {last:?}); a discovery from the test succeeded"
            ),
            Err(e) => {
                panic!(
                    "the identity provider was never discovered: {e} (the server's last error: {last:?})\n{}",
                    idp_state(&provider.config.issuer)
                )
            }
        }
    }

    /// Once the providers are discovered, nginx on `port` in front of this forwarden and an
    /// upstream that echoes what it receives.
    pub async fn behind_nginx(&self, port: u16) -> Option<Proc> {
        if !self.state.providers.is_empty() {
            self.discovered().await;
        }
        nginx_on(port, self.addr, echo_upstream().await, "").await
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

/// A metric's value in Prometheus text (`name{labels}` exactly as exposed), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

mod http;
mod idp;
mod procs;
mod proxies;
mod redis;
pub use http::*;
pub use idp::*;
pub use procs::*;
pub use proxies::*;
pub use redis::*;
