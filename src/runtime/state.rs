//! Persistent extension state in `solobase.extensions` and `solobase.extension_grants`: the
//! administrator's enabled flag, the granted permissions and the last failure. Shared by every
//! instance on the database; changes are announced on [`CHANNEL`].

use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::Pool;

/// The PostgreSQL notification channel on which a changed extension's name is announced.
pub(crate) const CHANNEL: &str = "solobase_extensions";

/// One extension's row and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Persisted {
    pub(crate) enabled: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) granted: BTreeSet<String>,
    /// The latest health report (see `record_health`), if any.
    pub(crate) health: Option<serde_json::Value>,
    /// The configuration last changed on any instance, and its entity tag.
    pub(crate) config: Option<(serde_json::Value, String)>,
}

/// Every extension's state, by name. One statement.
pub(crate) async fn load_all(pool: &Pool) -> anyhow::Result<HashMap<String, Persisted>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT e.name, e.enabled, e.last_error, \
                    coalesce(array_agg(g.permission) FILTER (WHERE g.permission IS NOT NULL), \
                             '{}'), \
                    e.health, c.config, c.etag \
             FROM solobase.extensions e \
             LEFT JOIN solobase.extension_grants g ON g.extension = e.name \
             LEFT JOIN solobase.extension_config c ON c.name = e.name \
             GROUP BY e.name, c.config, c.etag",
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
                    granted: r.get::<_, Vec<String>>(3).into_iter().collect(),
                    health: r.get(4),
                    config: r
                        .get::<_, Option<serde_json::Value>>(5)
                        .zip(r.get::<_, Option<String>>(6)),
                },
            )
        })
        .collect())
}

/// Records first sightings, each enabled or not as paired, leaving existing rows alone. One
/// statement.
pub(crate) async fn ensure_all(pool: &Pool, first_sight: &[(String, bool)]) -> anyhow::Result<()> {
    let (names, enabled): (Vec<&str>, Vec<bool>) =
        first_sight.iter().map(|(n, e)| (n.as_str(), *e)).unzip();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO solobase.extensions (name, enabled) \
             SELECT * FROM unnest($1::text[], $2::bool[]) \
             ON CONFLICT (name) DO NOTHING",
            &[&names, &enabled],
        )
        .await?;
    Ok(())
}

/// Applies the first-sight policy to the extensions whose grants nobody decided yet: those
/// marked `grant` receive every permission they request (granted by "system"); an extension
/// seen before grants existed receives them whatever the policy. Returns what was
/// granted, by extension. Runs once per extension however many instances start together.
pub(crate) async fn decide_first_grants(
    pool: &Pool,
    requested: &[(String, Vec<String>, bool)],
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let names: Vec<&str> = requested.iter().map(|(n, ..)| n.as_str()).collect();
    let granted_now: Vec<&str> = requested
        .iter()
        .filter(|(.., grant)| *grant)
        .map(|(n, ..)| n.as_str())
        .collect();
    let (owners, permissions): (Vec<&str>, Vec<&str>) = requested
        .iter()
        .flat_map(|(n, ps, _)| ps.iter().map(move |p| (n.as_str(), p.as_str())))
        .unzip();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // NULL: seen before grants existed; it keeps what it requests whatever the policy.
    let decided = tx
        .query(
            "WITH undecided AS ( \
                 SELECT name, grants_decided IS NULL AS legacy FROM solobase.extensions \
                 WHERE name = ANY($1) AND grants_decided IS NOT TRUE FOR UPDATE) \
             UPDATE solobase.extensions AS e SET grants_decided = true \
             FROM undecided AS u WHERE e.name = u.name RETURNING e.name, u.legacy",
            &[&names],
        )
        .await?;
    let granting: Vec<String> = decided
        .iter()
        .filter(|r| granted_now.contains(&r.get::<_, &str>(0)) || r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect();
    let decided: Vec<String> = decided.iter().map(|r| r.get(0)).collect();
    let rows = tx
        .query(
            "INSERT INTO solobase.extension_grants (extension, permission, granted_by) \
             SELECT o.name, o.permission, 'system' \
             FROM unnest($1::text[], $2::text[]) AS o(name, permission) \
             WHERE o.name = ANY($3) \
             ON CONFLICT DO NOTHING RETURNING extension, permission",
            &[&owners, &permissions, &granting],
        )
        .await?;
    tx.commit().await?;
    let mut granted: Vec<(String, Vec<String>)> =
        decided.into_iter().map(|name| (name, Vec::new())).collect();
    for row in rows {
        let name: String = row.get(0);
        if let Some((_, list)) = granted.iter_mut().find(|(n, _)| *n == name) {
            list.push(row.get(1));
        }
    }
    Ok(granted)
}

/// Records, for every loaded extension, why it is not running (or clears it). One statement.
pub(crate) async fn record_outcomes(
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

/// Records each extension's latest health report. One statement.
pub(crate) async fn record_health(
    pool: &Pool,
    reports: &[(String, serde_json::Value)],
) -> anyhow::Result<()> {
    let (names, health): (Vec<&str>, Vec<&serde_json::Value>) =
        reports.iter().map(|(n, h)| (n.as_str(), h)).unzip();
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE solobase.extensions AS e SET health = o.health \
             FROM unnest($1::text[], $2::jsonb[]) AS o(name, health) WHERE e.name = o.name",
            &[&names, &health],
        )
        .await?;
    Ok(())
}

/// Disables `name`, records why (an automatic disable) and announces it.
pub(crate) async fn disable_with_reason(
    pool: &Pool,
    name: &str,
    reason: &str,
) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "UPDATE solobase.extensions SET enabled = false, last_error = $2, updated_at = now() \
         WHERE name = $1",
        &[&name, &reason],
    )
    .await?;
    announce(&*tx, name).await?;
    tx.commit().await?;
    Ok(())
}

