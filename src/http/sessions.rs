//! Where a session lives: in the cookies (the default), or in the session store with only a
//! ticket in the cookie (`session_store:`). The sign-in, refresh and sign-out endpoints read,
//! write and end sessions through here; the auth endpoints read them through `session_cache`,
//! after [`preload`].

use std::rc::Rc;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;

use super::cookies::{end_session, request_cookie, set_session, set_ticket};
use super::headers::IdentityHeaders;
use super::session_cache::{self, Opened, open_session_at, opened_stored, session_of};
use crate::clock::{Clock, Entropy};
use crate::config::CookieConfig;
use crate::session::{self, Session, SessionError};
use crate::store::Ticket;
use crate::store::redis::{RedisStore, StoreError};

/// The sessions part of the server's state: where sessions live, and what reading, opening,
/// writing and ending one takes (the cookie settings, the clock and randomness, the identity
/// header names each opened session's answer headers are made with, and which server state
/// opened a session in the per-thread caches). The functions here and in `session_cache` take
/// only this, and so does a handler that needs nothing else (`/oauth2/userinfo`).
pub struct SessionKeeper {
    place: Sessions,
    /// The session cookie's settings (`cookie:`).
    pub(crate) cookie: CookieConfig,
    pub(crate) clock: Clock,
    pub(crate) entropy: Entropy,
    /// The identity header names, parsed once.
    pub(crate) headers: IdentityHeaders,
    /// Distinguishes server states in the per-thread session caches.
    pub(crate) instance: u64,
}

/// Where sessions live, chosen once at start: every read, write and end of a session goes
/// through [`SessionKeeper`], so no handler checks which it is.
pub(crate) enum Sessions {
    /// Sealed into the browser's cookies (the default).
    Cookies,
    /// In the session store, with only a ticket in the cookie (`session_store:`).
    Store(Arc<RedisStore>),
}

/// The sessions part alone, for a handler that needs nothing else (an axum substate).
#[derive(Clone)]
pub struct SessionsOnly(pub Arc<SessionKeeper>);

impl axum::extract::FromRef<Arc<super::AppState>> for SessionsOnly {
    fn from_ref(st: &Arc<super::AppState>) -> Self {
        SessionsOnly(st.sessions.clone())
    }
}

impl SessionKeeper {
    /// The keeper of sessions in `place`, for a new server state.
    pub(crate) fn new(
        place: Sessions,
        cookie: CookieConfig,
        clock: Clock,
        entropy: Entropy,
        headers: IdentityHeaders,
    ) -> Self {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        SessionKeeper {
            place,
            cookie,
            clock,
            entropy,
            headers,
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The session store, for what only it can do (back-channel logout, `/readyz`, listing).
    pub fn store(&self) -> Option<&Arc<RedisStore>> {
        match &self.place {
            Sessions::Cookies => None,
            Sessions::Store(s) => Some(s),
        }
    }

    /// What the auth check needs read before its (synchronous) decision, when nothing has to
    /// be waited for: nothing for cookie sessions (opened in the decision, from the per-thread
    /// cache); for a ticket, its record (or its absence) from this replica's cache, or no
    /// session without a ticket. `Err` with the ticket whose record the store must be read for
    /// ([`Self::read_for_check`]).
    pub(crate) fn for_check_now<'a>(
        &self,
        cookie: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<ForCheck, Ticket> {
        match &self.place {
            Sessions::Cookies => Ok(ForCheck::Cookie),
            Sessions::Store(store) => match session_cache::ticket(self, cookie) {
                None => Ok(ForCheck::Stored(None)),
                Some(t) => match store.cached(&t.id) {
                    Some(found) => Ok(ForCheck::Stored(found.map(|s| (t.id, s)))),
                    None => Err(t),
                },
            },
        }
    }

    /// The record of a ticket this replica's cache does not hold, read from the store. Redis
    /// trouble means "not signed in" for it (cached sessions pass for their cache time).
    pub(crate) async fn read_for_check(&self, t: Ticket) -> ForCheck {
        let Sessions::Store(store) = &self.place else {
            return ForCheck::Stored(None);
        };
        match store.load(&t, (self.clock)()).await {
            Ok(found) => ForCheck::Stored(found.map(|s| (t.id, s))),
            Err(e) => {
                tracing::debug!(error = %e, "session not loaded");
                ForCheck::Stored(None)
            }
        }
    }

    /// The one of `cookie.other_domains` `host` is under (`.example.org`), if any: its
    /// session comes from the central sign-in host by a hand-off.
    pub fn handoff_domain(&self, host: &str) -> Option<String> {
        let host = host.to_ascii_lowercase();
        self.cookie
            .other_domains
            .iter()
            .find(|d| {
                let bare = d.trim_start_matches('.');
                host == bare || host.ends_with(d.as_str())
            })
            .cloned()
    }

    /// The cookie settings for responses to `host`: the configured ones, with the `Domain` of
    /// its one of `cookie.other_domains` when it is under one (a browser ignores a cookie for
    /// another registrable domain). Every session cookie a response writes or deletes goes
    /// through these.
    pub fn cookie_for(&self, host: Option<&str>) -> std::borrow::Cow<'_, CookieConfig> {
        match host.and_then(|h| self.handoff_domain(h)) {
            Some(d) => std::borrow::Cow::Owned(CookieConfig {
                domain: Some(d),
                ..self.cookie.clone()
            }),
            None => std::borrow::Cow::Borrowed(&self.cookie),
        }
    }
}

/// A session as read for the auth check (see [`SessionKeeper::for_check_now`]).
pub(crate) enum ForCheck {
    /// A bearer token speaks for the request: no session is read.
    Skipped,
    /// Open the session cookie.
    Cookie,
    /// The ticket's id and its record, if the store has one.
    Stored(Option<([u8; 16], Arc<Session>)>),
}

impl ForCheck {
    /// The session, opened (from the per-thread caches when it was seen before), if it is
    /// current at `now`.
    pub(crate) fn open<'a>(
        self,
        k: &SessionKeeper,
        cookie: impl Fn(&str) -> Option<&'a str>,
        now: u64,
    ) -> Option<Rc<Opened>> {
        match self {
            ForCheck::Skipped => None,
            ForCheck::Cookie => open_session_at(k, cookie, now),
            ForCheck::Stored(found) => found.and_then(|(id, s)| opened_stored(k, id, s, now)),
        }
    }
}

