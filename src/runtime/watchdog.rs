//! The watchdog that keeps extensions' database time limits even when an extension lifts
//! them for its own session (`SET statement_timeout = 0` is allowed to any role).

use deadpool_postgres::Pool;

use crate::config::DbLimits as RoleLimits;

/// How often the watchdog looks.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps the time limits even when an extension lifts them for its own session (`SET
/// statement_timeout = 0` is allowed to any role): twice a second it cancels the extensions'
/// statements running past their limit and ends their sessions idle in a transaction past
/// theirs, with a grace of one look. `limits` pairs each role with its limits.
pub(crate) fn spawn_watchdog(
    pool: Pool,
    limits: Vec<(String, RoleLimits)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let roles: Vec<String> = limits.iter().map(|(r, _)| r.clone()).collect();
    let statement: Vec<i64> = limits
        .iter()
        .map(|(_, l)| l.statement_timeout_ms as i64)
        .collect();
    let idle: Vec<i64> = limits
        .iter()
        .map(|(_, l)| l.idle_in_transaction_timeout_ms as i64)
        .collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = watch_once(&pool, &roles, &statement, &idle).await {
                tracing::debug!(error = %e, "extension watchdog could not look");
            }
        }
    })
}

async fn watch_once(
    pool: &Pool,
    roles: &[String],
    statement: &[i64],
    idle: &[i64],
) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let grace = WATCH_EVERY.as_millis() as i64;
    let rows = client
        .query(
            "SELECT a.usename::text, a.state, \
                    CASE WHEN a.state = 'active' THEN pg_cancel_backend(a.pid) \
                         ELSE pg_terminate_backend(a.pid) END \
             FROM pg_stat_activity a \
             JOIN unnest($1::text[], $2::bigint[], $3::bigint[]) AS l(role, statement_ms, idle_ms) \
               ON a.usename::text = l.role \
             WHERE a.datname = current_database() AND ( \
               (a.state = 'active' AND l.statement_ms > 0 \
                 AND a.query_start < now() - make_interval(secs => (l.statement_ms + $4) / 1000.0)) \
               OR (a.state LIKE 'idle in transaction%' AND l.idle_ms > 0 \
                 AND a.state_change < now() - make_interval(secs => (l.idle_ms + $4) / 1000.0)))",
            &[&roles, &statement, &idle, &grace],
        )
        .await?;
    for row in rows {
        let role: String = row.get(0);
        let state: String = row.get(1);
        tracing::warn!(
            role,
            state,
            "ended an extension's statement or transaction that outlived its time limit"
        );
    }
    Ok(())
}
