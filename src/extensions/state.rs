//! Persistent extension state in `solobase.extensions`: the administrator's enabled flag and
//! the last failure. Shared by every instance on the database.

use std::collections::HashMap;

use deadpool_postgres::Pool;

/// One extension's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    pub enabled: bool,
    pub last_error: Option<String>,
}

/// Every row, by name.
pub async fn load_all(pool: &Pool) -> anyhow::Result<HashMap<String, Persisted>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT name, enabled, last_error FROM solobase.extensions",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                Persisted {
                    enabled: r.get(1),
                    last_error: r.get(2),
                },
            )
        })
        .collect())
}

/// Records a first sighting (enabled), leaving existing rows alone.
pub async fn ensure(pool: &Pool, name: &str) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO solobase.extensions (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&name],
        )
        .await?;
    Ok(())
}

/// Sets the administrator's flag; returns false when the extension has no row.
pub async fn set_enabled(pool: &Pool, name: &str, enabled: bool) -> anyhow::Result<bool> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE solobase.extensions SET enabled = $2, updated_at = now() WHERE name = $1",
            &[&name, &enabled],
        )
        .await?;
    Ok(n == 1)
}

/// Records (or, with `None`, clears) why the extension is not running.
pub async fn set_error(pool: &Pool, name: &str, error: Option<&str>) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO solobase.extensions (name, last_error) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()",
            &[&name, &error],
        )
        .await?;
    Ok(())
}

/// The permissions held by a (non-admin) role.
pub async fn role_permissions(pool: &Pool, role: &str) -> anyhow::Result<Vec<String>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT permission FROM solobase.role_permissions WHERE role = $1",
            &[&role],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
