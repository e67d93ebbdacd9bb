//! The host's mutual exclusion between instances and commands: row locks in
//! `solobase.locks`, a table only Solobase's own login can read.
//!
//! PostgreSQL's advisory locks share one key space with every role of the database, so an
//! extension's role could take the host's key and hold it for ever, freezing every start and
//! every command. A row lock in a table of the host's schema cannot be named by a role without
//! `USAGE` on that schema — that is, by no extension. Each wait is bounded: past its limit the
//! error names the session holding the lock (process id, user, application, since when) and
//! how to end it.
//!
//! Two forms: [`hold`] keeps a lock on a connection of its own while other work runs on
//! other connections (migrations, which refinery runs in transactions of its own), and
//! [`within`] takes one inside the caller's transaction, released when it ends.

use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

/// How long a host wait for a lock lasts before it gives up, naming the holder.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "waited {waited:?} for the lock {name:?}, held by {holder}; wait for it to finish, or end \
         that session (SELECT pg_terminate_backend(<pid>)) if it is stuck"
    )]
    Timeout {
        name: String,
        waited: Duration,
        holder: String,
    },
    #[error("cannot get a database connection to take the lock {name:?}: {source}")]
    Pool {
        name: String,
        source: deadpool_postgres::PoolError,
    },
    #[error("database error while taking the lock {name:?}: {source}")]
    Db {
        name: String,
        source: tokio_postgres::Error,
    },
}

/// Creates the lock table (and the host schema) when missing. Instances starting together on
/// a new database may race to create them: the loser finds them made.
pub(crate) async fn bootstrap(pool: &Pool) -> Result<(), LockError> {
    let name = "solobase.locks";
    let client = pool.get().await.map_err(|source| LockError::Pool {
        name: name.into(),
        source,
    })?;
    let exists: bool = client
        .query_one("SELECT to_regclass('solobase.locks') IS NOT NULL", &[])
        .await
        .map_err(|source| LockError::Db {
            name: name.into(),
            source,
        })?
        .get(0);
    if exists {
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        let made = client
            .batch_execute(
                "CREATE SCHEMA IF NOT EXISTS solobase; \
                 CREATE TABLE IF NOT EXISTS solobase.locks (name text PRIMARY KEY); \
                 REVOKE ALL ON solobase.locks FROM PUBLIC",
            )
            .await;
        match made {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 && lost_race(&e) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(source) => {
                return Err(LockError::Db {
                    name: name.into(),
                    source,
                });
            }
        }
    }
}

/// Whether creating the lock table failed only because another instance did the same at the
/// same moment: a duplicate, or two `REVOKE`s on the new table at once, which PostgreSQL
/// reports as an internal error ("tuple concurrently updated").
fn lost_race(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_OBJECT => true,
        Some(c) if *c == SqlState::INTERNAL_ERROR => e
            .as_db_error()
            .is_some_and(|d| d.message().contains("concurrently")),
        _ => false,
    }
}

/// A lock held by a connection of its own, in an open transaction; released by
/// [`Held::release`], or when dropped (the connection is then closed, never pooled).
#[derive(Debug)]
pub struct Held {
    client: Option<Object>,
}

