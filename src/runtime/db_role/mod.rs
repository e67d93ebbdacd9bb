//! Each extension's PostgreSQL login role, `ext_<name>`: it owns the schema of the same name
//! and holds no privilege anywhere else, so that isolation is enforced by PostgreSQL against
//! whatever SQL the extension sends — not by convention.
//!
//! The host (its own login needs CREATEROLE, or is the embedded cluster's superuser):
//! - generates the role's password once, keeps it in `solobase.extension_roles` (readable by
//!   the host's login only), and sends PostgreSQL only its SCRAM verifier, so the password
//!   appears in no statement and no log. Any role may change its own password: on a server
//!   that checks passwords the verifier is set again at every start (compared first, when
//!   the host may read `pg_authid`); on the embedded cluster, which needs none, a password
//!   the role gave itself is removed;
//! - creates the role `LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
//!   NOBYPASSRLS`, member of no role, with its `CONNECTION LIMIT`, and as its only role
//!   defaults its `search_path`, `statement_timeout` and
//!   `idle_in_transaction_session_timeout` — forced again at every start, so a change the
//!   extension made to its own role does not last, including the defaults it may give itself
//!   in this database (`ALTER ROLE … IN DATABASE … SET`), which would take precedence. A role
//!   found escalated at start (an attribute, a membership, objects outside its schema,
//!   defaults in this database, a password of its own) is repaired, logged at error level and
//!   audited (`extension.role_repaired`);
//! - creates the schema `AUTHORIZATION ext_<name>`;
//! - takes away from PUBLIC what would let any role create objects outside its schema
//!   (temporary tables, large objects), when it has the right to ([`harden_database`]).
//!
//! All of it under a host lock (`crate::db::lock`, which no extension can take), so instances
//! starting together agree. A transaction of the role itself can hold the catalog rows the
//! host must change (a role may `ALTER ROLE` itself and not commit): the host waits
//! [`LOCK_WAIT`] for them, then ends the role's sessions that hold a transaction open and
//! tries again, so no extension can freeze a start.

use deadpool_postgres::Pool;
use solobase_sdk::ExtensionName;
use tokio_postgres::error::SqlState;

use crate::audit;
use crate::db::lock;

mod database;
mod state;

pub(crate) use database::{Purged, harden_database, purge};
use state::{Current, PasswordFix, password_fix, password_planted, read_state, wanted_settings};

/// The limits PostgreSQL enforces for one extension's role.
pub(crate) use crate::config::DbLimits as RoleLimits;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "Solobase's database login {login:?} may not create the role {role}: grant it CREATEROLE \
         (ALTER ROLE {login} CREATEROLE) and the right to create schemas (GRANT CREATE ON \
         DATABASE … TO {login}), or use the embedded database ({detail})"
    )]
    Privilege {
        login: String,
        role: String,
        detail: String,
    },
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("another instance kept preparing the same role; try again")]
    Concurrent,
    #[error(
        "the role {role} is held by a transaction of its own that Solobase could not end \
         (sessions {sessions:?}); end them with SELECT pg_terminate_backend(pid) and start again"
    )]
    Held { role: String, sessions: Vec<i32> },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(
        "database error while preparing the role {role}: {}",
        crate::db::error_text(source)
    )]
    Db {
        role: String,
        source: tokio_postgres::Error,
    },
}

/// How long provisioning waits for a catalog row the role's own transaction holds, before
/// ending the role's open transactions.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The host lock (`solobase.locks`) held while the role of `name` is prepared or dropped.
pub(super) fn lock_name(name: &ExtensionName) -> String {
    format!("role.{name}")
}

/// A fresh password: 32 random bytes as hex.
pub(super) fn generate_password() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a provisioning error comes from another database of the same PostgreSQL server
/// preparing the same role at the same moment (roles are server-wide; advisory locks are not).
fn is_race(e: &ProvisionError) -> bool {
    let source = match e {
        ProvisionError::Concurrent => return true,
        ProvisionError::Db { source, .. } => source,
        _ => return false,
    };
    let Some(db) = source.as_db_error() else {
        return false;
    };
    [
        SqlState::DUPLICATE_OBJECT,
        SqlState::UNIQUE_VIOLATION,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
    ]
    .contains(db.code())
        || db.message().contains("tuple concurrently updated")
}

/// Creates or refreshes the role and schema of `name`; returns the settings to connect as it
/// (`base` with the role's user, password and `search_path`). `passwords`: whether the
/// server authenticates by password (an external database) — the embedded cluster does not.
pub async fn provision(
    pool: &Pool,
    base: &tokio_postgres::Config,
    name: &ExtensionName,
    limits: &RoleLimits,
    passwords: bool,
) -> Result<tokio_postgres::Config, ProvisionError> {
    let mut attempt = 0u64;
    let mut held = 0;
    loop {
        match provision_once(pool, base, name, limits, passwords).await {
            Err(e) if is_race(&e) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 + attempt * 7)).await;
            }
            Err(ProvisionError::Held { role, .. }) => {
                let db = |source| ProvisionError::Db {
                    role: role.clone(),
                    source,
                };
                if held == 2 {
                    let sessions = open_transactions(pool, &role, false).await.map_err(db)?;
                    return Err(ProvisionError::Held { role, sessions });
                }
                held += 1;
                let ended = open_transactions(pool, &role, true).await.map_err(db)?;
                tracing::error!(
                    extension = %name,
                    role,
                    sessions = ?ended,
                    "the extension's own transaction held its role's catalog rows past {:?}: \
                     ended its sessions with a transaction open",
                    LOCK_WAIT
                );
                if ended.is_empty() {
                    // They ended on their own meanwhile: give PostgreSQL a moment.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            other => return other,
        }
    }
}

