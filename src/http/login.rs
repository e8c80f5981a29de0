//! Sign-in: `/oauth2/start` sends the browser to the identity provider, `/oauth2/callback`
//! receives it back, checks everything, and sets the session.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::auth::{request_cookie, set_cookie};
use super::edge::{escape, page};
use crate::identity::Identity;
use crate::oidc::flow::{self, Authorize, LOGIN_TTL, Randomness};
use crate::oidc::idtoken::{self, Expect, TokenError};
use crate::oidc::redirect::safe_target;
use crate::oidc::transport::{Provider, Ready, Tokens, TransportError};
use crate::request::{is_trusted, parse_host};
use crate::session::{self, MAX_CHUNKS, Session};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// The claim kept for `logout_hint` at sign-out.
const LOGIN_HINT: &str = "login_hint";

/// Allowed clock skew for ID tokens, in seconds.
const LEEWAY: u64 = 120;

/// Why sign-in failed, and the page the user sees. Never a token, never a stack trace.
enum LoginError {
    /// No provider, or not discovered yet.
    Unavailable(String),
    /// The request itself is wrong (no trusted origin, state mismatch, expired).
    Bad(String),
    /// The provider said no (`error=`), or the account's tenant is not allowed.
    Refused(String),
    /// The provider could not be reached or answered wrongly.
    Provider(String),
}

