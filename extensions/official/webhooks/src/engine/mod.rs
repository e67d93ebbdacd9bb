//! Delivery: workers claim due deliveries, send them signed, and record every attempt.
//!
//! - **Claiming**: a batch of due rows (`status = 'pending' AND next_attempt_at <= now()`, of
//!   enabled endpoints) is taken with `FOR UPDATE SKIP LOCKED` and leased by moving
//!   `next_attempt_at` past the send's time limit, so instances never share a row and a row
//!   whose instance died becomes due again when the lease ends.
//! - **Sending**: at most `max_concurrency` requests at once, `endpoint_concurrency` per
//!   endpoint and the endpoint's `rate_limit` per second (both per instance); the
//!   `webhook-id` is `msg_<event id>`, the same at every retry; the body is the payload.
//! - **Recording** ([`record`]): one recorder task writes the outcomes in batches, with
//!   retries, failure streaks and disabling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use solobase_sdk::outbound::{self, Http};
use solobase_sdk::prelude::*;
use solobase_sdk::tracing::Instrument as _;
use solobase_sdk::webhooks::{self, Secret};
use solobase_sdk::{ConfigHandle, Database, Events, tracing};
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use uuid::Uuid;

use crate::WebhooksConfig;

mod record;

pub use record::backoff;
pub(crate) use record::fail_pending;
use record::{Outcome, record_loop};

/// The shared state of the feed, the workers and the recorder.
pub(crate) struct Engine {
    pub db: Database,
    pub config: ConfigHandle<WebhooksConfig>,
    pub events: Events,
    /// Wakes the workers early (new deliveries, resends).
    pub wake: Notify,
    /// Why the feed last failed, until it works again (reported by `health`).
    pub feed_error: Mutex<Option<String>>,
    /// What it exports on `/metrics`.
    pub metrics: EngineMetrics,
    /// Outbound HTTP, through the host's guard.
    http: Http,
    limits: Mutex<HashMap<Uuid, Arc<EndpointLimit>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// The webhooks' own series (`solobase_ext_webhooks_…`).
#[derive(Debug)]
pub(crate) struct EngineMetrics {
    /// Attempts recorded, by what became of the delivery: `succeeded`, `retrying` (another
    /// attempt is due), `failed` (no more attempts).
    pub deliveries: solobase_sdk::metrics::CounterVec,
    /// Attempts made, and how long each took.
    pub attempts: solobase_sdk::metrics::Counter,
    pub attempt_seconds: solobase_sdk::metrics::Histogram,
    /// Deliveries waiting, and the age of the oldest (seconds; 0 when none wait).
    pub pending: solobase_sdk::metrics::Gauge,
    pub queue_age_seconds: solobase_sdk::metrics::Gauge,
    /// Rows deleted by retention, by table (`deliveries`, `attempts`).
    pub retention_deleted: solobase_sdk::metrics::CounterVec,
}

impl EngineMetrics {
    pub fn new(metrics: &solobase_sdk::metrics::Metrics) -> Result<Self> {
        Ok(Self {
            deliveries: metrics.counter_vec(
                "deliveries",
                "Delivery attempts recorded, by what became of the delivery",
                "outcome",
                &["succeeded", "retrying", "failed"],
            )?,
            attempts: metrics.counter("attempts", "Delivery attempts made")?,
            attempt_seconds: metrics
                .histogram("attempt_duration_seconds", "How long each attempt took")?,
            pending: metrics.gauge("pending", "Deliveries waiting to be sent")?,
            queue_age_seconds: metrics.gauge(
                "queue_age_seconds",
                "Age of the oldest delivery waiting to be sent",
            )?,
            retention_deleted: metrics.counter_vec(
                "retention_deleted",
                "Finished deliveries and their attempts deleted by retention, by table",
                "table",
                &["deliveries", "attempts"],
            )?,
        })
    }

