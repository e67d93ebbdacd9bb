//! Recording: outcomes go to one recorder task that writes them in batches, one transaction
//! per batch: the attempts, the deliveries' next state (success, a retry at the next step of
//! `retry_schedule_secs` with jitter, or failed), the endpoints' failure streak, and
//! disabling — on 410 Gone, or after `disable_after_failing_secs` of failures — then
//! announced as the event `extension.webhooks.endpoint_disabled`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use solobase_sdk::prelude::*;
use solobase_sdk::tracing;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::Engine;

/// What one attempt gave.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) delivery_id: i64,
    pub(super) endpoint_id: Uuid,
    pub(super) attempt: i32,
    pub(super) retries_from: i32,
    pub(super) started_at: OffsetDateTime,
    pub(super) duration_ms: i32,
    pub(super) status_code: Option<i32>,
    pub(super) body: String,
    pub(super) error: Option<String>,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.error.is_none() && matches!(self.status_code, Some(200..=299))
    }
    fn gone(&self) -> bool {
        self.status_code == Some(410)
    }
}

/// The delay before attempt `next` (1-based, counted from the schedule's start), with ±20 %
/// jitter; `None` when the schedule is exhausted.
pub fn backoff(schedule: &[f64], next: usize, jitter_unit: f64) -> Option<Duration> {
    let base = *schedule.get(next.checked_sub(1)?)?;
    let factor = 0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0);
    Some(Duration::from_secs_f64((base * factor).max(0.0)))
}

fn jitter_unit() -> f64 {
    f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX)
}

pub(super) async fn record_loop(engine: Arc<Engine>, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut tries = 0;
        loop {
            match record(&engine, &batch).await {
                Ok(disabled) => {
                    announce(&engine, disabled).await;
                    break;
                }
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(error = %e, "cannot record webhook attempts; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    // The deliveries stay leased and are sent again when the lease ends.
                    tracing::error!(error = %e, "webhook attempts were not recorded");
                    break;
                }
            }
        }
    }
}

/// An endpoint disabled by the recorder, to announce.
struct Disabled {
    id: Uuid,
    url: String,
    reason: String,
}

