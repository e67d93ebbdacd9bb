//! The `solobase.users` and `solobase.sessions` tables: accounts, logging in, and the token
//! lookup every authenticated request makes. Ending sessions and disabling accounts are in
//! [`super::sessions`].

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Email, Password, Role, password, token};
use crate::events::{self, Event, EventType};

/// An account as the API shows it (never with its password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub(crate) id: Uuid,
    pub(crate) email: String,
    /// `admin` or `user`.
    #[schema(value_type = String, example = "user")]
    pub(crate) role: Role,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    /// When an administrator disabled the account; `null` while it is enabled. A disabled
    /// account cannot log in and has no live tokens.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub(crate) disabled_at: Option<OffsetDateTime>,
}

/// The columns [`User::from_row`] reads, for `SELECT`s and `RETURNING`s.
pub(crate) const USER_COLUMNS: &str = "id, email, role, created_at, disabled_at";

impl User {
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> Self {
        let role: String = row.get("role");
        Self {
            id: row.get("id"),
            email: row.get("email"),
            role: Role::parse(&role).unwrap_or(Role::User),
            created_at: row.get("created_at"),
            disabled_at: row.get("disabled_at"),
        }
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }

    /// The account as extensions see it.
    pub(crate) fn into_info(self) -> solobase_sdk::UserInfo {
        solobase_sdk::UserInfo {
            id: self.id,
            email: self.email,
            role: self.role,
            created_at: self.created_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user with the email {0} already exists")]
    EmailTaken(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Creates an account and records `user.created` in the same transaction. Returns the user
/// and the event to publish once the caller knows the transaction committed (it is committed
/// here). Hashes on a blocking thread without a hashing slot: for the command line and
/// start-up; the API hashes in a slot and calls [`create_with_hash`].
pub async fn create(
    pool: &deadpool_postgres::Pool,
    email: &Email,
    password: &Password,
    role: Role,
) -> Result<(User, Event), CreateUserError> {
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| CreateUserError::Hash(e.to_string()))?
        .map_err(|e| CreateUserError::Hash(e.to_string()))?;
    create_with_hash(pool, email, &hash, role).await
}

/// [`create`] with the password already hashed.
pub async fn create_with_hash(
    pool: &deadpool_postgres::Pool,
    email: &Email,
    hash: &str,
    role: Role,
) -> Result<(User, Event), CreateUserError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let created = insert(&tx, email, hash, role).await?;
    tx.commit().await?;
    Ok(created)
}

/// Inserts the account and records `user.created` in `tx` (which the caller commits).
pub(crate) async fn insert(
    tx: &deadpool_postgres::Transaction<'_>,
    email: &Email,
    hash: &str,
    role: Role,
) -> Result<(User, Event), CreateUserError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO solobase.users (email, password_hash, role) VALUES ($1, $2, $3) \
                 RETURNING {USER_COLUMNS}"
            ),
            &[&email.as_str(), &hash, &role.as_str()],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                CreateUserError::EmailTaken(email.to_string())
            } else {
                CreateUserError::Db(e)
            }
        })?;
    let user = User::from_row(&row);
    let event = Event::new(
        EventType::USER_CREATED,
        serde_json::json!({"user_id": user.id, "email": user.email, "role": user.role}),
    );
    events::record(tx, &event).await?;
    Ok((user, event))
}

/// The user whose email and password match (disabled or not: the caller decides), with the
/// hash the password was verified against (for [`open_session`]), or `None`. Verifies in
/// `slot`, and takes as long for an unknown email as for a wrong password.
pub(crate) async fn authenticate(
    pool: &deadpool_postgres::Pool,
    slot: super::throttle::Slot,
    email: &str,
    candidate: &str,
) -> Result<Option<(User, String)>, crate::error::ApiError> {
    let row = password_row(pool, email).await?;
    let stored: Option<String> = row.as_ref().map(|r| r.get("password_hash"));
    let candidate = candidate.to_owned();
    let checked = stored.clone();
    let matches = slot
        .run(move || {
            let checked = checked.as_deref().unwrap_or_else(|| password::dummy_hash());
            password::verify(&candidate, checked)
        })
        .await
        .map_err(crate::error::ApiError::internal)?;
    Ok(row
        .filter(|_| matches)
        .zip(stored)
        .map(|(r, hash)| (User::from_row(&r), hash)))
}

