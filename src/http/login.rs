//! Sign-in: `/oauth2/start` sends the browser to the identity provider, `/oauth2/callback`
//! receives it back, has the code exchanged and the ID token verified ([`crate::oidc::signin`]
//! through the transport), and sets the session.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::SigningIn;
use super::cookies::{pending_logins, store_pending};
use super::edge::{ErrorPage, RouteError, edge_page, enc, redirect};
use super::sessions::{self, WriteError};
use crate::config::Config;
use crate::identity::Identity;
use crate::oidc::flow::{self, Authorize, Randomness};
use crate::oidc::idtoken::{Expect, TokenError};
use crate::oidc::redirect::safe_target;
use crate::oidc::signin::{LEEWAY, SignIn, SignInError};
use crate::oidc::transport::{Client, Provider, Ready, Tokens};
use crate::policy::StepUp;
use crate::request::{Site, is_trusted, parse_port};
use crate::session::Session;

/// Where the browser is: `scheme://host[:port]` and the host alone.
pub(super) struct BrowserOrigin {
    pub(super) url: String,
    pub(super) host: String,
}

/// A header sent at most once, as visible ASCII, trimmed (`Ok(None)`: absent or empty);
/// `Err` when it came twice or is not readable: the caller does not guess which one counts.
pub(super) fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(v.to_str().map_err(|_| ())?.trim()).map(|v| Some(v).filter(|v| !v.is_empty())),
        _ => Err(()),
    }
}

/// The request's origin as the browser sent it: from a trusted proxy's forwarded headers
/// (`X-Forwarded-Proto`, `-Host`, `-Port`), otherwise the Host header, decided by the same
/// rule as the auth subrequests' (`request::Site`). Anything ambiguous (a header twice, a list,
/// ports that disagree) gives none: no sign-in for it.
pub(super) fn browser_origin(
    config: &Config,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Option<BrowserOrigin> {
    let one = |n: &str| single_header(headers, n);
    let unstated = config.scheme();
    let site = if is_trusted(peer.ip(), &config.trusted_proxies) {
        let authority = match one("x-forwarded-host").ok()? {
            Some(a) => a,
            None => one("host").ok()??,
        };
        let port = one("x-forwarded-port").ok()?.map(parse_port).transpose().ok()?;
        Site::new(one("x-forwarded-proto").ok()?, unstated, authority, port).ok()?
    } else {
        Site::new(None, unstated, one("host").ok()??, None).ok()?
    };
    Some(BrowserOrigin {
        url: site.origin(),
        host: site.host.into_owned(),
    })
}

/// Where the provider sends the browser back: the public URL in central mode, else this host.
fn redirect_uri(st: &SigningIn, origin: &str) -> String {
    match &st.config.public_url {
        Some(u) => format!("{}/oauth2/callback", u.as_str().trim_end_matches('/')),
        None => format!("{origin}/oauth2/callback"),
    }
}

/// The provider named `name`, discovered; or why sign-in cannot start.
pub(super) fn ready_provider<'s>(
    st: &'s SigningIn,
    name: &str,
) -> Result<(&'s Provider, Arc<Ready>), RouteError> {
    if st.providers.is_empty() {
        return Err(RouteError::Unavailable(
            "This forwarden has no identity provider configured, so nobody can sign in.".into(),
        ));
    }
    let provider = st.providers.named(name).ok_or_else(|| {
        RouteError::Bad("The sign-in link names an identity provider this site does not have.".into())
    })?;
    // Why is for the operator (forwarden's log, `/readyz`): the provider's address and a network
    // or TLS error describe the inside of the deployment, and this page is anyone's.
    let ready = provider.ready().ok_or_else(|| {
        RouteError::Unavailable(
            "forwarden cannot reach the identity provider yet. Try again in a minute; the administrator finds why in forwarden's log.".into(),
        )
    })?;
    Ok((provider, ready))
}

