//! Each extension's migrations, run **as the extension's own role** (on its pool) in its
//! schema `ext_<name>`, with refinery, all pending versions in one transaction, under a
//! per-extension host lock (`migrate.<name>`, held on a host connection: see
//! `crate::db::lock`) so that instances starting together migrate once. The history lives in
//! `ext_<name>.refinery_schema_history`.
//!
//! The extension's role owns that history table and may replace it with anything (a view
//! calling its own function, say): so the host only ever reads or writes it through the
//! extension's own pool, never with its own privileges.
//!
//! refinery only goes forward; rolling back is Solobase's own: the down scripts of the
//! versions above the target run newest-first in one transaction, which also trims the
//! history to match. Rolling back needs the extension disabled (its code expects the schema
//! it has); enabling it again, or the next start, migrates it up first.

use deadpool_postgres::Pool;
use refinery::error::Kind;
use solobase_sdk::{ExtensionName, Migration};

use crate::db::lock;
use crate::db::migrate::{MigrateError, apply_locked};

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {file} was changed after it was applied (its checksum differs): restore the \
         applied text, or roll back below version {version} with the build that applied it"
    )]
    Changed { file: String, version: i32 },
    #[error(
        "version {version} ({name}) is applied in the database but is not part of this build: \
         use a build that has it, or roll back with one"
    )]
    NotInBuild { version: i32, name: String },
    #[error("{file} failed, so no migration of this run was applied: {reason}")]
    Failed { file: String, reason: String },
    #[error("invalid migration {0}")]
    Invalid(String),
    #[error("no migration V{0} in this build (its versions are {1})")]
    UnknownVersion(u32, String),
    #[error(
        "cannot get a database connection as the extension's role: {}",
        crate::db::pool_error_text(.0)
    )]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Other(String),
}

/// The file a migration comes from, e.g. `V1__create_items.sql`.
pub(crate) fn file_name(m: &Migration) -> String {
    format!("V{}__{}.sql", m.version, m.name)
}

/// The down script of a migration, e.g. `V1__create_items.down.sql`.
pub(crate) fn down_file_name(m: &Migration) -> String {
    format!("V{}__{}.down.sql", m.version, m.name)
}

fn history_table(name: &ExtensionName) -> String {
    format!("{}.refinery_schema_history", name.schema())
}

/// The host lock held while an extension's schema changes.
fn lock_name(name: &ExtensionName) -> String {
    format!("migrate.{name}")
}

/// The applied versions (ascending) with their names. `client` must be a connection of the
/// extension's own pool: the table is the extension's to shape.
pub async fn applied(
    client: &tokio_postgres::Client,
    name: &ExtensionName,
) -> Result<Vec<(i32, String)>, tokio_postgres::Error> {
    let table = history_table(name);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT version, name FROM {table} ORDER BY version"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// [`applied`] for a command without the extension's pool: through a connection as its role
/// as it is now (nothing is created or changed); none when the role does not exist yet.
pub(crate) async fn applied_as_role(
    host: &Pool,
    base: &tokio_postgres::Config,
    tls: &crate::db::tls::DbTls,
    name: &ExtensionName,
) -> Result<Vec<(i32, String)>, MigrationError> {
    // Only the catalog is read with the host's rights: whether there is a history at all.
    let exists: bool = host
        .get()
        .await?
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass('solobase.extension_roles') IS NOT NULL",
            &[&history_table(name)],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let Some(config) = super::db_role::existing_role_config(host, base, name)
        .await
        .map_err(|e| MigrationError::Other(format!("cannot read {name}'s role: {e}")))?
    else {
        return Ok(Vec::new());
    };
    let db = super::services::extension_database(config, tls, name, 1)
        .map_err(|e| MigrationError::Other(e.to_string()))?;
    let pool = db.pool().clone();
    let result = async { applied(&*pool.get().await?, name).await.map_err(Into::into) }.await;
    pool.close();
    result
}

/// Whether `to` is 0 or a version of `migrations`.
pub(crate) fn check_target(migrations: &[Migration], to: u32) -> Result<(), MigrationError> {
    if to == 0 || migrations.iter().any(|m| m.version == to) {
        return Ok(());
    }
    let versions: Vec<String> = migrations.iter().map(|m| m.version.to_string()).collect();
    Err(MigrationError::UnknownVersion(
        to,
        if versions.is_empty() {
            "none".into()
        } else {
            versions.join(", ")
        },
    ))
}

/// The migrations `migrate` would apply, oldest first.
pub(crate) fn plan_up<'m>(
    migrations: &'m [Migration],
    applied: &[(i32, String)],
    to: Option<u32>,
) -> Vec<&'m Migration> {
    let newest = applied.iter().map(|(v, _)| *v).max().unwrap_or(0);
    migrations
        .iter()
        .filter(|m| m.version as i32 > newest && to.is_none_or(|t| m.version <= t))
        .collect()
}

