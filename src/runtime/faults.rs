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
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// Lets through at most one audit entry per second, counting the ones it holds back, so that
/// something happening in a flood cannot flood the audit log.
#[derive(Debug)]
pub(crate) struct Sampler {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last entry let through, plus one (0: none yet).
    last: AtomicU64,
    held_back: AtomicU64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }
}

impl Sampler {
    /// `Some(n)` when an entry is due now, `n` being how many were held back since the last
    /// one; `None` (and one more held back) otherwise.
    pub(crate) fn due(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= AUDIT_EVERY_MS;
        if !due
            || self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

/// Writes `entry` to the audit log in the background (when a runtime runs).
pub(crate) fn audit_later(pool: &Pool, entry: Entry) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let pool = pool.clone();
        runtime.spawn(async move { audit::record_or_log(&pool, entry).await });
    }
}

/// One extension's panic record.
#[derive(Debug)]
pub(crate) struct PanicLog {
    pool: Option<Pool>,
    count: AtomicU64,
    sampler: Sampler,
}

impl PanicLog {
    /// `pool`: where to audit (`None` in unit tests).
    pub(crate) fn new(pool: Option<Pool>) -> Self {
        Self {
            pool,
            count: AtomicU64::new(0),
            sampler: Sampler::default(),
        }
    }

    /// Where entries go.
    pub(crate) fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// How many panics were caught.
    pub(crate) fn count(&self) -> u64 {
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
        let (Some(pool), Some(skipped)) = (&self.pool, self.sampler.due()) else {
            return;
        };
        let entry = Entry::new(Actor::System, "extension.panic", Outcome::Failed)
            .extension(extension.as_str())
            .detail(json!({"place": place, "message": text, "unaudited_before": skipped}));
        audit_later(pool, entry);
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

pub(crate) use crate::config::BreakerSettings;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What a failure did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Still closed (or already open).
    Counted,
    /// It opened: routes answer 503 and hooks are skipped until the cool-down has passed.
    Opened,
    /// It opened once too often within the trips window: disable the extension.
    Disable,
}

/// One extension's circuit breaker. Closed, a check is one atomic load.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    epoch: Instant,
    state: std::sync::atomic::AtomicU8,
    opened_at: AtomicU64,
    /// Failure times (ms since `epoch`) within the window; touched only on failures.
    recent: std::sync::Mutex<std::collections::VecDeque<u64>>,
    /// When it opened (ms since `epoch`), within the trips window.
    trips: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            epoch: Instant::now(),
            state: std::sync::atomic::AtomicU8::new(CLOSED),
            opened_at: AtomicU64::new(0),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
            trips: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Closes it and forgets past failures and openings (an administrator enabled the
    /// extension again).
    pub(crate) fn reset(&self) {
        self.state.store(CLOSED, Ordering::Relaxed);
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.trips.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Whether calls may go through: closed, half-open, or open past its cool-down (which
    /// makes it half-open).
    pub(crate) fn allows(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            CLOSED => true,
            OPEN => {
                let opened = self.opened_at.load(Ordering::Relaxed);
                if self.now().saturating_sub(opened) < self.settings.cooldown_ms {
                    return false;
                }
                let _ = self.state.compare_exchange(
                    OPEN,
                    HALF_OPEN,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                true
            }
            _ => true,
        }
    }

    /// Whether it is open, and for how many more milliseconds.
    pub(crate) fn open_for_ms(&self) -> Option<u64> {
        if self.state.load(Ordering::Relaxed) != OPEN {
            return None;
        }
        let opened = self.opened_at.load(Ordering::Relaxed);
        let left = (opened + self.settings.cooldown_ms).saturating_sub(self.now());
        (left > 0).then_some(left)
    }

    /// "closed", "open" or "half_open".
    pub(crate) fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            CLOSED => "closed",
            OPEN => "open",
            _ => "half_open",
        }
    }

    /// A call succeeded: a half-open breaker closes.
    pub(crate) fn success(&self) {
        if self.state.load(Ordering::Relaxed) == HALF_OPEN
            && self
                .state
                .compare_exchange(HALF_OPEN, CLOSED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// A call failed (a panic or a time-out).
    pub(crate) fn failure(&self) -> Verdict {
        if self.settings.failures == 0 {
            return Verdict::Counted;
        }
        let now = self.now();
        let state = self.state.load(Ordering::Relaxed);
        let trip = match state {
            // The probe after the cool-down failed: open again at once.
            HALF_OPEN => true,
            OPEN => false,
            _ => {
                let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                recent.push_back(now);
                while recent
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) > self.settings.window_ms)
                {
                    recent.pop_front();
                }
                recent.len() as u32 >= self.settings.failures
            }
        };
        if !trip
            || self
                .state
                .compare_exchange(state, OPEN, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Verdict::Counted;
        }
        self.opened_at.store(now, Ordering::Relaxed);
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let trips = {
            let mut trips = self.trips.lock().unwrap_or_else(|p| p.into_inner());
            trips.push_back(now);
            while trips
                .front()
                .is_some_and(|t| now.saturating_sub(*t) > self.settings.trips_window_ms)
            {
                trips.pop_front();
            }
            trips.len() as u32
        };
        if self.settings.trips_to_disable > 0 && trips >= self.settings.trips_to_disable {
            Verdict::Disable
        } else {
            Verdict::Opened
        }
    }
}

#[cfg(test)]
mod breaker_tests {
    use super::*;

    fn breaker(cooldown_ms: u64) -> Breaker {
        Breaker::new(BreakerSettings {
            failures: 3,
            window_ms: 60_000,
            cooldown_ms,
            trips_to_disable: 3,
            trips_window_ms: 3_600_000,
        })
    }

    #[test]
    fn opens_after_enough_failures_half_opens_after_the_cool_down_and_closes_on_success() {
        let b = breaker(0);
        assert_eq!(b.failure(), Verdict::Counted);
        assert_eq!(b.failure(), Verdict::Counted);
        assert_eq!(b.failure(), Verdict::Opened);
        assert_eq!(b.state(), "open");
        assert!(b.allows(), "a cool-down of 0 lets the next call probe");
        assert_eq!(b.state(), "half_open");
        b.success();
        assert_eq!(b.state(), "closed");
        for _ in 0..2 {
            b.failure();
        }
        assert_eq!(b.failure(), Verdict::Opened, "second opening");
    }

    #[test]
    fn a_failed_probe_reopens_and_repeated_opening_disables() {
        let b = breaker(60_000);
        for _ in 0..3 {
            b.failure();
        }
        assert!(!b.allows());
        assert!(b.open_for_ms().is_some());
        let b = breaker(0);
        for _ in 0..3 {
            b.failure();
        }
        assert!(b.allows());
        assert_eq!(
            b.failure(),
            Verdict::Opened,
            "the probe failed: second opening"
        );
        assert!(b.allows());
        assert_eq!(
            b.failure(),
            Verdict::Disable,
            "third opening within the hour"
        );
    }
}