    /// Reads the queue's size and age (run periodically by the `queue` task).
    pub async fn sample_queue(&self, engine: &Engine) -> Result<()> {
        let row = engine
            .db
            .client()
            .await?
            .query_one(
                "SELECT count(*)::float8, \
                        coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 \
                 FROM deliveries WHERE status = 'pending'",
                &[],
            )
            .await?;
        self.pending.set(row.get(0));
        self.queue_age_seconds.set(row.get(1));
        Ok(())
    }
}

/// One endpoint's limits on this instance.
struct EndpointLimit {
    concurrency: usize,
    slots: Arc<Semaphore>,
    /// When the next request may start (the rate limit).
    next_start: tokio::sync::Mutex<Instant>,
}

/// A claimed delivery, ready to send.
struct Claimed {
    id: i64,
    endpoint_id: Uuid,
    event_id: Uuid,
    payload: serde_json::Value,
    attempt: i32,
    /// How many attempts came before the schedule was last restarted (resend, replay).
    retries_from: i32,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    headers: serde_json::Value,
    rate_limit: Option<i32>,
    lease_ends: Instant,
}

/// The webhook-id of an event's deliveries: the same for every endpoint and every retry.
pub fn message_id(event_id: Uuid) -> String {
    format!("msg_{}", event_id.simple())
}

impl Engine {
    pub fn new(
        db: Database,
        config: ConfigHandle<WebhooksConfig>,
        events: Events,
        http: Http,
        metrics: &solobase_sdk::metrics::Metrics,
    ) -> Result<Self> {
        Ok(Self {
            db,
            config,
            events,
            wake: Notify::new(),
            feed_error: Mutex::new(None),
            metrics: EngineMetrics::new(metrics)?,
            http,
            limits: Mutex::new(HashMap::new()),
        })
    }

    fn limit(&self, endpoint: Uuid) -> Arc<EndpointLimit> {
        let concurrency = self.config.get().endpoint_concurrency.max(1) as usize;
        let mut limits = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        let entry = limits
            .entry(endpoint)
            .or_insert_with(|| new_limit(concurrency));
        if entry.concurrency != concurrency {
            *entry = new_limit(concurrency);
        }
        entry.clone()
    }
}

fn new_limit(concurrency: usize) -> Arc<EndpointLimit> {
    Arc::new(EndpointLimit {
        concurrency,
        slots: Arc::new(Semaphore::new(concurrency)),
        next_start: tokio::sync::Mutex::new(Instant::now()),
    })
}

/// The worker loop: claims and starts deliveries until `stop` turns true.
pub(crate) async fn run_workers(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let (outcomes, rx) = mpsc::unbounded_channel();
    // The recorder and the sends belong to this task: cancelled with it, their panics its own.
    let mut sends = tokio::task::JoinSet::new();
    let mut recorder = tokio::task::JoinSet::new();
    recorder.spawn(record_loop(engine.clone(), rx).in_current_span());
    let mut slots = Arc::new(Semaphore::new(
        engine.config.get().max_concurrency.max(1) as usize
    ));
    let mut slots_size = slots.available_permits();
    while !*stop.borrow() {
        let wanted = engine.config.get().max_concurrency.max(1) as usize;
        if wanted != slots_size {
            slots = Arc::new(Semaphore::new(wanted));
            slots_size = wanted;
        }
        // Wait for a free slot before claiming: claimed rows should start soon.
        let first = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let free = slots.available_permits() + 1;
        let claimed = match claim(&engine, free.min(256)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying");
                drop(first);
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            drop(first);
            let poll = Duration::from_millis(engine.config.get().poll_interval_ms.max(10));
            tokio::select! {
                _ = stop.changed() => break,
                _ = engine.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        let mut first = Some(first);
        for job in claimed {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                },
            };
            let engine = engine.clone();
            let outcomes = outcomes.clone();
            sends.spawn(
                async move {
                    if let Some(outcome) = deliver(&engine, job, permit).await {
                        let _ = outcomes.send(outcome);
                    }
                }
                .in_current_span(),
            );
            // Reap finished sends (a panic in one is this task's to report).
            while let Some(done) = sends.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
    drop(outcomes);
    // In-flight sends finish and are recorded within the stop time limit, or are retried
    // when their lease ends.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(done) = sends.join_next().await {
            if let Err(e) = done
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        while recorder.join_next().await.is_some() {}
    })
    .await;
}

async fn claim(engine: &Engine, limit: usize) -> Result<Vec<Claimed>> {
    let timeout = engine.config.get().timeout_secs.max(1);
    // The lease covers waiting for the endpoint's slots and the send itself.
    let lease_secs = f64::from(timeout) * 2.0 + 10.0;
    let client = engine.db.client().await?;
    let rows = client
        .query(
            "WITH due AS ( \
               SELECT d.id FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.enabled \
               ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED) \
             UPDATE deliveries d SET next_attempt_at = now() + $2 * interval '1 second' \
             FROM due, endpoints e WHERE d.id = due.id AND e.id = d.endpoint_id \
             RETURNING d.id, d.endpoint_id, d.event_id, d.payload, d.attempts + 1, \
               d.retries_from, e.url, e.secret, \
               CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END, \
               e.headers, e.rate_limit",
            &[&(limit as i64), &lease_secs],
        )
        .await?;
    let lease_ends = Instant::now() + Duration::from_secs_f64(lease_secs);
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: r.get(0),
            endpoint_id: r.get(1),
            event_id: r.get(2),
            payload: r.get(3),
            attempt: r.get(4),
            retries_from: r.get(5),
            url: r.get(6),
            secret: r.get(7),
            previous_secret: r.get(8),
            headers: r.get(9),
            rate_limit: r.get(10),
            lease_ends,
        })
        .collect())
}