/// The sessions of `role`, on any database of the server, that hold a transaction open — and
/// with `end`, ends them; their process ids.
async fn open_transactions(
    pool: &Pool,
    role: &str,
    end: bool,
) -> Result<Vec<i32>, tokio_postgres::Error> {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(deadpool_postgres::PoolError::Backend(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "no connection to end the role's sessions");
            return Ok(Vec::new());
        }
    };
    let rows = client
        .query(
            // In the select list, never in WHERE: the planner may evaluate a WHERE clause
            // before the others, on every session of the server.
            "SELECT pid, CASE WHEN $2 THEN pg_terminate_backend(pid) END FROM pg_stat_activity \
             WHERE usename = $1 AND xact_start IS NOT NULL AND pid <> pg_backend_pid()",
            &[&role, &end],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

fn role_config(
    base: &tokio_postgres::Config,
    name: &ExtensionName,
    role: &str,
    password: String,
) -> tokio_postgres::Config {
    let mut config = base.clone();
    config
        .user(role)
        .password(password)
        .options(format!("-c search_path={role}"))
        .application_name(format!("solobase ext {name}"));
    config
}

/// The settings to connect as the role of `name` as it is, changing nothing (for reading
/// what it owns with no more than its rights); `None` when the role does not exist.
pub(crate) async fn existing_role_config(
    pool: &Pool,
    base: &tokio_postgres::Config,
    name: &ExtensionName,
) -> anyhow::Result<Option<tokio_postgres::Config>> {
    let role = name.schema();
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT coalesce((SELECT password FROM solobase.extension_roles WHERE name = $1), '') \
             FROM pg_roles WHERE rolname = $2",
            &[&name.as_str(), &role],
        )
        .await?;
    Ok(row.map(|r| role_config(base, name, &role, r.get(0))))
}

