//! `GET /oauth2/refresh?rd=…`: the auth check sends a browser here when its session is older
//! than `cookie.refresh`. A plain request (not an auth subrequest), so every session cookie
//! can be set; then back to `rd`. If the provider refuses the refresh token (revoked,
//! expired, account disabled), the session ends and the user signs in again.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::cookies::{end_session, set_session};
use super::edge::{RouteError, redirect};
use super::login::{StartQuery, browser_origin, identity_of};
use super::session_cache::session_of;
use crate::oidc::redirect::safe_target;
use crate::session::Session;

/// `GET /oauth2/refresh?rd=…`
pub async fn refresh(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<StartQuery>,
    headers: HeaderMap,
) -> Response {
    let origin = browser_origin(&st, peer, &headers);
    let host = origin.as_ref().map_or("", |o| o.host.as_str());
    let rd = safe_target(
        q.rd.as_deref().unwrap_or("/"),
        host,
        &st.config.allowed_redirect_domains,
    );
    let sign_in = || format!("/oauth2/start?rd={}", utf8_percent_encode(&rd, NON_ALPHANUMERIC));
    // A copy: the cached session is per worker thread and must not be held across awaits.
    let Some(old) = session_of(&st, &headers).map(|o| o.session.clone()) else {
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
            Some(_) => identity_of(&st, provider, &ready, &tokens, None, now)
                .await
                .map(|i| (i, tokens)),
            None => Ok((old.identity.clone(), tokens)),
        },
        Err(e) => Err(RouteError::Provider(e.to_string())),
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
            set_session(&st.config.cookie, &st.entropy, &session, &mut r);
            r
        }
        Err(_) => {
            tracing::info!(user = %old.identity.subject, "refresh refused; the session ends");
            st.metrics.session_refresh("ended");
            let mut r = redirect(&sign_in());
            end_session(&st.config.cookie, &mut r);
            r
        }
    }
}
