//! The fan-out: committed events become delivery rows, one per subscribed endpoint.
//!
//! The host writes every event to its outbox in the transaction of the change it describes.
//! This loop reads that outbox in order through the durable feed (`ctx.events.read_after`)
//! and, in ONE transaction in the extension's schema, inserts the delivery rows of a batch of
//! events and moves its cursor (`feed_cursor`) past them. A crash at any moment therefore
//! either keeps both or neither: after a restart the loop reads again from the last committed
//! cursor (at-least-once; `UNIQUE (endpoint_id, event_id)` absorbs a repeated fan-out) and no
//! event is skipped. The live event bus only wakes the loop early; `poll_interval_ms` covers
//! events committed by other instances. Several instances share the cursor: its row is locked
//! for the fan-out, and an instance that finds it moved re-reads from there.

use std::sync::Arc;
use std::time::Duration;

use solobase_sdk::prelude::*;
use solobase_sdk::{OutboxPosition, tracing};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::engine::Engine;

/// Events read per batch.
const BATCH: u32 = 500;
/// After a notification, the feed re-reads every `EAGER_INTERVAL`, `EAGER_READS` times at
/// most, until the event is handed out (a few small index scans per notification).
const EAGER_READS: u32 = 60;
const EAGER_INTERVAL: Duration = Duration::from_millis(5);

/// The payload of an event as receivers get it: `{type, timestamp, data}`.
pub fn payload(event: &Event) -> serde_json::Value {
    serde_json::json!({
        "type": event.event_type,
        "timestamp": rfc3339(event.occurred_at),
        "data": event.data,
    })
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Runs until `stop` turns true.
pub(crate) async fn run(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    let mut live = engine.events.subscribe().ok();
    let mut cursor = None;
    // Quick re-reads left after a notification: the new event's transaction may still wait
    // for an older one to finish before the feed hands it out.
    let mut eager = 0u32;
    while !*stop.borrow() {
        // Notifications that arrived meanwhile are covered by the read below (and re-arm the
        // quick re-reads).
        if let Some(sub) = live.as_mut() {
            while let Ok(r) = tokio::time::timeout(Duration::ZERO, sub.recv()).await {
                if r.is_err() {
                    live = None;
                    break;
                }
                eager = EAGER_READS;
            }
        }
        let result = step(&engine, &mut cursor).await;
        let failure = result.as_ref().err().map(ToString::to_string);
        {
            let mut last = engine.feed_error.lock().unwrap_or_else(|p| p.into_inner());
            // Logged when it starts failing (or fails differently), not at every poll.
            if failure.is_some() && *last != failure {
                tracing::warn!(error = ?failure, "the webhooks feed failed; retrying");
            } else if failure.is_none() && last.is_some() {
                tracing::info!("the webhooks feed works again");
            }
            *last = failure;
        }
        let idle = match result {
            Ok(moved) => !moved,
            Err(_) => {
                cursor = None;
                true
            }
        };
        if !idle {
            continue;
        }
        let poll = Duration::from_millis(engine.config.get().poll_interval_ms.max(10));
        if eager > 0 {
            eager -= 1;
            let wait = EAGER_INTERVAL.min(poll);
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        tokio::select! {
            _ = stop.changed() => {}
            _ = tokio::time::sleep(poll) => {}
            r = async { match live.as_mut() {
                Some(sub) => sub.recv().await.map(drop),
                None => std::future::pending().await,
            } } => match r {
                Ok(()) => eager = EAGER_READS,
                Err(_) => live = None,
            },
        }
    }
}

/// Fans out one batch; true when the cursor moved.
async fn step(engine: &Engine, cursor: &mut Option<OutboxPosition>) -> Result<bool> {
    let after = match *cursor {
        Some(c) => c,
        None => {
            let c = load_cursor(engine).await?;
            *cursor = Some(c);
            c
        }
    };
    let batch = engine.events.read_after(after, BATCH).await?;
    let Some((last, _)) = batch.last() else {
        return Ok(false);
    };
    let last = *last;
    let mut client = engine.db.client().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one("SELECT tx, seq FROM feed_cursor FOR UPDATE", &[])
        .await?;
    let stored = OutboxPosition {
        tx: row.get(0),
        seq: row.get(1),
    };
    if stored != after {
        // Another instance moved it: continue from there.
        *cursor = Some(stored);
        return Ok(true);
    }
    let endpoints = tx
        .query(
            "SELECT id, event_types, created_at FROM endpoints WHERE enabled",
            &[],
        )
        .await?;
    let mut ids = Vec::new();
    let mut event_ids = Vec::new();
    let mut types = Vec::new();
    let mut payloads = Vec::new();
    for (_, event) in &batch {
        let mut body = None;
        for ep in &endpoints {
            let patterns: Vec<String> = ep.get(1);
            let created: OffsetDateTime = ep.get(2);
            if event.occurred_at >= created && patterns.iter().any(|p| event.event_type.matches(p))
            {
                ids.push(ep.get::<_, Uuid>(0));
                event_ids.push(event.id);
                types.push(event.event_type.as_str().to_owned());
                payloads.push(body.get_or_insert_with(|| payload(event)).clone());
            }
        }
    }
    if !ids.is_empty() {
        tx.execute(
            "INSERT INTO deliveries (endpoint_id, event_id, event_type, payload) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[]) \
             ON CONFLICT (endpoint_id, event_id) DO NOTHING",
            &[&ids, &event_ids, &types, &payloads],
        )
        .await?;
    }
    tx.execute(
        "UPDATE feed_cursor SET tx = $1, seq = $2",
        &[&last.tx, &last.seq],
    )
    .await?;
    tx.commit().await?;
    *cursor = Some(last);
    if !ids.is_empty() {
        engine.wake.notify_one();
    }
    Ok(true)
}

async fn load_cursor(engine: &Engine) -> Result<OutboxPosition> {
    let client = engine.db.client().await?;
    let row = client
        .query_one("SELECT tx, seq FROM feed_cursor", &[])
        .await?;
    Ok(OutboxPosition {
        tx: row.get(0),
        seq: row.get(1),
    })
}