impl Held {
    /// Ends the transaction holding the lock and returns the connection to the pool.
    pub async fn release(mut self) {
        if let Some(client) = self.client.take()
            && client.batch_execute("ROLLBACK").await.is_err()
        {
            let _ = Object::take(client);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Still in the transaction that holds the lock: closing the connection releases it.
        if let Some(client) = self.client.take() {
            let _ = Object::take(client);
        }
    }
}

/// Takes the lock `name` on a connection of its own and keeps it until released, waiting at
/// most `wait` for another holder.
pub(crate) async fn hold(pool: &Pool, name: &str, wait: Duration) -> Result<Held, LockError> {
    let client = pool.get().await.map_err(|source| LockError::Pool {
        name: name.into(),
        source,
    })?;
    let db = |source| LockError::Db {
        name: name.into(),
        source,
    };
    // Committed at once, so that a waiter can name the holder from the row (see `holder`).
    client
        .execute(
            "INSERT INTO solobase.locks (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await
        .map_err(db)?;
    client.batch_execute("BEGIN").await.map_err(db)?;
    let mut held = Held {
        client: Some(client),
    };
    let client: &tokio_postgres::Client = held.client.as_ref().expect("just set");
    match take(client, name, wait).await {
        Ok(()) => Ok(held),
        Err(e) => {
            // The transaction is aborted: end it before the connection goes back.
            if let Some(client) = held.client.take()
                && client.batch_execute("ROLLBACK").await.is_err()
            {
                let _ = Object::take(client);
            }
            Err(e)
        }
    }
}

/// Takes the lock `name` inside the caller's transaction `tx` (released when it ends), waiting
/// at most `wait`. On a time-out the transaction is aborted.
pub(crate) async fn within(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    wait: Duration,
) -> Result<(), LockError> {
    take(tx, name, wait).await
}

async fn take(client: &impl GenericClient, name: &str, wait: Duration) -> Result<(), LockError> {
    let db = |source| LockError::Db {
        name: name.into(),
        source,
    };
    client
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            wait.as_millis().max(1)
        ))
        .await
        .map_err(db)?;
    // FOR UPDATE waits on the row's holder, so the row must exist: a new name is inserted by
    // whoever comes first (the others wait on the unique index, then find it).
    client
        .execute(
            "INSERT INTO solobase.locks (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await
        .map_err(|e| timeout_or(e, name, wait))?;
    let taken = client
        .query_one(
            "SELECT name FROM solobase.locks WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await;
    match taken {
        Ok(_) => client
            .batch_execute("SET LOCAL lock_timeout = DEFAULT")
            .await
            .map_err(db),
        Err(e) => Err(timeout_or(e, name, wait)),
    }
}

fn timeout_or(e: tokio_postgres::Error, name: &str, wait: Duration) -> LockError {
    if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
        LockError::Timeout {
            name: name.into(),
            waited: wait,
            holder: String::new(),
        }
    } else {
        LockError::Db {
            name: name.into(),
            source: e,
        }
    }
}

/// Completes a [`LockError::Timeout`] with who holds the lock now (read on a connection of
/// its own: the waiting transaction is aborted).
pub(crate) async fn explain(pool: &Pool, error: LockError) -> LockError {
    let LockError::Timeout { name, waited, .. } = error else {
        return error;
    };
    let holder = match holder(pool, &name).await {
        Ok(Some(h)) => h,
        Ok(None) => "a session that has since let it go".into(),
        Err(e) => format!("a session that could not be looked up ({e})"),
    };
    LockError::Timeout {
        name,
        waited,
        holder,
    }
}

/// Who holds the row lock `name`: the transaction in the row's `xmax`, and its session.
async fn holder(pool: &Pool, name: &str) -> anyhow::Result<Option<String>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT a.pid, a.usename::text, a.application_name, \
                    coalesce(host(a.client_addr), 'local socket'), a.state, \
                    to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
             FROM solobase.locks k \
             JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = k.xmax \
                            AND l.mode = 'ExclusiveLock' AND l.granted \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE k.name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| {
        let pid: i32 = r.get(0);
        let user: Option<String> = r.get(1);
        let app: Option<String> = r.get(2);
        let from: String = r.get(3);
        let state: Option<String> = r.get(4);
        let since: Option<String> = r.get(5);
        format!(
            "session {pid} (user {}, application {:?}, from {from}, {} since {})",
            user.as_deref().unwrap_or("?"),
            app.unwrap_or_default(),
            state.as_deref().unwrap_or("?"),
            since.as_deref().unwrap_or("?"),
        )
    }))
}

/// [`hold`], with a time-out explained.
pub async fn hold_explained(pool: &Pool, name: &str, wait: Duration) -> Result<Held, LockError> {
    match hold(pool, name, wait).await {
        Ok(held) => Ok(held),
        Err(e) => Err(explain(pool, e).await),
    }
}