impl LoginError {
    /// The result label of the logins metric.
    fn code(&self) -> &'static str {
        match self {
            LoginError::Unavailable(_) => "unavailable",
            LoginError::Bad(_) => "bad_request",
            LoginError::Refused(_) => "refused",
            LoginError::Provider(_) => "provider_error",
        }
    }

    /// The page for a browser, or JSON for an API client (`Accept: application/json`).
    fn respond(self, headers: &HeaderMap) -> Response {
        let json = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
        let (status, title, text) = match self {
            LoginError::Unavailable(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is not available right now",
                why,
            ),
            LoginError::Bad(why) => (StatusCode::BAD_REQUEST, "Sign-in did not work", why),
            LoginError::Refused(why) => (StatusCode::FORBIDDEN, "Sign-in was refused", why),
            LoginError::Provider(why) => (
                StatusCode::BAD_GATEWAY,
                "The identity provider had a problem",
                why,
            ),
        };
        if json {
            let body = serde_json::json!({
                "error": title,
                "detail": text,
                "sign_in": "/oauth2/start",
                "sign_out": "/oauth2/sign_out",
            });
            return (
                status,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body.to_string(),
            )
                .into_response();
        }
        let body = page(
            title,
            &format!(
                "<p>{}</p>\n<p><a href=\"/oauth2/start\">Sign in again</a> · <a href=\"/oauth2/sign_out\">Sign out</a></p>",
                escape(&text)
            ),
        );
        (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

/// Where the browser is: `scheme://host[:port]` and the host alone.
struct Origin {
    url: String,
    host: String,
}

/// The request's origin as the browser sent it: from a trusted proxy's forwarded headers,
/// otherwise the Host header.
fn origin(st: &AppState, peer: SocketAddr, headers: &HeaderMap) -> Option<Origin> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let default_scheme = if st.config.cookie.secure { "https" } else { "http" };
    let (scheme, authority) = if is_trusted(peer.ip(), &st.config.trusted_proxies) {
        (
            h("x-forwarded-proto").unwrap_or(default_scheme),
            h("x-forwarded-host").or_else(|| h("host"))?,
        )
    } else {
        (default_scheme, h("host")?)
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => "https",
        "http" => "http",
        _ => return None,
    };
    let (host, port) = parse_host(authority.split(',').next()?.trim()).ok()?;
    let url = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    Some(Origin {
        url,
        host: host.into_owned(),
    })
}

/// Where the provider sends the browser back: the public URL in central mode, else this host.
fn redirect_uri(st: &AppState, origin: &str) -> String {
    match &st.config.public_url {
        Some(u) => format!("{}/oauth2/callback", u.as_str().trim_end_matches('/')),
        None => format!("{origin}/oauth2/callback"),
    }
}

fn login_cookie_name(st: &AppState) -> String {
    format!("{}_login", st.config.cookie.name)
}

fn pending_logins(st: &AppState, headers: &HeaderMap) -> Vec<flow::Pending> {
    let name = login_cookie_name(st);
    request_cookie(headers, &name)
        .and_then(|v| session::open_bytes(v, &st.config.cookie.keys, &name).ok())
        .map(|b| flow::decode(&b))
        .unwrap_or_default()
}

fn store_pending(st: &AppState, list: &[flow::Pending], r: &mut Response) {
    let name = login_cookie_name(st);
    let v = if list.is_empty() {
        set_cookie(&st.config.cookie, &name, "", "/oauth2", Some(0))
    } else {
        let sealed = session::seal_bytes(&flow::encode(list), &st.config.cookie.keys, &name, rand::random());
        set_cookie(
            &st.config.cookie,
            &name,
            &sealed,
            "/oauth2",
            Some(LOGIN_TTL as i64),
        )
    };
    if let Some(v) = v {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Query of `/oauth2/start`.
#[derive(Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    rd: Option<String>,
}

/// `GET /oauth2/start?rd=…`
pub async fn start(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    match begin(&st, peer, q, &headers) {
        Ok(r) => r,
        Err(e) => e.respond(&headers),
    }
}

fn begin(
    st: &AppState,
    peer: SocketAddr,
    q: StartQuery,
    headers: &HeaderMap,
) -> Result<Response, LoginError> {
    let provider = st.provider.as_ref().ok_or_else(|| {
        LoginError::Unavailable(
            "This forwarden has no identity provider configured, so nobody can sign in.".into(),
        )
    })?;
    let ready = provider.ready().ok_or_else(|| {
        let why = provider
            .last_error
            .load_full()
            .map(|e| e.to_string())
            .unwrap_or_default();
        LoginError::Unavailable(format!(
            "forwarden cannot reach the identity provider yet ({why}). Try again in a minute."
        ))
    })?;
    let origin = origin(st, peer, headers)
        .ok_or_else(|| LoginError::Bad("The request did not say which site it is for.".into()))?;
    let rd = safe_target(
        q.rd.as_deref().unwrap_or("/"),
        &origin.host,
        &st.config.allowed_redirect_domains,
    );
    let callback = redirect_uri(st, &origin.url);
    let o = &provider.config;
    let authorize = Authorize {
        endpoint: &ready.discovery.authorization_endpoint,
        client_id: &o.client_id,
        redirect_uri: &callback,
        scopes: &o.scopes,
    };
    let random = Randomness {
        state: rand::random(),
        nonce: rand::random(),
        verifier: rand::random(),
    };
    let now = (st.clock)();
    let (url, pending) =
        flow::begin(&authorize, rd, &random, now).map_err(|e| LoginError::Provider(e.to_string()))?;
    let list = flow::push(pending_logins(st, headers), pending, now);
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&url).map_err(|_| LoginError::Provider("bad authorization URL".into()))?,
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    store_pending(st, &list, &mut r);
    Ok(r)
}

/// Query of `/oauth2/callback`.
#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// `GET /oauth2/callback?code=…&state=…`
pub async fn callback(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    match finish(&st, peer, q, &headers).await {
        Ok(r) => {
            st.metrics.login("success");
            r
        }
        Err(e) => {
            st.metrics.login(e.code());
            e.respond(&headers)
        }
    }
}

async fn finish(
    st: &AppState,
    peer: SocketAddr,
    q: CallbackQuery,
    headers: &HeaderMap,
) -> Result<Response, LoginError> {
    if let Some(err) = q.error {
        let desc = q.error_description.unwrap_or_default();
        tracing::info!(error = %err, "identity provider refused the sign-in");
        return Err(LoginError::Refused(format!(
            "The identity provider said: {err}. {desc}"
        )));
    }
    let provider = st
        .provider
        .as_ref()
        .ok_or_else(|| LoginError::Unavailable("No identity provider is configured.".into()))?;
    let ready = provider
        .ready()
        .ok_or_else(|| LoginError::Unavailable("forwarden cannot reach the identity provider yet.".into()))?;
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(LoginError::Bad(
            "The identity provider's answer is missing its code or state.".into(),
        ));
    };
    let now = (st.clock)();
    let (pending, rest) =
        flow::take(pending_logins(st, headers), &state, now).map_err(|e| LoginError::Bad(format!("{e}.")))?;
    let origin = origin(st, peer, headers)
        .ok_or_else(|| LoginError::Bad("The request did not say which site it is for.".into()))?;
    let callback = redirect_uri(st, &origin.url);
    let tokens = provider
        .exchange_code(&code, &callback, &pending.verifier)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "code exchange failed");
            LoginError::Provider("The sign-in could not be completed with the identity provider.".into())
        })?;
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or_else(|| LoginError::Provider("The identity provider sent no ID token.".into()))?;
    let identity = identity_of(st, provider, &ready, &tokens, id_token, Some(&pending.nonce), now).await?;
    tracing::info!(user = %identity.subject, tenant = %identity.tenant, "signed in");
    let session = Session {
        identity,
        issued_at: now,
        expires_at: now + st.config.cookie.lifetime.as_secs(),
        refresh_token: tokens.refresh_token.clone(),
    };
    let mut r = StatusCode::FOUND.into_response();
    let target = HeaderValue::from_str(&pending.rd).unwrap_or(HeaderValue::from_static("/"));
    r.headers_mut().insert(header::LOCATION, target);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    set_session(st, &session, &mut r);
    store_pending(st, &rest, &mut r);
    Ok(r)
}

