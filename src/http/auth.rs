//! The auth endpoints, and the pipeline every caller runs (nginx, forward-auth, Envoy's gRPC
//! and HTTP modes): describe and trust the request ([`super::ask`], pure), resolve the subject
//! (the only step that waits: a key fetch, a Redis read), decide (pure), and one [`Answer`]
//! that each contract renders (status codes are chosen only in the renderers).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::Response;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::AppState;
use super::ask::{Ask, Early, Seen, describe_subrequest};
use super::audit::{AuditLine, Tally};
use super::bearer;
use super::edge::{Allowed, Answer, Contract, Denial};
use super::session_cache::{Opened, signed_identity, token_headers};
use super::sessions::ForCheck;
use crate::diag::Origin;
use crate::identity::Identity;
use crate::identity::{STEP_UP_ASKED, STEP_UP_AT};
use crate::oidc::access::{BearerError, Verified};
use crate::policy::{Reason, StepUp, Verdict};

/// How long after a sign-in that asked for a step-up a session still lacking it is refused
/// rather than sent to sign in again (seconds).
const STEP_UP_RETRY: u64 = 300;
use crate::session;
use crate::store::Ticket;

/// The check endpoint `method` and `path` ask, if they ask one: `/oauth2/auth` (nginx) or
/// `/oauth2/forward-auth`, as the router's `any` routes match them (the exact path, any method
/// but `CONNECT`, which the router keeps). The auth listener answers these directly
/// ([`direct`]): every request a proxy passes asks one, and the router's matching, boxing and
/// extractors cost a check about as much as deciding it.
pub(super) fn check_endpoint(method: &Method, path: &str) -> Option<Contract> {
    match path {
        _ if method == Method::CONNECT => None,
        NGINX_PATH => Some(Contract::Nginx),
        FORWARD_AUTH_PATH => Some(Contract::ForwardAuth),
        _ => None,
    }
}

/// nginx's check endpoint ([`nginx`]).
pub(super) const NGINX_PATH: &str = "/oauth2/auth";
/// forward-auth's check endpoint ([`forward_auth`]).
pub(super) const FORWARD_AUTH_PATH: &str = "/oauth2/forward-auth";

