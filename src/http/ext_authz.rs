//! Envoy's external authorization, the contract of Gateway API implementations built on Envoy
//! (Envoy Gateway, Istio, Cilium, kgateway, Contour): gRPC `envoy.service.auth.v3.Authorization/Check`
//! on `ext_authz_listen`, and the HTTP mode under `/oauth2/ext-authz` (Envoy's `path_prefix`).
//!
//! Both describe the request to the same decision as the other contracts ([`super::auth`]):
//! the described request is rebuilt from what Envoy routed on (gRPC: `attributes.request.http`
//! method, scheme, host and path, and the port of `attributes.destination`; HTTP: the method,
//! the path after the prefix and the `Host` of the auth request itself), never from a client's
//! `X-Forwarded-*` headers. Envoy is the caller, so its address must be in `trusted_proxies`.
//! From the client's headers forwarden reads only `Cookie`, `Authorization`, `Accept` and
//! `Access-Control-Request-Method`.
//!
//! Allowed: the identity headers to set, and every client header that looks like one forwarden
//! sets (`X-Auth-Request-*`, `X-Forwarden-*`, with `-` or `_`) to remove: the gateway, not the
//! client, decides what the upstream sees. Denied: forwarden's answer (302 to sign in for a
//! page load, 401, 403 with its page) as the response Envoy sends the client.
//!
//! Bounds: a gRPC message is at most [`MAX_MESSAGE`] bytes; a call has
//! [`CALL_TIMEOUT`]; each HTTP/2 connection carries at most [`MAX_STREAMS`] calls at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::google::rpc;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::auth::answer;
use super::edge::Contract;

/// The largest gRPC message read.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// The longest one `Check` may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent calls on one HTTP/2 connection.
pub const MAX_STREAMS: u32 = 256;
/// The longest body of a denial (forwarden's pages are a few KiB).
const MAX_BODY: usize = 64 * 1024;

/// The client headers forwarden reads.
const CLIENT_HEADERS: [&str; 4] = [
    "cookie",
    "authorization",
    "accept",
    "access-control-request-method",
];

/// Whether a client header could be read as one forwarden sets.
fn looks_like_identity(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    n.starts_with("x-auth-request-") || n.starts_with("x-forwarden-")
}

/// The gRPC service.
pub struct ExtAuthz {
    state: Arc<AppState>,
}

/// The gRPC service as the listener serves it.
pub(crate) type GrpcService = AuthorizationServer<ExtAuthz>;

/// The service for a state, with its message bounds.
pub(crate) fn grpc_service(state: Arc<AppState>) -> GrpcService {
    AuthorizationServer::new(ExtAuthz { state })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
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

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
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
        let mut client: Vec<(String, Vec<u8>)> = http
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes()))
            .collect();
        if client.is_empty() {
            for h in http.header_map.map(|m| m.headers).unwrap_or_default() {
                let value = if h.raw_value.is_empty() {
                    h.value.into_bytes()
                } else {
                    h.raw_value
                };
                client.push((h.key.to_ascii_lowercase(), value));
            }
        }
        let port = attributes
            .destination
            .and_then(|d| d.address)
            .and_then(|a| a.address)
            .and_then(|a| match a {
                Address::SocketAddress(s) => match s.port_specifier {
                    Some(PortSpecifier::PortValue(p)) => u16::try_from(p).ok(),
                    _ => None,
                },
                _ => None,
            });
        let source = attributes
            .source
            .and_then(|d| d.address)
            .and_then(|a| a.address)
            .and_then(|a| match a {
                Address::SocketAddress(s) => Some(s.address),
                _ => None,
            });
        let scheme = if http.scheme.is_empty() {
            "http"
        } else {
            http.scheme.as_str()
        };
        let described = Described {
            method: &http.method,
            scheme,
            host: &http.host,
            port,
            path: &http.path,
            client_ip: source.as_deref(),
            narrowing: &attributes.context_extensions,
        };
        let st = &self.state;
        let client_names = || client.iter().map(|(k, _)| k.as_str());
        let answer = match described.request(&client) {
            Ok((uri, headers)) => answer(st, caller, &uri, &headers, Contract::ForwardAuth, true).await,
            Err(e) => unusable(&e),
        };
        Ok(tonic::Response::new(
            check_response(st, answer, client_names()).await,
        ))
    }
}

/// The original request as Envoy routed it.
struct Described<'a> {
    method: &'a str,
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
    path: &'a str,
    client_ip: Option<&'a str>,
    narrowing: &'a HashMap<String, String>,
}

