//! `forwarden serve` and `forwarden healthcheck`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use super::{CommandError, Out, env, load};
use crate::clock::{Entropy, system_clock};
use crate::config::Config;
use crate::http::AppState;

/// A listener with a deep accept backlog: connections past `limits.max_connections` wait
/// there (rather than being refused) until a slot frees.
async fn bind(addr: SocketAddr, what: &'static str) -> Result<tokio::net::TcpListener, CommandError> {
    let listen = || {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)
    };
    listen().map_err(|source| CommandError::Listen { addr, what, source })
}

/// Run the server until SIGTERM or Ctrl-C. A configuration with problems (each printed) does
/// not start.
pub fn serve(config: &Path, o: &mut Out<'_>) -> Result<(), CommandError> {
    let (mut cfg, set) = match load(config) {
        Ok(x) => x,
        Err(diags) => {
            o.problems(&diags);
            return Err(CommandError::Invalid(diags.len()));
        }
    };
    let listeners =
        1 + usize::from(cfg.metrics_listen.is_some()) + usize::from(cfg.ext_authz_listen.is_some());
    let cap = crate::server::capacity(&mut cfg.limits, listeners);
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
    for w in crate::config::report::cookie_scheme_warnings(&cfg, &set)
        .into_iter()
        .chain(crate::config::report::cookie_domain_warnings(&cfg, &set))
        .chain(crate::config::report::store_warnings(&cfg))
    {
        tracing::warn!("{w}");
    }
    let rt = tokio::runtime::Runtime::new().map_err(CommandError::Runtime)?;
    rt.block_on(async move {
        let listener = bind(cfg.listen, "").await?;
        let metrics = match cfg.metrics_listen {
            Some(m) => Some(bind(m, " (metrics_listen)").await?),
            None => None,
        };
        let ext_authz = match cfg.ext_authz_listen {
            Some(g) => Some(bind(g, " (ext_authz_listen)").await?),
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
        crate::server::run(
            listener,
            metrics,
            ext_authz,
            state,
            crate::server::terminate_signal(),
        )
        .await
        .map_err(CommandError::Server)?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// `GET /healthz` over plain TCP, so the container image needs no curl.
fn healthy(listen: SocketAddr) -> bool {
    use std::io::Read;
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

/// Whether the server of this configuration answers `/healthz` (for container health checks).
pub fn healthcheck(config: &Path, o: &mut Out<'_>) -> Result<bool, CommandError> {
    match Config::load(config, &env) {
        Ok(cfg) => Ok(healthy(cfg.listen)),
        Err(diags) => {
            o.problems(&diags);
            Ok(false)
        }
    }
}
