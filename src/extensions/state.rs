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

/// Records first sightings (enabled), leaving existing rows alone. One statement for all.
pub async fn ensure_all(pool: &Pool, names: &[String]) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO solobase.extensions (name) SELECT unnest($1::text[]) \
             ON CONFLICT (name) DO NOTHING",
            &[&names],
        )
        .await?;
    Ok(())
}

/// Records, for every loaded extension, why it is not running (or clears it). One statement.
pub async fn record_outcomes(
    pool: &Pool,
    outcomes: &[(String, Option<String>)],
) -> anyhow::Result<()> {
    let (names, errors): (Vec<&str>, Vec<Option<&str>>) = outcomes
        .iter()
        .map(|(n, e)| (n.as_str(), e.as_deref()))
        .unzip();
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE solobase.extensions AS e SET last_error = o.error, updated_at = now() \
             FROM unnest($1::text[], $2::text[]) AS o(name, error) \
             WHERE e.name = o.name AND e.last_error IS DISTINCT FROM o.error",
            &[&names, &errors],
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

/// Disables `name` and records why (an automatic disable).
pub async fn disable_with_reason(pool: &Pool, name: &str, reason: &str) -> anyhow::Result<()> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE solobase.extensions SET enabled = false, last_error = $2, updated_at = now() \
             WHERE name = $1",
            &[&name, &reason],
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
