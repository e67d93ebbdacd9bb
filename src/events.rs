//! System events: what happened in the host (a user was created, a file was uploaded …), on
//! one bus that extensions subscribe to.
//!
//! Two halves. The durable half is the `solobase.outbox` table: an event that must not be lost
//! is inserted by [`record`] inside the very transaction that makes the change it describes,
//! so either both are committed or neither is. The live half is [`EventBus`], an in-process
//! broadcast that delivers each committed event to current subscribers at once; a subscriber
//! that needs every event even across restarts reads the outbox instead.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

/// An event's type, such as `user.created`: lowercase dotted words.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventType(Cow<'static, str>);

impl EventType {
    pub const USER_CREATED: Self = Self(Cow::Borrowed("user.created"));
    pub const USER_LOGIN: Self = Self(Cow::Borrowed("user.login"));
    pub const STORAGE_UPLOADED: Self = Self(Cow::Borrowed("storage.uploaded"));
    pub const STORAGE_DELETED: Self = Self(Cow::Borrowed("storage.deleted"));

    /// Parses a type name: 1–128 characters of `a-z0-9_-` in dot-separated, non-empty words.
    pub fn parse(name: &str) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.split('.').all(|word| {
                !word.is_empty()
                    && word.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    })
            });
        valid.then(|| Self(Cow::Owned(name.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique forever; consumers de-duplicate on it.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(event_type: EventType, data: serde_json::Value) -> Self {
        Self {
            id: Uuid::new_v4(),
            event_type,
            occurred_at: OffsetDateTime::now_utc(),
            data,
        }
    }
}

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

/// The in-process bus. Cloning gives another handle on the same bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    /// `capacity` events are buffered per subscriber; a subscriber that falls further behind
    /// is told how many it missed (and can catch up from the outbox).
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Delivers a committed event to current subscribers. Never blocks.
    pub fn publish(&self, event: Event) {
        tracing::debug!(event_type = event.event_type.as_str(), id = %event.id, "event");
        // An error only means nobody is subscribed right now.
        let _ = self.sender.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names() {
        assert!(EventType::parse("user.created").is_some());
        assert!(EventType::parse("extension.analytics.flush_done").is_some());
        for bad in [
            "",
            ".",
            "a..b",
            "User.created",
            "a b",
            "a/b",
            &"x".repeat(129),
        ] {
            assert!(EventType::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn subscribers_receive_published_events() {
        let bus = EventBus::new(8);
        let mut rx = bus.subscribe();
        bus.publish(Event::new(
            EventType::USER_LOGIN,
            serde_json::json!({"x": 1}),
        ));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.event_type, EventType::USER_LOGIN);
        assert_eq!(got.data["x"], 1);
    }
}
