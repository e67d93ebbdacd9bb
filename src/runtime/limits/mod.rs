//! Rate limits per extension, with the `governor` crate's token buckets (GCRA): one for the
//! extension as a whole and one per client — the signed-in user, else the client's address.
//! A request the client's limit refuses does not count against the extension's.
//! Over a limit, a request to the extension's routes is answered 429 with `Retry-After` and
//! `RateLimit-*` headers, counted, and audited (sampled, so that a flood of refusals cannot
//! flood the audit log).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use uuid::Uuid;

/// Who a per-client limit counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    User(Uuid),
    Address(IpAddr),
    /// No address known (not over TCP): all such requests share one bucket.
    Unknown,
}

pub use crate::config::Rate;

/// The governor quota of a rate, `None` when it sets no limit.
fn quota(rate: Rate) -> Option<Quota> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let burst = NonZeroU32::new(rate.burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_second(per_second).allow_burst(burst))
}

/// The limits of one extension that a configuration reload changes, replaced as one value
/// (`Loaded::limits`, an arc-swap): whoever reads them sees those of one configuration,
/// never some of the old and some of the new.
#[derive(Debug)]
pub struct Live {
    /// Rate limits; a reload that leaves them as they are keeps them (and their buckets).
    pub rates: std::sync::Arc<RateLimits>,
    /// Requests its routes may serve at once.
    pub max_in_flight: usize,
    /// The handler time budget of one request (zero: none).
    pub cpu_budget: Duration,
}

impl Live {
    /// `name`'s limits in `settings`, with fresh buckets.
    pub(crate) fn of(settings: &crate::config::ExtensionsConfig, name: &str) -> Self {
        let limits = settings.resolve(name);
        Self {
            rates: std::sync::Arc::new(RateLimits::new(limits.rate, limits.client_rate)),
            max_in_flight: limits.max_in_flight,
            cpu_budget: limits.cpu_budget,
        }
    }
}

/// A refusal: how long to wait, and the burst of the limit that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub(crate) retry_after: Duration,
    pub(crate) limit: u32,
    /// `extension` or `client`.
    pub(crate) scope: &'static str,
}

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<C> =
    RateLimiter<Client, HashMapStateStore<Client>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One extension's limits. The clock is the monotonic one; tests use governor's
/// `FakeRelativeClock` to control time.
pub struct RateLimits<C: Clock = MonotonicClock> {
    /// As configured: in all, per client.
    rates: (Rate, Rate),
    clock: C,
    extension: Option<(Direct<C>, u32)>,
    per_client: Option<(Keyed<C>, u32)>,
}

impl<C: Clock> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("extension", &self.extension.as_ref().map(|(_, b)| b))
            .field("per_client", &self.per_client.as_ref().map(|(_, b)| b))
            .finish()
    }
}

