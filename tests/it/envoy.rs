//! Envoy's ext_authz contract, as Envoy speaks it (no Envoy binary runs here): a gRPC client
//! built from the same Envoy protos (`envoy-types`) sends `CheckRequest`s shaped like the ones
//! Envoy's ext_authz filter builds (`check_request_utils.cc`: the downstream peer as `source`,
//! the listener's address as `destination`, the pseudo-headers among the lower-cased headers,
//! `host` = `:authority`, `path` with the query, `context_extensions` from the route), and
//! HTTP-mode requests shaped like its HTTP client's (the original method, `path_prefix` +
//! the original path, the original Host, the allowed headers).

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{Address, CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{SocketAddress, socket_address::PortSpecifier};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;

use crate::util::*;

/// The proxy tests' policy on https, and a route for one port only.
fn policy() -> String {
    app_policy_https("") + PORT_ROUTE
}

const PORT_ROUTE: &str = "- from: https://app.test:8443\n  allow_public_unauthenticated_access: true\n";

/// A peer of Envoy's `AttributeContext` (the client as `source`, the listener as `destination`).
pub(crate) fn peer(ip: &str, port: u32) -> Option<Peer> {
    Some(Peer {
        address: Some(envoy_types::pb::envoy::config::core::v3::Address {
            address: Some(Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    })
}

/// A CheckRequest as Envoy's HTTP filter builds it for `method authority path` on a listener
/// at port 443, from a client at 203.0.113.7, with these extra client headers and the route's
/// context extensions.
fn envoy_check(
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    ext: &[(&str, &str)],
) -> CheckRequest {
    let mut h: HashMap<String, String> = [
        (":authority", authority),
        (":method", method),
        (":path", path),
        (":scheme", "https"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "0d7c7a3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"),
        ("user-agent", "Mozilla/5.0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in headers {
        h.insert(k.to_ascii_lowercase(), v.to_string());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: peer("203.0.113.7", 52_000),
            destination: peer("10.0.0.5", 443),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "0d7c7a3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f".into(),
                    method: method.into(),
                    headers: h,
                    path: path.into(),
                    host: authority.into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    size: -1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: ext.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }),
    }
}

/// One `Check` as Envoy sends it, and its answer.
async fn ask(
    c: &mut AuthorizationClient<tonic::transport::Channel>,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    ext: &[(&str, &str)],
) -> Answer {
    answer(
        c.check(envoy_check(method, authority, path, headers, ext))
            .await
            .unwrap()
            .into_inner(),
    )
}

async fn grpc(fw: &Fw) -> AuthorizationClient<tonic::transport::Channel> {
    AuthorizationClient::connect(format!("http://{}", fw.ext_authz.unwrap()))
        .await
        .unwrap()
}

async fn start(extra: &str) -> Fw {
    Fw::start_with(
        &policy(),
        &format!("trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n{extra}"),
    )
    .await
}

/// The denial's status and headers, or the allowed request's headers to set and to remove.
enum Answer {
    Ok {
        set: HashMap<String, String>,
        remove: Vec<String>,
    },
    Denied {
        status: i32,
        headers: HashMap<String, String>,
        body: String,
    },
}

fn answer(r: CheckResponse) -> Answer {
    let code = r.status.map(|s| s.code).unwrap_or(-1);
    match r.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(code, 0);
            Answer::Ok {
                set: ok
                    .headers
                    .into_iter()
                    .filter_map(|h| h.header)
                    .map(|h| (h.key.to_ascii_lowercase(), h.value))
                    .collect(),
                remove: ok.headers_to_remove,
            }
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            assert_ne!(code, 0);
            Answer::Denied {
                status: d.status.map(|s| s.code).unwrap_or(0),
                headers: d
                    .headers
                    .into_iter()
                    .filter_map(|h| h.header)
                    .map(|h| (h.key.to_ascii_lowercase(), h.value))
                    .collect(),
                body: d.body,
            }
        }
        other => panic!("no http_response: {other:?}"),
    }
}

#[tokio::test]
async fn envoy_grpc_check_contract() {
    let fw = start("").await;
    let c = grpc(&fw).await;
    let alice = fw.cookie(&alice());
    let bob = fw.cookie(&bob());
    let ask = |req: CheckRequest| {
        let mut c = c.clone();
        async move { answer(c.check(req).await.unwrap().into_inner()) }
    };
    // A page load without a session: 302 to sign in on the app's host, the whole URL kept.
    match ask(envoy_check(
        "GET",
        "app.test",
        "/docs?a=1&b=2",
        &[("accept", "text/html")],
        &[],
    ))
    .await
    {
        Answer::Denied { status, headers, .. } => {
            assert_eq!(status, 302);
            assert_eq!(
                headers["location"],
                "https://app.test/oauth2/start?rd=https%3A%2F%2Fapp%2Etest%2Fdocs%3Fa%3D1%26b%3D2"
            );
        }
        Answer::Ok { .. } => panic!("allowed without a session"),
    }
    // An API request: 401.
    match ask(envoy_check(
        "GET",
        "app.test",
        "/api",
        &[("accept", "application/json")],
        &[],
    ))
    .await
    {
        Answer::Denied { status, .. } => assert_eq!(status, 401),
        Answer::Ok { .. } => panic!("allowed"),
    }
    // Allowed: the identity to set, and every client copy of an identity header to remove.
    let forged = [
        ("cookie", alice.as_str()),
        ("x-auth-request-user", "mallory"),
        ("x_auth_request_email", "mallory@example.com"),
        ("X-Forwarden-Jwt", "forged"),
    ];
    match ask(envoy_check("GET", "app.test", "/admin/x", &forged, &[])).await {
        Answer::Ok { set, remove } => {
            assert_eq!(set["x-auth-request-user"], "alice-oid");
            assert_eq!(set["x-auth-request-email"], "alice@example.com");
            assert_eq!(set["x-auth-request-groups"], "admins,staff");
            // Only identity headers reach the upstream's request: never the HTTP answer's
            // framing (its `Content-Length: 0`), which would change how the request is read.
            assert!(
                set.keys()
                    .all(|k| k.starts_with("x-auth-request-") || k == "x-forwarden-jwt"),
                "{set:?}"
            );
            // Every header forwarden may set but did not (the client id: a session has none),
            // every client copy of one, and the cookie (forwarden's session was the only one).
            assert_eq!(
                remove,
                [
                    "x-auth-request-client-id",
                    "x-forwarden-jwt",
                    "x_auth_request_email",
                    "cookie"
                ],
                "{set:?}"
            );
        }
        Answer::Denied { status, body, .. } => panic!("{status} {body}"),
    }
    // Forbidden: 403 with forwarden's page.
    match ask(envoy_check(
        "GET",
        "app.test",
        "/admin/x",
        &[("cookie", bob.as_str()), ("accept", "text/html")],
        &[],
    ))
    .await
    {
        Answer::Denied {
            status,
            body,
            headers,
        } => {
            assert_eq!(status, 403);
            assert!(headers["content-type"].starts_with("text/html"));
            assert!(
                body.contains("bob@example.com") && body.contains("/oauth2/sign_out"),
                "{body}"
            );
        }
        Answer::Ok { .. } => panic!("allowed"),
    }
    // context_extensions narrow the route, as the nginx query does.
    match ask(envoy_check(
        "GET",
        "app.test",
        "/x",
        &[("cookie", bob.as_str())],
        &[("allowed_groups", "admins")],
    ))
    .await
    {
        Answer::Denied { status, .. } => assert_eq!(status, 403),
        Answer::Ok { .. } => panic!("the narrowing was ignored"),
    }
    // A public route: nothing to set, the client's copies removed.
    match ask(envoy_check(
        "GET",
        "app.test",
        "/public/x",
        &[("x-auth-request-user", "mallory")],
        &[],
    ))
    .await
    {
        Answer::Ok { set, remove } => {
            assert!(set.is_empty(), "{set:?}");
            // The client's copy, and every other header forwarden may set but did not.
            assert_eq!(
                remove,
                [
                    "x-auth-request-client-id",
                    "x-auth-request-email",
                    "x-auth-request-groups",
                    "x-auth-request-preferred-username",
                    "x-auth-request-roles",
                    "x-auth-request-user",
                ]
            );
        }
        Answer::Denied { status, .. } => panic!("{status}"),
    }
}

/// The client's own description headers are not believed: the request is what Envoy routed.
#[tokio::test]
async fn host_confusion_through_envoy_grpc_client_description_headers_and_ports() {
    let fw = start("").await;
    let mut c = grpc(&fw).await;
    let bob = fw.cookie(&bob());
    let spoofed = [
        ("cookie", bob.as_str()),
        ("x-forwarded-uri", "/public/"),
        ("x-forwarded-host", "other.test"),
        ("x-original-url", "https://app.test/public/"),
    ];
    let r = ask(&mut c, "GET", "app.test", "/admin/x", &spoofed, &[]).await;
    assert!(
        matches!(r, Answer::Denied { status: 403, .. }),
        "the spoofed description was believed"
    );
    // A port in the authority is the client's word, and it contradicts the listener's port
    // (443): the request is refused, so the public route of port 8443 is never chosen.
    let r = ask(&mut c, "GET", "app.test:8443", "/admin/x", &[], &[]).await;
    match r {
        Answer::Denied { status, body, .. } => {
            assert_eq!(status, 403);
            assert!(body.contains("could not tell which address"), "{body}");
        }
        Answer::Ok { set, .. } => panic!("allowed: {set:?}"),
    }
    // `route` names the route it protects by its `from` URL: judged as that route's host (a
    // host no route covers would be refused).
    let alice = fw.cookie(&alice());
    let r = ask(
        &mut c,
        "GET",
        "other.test",
        "/admin/x",
        &[("cookie", alice.as_str())],
        &[("route", "https://app.test")],
    )
    .await;
    assert!(matches!(r, Answer::Ok { .. }));
    let r = ask(
        &mut c,
        "GET",
        "other.test",
        "/admin/x",
        &[("cookie", alice.as_str())],
        &[],
    )
    .await;
    assert!(matches!(r, Answer::Denied { status: 403, .. }));
    // A route pins its host: the authority it was reached with does not matter.
    let r = ask(
        &mut c,
        "GET",
        "other.test",
        "/admin/x",
        &[("cookie", bob.as_str())],
        &[("host", "app.test")],
    )
    .await;
    assert!(matches!(r, Answer::Denied { status: 403, .. }));
}

/// Only a trusted caller's description counts.
#[tokio::test]
async fn untrusted_caller_through_envoy_grpc_is_refused() {
    let fw = Fw::start_with(
        &policy(),
        "trusted_proxies: [10.9.9.9/32]\next_authz_listen: 127.0.0.1:0\n",
    )
    .await;
    let mut c = grpc(&fw).await;
    let alice = fw.cookie(&alice());
    let r = ask(
        &mut c,
        "GET",
        "app.test",
        "/x",
        &[("cookie", alice.as_str())],
        &[],
    )
    .await;
    assert!(matches!(r, Answer::Denied { status: 403, .. }));
}

#[tokio::test]
async fn oversized_check_request_is_refused_by_the_grpc_bound() {
    let fw = start("").await;
    let mut c = grpc(&fw).await;
    let big = "a".repeat(300 * 1024);
    let r = c
        .check(envoy_check(
            "GET",
            "app.test",
            "/x",
            &[("x-big", big.as_str())],
            &[],
        ))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::OutOfRange);
}

