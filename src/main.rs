//! The `forwarden` command: `serve`, `check`, `explain`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use forwarden::clock::{Entropy, system_clock};
use forwarden::config::Config;
use forwarden::diag::Diagnostic;
use forwarden::http::AppState;
use forwarden::identity::Identity;
use forwarden::policy::{Narrowing, PolicySet};
use forwarden::request::Request;

#[derive(Parser)]
#[command(
    name = "forwarden",
    version,
    about = "Forward-auth sidecar: OpenID Connect login and YAML policies for nginx, Traefik, Caddy, HAProxy and Envoy (ext_authz)"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the auth server.
    Serve {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Validate the configuration and every policy file; print every problem.
    Check {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Exit 0 when the server of this configuration answers /healthz (for container health checks).
    Healthcheck {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
    },
    /// Decide one request: first line allow, forbidden or login; then the route and the rule.
    Explain(Box<ExplainArgs>),
    /// The sessions in the session store (session_store), and revoking them.
    Sessions {
        #[command(subcommand)]
        action: SessionsAction,
    },
}

#[derive(Subcommand)]
enum SessionsAction {
    /// List sessions: id, user, email, signed in (or refreshed), ends.
    List {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
        /// Only this user's: an email or a user id, as /oauth2/userinfo shows them.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke sessions: every replica refuses them at once.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["user", "all", "damaged"])))]
    Revoke {
        /// The configuration file.
        #[arg(long, env = "FORWARDEN_CONFIG")]
        config: PathBuf,
        /// This user's sessions: an email or a user id.
        #[arg(long)]
        user: Option<String>,
        /// Every session, damaged records included.
        #[arg(long)]
        all: bool,
        /// Only the records `list` reports as damaged.
        #[arg(long)]
        damaged: bool,
    },
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The configuration file.
    #[arg(long, env = "FORWARDEN_CONFIG")]
    config: PathBuf,
    /// The requested URL.
    #[arg(long)]
    url: String,
    /// The method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The user's (verified) email.
    #[arg(long)]
    email: Option<String>,
    /// The user id (subject).
    #[arg(long)]
    user: Option<String>,
    /// A group the user is in (repeat for more).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// An app role the user has (repeat for more).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// A claim as name=value (repeat for more; the same name again makes it a list claim).
    #[arg(long = "claim")]
    claims: Vec<String>,
    /// As an API client: the calling application's id (a bearer token's `azp`/`appid`).
    /// Without --email or --user, the application's own token (client credentials).
    #[arg(long)]
    client_id: Option<String>,
    /// As an API client: a delegated scope of its token (repeat for more).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The client's address.
    #[arg(long)]
    source_ip: Option<IpAddr>,
    /// Decide for a request without a session.
    #[arg(long)]
    anonymous: bool,
    /// The auth endpoint's query, as the proxy sends it (allowed_groups=…, policy=…).
    #[arg(long, default_value = "")]
    auth_query: String,
}

/// Write a line to standard output; a failure (a closed pipe, a full disk) ends the command
/// through [`main`]'s error handling instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).context("cannot write to standard output")?
    };
}

/// Write a line to standard error, ignoring failure (there is nowhere left to report it).
macro_rules! err {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Whether an error is standard output's reader going away (`forwarden check | head -n 1`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// mimalloc gives memory freed by a large policy reload back to the operating system; glibc's
/// allocator kept it (fragmented across its per-thread arenas: RSS stayed at 140 MB after going
/// from 100,000 routes back to one, and grew with every such reload).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        // The reader of our output has what it wanted: exit quietly, as cat and grep do.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            err!("forwarden: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal, not in files or container logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Config and policies, or every problem of both.
fn load(config: &Path) -> Result<(Config, PolicySet), Vec<Diagnostic>> {
    let cfg = match Config::load(config, &env) {
        Ok(c) => c,
        Err(mut diags) => {
            // Every problem of one run: the policy files the config names are read too.
            let files = Config::policy_files_named(config);
            if let Err(more) = PolicySet::load(&files, forwarden::config::Limits::default().max_policy_bytes)
            {
                diags.extend(more);
            }
            return Err(diags);
        }
    };
    let set = PolicySet::load(&cfg.policy_files, cfg.limits.max_policy_bytes)?;
    Ok((cfg, set))
}

/// `1 route`, `2 routes`; `1 named policy`, `3 named policies`.
/// A Unix time as `2026-12-01 17:04:05 UTC`.
fn time(t: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(t).unwrap_or(i64::MAX), 0).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn count(n: usize, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("1 {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {one}s"),
    }
}

