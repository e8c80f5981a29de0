//! The session store on Redis (or Valkey): standalone, or its master found through Sentinel.
//! The one module besides the identity provider's transport that makes outbound calls.
//!
//! Layout under `key_prefix` (`forwarden:`):
//! - `s:<id>`: a hash: `r` the sealed record, `u` user id, `e` email, `i` issued, `x` expires,
//!   `d` the provider's `sid`; it expires with the session;
//! - `u:<user id>` and `sid:<sid>`: sets of session ids (sign-out everywhere, provider logout);
//! - `jti:<jti>`: a back-channel logout token already used;
//! - `h:<id>`: a hand-off code (single sign-on across domains) already used;
//! - channel `revoked`: the ids of revoked or rewritten sessions, for every replica's cache.
//!
//! Reads go through a local cache of opened sessions ([`CACHE_ENTRIES`] at most, each kept for
//! `cache_ttl`); a revocation removes the entry on every replica through the channel, and a
//! replica that lost its subscription empties its cache when it subscribes again. Every call
//! is bounded: connecting and each answer take at most [`TIMEOUT`]. With Sentinel a write
//! counts only once a replica has it too (`WAIT 1`), so a failover loses no session that was
//! acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError};

use super::{Meta, Ticket};
use crate::config::{RedisConfig, RedisServer};
use crate::session::Session;

mod admin;

/// Connecting, and each answer, take at most this long.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Opened sessions kept by each replica.
pub const CACHE_ENTRIES: u64 = 100_000;
/// How long a write waits for a replica's acknowledgement (Sentinel).
const REPLICATION_WAIT_MS: u64 = 1000;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable or answered with an error.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    /// Redis refused forwarden itself: a wrong password or ACL user, a missing permission. Not
    /// a passing fault: the settings must change.
    #[error("the session store refuses forwarden's credentials or commands: {0}")]
    Refused(String),
    /// Redis did not answer in time (the connection itself may be fine: a stalled server).
    #[error("the session store did not answer within {TIMEOUT:?}")]
    Timeout,
    /// Sentinel: no replica acknowledged the write in time.
    #[error("the session store did not replicate the session")]
    NotReplicated,
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        let refused = e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"));
        if e.is_timeout() {
            StoreError::Timeout
        } else if refused {
            StoreError::Refused(e.to_string())
        } else {
            StoreError::Unavailable(e.to_string())
        }
    }
}

/// After a failed connection attempt, the next one waits this long (callers wait within their
/// own deadline) instead of each connecting again in turn (a stalled or absent server must not
/// queue every check behind one reconnect after another).
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Revocations that could not be written are retried in the background, at most this many at
/// once (each for at most [`RETRY_FOR`]); past that they are logged as lost.
const MAX_PENDING_REVOCATIONS: usize = 1024;
/// How long a revocation is retried.
const RETRY_FOR: Duration = Duration::from_secs(3600);

/// The shared connection.
#[derive(Default)]
struct Slot {
    conn: Option<MultiplexedConnection>,
    /// Until when connecting is not tried again, after a failure.
    pause_until: Option<tokio::time::Instant>,
}

enum Backend {
    Url(Client),
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

/// A cached lookup: the session, or `None` when the store has no such session.
pub type Cached = Option<Arc<Session>>;

/// The Redis session store.
pub struct RedisStore {
    backend: Backend,
    sentinel: bool,
    conn: tokio::sync::Mutex<Slot>,
    prefix: String,
    /// Revocations being retried in the background.
    pending: std::sync::atomic::AtomicUsize,
    cache: moka::sync::Cache<[u8; 16], Cached>,
    up: AtomicBool,
    /// Why the last call failed, for `/readyz` and the sign-in page.
    last_error: arc_swap::ArcSwapOption<String>,
    metrics: crate::metrics::Metrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store that has connected to nothing yet.
    pub fn new(config: &RedisConfig, metrics: crate::metrics::Metrics) -> Result<Self, StoreError> {
        let info = |url: &str| -> Result<redis::ConnectionInfo, StoreError> {
            let mut info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url)?;
            if let Some(p) = &config.password {
                info.redis.password = Some(p.expose().to_string());
            }
            Ok(info)
        };
        let (backend, sentinel) = match &config.server {
            RedisServer::Url(url) => (Backend::Url(Client::open(info(url)?)?), false),
            RedisServer::Sentinel { master, nodes, db } => {
                let nodes: Vec<String> = nodes.iter().map(|n| format!("redis://{n}")).collect();
                let node = redis::sentinel::SentinelNodeConnectionInfo {
                    tls_mode: None,
                    redis_connection_info: Some(redis::RedisConnectionInfo {
                        db: *db,
                        password: config.password.as_ref().map(|p| p.expose().to_string()),
                        ..Default::default()
                    }),
                };
                let client = redis::sentinel::SentinelClient::build(
                    nodes,
                    master.clone(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )?;
                (Backend::Sentinel(tokio::sync::Mutex::new(client)), true)
            }
        };
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_ENTRIES)
            .time_to_live(config.cache_ttl)
            .build();
        Ok(RedisStore {
            backend,
            sentinel,
            conn: tokio::sync::Mutex::new(Slot::default()),
            prefix: config.key_prefix.clone(),
            pending: std::sync::atomic::AtomicUsize::new(0),
            cache,
            up: AtomicBool::new(false),
            last_error: arc_swap::ArcSwapOption::from_pointee("not connected yet".to_string()),
            metrics,
        })
    }

