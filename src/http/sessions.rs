//! Where a session lives: in the cookies (the default), or in the session store with only a
//! ticket in the cookie (`session_store:`). The sign-in, refresh and sign-out endpoints read,
//! write and end sessions through here; the auth endpoints read them through `session_cache`,
//! after [`preload`].

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::Response;

use super::AppState;
use super::cookies::{end_session, request_cookie, set_session, set_ticket};
use super::session_cache::{self, session_of};
use crate::session::{self, Session, SessionError};
use crate::store::Ticket;
use crate::store::redis::StoreError;

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
pub(crate) fn ticket_of(st: &AppState, headers: &HeaderMap) -> Option<Ticket> {
    st.store.as_ref()?;
    session_cache::ticket(st, |n: &str| request_cookie(headers, n))
}

/// With a session store, the request's session for the auth check: from this replica's store
/// cache, or read from Redis. Redis trouble means "not signed in" for a session this replica
/// has not cached (cached ones pass for their cache time).
pub(crate) async fn stored<'a>(
    st: &AppState,
    cookie: impl Fn(&str) -> Option<&'a str>,
) -> Option<([u8; 16], Arc<Session>)> {
    let store = st.store.as_ref()?;
    let t = session_cache::ticket(st, cookie)?;
    let found = match store.cached(&t.id) {
        Some(c) => c,
        None => match store.load(&t, (st.clock)()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "session not loaded");
                None
            }
        },
    };
    found.map(|s| (t.id, s))
}

/// The request's session, and its ticket with a store.
pub(crate) async fn current(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, Option<Ticket>)>, StoreError> {
    let Some(store) = &st.store else {
        return Ok(session_of(st, headers).map(|o| ((*o.session).clone(), None)));
    };
    let Some(t) = ticket_of(st, headers) else {
        return Ok(None);
    };
    let now = (st.clock)();
    let s = store.load(&t, now).await?;
    Ok(s.filter(|s| session::is_current(s, now))
        .map(|s| ((*s).clone(), Some(t))))
}

/// Write a session: sealed into the cookies, or into the store (under `ticket`, or a new one)
/// with the ticket in the cookie.
pub(crate) async fn write(
    st: &AppState,
    s: &mut Session,
    ticket: Option<Ticket>,
    needed: impl Fn(&str) -> bool,
    r: &mut Response,
) -> Result<(), WriteError> {
    let Some(store) = &st.store else {
        set_session(&st.config.cookie, &st.entropy, s, needed, r)?;
        return Ok(());
    };
    let t = ticket.unwrap_or_else(|| Ticket::new(st.entropy.bytes()));
    store.save(&t, s, (st.clock)(), st.entropy.bytes()).await?;
    let c = &st.config.cookie;
    set_ticket(c, &t.seal(&c.keys, &c.name, st.entropy.bytes()), r);
    Ok(())
}

/// End the request's session: its cookies go, and with a store its record (or, `everywhere`,
/// every session of its user). Returns the ended session, if there was one.
pub(crate) async fn end(
    st: &AppState,
    headers: &HeaderMap,
    everywhere: bool,
    r: &mut Response,
) -> Option<Session> {
    end_session(&st.config.cookie, r);
    let ended = match current(st, headers).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "sign-out: the session store is unavailable; the cookie is deleted");
            return None;
        }
    };
    let (Some(store), Some((s, Some(t)))) = (&st.store, &ended) else {
        return ended.map(|(s, _)| s);
    };
    let revoked = if everywhere {
        store.revoke_user(&s.identity.subject).await
    } else {
        store.revoke(&[t.id_hex()]).await
    };
    match revoked {
        Ok(n) => tracing::info!(user = %s.identity.subject, sessions = n, everywhere, "signed out"),
        Err(e) => tracing::warn!(error = %e, "sign-out: the session store is unavailable"),
    }
    ended.map(|(s, _)| s)
}
