//! The accept loop of every listener (auth, metrics, Envoy's gRPC ext_authz, with or without
//! TLS): the same bounds on each door, in number and in time, and a shutdown with a deadline.
//!
//! - At most `limits.max_connections` connections are open at once on a listener; past that,
//!   accepting pauses (new connections wait in the kernel's backlog), so a flood cannot use up
//!   file descriptors and stop the policy reloads.
//! - Half of them are the trusted proxies' own (`trusted_proxies`): a peer that is not one is
//!   accepted, looked at, and closed at once when the untrusted half is full, so a flood from
//!   elsewhere never locks the proxies out. When the untrusted half is nearly full, its
//!   connections that sit idle (no request in flight) are closed first, oldest first.
//! - `limits.header_read_timeout` closes a connection that has not sent a whole request head in
//!   time (a slowloris client, an HTTP/1 keep-alive connection idle between requests), an
//!   HTTP/2 connection with no call in flight for that long, and a TLS handshake that has not
//!   finished.
//! - Accept errors (`EMFILE`) back off instead of spinning.
//! - On shutdown the listener closes at once (new connections are refused), requests in flight
//!   finish, idle connections close, and whatever is still open after
//!   `limits.shutdown_timeout` is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

use super::auth::{check_endpoint, direct};
use super::ext_authz::{CALL_TIMEOUT, GrpcService, MAX_STREAMS};
use crate::config::Limits;
use crate::metrics::Metrics;
use crate::request::is_trusted;

/// What a listener speaks.
#[derive(Clone)]
pub(crate) enum App {
    /// HTTP/1.1: the auth endpoints, the metrics. With the state, the check endpoints are
    /// answered without the router ([`super::auth::direct`]).
    Http1(Router, Option<Arc<super::AppState>>),
    /// HTTP/2 gRPC: Envoy's ext_authz.
    Grpc(GrpcService),
}

/// One listener's door: what it serves, to whom it gives the reserved half, and how.
pub(crate) struct Door {
    /// The app.
    pub app: App,
    /// The peers the reserved half is for (the trusted proxies; none for metrics).
    pub trusted: Vec<IpNet>,
    /// TLS, when the listener has it.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The bounds.
    pub limits: Limits,
    /// Where closings are counted.
    pub metrics: Metrics,
}

/// Connections per listener when nothing sized them.
const UNSIZED_CONNECTIONS: usize = 512;

/// Untrusted connections beyond this share of their half make the idle ones close.
const HIGH_WATER: f64 = 0.9;

/// A connection's activity, for the idle timeout of HTTP/2 and for shedding idle connections.
#[derive(Default)]
struct Activity {
    /// Requests (calls) in flight.
    inflight: AtomicUsize,
    /// When it last became idle, in milliseconds since the listener started.
    idle_since: AtomicU64,
    /// Told to close if it is idle.
    shed: Notify,
}

/// The untrusted connections open on a listener, by id.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    /// Close the idle ones, oldest first: up to `n` of them.
    fn shed_idle(&self, n: usize) -> usize {
        let Ok(open) = self.open.lock() else { return 0 };
        let mut idle: Vec<&Arc<Activity>> = open
            .values()
            .filter(|a| a.inflight.load(Ordering::Relaxed) == 0)
            .collect();
        idle.sort_by_key(|a| a.idle_since.load(Ordering::Relaxed));
        for a in idle.iter().take(n) {
            a.shed.notify_one();
        }
        idle.len().min(n)
    }
}

/// Serve `door` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    door: Door,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = door.limits;
    let total = match limits.max_connections {
        // Not sized by `server::capacity` (a library user, a test): the former default.
        0 => UNSIZED_CONNECTIONS,
        n => n.max(2),
    };
    let untrusted_share = if door.trusted.is_empty() { total } else { total / 2 };
    let slots = Arc::new(Semaphore::new(total));
    let untrusted = Arc::new(Semaphore::new(untrusted_share));
    let registry = Arc::new(Registry::default());
    let door = Arc::new(door);
    let started = tokio::time::Instant::now();
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => {
                    backoff = Duration::from_millis(5);
                    x
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A peer that is not a trusted proxy gets a slot of the untrusted half, or is closed at
        // once: it can never take the proxies' half.
        let guest = if is_trusted(peer.ip(), &door.trusted) {
            None
        } else {
            let in_use = untrusted_share - untrusted.available_permits();
            if in_use as f64 >= untrusted_share as f64 * HIGH_WATER {
                registry.shed_idle((untrusted_share / 10).max(1));
            }
            match untrusted.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    door.metrics.connection_closed("untrusted_over_share");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        activity
            .idle_since
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let id = next_id;
        next_id += 1;
        if guest.is_some() {
            if let Ok(mut open) = registry.open.lock() {
                open.insert(id, activity.clone());
            }
        }
        let (door, registry, watcher) = (door.clone(), registry.clone(), graceful.watcher());
        connections.spawn(async move {
            connection(stream, peer, &door, activity, started, watcher).await;
            registry.open.lock().map(|mut o| o.remove(&id)).ok();
            drop((permit, guest));
        });
        // Reap finished connections so the set stays as small as what is open.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let open = connections.len();
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            timeout = ?limits.shutdown_timeout,
            "connections still open at the shutdown deadline are closed"
        );
        connections.abort_all();
    }
    Ok(())
}

