//! Each extension's migrations, applied in its own schema `ext_<name>` with refinery, under a
//! per-extension advisory lock. The history lives in `ext_<name>.refinery_schema_history`,
//! so extensions never share one.

use deadpool_postgres::Pool;

use crate::db::migrate::apply_locked;
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
    if migrations.is_empty() {
        // Nothing to run and no history to keep: only make sure the schema exists.
        let client = pool.get().await?;
        let created = client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", name.schema()))
            .await;
        match created {
            // Another instance created it at the same moment.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            other => other?,
        }
        return Ok(Vec::new());
    }
    let refinery_migrations = migrations
        .iter()
        .map(|m| refinery::Migration::unapplied(&format!("V{}__{}", m.version, m.name), m.up))
        .collect::<Result<Vec<_>, _>>()?;
    let runner = refinery::Runner::new(&refinery_migrations);
    Ok(apply_locked(pool, lock_key(name), &name.schema(), runner).await?)
}