/// The gRPC service is written out rather than generated: a method it does not serve (another
/// name, another API version) is answered UNIMPLEMENTED, as tonic's generated server answers,
/// never judged as a `Check`.
#[tokio::test]
async fn unknown_grpc_method_is_unimplemented_not_answered_as_check() {
    let fw = start("").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", fw.ext_authz.unwrap()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for path in [
        "/envoy.service.auth.v3.Authorization/Checks",
        "/envoy.service.auth.v2.Authorization/Check",
        "/envoy.service.auth.v3.Authorization/Check/",
    ] {
        let mut g = tonic::client::Grpc::new(channel.clone());
        g.ready().await.unwrap();
        let r = g
            .unary::<CheckRequest, CheckResponse, _>(
                tonic::Request::new(envoy_check("GET", "app.test", "/x", &[], &[])),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await;
        assert_eq!(r.unwrap_err().code(), tonic::Code::Unimplemented, "{path}");
    }
}

/// Envoy's HTTP ext_authz: `path_prefix: /oauth2/ext-authz`, the original method and Host.
#[tokio::test]
async fn envoy_http_mode_contract() {
    // The HTTP mode never learns the listener's port, so a host with a port-specific route is
    // refused there (which route applies cannot be established): see the end of this test.
    let portless = app_policy_https("");
    let fw = Fw::start_with(
        &portless,
        "trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n",
    )
    .await;
    let http = client(&[("app.test", fw.addr.port())]);
    let url = |p: &str| format!("http://app.test:{}/oauth2/ext-authz{p}", fw.addr.port());
    let alice = fw.cookie(&alice());
    let bob = fw.cookie(&bob());
    let r = http
        .get(url("/docs?a=1"))
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
        .page()
        .sent()
        .await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "https://app.test/oauth2/start?rd=https%3A%2F%2Fapp%2Etest%2Fdocs%3Fa%3D1"
    );
    let r = http
        .post(url("/admin/x"))
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
        .header("cookie", &alice)
        .header("x-auth-request-user", "mallory")
        .header("x-forwarden-jwt", "forged")
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-request-user"], "alice-oid");
    // The identity headers the answer does not set, and the cookie (forwarden's session was
    // the only one).
    assert_eq!(
        r.headers()["x-envoy-auth-headers-to-remove"],
        "x-auth-request-client-id,x-forwarden-jwt,cookie"
    );
    // The client's description headers are not believed here either.
    let r = http
        .get(url("/admin/x"))
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-uri", "/public/")
        .header("cookie", &bob)
        .sent()
        .await;
    assert_eq!(r.status(), 403);
    // With the port-specific route for app.test, the port is unknown here: refused.
    let fw = start("").await;
    let r = http_mode(&fw, "/docs").page().sent().await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("which port"));
}