/// Why a configuration was not shared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShareError {
    /// Another instance changed it since: it is now this entity tag.
    #[error("the configuration is now {0}")]
    Stale(String),
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for ShareError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ShareError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Database(e.into())
    }
}

/// Records `name`'s new configuration for every instance, and tells them. With `expected`,
/// only when the shared configuration (if any) still has that entity tag — checked under a
/// row lock, so that two instances cannot both replace the same version.
pub(crate) async fn share_config(
    pool: &Pool,
    name: &str,
    config: &serde_json::Value,
    etag: &str,
    expected: Option<&str>,
) -> Result<(), ShareError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    if let Some(expected) = expected {
        let row = tx
            .query_opt(
                "SELECT etag FROM solobase.extension_config WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?;
        if let Some(row) = row {
            let current: String = row.get(0);
            if current != expected {
                return Err(ShareError::Stale(current));
            }
        }
    }
    tx.execute(
        "INSERT INTO solobase.extension_config (name, config, etag) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET config = $2, etag = $3, updated_at = now()",
        &[&name, config, &etag],
    )
    .await?;
    announce(&*tx, name).await?;
    tx.commit().await?;
    Ok(())
}

/// Tells every instance (at commit) that `name`'s state changed.
pub(crate) async fn announce(
    client: &impl tokio_postgres::GenericClient,
    name: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &name])
        .await
        .map(drop)
}

/// Records `instance`'s counters for each extension (one statement), and forgets those of
/// instances silent for a day (they died without saying goodbye).
pub(crate) async fn record_stats(
    pool: &Pool,
    instance: &str,
    started_at: time::OffsetDateTime,
    rows: &[(String, serde_json::Value)],
) -> anyhow::Result<()> {
    let (names, stats): (Vec<&str>, Vec<&serde_json::Value>) =
        rows.iter().map(|(n, s)| (n.as_str(), s)).unzip();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO solobase.extension_stats (instance, name, stats, started_at) \
             SELECT $1, o.name, o.stats, $4 FROM unnest($2::text[], $3::jsonb[]) AS o(name, stats) \
             ON CONFLICT (instance, name) DO UPDATE SET stats = EXCLUDED.stats, updated_at = now()",
            &[&instance, &names, &stats, &started_at],
        )
        .await?;
    client
        .execute(
            "DELETE FROM solobase.extension_stats WHERE updated_at < now() - interval '1 day'",
            &[],
        )
        .await?;
    Ok(())
}

/// Removes `instance`'s counters (it is stopping).
pub(crate) async fn forget_stats(pool: &Pool, instance: &str) -> anyhow::Result<()> {
    pool.get()
        .await?
        .execute(
            "DELETE FROM solobase.extension_stats WHERE instance = $1",
            &[&instance],
        )
        .await?;
    Ok(())
}

/// One instance's counters of one extension.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct InstanceStats {
    pub(crate) instance: String,
    pub(crate) name: String,
    pub(crate) stats: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) started_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) updated_at: time::OffsetDateTime,
    /// Seconds since it was written.
    pub(crate) age_secs: f64,
}

/// Every instance's latest counters, newest first.
pub(crate) async fn load_stats(pool: &Pool) -> anyhow::Result<Vec<InstanceStats>> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT instance, name, stats, started_at, updated_at, \
                    extract(epoch FROM now() - updated_at)::float8 \
             FROM solobase.extension_stats ORDER BY updated_at DESC, instance, name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| InstanceStats {
            instance: r.get(0),
            name: r.get(1),
            stats: r.get(2),
            started_at: r.get(3),
            updated_at: r.get(4),
            age_secs: r.get(5),
        })
        .collect())
}

/// `name`'s shared configuration and its entity tag, if one was ever set.
pub(crate) async fn shared_config(
    pool: &Pool,
    name: &str,
) -> anyhow::Result<Option<(serde_json::Value, String)>> {
    let row = pool
        .get()
        .await?
        .query_opt(
            "SELECT config, etag FROM solobase.extension_config WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
