//! The host's own schema (`solobase`), migrated with refinery from `migrations/` (embedded in
//! the binary at compile time).
//!
//! Migrations run under the host lock `host.migrate` (a row lock in `solobase.locks`, see
//! [`super::lock`]), so several instances starting together on one database migrate exactly
//! once: the first takes the lock and migrates, the others wait and then find nothing left to
//! do. No extension's role can take that lock, so none can hold start-up hostage.

use deadpool_postgres::Pool;

refinery::embed_migrations!("migrations");

/// The schema holding every host table.
pub(crate) const HOST_SCHEMA: &str = "solobase";
/// refinery's history table for the host, kept inside the host schema (see `apply_locked`).
pub(crate) const HISTORY_TABLE: &str = "solobase.refinery_schema_history";
/// The host lock (`solobase.locks`) held while the host schema is migrated.
const LOCK_NAME: &str = "host.migrate";

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot get a database connection for migrations: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error while preparing migrations: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("host migration failed: {0}")]
    Refinery(#[from] refinery::Error),
    #[error(transparent)]
    Lock(#[from] super::lock::LockError),
}

/// The newest migration version compiled into this binary.
pub(crate) fn latest_version() -> i32 {
    migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Brings the host schema up to date. Returns the versions applied by this call.
pub async fn run(pool: &Pool) -> Result<Vec<i32>, MigrateError> {
    super::lock::bootstrap(pool).await?;
    let applied = apply_locked(pool, pool, LOCK_NAME, HOST_SCHEMA, migrations::runner()).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "host migrations applied");
    }
    Ok(applied)
}

/// Runs `runner` on a connection of `pool` in `schema` (also the session's `search_path`
/// while it runs, so unqualified names land there) with its history in
/// `<schema>.refinery_schema_history`, all pending migrations in one transaction, while a
/// connection of `host` holds the host lock `lock` (see [`super::lock`]: no extension can take
/// or hold it). Returns the versions applied.
pub(crate) async fn apply_locked(
    host: &Pool,
    pool: &Pool,
    lock: &str,
    schema: &str,
    mut runner: refinery::Runner,
) -> Result<Vec<i32>, MigrateError> {
    let held = super::lock::hold_explained(host, lock, super::lock::DEFAULT_WAIT).await?;
    let result = async {
        let mut client = pool.get().await?;
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
            .await;
        if client.batch_execute("RESET search_path").await.is_err() {
            let _ = deadpool_postgres::Object::take(client);
        }
        Ok::<_, MigrateError>(
            report?
                .applied_migrations()
                .iter()
                .map(|m| m.version())
                .collect::<Vec<i32>>(),
        )
    }
    .await;
    held.release().await;
    result
}

/// The newest applied host migration, or `None` before the first run.
pub(crate) async fn applied_version(
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
