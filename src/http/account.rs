//! The signed-in user's own endpoints: `/oauth2/sign_out` and `/oauth2/userinfo`.

use std::net::SocketAddr;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::SignOut;
use super::edge::{edge_page, escape, redirect};
use super::login::{RdQuery, return_target, single_header};
use super::sessions::{self, SessionsOnly};
use crate::identity::EMAIL_SOURCE;
use crate::oidc::signin::LOGIN_HINT;
use crate::session::GROUPS_REDUCED;

/// `GET|POST /oauth2/sign_out?rd=…`: clear the session; with `oidc.end_session`, continue to
/// the provider's `end_session_endpoint`, which returns the browser to `rd`. With a session
/// store the session is deleted there too, and `everywhere=1` deletes every session of the user:
/// that takes a `POST` from this site's own page (`Sec-Fetch-Site: same-origin`, or an `Origin`
/// that is this site), so a third-party page cannot sign a user out of every browser; a `GET`
/// with `everywhere=1` shows the page that asks.
pub async fn sign_out(
    State(st): State<SignOut>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    Query(q): Query<RdQuery>,
    headers: HeaderMap,
) -> Response {
    end(&st, peer, method, q, &headers).await
}

async fn end(st: &SignOut, peer: SocketAddr, method: Method, q: RdQuery, headers: &HeaderMap) -> Response {
    let (origin, target) = return_target(&st.config, peer, headers, q.rd.as_deref());
    let everywhere = q.everywhere.as_deref() == Some("1");
    if everywhere {
        if method != Method::POST {
            return confirm_everywhere(q.rd.as_deref());
        }
        let own = origin.as_ref().map(|o| o.url.as_str());
        if !same_origin(headers, own) {
            tracing::warn!("sign-out everywhere refused: the request did not come from this site's page");
            return edge_page(
                StatusCode::FORBIDDEN,
                "Sign-out everywhere refused",
                "<p>Signing out of every browser must be confirmed on this site's own page.</p>\n<p><a href=\"/oauth2/sign_out?everywhere=1\">Sign out everywhere</a></p>",
            );
        }
    }
    let mut ended = redirect("/");
    let cookie = st.sessions.cookie_for(origin.as_ref().map(|o| o.host.as_str()));
    let (session, revoked) = sessions::end(&st.sessions, &cookie, headers, everywhere, &mut ended).await;
    // The provider the session came from ends its own session there.
    let end_session_url = session
        .as_ref()
        .and_then(|s| st.providers.of(&s.identity))
        .or_else(|| st.providers.first().filter(|_| st.providers.len() == 1))
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
            let client = session
                .as_ref()
                .map(|s| s.identity.idp_client())
                .filter(|c| !c.is_empty())
                .unwrap_or(&p.config.client_id);
            q.append_pair("client_id", client)
                .append_pair("post_logout_redirect_uri", &back);
            if let Some(hint) = session.as_ref().and_then(|s| s.identity.claims.get(LOGIN_HINT)) {
                q.append_pair("logout_hint", hint);
            }
            drop(q);
            Some(url.to_string())
        });
    let next = end_session_url.unwrap_or(target);
    let mut r = match revoked {
        sessions::Revoked::Done => redirect(&next),
        // The user is told: this browser is signed out, the server's session is not ended yet.
        sessions::Revoked::Pending | sessions::Revoked::Failed => {
            let what = match (revoked, everywhere) {
                (sessions::Revoked::Pending, _) => {
                    "forwarden could not reach its session store to end the session on the server; it keeps trying, and the session ends as soon as the store answers."
                }
                (_, true) => {
                    "forwarden could not reach its session store, so your sessions in other browsers are not ended. Try again in a moment."
                }
                _ => {
                    "forwarden could not reach its session store to end the session on the server. Try again in a moment."
                }
            };
            edge_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Signed out of this browser",
                &format!(
                    "<p>You are signed out in this browser.</p>\n<p>{what}</p>\n<p><a href=\"{}\">Continue</a></p>",
                    escape(&next)
                ),
            )
        }
    };
    for v in ended.headers().get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    r
}

/// Whether a request comes from this site's own page: `Sec-Fetch-Site: same-origin` (every
/// current browser sends it), or, without it, an `Origin` that is this site. Anything else
/// (a cross-site form, a request with neither header) is not.
fn same_origin(headers: &HeaderMap, own: Option<&str>) -> bool {
    match single_header(headers, "sec-fetch-site") {
        Ok(Some(site)) => site.eq_ignore_ascii_case("same-origin"),
        // Twice, unreadable or empty: not a browser's word.
        Err(()) => false,
        Ok(None) if headers.contains_key("sec-fetch-site") => false,
        Ok(None) => own.is_some_and(|own| single_header(headers, "origin") == Ok(Some(own))),
    }
}

/// The page that asks before every session of the user ends: a form that posts back here.
fn confirm_everywhere(rd: Option<&str>) -> Response {
    let rd = rd
        .map(|r| format!("&rd={}", utf8_percent_encode(r, NON_ALPHANUMERIC)))
        .unwrap_or_default();
    let body = format!(
        "<p>This ends your sessions in every browser you signed in with.</p>\n\
<form method=\"post\" action=\"/oauth2/sign_out?everywhere=1{rd}\"><button type=\"submit\">Sign out everywhere</button></form>\n\
<p><a href=\"/oauth2/sign_out?{}\">Sign out of this browser only</a></p>",
        rd.trim_start_matches('&')
    );
    // `rd` is percent-encoded: no quote or angle bracket is left to escape.
    edge_page(StatusCode::OK, "Sign out everywhere?", &body)
}

/// `GET /oauth2/userinfo`: the session's identity as JSON; 401 without a session.
pub async fn userinfo(State(SessionsOnly(keeper)): State<SessionsOnly>, headers: HeaderMap) -> Response {
    let Ok(Some((s, _))) = sessions::current(&keeper, &headers).await else {
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
    let idp = claims.remove(crate::identity::IDP);
    let idp_client = claims.remove(crate::identity::IDP_CLIENT);
    let mut body = serde_json::json!({
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
    // A named provider (`providers:`), and a route's app registration, when there is one.
    for (k, v) in [("idp", idp), ("idp_client", idp_client)] {
        if let (Some(v), Some(o)) = (v, body.as_object_mut()) {
            o.insert(k.into(), v.into());
        }
    }
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
