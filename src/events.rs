//! System events: what happened in the host (a user was created, a file was uploaded …), on
//! one bus that extensions subscribe to.
//!
//! Two halves. The durable half is the `solobase.outbox` table: an event that must not be lost
//! is inserted by [`record`] inside the very transaction that makes the change it describes,
//! so either both are committed or neither is. The live half is [`EventBus`], an in-process
//! broadcast that delivers each committed event to current subscribers at once; a subscriber
//! that needs every event even across restarts reads the outbox instead.

pub use solobase_sdk::{Event, EventBus, EventType};

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
