//! Health monitoring. Every `health_interval_ms`, each enabled, running extension's
//! `health()` runs under `health_timeout_ms`; a time-out or a panic counts as critical. Each
//! extension keeps a bounded history of its checks ([`HISTORY`]). Its reported status respects
//! dependencies: an extension whose dependency is critical is at least degraded. Critical
//! `health_critical_to_disable` times in a row disables it automatically (persisted, audited,
//! announced). The latest check is also written to `solobase.extensions.health` for the CLI.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::Serialize;
use solobase_sdk::HealthStatus;
use solobase_sdk::host::ErasedExtension;
use time::OffsetDateTime;

/// How many checks each extension remembers.
pub(crate) const HISTORY: usize = 20;

/// One health check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Check {
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) at: OffsetDateTime,
    pub(crate) status: HealthStatus,
    /// Why, when not healthy.
    pub(crate) message: String,
    pub(crate) took_ms: u64,
}

/// An extension's recent checks.
#[derive(Debug, Default)]
pub(crate) struct HealthLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    history: VecDeque<Check>,
    critical_in_a_row: u32,
}

impl HealthLog {
    /// Records `check`; returns how many checks in a row were critical.
    pub fn record(&self, check: Check) -> u32 {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.critical_in_a_row = if check.status == HealthStatus::Critical {
            inner.critical_in_a_row + 1
        } else {
            0
        };
        if inner.history.len() == HISTORY {
            inner.history.pop_front();
        }
        inner.history.push_back(check);
        inner.critical_in_a_row
    }

    /// The latest check.
    pub(crate) fn latest(&self) -> Option<Check> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.history.back().cloned()
    }

    /// The recent checks, oldest first.
    pub(crate) fn history(&self) -> Vec<Check> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.history.iter().cloned().collect()
    }

    /// Forgets the critical streak (the extension was enabled again).
    pub(crate) fn reset_streak(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .critical_in_a_row = 0;
    }
}

/// Runs `ext`'s health check within `limit`.
pub async fn check(ext: &dyn ErasedExtension, limit: Duration) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, AssertUnwindSafe(ext.health()).catch_unwind()).await;
    let (status, message) = match outcome {
        Ok(Ok(health)) => (health.status, health.message),
        Ok(Err(payload)) => (
            HealthStatus::Critical,
            format!(
                "the health check panicked: {}",
                super::faults::message(payload.as_ref())
            ),
        ),
        Err(_) => (
            HealthStatus::Critical,
            format!(
                "the health check did not answer within {} ms",
                limit.as_millis()
            ),
        ),
    };
    Check {
        at: OffsetDateTime::now_utc(),
        status,
        message,
        took_ms: started.elapsed().as_millis() as u64,
    }
}

/// An extension's status as reported: its own, made at least degraded by a critical
/// dependency (named in the message).
pub(crate) fn with_dependencies(
    own: HealthStatus,
    message: String,
    critical_dependency: Option<&str>,
) -> (HealthStatus, String) {
    match critical_dependency {
        Some(dep) if own < HealthStatus::Degraded => (
            HealthStatus::Degraded,
            format!("its dependency {dep} is critical"),
        ),
        _ => (own, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(status: HealthStatus) -> Check {
        Check {
            at: OffsetDateTime::now_utc(),
            status,
            message: String::new(),
            took_ms: 0,
        }
    }

    #[test]
    fn the_history_is_bounded_and_streaks_of_critical_checks_are_counted() {
        let log = HealthLog::default();
        for _ in 0..HISTORY + 5 {
            log.record(at(HealthStatus::Healthy));
        }
        assert_eq!(log.history().len(), HISTORY);
        assert_eq!(log.record(at(HealthStatus::Critical)), 1);
        assert_eq!(log.record(at(HealthStatus::Critical)), 2);
        assert_eq!(log.record(at(HealthStatus::Degraded)), 0);
        assert_eq!(log.latest().unwrap().status, HealthStatus::Degraded);
    }

    #[test]
    fn a_critical_dependency_degrades_a_healthy_extension_but_not_a_worse_one() {
        let (s, m) = with_dependencies(HealthStatus::Healthy, String::new(), Some("db"));
        assert_eq!(s, HealthStatus::Degraded);
        assert!(m.contains("db"));
        let (s, _) = with_dependencies(HealthStatus::Critical, "x".into(), Some("db"));
        assert_eq!(s, HealthStatus::Critical);
        let (s, _) = with_dependencies(HealthStatus::Healthy, String::new(), None);
        assert_eq!(s, HealthStatus::Healthy);
    }
}