/// A listener with a deep accept backlog: connections past `limits.max_connections` wait
/// there (rather than being refused) until a slot frees.
async fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// `GET /healthz` over plain TCP, so the container image needs no curl.
fn healthy(listen: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = std::time::Duration::from_secs(3);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && buf[9..12] == *b"200")
}

fn print_problems(diags: &[Diagnostic]) {
    for d in diags {
        err!("{d}");
    }
}

fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { config } => match load(&config) {
            Ok((cfg, set)) => {
                for n in &set.notes {
                    out!("{n}");
                }
                let warnings = set.lint();
                for w in &warnings {
                    out!("{w}");
                }
                let scheme = forwarden::config::report::cookie_scheme_warnings(&cfg, &set);
                for line in scheme
                    .iter()
                    .chain(&forwarden::config::report::store_warnings(&cfg))
                    .chain(&forwarden::config::report::proxy_header_notes(&cfg))
                {
                    out!("{line}");
                }
                if cfg.oidc.is_some() {
                    for line in forwarden::config::report::redirect_uris(&cfg, &set) {
                        out!("{line}");
                    }
                }
                out!(
                    "ok: {} is valid ({}, {}, {}{})",
                    config.display(),
                    count(set.routes().len(), "route"),
                    count(set.policy_names().len(), "named policy"),
                    count(cfg.policy_files.len(), "policy file"),
                    match warnings.len() + scheme.len() {
                        0 => String::new(),
                        n => format!(", {}", count(n, "warning")),
                    }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(diags) => {
                print_problems(&diags);
                err!("{} problem(s); {} is not valid", diags.len(), config.display());
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Explain(args) => {
            let ExplainArgs {
                config,
                url,
                method,
                email,
                user,
                groups,
                roles,
                claims,
                client_id,
                scopes,
                source_ip,
                anonymous,
                auth_query,
            } = *args;
            let (_, set) = match load(&config) {
                Ok(x) => x,
                Err(diags) => {
                    print_problems(&diags);
                    return Ok(ExitCode::FAILURE);
                }
            };
            let mut req =
                Request::from_url(&url, &method).with_context(|| format!("cannot use --url {url}"))?;
            req.client_ip = source_ip;
            // A claim given once is a string; given more than once, a list of its values.
            let mut given: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in claims {
                let (k, v) = c
                    .split_once('=')
                    .with_context(|| format!("--claim {c}: expected name=value"))?;
                given.entry(k.to_string()).or_default().push(v.to_string());
            }
            let claim_map = given
                .into_iter()
                .map(|(k, v)| match v.as_slice() {
                    [one] => (k, one.clone()),
                    many => (
                        k,
                        forwarden::identity::list_claim(many.iter().map(String::as_str)),
                    ),
                })
                .collect();
            // An application's own token names no user: no email, no groups.
            let application = client_id.is_some() && user.is_none() && email.is_none();
            let identity = Identity {
                subject: user
                    .clone()
                    .or_else(|| email.clone())
                    .or_else(|| client_id.clone())
                    .unwrap_or_else(|| "explain-user".into()),
                email,
                groups: if application { Vec::new() } else { groups },
                roles,
                claims: claim_map,
                client_id,
                scopes,
                application,
                ..Identity::default()
            };
            let who = (!anonymous).then_some(&identity);
            let narrow = Narrowing::from_query(&auth_query).with_context(|| {
                format!("--auth-query {auth_query}: the server would refuse every request")
            })?;
            if let Some(pin) = &narrow.host {
                req.pin(pin);
            }
            let d = set.decide(&req, who, &narrow);
            out!("{}", d.verdict);
            match d.route {
                Some(r) => out!("route: {} ({})", r.label, r.describe()),
                None => out!("route: none"),
            }
            out!("rule: {}", d.reason);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sessions { action } => {
            // What to do: list (a user's), or revoke a user's, every record, or the damaged ones.
            let (config, user, revoke, all, only_damaged) = match action {
                SessionsAction::List { config, user } => (config, user, false, false, false),
                SessionsAction::Revoke {
                    config,
                    user,
                    all,
                    damaged,
                } => (config, user, true, all, damaged),
            };
            let cfg = match Config::load(&config, &env) {
                Ok(c) => c,
                Err(diags) => {
                    print_problems(&diags);
                    return Ok(ExitCode::FAILURE);
                }
            };
            let Some(redis) = &cfg.session_store else {
                err!(
                    "{}: no session_store: sessions are kept in the browsers' cookies, and none can be listed or revoked from here",
                    config.display()
                );
                return Ok(ExitCode::FAILURE);
            };
            let store = forwarden::store::redis::RedisStore::new(redis, forwarden::metrics::Metrics::new())
                .context("the session store's settings")?;
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            rt.block_on(async {
                let (sessions, damaged) = store.list().await.context("listing the sessions")?;
                let mine: Vec<_> = sessions
                    .into_iter()
                    .filter(|m| user.as_deref().is_none_or(|u| m.is_user(u)))
                    .collect();
                if revoke {
                    let ids: Vec<String> = match (all, only_damaged) {
                        (true, _) => mine.iter().map(|m| m.id.clone()).chain(damaged.iter().map(|d| d.id.clone())).collect(),
                        (_, true) => damaged.iter().map(|d| d.id.clone()).collect(),
                        _ => mine.iter().map(|m| m.id.clone()).collect(),
                    };
                    let n = store.revoke(&ids).await.context("revoking the sessions")?;
                    out!("revoked {}", count(n, "session"));
                } else {
                    for m in &mine {
                        out!(
                            "{}  {}  {}  signed in {}  ends {}",
                            m.id,
                            m.subject,
                            if m.email.is_empty() { "-" } else { &m.email },
                            time(m.issued_at),
                            time(m.expires_at)
                        );
                    }
                    out!("{}", count(mine.len(), "session"));
                }
                // Reported, never fatal: nobody is admitted on them, and revoke removes them.
                if !revoke || user.is_some() {
                    for d in &damaged {
                        err!(
                            "damaged session record {}: {}; the auth check refuses it (remove it with `forwarden sessions revoke --damaged`)",
                            d.id,
                            d.why
                        );
                    }
                }
                anyhow::Ok(ExitCode::SUCCESS)
            })
        }
        Command::Healthcheck { config } => {
            let cfg = match Config::load(&config, &env) {
                Ok(c) => c,
                Err(diags) => {
                    print_problems(&diags);
                    return Ok(ExitCode::FAILURE);
                }
            };
            Ok(if healthy(cfg.listen) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Serve { config } => {
            let (mut cfg, set) = match load(&config) {
                Ok(x) => x,
                Err(diags) => {
                    print_problems(&diags);
                    anyhow::bail!("{} problem(s) in the configuration; not starting", diags.len());
                }
            };
            let listeners =
                1 + usize::from(cfg.metrics_listen.is_some()) + usize::from(cfg.ext_authz_listen.is_some());
            let cap = forwarden::server::capacity(&mut cfg.limits, listeners);
            tracing::info!(
                open_files = cap.files,
                connections_per_listener = cap.per_listener,
                "capacity (half of each listener's connections kept for trusted_proxies)"
            );
            for n in &set.notes {
                tracing::info!("{n}");
            }
            for w in set.lint() {
                tracing::warn!("{w}");
            }
            for w in forwarden::config::report::cookie_scheme_warnings(&cfg, &set)
                .into_iter()
                .chain(forwarden::config::report::store_warnings(&cfg))
            {
                tracing::warn!("{w}");
            }
            let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
            rt.block_on(async move {
                let listener = bind(cfg.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", cfg.listen))?;
                let metrics = match cfg.metrics_listen {
                    Some(m) => Some(
                        bind(m)
                            .await
                            .with_context(|| format!("cannot listen on {m} (metrics_listen)"))?,
                    ),
                    None => None,
                };
                let ext_authz = match cfg.ext_authz_listen {
                    Some(g) => Some(
                        bind(g)
                            .await
                            .with_context(|| format!("cannot listen on {g} (ext_authz_listen)"))?,
                    ),
                    None => None,
                };
                tracing::info!(
                    listen = %cfg.listen,
                    ext_authz = %cfg.ext_authz_listen.map_or("off".to_string(), |g| g.to_string()),
                    metrics = %cfg.metrics_listen.map_or("off".to_string(), |m| m.to_string()),
                    routes = set.routes().len(),
                    "forwarden serving"
                );
                let state = AppState::new(cfg, set, system_clock(), Entropy::system())?;
                forwarden::server::run(
                    listener,
                    metrics,
                    ext_authz,
                    state,
                    forwarden::server::terminate_signal(),
                )
                .await?;
                tracing::info!("stopped");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
