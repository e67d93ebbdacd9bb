//! Properties of [`RateLimits`] on governor's fake clock, with random rates, random arrival
//! times (nanosecond steps, often simultaneous) and random clients.
//!
//! The bound. governor's GCRA with `Quota::per_second(r).allow_burst(b)` has the emission
//! interval `T = ⌊10⁹ / r⌋` ns (`Quota::replenish_interval`) and the tolerance
//! `τ = (b − 1)·T`; a request at `t` conforms iff `t ≥ TAT − τ`, and each conforming one
//! moves the theoretical arrival time to `TAT' = max(TAT, t) + T`. So if requests at
//! `s₁ ≤ … ≤ sₙ` are admitted, `TAT` before the n-th is at least `s₁ + (n − 1)·T`, and
//! `sₙ ≥ s₁ + (n − 1)·T − (b − 1)·T`, that is `n ≤ b + ⌊(sₙ − s₁) / T⌋`: in ANY window
//! `[t, t + W]`, at most `b + ⌊W / T⌋` requests are admitted. (`⌊W / T⌋` can exceed
//! `⌊W·r⌋` by one, because governor rounds `T` down to whole nanoseconds; the property
//! uses the interval governor really enforces.) Checking every pair of admitted requests
//! checks every window, since the fullest window starts and ends at admitted requests.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;
use governor::clock::FakeRelativeClock;
use proptest::prelude::*;
use uuid::Uuid;

use super::{Client, Limited, Rate, RateLimits};

/// A limit (sometimes off: `per_second` 0).
fn rate() -> impl Strategy<Value = Rate> {
    prop_oneof![
        1 => Just(Rate { per_second: 0, burst: 0 }),
        6 => (1u32..=50, 0u32..=8).prop_map(|(per_second, burst)| Rate { per_second, burst }),
    ]
}

/// Requests: nanoseconds since the previous one (often 0: simultaneous) and a client.
fn requests() -> impl Strategy<Value = Vec<(u64, usize)>> {
    let gap = prop_oneof![2 => Just(0u64), 3 => 0u64..50_000_000, 1 => 0u64..2_000_000_000];
    prop::collection::vec((gap, 0usize..3), 1..120)
}

fn client(k: usize) -> Client {
    match k {
        0 => Client::Unknown,
        1 => Client::User(Uuid::from_u128(1)),
        _ => Client::Address("192.0.2.7".parse().expect("an address")),
    }
}

/// The emission interval governor enforces for `rate`, and its burst.
fn gcra(rate: Rate) -> Option<(u64, u64)> {
    let per_second = NonZeroU32::new(rate.per_second)?;
    let t = Quota::per_second(per_second)
        .replenish_interval()
        .as_nanos() as u64;
    Some((t, u64::from(rate.burst.max(1))))
}

/// Fresh limits on a fake clock, the clock, and each request's time (ns) and outcome.
type Run = (
    RateLimits<FakeRelativeClock>,
    FakeRelativeClock,
    Vec<(u64, Result<(), Limited>)>,
);

/// Runs `requests` through fresh limits.
fn run(rates: (Rate, Rate), requests: &[(u64, usize)]) -> Run {
    let clock = FakeRelativeClock::default();
    let limits = RateLimits::with_clock(rates.0, rates.1, clock.clone());
    let mut now = 0;
    let outcomes = requests
        .iter()
        .map(|&(gap, k)| {
            clock.advance(Duration::from_nanos(gap));
            now += gap;
            (now, limits.check(client(k)))
        })
        .collect();
    (limits, clock, outcomes)
}

