//! Retention: finished deliveries (succeeded or failed) whose last attempt is older than
//! `retention_days` are deleted with their attempts, oldest first, in batches; pending ones
//! never are. Rows another instance is deleting are skipped (`SKIP LOCKED`), so instances
//! running it at once neither wait for nor repeat each other's work.

use solobase_sdk::prelude::*;

use crate::engine::Engine;

/// Rows deleted per statement.
const BATCH: i64 = 1000;

/// Deletes what is past the retention; returns the deliveries deleted.
pub(crate) async fn run(engine: &Engine) -> Result<u64> {
    let days = engine.config.get().retention_days;
    if days == 0 {
        return Ok(0);
    }
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let client = engine.db.client().await?;
    let mut total = 0;
    loop {
        // The attempts go with their delivery (ON DELETE CASCADE); the count reads them from
        // the statement's snapshot, taken before the delete.
        let row = client
            .query_one(
                "WITH gone AS ( \
                   DELETE FROM deliveries WHERE id IN ( \
                     SELECT id FROM deliveries \
                     WHERE status <> 'pending' \
                       AND coalesce(last_attempt_at, created_at) \
                           < now() - make_interval(days => $1) \
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                   RETURNING id) \
                 SELECT (SELECT count(*) FROM gone), \
                        (SELECT count(*) FROM attempts WHERE delivery_id IN (SELECT id FROM gone))",
                &[&days, &BATCH],
            )
            .await?;
        let (deliveries, attempts): (i64, i64) = (row.get(0), row.get(1));
        engine
            .metrics
            .retention_deleted
            .with("deliveries")
            .increment(deliveries as u64);
        engine
            .metrics
            .retention_deleted
            .with("attempts")
            .increment(attempts as u64);
        total += deliveries as u64;
        if deliveries < BATCH {
            return Ok(total);
        }
    }
}
