//! Fault injection against the real binary: slowloris and idle connections, a connection
//! flood, SIGTERM with a half-sent request, and reloads of large or half-written policy files.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

const POLICY: &str = "- from: https://app.example.com\n  allow_public_unauthenticated_access: true\n";

/// One auth check on a fresh connection, `Connection: close`.
async fn check(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(
        b"GET /oauth2/auth HTTP/1.1\r\nHost: fw\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example.com\r\nX-Forwarded-Uri: /\r\nConnection: close\r\n\r\n",
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.get(9..12)?.parse().ok()
}

/// Whether the server closed `s` within `within` (a read returns 0 bytes or an error).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let started = Instant::now();
    loop {
        match tokio::time::timeout(within.saturating_sub(started.elapsed()), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

const LIMITS: &str = "limits:\n  header_read_timeout: 1s\n  max_connections: 8\n  shutdown_timeout: 2s\n";

#[tokio::test]
async fn slowloris_and_idle_connections_are_closed_after_the_header_read_timeout() {
    let port = free_port();
    let fw = fw_process_on(
        port,
        POLICY,
        "",
        &format!("trusted_proxies: [127.0.0.1/32]\n{LIMITS}"),
    )
    .await;
    assert_eq!(check(port).await, Some(200), "{}", fw.logs());
    // Slowloris: a request head that never ends.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET /oauth2/auth HTTP/1.1\r\nHost: fw\r\nX-A: ")
        .await
        .unwrap();
    // Idle: connected, nothing sent.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Keep-alive, idle after one request.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: fw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    for (name, s) in [
        ("slowloris", &mut slow),
        ("idle", &mut idle),
        ("keep-alive", &mut kept),
    ] {
        assert!(
            closed_within(s, Duration::from_secs(4)).await,
            "{name} connection still open"
        );
    }
}

/// Regression: under `ulimit -n 1024`, 1,100 idle connections made forwarden stop answering and
/// stop reading its policy files. With `limits.max_connections`, the flood waits in the kernel's
/// backlog: forwarden's open files stay bounded, the policy watcher keeps working, and once the
/// flood is gone the next check is answered at once.
#[tokio::test]
async fn a_connection_flood_leaves_files_bounded_and_reloads_working() {
    let port = free_port();
    let fw = fw_process_on(
        port,
        POLICY,
        "",
        &format!("trusted_proxies: [127.0.0.1/32]\nreload_interval: 1s\n{LIMITS}"),
    )
    .await;
    assert_eq!(check(port).await, Some(200), "{}", fw.logs());
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", fw.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds();
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            flood.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = fds();
    assert!(
        during <= before + 8 + 2,
        "open files went from {before} to {during} with max_connections 8"
    );
    // The policy watcher still runs during the flood.
    std::fs::write(
        fw.dir.path().join("policy.yaml"),
        "- from: https://app.example.com\n  allowed_users: [a@example.com]\n",
    )
    .unwrap();
    let started = Instant::now();
    while !fw.logs().contains("policies reloaded") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no reload during the flood: {}",
            fw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(flood);
    let started = Instant::now();
    assert_eq!(check(port).await, Some(401), "{}", fw.logs());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sigterm_with_a_half_sent_request_open_exits_by_the_shutdown_deadline() {
    let port = free_port();
    let mut fw = fw_process_on(
        port,
        POLICY,
        "",
        "trusted_proxies: [127.0.0.1/32]\nlimits:\n  header_read_timeout: 60s\n  shutdown_timeout: 1s\n",
    )
    .await;
    assert_eq!(check(port).await, Some(200));
    let mut half = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    half.write_all(b"POST /oauth2/sign_out HTTP/1.1\r\nHost: fw\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &fw.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = loop {
        if let Some(s) = fw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "forwarden did not exit: {}",
            fw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    drop(half);
}

#[tokio::test]
async fn a_policy_file_truncated_to_zero_bytes_keeps_the_last_good_policy() {
    let port = free_port();
    let fw = fw_process_on(
        port,
        POLICY,
        "",
        "trusted_proxies: [127.0.0.1/32]\nreload_interval: 1s\n",
    )
    .await;
    assert_eq!(check(port).await, Some(200));
    // A writer mid-save: the file is empty for a while.
    std::fs::write(fw.dir.path().join("policy.yaml"), "").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        check(port).await,
        Some(200),
        "the last good policy stays: {}",
        fw.logs()
    );
    assert!(fw.logs().contains("a policy file is empty"), "{}", fw.logs());
    // The save completes: the new policy is loaded.
    std::fs::write(
        fw.dir.path().join("policy.yaml"),
        "- from: https://app.example.com\n  allowed_users: [a@example.com]\n",
    )
    .unwrap();
    let mut reloaded = false;
    for _ in 0..50 {
        if check(port).await == Some(401) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "{}", fw.logs());
}

/// A hostile identity provider answers discovery with a 20 MiB key set: forwarden stops reading
/// at 512 KiB and says why, instead of buffering it (a 200 MiB answer once raised peak memory by
/// over 450 MiB).
#[tokio::test]
async fn hostile_provider_oversized_answers_are_refused_without_being_buffered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}/t");
    let discovery = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/keys"),
    })
    .to_string();
    let app = axum::Router::new()
        .route(
            "/t/.well-known/openid-configuration",
            axum::routing::get(move || async move { discovery }),
        )
        .route(
            "/t/keys",
            axum::routing::get(|| async {
                // Streamed, without a Content-Length: the size is only known by reading.
                let chunks = (0..20 * 16).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
                axum::body::Body::from_stream(futures_stream(chunks))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fw = Fw::start_with(
        POLICY,
        &format!(
            "trusted_proxies: [127.0.0.1/32]\noidc:\n  issuer: {issuer}\n  client_id: c\n  client_secret: s\n"
        ),
    )
    .await;
    let http = client(&[]);
    let mut why = String::new();
    for _ in 0..100 {
        let r = http.get(fw.url("/readyz")).send().await.unwrap();
        why = r.text().await.unwrap();
        if why.contains("larger than") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(why.contains("the answer is larger than 512 KiB"), "{why}");
}

/// An iterator as a stream, without another dependency.
fn futures_stream<I: Iterator + Send + Unpin + 'static>(
    it: I,
) -> impl futures_core::Stream<Item = I::Item> + Send {
    struct S<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for S<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    S(it)
}