/// A bearer token through the gRPC contract.
#[tokio::test]
async fn bearer_token_through_envoy_grpc() {
    let Some(idp) = idp(&["https://app.test/oauth2/callback".to_string()]).await else {
        return;
    };
    let extra = oidc_config(&idp.issuer, "openid", &home_tenant())
        .replace("trusted_proxies: [127.0.0.1/32]\n", "")
        + "bearer:\n  audiences: [\"api://forwarden-apps\"]\n";
    let fw = Fw::start_with(
        "- from: https://app.test\n  allowed_client_ids: [11112222-3333-4444-5555-666677778888]\n",
        &format!("trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n{extra}"),
    )
    .await;
    fw.discovered().await;
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "11112222-3333-4444-5555-666677778888"),
            ("client_secret", "caller-secret-0123456789abcdef"),
            ("resource", "api://forwarden-apps"),
        ])
        .json_answer()
        .await;
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let mut c = grpc(&fw).await;
    let r = ask(
        &mut c,
        "GET",
        "app.test",
        "/jobs",
        &[("authorization", bearer.as_str())],
        &[],
    )
    .await;
    match r {
        Answer::Ok { set, .. } => assert_eq!(
            set["x-auth-request-client-id"],
            "11112222-3333-4444-5555-666677778888"
        ),
        Answer::Denied { status, body, .. } => panic!("{status} {body}"),
    }
    let r = ask(
        &mut c,
        "GET",
        "app.test",
        "/jobs",
        &[("authorization", "Bearer e30.e30.x")],
        &[],
    )
    .await;
    match r {
        Answer::Denied { status, headers, .. } => {
            assert_eq!(status, 401);
            assert!(headers["www-authenticate"].contains("invalid_token"));
        }
        Answer::Ok { .. } => panic!("a broken token was allowed"),
    }
}

