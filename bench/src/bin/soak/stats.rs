//! What the soak counts: every request's class, answer and latency, judged as it comes back;
//! per-class totals for the whole run and per-interval latency windows for the table.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

/// The kinds of load; each has its own rate and its own totals in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// `/healthz`, `/api/v1/auth/me`, `/api/v1/extensions`.
    Host,
    /// Sign-up and login (argon2: the CPU-heavy part of the API).
    Auth,
    /// Upload, download and delete through `/api/v1/storage`.
    Storage,
    /// The webhooks and analytics extensions' own APIs.
    Extension,
    /// `POST /ext/analytics/api/track`.
    Tracking,
    /// Configuration changes, enable and disable.
    Admin,
    /// The probe extension, made to fail (its answers never count against the goals).
    Faulty,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Host,
        Class::Auth,
        Class::Storage,
        Class::Extension,
        Class::Tracking,
        Class::Admin,
        Class::Faulty,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Host => "host routes",
            Class::Auth => "sign-up / login",
            Class::Storage => "storage",
            Class::Extension => "extension routes",
            Class::Tracking => "tracking",
            Class::Admin => "admin (config, enable/disable)",
            Class::Faulty => "faulty extension (probe)",
        }
    }
}

/// How an answer is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The answer the request should get.
    Ok,
    /// A documented answer that is not a success, counted by kind: the disabled extension's
    /// 404, an invalid configuration's 400, the faulty extension's 500 or 503.
    Expected(&'static str),
    /// Anything else: a failure, with a sample kept.
    Failure,
}

/// One class's totals over the whole run.
#[derive(Debug, Default, Clone)]
pub struct ClassTotals {
    pub requests: u64,
    pub ok: u64,
    pub expected: BTreeMap<&'static str, u64>,
    pub failures: u64,
    /// Answers by status (0: no answer — connection error or time-out).
    pub statuses: BTreeMap<u16, u64>,
    /// The first few failures: request, status and the start of the body.
    pub samples: Vec<String>,
    /// Every answer's latency, in ms.
    pub latencies: Vec<f32>,
}

/// One interval's latencies, in milliseconds.
#[derive(Debug, Default)]
pub struct Window {
    /// Every class but the faulty one.
    pub healthy: Vec<f64>,
    pub faulty: Vec<f64>,
    pub failures: u64,
}

#[derive(Debug, Default)]
struct Inner {
    classes: BTreeMap<Class, ClassTotals>,
    window: Window,
}

/// Shared by every load task.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

const SAMPLES: usize = 8;

impl Stats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one answer; `sample` describes it, called only for a failure worth keeping.
    pub fn record(
        &self,
        class: Class,
        status: u16,
        started: Instant,
        outcome: Outcome,
        sample: impl FnOnce() -> String,
    ) {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut inner = self.lock();
        let totals = inner.classes.entry(class).or_default();
        totals.requests += 1;
        *totals.statuses.entry(status).or_default() += 1;
        totals.latencies.push(ms as f32);
        let failed = match outcome {
            Outcome::Ok => {
                totals.ok += 1;
                false
            }
            Outcome::Expected(kind) => {
                *totals.expected.entry(kind).or_default() += 1;
                false
            }
            Outcome::Failure => {
                totals.failures += 1;
                if totals.samples.len() < SAMPLES {
                    totals.samples.push(sample());
                }
                true
            }
        };
        if class == Class::Faulty {
            inner.window.faulty.push(ms);
        } else {
            inner.window.healthy.push(ms);
            if failed {
                inner.window.failures += 1;
            }
        }
    }

    /// The interval's latencies, starting a new interval.
    pub fn take_window(&self) -> Window {
        std::mem::take(&mut self.lock().window)
    }

    pub fn totals(&self) -> BTreeMap<Class, ClassTotals> {
        self.lock().classes.clone()
    }

    /// Answers of `class` judged `Ok` so far.
    pub fn ok(&self, class: Class) -> u64 {
        self.lock().classes.get(&class).map_or(0, |t| t.ok)
    }
}

/// The `p`-quantile (0–1) of `v`, sorting it; NaN when empty.
pub fn quantile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Least-squares slope of `y` over `x`.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { f64::NAN } else { sxy / sxx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_quantiles() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        assert!(slope(&[(1.0, 1.0)]).is_nan());
        let mut v: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), 51.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut v, 1.0), 100.0);
    }
}
