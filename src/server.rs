//! Running the server: listen, reload policies while running, shut down gracefully.
//!
//! Policy files are watched by polling their metadata (size, modification and change times,
//! inode) every `reload_interval` — this follows Kubernetes ConfigMap updates, which swap a
//! symlink, and editors that write a new file and rename it — and reloaded at once on SIGHUP.
//! Reading, parsing, linting and dropping the old policy all run on a blocking thread, never
//! on the workers that answer requests, so no request waits on a reload. A valid new version is
//! swapped in whole, so a request sees either the old policy or the new one; an invalid one is
//! logged with every error, and a policy file found empty (an editor mid-save) is waited out:
//! in both cases the last good policy stays.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::diag::Diagnostic;
use crate::http::AppState;
use crate::policy::PolicySet;
use crate::policy::load::fingerprint;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new policy is in force, with this many routes.
    Swapped(usize),
    /// A policy file is empty (probably being written): the last good policy stays.
    KeptWhileEmpty(Vec<String>),
}

/// Load the policy files again and swap them in when valid. Blocking: call it from a blocking
/// thread ([`reload_in_background`]) on a running server.
pub fn reload(state: &AppState) -> Result<Reloaded, Vec<Diagnostic>> {
    let files = &state.config.policy_files;
    let set = PolicySet::load(files, state.config.limits.max_policy_bytes)
        .inspect_err(|_| state.metrics.reload(false))?;
    if !set.empty_files.is_empty() {
        // Not counted: nothing was wrong yet, the file is most likely still being written.
        return Ok(Reloaded::KeptWhileEmpty(set.empty_files.clone()));
    }
    let (sign_in, bearer) = state.config.provider_names();
    let problems = set.provider_problems(&sign_in, &bearer);
    if !problems.is_empty() {
        state.metrics.reload(false);
        return Err(problems);
    }
    state.metrics.reload(true);
    for w in set.lint() {
        tracing::warn!("{w}");
    }
    let n = set.routes().len();
    // The old policy is dropped here too, off the request workers.
    drop(state.policy.swap(Arc::new(set)));
    Ok(Reloaded::Swapped(n))
}

/// A job for the reload thread.
type Job = Box<dyn FnOnce() + Send>;

/// The one thread that loads and drops policies. Whatever a large policy file needed while it
/// was parsed, and the policy it replaced, is freed by the thread that allocated it, so the
/// allocator can give it back to the operating system; nothing of it lands in the heaps of the
/// threads that answer requests.
fn reload_thread() -> Option<&'static std::sync::Mutex<std::sync::mpsc::Sender<Job>>> {
    static THREAD: std::sync::OnceLock<Option<std::sync::Mutex<std::sync::mpsc::Sender<Job>>>> =
        std::sync::OnceLock::new();
    THREAD
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("forwarden-reload".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .ok()
                .map(|_| std::sync::Mutex::new(tx))
        })
        .as_ref()
}

/// [`reload`] on the reload thread, off the request workers.
pub async fn reload_in_background(state: Arc<AppState>) -> Result<Reloaded, Vec<Diagnostic>> {
    let stopped = |e: &str| vec![Diagnostic::file_error("-", format!("the reload stopped: {e}"))];
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(reload(&state));
    });
    let sent = reload_thread()
        .and_then(|t| t.lock().ok().map(|t| t.send(job).is_ok()))
        .unwrap_or(false);
    if !sent {
        return Err(stopped("no reload thread"));
    }
    rx.await.unwrap_or_else(|e| Err(stopped(&e.to_string())))
}

