//! The signed-in user's own endpoints: `/oauth2/sign_out` and `/oauth2/userinfo`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::edge::redirect;
use super::login::{RdQuery, return_target};
use super::sessions;
use crate::identity::EMAIL_SOURCE;
use crate::oidc::signin::LOGIN_HINT;
use crate::session::GROUPS_REDUCED;

/// `GET|POST /oauth2/sign_out?rd=…`: clear the session; with `oidc.end_session`, continue to
/// the provider's `end_session_endpoint`, which returns the browser to `rd`. With a session
/// store the session is deleted there too, and `everywhere=1` deletes every session of the user.
pub async fn sign_out(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<RdQuery>,
    headers: HeaderMap,
) -> Response {
    let (origin, target) = return_target(&st, peer, &headers, q.rd.as_deref());
    let mut ended = redirect("/");
    let everywhere = q.everywhere.as_deref() == Some("1");
    let session = sessions::end(&st, &headers, everywhere, &mut ended).await;
    let end_session_url = st
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
    let mut r = redirect(&end_session_url.unwrap_or(target));
    for v in ended.headers().get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    r
}

/// `GET /oauth2/userinfo`: the session's identity as JSON; 401 without a session.
pub async fn userinfo(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let Ok(Some((s, _))) = sessions::current(&st, &headers).await else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"not signed in"}"#,
        )
            .into_response();
    };
    let id = &s.identity;
    let mut claims = id.claims.clone();
    // "n of m": the session keeps only the groups the policies name (it was too large).
    let reduced = claims.remove(GROUPS_REDUCED);
    let email_source = claims.remove(EMAIL_SOURCE);
    let body = serde_json::json!({
        "user": id.subject,
        "tenant": id.tenant,
        "email": id.email,
        "email_source": email_source,
        "preferred_username": id.preferred_username,
        "name": id.name,
        "groups": id.groups,
        "groups_reduced": reduced,
        "roles": id.roles,
        "claims": claims
            .iter()
            .map(|(k, v)| (k.clone(), crate::identity::claim_json(v)))
            .collect::<serde_json::Map<_, _>>(),
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