/// A page load with a session due for refresh goes through `/oauth2/refresh` (a plain request
/// that can set every cookie), through the gRPC contract too.
#[tokio::test]
async fn refresh_redirect_through_envoy_grpc() {
    let Some(idp) = idp(&["https://app.test/oauth2/callback".to_string()]).await else {
        return;
    };
    let extra =
        oidc_config(&idp.issuer, "openid", &home_tenant()).replace("trusted_proxies: [127.0.0.1/32]\n", "");
    let fw = Fw::start_full(
        &policy(),
        "  refresh: 1m\n",
        &format!("trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n{extra}"),
    )
    .await;
    fw.discovered().await;
    let session = forwarden::session::Session {
        identity: alice(),
        issued_at: now() - 3600,
        expires_at: now() + 3600,
        refresh_token: Some("rt".into()),
    };
    let cookie: String = forwarden::session::seal(
        &session,
        &forwarden::session::Keys::new(&[SECRET]),
        "_forwarden",
        [3; 12],
    )
    .into_iter()
    .map(|(n, v)| format!("{n}={v}"))
    .collect::<Vec<_>>()
    .join("; ");
    let mut c = grpc(&fw).await;
    let page = [("cookie", cookie.as_str()), ("accept", "text/html")];
    match ask(&mut c, "GET", "app.test", "/docs", &page, &[]).await {
        Answer::Denied { status, headers, .. } => {
            assert_eq!(status, 302);
            assert!(
                headers["location"]
                    .starts_with("https://app.test/oauth2/refresh?rd=https%3A%2F%2Fapp%2Etest%2Fdocs"),
                "{headers:?}"
            );
        }
        Answer::Ok { .. } => panic!("a page load with a session due for refresh passed without refreshing"),
    }
    // Not a page load: the still-valid session passes meanwhile.
    let api = [("cookie", cookie.as_str()), ("accept", "application/json")];
    assert!(matches!(
        ask(&mut c, "GET", "app.test", "/docs", &api, &[]).await,
        Answer::Ok { .. }
    ));
}