impl RateLimits {
    pub fn new(extension: Rate, per_client: Rate) -> Self {
        Self::with_clock(extension, per_client, MonotonicClock)
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits that read the time from `clock`.
    pub(crate) fn with_clock(extension: Rate, per_client: Rate, clock: C) -> Self {
        Self {
            rates: (extension, per_client),
            extension: quota(extension).map(|q| {
                (
                    RateLimiter::direct_with_clock(q, clock.clone()),
                    extension.burst,
                )
            }),
            per_client: quota(per_client).map(|q| {
                (
                    RateLimiter::new(q, HashMapStateStore::default(), clock.clone()),
                    per_client.burst,
                )
            }),
            clock,
        }
    }

    /// Takes one token for `client`, or says how long to wait.
    ///
    /// The client's own limit is checked first: a request it refuses takes nothing from the
    /// extension-wide limit, so a client over its limit cannot use the extension up for the
    /// others. (A request the extension-wide limit refuses has then taken a token of its
    /// client's: governor has no check that does not take one.)
    pub fn check(&self, client: Client) -> Result<(), Limited> {
        if let Some((limiter, burst)) = &self.per_client
            && let Err(not_until) = limiter.check_key(&client)
        {
            return Err(Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                limit: *burst,
                scope: "client",
            });
        }
        if let Some((limiter, burst)) = &self.extension
            && let Err(not_until) = limiter.check()
        {
            return Err(Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                limit: *burst,
                scope: "extension",
            });
        }
        Ok(())
    }

    /// Forgets clients whose buckets are full again (keeps memory bounded).
    pub(crate) fn forget_idle_clients(&self) {
        if let Some((limiter, _)) = &self.per_client {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The limits as configured: in all, per client.
    pub fn rates(&self) -> (Rate, Rate) {
        self.rates
    }

    /// Clients currently tracked.
    pub(crate) fn clients(&self) -> usize {
        self.per_client.as_ref().map_or(0, |(l, _)| l.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_bucket_within_the_extensions() {
        let limits = RateLimits::new(
            Rate {
                per_second: 1,
                burst: 5,
            },
            Rate {
                per_second: 1,
                burst: 2,
            },
        );
        let a = Client::User(Uuid::nil());
        let b = Client::Address("127.0.0.1".parse().unwrap());
        assert!(limits.check(a).is_ok());
        assert!(limits.check(a).is_ok());
        let refused = limits.check(a).unwrap_err();
        assert_eq!((refused.scope, refused.limit), ("client", 2));
        assert!(refused.retry_after > Duration::ZERO);
        assert!(limits.check(b).is_ok());
        assert!(limits.check(b).is_ok());
        // Four tokens taken from the extension's bucket: the refusal took none.
        assert!(limits.check(Client::Unknown).is_ok());
        let refused = limits.check(Client::Unknown).unwrap_err();
        assert_eq!(refused.scope, "extension");
        assert_eq!(limits.clients(), 3);
    }

    #[test]
    fn zero_means_no_limit() {
        let off = Rate {
            per_second: 0,
            burst: 0,
        };
        let limits = RateLimits::new(off, off);
        for _ in 0..1000 {
            assert!(limits.check(Client::Unknown).is_ok());
        }
    }
}

/// A future whose polling time is metered: once the time spent inside its `poll` adds up to
/// more than `budget`, it is not polled again — the caller drops it, which cancels the work —
/// and it resolves to `Err(spent)`. Waiting (for I/O, timers, locks) costs nothing; only the
/// time the code runs counts. A single poll that never returns cannot be stopped from inside
/// the process: the budget is checked when it returns.
#[derive(Debug)]
pub(crate) struct Metered<'s, F> {
    inner: F,
    budget: Duration,
    spent: Duration,
    allocated: Option<&'s std::sync::atomic::AtomicU64>,
}

impl<'s, F> Metered<'s, F> {
    /// Runs `inner` within `budget` of polling time (zero: no budget).
    pub(crate) fn new(inner: F, budget: Duration) -> Self {
        Self {
            inner,
            budget,
            spent: Duration::ZERO,
            allocated: None,
        }
    }

    /// Also adds what each poll allocates to `allocated` (an extension's byte counter).
    pub(crate) fn counting(mut self, allocated: &'s std::sync::atomic::AtomicU64) -> Self {
        self.allocated = Some(allocated);
        self
    }
}

impl<F: std::future::Future + Unpin> std::future::Future for Metered<'_, F> {
    type Output = Result<F::Output, Duration>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let started = std::time::Instant::now();
        let since = crate::alloc::allocated();
        let polled = std::pin::Pin::new(&mut this.inner).poll(cx);
        if let Some(counter) = this.allocated {
            let bytes = crate::alloc::allocated().wrapping_sub(since);
            if bytes != 0 {
                counter.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
            }
        }
        this.spent += started.elapsed();
        match polled {
            std::task::Poll::Ready(value) => std::task::Poll::Ready(Ok(value)),
            std::task::Poll::Pending if !this.budget.is_zero() && this.spent > this.budget => {
                std::task::Poll::Ready(Err(this.spent))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

#[cfg(test)]
mod metered_tests {
    use super::*;

    #[tokio::test]
    async fn waiting_is_free_and_running_over_the_budget_cancels() {
        let sleeps = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            1
        });
        assert_eq!(
            Metered::new(sleeps, Duration::from_millis(20)).await,
            Ok(1),
            "sleeping costs no budget"
        );
        let spins = Box::pin(async {
            loop {
                let until = std::time::Instant::now() + Duration::from_millis(5);
                while std::time::Instant::now() < until {}
                tokio::task::yield_now().await;
            }
        });
        let spent: Result<(), Duration> = Metered::new(spins, Duration::from_millis(20)).await;
        let spent = spent.unwrap_err();
        assert!(spent > Duration::from_millis(20) && spent < Duration::from_millis(200));
    }
}

#[cfg(test)]
mod properties;