/// Anything a connection can be served over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An HTTP/2 connection's I/O, telling h2 it has no vectored writes. h2 then copies a DATA
/// payload under 1 KiB into its write buffer (with vectored writes, anything over 256 bytes is
/// written from its own buffer, and nothing more is buffered until that write). An allowed
/// `Check` carries its identity headers (~600 bytes): this way its response and its trailers
/// leave in one write instead of two, as the no-op server's small answer does.
struct Unvectored<T>(T);

impl<T: AsyncRead + Unpin> AsyncRead for Unvectored<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Unvectored<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Serve one connection: the TLS handshake (bounded), then HTTP/1 or HTTP/2, until it ends,
/// idles out, is shed, or the shutdown deadline.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    door: &Door,
    activity: Arc<Activity>,
    started: tokio::time::Instant,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let limits = door.limits;
    let io: Box<dyn Io> = match &door.tls {
        None => Box::new(stream),
        Some(tls) => match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                door.metrics.connection_closed("handshake_timeout");
                return;
            }
        },
    };
    let track = {
        let activity = activity.clone();
        move |delta: isize| {
            if delta > 0 {
                activity.inflight.fetch_add(1, Ordering::Relaxed);
            } else if activity.inflight.fetch_sub(1, Ordering::Relaxed) == 1 {
                activity
                    .idle_since
                    .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        }
    };
    let served = async {
        match &door.app {
            App::Http1(router, checks) => {
                let app = Arc::new((router.clone(), checks.clone()));
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let app = app.clone();
                    let track = track.clone();
                    track(1);
                    async move {
                        let (router, checks) = &*app;
                        let check = checks
                            .as_ref()
                            .and_then(|st| Some((st, check_endpoint(req.method(), req.uri().path())?)));
                        let r = match check {
                            Some((st, contract)) => Ok(direct(st, peer, &req, contract).await),
                            None => {
                                req.extensions_mut().insert(ConnectInfo(peer));
                                router.clone().call(req).await
                            }
                        };
                        track(-1);
                        r
                    }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                if limits.max_headers != Limits::HYPER_MAX_HEADERS {
                    builder.max_headers(limits.max_headers);
                }
                let conn = builder.serve_connection(TokioIo::new(io), svc);
                // A whole request head within the header timeout of the connection's start or
                // of the last answer (a slowloris client, a keep-alive connection idle between
                // requests): one timer per connection that requests move on, where hyper's
                // `header_read_timeout` made, armed and cancelled a boxed timer per request
                // (about 800 instructions of a cookie check's 24k: bench/README.md, batch N).
                tokio::select! {
                    r = watcher.watch(conn) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection closed with an error");
                        }
                    }
                    () = idle_out(&activity, started, limits.header_read_timeout) => {
                        door.metrics.connection_closed("header_timeout");
                    }
                }
            }
            App::Grpc(grpc) => {
                let grpc = grpc.clone();
                let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut()
                        .insert(tonic::transport::server::TcpConnectInfo {
                            local_addr: None,
                            remote_addr: Some(peer),
                        });
                    let mut grpc = grpc.clone();
                    let track = track.clone();
                    track(1);
                    async move {
                        let r = match tokio::time::timeout(CALL_TIMEOUT, grpc.call(req)).await {
                            Ok(r) => r,
                            Err(_) => {
                                Ok(tonic::Status::deadline_exceeded("the check took too long").into_http())
                            }
                        };
                        track(-1);
                        r
                    }
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(MAX_STREAMS)
                    .max_header_list_size(64 * 1024);
                let conn = builder.serve_connection(TokioIo::new(Unvectored(io)), svc);
                // HTTP/2 has no request head to time: a connection with no call in flight for
                // the header timeout is closed (an idle one, or one that sent only the preface).
                tokio::select! {
                    r = watcher.watch(conn) => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "gRPC connection closed with an error");
                        }
                    }
                    () = idle_out(&activity, started, limits.header_read_timeout) => {
                        door.metrics.connection_closed("idle_timeout");
                    }
                }
            }
        }
    };
    tokio::select! {
        () = served => {}
        () = shed(&activity) => door.metrics.connection_closed("idle_shed"),
    }
}

/// Resolves when the connection has had no request in flight for `timeout`.
async fn idle_out(activity: &Activity, started: tokio::time::Instant, timeout: Duration) {
    loop {
        let idle_since = Duration::from_millis(activity.idle_since.load(Ordering::Relaxed));
        let busy = activity.inflight.load(Ordering::Relaxed) > 0;
        let idle_for = started.elapsed().saturating_sub(idle_since);
        if !busy && idle_for >= timeout {
            return;
        }
        let wait = if busy { timeout } else { timeout - idle_for };
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
}

/// Resolves when the listener sheds this connection while it is idle.
async fn shed(activity: &Activity) {
    loop {
        activity.shed.notified().await;
        if activity.inflight.load(Ordering::Relaxed) == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unvectored;
    use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// h2 copies a small DATA payload into its write buffer only over I/O without vectored
    /// writes; over TCP's vectored writes an allowed `Check` left in two writes (its answer,
    /// then its trailers), each a syscall and a segment, against one for the no-op server.
    #[tokio::test]
    async fn grpc_io_has_no_vectored_writes_so_an_answer_and_its_trailers_leave_in_one_write() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut back = [0u8; 4];
            s.read_exact(&mut back).await.unwrap();
            back
        });
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(tcp.is_write_vectored(), "TCP writes are vectored");
        let mut io = Unvectored(tcp);
        assert!(!io.is_write_vectored());
        let mut got = [0u8; 4];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        io.write_all(b"pong").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(&client.await.unwrap(), b"pong");
    }
}