/// Watch the policy files until `shutdown` changes.
pub async fn watch_policies(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let files = state.config.policy_files.clone();
    let stamp = |files: Vec<PathBuf>| async move {
        tokio::task::spawn_blocking(move || fingerprint(&files))
            .await
            .unwrap_or_default()
    };
    // What was loaded: taken when the state was made, so a change made since is not missed.
    let mut last = state.policy_stamp;
    let mut tick = tokio::time::interval(state.config.reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hup = sighup();
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            _ = next_hup(&mut hup) => true,
            _ = shutdown.changed() => return,
        };
        let now = stamp(files.clone()).await;
        if now == last && !forced {
            continue;
        }
        match reload_in_background(state.clone()).await {
            Ok(Reloaded::Swapped(n)) => {
                last = now;
                tracing::info!(routes = n, forced, "policies reloaded");
            }
            Ok(Reloaded::KeptWhileEmpty(files)) => {
                // Not remembered as seen: the next tick looks again, once the file is written.
                tracing::warn!(
                    files = %files.join(", "),
                    "a policy file is empty (being written?); the last good policy stays"
                );
            }
            Err(diags) => {
                last = now;
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

/// What [`capacity`] found and decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// The soft file-descriptor limit, after raising it to the hard one.
    pub files: u64,
    /// Connections each listener serves at once.
    pub per_listener: usize,
}

/// File descriptors kept aside from the listeners' connections: policy reads, Redis, calls to
/// the identity provider, logs.
pub const RESERVED_FILES: u64 = 128;
/// The most connections a listener gets from the file limit alone (each costs memory).
pub const MAX_DERIVED_CONNECTIONS: usize = 16_384;

/// Capacity from the machine, not a constant: raise the soft file limit to the hard one (as Go
/// and nginx's `worker_rlimit_nofile` do), and when `limits.max_connections` is not set, share
/// what the limit leaves (after [`RESERVED_FILES`]) between the `listeners`.
pub fn capacity(limits: &mut crate::config::Limits, listeners: usize) -> Capacity {
    let files = raise_file_limit();
    if limits.max_connections == 0 {
        let share = files.saturating_sub(RESERVED_FILES) / listeners.max(1) as u64;
        limits.max_connections = usize::try_from(share)
            .unwrap_or(MAX_DERIVED_CONNECTIONS)
            .clamp(16, MAX_DERIVED_CONNECTIONS);
    }
    Capacity {
        files,
        per_listener: limits.max_connections,
    }
}

/// The soft limit on open files, raised to the hard limit where possible.
#[cfg(unix)]
fn raise_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let want = Rlimit {
        current: now.maximum,
        maximum: now.maximum,
    };
    if now.current != now.maximum && setrlimit(Resource::Nofile, want).is_ok() {
        return now.maximum.unwrap_or(u64::MAX);
    }
    now.current.unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
fn raise_file_limit() -> u64 {
    u64::from(u16::MAX)
}

/// Serve until `shutdown` resolves, watching the policy files meanwhile; metrics on their own
/// listener when one is given.
pub async fn run(
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    ext_authz: Option<tokio::net::TcpListener>,
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
    if let Some(g) = ext_authz {
        let mut stop = rx.clone();
        let done = async move {
            let _ = stop.changed().await;
        };
        let st = state.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve_ext_authz(g, st, done).await {
                tracing::error!(error = %e, "the ext_authz listener stopped");
            }
        });
    }
    if let Some(store) = state.sessions.store() {
        tokio::spawn(store.clone().follow(rx.clone()));
    }
    for p in state.providers.iter() {
        // Existing sessions keep working while a provider is unreachable; sign-in waits.
        tokio::spawn(p.clone().discover_until_ready(rx.clone()));
    }
    // Signing keys are fetched again periodically, so a withdrawn key stops being trusted.
    {
        let (st, mut stop) = (state.clone(), rx.clone());
        tokio::spawn(async move {
            let mut next = crate::oidc::transport::KEYS_REFRESH_DEFAULT;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(next) => {}
                    _ = stop.changed() => return,
                }
                next = st.refresh_keys().await;
            }
        });
    }
    let watcher = tokio::spawn(watch_policies(state.clone(), rx));
    let result = crate::http::serve(listener, state, shutdown).await;
    let _ = tx.send(true);
    let _ = watcher.await;
    result
}
