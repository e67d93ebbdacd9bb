//! What provisioning does beyond one role: taking from PUBLIC what would let any role create
//! objects outside its schema, and purging an extension.

use deadpool_postgres::Pool;
use solobase_sdk::ExtensionName;
use tokio_postgres::error::SqlState;

use super::lock_name;
use crate::db::lock;

/// Takes away from PUBLIC the privileges that would let an extension's role create objects
/// outside its schema: temporary tables (`TEMPORARY` on the database), objects in the `public`
/// schema and large objects. Needs the database's owner (temporary tables, `public`) and a
/// superuser (large objects); without that right it logs what an administrator should run,
/// and goes on.
pub(crate) async fn harden_database(pool: &Pool) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    // Instances starting together would revoke the same catalog rows at once ("tuple
    // concurrently updated"): one at a time, and only what is still granted.
    let tx = client.transaction().await?;
    lock::within(&tx, "harden", lock::DEFAULT_WAIT).await?;
    let steps = [
        (
            "temporary tables",
            "SELECT has_database_privilege('public', current_database(), 'TEMPORARY')",
            "DO $$ BEGIN EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', \
             current_database()); END $$",
        ),
        (
            "objects in the public schema",
            "SELECT coalesce((SELECT has_schema_privilege('public', oid, 'CREATE') \
             FROM pg_namespace WHERE nspname = 'public'), false)",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        ),
        (
            "large objects",
            "SELECT has_function_privilege('public', 'pg_catalog.lo_create(oid)', 'EXECUTE')",
            "REVOKE EXECUTE ON FUNCTION pg_catalog.lo_create(oid), pg_catalog.lo_creat(integer), \
             pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lo_import(text), \
             pg_catalog.lo_import(text, oid) FROM PUBLIC",
        ),
    ];
    for (what, granted, revoke) in steps {
        let still: bool = tx.query_one(granted, &[]).await?.get(0);
        if !still {
            continue;
        }
        tx.batch_execute("SAVEPOINT harden").await?;
        match tx.batch_execute(revoke).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT harden").await?;
                tracing::warn!(
                    "extensions' roles can still create {what}: Solobase's login may not revoke \
                     that from PUBLIC; a superuser can run: {revoke}"
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        // A REVOKE by a role without the grant option only warns: check that it took.
        let still: bool = tx.query_one(granted, &[]).await?.get(0);
        if still {
            tracing::warn!(
                "extensions' roles can still create {what}: run as the database's owner or a \
                 superuser: {revoke}"
            );
        }
    }
    // Other databases of the server are not Solobase's to change: say which ones extensions'
    // roles could connect to (the embedded cluster's own are closed when it is set up).
    let open: Vec<String> = tx
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn \
             AND datname <> current_database() AND has_database_privilege('public', oid, 'CONNECT') \
             ORDER BY datname LIMIT 6",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !open.is_empty() {
        tracing::warn!(
            databases = ?open,
            "extensions' roles may connect to other databases of this server (and create \
             temporary tables there): revoke it where you can, e.g. REVOKE CONNECT ON DATABASE \
             <name> FROM PUBLIC"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// What [`purge`] dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Purged {
    /// The schema and the role.
    All,
    /// The schema; the role still owns objects in other databases of the server (another
    /// Solobase database with the same extension), so it stays: why.
    RoleKept(String),
}

/// Drops the extension's schema (with its data) and role, and forgets what the host kept
/// for it: credentials, state, grants, configuration, queued jobs and counters. Its sessions
/// on this database are ended first. Its files are the caller's to remove (they are not in
/// the database); the audit log keeps its history.
pub(crate) async fn purge(pool: &Pool, name: &ExtensionName) -> anyhow::Result<Purged> {
    let role = name.schema();
    let mut client = pool.get().await?;
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = $1 AND datname = current_database()",
            &[&role],
        )
        .await?;
    let tx = client.transaction().await?;
    lock::within(&tx, &lock_name(name), lock::DEFAULT_WAIT).await?;
    tx.batch_execute(&format!("DROP SCHEMA IF EXISTS {role} CASCADE"))
        .await?;
    tx.execute(
        "DELETE FROM solobase.extension_roles WHERE name = $1",
        &[&name.as_str()],
    )
    .await?;
    // Grants and configuration go with the `extensions` row (ON DELETE CASCADE).
    for table in [
        "solobase.extensions WHERE name",
        "solobase.jobs WHERE extension",
        "solobase.extension_stats WHERE name",
    ] {
        tx.execute(&format!("DELETE FROM {table} = $1"), &[&name.as_str()])
            .await?;
    }
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await?
        .get(0);
    let mut outcome = Purged::All;
    if exists {
        tx.batch_execute(&format!("DROP OWNED BY {role}")).await?;
        tx.batch_execute("SAVEPOINT drop_role").await?;
        match tx.batch_execute(&format!("DROP ROLE {role}")).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT drop_role").await?;
                let why = e.as_db_error().map_or(e.to_string(), |d| {
                    d.detail().unwrap_or(d.message()).to_owned()
                });
                outcome = Purged::RoleKept(format!(
                    "it still owns objects in other databases of this server ({why})"
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    tx.commit().await?;
    Ok(outcome)
}