/// A check endpoint's answer without the router, the same as through it ([`nginx`],
/// [`forward_auth`]): the handler's response; for `HEAD`, the `Content-Length` of the body it
/// would have and no body, as axum's routes answer (for other methods hyper writes the length
/// of a body it knows).
pub(super) async fn direct<B>(
    st: &AppState,
    peer: SocketAddr,
    req: &axum::http::Request<B>,
    contract: Contract,
) -> Response {
    let mut r = subrequest(st, peer, req.uri(), req.headers(), contract, true).await;
    if req.method() == Method::HEAD {
        if let (false, Some(n)) = (
            r.headers().contains_key(header::CONTENT_LENGTH),
            r.body().size_hint().exact(),
        ) {
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        *r.body_mut() = axum::body::Body::empty();
    }
    r
}

/// `GET /oauth2/auth`: nginx `auth_request` and ingress-nginx `auth-url`.
pub async fn nginx(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    subrequest(&st, peer, req.uri(), req.headers(), Contract::Nginx, true).await
}

/// `GET /oauth2/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`, HAProxy.
pub async fn forward_auth(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    subrequest(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth, true).await
}

/// `GET /oauth2/forbidden`: the 403 page for nginx's `error_page 403`, after `/oauth2/auth`
/// refused. The same decision as `/oauth2/forward-auth`, but not audited or counted again.
pub async fn forbidden_page(
    State(st): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    subrequest(&st, peer, req.uri(), req.headers(), Contract::ForwardAuth, false).await
}

/// A proxy's auth subrequest through the pipeline, rendered under its contract.
async fn subrequest(
    st: &AppState,
    peer: SocketAddr,
    uri: &Uri,
    headers: &HeaderMap,
    contract: Contract,
    record: bool,
) -> Response {
    let tally = Tally {
        record,
        started: st.config.metrics_listen.map(|_| Instant::now()),
    };
    // Answered at once when nothing has to wait (no token to verify, and a cookie session or a
    // stored one this replica's cache holds): then this future holds no more than its
    // arguments, which matters, as every check's future is moved whole. A subject that waits
    // continues in a box of its own, with what was read.
    let waiting = {
        let seen = Seen::new(headers);
        let described = describe_subrequest(st, peer, uri.query().unwrap_or(""), &seen, contract);
        match resolve_now(st, peer, described, &seen, tally) {
            Now::Answered(answer) => return http_answer(st, answer, &seen, headers, contract),
            Now::Waits(ask, waiting) => Box::pin(async move {
                let answer = resolve_waiting(st, peer, ask, waiting, &seen, tally).await;
                http_answer(st, answer, &seen, headers, contract)
            }),
        }
    };
    waiting.await
}

/// An answer as the proxy's HTTP response; an allowed one also carries the `Cookie` header the
/// upstream gets (the client's without forwarden's session).
fn http_answer(
    st: &AppState,
    answer: Answer,
    seen: &Seen<'_>,
    req: &HeaderMap,
    contract: Contract,
) -> Response {
    answer
        .with_upstream_cookie(seen, req, &st.config.cookie.name)
        .into_response(contract)
}

/// The pipeline after the description: the subject (the only step that may wait, and only for
/// a trusted, described request), the decision and the answer.
pub(super) async fn resolve(
    st: &AppState,
    peer: SocketAddr,
    described: Result<Ask<'_>, Early<'_>>,
    seen: &Seen<'_>,
    tally: Tally,
) -> Answer {
    match resolve_now(st, peer, described, seen, tally) {
        Now::Answered(answer) => answer,
        Now::Waits(ask, waiting) => Box::pin(resolve_waiting(st, peer, ask, waiting, seen, tally)).await,
    }
}

/// What [`resolve_now`] reached.
pub(super) enum Now<'a> {
    /// The answer, nothing having had to wait.
    Answered(Answer),
    /// The trusted, described request, and what its subject must be waited for.
    Waits(Ask<'a>, Box<Waiting>),
}

/// What a trusted, described request waits for.
pub(super) enum Waiting {
    /// The signature check of a bearer token the cache does not hold (with the route's
    /// issuers).
    Token(bearer::Uncached, Option<crate::policy::route::SignInWith>),
    /// The record of a ticket this replica's cache does not hold.
    Ticket(Ticket),
}

/// [`resolve`] without waiting: the answer, or the trusted, described request back when its
/// subject must be waited for (a bearer token to verify, a session the store must be read for).
pub(super) fn resolve_now<'a>(
    st: &AppState,
    peer: SocketAddr,
    described: Result<Ask<'a>, Early<'a>>,
    seen: &Seen<'_>,
    tally: Tally,
) -> Now<'a> {
    let ask = match described {
        Ok(ask) => ask,
        Err(refused) => {
            if tally.record {
                AuditLine::early(refused.verdict(), refused.code(), &refused).record(
                    st,
                    tally.started,
                    refused.request(),
                    None,
                    peer,
                );
            }
            return Now::Answered(Answer::Deny(refused.denial(seen.wants_html())));
        }
    };
    // Only what must be read waits: a token the verified-token cache does not hold, a ticket
    // whose record this replica's cache does not hold.
    let read = match (&st.bearer, ask.token) {
        (Some(b), Some(t)) => {
            let with = issuers_of_route(st, &ask);
            let accepts = |n: &str| with.as_ref().is_none_or(|w| w.accepts_issuer(n));
            match bearer::verified_now(st, b, t, &accepts) {
                Ok(token) => Read {
                    token: Some(token),
                    stored: ForCheck::Skipped,
                    tally,
                },
                Err(key) => return Now::Waits(ask, Box::new(Waiting::Token(key, with))),
            }
        }
        _ => match st.sessions.for_check_now(|n| seen.cookie(n)) {
            Ok(stored) => Read {
                token: None,
                stored,
                tally,
            },
            Err(ticket) => return Now::Waits(ask, Box::new(Waiting::Ticket(ticket))),
        },
    };
    Now::Answered(decide(st, peer, &ask, seen, read))
}

