//! Retention: what only grows — events in the outbox, entries in the audit log — is deleted
//! once older than `[retention]` says, in batches of `batch_size` rows, one transaction each,
//! by one instance at a time (the host lock `retention`; an instance finding it held skips
//! its run). Audit entries are first appended to `audit_archive_dir` when it is set, and the
//! database itself refuses to delete any entry younger than the run's cutoff or than a day
//! (migration V15). Counted in `/metrics` (`retention_deleted_total{table}`,
//! `retention_runs_total{outcome}`).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use metrics::Label;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::db::lock;
use crate::metrics::Metrics;

/// Runs retention every `interval_secs` (the first run right away) until `stop`.
pub(crate) async fn run(
    pool: Pool,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    if config.outbox_days == 0 && config.audit_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let outcome = match once(&pool, &config, &metrics, &mut stop).await {
            Ok(true) => "done",
            Ok(false) => "skipped",
            Err(e) => {
                tracing::warn!(error = %e, "retention run failed; the next one tries again");
                "failed"
            }
        };
        metrics
            .counter("retention_runs_total", vec![Label::new("outcome", outcome)])
            .increment(1);
    }
}

/// One run; `false` when another instance holds the lock.
async fn once(
    pool: &Pool,
    config: &RetentionConfig,
    metrics: &Metrics,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let held = match lock::hold(pool, "retention", Duration::from_millis(100)).await {
        Ok(held) => held,
        Err(lock::LockError::Timeout { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let result = async {
        if config.outbox_days > 0 {
            let deleted = outbox(pool, config, stop).await?;
            count(metrics, "outbox", deleted);
        }
        if config.audit_days > 0 {
            let deleted = audit(pool, config, stop).await?;
            count(metrics, "audit_log", deleted);
        }
        anyhow::Ok(())
    }
    .await;
    held.release().await;
    result.map(|()| true)
}

fn count(metrics: &Metrics, table: &'static str, deleted: u64) {
    metrics
        .counter("retention_deleted_total", vec![Label::new("table", table)])
        .increment(deleted);
    if deleted > 0 {
        tracing::info!(table, deleted, "retention deleted old rows");
    }
}

/// Deletes outbox events older than `outbox_days`, oldest first; the number deleted.
async fn outbox(
    pool: &Pool,
    config: &RetentionConfig,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let client = pool.get().await?;
    let days = i32::try_from(config.outbox_days).unwrap_or(i32::MAX);
    let batch = i64::from(config.batch_size);
    let mut total = 0;
    loop {
        // Oldest first along the primary key: old rows are at its start.
        let deleted = client
            .execute(
                "DELETE FROM solobase.outbox WHERE seq IN ( \
                   SELECT seq FROM solobase.outbox \
                   WHERE occurred_at < now() - make_interval(days => $1) \
                   ORDER BY seq LIMIT $2)",
                &[&days, &batch],
            )
            .await?;
        total += deleted;
        if deleted < batch as u64 || *stop.borrow() {
            return Ok(total);
        }
    }
}

/// Deletes audit entries older than `audit_days`, oldest first, each batch appended to the
/// archive first when there is one; the number deleted.
async fn audit(
    pool: &Pool,
    config: &RetentionConfig,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut client = pool.get().await?;
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(config.audit_days));
    let cutoff_text = cutoff.format(&time::format_description::well_known::Rfc3339)?;
    let batch = i64::from(config.batch_size);
    let mut total = 0;
    loop {
        let tx = client.transaction().await?;
        // The cutoff the database checks each deleted entry against (migration V15).
        tx.execute(
            "SELECT set_config('solobase.audit_delete_before', $1, true)",
            &[&cutoff_text],
        )
        .await?;
        let rows = tx
            .query(
                "SELECT id, to_jsonb(a)::text FROM solobase.audit_log a \
                 WHERE at < $1 ORDER BY at, id LIMIT $2 FOR UPDATE",
                &[&cutoff, &batch],
            )
            .await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if let Some(dir) = &config.audit_archive_dir {
            let lines: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
            let dir = dir.clone();
            // Written and flushed to disk before the entries are deleted: an entry is never
            // deleted unarchived (a failed commit can archive it twice).
            tokio::task::spawn_blocking(move || archive(&dir, cutoff, &lines)).await??;
        }
        let deleted = tx
            .execute("DELETE FROM solobase.audit_log WHERE id = ANY($1)", &[&ids])
            .await?;
        tx.commit().await?;
        total += deleted;
        if (rows.len() as i64) < batch || *stop.borrow() {
            return Ok(total);
        }
    }
}

/// Appends `lines` to `<dir>/audit-<date of the cutoff>.jsonl` and syncs it.
fn archive(dir: &Path, cutoff: OffsetDateTime, lines: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!("audit-{}.jsonl", cutoff.date());
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot open the audit archive {}: {e}", path.display()),
            )
        })?;
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