async fn record(engine: &Engine, batch: &[Outcome]) -> Result<Vec<Disabled>> {
    let config = engine.config.get();
    let mut ids = Vec::with_capacity(batch.len());
    let mut attempts = Vec::with_capacity(batch.len());
    let mut started = Vec::with_capacity(batch.len());
    let mut durations = Vec::with_capacity(batch.len());
    let mut codes = Vec::with_capacity(batch.len());
    let mut bodies = Vec::with_capacity(batch.len());
    let mut errors = Vec::with_capacity(batch.len());
    let mut oks = Vec::with_capacity(batch.len());
    let mut states = Vec::with_capacity(batch.len());
    let mut next_at = Vec::with_capacity(batch.len());
    // The last outcome per endpoint decides its failure streak.
    let mut endpoint_ok: HashMap<Uuid, bool> = HashMap::new();
    let mut gone = Vec::new();
    let now = OffsetDateTime::now_utc();
    for o in batch {
        ids.push(o.delivery_id);
        attempts.push(o.attempt);
        started.push(o.started_at);
        durations.push(o.duration_ms);
        codes.push(o.status_code);
        bodies.push(o.body.clone());
        errors.push(o.error.clone());
        oks.push(o.succeeded());
        endpoint_ok.insert(o.endpoint_id, o.succeeded());
        if o.gone() {
            gone.push(o.endpoint_id);
        }
        let step = (o.attempt - o.retries_from).max(0) as usize + 1;
        let (state, at) = if o.succeeded() {
            ("succeeded", now)
        } else if o.gone() {
            ("failed", now)
        } else {
            match backoff(&config.retry_schedule_secs, step, jitter_unit()) {
                Some(delay) => ("pending", now + delay),
                None => ("failed", now),
            }
        };
        states.push(state.to_owned());
        next_at.push(at);
    }
    let mut client = engine.db.client().await?;
    let tx = client.transaction().await?;
    let count = |state: &str| states.iter().filter(|s| *s == state).count() as u64;
    let counted = [
        ("succeeded", count("succeeded")),
        ("retrying", count("pending")),
        ("failed", count("failed")),
    ];
    tx.execute(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status_code, \
           response_body, error, succeeded) \
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::int[], $5::int[], \
           $6::text[], $7::text[], $8::bool[])",
        &[
            &ids, &attempts, &started, &durations, &codes, &bodies, &errors, &oks,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE deliveries d SET status = u.status, attempts = u.attempt, \
           next_attempt_at = u.next_at, last_attempt_at = u.started, last_status = u.code, \
           last_error = u.error, \
           delivered_at = CASE WHEN u.status = 'succeeded' THEN u.started END \
         FROM unnest($1::bigint[], $2::text[], $3::int[], $4::timestamptz[], \
           $5::timestamptz[], $6::int[], $7::text[]) \
           AS u(id, status, attempt, next_at, started, code, error) \
         WHERE d.id = u.id AND d.status = 'pending'",
        &[
            &ids, &states, &attempts, &next_at, &started, &codes, &errors,
        ],
    )
    .await?;
    let (healthy, failing): (Vec<_>, Vec<_>) = endpoint_ok.into_iter().partition(|(_, ok)| *ok);
    let healthy: Vec<Uuid> = healthy.into_iter().map(|(id, _)| id).collect();
    let failing: Vec<Uuid> = failing.into_iter().map(|(id, _)| id).collect();
    if !healthy.is_empty() {
        tx.execute(
            "UPDATE endpoints SET failing_since = NULL \
             WHERE id = ANY($1) AND failing_since IS NOT NULL",
            &[&healthy],
        )
        .await?;
    }
    let mut disabled = Vec::new();
    if !gone.is_empty() {
        let reason = "the endpoint answered 410 Gone";
        for row in tx
            .query(
                "UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = now() \
                 WHERE id = ANY($1) AND enabled RETURNING id, url",
                &[&gone, &reason],
            )
            .await?
        {
            disabled.push(Disabled {
                id: row.get(0),
                url: row.get(1),
                reason: reason.to_owned(),
            });
        }
    }
    if !failing.is_empty() {
        let period = config.disable_after_failing_secs as f64;
        let reason = format!(
            "every delivery failed for {} seconds (disable_after_failing_secs)",
            config.disable_after_failing_secs
        );
        tx.execute(
            "UPDATE endpoints SET failing_since = now() WHERE id = ANY($1) AND failing_since IS NULL",
            &[&failing],
        )
        .await?;
        for row in tx
            .query(
                "UPDATE endpoints SET enabled = false, disabled_reason = $3, updated_at = now() \
                 WHERE id = ANY($1) AND enabled \
                   AND failing_since <= now() - $2 * interval '1 second' RETURNING id, url",
                &[&failing, &period, &reason],
            )
            .await?
        {
            disabled.push(Disabled {
                id: row.get(0),
                url: row.get(1),
                reason: reason.clone(),
            });
        }
    }
    if !disabled.is_empty() {
        let ids: Vec<Uuid> = disabled.iter().map(|d| d.id).collect();
        fail_pending(&tx, &ids).await?;
    }
    tx.commit().await?;
    for (outcome, n) in counted {
        if n > 0 {
            engine.metrics.deliveries.with(outcome).increment(n);
        }
    }
    engine.metrics.attempts.increment(batch.len() as u64);
    for o in batch {
        engine
            .metrics
            .attempt_seconds
            .record(f64::from(o.duration_ms) / 1000.0);
    }
    if states.iter().any(|s| s == "pending") {
        engine.wake.notify_one();
    }
    Ok(disabled)
}

/// Marks the pending deliveries of disabled endpoints failed (replay them once re-enabled).
pub(crate) async fn fail_pending(
    tx: &solobase_sdk::tokio_postgres::Transaction<'_>,
    endpoints: &[Uuid],
) -> Result<u64> {
    Ok(tx
        .execute(
            "UPDATE deliveries SET status = 'failed', last_error = 'the endpoint is disabled' \
             WHERE endpoint_id = ANY($1) AND status = 'pending'",
            &[&endpoints],
        )
        .await?)
}

async fn announce(engine: &Engine, disabled: Vec<Disabled>) {
    for d in disabled {
        tracing::warn!(endpoint = %d.id, url = %d.url, reason = %d.reason, "webhook endpoint disabled");
        let data = serde_json::json!({"endpoint_id": d.id, "url": d.url, "reason": d.reason});
        if let Err(e) = engine.events.publish("endpoint_disabled", data).await {
            tracing::warn!(error = %e, "cannot announce a disabled webhook endpoint");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_followed_with_bounded_jitter_then_ends() {
        let schedule = [0.0, 5.0, 300.0];
        assert_eq!(backoff(&schedule, 1, 0.5), Some(Duration::ZERO));
        assert_eq!(backoff(&schedule, 2, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(backoff(&schedule, 2, 0.0), Some(Duration::from_secs(4)));
        assert_eq!(backoff(&schedule, 2, 1.0), Some(Duration::from_secs(6)));
        assert_eq!(backoff(&schedule, 3, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(backoff(&schedule, 4, 0.5), None);
        assert_eq!(backoff(&schedule, 0, 0.5), None);
    }
}