/// The identity a token response stands for: the ID token verified (one JWKS refetch on an
/// unknown `kid`), and on group overage the groups from Microsoft Graph.
async fn identity_of(
    st: &AppState,
    provider: &Provider,
    ready: &Ready,
    tokens: &Tokens,
    id_token: &str,
    nonce: Option<&str>,
    now: u64,
) -> Result<Identity, LoginError> {
    let o = &provider.config;
    let verify = || {
        let expect = Expect {
            issuer: &ready.issuer,
            client_id: &o.client_id,
            nonce,
            now,
            leeway: LEEWAY,
            allowed_tenants: &o.allowed_tenants,
        };
        idtoken::verify(id_token, &ready.jwks.load(), &expect)
    };
    let claims = match verify() {
        Err(TokenError::UnknownKey) if provider.refetch_jwks().await => verify(),
        other => other,
    }
    .map_err(|e| {
        tracing::warn!(error = %e, "ID token refused");
        match e {
            TokenError::Tenant => {
                LoginError::Refused("Accounts of your organization may not sign in here.".into())
            }
            other => LoginError::Provider(format!(
                "The identity provider's answer could not be verified: {other}."
            )),
        }
    })?;
    let extra: Vec<String> = st.config.headers.claims.iter().map(|(c, _)| c.clone()).collect();
    let mut identity = claims.identity(&o.allowed_tenants, &extra);
    // Entra's optional `login_hint` claim is what its logout takes as `logout_hint`; kept small.
    if let Some(hint) = claims
        .extra
        .get(LOGIN_HINT)
        .and_then(|v| v.as_str())
        .filter(|h| h.len() <= 512)
    {
        identity.claims.insert(LOGIN_HINT.into(), hint.into());
    }
    if claims.groups_overage() {
        // The groups did not fit in the token: ask Graph. If that fails, the user has no groups,
        // so group rules deny; they never allow by mistake.
        let fetched = match tokens.access_token.as_deref() {
            Some(at) => provider.member_objects(at).await,
            None => Err(TransportError::Body("no access token for Graph".into())),
        };
        match fetched {
            Ok(groups) => identity.groups = groups,
            Err(e) => {
                tracing::warn!(user = %identity.subject, error = %e, "group overage: Microsoft Graph failed; group rules will deny");
                identity.groups.clear();
            }
        }
    }
    Ok(identity)
}

