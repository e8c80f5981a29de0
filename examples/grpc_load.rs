//! A fixed-concurrency gRPC load client for Envoy's ext_authz `Check` (the benchmark's gRPC
//! mode): `connections` HTTP/2 connections, `concurrency` calls in flight in all, for
//! `seconds`, each a `CheckRequest` for an allowed page with the given Cookie header. Prints
//! requests/s, p50 and p99, and the calls that were not allowed.
//!
//! It reads of each answer only what tells an allowed call (the status code and that an
//! `ok_response` is there); the headers an allowed answer carries are skipped unread. Decoding
//! them into strings cost this client 1.07-1.28x the CPU per call on forwarden's answers
//! (identity headers, ~600 bytes) that it spent on the no-op server's empty ones, and the client
//! shares the machine's cores with the server it measures.
//! `cargo run --release --example grpc_load -- <addr> <seconds> <connections> <concurrency> <cookie>`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use tonic::codegen::http::uri::PathAndQuery;
use tonic_prost::ProstCodec;

/// The part of Envoy's `CheckResponse` this client reads: `status` (field 1) and the
/// `ok_response` of the `http_response` choice (field 3); every other field is skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct Answer {
    #[prost(message, optional, tag = "1")]
    status: Option<Code>,
    #[prost(message, optional, tag = "3")]
    ok_response: Option<Skipped>,
}

/// `google.rpc.Status`, its code only.
#[derive(Clone, PartialEq, prost::Message)]
struct Code {
    #[prost(int32, tag = "1")]
    code: i32,
}

/// A message whose fields are all skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct Skipped {}

const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

#[allow(clippy::disallowed_methods)]
fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> T {
    match args.get(i).and_then(|a| a.parse().ok()) {
        Some(v) => v,
        None => {
            eprintln!("usage: grpc_load <addr> <seconds> <connections> <concurrency> <cookie> ({name})");
            std::process::exit(2);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: String = arg(&args, 0, "addr");
    let seconds: u64 = arg(&args, 1, "seconds");
    let connections: usize = arg(&args, 2, "connections");
    let concurrency: usize = arg(&args, 3, "concurrency");
    let cookie: String = arg(&args, 4, "cookie");
    let headers: HashMap<String, String> = [
        (":authority", "app.bench.test"),
        (":method", "GET"),
        (":path", "/dashboard?tab=1"),
        (":scheme", "https"),
        ("cookie", cookie.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    headers,
                    path: "/dashboard?tab=1".into(),
                    host: "app.bench.test".into(),
                    scheme: "https".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        clients.push(tonic::client::Grpc::new(channel));
    }
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..concurrency.max(1) {
        let mut client = clients[i % clients.len()].clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut refused) = (Vec::new(), 0u64);
            while Instant::now() < until {
                let t = Instant::now();
                let ok = match client.ready().await {
                    Ok(()) => {
                        let codec = ProstCodec::<CheckRequest, Answer>::default();
                        let path = PathAndQuery::from_static(CHECK);
                        match client
                            .unary(tonic::Request::new(request.clone()), path, codec)
                            .await
                        {
                            Ok(r) => {
                                let a = r.into_inner();
                                a.status.is_some_and(|s| s.code == 0) && a.ok_response.is_some()
                            }
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                };
                latencies.push(t.elapsed());
                refused += u64::from(!ok);
            }
            (latencies, refused)
        }));
    }
    let (mut all, mut refused) = (Vec::new(), 0);
    for t in tasks {
        let (l, r) = t.await?;
        all.extend(l);
        refused += r;
    }
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1));
        all.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!("Requests/sec: {:.2}", all.len() as f64 / seconds as f64);
    println!("p50 {:.2}ms p99 {:.2}ms", pct(0.50), pct(0.99));
    println!("not allowed: {refused}");
    Ok(())
}
