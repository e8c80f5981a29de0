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
    let _fw = checked_fw(port, LIMITS).await;
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
    let fw = checked_fw(port, &format!("reload_interval: 1s\n{LIMITS}")).await;
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
    let mut fw = checked_fw(
        port,
        "limits:\n  header_read_timeout: 60s\n  shutdown_timeout: 1s\n",
    )
    .await;
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
    let fw = checked_fw(port, "reload_interval: 1s\n").await;
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
        let r = http.get(fw.url("/readyz")).sent().await;
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

/// forwarden as a process on `port` trusting loopback, with these config lines; its first
/// check answered 200.
async fn checked_fw(port: u16, config: &str) -> Proc {
    let fw = fw_process_on(
        port,
        POLICY,
        "",
        &format!("trusted_proxies: [127.0.0.1/32]\n{config}"),
    )
    .await;
    assert_eq!(check(port).await, Some(200), "{}", fw.logs());
    fw
}

/// forwarden as a process with these files, under `prlimit --nofile=<nofile>` when given.
async fn fw_process_limited(port: u16, config: &str, nofile: Option<u64>) -> Proc {
    let dir = fw_files(
        port,
        POLICY,
        "",
        &format!("trusted_proxies: [127.0.0.1/32]\n{config}"),
    );
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = std::process::Command::new(require("prlimit").expect("prlimit (util-linux)"));
            c.arg(format!("--nofile={n}:{n}"))
                .arg(env!("CARGO_BIN_EXE_forwarden"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_forwarden")),
    };
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(dir.path().join("forwarden.yaml"));
    spawn("forwarden", cmd, dir, port).await
}

/// A connection to `port` from `source:source_port` (a loopback address outside
/// `trusted_proxies`). The source port is chosen below the ephemeral range, so that thousands of
/// such connections never take a port another test's server was given by `free_port`.
async fn connect_from(source: &str, source_port: u16, port: u16) -> std::io::Result<TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(
        format!("{source}:{source_port}")
            .parse()
            .map_err(std::io::Error::other)?,
    )?;
    s.connect(([127, 0, 0, 1], port).into()).await
}

/// One gRPC `Check` from the trusted proxy's address; whether it was answered (allowed).
async fn grpc_check(port: u16) -> bool {
    use envoy_types::ext_authz::v3::pb::CheckRequest;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let call = async {
        let mut c = AuthorizationClient::connect(format!("http://127.0.0.1:{port}"))
            .await
            .ok()?;
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: "GET".into(),
                        host: "app.example.com".into(),
                        path: "/".into(),
                        scheme: "https".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let r = c.check(req).await.ok()?.into_inner();
        Some(r.status.map(|s| s.code) == Some(0))
    };
    tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .ok()
        .flatten()
        == Some(true)
}

/// The attack (hardening round two, 1): with a 1,024-descriptor limit, 1,100 connections from a
/// peer outside `trusted_proxies`, each sending only the HTTP/2 preface to the gRPC port (and as
/// many idle ones to the HTTP port). Every door still answers the trusted proxy: `/healthz`,
/// `/oauth2/auth` and gRPC `Check`.
#[tokio::test]
async fn grpc_preface_flood_from_an_untrusted_peer_under_1024_files_starves_no_door() {
    let (port, grpc, metrics) = (free_port(), free_port(), free_port());
    let fw = fw_process_limited(
        port,
        &format!("ext_authz_listen: 127.0.0.1:{grpc}\nmetrics_listen: 127.0.0.1:{metrics}\n"),
        Some(1024),
    )
    .await;
    assert!(grpc_check(grpc).await, "{}", fw.logs());
    let mut flood = Vec::new();
    for i in 0..2200u16 {
        let target = if i % 2 == 0 { grpc } else { port };
        if let Ok(mut s) = connect_from("127.0.0.4", 12_000 + i, target).await {
            if target == grpc {
                let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            }
            flood.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert_eq!(check(port).await, Some(200), "{}", fw.logs());
        assert!(
            grpc_check(grpc).await,
            "gRPC Check during the flood\n{}",
            fw.logs()
        );
        let mut h = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: fw\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), h.read_to_end(&mut buf)).await;
        assert!(
            buf.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
    // The capacity came from the file limit, and the flood met the untrusted half's bounds:
    // idle connections shed under pressure, and the ones over the half closed at once.
    let capacity = json_logs(&fw)
        .into_iter()
        .find(|l| {
            l["fields"]["message"]
                == "capacity (half of each listener's connections kept for trusted_proxies)"
        })
        .unwrap_or_else(|| panic!("no capacity line\n{}", fw.logs()));
    assert_eq!(capacity["fields"]["open_files"], 1024, "{capacity}");
    assert_eq!(
        capacity["fields"]["connections_per_listener"],
        (1024 - 128) / 3,
        "{capacity}"
    );
    let text = get_text(&client(&[]), &format!("http://127.0.0.1:{metrics}/metrics")).await;
    for reason in ["idle_shed", "untrusted_over_share"] {
        let series = format!("forwarden_connections_closed_total{{reason=\"{reason}\"}}");
        assert!(metric(&text, &series) > 0.0, "{series}\n{text}");
    }
    drop(flood);
}

/// The attack (connection floods): 5,000 idle connections and 200 slowloris ones from
/// addresses outside `trusted_proxies`, held; the trusted proxy's checks keep flowing (every
/// probe answered). The latency under this load is a benchmark figure (bench/README.md), not an
/// assertion here.
#[tokio::test]
async fn idle_and_slowloris_flood_from_untrusted_peers_never_locks_out_the_trusted_proxy() {
    let (port, metrics) = (free_port(), free_port());
    let fw = fw_process_limited(
        port,
        &format!("metrics_listen: 127.0.0.1:{metrics}\nlimits:\n  header_read_timeout: 2s\n"),
        None,
    )
    .await;
    let mut held = Vec::new();
    for i in 0..5200u16 {
        let source = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        if let Ok(mut s) = connect_from(source, 15_000 + i, port).await {
            if i >= 5000 {
                let _ = s
                    .write_all(b"GET /oauth2/auth HTTP/1.1\r\nHost: fw\r\nX-Slow: ")
                    .await;
            }
            held.push(s);
        }
    }
    let mut times = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let t = Instant::now();
        assert_eq!(
            check(port).await,
            Some(200),
            "a probe during the flood\n{}",
            fw.logs()
        );
        times.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    times.sort();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    eprintln!("{} probes during the flood, p99 {p99:?}", times.len());
    // The slowloris connections were closed at the header timeout, whoever sent them.
    let text = get_text(&client(&[]), &format!("http://127.0.0.1:{metrics}/metrics")).await;
    assert!(
        metric(
            &text,
            "forwarden_connections_closed_total{reason=\"header_timeout\"}"
        ) > 0.0,
        "{text}"
    );
    drop(held);
}