/// Why a session could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// It does not fit in cookies.
    #[error(transparent)]
    TooLarge(#[from] SessionError),
    /// The store could not keep it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The request's ticket, with a session store.
pub(crate) fn ticket_of(k: &SessionKeeper, headers: &HeaderMap) -> Option<Ticket> {
    k.store()?;
    session_cache::ticket(k, |n: &str| request_cookie(headers, n))
}

/// The request's session, and its ticket with a store.
pub(crate) async fn current(
    k: &SessionKeeper,
    headers: &HeaderMap,
) -> Result<Option<(Session, Option<Ticket>)>, StoreError> {
    let Sessions::Store(store) = &k.place else {
        return Ok(session_of(k, headers).map(|o| ((*o.session).clone(), None)));
    };
    let Some(t) = ticket_of(k, headers) else {
        return Ok(None);
    };
    let now = (k.clock)();
    let s = store.load(&t, now).await?;
    Ok(s.filter(|s| session::is_current(s, now))
        .map(|s| ((*s).clone(), Some(t))))
}

/// Write a session: sealed into the cookies, or into the store (under `ticket`, or a new one)
/// with the ticket in the cookie; `cookie` is the settings for the host answered
/// ([`SessionKeeper::cookie_for`]).
pub(crate) async fn write(
    k: &SessionKeeper,
    cookie: &CookieConfig,
    s: &mut Session,
    ticket: Option<Ticket>,
    needed: impl Fn(&str) -> bool,
    r: &mut Response,
) -> Result<(), WriteError> {
    let Sessions::Store(store) = &k.place else {
        set_session(cookie, &k.entropy, s, needed, r)?;
        return Ok(());
    };
    let t = ticket.unwrap_or_else(|| Ticket::new(k.entropy.bytes()));
    store.save(&t, s, (k.clock)(), k.entropy.bytes()).await?;
    set_ticket(cookie, &t.seal(&cookie.keys, &cookie.name, k.entropy.bytes()), r);
    Ok(())
}

/// What signing out did on the server (with a session store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// Nothing to revoke (sessions in cookies, or no session), or revoked.
    Done,
    /// The store could not take it now: it is retried in the background.
    Pending,
    /// The store could not take it, and it could not be queued for a retry.
    Failed,
}

/// End the request's session: its cookies go, and with a store its record (or, `everywhere`,
/// every session of its user). The record is revoked by the ticket's id, which the cookie
/// holds, so a store that cannot be read still gets the revocation (retried in the background
/// when it cannot be written now). Returns the ended session, if it could be read, and what
/// happened on the server.
pub(crate) async fn end(
    k: &SessionKeeper,
    cookie: &CookieConfig,
    headers: &HeaderMap,
    everywhere: bool,
    r: &mut Response,
) -> (Option<Session>, Revoked) {
    end_session(cookie, r);
    let ended = match current(k, headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "sign-out: the session store is unavailable; the cookie is deleted");
            None
        }
    };
    let Sessions::Store(store) = &k.place else {
        return (ended.map(|(s, _)| s), Revoked::Done);
    };
    let Some(t) = ticket_of(k, headers) else {
        return (None, Revoked::Done);
    };
    let session = ended.map(|(s, _)| s);
    if everywhere {
        // Every session of the user needs the user: from the session just read.
        let revoked = match &session {
            Some(s) => store.revoke_user(&s.identity.subject).await,
            None => Err(StoreError::Unavailable("the session could not be read".into())),
        };
        return match revoked {
            Ok(n) => {
                tracing::info!(sessions = n, everywhere, "signed out");
                (session, Revoked::Done)
            }
            Err(e) => {
                tracing::warn!(error = %e, "sign-out everywhere: the session store is unavailable");
                // This browser's own session is still revoked (or retried).
                let _ = store.revoke_or_retry(t.id_hex()).await;
                (session, Revoked::Failed)
            }
        };
    }
    let revoked = match store.revoke_or_retry(t.id_hex()).await {
        Ok(true) => Revoked::Done,
        Ok(false) => Revoked::Pending,
        Err(_) => Revoked::Failed,
    };
    if revoked == Revoked::Done {
        tracing::info!(everywhere, "signed out");
    }
    (session, revoked)
}
