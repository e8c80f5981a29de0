//! The accept loop: every connection bounded in number and in time, and a shutdown with a
//! deadline.
//!
//! - At most `limits.max_connections` connections are served at once; past that, accepting
//!   pauses (new connections wait in the kernel's backlog) until one closes, so a flood of idle
//!   connections cannot exhaust file descriptors and stop the policy reloads.
//! - `limits.header_read_timeout` closes a connection that has not sent a whole request head
//!   in time: a slowloris client, or a keep-alive connection idle between requests.
//! - Accept errors (`EMFILE`) back off instead of spinning.
//! - On shutdown the listener closes at once (new connections are refused), requests in flight
//!   finish, idle connections close, and whatever is still open after
//!   `limits.shutdown_timeout` is dropped.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower_service::Service;

use crate::config::Limits;

/// Serve `app` on `listener` until `shutdown` completes, within `limits`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut backoff = Duration::from_millis(5);
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { app.call(req).await }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        if limits.max_headers != Limits::HYPER_MAX_HEADERS {
            builder.max_headers(limits.max_headers);
        }
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
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
