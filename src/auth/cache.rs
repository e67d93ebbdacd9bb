//! Sessions and role permissions kept in memory, so that a request with a bearer token — and
//! a permission-gated extension route — costs no database round trip.
//!
//! Correctness first: an entry is only believed while nothing that could change it has
//! happened since it was read.
//! - Every change (logging out, revoking sessions, a password change, disabling an account,
//!   granting or revoking a permission) bumps a process-wide epoch after it commits, so this
//!   process stops believing every earlier entry at once, and sends `pg_notify` on
//!   [`CHANNEL`] in its own statement or transaction, so every other instance (and a running
//!   server, when the command line made the change) does the same when it is told.
//! - An entry records the epoch and the instance's notification count from *before* its
//!   read: a change that commits while the read runs makes it stale at once.
//! - While the instance is not listening (at start, or after the listening connection
//!   failed) nothing is believed: every request reads the database, as without a cache.
//! - No entry is older than [`MAX_AGE`] (for changes made by hand in SQL, which notify
//!   nobody), nor outlives its session's expiry.
//!
//! Unknown tokens are not remembered: guessing costs a read each, as it always did, and
//! cannot fill the memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use time::OffsetDateTime;

use super::User;

/// The notification channel of changes to sessions, accounts and role permissions.
pub(crate) const CHANNEL: &str = "solobase_auth";

/// The longest an entry is believed.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// The most entries of each kind; a full map is emptied.
const MAX_ENTRIES: usize = 10_000;

/// Bumped after every change this process commits.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// What an entry was read under: (process epoch, notifications received).
type Stamp = (u64, u64);

/// A value, what it was read under, and when.
type Entry<T> = (T, Stamp, Instant);

/// A session: its user and when it expires.
type Session = (User, OffsetDateTime);

/// One instance's cache (see the module's documentation).
#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    /// Whether changes are being listened for (else nothing is believed).
    pub(crate) listening: AtomicBool,
    /// Lookups answered from memory and from the database: sessions, permissions.
    pub(crate) hits: [AtomicU64; 2],
    pub(crate) misses: [AtomicU64; 2],
    notified: AtomicU64,
    /// By token hash: the user, the session's expiry.
    sessions: Mutex<HashMap<Vec<u8>, Entry<Session>>>,
    /// By role: the permissions it holds.
    permissions: Mutex<HashMap<String, Entry<Arc<[String]>>>>,
}

/// After a change to sessions, accounts or permissions committed: this process believes no
/// earlier entry. (Other instances learn of it from the change's `pg_notify`, see
/// [`notify`].)
pub(crate) fn changed() {
    EPOCH.fetch_add(1, Ordering::SeqCst);
}

/// Tells every instance, when `client`'s transaction commits, that sessions, accounts or
/// permissions changed.
pub(crate) async fn notify(
    client: &impl tokio_postgres::GenericClient,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
        .await
        .map(drop)
}

/// Keeps `entry` under `key`; a full map is emptied first.
fn remember<K: std::hash::Hash + Eq, V>(
    map: &Mutex<HashMap<K, Entry<V>>>,
    key: K,
    entry: Entry<V>,
) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, entry);
}

/// The entry's value while it may be believed.
fn fresh<T>(entry: Option<&Entry<T>>, now: Stamp) -> Option<&T> {
    entry
        .filter(|(_, stamp, read)| *stamp == now && read.elapsed() < MAX_AGE)
        .map(|(value, ..)| value)
}

impl AuthCache {
    /// The stamp a read started now gets; `None` while nothing may be believed.
    fn stamp(&self) -> Option<Stamp> {
        self.listening.load(Ordering::SeqCst).then(|| {
            (
                EPOCH.load(Ordering::SeqCst),
                self.notified.load(Ordering::SeqCst),
            )
        })
    }