/// The providers a sign-in may go to: those the link names (`idp=a,b`, each configured), or
/// every one; refused when a name is unknown.
fn candidates<'s>(st: &'s SigningIn, idp: Option<&str>) -> Result<Vec<&'s Arc<Provider>>, RouteError> {
    let Some(list) = idp.filter(|l| !l.is_empty()) else {
        return Ok(st.providers.iter().collect());
    };
    list.split(',')
        .map(|n| {
            st.providers.named(n).ok_or_else(|| {
                RouteError::Bad("The sign-in link names an identity provider this site does not have.".into())
            })
        })
        .collect()
}

/// Query of `/oauth2/start`, `/oauth2/refresh` and `/oauth2/sign_out`: where to go afterwards.
#[derive(Deserialize)]
pub struct RdQuery {
    #[serde(default)]
    pub(super) rd: Option<String>,
    /// `/oauth2/sign_out?everywhere=1`: every session of the user (with a session store).
    #[serde(default)]
    pub(super) everywhere: Option<String>,
    /// `/oauth2/start?step_up=…`: what the sign-in asks the provider for (from the auth
    /// check's redirect, [`StepUp::to_param`]).
    #[serde(default)]
    pub(super) step_up: Option<String>,
    /// `/oauth2/start?idp=a,b`: the providers the route accepts (from the auth check); with
    /// more than one, the chooser page.
    #[serde(default)]
    pub(super) idp: Option<String>,
    /// `/oauth2/start?client=…`: the route's own app registration (`idp_client_id`).
    #[serde(default)]
    pub(super) client: Option<String>,
}

/// The browser's origin, and where it may be sent afterwards: `rd` when it passes the
/// allow-list, else `/`.
pub(super) fn return_target(
    config: &Config,
    peer: SocketAddr,
    headers: &HeaderMap,
    rd: Option<&str>,
) -> (Option<BrowserOrigin>, String) {
    let origin = browser_origin(config, peer, headers);
    let host = origin.as_ref().map_or("", |o| o.host.as_str());
    let target = safe_target(rd.unwrap_or("/"), host, &config.allowed_redirect_domains);
    (origin, target)
}

/// `GET /oauth2/start?rd=…`
pub async fn start(
    State(st): State<SigningIn>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<RdQuery>,
    headers: HeaderMap,
) -> Result<Response, ErrorPage> {
    begin(&st, peer, q, &headers).map_err(|e| e.for_client(&headers))
}

