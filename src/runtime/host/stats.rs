//! Where extension code is called ([`Slot`]) and the counters kept per extension
//! ([`Stats`]), read by status pages and metrics.

use super::*;

/// Where extension code is called, for counters and metrics: a hook point, a middleware half,
/// or an event hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u8);

/// How many [`Slot`]s there are.
pub const SLOTS: usize = HookPoint::ALL.len() + 3;

impl Slot {
    pub(crate) const MIDDLEWARE_REQUEST: Slot = Slot(HookPoint::ALL.len() as u8);
    pub(crate) const MIDDLEWARE_RESPONSE: Slot = Slot(HookPoint::ALL.len() as u8 + 1);
    pub(crate) const EVENT: Slot = Slot(HookPoint::ALL.len() as u8 + 2);

    /// Every slot.
    pub(crate) fn all() -> impl Iterator<Item = Slot> {
        (0..SLOTS as u8).map(Slot)
    }

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }

    /// Its name in logs, audit entries and metrics.
    pub(crate) fn name(self) -> &'static str {
        match HookPoint::ALL.get(self.index()) {
            Some(point) => point.as_str(),
            None if self == Self::MIDDLEWARE_REQUEST => "middleware_request",
            None if self == Self::MIDDLEWARE_RESPONSE => "middleware_response",
            None => "on_event",
        }
    }
}

impl From<HookPoint> for Slot {
    fn from(point: HookPoint) -> Self {
        Slot(point as u8)
    }
}

thread_local! {
    static HOOK_TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this request (or hook call outside a request) is one of those whose hook durations
/// are measured: one in [`crate::metrics::HOOK_SAMPLE`] on each thread.
#[inline]
pub fn time_this_request() -> bool {
    HOOK_TICK.with(|tick| {
        let n = tick.get().wrapping_add(1);
        tick.set(n);
        n % crate::metrics::HOOK_SAMPLE == 0
    })
}

/// Counters per extension, read by status pages and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Calls of its code, by [`Slot`].
    pub(crate) hooks: [AtomicU64; SLOTS],
    pub(crate) hook_timeouts: AtomicU64,
    /// Requests refused because `max_in_flight` were being served.
    pub(crate) busy: AtomicU64,
    /// Requests refused by a rate limit.
    pub(crate) rate_limited: AtomicU64,
    /// Requests whose handler ran over its time budget and was cancelled.
    pub(crate) over_budget: AtomicU64,
    /// Bytes allocated while its handlers and hooks ran (see [`crate::alloc`]).
    pub(crate) allocated_bytes: AtomicU64,
    /// Background jobs it finished, and runs that failed.
    pub(crate) jobs_done: AtomicU64,
    pub(crate) jobs_failed: AtomicU64,
}

impl Stats {
    /// Hook, middleware and event-hook calls in all.
    pub(crate) fn hook_calls(&self) -> u64 {
        self.hooks.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Attributes what this thread allocated since `since` (an [`crate::alloc::allocated`]
    /// reading).
    #[inline]
    pub(crate) fn allocated_since(&self, since: u64) {
        let bytes = crate::alloc::allocated().wrapping_sub(since);
        if bytes != 0 {
            self.allocated_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// The histograms of sampled hook durations of `extension`, one per [`Slot`].
pub fn hook_durations(
    metrics: &crate::metrics::Metrics,
    extension: &str,
) -> Vec<metrics::Histogram> {
    Slot::all()
        .map(|slot| {
            metrics.histogram(
                "extension_hook_duration_seconds",
                vec![
                    metrics::Label::new("extension", extension.to_owned()),
                    metrics::Label::new("hook", slot.name()),
                ],
            )
        })
        .collect()
}