    /// The live session of `token`'s user, as [`super::users::session_for_token`] gives it.
    pub(crate) async fn user_for_token(
        &self,
        pool: &Pool,
        token: &str,
    ) -> Result<Option<User>, crate::error::ApiError> {
        let hash = super::token::token_hash(token);
        let (stamp, read_at) = (self.stamp(), Instant::now());
        if let Some(stamp) = stamp {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((user, expires)) = fresh(sessions.get(&hash), stamp)
                && *expires > OffsetDateTime::now_utc()
            {
                self.hits[0].fetch_add(1, Ordering::Relaxed);
                return Ok(Some(user.clone()));
            }
        }
        self.misses[0].fetch_add(1, Ordering::Relaxed);
        let found = super::users::session_for_token(pool, &hash).await?;
        if let (Some(stamp), Some((user, expires))) = (stamp, &found) {
            remember(
                &self.sessions,
                hash,
                ((user.clone(), *expires), stamp, read_at),
            );
        }
        Ok(found.map(|(user, _)| user))
    }

    /// The permissions `role` holds, as [`super::permissions::held`] gives them.
    pub(crate) async fn held(&self, pool: &Pool, role: &str) -> anyhow::Result<Arc<[String]>> {
        let (stamp, read_at) = (self.stamp(), Instant::now());
        if let Some(stamp) = stamp {
            let permissions = self.permissions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(held) = fresh(permissions.get(role), stamp) {
                self.hits[1].fetch_add(1, Ordering::Relaxed);
                return Ok(held.clone());
            }
        }
        self.misses[1].fetch_add(1, Ordering::Relaxed);
        let held: Arc<[String]> = super::permissions::held(pool, role).await?.into();
        if let Some(stamp) = stamp {
            remember(
                &self.permissions,
                role.to_owned(),
                (held.clone(), stamp, read_at),
            );
        }
        Ok(held)
    }

    /// Something changed elsewhere (or may have, while not listening): no entry read before
    /// is believed.
    fn forget_all(&self) {
        self.notified.fetch_add(1, Ordering::SeqCst);
    }

    /// Listens on [`CHANNEL`] with a connection of its own until `stop` changes or the cache
    /// is dropped; entries are believed only while it listens.
    pub(crate) fn spawn_listener(
        self: &Arc<Self>,
        pg_config: tokio_postgres::Config,
        tls: crate::db::tls::DbTls,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let cache: Weak<Self> = Arc::downgrade(self);
        let stopped = cache.clone();
        tokio::spawn(async move {
            listen_until_stopped(&cache, &pg_config, &tls, &mut stop).await;
            // No longer told of changes: nothing more is believed.
            if let Some(cache) = stopped.upgrade() {
                cache.listening.store(false, Ordering::SeqCst);
            }
        });
    }
}

/// The listening loop of [`AuthCache::spawn_listener`]; returns when `stop` changes or the
/// cache is dropped.
async fn listen_until_stopped(
    cache: &Weak<AuthCache>,
    pg_config: &tokio_postgres::Config,
    tls: &crate::db::tls::DbTls,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let listener = tokio::select! {
            l = crate::db::listen::listen(pg_config, tls, CHANNEL) => l,
            _ = stop.changed() => return,
        };
        match listener {
            Ok(mut listener) => {
                {
                    let Some(cache) = cache.upgrade() else { return };
                    // Whatever was read while not listening is not believed.
                    cache.forget_all();
                    cache.listening.store(true, Ordering::SeqCst);
                }
                loop {
                    let next = tokio::select! {
                        n = listener.next() => n,
                        _ = stop.changed() => return,
                    };
                    let Some(cache) = cache.upgrade() else { return };
                    if next.is_none() {
                        cache.listening.store(false, Ordering::SeqCst);
                        cache.forget_all();
                        tracing::warn!(
                            "the connection listening for session and permission changes closed; reconnecting (until then every request reads the database)"
                        );
                        break;
                    }
                    listener.drain();
                    cache.forget_all();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for session and permission changes; every request reads the database until it can");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