/// The migrations `rollback` to `to` would revert, newest first.
pub(crate) fn plan_down<'m>(
    migrations: &'m [Migration],
    applied: &[(i32, String)],
    to: u32,
) -> Result<Vec<&'m Migration>, MigrationError> {
    let mut plan = Vec::new();
    for (version, name) in applied.iter().rev() {
        if *version <= to as i32 {
            break;
        }
        let m = migrations
            .iter()
            .find(|m| m.version as i32 == *version)
            .ok_or_else(|| MigrationError::NotInBuild {
                version: *version,
                name: name.clone(),
            })?;
        plan.push(m);
    }
    Ok(plan)
}

/// One step of a dry run: a file that would run, and its SQL.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Step {
    pub(crate) version: u32,
    pub(crate) file: String,
    pub(crate) sql: &'static str,
}

/// What `migrate` (up to `to`, else all) or, with `down`, `rollback` to `to` would run now
/// after the applied `history`, in order.
pub(crate) fn dry_run(
    history: &[(i32, String)],
    migrations: &[Migration],
    to: Option<u32>,
    down: bool,
) -> Result<Vec<Step>, MigrationError> {
    if let Some(to) = to {
        check_target(migrations, to)?;
    }
    Ok(if down {
        plan_down(migrations, history, to.unwrap_or(0))?
            .into_iter()
            .map(|m| Step {
                version: m.version,
                file: down_file_name(m),
                sql: m.down,
            })
            .collect()
    } else {
        plan_up(migrations, history, to)
            .into_iter()
            .map(|m| Step {
                version: m.version,
                file: file_name(m),
                sql: m.up,
            })
            .collect()
    })
}

/// Checks what an extension declares: versions 1, 2, 3 … without gaps, names of `a-z`, `0-9`
/// and `_`, and a down script for every version.
pub(crate) fn validate(migrations: &[Migration]) -> Result<(), MigrationError> {
    for (i, m) in migrations.iter().enumerate() {
        let file = file_name(m);
        if m.version as usize != i + 1 {
            return Err(MigrationError::Invalid(format!(
                "{file}: versions must run 1, 2, 3 … without gaps; this is number {} in the list",
                i + 1
            )));
        }
        if m.name.is_empty()
            || !m
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(MigrationError::Invalid(format!(
                "{file}: a migration's name is snake_case (a-z, 0-9, _)"
            )));
        }
        if m.down.trim().is_empty() {
            return Err(MigrationError::Invalid(format!(
                "{file} has no down script: add {} that reverts it",
                down_file_name(m)
            )));
        }
    }
    Ok(())
}

/// Applies the pending migrations (up to `to`, else all) on `pool`, the extension's own,
/// while a connection of `host` holds the extension's migration lock. Returns the versions
/// applied.
pub async fn migrate(
    host: &Pool,
    pool: &Pool,
    name: &ExtensionName,
    migrations: &[Migration],
    to: Option<u32>,
) -> Result<Vec<i32>, MigrationError> {
    validate(migrations)?;
    if let Some(to) = to {
        check_target(migrations, to)?;
    }
    if migrations.is_empty() {
        return Ok(Vec::new());
    }
    let refinery_migrations = migrations
        .iter()
        .map(|m| refinery::Migration::unapplied(&format!("V{}__{}", m.version, m.name), m.up))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MigrationError::Other(e.to_string()))?;
    let mut runner = refinery::Runner::new(&refinery_migrations);
    if let Some(to) = to {
        runner = runner.set_target(refinery::Target::Version(to as i32));
    }
    let result = apply_locked(host, pool, &lock_name(name), &name.schema(), runner).await;
    match result {
        Ok(applied) => Ok(applied),
        Err(e) => {
            let mut error = explain(e, migrations);
            if let MigrationError::Failed { file, reason } = &mut error {
                // refinery ran the pending migrations as one group and does not say which
                // failed: replay them in a transaction that is rolled back, to find out.
                if let Ok(Some((f, r))) = find_failing(pool, name, migrations, to).await {
                    (*file, *reason) = (f, r);
                }
            }
            Err(error)
        }
    }
}

/// Replays the pending migrations one by one inside a transaction that is always rolled
/// back; the first that fails, with the database's message.
async fn find_failing(
    pool: &Pool,
    name: &ExtensionName,
    migrations: &[Migration],
    to: Option<u32>,
) -> Result<Option<(String, String)>, MigrationError> {
    let mut client = pool.get().await?;
    let history = applied(&client, name).await?;
    let tx = client.transaction().await?;
    for m in plan_up(migrations, &history, to) {
        if let Err(e) = tx.batch_execute(m.up).await {
            let reason = e
                .as_db_error()
                .map_or(e.to_string(), |d| d.message().to_owned());
            return Ok(Some((file_name(m), reason)));
        }
    }
    tx.rollback().await?;
    Ok(None)
}