/// A self-signed P-256 certificate for forwarden.test in `dir`: (cert, key).
fn self_signed(dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let openssl = require("openssl")?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=forwarden.test",
            "-addext",
            "subjectAltName=DNS:forwarden.test",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    Some((cert, key))
}

/// forwarden with its gRPC listener over TLS (a fresh self-signed certificate) and `extra`
/// config lines: the certificate's folder, the certificate, and the server.
async fn start_tls(extra: &str) -> Option<(tempfile::TempDir, std::path::PathBuf, Fw)> {
    let dir = tempfile::TempDir::new().unwrap();
    let (cert, key) = self_signed(dir.path())?;
    let fw = start(&format!(
        "ext_authz_tls:\n  cert_file: {}\n  key_file: {}\n{extra}",
        cert.display(),
        key.display()
    ))
    .await;
    Some((dir, cert, fw))
}

/// `ext_authz_tls`: the gRPC listener speaks TLS with the configured certificate (a client that
/// trusts it checks as Envoy would with a `transport_socket`), and refuses cleartext.
#[tokio::test]
async fn envoy_grpc_over_tls() {
    let Some((_dir, cert, fw)) = start_tls("").await else {
        return;
    };
    let addr = fw.ext_authz.unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(&cert).unwrap(),
        ))
        .domain_name("forwarden.test");
    let channel = tonic::transport::Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AuthorizationClient::new(channel);
    let alice = fw.cookie(&alice());
    let r = ask(
        &mut c,
        "GET",
        "app.test",
        "/x",
        &[("cookie", alice.as_str())],
        &[],
    )
    .await;
    assert!(matches!(r, Answer::Ok { .. }));
    // A cleartext client gets nowhere.
    let plain = AuthorizationClient::connect(format!("http://{addr}")).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut p) => p
            .check(envoy_check("GET", "app.test", "/x", &[], &[]))
            .await
            .is_err(),
    };
    assert!(refused, "cleartext was answered on the TLS listener");
}

/// A `CheckRequest` whose client headers come as Envoy's `header_map` with
/// `encode_raw_headers: true`: a list of entries with byte values, repeated names kept apart.
fn envoy_check_raw(method: &str, path: &str, raw: &[(&str, &[u8])], ext: &[(&str, &str)]) -> CheckRequest {
    let mut c = envoy_check(method, "app.test", path, &[], ext);
    if let Some(http) = c
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.headers.clear();
        let mut list: Vec<envoy_types::pb::envoy::config::core::v3::HeaderValue> = [
            (":authority", b"app.test".as_slice()),
            (":method", method.as_bytes()),
            (":path", path.as_bytes()),
        ]
        .iter()
        .chain(raw.iter())
        .map(|(k, v)| envoy_types::pb::envoy::config::core::v3::HeaderValue {
            key: k.to_string(),
            raw_value: v.to_vec(),
            ..Default::default()
        })
        .collect();
        list.shrink_to_fit();
        http.header_map = Some(envoy_types::pb::envoy::config::core::v3::HeaderMap { headers: list });
    }
    c
}

const ROUND_TWO_POLICY: &str = "\
- from: https://app.test
  allowed_domains: [example.com]
- from: https://app.test
  prefix: /get-only
  methods: [GET]
  allow_public_unauthenticated_access: true
- from: https://app.test
  prefix: /public
  allow_public_unauthenticated_access: true
";

async fn start_round_two(extra: &str) -> (Fw, AuthorizationClient<tonic::transport::Channel>) {
    let fw = Fw::start_with(
        ROUND_TWO_POLICY,
        &format!("trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n{extra}"),
    )
    .await;
    let c = grpc(&fw).await;
    (fw, c)
}

async fn check(c: &AuthorizationClient<tonic::transport::Channel>, req: CheckRequest) -> Answer {
    answer(c.clone().check(req).await.unwrap().into_inner())
}