/// The account of `email` with its password hash.
pub(crate) async fn password_row(
    pool: &deadpool_postgres::Pool,
    email: &str,
) -> Result<Option<tokio_postgres::Row>, crate::error::ApiError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            &format!(
                "SELECT {USER_COLUMNS}, password_hash FROM solobase.users \
                 WHERE lower(email) = lower($1)"
            ),
            &[&email.trim()],
        )
        .await?)
}

/// Opens a session and records `user.login`: returns the token (shown to the client once),
/// its expiry, and the committed event to publish. With `verified`, the password hash the
/// login checked: when the account's hash is no longer that one (a password change committed
/// meanwhile, which ended "every other session"), no session is opened (401). The account's
/// row is held until the session commits, so a change racing it waits and then ends it.
pub(crate) async fn open_session(
    pool: &deadpool_postgres::Pool,
    user: &User,
    ttl: std::time::Duration,
    verified: Option<&str>,
) -> Result<(String, OffsetDateTime, Event), crate::error::ApiError> {
    let token = token::random_token();
    let expires_at = OffsetDateTime::now_utc() + ttl;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if let Some(verified) = verified {
        let current = tx
            .query_opt(
                "SELECT password_hash FROM solobase.users WHERE id = $1 FOR SHARE",
                &[&user.id],
            )
            .await?
            .map(|r| r.get::<_, String>(0));
        if current.as_deref() != Some(verified) {
            return Err(crate::error::ApiError::new(
                crate::error::ErrorCode::InvalidCredentials,
                "wrong email or password",
            ));
        }
    }
    tx.execute(
        "INSERT INTO solobase.sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        &[&token::token_hash(&token), &user.id, &expires_at],
    )
    .await?;
    let event = Event::new(
        EventType::USER_LOGIN,
        serde_json::json!({"user_id": user.id, "email": user.email}),
    );
    events::record(&tx, &event).await?;
    tx.commit().await?;
    Ok((token, expires_at, event))
}

/// The live session of the token whose hash is `token_hash` (see [`token::token_hash`]): its
/// user and when it expires. `None` when unknown, expired, revoked, or the account is
/// disabled. Requests ask through [`crate::auth::cache::AuthCache`].
pub(crate) async fn session_for_token(
    pool: &deadpool_postgres::Pool,
    token_hash: &[u8],
) -> Result<Option<(User, OffsetDateTime)>, crate::error::ApiError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT u.id, u.email, u.role, u.created_at, u.disabled_at, s.expires_at \
             FROM solobase.sessions s JOIN solobase.users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > now() AND u.disabled_at IS NULL",
        )
        .await?;
    let row = client.query_opt(&stmt, &[&token_hash]).await?;
    Ok(row.map(|r| (User::from_row(&r), r.get("expires_at"))))
}

/// The user with this id.
pub(crate) async fn by_id(
    pool: &deadpool_postgres::Pool,
    id: Uuid,
) -> Result<Option<User>, crate::error::ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM solobase.users WHERE id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.map(|r| User::from_row(&r)))
}

/// The user with this email (case-insensitive).
pub(crate) async fn by_email(
    pool: &deadpool_postgres::Pool,
    email: &str,
) -> Result<Option<User>, crate::error::ApiError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM solobase.users WHERE lower(email) = lower($1)"),
            &[&email.trim()],
        )
        .await?;
    Ok(row.map(|r| User::from_row(&r)))
}

/// Whether any admin account exists.
pub(crate) async fn admin_exists(pool: &deadpool_postgres::Pool) -> Result<bool, CreateUserError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM solobase.users WHERE role = 'admin')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Deletes expired sessions; returns how many.
pub(crate) async fn purge_expired_sessions(
    pool: &deadpool_postgres::Pool,
) -> Result<u64, crate::error::ApiError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM solobase.sessions WHERE expires_at <= now()",
            &[],
        )
        .await?)
}