/// Turns refinery's errors into ones that name the file and say what to do.
fn explain(e: MigrateError, migrations: &[Migration]) -> MigrationError {
    let MigrateError::Refinery(e) = e else {
        return match e {
            MigrateError::Pool(p) => MigrationError::Pool(p),
            MigrateError::Db(d) => MigrationError::Db(d),
            MigrateError::Lock(l) => MigrationError::Other(l.to_string()),
            MigrateError::Refinery(_) => unreachable!(),
        };
    };
    let file_of = |version: i32, name: &str| {
        migrations
            .iter()
            .find(|m| m.version as i32 == version)
            .map_or_else(|| format!("V{version}__{name}.sql"), file_name)
    };
    match e.kind() {
        Kind::DivergentVersion(applied, _) => MigrationError::Changed {
            file: file_of(applied.version(), applied.name()),
            version: applied.version(),
        },
        Kind::MissingVersion(applied) => MigrationError::NotInBuild {
            version: applied.version(),
            name: applied.name().to_owned(),
        },
        Kind::Connection(message, source) => {
            // refinery's message names the migration that failed: "error applying migration
            // V2__x".
            let file = message
                .split_whitespace()
                .find(|w| w.starts_with('V') && w.contains("__"))
                .map_or_else(|| "a migration".to_owned(), |w| format!("{w}.sql"));
            let reason = source
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(|e| e.as_db_error())
                .map_or_else(|| source.to_string(), |d| d.message().to_owned());
            MigrationError::Failed { file, reason }
        }
        other => MigrationError::Other(other.to_string()),
    }
}

/// Reverts the versions above `to` (0 = all), newest first, in one transaction that also
/// trims the history. Calls `step` with (i, n, down script's file) before the i-th of n.
/// Returns the versions reverted.
pub async fn rollback(
    host: &Pool,
    pool: &Pool,
    name: &ExtensionName,
    migrations: &[Migration],
    to: u32,
    step: &mut (dyn FnMut(usize, usize, &str) + Send),
) -> Result<Vec<i32>, MigrationError> {
    check_target(migrations, to)?;
    let held = lock::hold_explained(host, &lock_name(name), lock::DEFAULT_WAIT)
        .await
        .map_err(|e| MigrationError::Other(e.to_string()))?;
    let mut client = pool.get().await?;
    let result = async {
        let history = applied(&client, name).await?;
        let plan = plan_down(migrations, &history, to)?;
        if plan.is_empty() {
            return Ok(Vec::new());
        }
        let tx = client.transaction().await?;
        for (i, m) in plan.iter().enumerate() {
            let file = down_file_name(m);
            step(i + 1, plan.len(), &file);
            tx.batch_execute(m.down)
                .await
                .map_err(|e| MigrationError::Failed {
                    file,
                    reason: e
                        .as_db_error()
                        .map_or(e.to_string(), |d| d.message().to_owned()),
                })?;
        }
        tx.execute(
            &format!("DELETE FROM {} WHERE version > $1", history_table(name)),
            &[&(to as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(plan.iter().map(|m| m.version as i32).collect())
    }
    .await;
    drop(client);
    held.release().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(version: u32) -> Migration {
        Migration {
            version,
            name: "step",
            up: "",
            down: "",
        }
    }

    #[test]
    fn plans_go_up_oldest_first_and_down_newest_first() {
        let all = [m(1), m(2), m(3)];
        let applied = vec![(1, "step".to_owned()), (2, "step".to_owned())];
        let up: Vec<u32> = plan_up(&all, &applied, None)
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(up, [3]);
        assert!(plan_up(&all, &applied, Some(2)).is_empty());
        let down: Vec<u32> = plan_down(&all, &applied, 0)
            .unwrap()
            .iter()
            .map(|m| m.version)
            .collect();
        assert_eq!(down, [2, 1]);
        assert!(plan_down(&all, &applied, 2).unwrap().is_empty());
        // A version applied by another build cannot be reverted by this one.
        let foreign = vec![(1, "step".to_owned()), (7, "other".to_owned())];
        assert!(matches!(
            plan_down(&all, &foreign, 0),
            Err(MigrationError::NotInBuild { version: 7, .. })
        ));
        assert!(check_target(&all, 4).is_err());
        assert!(check_target(&all, 0).is_ok());
    }

    #[test]
    fn declared_migrations_are_checked() {
        let good = Migration {
            version: 1,
            name: "create_items",
            up: "CREATE TABLE items (id int)",
            down: "DROP TABLE items",
        };
        assert!(validate(std::slice::from_ref(&good)).is_ok());
        let gap = Migration {
            version: 3,
            ..good.clone()
        };
        let no_down = Migration {
            down: " ",
            ..good.clone()
        };
        let bad_name = Migration {
            name: "Create Items",
            ..good.clone()
        };
        for (case, wanted) in [
            (vec![good.clone(), gap], "without gaps"),
            (vec![no_down], "V1__create_items.down.sql"),
            (vec![bad_name], "snake_case"),
        ] {
            let e = validate(&case).unwrap_err().to_string();
            assert!(e.contains(wanted), "{e}");
        }
    }
}
