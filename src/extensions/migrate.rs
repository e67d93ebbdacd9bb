//! Each extension's migrations, applied in its own schema `ext_<name>` with refinery, under a
//! per-extension advisory lock. The history lives in `ext_<name>.refinery_schema_history`,
//! so extensions never share one.

use deadpool_postgres::Pool;
use solobase_sdk::{ExtensionName, Migration};

/// Advisory lock key of extension `name` (stable across processes: FNV-1a of the name).
fn lock_key(name: &ExtensionName) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("solobase.ext.{name}").bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Brings the extension's schema up to date. Returns the versions applied.
pub async fn run(
    pool: &Pool,
    name: &ExtensionName,
    migrations: &[Migration],
) -> anyhow::Result<Vec<i32>> {
    let schema = name.schema();
    let mut client = pool.get().await?;
    let key = lock_key(name);
    client.query("SELECT pg_advisory_lock($1)", &[&key]).await?;
    let result = migrate_locked(&mut client, &schema, migrations).await;
    let unlocked = client
        .batch_execute(&format!(
            "RESET search_path; SELECT pg_advisory_unlock({key})"
        ))
        .await;
    if unlocked.is_err() {
        let _ = deadpool_postgres::Object::take(client);
    }
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn migrate_locked(
    client: &mut deadpool_postgres::Object,
    schema: &str,
    migrations: &[Migration],
) -> anyhow::Result<Vec<i32>> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
        ))
        .await?;
    if migrations.is_empty() {
        return Ok(Vec::new());
    }
    let refinery_migrations = migrations
        .iter()
        .map(|m| refinery::Migration::unapplied(&format!("V{}__{}", m.version, m.name), m.up))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runner = refinery::Runner::new(&refinery_migrations);
    runner.set_migration_table_name(format!("{schema}.refinery_schema_history"));
    let pg: &mut tokio_postgres::Client = client;
    let report = runner
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .set_grouped(true)
        .run_async(pg)
        .await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect())
}
