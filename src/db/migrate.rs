//! The host's own schema (`solobase`), migrated with refinery from `migrations/` (embedded in
//! the binary at compile time).
//!
//! Migrations run under a PostgreSQL advisory lock, so several instances starting together on
//! one database migrate exactly once: the first takes the lock and migrates, the others wait
//! and then find nothing left to do.

use deadpool_postgres::Pool;

refinery::embed_migrations!("migrations");

/// The schema holding every host table.
pub const HOST_SCHEMA: &str = "solobase";
/// refinery's history table for the host, kept inside the host schema (see `apply_locked`).
pub const HISTORY_TABLE: &str = "solobase.refinery_schema_history";
/// Advisory lock key for host migrations ("solobase" in ASCII).
const LOCK_KEY: i64 = 0x736f_6c6f_6261_7365;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot get a database connection for migrations: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error while preparing migrations: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("host migration failed: {0}")]
    Refinery(#[from] refinery::Error),
}

/// The newest migration version compiled into this binary.
pub fn latest_version() -> i32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Brings the host schema up to date. Returns the versions applied by this call.
pub async fn run(pool: &Pool) -> Result<Vec<i32>, MigrateError> {
    let applied = apply_locked(pool, LOCK_KEY, HOST_SCHEMA, true, migrations::runner()).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "host migrations applied");
    }
    Ok(applied)
}

/// Runs `runner` in `schema` (created if missing when `create_schema`; also the session's
/// `search_path` while it runs, so unqualified names land there) with its history in
/// `<schema>.refinery_schema_history`, all under the advisory lock `key`, all pending
/// migrations in one transaction. Returns the versions applied.
pub async fn apply_locked(
    pool: &Pool,
    key: i64,
    schema: &str,
    create_schema: bool,
    mut runner: refinery::Runner,
) -> Result<Vec<i32>, MigrateError> {
    let mut client = pool.get().await?;
    client.query("SELECT pg_advisory_lock($1)", &[&key]).await?;
    let result = async {
        if create_schema {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await?;
        runner.set_migration_table_name(format!("{schema}.refinery_schema_history"));
        let pg: &mut tokio_postgres::Client = &mut client;
        let report = runner
            .set_abort_divergent(true)
            .set_abort_missing(true)
            .set_grouped(true)
            .run_async(pg)
            .await?;
        Ok::<_, MigrateError>(
            report
                .applied_migrations()
                .iter()
                .map(|m| m.version())
                .collect::<Vec<i32>>(),
        )
    }
    .await;
    let unlocked = client
        .batch_execute(&format!(
            "RESET search_path; SELECT pg_advisory_unlock({key})"
        ))
        .await;
    if unlocked.is_err() {
        // A connection still holding the lock must never go back to the pool.
        let _ = deadpool_postgres::Object::take(client);
    }
    let applied = result?;
    unlocked?;
    Ok(applied)
}

/// The newest applied host migration, or `None` before the first run.
pub async fn applied_version(
    client: &tokio_postgres::Client,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(&format!("SELECT max(version) FROM {HISTORY_TABLE}"), &[])
        .await?;
    Ok(row.get(0))
}
