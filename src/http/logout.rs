//! The identity provider's logout reaching forwarden's sessions (a session store is needed:
//! cookies cannot be revoked from the server):
//! - `POST /oauth2/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0, a signed logout
//!   token naming the provider's session (`sid`) and/or the user (`sub`);
//! - `GET /oauth2/frontchannel-logout?iss=…&sid=…`: Front-Channel Logout 1.0 (Entra ID's
//!   "front-channel logout URL"), loaded by the provider in the user's browser: the sessions of
//!   that `sid` end only when the browser's own session has it (a `sid` alone proves nothing);
//!   without `sid` the browser's own session ends.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::SignOut;
use super::sessions;
use crate::identity::PROVIDER_SID;
use crate::oidc::logout::{self, MAX_AGE};

/// The largest back-channel request body read.
pub const MAX_BODY: usize = 32 * 1024;

fn answer(status: StatusCode, error: Option<&str>) -> Response {
    let body = match error {
        Some(e) => serde_json::json!({"error": "invalid_request", "error_description": e}).to_string(),
        None => String::new(),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// `POST /oauth2/backchannel-logout` with `logout_token` (form-encoded).
pub async fn backchannel(State(st): State<SignOut>, body: Bytes) -> Response {
    let Some(store) = st.sessions.store() else {
        return answer(
            StatusCode::NOT_IMPLEMENTED,
            Some("sessions are kept in cookies here; back-channel logout needs session_store"),
        );
    };
    let Some(token) = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
    else {
        return answer(StatusCode::BAD_REQUEST, Some("no logout_token"));
    };
    // The provider whose issuer the token claims (then verified with its keys), never tried
    // against every provider's keys.
    let claimed = logout::claimed_issuer(&token).unwrap_or_default();
    let found = st
        .providers
        .iter()
        .filter_map(|p| Some((p, p.ready()?)))
        .find(|(_, ready)| ready.issuer.admits(&claimed));
    let Some((provider, ready)) = found else {
        let why = if st.providers.iter().any(|p| p.ready().is_none()) {
            "an identity provider is not discovered yet"
        } else {
            "the logout token's issuer is not one of this site's identity providers"
        };
        return answer(StatusCode::BAD_REQUEST, Some(why));
    };
    let clients = st.providers.client_ids(provider);
    let now = (st.clock)();
    let verified = logout::verify(&token, &ready.keys.keys(), &ready.issuer, &clients, now);
    let verified = match verified {
        Err(logout::LogoutError::UnknownKey) if ready.keys.refetch().await => {
            logout::verify(&token, &ready.keys.keys(), &ready.issuer, &clients, now)
        }
        other => other,
    };
    let l = match verified {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout refused");
            return answer(StatusCode::BAD_REQUEST, Some(&e.to_string()));
        }
    };
    // A logout token is used once (jti), across every replica.
    match store
        .first_use(&l.jti, std::time::Duration::from_secs(MAX_AGE * 2))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(jti = %l.jti, "back-channel logout token replayed");
            return answer(
                StatusCode::BAD_REQUEST,
                Some("this logout token was already used"),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout: the session store is unavailable");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("the session store is unavailable"),
            );
        }
    }
    // Sessions keep the provider's ids under its name (`<name>#…` for a named provider).
    let name = provider.config.name.as_str();
    let revoked = match (&l.sid, &l.sub) {
        (Some(sid), _) => {
            store
                .revoke_sid(&crate::identity::Identity::stored_sid(name, sid))
                .await
        }
        (None, Some(sub)) => {
            store
                .revoke_user(&crate::identity::Identity::stored_sid(name, sub))
                .await
        }
        (None, None) => Ok(0),
    };
    match revoked {
        Ok(n) => {
            tracing::info!(provider = name, sid = ?l.sid, sub = ?l.sub, sessions = n, "back-channel logout");
            answer(StatusCode::OK, None)
        }
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout: the session store is unavailable");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("the session store is unavailable"),
            )
        }
    }
}

/// Query of `/oauth2/frontchannel-logout`.
#[derive(Deserialize)]
pub struct FrontChannel {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sid: Option<String>,
}

/// `GET /oauth2/frontchannel-logout?iss=…&sid=…`.
pub async fn frontchannel(
    State(st): State<SignOut>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<FrontChannel>,
    headers: HeaderMap,
) -> Response {
    let host = super::login::browser_origin(&st.config, peer, &headers).map(|o| o.host);
    let cookie = st.sessions.cookie_for(host.as_deref());
    let mut r = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "<!doctype html><title>Signed out</title>",
    )
        .into_response();
    match (st.sessions.store(), q.iss.as_deref(), q.sid.as_deref()) {
        (Some(store), Some(iss), Some(sid)) => {
            let provider = st
                .providers
                .iter()
                .find(|p| p.ready().is_some_and(|ready| ready.issuer.admits(iss)));
            let Some(provider) = provider else {
                return answer(StatusCode::BAD_REQUEST, Some("iss is not this provider's"));
            };
            let sid = &crate::identity::Identity::stored_sid(&provider.config.name, sid);
            let sid = sid.as_str();
            // The request must come from the user's browser with its session (the model of
            // Front-Channel Logout 1.0): a `sid` is in every relying party's ID token of that
            // login, so anyone who learned it could otherwise end the victim's sessions.
            let own = match sessions::current(&st.sessions, &headers).await {
                Ok(s) => {
                    s.is_some_and(|(s, _)| s.identity.claims.get(PROVIDER_SID).is_some_and(|v| v == sid))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "front-channel logout: the session store is unavailable");
                    return answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("the session store is unavailable"),
                    );
                }
            };
            if !own {
                tracing::info!(
                    sid,
                    "front-channel logout without this browser's session of that sid: nothing ended"
                );
                return r;
            }
            match store.revoke_sid(sid).await {
                Ok(n) => tracing::info!(sid, sessions = n, "front-channel logout"),
                Err(e) => {
                    tracing::warn!(error = %e, "front-channel logout: the session store is unavailable");
                    return answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Some("the session store is unavailable"),
                    );
                }
            }
            // The browser's own cookie goes too.
            super::cookies::end_session(&cookie, &mut r);
        }
        // Without a sid (or a store), the browser's session ends.
        _ => {
            let _ = sessions::end(&st.sessions, &cookie, &headers, false, &mut r).await;
        }
    }
    r
}