#[tokio::test]
async fn unusable_method_through_envoy_grpc_is_refused_not_judged_as_get() {
    let (_fw, c) = start_round_two("").await;
    assert!(matches!(
        check(&c, envoy_check("GET", "app.test", "/get-only/x", &[], &[])).await,
        Answer::Ok { .. }
    ));
    for method in ["DELETE\0", "DELETE\x7f", "DEL ETE", ""] {
        match check(&c, envoy_check(method, "app.test", "/get-only/x", &[], &[])).await {
            Answer::Denied { status, .. } => assert_eq!(status, 403, "{method:?}"),
            Answer::Ok { .. } => panic!("{method:?} was judged as GET"),
        }
    }
    // A control character in the host or path: refused too, never dropped.
    for (host, path) in [("app.test\0", "/public/x"), ("app.test", "/public/\x01")] {
        match check(&c, envoy_check("GET", host, path, &[], &[])).await {
            Answer::Denied { status, .. } => assert_eq!(status, 403, "{host:?} {path:?}"),
            Answer::Ok { .. } => panic!("{host:?} {path:?} allowed"),
        }
    }
}

#[tokio::test]
async fn session_cookie_in_a_second_cookie_entry_of_envoy_header_map_is_read() {
    let (fw, c) = start_round_two("").await;
    let alice = fw.cookie(&alice());
    let raw: [(&str, &[u8]); 2] = [("cookie", b"theme=dark"), ("cookie", alice.as_bytes())];
    match check(&c, envoy_check_raw("GET", "/x", &raw, &[])).await {
        Answer::Ok { set, .. } => assert_eq!(set["x-auth-request-user"], "alice-oid"),
        Answer::Denied { status, body, .. } => panic!("{status} {body}"),
    }
}

#[tokio::test]
async fn unreadable_authorization_through_envoy_grpc_is_refused_not_decided_on_the_cookie() {
    // bearer: on, with an issuer whose keys are never fetched (nothing here verifies).
    let (fw, c) = start_round_two(
        "bearer:\n  audiences: [\"api://forwarden-apps\"]\n  issuers:\n    - issuer: https://issuer.test\n      jwks_url: http://127.0.0.1:9/keys\n",
    )
    .await;
    let alice = fw.cookie(&alice());
    let bad: [&[u8]; 4] = [
        b"Bearer \xff\xfe",
        b"Bearer\tabc",
        b"Bearer,abc",
        b"Basic YWJj, Bearer abc",
    ];
    for auth in bad {
        let raw: [(&str, &[u8]); 2] = [("cookie", alice.as_bytes()), ("authorization", auth)];
        match check(&c, envoy_check_raw("GET", "/x", &raw, &[])).await {
            Answer::Denied { status, headers, .. } => {
                assert_eq!(status, 401, "{auth:?}");
                assert!(
                    headers["www-authenticate"].contains("invalid_request"),
                    "{headers:?}"
                );
            }
            Answer::Ok { .. } => panic!("{auth:?}: decided on the cookie"),
        }
    }
    // Two Authorization entries (`Basic …` then `Bearer x`): refused as well.
    let raw: [(&str, &[u8]); 3] = [
        ("cookie", alice.as_bytes()),
        ("authorization", b"Basic YWJj"),
        ("authorization", b"Bearer abc"),
    ];
    assert!(matches!(
        check(&c, envoy_check_raw("GET", "/x", &raw, &[])).await,
        Answer::Denied { status: 401, .. }
    ));
    // The cookie alone still passes.
    let raw: [(&str, &[u8]); 1] = [("cookie", alice.as_bytes())];
    assert!(matches!(
        check(&c, envoy_check_raw("GET", "/x", &raw, &[])).await,
        Answer::Ok { .. }
    ));
}

#[tokio::test]
async fn forged_claim_header_outside_the_prefixes_is_removed_through_envoy() {
    // A claim header named by the configuration, outside X-Auth-Request-*/X-Forwarden-*.
    let (fw, c) = start_round_two("headers:\n  claims:\n    department: X-User-Department\n").await;
    let forged = [("x-user-department", "finance")];
    match check(&c, envoy_check("GET", "app.test", "/public/x", &forged, &[])).await {
        Answer::Ok { set, remove } => {
            assert!(set.is_empty(), "{set:?}");
            assert!(remove.iter().any(|r| r == "x-user-department"), "{remove:?}");
        }
        Answer::Denied { status, .. } => panic!("{status}"),
    }
    // The HTTP mode names it in x-envoy-auth-headers-to-remove.
    let r = http_mode(&fw, "/public/x")
        .header("x-user-department", "finance")
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    let remove = r.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap();
    assert!(remove.split(',').any(|n| n == "x-user-department"), "{remove}");
}