/// The subject that must be waited for: the bearer token verified, or the session read from
/// the store; then the decision.
async fn resolve_waiting(
    st: &AppState,
    peer: SocketAddr,
    ask: Ask<'_>,
    waiting: Box<Waiting>,
    seen: &Seen<'_>,
    tally: Tally,
) -> Answer {
    let read = match *waiting {
        Waiting::Token(key, with) => {
            let accepts = |n: &str| with.as_ref().is_none_or(|w| w.accepts_issuer(n));
            let token = match (&st.bearer, ask.token) {
                (Some(b), Some(t)) => bearer::verify(st, b, t, key, &accepts).await,
                // `resolve_now` waits for a token only with both; never a session instead.
                _ => Err(BearerError::Malformed),
            };
            Read {
                token: Some(token),
                stored: ForCheck::Skipped,
                tally,
            }
        }
        Waiting::Ticket(ticket) => Read {
            token: None,
            stored: st.sessions.read_for_check(ticket).await,
            tally,
        },
    };
    decide(st, peer, &ask, seen, read)
}

/// The route's `identity_providers`, which narrow the bearer issuers before any signature
/// check (looked up only when some route limits them).
fn issuers_of_route(st: &AppState, ask: &Ask<'_>) -> Option<crate::policy::route::SignInWith> {
    let policy = st.policy.load();
    match policy.limits_sign_in().then(|| policy.find_route(&ask.req)) {
        Some(crate::policy::route::Found::Route(r)) if !r.sign_in.is_default() => Some(r.sign_in.clone()),
        _ => None,
    }
}

/// Who the request is, resolved after trust: nobody, a session (the cookie's, or the one the
/// session store keeps for its ticket), a verified bearer token, or a presented credential that
/// failed (and why). A bearer token speaks for the request: cookies are not read then.
enum Subject {
    Anonymous,
    /// A session, with the time (Unix seconds) it was found current at: the one reading of the
    /// clock its check makes.
    Session(Rc<Opened>, u64),
    Bearer(Arc<Verified>),
    Failed(BearerError),
}

impl Subject {
    /// From what was read: the token's verification, the stored session, or the cookie.
    fn of(
        st: &AppState,
        seen: &Seen<'_>,
        token: Option<Result<Arc<Verified>, BearerError>>,
        stored: ForCheck,
    ) -> Subject {
        match token {
            Some(Ok(v)) => Subject::Bearer(v),
            Some(Err(e)) => Subject::Failed(e),
            // A session of a provider that is no longer configured (removed, or the unnamed
            // `oidc:` one after a move to `providers:`) is no session.
            None => {
                let now = (st.clock)();
                stored
                    .open(&st.sessions, |n| seen.cookie(n), now)
                    .filter(|o| st.providers.is_empty() || st.providers.of(&o.session.identity).is_some())
                    .map_or(Subject::Anonymous, |o| Subject::Session(o, now))
            }
        }
    }

    /// The identity the policies judge, if any.
    fn identity(&self) -> Option<&Identity> {
        match self {
            Subject::Session(o, _) => Some(&o.session.identity),
            Subject::Bearer(v) => Some(&v.identity),
            Subject::Anonymous | Subject::Failed(_) => None,
        }
    }
}

/// What the handler read before the (synchronous) decision.
struct Read {
    /// The bearer token's verification, with `bearer:` on and a token sent.
    token: Option<Result<Arc<Verified>, BearerError>>,
    /// The session as read (nothing to read for a cookie session or with a token).
    stored: ForCheck,
    /// How the decision is kept.
    tally: Tally,
}

