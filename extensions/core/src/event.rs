//! System events: typed records of what happened (`user.created`, `storage.uploaded`,
//! `extension.<name>.<what>` …), carried by the host's event bus.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

/// An event's type, such as `user.created`: dot-separated words of `a-z0-9_-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventType(Cow<'static, str>);

impl EventType {
    /// A user account was created.
    pub const USER_CREATED: Self = Self(Cow::Borrowed("user.created"));
    /// A user logged in.
    pub const USER_LOGIN: Self = Self(Cow::Borrowed("user.login"));
    /// A file was stored.
    pub const STORAGE_UPLOADED: Self = Self(Cow::Borrowed("storage.uploaded"));
    /// A file was deleted.
    pub const STORAGE_DELETED: Self = Self(Cow::Borrowed("storage.deleted"));
    /// An extension was enabled.
    pub const EXTENSION_ENABLED: Self = Self(Cow::Borrowed("extension.enabled"));
    /// An extension was disabled (by an admin or automatically).
    pub const EXTENSION_DISABLED: Self = Self(Cow::Borrowed("extension.disabled"));

    /// Parses a type name: 1–128 characters, dot-separated non-empty words of `a-z0-9_-`.
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

    /// The type name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this type matches `pattern`: an exact name, `*` for everything, or a prefix
    /// ending in `.*` (`user.*` matches `user.created` and `user.login`).
    pub fn matches(&self, pattern: &str) -> bool {
        match pattern.strip_suffix('*') {
            None => self.as_str() == pattern,
            Some("") => true,
            Some(prefix) => prefix.ends_with('.') && self.as_str().starts_with(prefix),
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique forever; consumers de-duplicate on it.
    pub id: Uuid,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The details, specific to the type.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event happening now.
    pub fn new(event_type: EventType, data: serde_json::Value) -> Self {
        Self {
            id: Uuid::new_v4(),
            event_type,
            occurred_at: OffsetDateTime::now_utc(),
            data,
        }
    }
}

#[doc(hidden)]
/// The in-process broadcast of committed events. Cloning gives another handle on the same bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
}

impl EventBus {
    /// `capacity` events are buffered per subscriber; one that falls further behind is told
    /// how many it missed.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Delivers an event to current subscribers. Never blocks.
    pub fn publish(&self, event: Event) {
        // An error only means nobody is subscribed right now.
        let _ = self.sender.send(Arc::new(event));
    }

    /// A receiver of every event published from now on.
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
    fn event_type_names_and_patterns() {
        let t = EventType::parse("user.created").expect("valid");
        assert!(t.matches("user.created") && t.matches("user.*") && t.matches("*"));
        assert!(!t.matches("user") && !t.matches("use*") && !t.matches("storage.*"));
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
        let got = rx.recv().await.expect("event");
        assert_eq!(got.event_type, EventType::USER_LOGIN);
        assert_eq!(got.data["x"], 1);
    }
}