/// No window holds more admitted requests (at `times`, ascending) than the bound allows.
fn assert_bound(times: &[u64], (t, burst): (u64, u64), what: &str) -> Result<(), TestCaseError> {
    for (i, first) in times.iter().enumerate() {
        for (j, last) in times.iter().enumerate().skip(i) {
            let admitted = (j - i + 1) as u64;
            let allowed = burst + (last - first) / t;
            prop_assert!(
                admitted <= allowed,
                "{}: {} admitted in [{}, {}] ns, at most {} allowed (T = {} ns, burst {})",
                what,
                admitted,
                first,
                last,
                allowed,
                t,
                burst
            );
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn no_window_admits_more_than_the_quota(
        all in rate(), each in rate(), requests in requests()
    ) {
        let (_, _, outcomes) = run((all, each), &requests);
        let admitted: Vec<(u64, usize)> = outcomes
            .iter()
            .zip(&requests)
            .filter(|((_, outcome), _)| outcome.is_ok())
            .map(|((time, _), &(_, k))| (*time, k))
            .collect();
        if let Some(limit) = gcra(all) {
            let times: Vec<u64> = admitted.iter().map(|(t, _)| *t).collect();
            assert_bound(&times, limit, "extension-wide")?;
        } else if gcra(each).is_none() {
            prop_assert_eq!(admitted.len(), requests.len(), "no limit refuses nothing");
        }
        if let Some(limit) = gcra(each) {
            for k in 0..3 {
                let times: Vec<u64> =
                    admitted.iter().filter(|(_, c)| *c == k).map(|(t, _)| *t).collect();
                assert_bound(&times, limit, &format!("client {k}"))?;
            }
        }
        for (_, outcome) in &outcomes {
            if let Err(refused) = outcome {
                let rate = if refused.scope == "extension" { all } else { each };
                prop_assert_eq!(refused.limit, rate.burst, "the limit reported is the refusing one's burst");
                prop_assert!(refused.retry_after > Duration::ZERO, "a refusal says to wait");
            }
        }
    }

    #[test]
    fn waiting_retry_after_gets_past_the_limit_that_refused(
        all in rate(), each in rate(), requests in requests()
    ) {
        let (limits, clock, outcomes) = run((all, each), &requests);
        let (_, Err(refused)) = outcomes.last().expect("one request at least") else {
            return Ok(());
        };
        let k = requests.last().expect("one request at least").1;
        clock.advance(refused.retry_after);
        let retried = limits.check(client(k));
        if let Err(again) = retried {
            prop_assert_ne!(
                again.scope, refused.scope,
                "refused again by the {} limit after waiting its retry_after {:?}",
                refused.scope, refused.retry_after
            );
            prop_assert!(
                gcra(all).is_some() && gcra(each).is_some(),
                "with one limit, waiting retry_after is enough"
            );
        }
    }

    /// Per-client limits exist so that one client cannot use up an extension for everyone:
    /// a request its client's limit refuses must not take from the extension-wide limit.
    /// Without those requests, every other request has the same outcome.
    #[test]
    fn a_request_refused_per_client_costs_the_others_nothing(
        all in rate(), each in rate(), requests in requests()
    ) {
        let (_, _, outcomes) = run((all, each), &requests);
        let refused_per_client = |o: &Result<(), Limited>| {
            o.as_ref().err().is_some_and(|l| l.scope == "client")
        };
        // The refused requests' waiting time moves to the next request.
        let mut others: Vec<(u64, usize)> = Vec::new();
        let mut expected = Vec::new();
        let mut carried = 0;
        for ((gap, k), (_, outcome)) in requests.iter().zip(&outcomes) {
            carried += gap;
            if !refused_per_client(outcome) {
                others.push((carried, *k));
                expected.push(outcome.as_ref().map_err(|l| l.scope).copied());
                carried = 0;
            }
        }
        let (_, _, without) = run((all, each), &others);
        let without: Vec<Result<(), &str>> =
            without.iter().map(|(_, o)| o.as_ref().map_err(|l| l.scope).copied()).collect();
        prop_assert_eq!(without, expected);
    }
}

#[test]
fn the_fake_clock_drives_the_real_buckets() {
    let rate = Rate {
        per_second: 2,
        burst: 1,
    };
    let (limits, clock, outcomes) = run(
        (
            rate,
            Rate {
                per_second: 0,
                burst: 0,
            },
        ),
        &[(0, 0), (0, 0)],
    );
    assert!(outcomes[0].1.is_ok());
    let refused = outcomes[1].1.expect_err("the burst is one");
    assert_eq!(refused.retry_after, Duration::from_millis(500));
    clock.advance(Duration::from_millis(499));
    assert!(limits.check(client(0)).is_err());
    clock.advance(Duration::from_millis(1));
    assert!(limits.check(client(0)).is_ok());
}