/// Sends one delivery; `None` when it was given up unsent (its lease ran out while it
/// waited: it is due again, for whichever instance claims it).
async fn deliver(engine: &Engine, job: Claimed, _slot: OwnedSemaphorePermit) -> Option<Outcome> {
    let config = engine.config.get();
    let timeout = Duration::from_secs(u64::from(config.timeout_secs.max(1)));
    let limit = engine.limit(job.endpoint_id);
    let _endpoint_slot = limit.slots.clone().acquire_owned().await.ok()?;
    if let Some(rate) = job.rate_limit.filter(|r| *r > 0) {
        let wait = {
            let mut next = limit.next_start.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + Duration::from_secs_f64(1.0 / f64::from(rate));
            at - now
        };
        tokio::time::sleep(wait).await;
    }
    if Instant::now() + timeout > job.lease_ends {
        return None;
    }
    let started_at = OffsetDateTime::now_utc();
    let clock = Instant::now();
    let result = send(engine, &config, &job, timeout, started_at).await;
    let duration_ms = clock.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let (status_code, body, error) = match result {
        Ok((status, body)) => (Some(i32::from(status)), body, None),
        Err(e) => (None, String::new(), Some(e)),
    };
    let error = error.or_else(|| match status_code {
        Some(200..=299) | None => None,
        Some(code) => Some(format!("the endpoint answered {code}")),
    });
    Some(Outcome {
        delivery_id: job.id,
        endpoint_id: job.endpoint_id,
        attempt: job.attempt,
        retries_from: job.retries_from,
        started_at,
        duration_ms,
        status_code,
        body,
        error,
    })
}

/// The request itself: status and the start of the body, or what went wrong.
async fn send(
    engine: &Engine,
    config: &WebhooksConfig,
    job: &Claimed,
    timeout: Duration,
    now: OffsetDateTime,
) -> std::result::Result<(u16, String), String> {
    let body = serde_json::to_vec(&job.payload).map_err(|e| e.to_string())?;
    let msg_id = message_id(job.event_id);
    let ts = now.unix_timestamp();
    let mut signature = String::new();
    for secret in std::iter::once(&job.secret).chain(job.previous_secret.as_ref()) {
        let secret: Secret = secret
            .parse()
            .map_err(|e: webhooks::VerifyError| e.to_string())?;
        if !signature.is_empty() {
            signature.push(' ');
        }
        signature.push_str(&webhooks::sign(&secret, &msg_id, ts, &body));
    }
    let mut req = outbound::Request::post(job.url.as_str())
        .timeout(timeout)
        .body_limit(config.response_body_limit as usize)
        .header("content-type", "application/json");
    if let Some(custom) = job.headers.as_object() {
        for (name, value) in custom {
            if let Some(v) = value.as_str() {
                req = req.header(name.as_str(), v);
            }
        }
    }
    let req = req
        .header(webhooks::HEADER_ID, msg_id)
        .header(webhooks::HEADER_TIMESTAMP, ts.to_string())
        .header(webhooks::HEADER_SIGNATURE, signature)
        .body(body);
    let answer = engine.http.send(req).await.map_err(|e| e.to_string())?;
    Ok((
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_follow_the_event() {
        let id = Uuid::new_v4();
        assert_eq!(message_id(id), message_id(id));
        assert!(message_id(id).starts_with("msg_"));
        assert_ne!(message_id(id), message_id(Uuid::new_v4()));
    }
}
