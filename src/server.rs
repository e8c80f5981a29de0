//! Running the server: listen, reload policies while running, shut down gracefully.
//!
//! Policy files are watched by polling a fingerprint of their contents every
//! `reload_interval` (this follows Kubernetes ConfigMap updates, which swap a symlink, and
//! editors that write a new file and rename it) and reloaded at once on SIGHUP. A valid new
//! version is swapped in whole, so a request sees either the old policy or the new one; an
//! invalid one is logged with every error and the last good policy stays.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::diag::Diagnostic;
use crate::http::AppState;
use crate::policy::PolicySet;

/// A fingerprint of the files' contents (a missing file counts as different content).
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        f.hash(&mut h);
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().to_string().hash(&mut h),
        }
    }
    h.finish()
}

/// Load the policy files again and swap them in when valid.
pub fn reload(state: &AppState) -> Result<usize, Vec<Diagnostic>> {
    let set = PolicySet::load(&state.config.policy_files).inspect_err(|_| state.metrics.reload(false))?;
    state.metrics.reload(true);
    for w in set.lint() {
        tracing::warn!("{w}");
    }
    let n = set.routes().len();
    state.policy.store(Arc::new(set));
    Ok(n)
}

/// Watch the policy files until `shutdown` changes.
pub async fn watch_policies(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let files = state.config.policy_files.clone();
    let mut last = fingerprint(&files);
    let mut tick = tokio::time::interval(state.config.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hup = sighup();
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = next_hup(&mut hup) => true,
            _ = shutdown.changed() => return,
        };
        let now = fingerprint(&files);
        if now == last && !forced {
            continue;
        }
        last = now;
        match reload(&state) {
            Ok(n) => tracing::info!(routes = n, forced, "policies reloaded"),
            Err(diags) => {
                for d in &diags {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    errors = diags.len(),
                    "policy reload rejected; the last good policy stays"
                );
            }
        }
    }
}

#[cfg(unix)]
type Hup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hup = Option<()>;

#[cfg(unix)]
fn sighup() -> Hup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn sighup() -> Hup {
    None
}

#[cfg(unix)]
async fn next_hup(h: &mut Hup) {
    match h {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn next_hup(_: &mut Hup) {
    std::future::pending().await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminate_signal() {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut t) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serve until `shutdown` resolves, watching the policy files meanwhile; metrics on their own
/// listener when one is given.
pub async fn run(
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = watch::channel(false);
    if let Some(m) = metrics {
        let mut stop = rx.clone();
        let done = async move {
            let _ = stop.changed().await;
        };
        let st = state.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve_metrics(m, st, done).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    if let Some(p) = &state.provider {
        // Existing sessions keep working while the provider is unreachable; sign-in waits.
        tokio::spawn(p.clone().discover_until_ready(rx.clone()));
    }
    let watcher = tokio::spawn(watch_policies(state.clone(), rx));
    let result = crate::http::serve(listener, state, shutdown).await;
    let _ = tx.send(true);
    let _ = watcher.await;
    result
}
