//! The watchdog that keeps extensions' database time limits even when an extension lifts
//! them for its own session (`SET statement_timeout = 0` is allowed to any role) or ignores
//! them (PL/pgSQL may catch `query_canceled`, which is what both `statement_timeout` and a
//! cancel raise, and go on).

use deadpool_postgres::Pool;

use crate::config::DbLimits as RoleLimits;

/// How often the watchdog looks.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a statement may go on after its cancellation before its session is ended: a
/// statement that catches the cancellation does not get to keep its locks.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);

/// Keeps the time limits, twice a second, with a grace of one look:
/// - a statement running past its role's `statement_timeout` is cancelled, and if it is still
///   running [`CANCEL_GRACE`] later its session is ended;
/// - a session idle in a transaction past `idle_in_transaction_session_timeout` is ended;
/// - a session whose transaction has been open past `transaction_timeout_ms`, busy or not,
///   is ended.
///
/// `limits` pairs each role with its limits.
pub(crate) fn spawn_watchdog(
    pool: Pool,
    limits: Vec<(String, RoleLimits)>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let roles: Vec<String> = limits.iter().map(|(r, _)| r.clone()).collect();
    let column = |f: fn(&RoleLimits) -> u64| -> Vec<i64> {
        limits.iter().map(|(_, l)| f(l) as i64).collect()
    };
    let statement = column(|l| l.statement_timeout_ms);
    let idle = column(|l| l.idle_in_transaction_timeout_ms);
    let transaction = column(|l| l.transaction_timeout_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = watch_once(&pool, &roles, &statement, &idle, &transaction).await {
                tracing::debug!(error = %e, "extension watchdog could not look");
            }
        }
    })
}

/// One look: what it did to which role's session, and why.
const LOOK: &str = "
    SELECT role, state, why,
           CASE WHEN why = 'statement over its time limit' THEN pg_cancel_backend(pid)
                ELSE pg_terminate_backend(pid) END
    FROM (
        SELECT a.pid, a.usename::text AS role, a.state,
               CASE
                 WHEN l.transaction_ms > 0
                      AND a.xact_start < now() - make_interval(secs => (l.transaction_ms + $5) / 1000.0)
                   THEN 'transaction open past its time limit'
                 WHEN a.state LIKE 'idle in transaction%' AND l.idle_ms > 0
                      AND a.state_change < now() - make_interval(secs => (l.idle_ms + $5) / 1000.0)
                   THEN 'idle in a transaction past its time limit'
                 WHEN a.state = 'active' AND l.statement_ms > 0
                      AND a.query_start < now() - make_interval(secs => (l.statement_ms + $5 + $6) / 1000.0)
                   THEN 'statement still running after its cancellation'
                 WHEN a.state = 'active' AND l.statement_ms > 0
                      AND a.query_start < now() - make_interval(secs => (l.statement_ms + $5) / 1000.0)
                   THEN 'statement over its time limit'
               END AS why
        FROM pg_stat_activity a
        JOIN unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
             AS l(role, statement_ms, idle_ms, transaction_ms)
          ON a.usename::text = l.role
        WHERE a.datname = current_database()
    ) overdue
    WHERE why IS NOT NULL";

async fn watch_once(
    pool: &Pool,
    roles: &[String],
    statement: &[i64],
    idle: &[i64],
    transaction: &[i64],
) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let grace = WATCH_EVERY.as_millis() as i64;
    let cancel_grace = CANCEL_GRACE.as_millis() as i64;
    let rows = client
        .query(
            LOOK,
            &[
                &roles,
                &statement,
                &idle,
                &transaction,
                &grace,
                &cancel_grace,
            ],
        )
        .await?;
    for row in rows {
        let role: String = row.get(0);
        let state: Option<String> = row.get(1);
        let why: String = row.get(2);
        tracing::warn!(
            role,
            state,
            why,
            "ended an extension's statement or session that outlived its time limit"
        );
    }
    Ok(())
}