/// Decide one described request on what was read, and answer it.
fn decide(st: &AppState, peer: SocketAddr, ask: &Ask<'_>, seen: &Seen<'_>, read: Read) -> Answer {
    let Read {
        token,
        stored,
        tally: Tally { record, started },
    } = read;
    let Ask { req, narrow, .. } = ask;
    let subject = match Subject::of(st, seen, token, stored) {
        Subject::Failed(e) => {
            if record {
                AuditLine::early(Verdict::Login, "invalid_token", &e).record(
                    st,
                    started,
                    Some(req),
                    None,
                    peer,
                );
            }
            return Answer::Deny(Denial::Bearer {
                error: Some(e.code()),
                description: e.to_string(),
            });
        }
        s => s,
    };
    let (verified, session) = match &subject {
        Subject::Bearer(v) => (Some(v), None),
        Subject::Session(o, now) => (None, Some((o, *now))),
        Subject::Anonymous | Subject::Failed(_) => (None, None),
    };
    let user = subject.identity();
    let audit =
        |verdict: Verdict, route: &str, detail: &dyn std::fmt::Display, code: &str, rule: Option<&Origin>| {
            if record {
                let line = AuditLine {
                    verdict,
                    code,
                    route,
                    rule,
                    detail,
                };
                line.record(st, started, Some(req), user, peer);
            }
        };
    if let Some((o, now)) = session {
        // A page load with a session due for refresh goes through /oauth2/refresh, a plain
        // request that can set every cookie (a subrequest's Set-Cookie would not reach the
        // browser whole). Other requests pass on the still-valid session meanwhile.
        let due = session::refresh_due(&o.session, st.config.cookie.refresh, now);
        if due
            && req.wants_html
            && st
                .providers
                .of(&o.session.identity)
                .is_some_and(|p| p.ready().is_some())
        {
            audit(
                Verdict::Refresh,
                "-",
                &"the session is due for refresh at the identity provider",
                "refresh_due",
                None,
            );
            let (login, absolute) = sign_in_urls(st, req, "/oauth2/refresh", None, None);
            return Answer::Deny(Denial::Login {
                login,
                absolute,
                navigate: true,
            });
        }
    }
    let policy = st.policy.load();
    let d = policy.decide(req, user, narrow);
    match d.verdict {
        Verdict::Allow => {
            let (route, rule) = d.place();
            let headers = match (&verified, session) {
                (Some(v), _) => token_headers(&st.sessions, v),
                (None, Some((o, _))) => Arc::clone(&o.headers),
                (None, None) => Arc::new(st.sessions.headers.map(None)),
            };
            let jwt = match (&st.config.identity_jwt, &st.sessions.headers.jwt, session) {
                (Some(jwt), Some(name), Some((o, now))) => {
                    signed_identity(st.config.public_url.as_ref(), jwt, o, req, now)
                        .map(|v| (name.clone(), v))
                }
                _ => None,
            };
            audit(Verdict::Allow, route, &d.reason, d.reason.code(), rule);
            Answer::Allow(Allowed {
                headers,
                jwt,
                cookie: None,
            })
        }
        verdict => {
            let judged = Judged {
                req,
                user,
                verified: verified.is_some(),
                d: &d,
                audit: &audit,
            };
            match verdict {
                Verdict::Forbidden => forbidden_answer(&judged),
                _ => sign_in_answer(st, &judged),
            }
        }
    }
}

/// How [`decide`] writes a decision's audit line: verdict, route, detail, code, rule.
type AuditFn<'a> = dyn Fn(Verdict, &str, &dyn std::fmt::Display, &str, Option<&Origin>) + 'a;

/// A refusal or "sign in first", with what its answer is made from.
struct Judged<'a> {
    req: &'a crate::request::Request<'a>,
    user: Option<&'a Identity>,
    /// The subject is a verified bearer token.
    verified: bool,
    d: &'a crate::policy::Decision<'a>,
    audit: &'a AuditFn<'a>,
}