fn begin(st: &SigningIn, peer: SocketAddr, q: RdQuery, headers: &HeaderMap) -> Result<Response, RouteError> {
    let choices = candidates(st, q.idp.as_deref())?;
    let (origin, rd) = return_target(&st.config, peer, headers, q.rd.as_deref());
    let origin =
        origin.ok_or_else(|| RouteError::Bad("The request did not say which site it is for.".into()))?;
    // What the link carries on: the step-up and the route's client.
    let mut carried = String::new();
    if let Some(s) = q.step_up.as_deref().filter(|s| !s.is_empty()) {
        carried.push_str(&format!("&step_up={}", enc(s)));
    }
    let client = q.client.as_deref().unwrap_or("");
    if !client.is_empty() {
        carried.push_str(&format!("&client={}", enc(client)));
    }
    // A host under one of cookie.other_domains signs in through the central host's hand-off
    // (its own cookies cannot carry the central sign-in's state).
    if st.sessions.handoff_domain(&origin.host).is_some() && st.config.public_url.is_some() {
        let mut to = format!("/oauth2/handoff?rd={}{carried}", enc(&rd));
        if let Some(i) = q.idp.as_deref().filter(|s| !s.is_empty()) {
            to.push_str(&format!("&idp={}", enc(i)));
        }
        return Ok(redirect(&to));
    }
    if choices.len() > 1 {
        if !client.is_empty() {
            return Err(RouteError::Bad(
                "The sign-in link names an app registration without its identity provider.".into(),
            ));
        }
        return Ok(chooser(st, headers, &choices, &rd, &carried));
    }
    // None configured: ready_provider says so.
    let name = choices.first().map_or("", |p| p.config.name.as_str());
    let (provider, ready) = ready_provider(st, name)?;
    let app = st.providers.client(provider, client).map_err(|e| {
        tracing::warn!(error = %e, "sign-in refused");
        RouteError::Bad("The sign-in link names an app registration this site does not use.".into())
    })?;
    let callback = redirect_uri(st, &origin.url);
    let o = &provider.config;
    // A step-up is parsed strictly (its values go into the provider's request as written).
    let step_up = match q.step_up.as_deref() {
        None | Some("") => StepUp::default(),
        Some(p) => StepUp::from_param(p).ok_or_else(|| {
            RouteError::Bad("The sign-in link asks for a stronger sign-in forwarden does not know.".into())
        })?,
    };
    let extra = step_up_parameters(&step_up);
    let authorize = Authorize {
        endpoint: &ready.discovery.authorization_endpoint,
        client_id: &app.id,
        redirect_uri: &callback,
        scopes: &o.scopes,
        extra: &extra,
    };
    let random = Randomness {
        state: st.entropy.bytes(),
        nonce: st.entropy.bytes(),
        verifier: st.entropy.bytes(),
    };
    let now = (st.clock)();
    let (url, mut pending) =
        flow::begin(&authorize, rd, &random, now).map_err(|e| RouteError::Provider(e.to_string()))?;
    pending.step_up = step_up.to_param();
    pending.idp = o.name.clone();
    pending.client = client.to_string();
    let list = flow::push(pending_logins(&st.config.cookie, headers), pending, now);
    let mut r = redirect(&url);
    store_pending(&st.config.cookie, &st.entropy, &list, &mut r);
    if st.providers.len() > 1 {
        // The chooser offers this one first next time.
        if let Some(v) = super::cookies::set_cookie(
            &st.config.cookie,
            &last_choice_cookie(st),
            &o.name,
            "/",
            Some(LAST_CHOICE_AGE),
        ) {
            r.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    Ok(r)
}

/// How long the chooser remembers the last provider chosen (seconds): 90 days.
const LAST_CHOICE_AGE: i64 = 90 * 24 * 3600;

/// The cookie that remembers the provider chosen last (`<cookie.name>_idp`).
fn last_choice_cookie(st: &SigningIn) -> String {
    format!("{}_idp", st.config.cookie.name)
}

/// The chooser page: one link per provider the route accepts, the one chosen last first (and
/// focused), so Enter continues with it. Plain links in a list: every browser, keyboard and
/// screen reader knows how to use them.
fn chooser(
    st: &SigningIn,
    headers: &HeaderMap,
    choices: &[&Arc<Provider>],
    rd: &str,
    carried: &str,
) -> Response {
    use super::edge::escape;
    let last = super::cookies::request_cookie(headers, &last_choice_cookie(st)).unwrap_or("");
    let mut ordered: Vec<&&Arc<Provider>> = choices.iter().collect();
    ordered.sort_by_key(|p| p.config.name != last);
    let items: Vec<String> = ordered
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let href = format!(
                "/oauth2/start?rd={}&idp={}{carried}",
                enc(rd),
                enc(&p.config.name)
            );
            let note = if p.config.name == last {
                " <small>(used last time)</small>"
            } else {
                ""
            };
            format!(
                "<li><a href=\"{}\"{}>{}</a>{note}</li>",
                escape(&href),
                if i == 0 { " autofocus" } else { "" },
                escape(&p.config.display_name)
            )
        })
        .collect();
    let body = format!(
        "<p>Choose how to sign in:</p>\n<nav aria-label=\"Sign-in choices\"><ul>\n{}\n</ul></nav>",
        items.join("\n")
    );
    // Never framed (a chooser in a frame could be clicked for the user).
    edge_page(axum::http::StatusCode::OK, "Sign in", &body)
}