    /// Whether the last call to Redis succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why the last call to Redis failed, while it is not up.
    pub fn last_error(&self) -> Option<Arc<String>> {
        self.last_error.load_full()
    }

    fn set_up(&self, up: bool) -> bool {
        self.metrics.store_up(up);
        self.up.swap(up, Ordering::Relaxed)
    }

    async fn client(&self) -> Result<Client, StoreError> {
        match &self.backend {
            Backend::Url(c) => Ok(c.clone()),
            Backend::Sentinel(s) => {
                let mut s = s.lock().await;
                Ok(tokio::time::timeout(TIMEOUT * 2, s.async_get_client())
                    .await
                    .map_err(|_| StoreError::Unavailable("no Sentinel answered in time".into()))??)
            }
        }
    }

    async fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.conn.lock().await;
        // After a failed attempt, the next one waits for the pause (within the caller's
        // deadline) instead of every caller connecting in turn.
        while let Some(until) = slot.pause_until.filter(|t| tokio::time::Instant::now() < *t) {
            drop(slot);
            tokio::time::sleep_until(until).await;
            slot = self.conn.lock().await;
        }
        if let Some(c) = slot.conn.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT);
        let connected = async {
            let client = self.client().await?;
            Ok::<_, StoreError>(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            )
        };
        let c = match tokio::time::timeout(TIMEOUT * 2, connected).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                slot.pause_until = Some(tokio::time::Instant::now() + RECONNECT_PAUSE);
                return Err(e);
            }
            Err(_) => {
                slot.pause_until = Some(tokio::time::Instant::now() + RECONNECT_PAUSE);
                return Err(StoreError::Timeout);
            }
        };
        slot.conn = Some(c.clone());
        slot.pause_until = None;
        Ok(c)
    }

    /// A call with its deadline: whatever it waits for (the connection, a queue, the answer),
    /// it ends within `limit`.
    async fn bounded<T>(
        &self,
        limit: Duration,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = tokio::time::timeout(limit, call)
            .await
            .unwrap_or(Err(StoreError::Timeout));
        self.outcome(r).await
    }

    /// Note the outcome of a call. After a failure other than a slow answer the next call
    /// connects again (and, with Sentinel, asks for the current master); a timeout keeps the
    /// connection (a stalled server answers again on it, and reconnecting would only queue).
    async fn outcome<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Ok(_) => {
                self.set_up(true);
                self.last_error.store(None);
            }
            Err(e) => {
                self.last_error.store(Some(Arc::new(e.to_string())));
                if self.set_up(false) {
                    tracing::warn!(error = %e, "session store unavailable");
                }
                // A connection attempt under way holds the slot: it replaces the connection
                // anyway, and this call must not wait for it.
                if !matches!(e, StoreError::Timeout) {
                    if let Ok(mut slot) = self.conn.try_lock() {
                        slot.conn = None;
                    }
                }
            }
        }
        r
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}revoked", self.prefix)
    }

    /// The cached lookup of a session id, if this replica has one.
    pub fn cached(&self, id: &[u8; 16]) -> Option<Cached> {
        self.cache.get(id)
    }

    /// The session of a ticket: from the cache, or read from Redis and opened.
    pub async fn load(&self, t: &Ticket, now: u64) -> Result<Cached, StoreError> {
        if let Some(c) = self.cache.get(&t.id) {
            return Ok(c);
        }
        let key = self.key("s", &t.id_hex());
        let read = async {
            let mut c = self.conn().await?;
            let v: [Option<String>; 6] = redis::cmd("HMGET")
                .arg(&key)
                .arg(&["r", "u", "e", "i", "x", "d"])
                .query_async(&mut c)
                .await?;
            Ok::<_, StoreError>(v)
        };
        // The auth check waits at most this long for Redis, whatever else is waiting.
        let [record, u, e, i, x, d] = self.bounded(TIMEOUT, read).await?;
        // Only a record whose clear part is whole and names the sealed session's user is
        // admitted: what listing and revocation cannot see must not pass either.
        let meta = Meta::from_fields(&t.id_hex(), [u, e, i, x, d]);
        let found = record
            .and_then(|r| t.open_record(&r, now).ok())
            .filter(|s| meta.as_ref().is_ok_and(|m| m.subject == s.identity.subject))
            .map(Arc::new);
        self.cache.insert(t.id, found.clone());
        Ok(found)
    }

    /// Write a session (new, or refreshed under the same ticket). Other replicas drop their
    /// cached copy.
    pub async fn save(&self, t: &Ticket, s: &Session, now: u64, nonce: [u8; 12]) -> Result<(), StoreError> {
        let meta = Meta::of(t, s);
        let key = self.key("s", &meta.id);
        let user = self.key("u", &meta.subject);
        let ttl = s.expires_at.saturating_sub(now).max(1);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("r", t.seal_record(s, nonce)),
                    ("u", meta.subject.clone()),
                    ("e", meta.email.clone()),
                    ("i", meta.issued_at.to_string()),
                    ("x", meta.expires_at.to_string()),
                    ("d", meta.sid.clone()),
                ],
            )
            .ignore()
            .expire_at(&key, s.expires_at as i64)
            .ignore()
            .sadd(&user, &meta.id)
            .ignore()
            .expire(&user, ttl as i64)
            .ignore();
        if !meta.sid.is_empty() {
            let sid = self.key("sid", &meta.sid);
            pipe.sadd(&sid, &meta.id)
                .ignore()
                .expire(&sid, ttl as i64)
                .ignore();
        }
        pipe.publish(self.channel(), &meta.id).ignore();
        let sentinel = self.sentinel;
        let write = async {
            let mut c = self.conn().await?;
            let () = pipe.query_async(&mut c).await?;
            if sentinel {
                let acked: i64 = redis::cmd("WAIT")
                    .arg(1)
                    .arg(REPLICATION_WAIT_MS)
                    .query_async(&mut c)
                    .await?;
                if acked < 1 {
                    return Err(StoreError::NotReplicated);
                }
            }
            Ok(())
        };
        let limit = TIMEOUT * 2 + Duration::from_millis(REPLICATION_WAIT_MS);
        self.bounded(limit, write).await?;
        self.cache.insert(t.id, Some(Arc::new(s.clone())));
        Ok(())
    }

    /// Delete sessions by id (hex); every replica drops them. Returns how many existed.
    pub async fn revoke(&self, ids: &[String]) -> Result<usize, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key("s", id)).collect();
        let delete = async {
            let mut c = self.conn().await?;
            let (n,): (usize,) = redis::pipe()
                .del(&keys)
                .publish(self.channel(), ids.join(" "))
                .ignore()
                .query_async(&mut c)
                .await?;
            Ok(n)
        };
        let n = self.bounded(TIMEOUT * 2, delete).await?;
        self.forget(ids.iter().map(String::as_str));
        Ok(n)
    }

    /// Revoke a session now, or, when the store cannot take it, keep retrying in the
    /// background (every replica drops it from its cache at once either way). `Ok(true)`: it is
    /// revoked; `Ok(false)`: it is pending; `Err`: too many are pending, and it is not retried.
    pub async fn revoke_or_retry(self: &Arc<Self>, id: String) -> Result<bool, StoreError> {
        self.forget(std::iter::once(id.as_str()));
        let first = match self.revoke(std::slice::from_ref(&id)).await {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_REVOCATIONS {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(session = %id, error = %first, "revocation not written and not retried: too many pending");
            return Err(first);
        }
        tracing::warn!(session = %id, error = %first, "revocation not written yet; retrying in the background");
        let store = self.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut pause = Duration::from_secs(1);
            loop {
                tokio::time::sleep(pause).await;
                match store.revoke(std::slice::from_ref(&id)).await {
                    Ok(_) => {
                        tracing::info!(session = %id, "pending revocation written");
                        break;
                    }
                    Err(e) if started.elapsed() > RETRY_FOR => {
                        tracing::error!(session = %id, error = %e, "pending revocation given up");
                        break;
                    }
                    Err(_) => pause = (pause * 2).min(Duration::from_secs(30)),
                }
            }
            store.pending.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(false)
    }

    /// Delete every session of a user (by user id).
    pub async fn revoke_user(&self, subject: &str) -> Result<usize, StoreError> {
        self.revoke_set(&self.key("u", subject)).await
    }

    /// Delete every session the identity provider's session `sid` signed in.
    pub async fn revoke_sid(&self, sid: &str) -> Result<usize, StoreError> {
        self.revoke_set(&self.key("sid", sid)).await
    }

    async fn revoke_set(&self, set: &str) -> Result<usize, StoreError> {
        let members = async {
            let mut c = self.conn().await?;
            Ok::<Vec<String>, StoreError>(c.smembers(set).await?)
        };
        let ids = self.bounded(TIMEOUT * 2, members).await?;
        let n = self.revoke(&ids).await?;
        let delete = async {
            let mut c = self.conn().await?;
            let () = c.del(set).await?;
            Ok(())
        };
        self.bounded(TIMEOUT * 2, delete).await?;
        Ok(n)
    }

    /// Whether a logout token's `jti` is seen for the first time (it is remembered for `ttl`).
    pub async fn first_use(&self, jti: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.once("jti", jti, ttl).await
    }

    /// Whether a hand-off code (`crate::handoff`) is used for the first time (remembered for
    /// `ttl_secs`, its validity).
    pub async fn claim_once(&self, id: &[u8; 16], ttl_secs: u64) -> Result<bool, StoreError> {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        self.once("h", &hex, Duration::from_secs(ttl_secs)).await
    }

    /// `SET NX EX`: whether `kind:name` was not there yet.
    async fn once(&self, kind: &str, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(kind, name);
        let set = async {
            let mut c = self.conn().await?;
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(ttl.as_secs().max(1))
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        };
        self.bounded(TIMEOUT * 2, set).await
    }

    fn forget<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        for id in ids {
            if let Some(bytes) = unhex(id) {
                self.cache.invalidate(&bytes);
            }
        }
    }

    /// Keep this replica's cache in step with every replica's writes and revocations, until
    /// `stop` changes: subscribe, drop what each message names, and after a lost subscription
    /// empty the cache (messages may have been missed) and subscribe again.
    pub async fn follow(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let subscribed = async {
                let mut ps = self.client().await?.get_async_pubsub().await?;
                ps.subscribe(self.channel()).await?;
                Ok::<_, StoreError>(ps)
            };
            let ps = tokio::select! {
                r = tokio::time::timeout(TIMEOUT * 3, subscribed) => r,
                _ = stop.changed() => return,
            };
            match ps {
                Ok(Ok(mut ps)) => {
                    // Anything cached before (or during a gap) may have been revoked meanwhile.
                    self.cache.invalidate_all();
                    self.set_up(true);
                    let mut messages = ps.on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(m) => {
                                    let ids: String = m.get_payload().unwrap_or_default();
                                    self.forget(ids.split(' '));
                                }
                                None => break,
                            },
                            _ = stop.changed() => return,
                        }
                    }
                    tracing::warn!("session store subscription lost; reconnecting");
                    self.set_up(false);
                    self.conn.lock().await.conn = None;
                }
                Ok(Err(e)) => {
                    self.last_error.store(Some(Arc::new(e.to_string())));
                    if self.set_up(false) {
                        tracing::warn!(error = %e, "session store unavailable");
                    }
                }
                Err(_) => {
                    self.last_error.store(Some(Arc::new(
                        "the session store did not answer the subscription in time".into(),
                    )));
                    self.set_up(false);
                }
            }
            // Cached sessions may pass for their cache_ttl while Redis is away; the cache is
            // emptied when the subscription is back.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// Hex to 16 bytes.
fn unhex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