#[tokio::test]
async fn unknown_or_repeated_context_extension_through_envoy_grpc_is_refused() {
    let (fw, c) = start_round_two("").await;
    let alice = fw.cookie(&alice());
    let cookie = [("cookie", alice.as_str())];
    assert!(matches!(
        check(
            &c,
            envoy_check(
                "GET",
                "app.test",
                "/x",
                &cookie,
                &[("allowed_groups", "admins,staff")]
            )
        )
        .await,
        Answer::Ok { .. }
    ));
    for ext in [
        [("allowed_group", "admins")],
        [("Allowed_Groups", "admins")],
        [("team", "x")],
    ] {
        match check(&c, envoy_check("GET", "app.test", "/x", &cookie, &ext)).await {
            Answer::Denied { status, .. } => assert_eq!(status, 403, "{ext:?}"),
            Answer::Ok { .. } => panic!("{ext:?} was ignored"),
        }
    }
}

/// A raw HTTP/1.1 exchange with forwarden; the status code.
async fn raw_status(addr: std::net::SocketAddr, request: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).get(9..12)?.parse().ok()
}

#[tokio::test]
async fn two_host_headers_in_envoy_http_mode_are_refused_not_judged_by_the_first() {
    let (fw, _c) = start_round_two("").await;
    let code = raw_status(
        fw.addr,
        "GET /oauth2/ext-authz/x HTTP/1.1\r\nHost: www.test\r\nHost: app.test\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(code, Some(400 | 403)), "{code:?}");
}

#[tokio::test]
async fn app_root_page_in_envoy_http_mode_is_answered_not_404() {
    let (fw, _c) = start_round_two("").await;
    for path in ["/", "/?q=1"] {
        let r = http_mode(&fw, path).page().sent().await;
        assert_eq!(r.status(), 302, "{path}");
        let location = r.headers()["location"].to_str().unwrap();
        let rd = if path == "/" {
            "rd=https%3A%2F%2Fapp%2Etest%2F"
        } else {
            "rd=https%3A%2F%2Fapp%2Etest%2F%3Fq%3D1"
        };
        assert!(location.ends_with(rd), "{location}");
    }
}

/// A GET in Envoy's HTTP mode (`path_prefix: /oauth2/ext-authz`) for `path` on app.test, over
/// https as Envoy's edge says.
fn http_mode(fw: &Fw, path: &str) -> reqwest::RequestBuilder {
    client(&[("app.test", fw.addr.port())])
        .get(format!(
            "http://app.test:{}/oauth2/ext-authz{path}",
            fw.addr.port()
        ))
        .header("host", "app.test")
        .header("x-forwarded-proto", "https")
}

/// The attack: TLS handshakes that never finish on the gRPC listener, from a peer that is not a
/// trusted proxy. Each is closed at the header timeout, and the trusted proxy's Check is
/// answered meanwhile.
#[tokio::test]
async fn stalled_tls_handshakes_on_the_grpc_listener_are_closed_at_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    let Some((_dir, _cert, fw)) = start_tls("limits:\n  header_read_timeout: 1s\n").await else {
        return;
    };
    let addr = fw.ext_authz.unwrap();
    let mut stalled = Vec::new();
    for i in 0..120u16 {
        // A source port below the ephemeral range (see faults.rs `connect_from`).
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_reuseaddr(true).unwrap();
        s.bind(std::net::SocketAddr::from(([127, 0, 0, 5], 11_000 + i)))
            .unwrap();
        stalled.push(s.connect(addr).await.unwrap());
    }
    let started = std::time::Instant::now();
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "still open after {:?}",
            started.elapsed()
        );
    }
}

/// With `identity_jwt`, an allowed `Check` with a session sets the signed JWT's header; one
/// without a session (a public page) sets none and removes the client's copy: the name the
/// answer does not carry at all is still on the list to remove, so a forged one never passes.
#[tokio::test]
async fn forged_identity_jwt_through_envoy_grpc_is_removed_when_forwarden_signs_none() {
    let fw = start("identity_jwt:\n  header: X-Identity\n  lifetime: 2m\n").await;
    let mut c = grpc(&fw).await;
    let alice = fw.cookie(&alice());
    let with_session = [("cookie", alice.as_str()), ("x-identity", "forged")];
    match ask(&mut c, "GET", "app.test", "/docs", &with_session, &[]).await {
        Answer::Ok { set, remove } => {
            let jwt = &set["x-identity"];
            assert_ne!(jwt, "forged");
            assert_eq!(jwt.split('.').count(), 3, "{jwt}");
            assert!(!remove.iter().any(|r| r == "x-identity"), "{remove:?}");
        }
        Answer::Denied { status, body, .. } => panic!("refused {status}: {body}"),
    }
    let anonymous = [("x-identity", "forged")];
    match ask(&mut c, "GET", "app.test", "/public/x", &anonymous, &[]).await {
        Answer::Ok { set, remove } => {
            assert!(!set.contains_key("x-identity"), "{set:?}");
            assert!(remove.iter().any(|r| r == "x-identity"), "{remove:?}");
        }
        Answer::Denied { status, body, .. } => panic!("refused {status}: {body}"),
    }
}