/// A described request forwarden cannot use: refused, never judged on a part of it.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    /// A field of the request that no HTTP request could carry (a method `DELETE\0`, a host
    /// with a control character): forwarden cannot tell what the upstream will see.
    #[error("Envoy described a request whose {0} is not a valid header value")]
    Field(&'static str),
    /// A describing header the client sent more than once (HTTP mode).
    #[error("the {0} header came more than once")]
    Repeated(&'static str),
    /// `context_extensions` forwarden does not understand.
    #[error(transparent)]
    Narrowing(#[from] crate::policy::NarrowingError),
}

/// The refusal of an unusable request: 403 (gRPC `PERMISSION_DENIED`).
fn unusable(e: &Unusable) -> Response {
    tracing::warn!(error = %e, "ext_authz: the request cannot be described; refused");
    super::edge::Denial::Forbidden {
        user: None,
        url: String::new(),
        reason: "forwarden could not tell which address was requested, so it refuses.".into(),
        html: false,
    }
    .into_response(Contract::ForwardAuth)
}

impl Described<'_> {
    /// The auth request forwarden's decision reads: the description in `X-Forwarded-*`, the
    /// narrowing in the query, and the few client headers forwarden reads (each entry kept
    /// apart, so that a repeated one stays visible as such). Every field must be a valid header
    /// value: anything else is refused, never dropped (a dropped method would be judged as GET).
    fn request(&self, client: &[(String, Vec<u8>)]) -> Result<(Uri, HeaderMap), Unusable> {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: &[u8]| -> Result<(), Unusable> {
            let v = HeaderValue::from_bytes(value).map_err(|_| Unusable::Field(name))?;
            h.append(HeaderName::from_static(name), v);
            Ok(())
        };
        put("x-forwarded-method", self.method.as_bytes())?;
        put("x-forwarded-proto", self.scheme.as_bytes())?;
        put("x-forwarded-host", self.host.as_bytes())?;
        put("x-forwarded-uri", self.path.as_bytes())?;
        if let Some(p) = self.port {
            put("x-forwarded-port", p.to_string().as_bytes())?;
        }
        if let Some(ip) = self.client_ip {
            put("x-forwarded-for", ip.as_bytes())?;
        }
        for name in CLIENT_HEADERS {
            for (_, v) in client.iter().filter(|(k, _)| k == name) {
                put(name, v)?;
            }
        }
        // Every key must be one forwarden knows, and each given once (see `Narrowing`).
        crate::policy::Narrowing::from_pairs(self.narrowing.iter())?;
        let mut keys: Vec<&String> = self.narrowing.keys().collect();
        keys.sort();
        let query: Vec<String> = keys
            .into_iter()
            .map(|k| {
                format!(
                    "{k}={}",
                    utf8_percent_encode(&self.narrowing[k], NON_ALPHANUMERIC)
                )
            })
            .collect();
        let uri = format!("/oauth2/forward-auth?{}", query.join("&"))
            .parse()
            .map_err(|_| Unusable::Field("context_extensions"))?;
        Ok((uri, h))
    }
}

/// forwarden's answer as Envoy's `CheckResponse`.
async fn check_response<'c>(
    st: &AppState,
    answer: Response,
    client_headers: impl Iterator<Item = &'c str>,
) -> CheckResponse {
    let (parts, body) = answer.into_parts();
    let header = |k: &str, v: &str, action: HeaderAppendAction| HeaderValueOption {
        header: Some(PbHeaderValue {
            key: k.to_string(),
            value: v.to_string(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    if parts.status == StatusCode::OK {
        let (set, remove) = identity_headers(st, &parts.headers, client_headers);
        let ok = OkHttpResponse {
            headers: set
                .iter()
                .map(|(k, v)| header(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
                .collect(),
            headers_to_remove: remove,
            ..Default::default()
        };
        return CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(ok)),
            ..Default::default()
        };
    }
    let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(parts.status.as_u16()),
        }),
        headers: parts
            .headers
            .iter()
            .filter(|(n, _)| n.as_str() != "content-length")
            .filter_map(|(n, v)| {
                Some(header(
                    n.as_str(),
                    v.to_str().ok()?,
                    HeaderAppendAction::AppendIfExistsOrAdd,
                ))
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    // google.rpc.Code: UNAUTHENTICATED (16) for "sign in first", PERMISSION_DENIED (7) otherwise.
    let code = if matches!(parts.status.as_u16(), 302 | 401) {
        16
    } else {
        7
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
fn identity_headers<'c>(
    st: &AppState,
    answer: &HeaderMap,
    client_headers: impl Iterator<Item = &'c str>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    for name in st.headers.names().chain(st.headers.jwt.as_ref()) {
        match answer
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        {
            Some(v) => set.push((name.as_str().to_string(), v.to_string())),
            None => remove.push(name.as_str().to_string()),
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
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let original = path_and_query.strip_prefix("/oauth2/ext-authz").unwrap_or("/");
    let original = if original.starts_with('/') { original } else { "/" };
    let headers = req.headers();
    // The same rule as every other contract: a describing header sent twice is refused, never
    // judged by its first value.
    for name in ["host", "x-forwarded-proto"] {
        if headers.get_all(name).iter().count() > 1 {
            return unusable(&Unusable::Repeated(name));
        }
    }
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let client: Vec<(String, Vec<u8>)> = CLIENT_HEADERS
        .iter()
        .flat_map(|n| {
            headers
                .get_all(*n)
                .iter()
                .map(|v| (n.to_string(), v.as_bytes().to_vec()))
        })
        .collect();
    let no_narrowing = HashMap::new();
    let described = Described {
        method: req.method().as_str(),
        // Envoy's edge sets X-Forwarded-Proto on the request (allow it in `allowed_headers`).
        scheme: get("x-forwarded-proto").unwrap_or("http"),
        host: get("host").unwrap_or(""),
        port: None,
        path: original,
        client_ip: get("x-forwarded-for")
            .and_then(|f| f.rsplit(',').next())
            .map(str::trim),
        narrowing: &no_narrowing,
    };
    let mut r = match described.request(&client) {
        Ok((uri, described_headers)) => {
            answer(&st, peer, &uri, &described_headers, Contract::ForwardAuth, true).await
        }
        Err(e) => unusable(&e),
    };
    if r.status() == StatusCode::OK {
        let (_, remove) = identity_headers(&st, r.headers(), headers.keys().map(HeaderName::as_str));
        if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
            if !remove.is_empty() {
                r.headers_mut().insert("x-envoy-auth-headers-to-remove", v);
            }
        }
    }
    r.into_response()
}
