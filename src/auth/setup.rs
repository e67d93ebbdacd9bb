//! The first run: while no administrator exists, every start issues a one-time setup link
//! ([`issue`]) — a random token, valid for [`LINK_TTL`], printed in the log as
//! `<dashboard>#/setup/<token>` — and the dashboard's setup page creates the first
//! administrator with it ([`complete`]), once. Only the token's SHA-256 is stored. Once an
//! administrator exists, by this page, `SOLOBASE_ADMIN_EMAIL`/`_PASSWORD` or
//! `solobase users create --admin`, no link is issued and every outstanding one is refused.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::token;
use super::users::{self, CreateUserError, User};
use super::{Email, Role};
use crate::events::Event;

/// How long a setup link works.
pub const LINK_TTL: Duration = Duration::from_secs(30 * 60);

/// Why a setup was refused.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "this setup link is not valid: it was used already, or it is older than 30 minutes. \
         Restart Solobase to print a new one, or create an administrator with \
         `solobase users create --admin`"
    )]
    InvalidLink,
    #[error("an administrator exists already: log in on the dashboard instead")]
    AdminExists,
    #[error(transparent)]
    Create(#[from] CreateUserError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Whether an administrator exists (disabled or not), seen through `client`.
async fn admin_exists(
    client: &impl tokio_postgres::GenericClient,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM solobase.users WHERE role = 'admin')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// A new setup token while no administrator exists (earlier, expired ones are deleted), or
/// `None` — after deleting every outstanding token — when one does.
pub async fn issue(pool: &Pool) -> Result<Option<String>, SetupError> {
    let client = pool.get().await?;
    if admin_exists(&**client).await? {
        client
            .execute("DELETE FROM solobase.setup_links", &[])
            .await?;
        return Ok(None);
    }
    let token = token::random_token();
    client
        .execute(
            "WITH gone AS (DELETE FROM solobase.setup_links WHERE expires_at <= now()) \
             INSERT INTO solobase.setup_links (token_hash, expires_at) \
             VALUES ($1, now() + make_interval(secs => $2))",
            &[&token::token_hash(&token), &(LINK_TTL.as_secs() as f64)],
        )
        .await?;
    Ok(Some(token))
}

/// Whether `token` is a setup link that works now (checked before the password is hashed,
/// so that nobody without a link costs the server a hash).
pub async fn is_valid(pool: &Pool, token: &str) -> Result<bool, SetupError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM solobase.setup_links \
             WHERE token_hash = $1 AND expires_at > now())",
            &[&token::token_hash(token)],
        )
        .await?;
    Ok(row.get(0))
}

/// Uses `token` to create the first administrator with an already hashed password: in one
/// transaction that consumes the token, checks that no administrator exists, creates the
/// account and deletes every other setup link. Setups are serialised (a table lock), so two
/// links used at once cannot make two administrators.
pub async fn complete(
    pool: &Pool,
    token: &str,
    email: &Email,
    hash: &str,
) -> Result<(User, Event), SetupError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE solobase.setup_links IN EXCLUSIVE MODE")
        .await?;
    let used = tx
        .execute(
            "DELETE FROM solobase.setup_links WHERE token_hash = $1 AND expires_at > now()",
            &[&token::token_hash(token)],
        )
        .await?;
    if used == 0 {
        return Err(SetupError::InvalidLink);
    }
    if admin_exists(&*tx).await? {
        tx.execute("DELETE FROM solobase.setup_links", &[]).await?;
        tx.commit().await?;
        return Err(SetupError::AdminExists);
    }
    let created = users::insert(&tx, email, hash, Role::Admin).await?;
    tx.execute("DELETE FROM solobase.setup_links", &[]).await?;
    tx.commit().await?;
    Ok(created)
}