async fn provision_once(
    pool: &Pool,
    base: &tokio_postgres::Config,
    name: &ExtensionName,
    limits: &RoleLimits,
    passwords: bool,
) -> Result<tokio_postgres::Config, ProvisionError> {
    let role = name.schema();
    let mut client = pool.get().await?;
    let db = |source| ProvisionError::Db {
        role: role.clone(),
        source,
    };
    // The common case, a restart: everything is already as it should be — one read.
    let Some(current) = read_state(&client, name, &role).await.map_err(db)? else {
        return Err(ProvisionError::Concurrent);
    };
    let up_to_date = |c: &Current| {
        !c.new_password
            && password_fix(c, passwords) == PasswordFix::Keep
            && c.role.as_ref().is_some_and(|r| {
                r.attributes_ok
                    && !r.is_escalated()
                    && r.conn_limit == limits.max_connections as i32
                    && r.settings == wanted_settings(&role, limits)
                    && c.schema_owner.as_deref() == Some(role.as_str())
                    && (c.host_is_superuser || r.host_is_member)
            })
    };
    if up_to_date(&current) {
        return Ok(role_config(base, name, &role, current.password));
    }

    let tx = client.transaction().await.map_err(db)?;
    lock::within(&tx, &lock_name(name), lock::DEFAULT_WAIT).await?;
    // A catalog row the role's own open transaction holds is waited for this long only.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        LOCK_WAIT.as_millis()
    ))
    .await
    .map_err(db)?;
    // Read again under the lock: another instance may have just done the work.
    let Some(current) = read_state(&tx, name, &role).await.map_err(db)? else {
        return Err(ProvisionError::Concurrent);
    };
    let login = current.login.clone();
    let privilege = |e: tokio_postgres::Error| {
        if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
            ProvisionError::Held {
                role: role.clone(),
                sessions: Vec::new(),
            }
        } else if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            ProvisionError::Privilege {
                login: login.clone(),
                role: role.clone(),
                detail: e
                    .as_db_error()
                    .map_or(e.to_string(), |d| d.message().to_owned()),
            }
        } else {
            ProvisionError::Db {
                role: role.clone(),
                source: e,
            }
        }
    };
    let fix = password_fix(&current, passwords);
    let planted = password_planted(&current, passwords);
    let escalation = current
        .role
        .as_ref()
        .filter(|r| r.is_escalated() || planted);
    // Only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS in ALTER ROLE, even to
    // say NO: a CREATEROLE login names them only when the role has one (and then fails,
    // saying so). CREATE ROLE may always say NO.
    let forced = if current.host_is_superuser || current.role.is_none() {
        " NOSUPERUSER NOREPLICATION NOBYPASSRLS".to_owned()
    } else {
        let has = |a: &str| escalation.is_some_and(|r| r.escalated.iter().any(|e| e == a));
        [
            ("SUPERUSER", " NOSUPERUSER"),
            ("REPLICATION", " NOREPLICATION"),
            ("BYPASSRLS", " NOBYPASSRLS"),
        ]
        .iter()
        .filter(|(a, _)| has(a))
        .map(|(_, no)| *no)
        .collect()
    };
    let mut attributes = format!(
        "LOGIN NOINHERIT NOCREATEDB NOCREATEROLE{forced} CONNECTION LIMIT {}",
        limits.max_connections
    );
    // Only the verifier travels: the password itself is in no statement, so in no log.
    let verifier = match fix {
        PasswordFix::Set => {
            let verifier = postgres_protocol::password::scram_sha_256(current.password.as_bytes());
            attributes.push_str(&format!(" PASSWORD '{verifier}'"));
            Some(verifier)
        }
        PasswordFix::Remove => {
            attributes.push_str(" PASSWORD NULL");
            None
        }
        PasswordFix::Keep => None,
    };
    let verb = if current.role.is_some() {
        "ALTER"
    } else {
        "CREATE"
    };
    if let Some(r) = escalation {
        tracing::error!(
            extension = %name,
            role,
            attributes = ?r.escalated,
            member_of = ?r.member_of,
            objects_outside_its_schema = ?r.foreign_objects,
            defaults_in_this_database = ?r.database_settings,
            password_of_its_own = planted,
            "the extension's database role holds more than its schema: taking it back. A role \
             that was a superuser may have changed anything in the database; check it"
        );
    }
    let mut sql = String::new();
    if let Some(r) = escalation {
        for member_of in &r.member_of {
            sql.push_str(&format!("REVOKE {member_of} FROM {role}; "));
        }
    }
    if current.role.is_some() {
        // Role defaults it set itself go, for every database and for this one (where they
        // would override the host's); only the host's stay.
        sql.push_str(&format!(
            "ALTER ROLE {role} RESET ALL; \
             DO $reset$ BEGIN EXECUTE format('ALTER ROLE {role} IN DATABASE %I RESET ALL', \
             current_database()); END $reset$; "
        ));
    }
    sql.push_str(&format!(
        "{verb} ROLE {role} {attributes}; \
         ALTER ROLE {role} SET search_path = {role}; \
         ALTER ROLE {role} SET statement_timeout = {}; \
         ALTER ROLE {role} SET idle_in_transaction_session_timeout = {};",
        limits.statement_timeout_ms, limits.idle_in_transaction_timeout_ms
    ));
    if !current.host_is_superuser {
        // Membership lets the host create the schema for the role, migrate its objects and
        // cancel its queries. It goes one way: the extension's role gains nothing.
        sql.push_str(&format!(" GRANT {role} TO CURRENT_USER;"));
    }
    sql.push_str(&format!(
        " CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role};"
    ));
    tx.batch_execute(&sql).await.map_err(privilege)?;
    if let Some(verifier) = &verifier {
        tx.execute(
            "UPDATE solobase.extension_roles SET password_set = true, verifier = $2 \
             WHERE name = $1",
            &[&name.as_str(), verifier],
        )
        .await
        .map_err(db)?;
    }
    // A schema made by another role (before extensions had roles, or by hand) is handed over.
    if current
        .schema_owner
        .as_deref()
        .is_some_and(|owner| owner != role)
    {
        adopt_schema(&tx, &role).await.map_err(privilege)?;
    }
    tx.commit().await.map_err(db)?;
    if let Some(r) = escalation {
        let entry = audit::Entry::new(
            audit::Actor::System,
            "extension.role_repaired",
            audit::Outcome::Ok,
        )
        .extension(name.as_str())
        .detail(serde_json::json!({
            "role": role,
            "attributes_removed": r.escalated,
            "memberships_revoked": r.member_of,
            "objects_outside_its_schema": r.foreign_objects,
            "defaults_in_this_database_removed": r.database_settings,
            "password_of_its_own_replaced": planted,
        }));
        audit::record_or_log(pool, entry).await;
    }
    Ok(role_config(base, name, &role, current.password))
}

/// Gives the role its schema and the tables in it when another role created them (a schema
/// made before extensions had roles, or by hand).
async fn adopt_schema(
    tx: &tokio_postgres::Transaction<'_>,
    role: &str,
) -> Result<(), tokio_postgres::Error> {
    let owner: String = tx
        .query_one(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1",
            &[&role],
        )
        .await?
        .get(0);
    if owner == role {
        return Ok(());
    }
    tracing::info!(schema = role, previous_owner = %owner, "giving the extension's schema to its role");
    tx.batch_execute(&format!("ALTER SCHEMA {role} OWNER TO {role}"))
        .await?;
    // Tables carry their own sequences and indexes along.
    let tables = tx
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            &[&role],
        )
        .await?;
    for row in tables {
        let table: String = row.get(0);
        tx.batch_execute(&format!(
            "ALTER TABLE {role}.\"{}\" OWNER TO {role}",
            table.replace('"', "\"\"")
        ))
        .await?;
    }
    Ok(())
}
