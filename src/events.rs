//! System events: what happened in the host (a user was created, a file was uploaded …), on
//! one bus that extensions subscribe to.
//!
//! Two halves. The durable half is the `solobase.outbox` table: an event that must not be lost
//! is inserted by [`record`] inside the very transaction that makes the change it describes,
//! so either both are committed or neither is. The live half is [`EventBus`], an in-process
//! broadcast that delivers each committed event to current subscribers at once; a subscriber
//! that needs every event even across restarts reads the outbox instead, through [`read_after`].
//!
//! The outbox's order for readers is (`tx`, `seq`): the writing transaction's id, then the row's
//! sequence number. Sequence numbers are taken before commit, so a transaction still running can
//! commit a smaller `seq` after a larger one became visible; [`read_after`] therefore hands out
//! only rows of transactions older than the oldest one still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`). Every row that can still appear then has a larger
//! `tx` than any row already handed out, and a reader that advances its position never skips one.

pub use solobase_sdk::host::EventBus;
pub use solobase_sdk::{Event, EventType, OutboxPosition};

/// Writes `event` to the outbox as part of the caller's transaction.
pub async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &Event,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO solobase.outbox (event_id, event_type, data, occurred_at) VALUES ($1, $2, $3, $4)",
        &[&event.id, &event.event_type.as_str(), &event.data, &event.occurred_at],
    )
    .await?;
    Ok(())
}

/// The durable feed: up to `limit` committed events after `after`, in (`tx`, `seq`) order,
/// only from transactions that no running transaction can precede (see the module docs).
pub(crate) async fn read_after(
    client: &tokio_postgres::Client,
    after: OutboxPosition,
    limit: u32,
) -> Result<Vec<(OutboxPosition, Event)>, anyhow::Error> {
    let rows = client
        .query(
            "SELECT tx, seq, event_id, event_type, data, occurred_at FROM solobase.outbox \
             WHERE (tx, seq) > ($1, $2) \
               AND tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY tx, seq LIMIT $3",
            &[&after.tx, &after.seq, &i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.get(3);
            let event_type = EventType::parse(&name).ok_or_else(|| {
                anyhow::anyhow!("the outbox holds an invalid event type {name:?}")
            })?;
            let position = OutboxPosition {
                tx: row.get(0),
                seq: row.get(1),
            };
            let event = Event {
                id: row.get(2),
                event_type,
                data: row.get(4),
                occurred_at: row.get(5),
            };
            Ok((position, event))
        })
        .collect()
}