/// The answer when the policies say "sign in first" (or "sign in again, asking for more").
fn sign_in_answer(st: &AppState, j: &Judged<'_>) -> Answer {
    let Judged {
        req,
        user,
        verified,
        d,
        audit,
    } = *j;
    let (route, rule) = d.place();
    let bearer_on = st.bearer.is_some();
    // What the sign-in asks the provider for: what this user lacks, or for an
    // anonymous request everything the route's rules ask (one sign-in instead of two).
    let step_up = match &d.reason {
        Reason::StepUp(s) => Some(s.clone()),
        _ => d.route.map(|r| StepUp::of(r, None)).filter(|s| !s.is_empty()),
    };
    if let (Reason::StepUp(s), Some(u)) = (&d.reason, user) {
        // This session's sign-in already asked for exactly this, a moment ago, and the
        // provider did not grant it: refused, not sent round again (no redirect loop).
        let asked = u.claims.get(STEP_UP_ASKED).is_some_and(|a| *a == s.to_param());
        let at = u.claims.get(STEP_UP_AT).and_then(|t| t.parse::<u64>().ok());
        if asked && at.is_some_and(|t| (st.clock)().saturating_sub(t) < STEP_UP_RETRY) {
            audit(Verdict::Forbidden, route, &d.reason, "step_up_not_granted", rule);
            return Answer::Deny(Denial::Forbidden {
                user: Some(Box::new(u.clone())),
                url: req.url(),
                reason: format!(
                    "This page needs a stronger sign-in ({s}), and the identity provider did not confirm it when you signed in again. Sign out and in again once your account can do it."
                ),
                html: req.wants_html,
                insufficient_scope: false,
            });
        }
    }
    audit(Verdict::Login, route, &d.reason, d.reason.code(), rule);
    // An API client is asked for a bearer token, never sent to a sign-in page.
    if bearer_on && (verified || !req.wants_html) {
        return Answer::Deny(match (&d.reason, verified) {
            // RFC 9470: a token whose sign-in was not strong enough.
            (Reason::StepUp(s), true) => Denial::Bearer {
                error: Some("insufficient_user_authentication"),
                description: format!("a stronger sign-in is needed: {s}"),
            },
            _ => Denial::Bearer {
                error: None,
                description: "sign in, or send a bearer token (Authorization: Bearer …)".into(),
            },
        });
    }
    // A step-up signs in again with the session's own provider (no chooser), when the
    // route accepts it.
    let own = match (&d.reason, user, d.route) {
        (Reason::StepUp(_), Some(u), Some(r)) if !u.idp().is_empty() && r.sign_in.accepts_issuer(u.idp()) => {
            Some(crate::policy::SignInWith {
                providers: vec![u.idp().to_string()],
                ..r.sign_in.clone()
            })
        }
        _ => None,
    };
    let with = own.as_ref().or(d.route.map(|r| &r.sign_in));
    let (login, absolute) = sign_in_urls(st, req, "/oauth2/start", step_up.as_ref(), with);
    Answer::Deny(Denial::Login {
        login,
        absolute,
        navigate: req.wants_html,
    })
}

/// The answer when the policies refuse.
fn forbidden_answer(j: &Judged<'_>) -> Answer {
    let (route, rule) = j.d.place();
    (j.audit)(Verdict::Forbidden, route, &j.d.reason, j.d.reason.code(), rule);
    Answer::Deny(Denial::Forbidden {
        user: j.user.cloned().map(Box::new),
        url: j.req.url(),
        reason: j.d.reason.explanation().into(),
        html: j.req.wants_html,
        // RFC 6750 3.1: a valid token that does not allow this.
        insufficient_scope: j.verified,
    })
}

/// The URL of a sign-in endpoint (`/oauth2/start`, `/oauth2/refresh`) that returns to the
/// original URL: relative and absolute on this host, or on `public_url` in central mode.
fn sign_in_urls(
    st: &AppState,
    req: &crate::request::Request<'_>,
    endpoint: &str,
    step_up: Option<&StepUp>,
    with: Option<&crate::policy::SignInWith>,
) -> (String, String) {
    let mut path = format!(
        "{endpoint}?rd={}",
        utf8_percent_encode(&req.url(), NON_ALPHANUMERIC)
    );
    if let Some(s) = step_up {
        path.push_str("&step_up=");
        path.extend(utf8_percent_encode(&s.to_param(), NON_ALPHANUMERIC));
    }
    // The providers and app registration the route accepts: the sign-in offers only those.
    if let Some(w) = with {
        if !w.providers.is_empty() {
            path.push_str("&idp=");
            path.extend(utf8_percent_encode(&w.providers.join(","), NON_ALPHANUMERIC));
        }
        if let Some(c) = &w.client {
            path.push_str("&client=");
            path.extend(utf8_percent_encode(&c.id, NON_ALPHANUMERIC));
        }
    }
    // A host under one of cookie.other_domains gets its session by a hand-off from the central
    // sign-in host, which starts on the host itself (it sets the hand-off's pending cookie).
    // A refresh there happens on the host itself too (its cookies are its domain's).
    if st.sessions.handoff_domain(&req.site.host).is_some() {
        let path = path.replacen("/oauth2/start", "/oauth2/handoff", 1);
        let abs = format!("{}{path}", req.origin());
        return (path, abs);
    }
    match &st.config.public_url {
        Some(p) => {
            let abs = format!("{}{path}", p.as_str().trim_end_matches('/'));
            (abs.clone(), abs)
        }
        None => {
            let abs = format!("{}{path}", req.origin());
            (path, abs)
        }
    }
}
