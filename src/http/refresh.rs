//! `GET /oauth2/refresh?rd=…`: the auth check sends a browser here when its session is older
//! than `cookie.refresh`. A plain request (not an auth subrequest), so every session cookie
//! can be set; then back to `rd`.
//!
//! Three outcomes (OpenID Connect Core 12): the provider answers with tokens for the same user:
//! the session is renewed with the groups and roles read again. The provider refuses the
//! refresh token (`invalid_grant`: revoked, expired, account disabled), or its new ID token
//! names another user or a tenant no longer allowed: the session ends and the user signs in
//! again. The provider cannot be reached, answers 5xx, or is not discovered yet: the
//! still-valid session is kept and the refresh is tried again [`RETRY`] later, so a provider
//! outage neither signs everyone out nor bounces browsers between two URLs.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::Refreshing;
use super::edge::redirect;
use super::login::{RdQuery, return_target, verify_tokens};
use super::sessions::{self, WriteError};
use crate::oidc::idtoken::TokenError;
use crate::oidc::signin::SignInError;
use crate::session::{self, Session};

/// How long a refresh that met provider trouble waits before it is tried again.
pub const RETRY: Duration = Duration::from_secs(60);

/// What a refresh attempt came to.
enum Outcome {
    /// Renewed at the provider.
    Renewed(Box<Session>),
    /// The provider refused: sign in again.
    Ended(String),
    /// Provider trouble: keep the session, try again later.
    Postponed(String),
}

/// `GET /oauth2/refresh?rd=…`
pub async fn refresh(
    State(st): State<Refreshing>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<RdQuery>,
    headers: HeaderMap,
) -> Response {
    renew(&st, peer, q, &headers).await
}

async fn renew(st: &Refreshing, peer: SocketAddr, q: RdQuery, headers: &HeaderMap) -> Response {
    let (origin, rd) = return_target(&st.config, peer, headers, q.rd.as_deref());
    // The session cookies of this host's domain (another registrable domain's, after a hand-off).
    let cookie = st.sessions.cookie_for(origin.as_ref().map(|o| o.host.as_str()));
    let sign_in = || format!("/oauth2/start?rd={}", utf8_percent_encode(&rd, NON_ALPHANUMERIC));
    // A copy: the cached session is per worker thread and must not be held across awaits.
    let (old, ticket) = match sessions::current(&st.sessions, headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return redirect(&sign_in()),
        Err(e) => {
            tracing::warn!(error = %e, "refresh: the session store is unavailable; the session stays as it is");
            return redirect(&rd);
        }
    };
    let now = (st.clock)();
    if !session::refresh_due(&old, st.config.cookie.refresh, now) {
        // Nothing to do (another tab refreshed it, or no refresh token): back to the page.
        return redirect(&rd);
    }
    match attempt(st, &old, now).await {
        Outcome::Renewed(mut session) => {
            let mut r = redirect(&rd);
            let policy = st.policy.load();
            let names = |g: &str| policy.names_group(g);
            match sessions::write(&st.sessions, &cookie, &mut session, ticket.clone(), names, &mut r).await {
                Ok(()) => {}
                Err(WriteError::TooLarge(_)) => {
                    tracing::warn!(user = %old.identity.subject, "the refreshed session does not fit in cookies; it ends");
                    st.metrics.session_refresh("ended");
                    let mut r = redirect(&sign_in());
                    let _ = sessions::end(&st.sessions, &cookie, headers, false, &mut r).await;
                    return r;
                }
                Err(WriteError::Store(e)) => {
                    // The stored session stays as it was: it is refreshed on a later page load.
                    tracing::warn!(error = %e, "refresh: the session store is unavailable");
                    st.metrics.session_refresh("postponed");
                    return redirect(&rd);
                }
            }
            tracing::info!(user = %session.identity.subject, "session refreshed");
            st.metrics.session_refresh("ok");
            r
        }
        Outcome::Ended(why) => {
            tracing::info!(user = %old.identity.subject, reason = %why, "refresh refused; the session ends");
            st.metrics.session_refresh("ended");
            let mut r = redirect(&sign_in());
            let _ = sessions::end(&st.sessions, &cookie, headers, false, &mut r).await;
            r
        }
        Outcome::Postponed(why) => {
            tracing::warn!(user = %old.identity.subject, reason = %why, "refresh postponed; the session stays");
            st.metrics.session_refresh("postponed");
            let every = st.config.cookie.refresh.unwrap_or(RETRY);
            let mut later = session::postpone_refresh(old, every, RETRY, now);
            let mut r = redirect(&rd);
            // The session was written before, so it fits again (its groups are unchanged).
            if let Err(e) = sessions::write(&st.sessions, &cookie, &mut later, ticket, |_| true, &mut r).await
            {
                tracing::warn!(error = %e, "refresh postponed, and the session could not be rewritten");
            }
            r
        }
    }
}

async fn attempt(st: &Refreshing, old: &Session, now: u64) -> Outcome {
    let Some(rt) = old.refresh_token.as_deref() else {
        return Outcome::Postponed("the session has no refresh token".into());
    };
    let Some(provider) = st.providers.of(&old.identity) else {
        return Outcome::Ended("the session's identity provider is no longer configured".into());
    };
    let client = match st.providers.client(provider, old.identity.idp_client()) {
        Ok(c) => c,
        Err(e) => return Outcome::Ended(e.to_string()),
    };
    let Some(ready) = provider.ready() else {
        return Outcome::Postponed("the identity provider is not discovered yet".into());
    };
    let tokens = match provider.refresh(&client, rt).await {
        Ok(t) => t,
        Err(e) if e.is_refusal() => return Outcome::Ended(e.to_string()),
        Err(e) => return Outcome::Postponed(e.to_string()),
    };
    let identity = if tokens.id_token.is_some() {
        match verify_tokens(
            &st.extra_claims,
            provider,
            &client,
            &ready,
            &tokens,
            None,
            now,
            Some(&old.identity),
        )
        .await
        {
            // A refreshed ID token may not repeat how the user first signed in.
            Ok(mut i) => {
                i.keep_step_up(&old.identity);
                i
            }
            Err(e @ (SignInError::OtherUser | SignInError::Token(TokenError::Tenant))) => {
                return Outcome::Ended(e.to_string());
            }
            Err(e) => return Outcome::Postponed(e.to_string()),
        }
    } else {
        old.identity.clone()
    };
    Outcome::Renewed(Box::new(Session {
        identity,
        issued_at: now,
        expires_at: now + st.config.cookie.lifetime.as_secs(),
        refresh_token: tokens.refresh_token.or_else(|| old.refresh_token.clone()),
    }))
}