/// What the provider's authorization request says for a step-up: `acr_values` for `acr`,
/// Entra's `claims` (an ID token with these `acrs`) for authentication contexts, and a fresh
/// sign-in (`max_age=0`) for `amr` methods.
fn step_up_parameters(s: &StepUp) -> Vec<(&'static str, String)> {
    let mut extra = Vec::new();
    if !s.acr.is_empty() {
        extra.push(("acr_values", s.acr.join(" ")));
    }
    if let Some(claims) = s.claims_request() {
        extra.push(("claims", claims));
    }
    if !s.amr.is_empty() {
        extra.push(("max_age", "0".to_string()));
    }
    extra
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
    /// RFC 9207: the issuer of the answer, when the provider says it.
    #[serde(default)]
    iss: Option<String>,
}

/// `GET /oauth2/callback?code=…&state=…`
pub async fn callback(
    State(st): State<SigningIn>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Result<Response, ErrorPage> {
    let result = finish(&st, peer, q, &headers).await;
    st.metrics
        .login(result.as_ref().map_or_else(RouteError::code, |_| "success"));
    result.map_err(|e| e.for_client(&headers))
}

async fn finish(
    st: &SigningIn,
    peer: SocketAddr,
    q: CallbackQuery,
    headers: &HeaderMap,
) -> Result<Response, RouteError> {
    if let Some(err) = q.error {
        let desc = q.error_description.unwrap_or_default();
        tracing::info!(error = %err, "identity provider refused the sign-in");
        return Err(RouteError::Refused(format!(
            "The identity provider said: {err}. {desc}"
        )));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(RouteError::Bad(
            "The identity provider's answer is missing its code or state.".into(),
        ));
    };
    let now = (st.clock)();
    let pending_list = pending_logins(&st.config.cookie, headers);
    let none_pending = pending_list.is_empty();
    let (pending, rest) = flow::take(pending_list, &state, now).map_err(|e| {
        if matches!(e, flow::FlowError::UnknownState) && none_pending {
            // The browser sent no sign-in cookie at all: most often a Secure cookie on http.
            let http = browser_origin(&st.config, peer, headers).is_some_and(|o| o.url.starts_with("http:"));
            let cause = if http && st.config.cookie.secure {
                "This site is served over http while cookie.secure is on, so the browser did not send the sign-in cookie back: serve it over https (or set cookie.secure: false for a local test)."
            } else {
                "The browser did not send the sign-in cookie back: the sign-in was started on another host or in another browser, or cookies are blocked."
            };
            tracing::warn!(secure = st.config.cookie.secure, http, "callback without a sign-in cookie (state mismatch)");
            RouteError::Bad(format!("{e}. {cause}"))
        } else {
            RouteError::Bad(format!("{e}."))
        }
    })?;
    // The provider the sign-in went to (the state names it), never one the answer claims.
    let (provider, ready) = ready_provider(st, &pending.idp)?;
    if q.iss.as_deref().is_some_and(|iss| !ready.issuer.admits(iss)) {
        // RFC 9207: the answer comes from another provider than the one asked (mix-up).
        tracing::warn!(expected = %provider.config.issuer, "callback from another issuer than the sign-in went to");
        return Err(RouteError::Bad(
            "The answer came from another identity provider than the one the sign-in went to.".into(),
        ));
    }
    let client = st.providers.client(provider, &pending.client).map_err(|e| {
        tracing::warn!(error = %e, "sign-in refused");
        RouteError::Bad("The sign-in went through an app registration this site no longer uses.".into())
    })?;
    let origin = browser_origin(&st.config, peer, headers)
        .ok_or_else(|| RouteError::Bad("The request did not say which site it is for.".into()))?;
    let callback = redirect_uri(st, &origin.url);
    let tokens = provider
        .exchange_code(&client, &code, &callback, &pending.verifier)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "code exchange failed");
            RouteError::Provider("The sign-in could not be completed with the identity provider.".into())
        })?;
    let mut identity = verify_tokens(
        &st.extra_claims,
        provider,
        &client,
        &ready,
        &tokens,
        Some(&pending.nonce),
        now,
        None,
    )
    .await
    .map_err(sign_in_failure)?;
    if !pending.step_up.is_empty() {
        // The session in this browser, signed in again more strongly: it keeps what it had.
        if let Ok(Some((old, _))) = sessions::current(&st.sessions, headers).await {
            identity.keep_step_up(&old.identity);
        }
        identity
            .claims
            .insert(crate::identity::STEP_UP_ASKED.into(), pending.step_up.clone());
        identity
            .claims
            .insert(crate::identity::STEP_UP_AT.into(), now.to_string());
    }
    tracing::info!(user = %identity.subject, tenant = %identity.tenant, "signed in");
    let groups = identity.groups.len();
    let mut session = Session {
        identity,
        issued_at: now,
        expires_at: now + st.config.cookie.lifetime.as_secs(),
        refresh_token: tokens.refresh_token.clone(),
    };
    let mut r = redirect(&pending.rd);
    let policy = st.policy.load();
    let subject = session.identity.subject.clone();
    let names = |g: &str| policy.names_group(g);
    sessions::write(&st.sessions, &st.sessions.cookie_for(Some(&origin.host)), &mut session, None, names, &mut r).await.map_err(|e| match e {
        WriteError::TooLarge(_) => {
            tracing::warn!(user = %subject, groups, "the session does not fit in cookies");
            RouteError::Refused(format!(
                "Your account is in {groups} groups, more than fit in a session cookie even when only the groups this site's policies name are kept. Ask the administrator to send fewer groups in the token (Entra ID: \"Groups assigned to the application\"), or keep sessions on the server (session_store)."
            ))
        }
        // The store refuses forwarden itself (a wrong password or ACL): no retry helps.
        WriteError::Store(e @ crate::store::redis::StoreError::Refused(_)) => {
            tracing::error!(user = %subject, error = %e, "sign-in: the session store refuses forwarden; fix session_store's settings");
            RouteError::Unavailable(
                "Sign-in is out of service: forwarden cannot use its session store. The administrator has been told why (forwarden's log).".into(),
            )
        }
        WriteError::Store(e) => {
            tracing::warn!(user = %subject, error = %e, "sign-in: the session store is unavailable");
            RouteError::Unavailable(
                "The session store is unavailable, so the sign-in cannot be kept. Try again in a moment.".into(),
            )
        }
    })?;
    store_pending(&st.config.cookie, &st.entropy, &rest, &mut r);
    Ok(r)
}

