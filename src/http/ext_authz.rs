//! Envoy's external authorization, the contract of Gateway API implementations built on Envoy
//! (Envoy Gateway, Istio, Cilium, kgateway, Contour): gRPC `envoy.service.auth.v3.Authorization/Check`
//! on `ext_authz_listen`, and the HTTP mode under `/oauth2/ext-authz` (Envoy's `path_prefix`).
//!
//! Both run the same pipeline as the other contracts ([`super::auth::resolve`]), described
//! straight from what Envoy routed on ([`super::ask::describe_parts`]; gRPC: the typed
//! `attributes.request.http` method, scheme, host and path, the port of
//! `attributes.destination` and the address of `attributes.source`; HTTP: the method, the path
//! after the prefix and the `Host` of the auth request itself), never from a client's
//! `X-Forwarded-*` headers and never through a made-up HTTP request. Envoy is the caller, so
//! its address must be in `trusted_proxies`. From the client's headers forwarden reads only
//! `Cookie`, `Authorization`, `Accept` and `Access-Control-Request-Method`, each entry kept
//! apart (a repeated one stays visible as such).
//!
//! Allowed: the identity headers to set, and every client header that looks like one forwarden
//! sets (`X-Auth-Request-*`, `X-Forwarden-*`, with `-` or `_`) to remove: the gateway, not the
//! client, decides what the upstream sees. Denied: forwarden's answer (302 to sign in for a
//! page load, 401, 403 with its page) as the response Envoy sends the client.
//!
//! Bounds: a gRPC message is at most [`MAX_MESSAGE`] bytes; a call has
//! [`CALL_TIMEOUT`]; each HTTP/2 connection carries at most [`MAX_STREAMS`] calls at once.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use envoy_types::ext_authz::v3::pb::{
    Address, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::google::rpc;

use super::AppState;
use super::ask::{Seen, describe_parts, undescribable};
use super::audit::Tally;
use super::auth::resolve;
use super::cookies::without_session;
use super::edge::{Allowed, Answer, Contract, Denial};
use crate::request::Parts;

mod service;

use service::{Reply, encoded_allow};

/// The largest gRPC message read.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// The longest one `Check` may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent calls on one HTTP/2 connection.
pub const MAX_STREAMS: u32 = 256;
/// The client headers forwarden reads.
const CLIENT_HEADERS: [&str; 4] = [
    "cookie",
    "authorization",
    "accept",
    "access-control-request-method",
];

/// Whether a client header could be read as one forwarden sets: its name starts with
/// `x-auth-request-` or `x-forwarden-` in any letter case, with `_` read as `-`.
fn looks_like_identity(name: &str) -> bool {
    let starts = |prefix: &str| {
        name.len() >= prefix.len()
            && name.bytes().zip(prefix.bytes()).all(|(n, p)| {
                let n = if n == b'_' { b'-' } else { n.to_ascii_lowercase() };
                n == p
            })
    };
    starts("x-auth-request-") || starts("x-forwarden-")
}

/// The gRPC service.
pub struct ExtAuthz {
    state: Arc<AppState>,
}

/// The gRPC service as the listener serves it.
pub(crate) type GrpcService = service::Server;

/// The service for a state, with its message bounds ([`MAX_MESSAGE`] each way).
pub(crate) fn grpc_service(state: Arc<AppState>) -> GrpcService {
    service::Server::new(ExtAuthz { state })
}

