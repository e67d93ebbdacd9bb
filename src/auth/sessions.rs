//! Ending sessions: logging out (one token), revoking every token of a user, changing a
//! password (which ends the user's other sessions), and disabling or enabling an account.
//! Used by the HTTP API and the command line alike.
//!
//! Revoking deletes the token's row from `solobase.sessions`, and a disabled account's tokens
//! are refused by the lookup itself (`users::session_for_token`); each change notifies every
//! instance's session cache ([`super::cache`]), so it takes effect at the next request, on
//! every instance. Each change that an audit entry describes commits with
//! it, in one transaction.

use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

use super::throttle::Slot;
use super::users::{USER_COLUMNS, User};
use super::{Password, cache, password, token};
use crate::audit::{self, Entry};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no such user")]
    NoSuchUser,
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("cannot write the audit log: {0}")]
    Audit(anyhow::Error),
}

/// Ends the session of `token`; whether there was one.
pub async fn revoke_token(pool: &Pool, token: &str) -> Result<bool, SessionError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM solobase.sessions WHERE token_hash = $1",
            &[&token::token_hash(token)],
        )
        .await?;
    cache::notify(&*tx).await?;
    tx.commit().await?;
    cache::changed();
    Ok(deleted > 0)
}

/// Ends every session of user `id`, recording `entry` (its detail gains `revoked`, the
/// number of sessions ended) with the change; how many were ended.
pub async fn revoke_all(pool: &Pool, id: Uuid, entry: Entry) -> Result<u64, SessionError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let exists = tx
        .query_opt("SELECT 1 FROM solobase.users WHERE id = $1", &[&id])
        .await?;
    if exists.is_none() {
        return Err(SessionError::NoSuchUser);
    }
    let revoked = tx
        .execute("DELETE FROM solobase.sessions WHERE user_id = $1", &[&id])
        .await?;
    let entry = with_detail(entry, id, revoked);
    audit::record_in(&*tx, &entry)
        .await
        .map_err(SessionError::Audit)?;
    cache::notify(&*tx).await?;
    tx.commit().await?;
    cache::changed();
    Ok(revoked)
}

/// Changes `user`'s password after checking `current` (both hashes in `slot`), and ends every
/// session of theirs but `keep` (the caller's own token, when there is one); records `entry`
/// with the change. How many sessions were ended.
pub async fn change_password(
    pool: &Pool,
    slot: Slot,
    user: &User,
    current: Option<&str>,
    new: &Password,
    keep: Option<&str>,
    entry: Entry,
) -> Result<u64, SessionError> {
    let stored: String = {
        let client = pool.get().await?;
        client
            .query_opt(
                "SELECT password_hash FROM solobase.users WHERE id = $1",
                &[&user.id],
            )
            .await?
            .ok_or(SessionError::NoSuchUser)?
            .get(0)
    };
    let current = current.map(str::to_owned);
    let new = new.clone();
    let hash = slot
        .run(move || {
            if let Some(current) = current
                && !password::verify(&current, &stored)
            {
                return Err(SessionError::WrongPassword);
            }
            password::hash(&new).map_err(|e| SessionError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| SessionError::Hash(e.to_string()))??;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE solobase.users SET password_hash = $2, updated_at = now() WHERE id = $1",
        &[&user.id, &hash],
    )
    .await?;
    let keep = keep.map(token::token_hash);
    let revoked = tx
        .execute(
            "DELETE FROM solobase.sessions WHERE user_id = $1 \
             AND ($2::bytea IS NULL OR token_hash <> $2)",
            &[&user.id, &keep],
        )
        .await?;
    audit::record_in(&*tx, &with_detail(entry, user.id, revoked))
        .await
        .map_err(SessionError::Audit)?;
    cache::notify(&*tx).await?;
    tx.commit().await?;
    cache::changed();
    Ok(revoked)
}

/// Disables (ending every session) or enables user `id`, recording `entry` with the change.
/// The user as it is now, and how many sessions were ended.
pub async fn set_disabled(
    pool: &Pool,
    id: Uuid,
    disabled: bool,
    entry: Entry,
) -> Result<(User, u64), SessionError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE solobase.users SET updated_at = now(), disabled_at = \
                 CASE WHEN $2 THEN coalesce(disabled_at, now()) END \
                 WHERE id = $1 RETURNING {USER_COLUMNS}"
            ),
            &[&id, &disabled],
        )
        .await?
        .ok_or(SessionError::NoSuchUser)?;
    let revoked = if disabled {
        tx.execute("DELETE FROM solobase.sessions WHERE user_id = $1", &[&id])
            .await?
    } else {
        0
    };
    audit::record_in(&*tx, &with_detail(entry, id, revoked))
        .await
        .map_err(SessionError::Audit)?;
    cache::notify(&*tx).await?;
    tx.commit().await?;
    cache::changed();
    Ok((User::from_row(&row), revoked))
}

/// An account as an administrator lists it: the user and its live sessions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    #[serde(flatten)]
    pub user: User,
    /// Tokens not expired and not revoked.
    pub live_sessions: i64,
}

/// The largest page of [`list`].
pub const MAX_PAGE: i64 = 500;

/// Accounts in e-mail order, after `after` (an e-mail) when given, at most `limit`.
pub async fn list(
    pool: &Pool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Account>, SessionError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT u.id, u.email, u.role, u.created_at, u.disabled_at, \
                    (SELECT count(*) FROM solobase.sessions s \
                     WHERE s.user_id = u.id AND s.expires_at > now()) AS live_sessions \
             FROM solobase.users u \
             WHERE ($1::text IS NULL OR lower(u.email) > lower($1)) \
             ORDER BY lower(u.email) LIMIT $2",
            &[&after, &limit.clamp(1, MAX_PAGE)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Account {
            user: User::from_row(r),
            live_sessions: r.get("live_sessions"),
        })
        .collect())
}

/// `entry` with the user and the number of sessions ended added to its detail.
fn with_detail(mut entry: Entry, id: Uuid, revoked: u64) -> Entry {
    if let Some(detail) = entry.detail.as_object_mut() {
        detail.insert("user_id".into(), id.to_string().into());
        detail.insert("revoked_sessions".into(), revoked.into());
    }
    entry
}