/// The identity a token response stands for (see [`crate::oidc::signin`]); on refresh,
/// `same_user` is the session's user, whom the new ID token must name again.
///
/// The identity is the provider's: for a named provider its subject reads `<name>#<sub>`, and
/// it records the provider and the app registration (`client`) it signed in through.
#[allow(clippy::too_many_arguments)]
pub(super) async fn verify_tokens(
    extra_claims: &[String],
    provider: &Provider,
    client: &Client,
    ready: &Ready,
    tokens: &Tokens,
    nonce: Option<&str>,
    now: u64,
    same_user: Option<&Identity>,
) -> Result<Identity, SignInError> {
    let o = &provider.config;
    let expect = Expect {
        issuer: &ready.issuer,
        client_id: &client.id,
        nonce,
        now,
        leeway: LEEWAY,
        allowed_tenants: &o.allowed_tenants,
        entra: o.entra,
    };
    let mut signin = SignIn::new(
        tokens.id_token.as_deref(),
        tokens.access_token.as_deref(),
        expect,
        extra_claims,
    )?;
    let raw = same_user.map(|u| u.as_provider_names_it(&o.name));
    if let Some(user) = &raw {
        signin = signin.refreshing(user);
    }
    let mut identity = provider.identity(ready, signin).await?;
    let own = client.id == o.client_id;
    identity.signed_in_by(&o.name, if own { "" } else { &client.id });
    Ok(identity)
}

/// What the user is told when a sign-in's ID token is refused.
fn sign_in_failure(e: SignInError) -> RouteError {
    tracing::warn!(error = %e, "ID token refused");
    match e {
        SignInError::Token(TokenError::Tenant) => {
            RouteError::Refused("Accounts of your organization may not sign in here.".into())
        }
        SignInError::NoIdToken => RouteError::Provider("The identity provider sent no ID token.".into()),
        other => RouteError::Provider(format!(
            "The identity provider's answer could not be verified: {other}."
        )),
    }
}