/// The attack: a client header spelled like one forwarden sets, sent with a session whose
/// allowed answer each worker thread keeps encoded. The kept bytes are for the clean request
/// only; a request carrying a look-alike (any case, `_` for `-`) gets its own answer, which
/// removes it, and the next clean request gets the kept answer again, with nothing of the last
/// one's.
#[tokio::test]
async fn identity_header_spoofing_after_a_kept_envoy_answer_is_still_removed() {
    let fw = start("").await;
    let mut c = grpc(&fw).await;
    let alice = fw.cookie(&alice());
    let clean = [("cookie", alice.as_str())];
    let forged = [
        ("cookie", alice.as_str()),
        ("x-auth-request-admin", "yes"),
        ("X_Forwarden_Role", "admin"),
    ];
    let answers = |a: Answer| match a {
        Answer::Ok { set, remove } => (set, remove),
        Answer::Denied { status, body, .. } => panic!("refused {status}: {body}"),
    };
    // The clean request several times over (both worker threads keep its answer).
    let mut kept = Vec::new();
    for _ in 0..8 {
        kept.push(answers(
            ask(&mut c, "GET", "app.test", "/docs", &clean, &[]).await,
        ));
    }
    for _ in 0..8 {
        let (set, remove) = answers(ask(&mut c, "GET", "app.test", "/docs", &forged, &[]).await);
        assert!(remove.iter().any(|r| r == "x-auth-request-admin"), "{remove:?}");
        assert!(remove.iter().any(|r| r == "x_forwarden_role"), "{remove:?}");
        assert_eq!(set, kept[0].0);
    }
    for _ in 0..8 {
        let (set, remove) = answers(ask(&mut c, "GET", "app.test", "/docs", &clean, &[]).await);
        assert_eq!((&set, &remove), (&kept[0].0, &kept[0].1));
        assert!(
            !remove.iter().any(|r| r.contains("admin") || r.contains("role")),
            "{remove:?}"
        );
    }
    assert!(kept.iter().all(|k| *k == kept[0]));
}

/// An app behind Envoy that saw a user's session cookie could replay it at every other app this
/// forwarden protects. Allowed, `Check` replaces the client's `cookie` with the app's own
/// cookies, or removes it when forwarden's was the only one; without forwarden's cookie the
/// header is left alone. Envoy's HTTP mode does the same.
#[tokio::test]
async fn session_cookie_never_reaches_the_upstream_through_envoy() {
    let fw = start("").await;
    let mut c = grpc(&fw).await;
    let session = fw.cookie(&alice());
    let mixed = format!("theme=dark; {session}");
    // (the page, the client's cookie, the cookie set for the upstream, whether it is removed)
    let cases = [
        ("/docs", mixed.as_str(), Some("theme=dark"), false),
        ("/docs", session.as_str(), None, true),
        ("/public/x", "a=1", None, false),
    ];
    for (path, sent, set_to, removed) in cases {
        let sent = [("cookie", sent)];
        match ask(&mut c, "GET", "app.test", path, &sent, &[]).await {
            Answer::Ok { set, remove } => {
                assert_eq!(set.get("cookie").map(String::as_str), set_to, "{sent:?}");
                assert_eq!(remove.iter().any(|r| r == "cookie"), removed, "{remove:?}");
            }
            Answer::Denied { status, body, .. } => panic!("refused {status}: {body}"),
        }
    }
    // HTTP mode (which never learns the listener's port: a policy without port routes).
    let fw = Fw::start_with(
        &app_policy_https(""),
        "trusted_proxies: [127.0.0.1/32]\next_authz_listen: 127.0.0.1:0\n",
    )
    .await;
    let session = fw.cookie(&alice());
    let r = http_mode(&fw, "/docs")
        .header("cookie", format!("theme=dark; {session}"))
        .sent()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cookie"], "theme=dark");
    let r = http_mode(&fw, "/docs").header("cookie", &session).sent().await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("cookie").is_none());
    let remove = r.headers()["x-envoy-auth-headers-to-remove"].to_str().unwrap();
    assert!(remove.split(',').any(|h| h == "cookie"), "{remove}");
}
