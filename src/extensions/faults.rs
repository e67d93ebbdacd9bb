//! Panics in extension code: caught where the host calls into an extension (handlers, hooks,
//! middleware, lifecycle methods, event hooks), so that they never take down the server or
//! another request. Each is logged with the extension's name, counted, and audited — at most
//! one audit entry per extension per second, each saying how many went unrecorded before it,
//! so that a panicking extension cannot flood the audit log.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use deadpool_postgres::Pool;
use serde_json::json;
use solobase_sdk::ExtensionName;

use crate::audit::{self, Actor, Entry, Outcome};

/// The longest panic message kept in the audit log.
const MESSAGE_LIMIT: usize = 500;
/// At most one audited panic per extension in this many milliseconds.
const AUDIT_EVERY_MS: u64 = 1000;

/// The text of a panic's payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// One extension's panic record.
#[derive(Debug)]
pub struct PanicLog {
    pool: Option<Pool>,
    epoch: Instant,
    count: AtomicU64,
    /// Milliseconds since `epoch` of the last audited panic, plus one (0: none yet).
    last_audit: AtomicU64,
    unaudited: AtomicU64,
}

impl PanicLog {
    /// `pool`: where to audit (`None` in unit tests).
    pub fn new(pool: Option<Pool>) -> Self {
        Self {
            pool,
            epoch: Instant::now(),
            count: AtomicU64::new(0),
            last_audit: AtomicU64::new(0),
            unaudited: AtomicU64::new(0),
        }
    }

    /// How many panics were caught.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Records a panic caught in `place` (e.g. `handler GET /items`, `hook pre_request`).
    pub fn record(&self, extension: &ExtensionName, place: &str, payload: &(dyn Any + Send)) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut text = message(payload);
        if text.len() > MESSAGE_LIMIT {
            let mut end = MESSAGE_LIMIT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        tracing::error!(extension = %extension, place, panic = %text, "extension code panicked; the request gets a 500");
        let Some(pool) = self.pool.clone() else {
            return;
        };
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_audit.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= AUDIT_EVERY_MS;
        if !due
            || self
                .last_audit
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unaudited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let skipped = self.unaudited.swap(0, Ordering::Relaxed);
        let entry = Entry::new(Actor::System, "extension.panic", Outcome::Failed)
            .extension(extension.as_str())
            .detail(json!({"place": place, "message": text, "unaudited_before": skipped}));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { audit::record_or_log(&pool, entry).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_messages() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(message(caught.as_ref()), "boom 7");
        let caught = std::panic::catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(message(caught.as_ref()), "plain");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(message(caught.as_ref()), "a panic without a message");
    }

    #[test]
    fn panics_are_counted() {
        let log = PanicLog::new(None);
        let name = ExtensionName::parse("p").unwrap();
        log.record(&name, "hook", &"x");
        log.record(&name, "hook", &"y".repeat(2000));
        assert_eq!(log.count(), 2);
    }
}
