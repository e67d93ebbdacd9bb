//! Running extensions' background jobs (`solobase.jobs`). Every instance polls every
//! `jobs_poll_ms`: it claims a few due jobs of the extensions active here with
//! `FOR UPDATE SKIP LOCKED` — so no two instances claim the same job — and runs each through
//! `Extension::run_job` with a time limit, catching panics. A claim lasts the time limit plus
//! a margin: the job of an instance that died is claimed again once it expires. A failed job
//! is retried after 2^attempt seconds, up to its `max_attempts`; then it is left done with its
//! last error.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use solobase_sdk::Job;
use tracing::Instrument;

use super::host::ExtensionHost;

/// Jobs one instance claims at a time.
const BATCH: i64 = 8;

/// Batches one round may run before it waits for the next tick (which also checks whether
/// the host is stopping).
const BATCHES_PER_ROUND: usize = 16;

/// Starts this instance's worker: every `jobs_poll_ms`, batches until no job is due.
pub(super) fn spawn(host: &Arc<ExtensionHost>) {
    let instance: Arc<str> = host.instance().into();
    let every = Duration::from_millis(host.settings().jobs_poll_ms);
    host.spawn_periodic(every, move |host| {
        let instance = instance.clone();
        async move {
            for _ in 0..BATCHES_PER_ROUND {
                if host.is_stopping() {
                    return;
                }
                match run_batch(&host, &instance).await {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim background jobs");
                        return;
                    }
                }
            }
        }
    });
}

/// Claims and runs one batch; returns how many jobs ran.
async fn run_batch(host: &ExtensionHost, instance: &str) -> anyhow::Result<usize> {
    let active: Vec<String> = host
        .all()
        .iter()
        .filter(|l| l.is_active())
        .map(|l| l.name.to_string())
        .collect();
    if active.is_empty() {
        return Ok(0);
    }
    let limit = Duration::from_secs(host.settings().job_timeout_secs);
    let lease_secs = (limit.as_secs() + 30) as f64;
    let client = host.pool().get().await?;
    let rows = client
        .query(
            "WITH due AS MATERIALIZED ( \
                 SELECT id FROM solobase.jobs \
                 WHERE done_at IS NULL AND run_at <= now() AND extension = ANY($3) \
                   AND attempts < max_attempts \
                   AND (locked_until IS NULL OR locked_until < now()) \
                 ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             UPDATE solobase.jobs AS j SET locked_by = $1, \
                 locked_until = now() + $2 * interval '1 second', attempts = j.attempts + 1 \
             FROM due WHERE j.id = due.id \
             RETURNING j.id, j.extension, j.kind, j.payload, j.attempts, j.max_attempts",
            &[&instance, &lease_secs, &active, &BATCH],
        )
        .await?;
    drop(client);
    let runs = rows.iter().map(|row| async move {
        let extension: String = row.get(1);
        let job = Job {
            id: row.get(0),
            kind: row.get(2),
            payload: row.get(3),
            attempt: row.get::<_, i32>(4) as u32,
        };
        let max_attempts: i32 = row.get(5);
        let outcome = run_one(host, &extension, &job, limit).await;
        if let Err(e) = finish(host, instance, &job, max_attempts, outcome).await {
            tracing::error!(job = job.id, error = %e, "cannot record a job's outcome");
        }
    });
    futures_util::future::join_all(runs).await;
    Ok(rows.len())
}

/// Runs `job` of `extension` within `limit`.
async fn run_one(
    host: &ExtensionHost,
    extension: &str,
    job: &Job,
    limit: Duration,
) -> Result<(), String> {
    let Some(l) = host.get(extension) else {
        return Err(format!("no extension {extension} here"));
    };
    let Some(ext) = l.ext() else {
        return Err(format!("{extension} is not running"));
    };
    let running = AssertUnwindSafe(ext.run_job(job).instrument(l.span.clone())).catch_unwind();
    match tokio::time::timeout(limit, running).await {
        Ok(Ok(Ok(()))) => {
            l.stats
                .jobs_done
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Ok(Ok(Err(e))) => {
            l.stats
                .jobs_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(e.to_string())
        }
        Ok(Err(payload)) => {
            l.stats
                .jobs_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            l.panicked("run_job", payload.as_ref());
            Err(format!(
                "the job panicked: {}",
                super::faults::message(payload.as_ref())
            ))
        }
        Err(_) => {
            l.stats
                .jobs_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            l.failed();
            Err(format!(
                "the job did not finish within {} s",
                limit.as_secs()
            ))
        }
    }
}

/// Records how `job` ended: done, retried later, or given up.
async fn finish(
    host: &ExtensionHost,
    instance: &str,
    job: &Job,
    max_attempts: i32,
    outcome: Result<(), String>,
) -> anyhow::Result<()> {
    let client = host.pool().get().await?;
    match outcome {
        Ok(()) => {
            client
                .execute(
                    "UPDATE solobase.jobs SET done_at = now(), ran_by = $2, last_error = NULL, \
                     locked_by = NULL, locked_until = NULL WHERE id = $1 AND locked_by = $2",
                    &[&job.id, &instance],
                )
                .await?;
        }
        Err(error) => {
            let give_up = job.attempt as i32 >= max_attempts;
            let retry_secs = 2f64.powi(job.attempt.min(12) as i32);
            tracing::warn!(job = job.id, kind = job.kind, attempt = job.attempt, give_up, %error, "background job failed");
            client
                .execute(
                    "UPDATE solobase.jobs SET last_error = $2, ran_by = $3, locked_by = NULL, \
                     locked_until = NULL, \
                     done_at = CASE WHEN $4 THEN now() END, \
                     run_at = now() + $5 * interval '1 second' WHERE id = $1 AND locked_by = $3",
                    &[&job.id, &error, &instance, &give_up, &retry_secs],
                )
                .await?;
        }
    }
    Ok(())
}