/// The TLS acceptor of `ext_authz_tls` (HTTP/2 only, by ALPN).
pub(crate) fn tls_acceptor(tls: &crate::config::Tls) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("the certificate file: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.expose().as_bytes())
        .map_err(|e| TlsError(format!("the key file: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// `ext_authz_tls` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("ext_authz_tls: {0}")]
pub struct TlsError(String);

impl ExtAuthz {
    /// `envoy.service.auth.v3.Authorization/Check`.
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<Reply>, tonic::Status> {
        let st = &self.state;
        let started = st.config.metrics_listen.map(|_| std::time::Instant::now());
        let caller = request
            .remote_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let check = request.into_inner();
        let attributes = check.attributes.unwrap_or_default();
        let http = attributes
            .request
            .and_then(|r| r.http)
            .ok_or_else(|| tonic::Status::invalid_argument("no attributes.request.http"))?;
        // Every entry as Envoy sent it: with `encode_raw_headers: true` a list whose repeated
        // entries stay apart (a second `cookie`, a second `authorization`) and whose values are
        // bytes (a non-UTF-8 `authorization` stays unreadable, and is refused as such).
        // Borrowed: HTTP/2 names are lower case already, and only another one is copied.
        let mut client: Vec<(Cow<'_, str>, &[u8])> = http
            .headers
            .iter()
            .map(|(k, v)| (lower(k), v.as_bytes()))
            .collect();
        if client.is_empty() {
            for h in http.header_map.iter().flat_map(|m| &m.headers) {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes()
                } else {
                    h.raw_value.as_slice()
                };
                client.push((lower(&h.key), value));
            }
        }
        let listener_port = socket(attributes.destination.as_ref()).and_then(|s| match s.port_specifier {
            Some(PortSpecifier::PortValue(p)) => u16::try_from(p).ok(),
            _ => None,
        });
        let client_ip = socket(attributes.source.as_ref()).and_then(|s| s.address.parse().ok());
        let parts = Parts {
            method: http.method.as_bytes(),
            scheme: Some(http.scheme.as_bytes()).filter(|s| !s.is_empty()),
            unstated_scheme: st.config.scheme(),
            authority: http.host.as_bytes(),
            port: listener_port,
            path: http.path.as_bytes(),
            client_ip,
        };
        let seen = Seen::from_pairs(client.iter().map(|(k, v)| (k.as_ref(), *v)));
        let described = describe_parts(st, caller, &parts, &attributes.context_extensions, &seen);
        let answer = resolve(st, caller, described, &seen, Tally::recorded(started)).await;
        // The client's cookies without forwarden's session, when one was there to remove.
        let cookie = match answer {
            Answer::Allow(_) => {
                let lines = || client.iter().filter(|(k, _)| k == "cookie").map(|(_, v)| *v);
                without_session(lines, &st.config.cookie.name)
            }
            Answer::Deny(_) => None,
        };
        Ok(tonic::Response::new(check_response(
            st,
            answer,
            client.iter().map(|(k, _)| k.as_ref()),
            cookie,
        )))
    }
}

/// A header name in lower case, borrowed when it is already (HTTP/2 names are).
fn lower(name: &str) -> Cow<'_, str> {
    match name.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(name.to_ascii_lowercase()),
        false => Cow::Borrowed(name),
    }
}

/// The socket address of a peer Envoy describes.
fn socket(
    peer: Option<&envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer>,
) -> Option<&envoy_types::pb::envoy::config::core::v3::SocketAddress> {
    match peer?.address.as_ref()?.address.as_ref()? {
        Address::SocketAddress(s) => Some(s),
        _ => None,
    }
}

/// One header for Envoy to set.
fn header(k: &str, v: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeaderValue {
            key: k.to_string(),
            value: v.to_string(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// The pipeline's answer as Envoy's `CheckResponse`: allowed, the headers to set and to remove;
/// denied, forwarden's response as the one Envoy sends the client, with
/// `UNAUTHENTICATED` (sign in first, a bearer challenge) or `PERMISSION_DENIED` (refused).
///
/// An allowed answer made from a shared identity map (a session's, a verified token's), with no
/// identity JWT, no client header that looks like an identity header and a `cookie` that is
/// left alone or removed, is the same message every time: it is sent as the bytes this thread
/// encoded the first time ([`encoded_allow`]).
fn check_response<'c>(
    st: &AppState,
    answer: Answer,
    client_headers: impl Iterator<Item = &'c str> + Clone,
    cookie: Option<Vec<u8>>,
) -> Reply {
    let denial = match answer {
        Answer::Allow(set) => {
            let removes_cookie = match &cookie {
                None => Some(false),
                Some(kept) if kept.is_empty() => Some(true),
                Some(_) => None,
            };
            // A map held by a session's or a token's cache too (a public page's map is made for
            // its answer alone: its address would key nothing again).
            let same_every_time = set.jwt.is_none()
                && Arc::strong_count(&set.headers) > 1
                && !client_headers.clone().any(looks_like_identity);
            return match removes_cookie {
                Some(removes) if same_every_time => {
                    encoded_allow(st.sessions.instance, &set.headers, removes, || {
                        allowed(st, &set, client_headers, cookie)
                    })
                }
                _ => Reply::Message(Box::new(allowed(st, &set, client_headers, cookie))),
            };
        }
        Answer::Deny(d) => d,
    };
    Reply::Message(Box::new(denied(denial)))
}

/// An allowed answer: the identity headers to set, the others and the client's look-alikes to
/// remove, and the client's `cookie` without forwarden's session.
fn allowed<'c>(
    st: &AppState,
    set: &Allowed,
    client_headers: impl Iterator<Item = &'c str>,
    cookie: Option<Vec<u8>>,
) -> CheckResponse {
    let (set, mut remove) = identity_headers(st, set.iter(), client_headers);
    let mut headers: Vec<HeaderValueOption> = set
        .iter()
        .map(|(k, v)| header(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .collect();
    // forwarden's session cookie never reaches the upstream: the client's `cookie`
    // without it replaces the header, or the header goes when nothing else is left.
    match cookie {
        Some(kept) if kept.is_empty() => remove.push("cookie".to_string()),
        Some(kept) => headers.push(HeaderValueOption {
            header: Some(match String::from_utf8(kept) {
                Ok(value) => PbHeaderValue {
                    key: "cookie".to_string(),
                    value,
                    ..Default::default()
                },
                Err(e) => PbHeaderValue {
                    key: "cookie".to_string(),
                    raw_value: e.into_bytes(),
                    ..Default::default()
                },
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        }),
        None => {}
    }
    let ok = OkHttpResponse {
        headers,
        headers_to_remove: remove,
        ..Default::default()
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: 0,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        ..Default::default()
    }
}

/// A refusal, as the response Envoy sends the client.
fn denied(denial: Denial) -> CheckResponse {
    // google.rpc.Code: UNAUTHENTICATED (16) for "sign in first", PERMISSION_DENIED (7) otherwise.
    let code = if denial.unauthenticated() { 16 } else { 7 };
    let r = denial.render(Contract::ForwardAuth);
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(r.status.as_u16()),
        }),
        headers: r
            .headers
            .iter()
            .filter_map(|(n, v)| {
                Some(header(
                    n.as_str(),
                    v.to_str().ok()?,
                    HeaderAppendAction::AppendIfExistsOrAdd,
                ))
            })
            .collect(),
        body: r.body,
    };
    CheckResponse {
        status: Some(rpc::Status {
            code,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..Default::default()
    }
}

/// On allow: the identity headers forwarden set (each header it may set, with a value), and
/// the headers to remove: every header forwarden may set but did not (a claim header such as
/// `X-User-Given` included), and every client header that looks like one forwarden sets. The
/// gateway, not the client, decides what the upstream sees.
fn identity_headers<'a, 'c>(
    st: &'a AppState,
    answer: impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    client_headers: impl Iterator<Item = &'c str>,
) -> (Vec<(&'a str, &'a str)>, Vec<String>) {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    // One walk over the answer (a hashed lookup per name costs more than comparing a handful
    // of names): only identity names are taken from it, never `Content-Length`.
    let identity = || {
        st.sessions
            .headers
            .names()
            .chain(st.sessions.headers.jwt.as_ref())
    };
    for (name, value) in answer {
        if !identity().any(|n| n == name) {
            continue;
        }
        match value.to_str().ok().filter(|v| !v.is_empty()) {
            Some(v) => set.push((name.as_str(), v)),
            None => remove.push(name.as_str().to_string()),
        }
    }
    // A name the answer does not carry at all (the identity JWT's without a session).
    for name in identity().map(HeaderName::as_str) {
        if !set.iter().any(|(s, _)| *s == name) && !remove.iter().any(|r| r == name) {
            remove.push(name.to_string());
        }
    }
    remove.extend(
        client_headers
            .filter(|n| looks_like_identity(n) && !set.iter().any(|(s, _)| s.eq_ignore_ascii_case(n)))
            .map(str::to_ascii_lowercase),
    );
    remove.sort();
    remove.dedup();
    (set, remove)
}

/// `ANY /oauth2/ext-authz/<original path>`: Envoy's HTTP ext_authz (`path_prefix:
/// /oauth2/ext-authz`), with the original method, path and Host. Allowed: 200 with the identity
/// headers and `x-envoy-auth-headers-to-remove` naming the client's copies; denied: forwarden's
/// answer, which Envoy passes to the client.
pub async fn http_mode(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let started = st.config.metrics_listen.map(|_| std::time::Instant::now());
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let original = path_and_query.strip_prefix("/oauth2/ext-authz").unwrap_or("/");
    let original = if original.starts_with('/') { original } else { "/" };
    let headers = req.headers();
    // The same rule as every other contract: a describing header sent twice is refused, never
    // judged by its first value.
    for name in ["host", "x-forwarded-proto"] {
        if headers.get_all(name).iter().count() > 1 {
            tracing::warn!(
                header = name,
                "ext_authz HTTP mode: a describing header came twice; refused"
            );
            return Denial::into_response(undescribable(false), Contract::ForwardAuth);
        }
    }
    let get = |n: &str| headers.get(n).map_or(&b""[..], |v| v.as_bytes());
    let parts = Parts {
        method: req.method().as_str().as_bytes(),
        // Envoy's edge sets X-Forwarded-Proto on the request (allow it in `allowed_headers`).
        scheme: headers.get("x-forwarded-proto").map(|v| v.as_bytes()),
        unstated_scheme: st.config.scheme(),
        authority: get("host"),
        port: None,
        path: original.as_bytes(),
        client_ip: headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|f| f.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok()),
    };
    let seen = Seen::from_pairs(
        CLIENT_HEADERS
            .iter()
            .flat_map(|n| headers.get_all(*n).iter().map(move |v| (*n, v.as_bytes()))),
    );
    let none: [(&str, &str); 0] = [];
    let described = describe_parts(&st, peer, &parts, none, &seen);
    let answer = resolve(&st, peer, described, &seen, Tally::recorded(started)).await;
    let allowed = matches!(answer, Answer::Allow(_));
    let mut r = answer.into_response(Contract::ForwardAuth);
    if allowed {
        let (_, mut remove) =
            identity_headers(&st, r.headers().iter(), headers.keys().map(HeaderName::as_str));
        // forwarden's session cookie never reaches the upstream: the client's other cookies
        // replace the header (`cookie` in `allowed_upstream_headers`), or it is removed.
        let lines = || headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes);
        match without_session(lines, &st.config.cookie.name) {
            Some(kept) if kept.is_empty() => remove.push("cookie".to_string()),
            Some(kept) => match HeaderValue::from_bytes(&kept) {
                Ok(v) => {
                    r.headers_mut().insert(header::COOKIE, v);
                }
                Err(_) => remove.push("cookie".to_string()),
            },
            None => {}
        }
        if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
            if !remove.is_empty() {
                r.headers_mut().insert("x-envoy-auth-headers-to-remove", v);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::looks_like_identity;

    #[test]
    fn a_client_header_spelled_like_an_identity_header_is_found_in_any_case_and_with_underscores() {
        for name in [
            "x-auth-request-user",
            "X-Auth-Request-Email",
            "x_auth_request_groups",
            "X_FORWARDEN_ROUTE",
            "x-forwarden-",
            "x-Forwarden_x",
        ] {
            assert!(looks_like_identity(name), "{name}");
        }
        for name in [
            "x-auth-request",
            "x-auth",
            "",
            "x-forwarde",
            "cookie",
            "xx-auth-request-user",
        ] {
            assert!(!looks_like_identity(name), "{name}");
        }
    }
}