/// `GET /oauth2/refresh?rd=…`: the auth check sends a browser here when its session is older
/// than `cookie.refresh`. A plain request (not an auth subrequest), so every session cookie
/// can be set; then back to `rd`. If the provider refuses the refresh token (revoked,
/// expired, account disabled), the session ends and the user signs in again.
pub async fn refresh(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let origin = origin(&st, peer, &headers);
    let host = origin.as_ref().map_or("", |o| o.host.as_str());
    let rd = safe_target(
        q.rd.as_deref().unwrap_or("/"),
        host,
        &st.config.allowed_redirect_domains,
    );
    let sign_in = || format!("/oauth2/start?rd={}", utf8_percent_encode(&rd, NON_ALPHANUMERIC));
    let redirect = |to: &str| {
        let mut r = StatusCode::FOUND.into_response();
        r.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    // A copy: the cached session is per worker thread and must not be held across awaits.
    let Some(old) = super::auth::session_of(&st, &headers).map(|o| o.session.clone()) else {
        return redirect(&sign_in());
    };
    let (Some(provider), Some(rt)) = (st.provider.as_ref(), old.refresh_token.as_deref()) else {
        return redirect(&rd);
    };
    let Some(ready) = provider.ready() else {
        return redirect(&rd);
    };
    let now = (st.clock)();
    let refreshed = match provider.refresh(rt).await {
        Ok(tokens) => match tokens.id_token.as_deref() {
            Some(id) => identity_of(&st, provider, &ready, &tokens, id, None, now)
                .await
                .map(|i| (i, tokens)),
            None => Ok((old.identity.clone(), tokens)),
        },
        Err(e) => Err(LoginError::Provider(e.to_string())),
    };
    match refreshed {
        Ok((identity, tokens)) => {
            tracing::info!(user = %identity.subject, "session refreshed");
            st.metrics.session_refresh("ok");
            let session = Session {
                identity,
                issued_at: now,
                expires_at: now + st.config.cookie.lifetime.as_secs(),
                refresh_token: tokens.refresh_token.or_else(|| old.refresh_token.clone()),
            };
            let mut r = redirect(&rd);
            set_session(&st, &session, &mut r);
            r
        }
        Err(_) => {
            tracing::info!(user = %old.identity.subject, "refresh refused; the session ends");
            st.metrics.session_refresh("ended");
            let mut r = redirect(&sign_in());
            for v in super::auth::clear_session(&st.config.cookie) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
    }
}

/// Set the session cookies and delete the names a previous, differently sized session used.
fn set_session(st: &AppState, session: &Session, r: &mut Response) {
    let c = &st.config.cookie;
    let cookies = session::seal(session, &c.keys, &c.name, rand::random());
    let max_age = c.lifetime.as_secs() as i64;
    let all = std::iter::once(c.name.clone()).chain((0..MAX_CHUNKS).map(|i| format!("{}_{i}", c.name)));
    for name in all {
        let v = match cookies.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => set_cookie(c, &name, value, "/", Some(max_age)),
            None => set_cookie(c, &name, "", "/", Some(0)),
        };
        if let Some(v) = v {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// Query of `/oauth2/sign_out`.
#[derive(Deserialize)]
pub struct SignOutQuery {
    #[serde(default)]
    rd: Option<String>,
}

/// `GET|POST /oauth2/sign_out?rd=…`: clear the session; with `oidc.end_session`, continue to
/// the provider's `end_session_endpoint`, which returns the browser to `rd`.
pub async fn sign_out(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<SignOutQuery>,
    headers: HeaderMap,
) -> Response {
    let origin = origin(&st, peer, &headers);
    let host = origin.as_ref().map_or("", |o| o.host.as_str());
    let target = safe_target(
        q.rd.as_deref().unwrap_or("/"),
        host,
        &st.config.allowed_redirect_domains,
    );
    let session = super::auth::session_of(&st, &headers).map(|o| o.session.clone());
    let end_session = st
        .provider
        .as_ref()
        .filter(|p| p.config.end_session)
        .and_then(|p| {
            let ready = p.ready()?;
            let mut url = url::Url::parse(ready.discovery.end_session_endpoint.as_deref()?).ok()?;
            let back = if target.starts_with('/') {
                format!("{}{target}", origin.as_ref()?.url)
            } else {
                target.clone()
            };
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &p.config.client_id)
                .append_pair("post_logout_redirect_uri", &back);
            if let Some(hint) = session.as_ref().and_then(|s| s.identity.claims.get(LOGIN_HINT)) {
                q.append_pair("logout_hint", hint);
            }
            drop(q);
            Some(url.to_string())
        });
    let location = end_session.unwrap_or(target);
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/")),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for v in super::auth::clear_session(&st.config.cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /oauth2/userinfo`: the session's identity as JSON; 401 without a session.
pub async fn userinfo(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Some(o) = super::auth::session_of(&st, &headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"not signed in"}"#,
        )
            .into_response();
    };
    let s = &o.session;
    let id = &s.identity;
    let body = serde_json::json!({
        "user": id.subject,
        "tenant": id.tenant,
        "email": id.email,
        "preferred_username": id.preferred_username,
        "name": id.name,
        "groups": id.groups,
        "roles": id.roles,
        "claims": id.claims,
        "issued_at": s.issued_at,
        "expires_at": s.expires_at,
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// `GET /readyz`: 200 once policies are loaded and the provider is discovered (or none is
/// configured); otherwise 503 and why.
pub async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    match &st.provider {
        Some(p) if p.ready().is_none() => {
            let why = p
                .last_error
                .load_full()
                .map(|e| e.to_string())
                .unwrap_or_default();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: identity provider not discovered: {why}\n"),
            )
                .into_response()
        }
        _ => (StatusCode::OK, "ready\n").into_response(),
    }
}

/// `GET /.well-known/jwks.json`: the public key upstreams verify the identity JWT with (404
/// when `identity_jwt` is not configured).
pub async fn jwks(State(st): State<Arc<AppState>>) -> Response {
    match &st.config.identity_jwt {
        Some(j) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            j.signer.jwks().to_string(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "identity_jwt is not configured\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn login_error_page_says_what_happened_and_what_to_do() {
        let err = || LoginError::Bad("This sign-in was not started in this browser (state mismatch).".into());
        let mut api = HeaderMap::new();
        api.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let r = err().respond(&api);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = err().respond(&HeaderMap::new());
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        let body_only = text.split("<body>").nth(1).unwrap_or_default();
        insta::assert_snapshot!(body_only, @r#"
        <h1>Sign-in did not work</h1>
        <p>This sign-in was not started in this browser (state mismatch).</p>
        <p><a href="/oauth2/start">Sign in again</a> · <a href="/oauth2/sign_out">Sign out</a></p>
        </body></html>
        "#);
    }
}
