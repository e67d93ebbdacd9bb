//! The soak's report: markdown for people (stdout and `report.md`), the per-interval figures
//! as CSV (`intervals.csv`), and the verdict on each goal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::Settings;
use crate::stats::{Class, ClassTotals, quantile, slope};

/// One row of the "over time" table: the interval that ended at `minute`.
#[derive(Debug, Clone)]
pub struct Interval {
    pub minute: f64,
    pub requests: u64,
    /// Failures outside the faulty extension.
    pub failures: u64,
    /// Latency of every class but the faulty one, in ms.
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub faulty_p99: f64,
    pub rss_mib: f64,
    /// PostgreSQL client backends (the server's pools plus this driver's one connection).
    pub backends: i64,
    /// Distinct deliveries received so far, tracking events accepted so far.
    pub deliveries: u64,
    pub tracked: u64,
}

impl Interval {
    pub fn summary(&self) -> String {
        format!(
            "minute {:.1}: {} requests, {} failures, p99 {:.1} ms, RSS {:.1} MiB, {} backends, {} deliveries",
            self.minute,
            self.requests,
            self.failures,
            self.p99,
            self.rss_mib,
            self.backends,
            self.deliveries
        )
    }
}

/// `intervals.csv`, written as the run goes (a cut-short run keeps its rows).
pub struct Csv(std::fs::File);

impl Csv {
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(dir.join("intervals.csv"))?;
        writeln!(
            f,
            "minute,requests,failures,p50_ms,p99_ms,max_ms,faulty_p99_ms,rss_mib,pg_backends,deliveries,tracked"
        )?;
        Ok(Self(f))
    }

    pub fn write(&mut self, r: &Interval) -> anyhow::Result<()> {
        writeln!(
            self.0,
            "{:.2},{},{},{:.3},{:.3},{:.3},{:.3},{:.2},{},{},{}",
            r.minute,
            r.requests,
            r.failures,
            r.p50,
            r.p99,
            r.max,
            r.faulty_p99,
            r.rss_mib,
            r.backends,
            r.deliveries,
            r.tracked
        )?;
        Ok(())
    }
}

/// What is measured after the load: deliveries, stored events, the audit log, the stop.
#[derive(Debug)]
pub struct Finals {
    pub produced: u64,
    pub endpoints: u64,
    pub expected_deliveries: u64,
    pub missing_deliveries: u64,
    pub delivered_pairs: u64,
    pub receiver_requests: u64,
    pub bad_signatures: u64,
    pub bad_samples: Vec<String>,
    pub tracked: u64,
    pub stored: u64,
    pub drained_in: f64,
    pub rss_end_mib: f64,
    pub backends_end: i64,
    /// (action, result, count) of the audited actions the soak causes.
    pub audit: Vec<(String, String, i64)>,
    pub exit: Option<String>,
    pub exit_ok: bool,
    pub stop_secs: f64,
    pub log_warnings: u64,
    pub log_errors: u64,
    pub log_error_samples: Vec<String>,
}

pub struct Report {
    pub settings: Settings,
    pub load_secs: f64,
    pub totals: BTreeMap<Class, ClassTotals>,
    pub intervals: Vec<Interval>,
    /// (seconds since the load started, RSS in MiB).
    pub rss: Vec<(f64, f64)>,
    pub finals: Finals,
    pub skipped: u64,
    pub operator: Vec<(String, u64)>,
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

impl Report {
    fn audit(&self, action: &str, result: &str) -> i64 {
        self.finals
            .audit
            .iter()
            .find(|(a, r, _)| a == action && r == result)
            .map_or(0, |(_, _, n)| *n)
    }

    fn operator(&self, name: &str) -> u64 {
        self.operator
            .iter()
            .find(|(k, _)| k.starts_with(name))
            .map_or(0, |(_, v)| *v)
    }

    /// The markdown report, and whether every goal was met.
    pub fn render(&self) -> (String, bool) {
        let mut s = String::new();
        let f = &self.finals;
        let healthy_failures: u64 = self
            .totals
            .iter()
            .filter(|(c, _)| **c != Class::Faulty)
            .map(|(_, t)| t.failures)
            .sum();
        let requests: u64 = self.totals.values().map(|t| t.requests).sum();
        let faulty = self.totals.get(&Class::Faulty).cloned().unwrap_or_default();
        let faulty_failed: u64 = faulty.expected.values().sum::<u64>() + faulty.failures;

        // RSS: the first interval is the warm-up; the trend is fitted to what follows.
        let warmup = self.settings.interval_secs as f64;
        let after: Vec<(f64, f64)> = self
            .rss
            .iter()
            .filter(|(t, _)| *t >= warmup)
            .map(|(t, m)| (t / 3600.0, *m))
            .collect();
        let rss_start = after.first().map_or(f64::NAN, |p| p.1);
        let rss_end = after.last().map_or(f64::NAN, |p| p.1);
        let trend = slope(&after);
        let half = after.len() / 2;
        let late = slope(&after[half..]);
        let rss_ok = after.len() >= 2 && trend <= self.settings.rss_slope_max;

        let reload_failed = self.audit("config.reload", "failed");
        let reload_ok = self.audit("config.reload", "ok");
        let invalid_writes = self.operator("host file rewrites (invalid)") as i64;
        let reloads_ok = reload_failed >= invalid_writes && reload_ok > 0;
        let delivered_ok = f.missing_deliveries == 0 && f.bad_signatures == 0 && f.produced > 0;
        let tracking_ok = f.stored == f.tracked && f.tracked > 0;
        let faults_ok = faulty
            .expected
            .get("500 (error or panic)")
            .copied()
            .unwrap_or(0)
            > 0;
        let goals = [
            healthy_failures == 0,
            rss_ok,
            delivered_ok,
            tracking_ok,
            reloads_ok,
            faults_ok,
            f.exit_ok,
        ];
        let all = goals.iter().all(|g| *g);

        let _ = writeln!(
            s,
            "## Goals\n\n| goal | result | |\n|---|---|---|\n\
             | no failed request outside the faulty extension | {healthy_failures} of {requests} | {} |\n\
             | no memory growth: RSS trend after warm-up ≤ {:.0} MiB/h | {trend:+.2} MiB/h ({rss_start:.1} → {rss_end:.1} MiB) | {} |\n\
             | events produced = delivered (× {} endpoints), signatures valid | {} events, {} of {} deliveries missing, {} bad signatures | {} |\n\
             | tracking events sent = stored | {} accepted, {} stored | {} |\n\
             | invalid host files refused, valid ones applied | {invalid_writes} invalid written, {reload_failed} refused, {reload_ok} applied | {} |\n\
             | the faulty extension really failed, contained | {faulty_failed} of {} requests failed | {} |\n\
             | the server stops cleanly on SIGTERM | {} in {:.1} s | {} |\n\n\
             **{}**\n",
            goal(healthy_failures == 0),
            self.settings.rss_slope_max,
            goal(rss_ok),
            f.endpoints,
            f.produced,
            f.missing_deliveries,
            f.expected_deliveries,
            f.bad_signatures,
            goal(delivered_ok),
            f.tracked,
            f.stored,
            goal(tracking_ok),
            goal(reloads_ok),
            faulty.requests,
            goal(faults_ok),
            f.exit.as_deref().unwrap_or("killed after 60 s"),
            f.stop_secs,
            goal(f.exit_ok),
            if all {
                "Every goal met."
            } else {
                "Some goals missed."
            },
        );

        let _ = writeln!(
            s,
            "## Requests by class ({:.1} min of load)\n\n\
             | class | requests | per s | ok | expected non-2xx | failures | statuses | p50 / p99 / max ms |\n\
             |---|---:|---:|---:|---|---:|---|---|",
            self.load_secs / 60.0
        );
        for class in Class::ALL {
            let Some(t) = self.totals.get(&class) else {
                continue;
            };
            let expected: Vec<String> = t
                .expected
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            let statuses: Vec<String> = t
                .statuses
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {v}",
                        if *k == 0 {
                            "none".into()
                        } else {
                            k.to_string()
                        }
                    )
                })
                .collect();
            let mut ms: Vec<f64> = t.latencies.iter().map(|&x| f64::from(x)).collect();
            let latency = format!(
                "{:.1} / {:.1} / {:.0}",
                quantile(&mut ms, 0.5),
                quantile(&mut ms, 0.99),
                quantile(&mut ms, 1.0)
            );
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {latency} |",
                class.name(),
                t.requests,
                t.requests as f64 / self.load_secs,
                t.ok,
                if expected.is_empty() {
                    "–".into()
                } else {
                    expected.join(", ")
                },
                t.failures,
                statuses.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "\n{} requests not sent because their class had 64 in flight already.\n",
            self.skipped
        );
        let samples: Vec<(&Class, &String)> = self
            .totals
            .iter()
            .flat_map(|(c, t)| t.samples.iter().map(move |x| (c, x)))
            .collect();
        if !samples.is_empty() {
            let _ = writeln!(s, "Unexpected answers (first few per class):\n");
            for (c, x) in samples {
                let _ = writeln!(s, "- {}: `{}`", c.name(), x.replace('`', "'"));
            }
            let _ = writeln!(s);
        }

        let _ = writeln!(
            s,
            "## Over time (every {} s; latency of every class but the faulty one)\n\n\
             | minute | requests | failures | p50 ms | p99 ms | max ms | faulty p99 ms | RSS MiB | PG backends | deliveries | tracked |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            self.settings.interval_secs
        );
        for r in &self.intervals {
            let _ = writeln!(
                s,
                "| {:.1} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {} | {} | {} |",
                r.minute,
                r.requests,
                r.failures,
                r.p50,
                r.p99,
                r.max,
                r.faulty_p99,
                r.rss_mib,
                r.backends,
                r.deliveries,
                r.tracked
            );
        }
        let _ = writeln!(
            s,
            "\nResident memory of the server (`VmRSS`, sampled every {} s): {:.1} MiB after the \
             warm-up (first interval), {:.1} MiB at the end of the load, {:.1} MiB after the \
             drain; least-squares trend after warm-up {trend:+.2} MiB/h (second half alone: \
             {late:+.2} MiB/h). PostgreSQL client backends after the drain: {}.\n",
            self.settings.rss_every_secs, rss_start, rss_end, f.rss_end_mib, f.backends_end
        );

        let _ = writeln!(
            s,
            "## Events and deliveries\n\n\
             - Webhooks: {} `user.*`/`storage.*` events in the outbox during the load, × {} \
             endpoints = {} deliveries expected; {} missing after the drain ({:.0} s). The \
             receiver got {} requests ({} distinct deliveries, including events from before \
             the load; repeats are at-least-once retries), {} with a bad signature.",
            f.produced,
            f.endpoints,
            f.expected_deliveries,
            f.missing_deliveries,
            f.drained_in,
            f.receiver_requests,
            f.delivered_pairs,
            f.bad_signatures,
        );
        for b in &f.bad_samples {
            let _ = writeln!(s, "  - bad: `{b}`");
        }
        let _ = writeln!(
            s,
            "- Analytics: {} tracking events accepted (202), {} stored.\n",
            f.tracked, f.stored
        );

        let _ = writeln!(
            s,
            "## Operator actions and the audit log\n\n| action | count |\n|---|---:|"
        );
        for (k, v) in &self.operator {
            let _ = writeln!(s, "| {k} | {v} |");
        }
        for (a, r, n) in &f.audit {
            let _ = writeln!(s, "| audit `{a}` {r} | {n} |");
        }
        let _ = writeln!(
            s,
            "\nServer log: {} warnings, {} errors (the faulty extension's panics and failures are \
             logged as such).",
            f.log_warnings, f.log_errors
        );
        for e in &f.log_error_samples {
            let _ = writeln!(s, "- `{}`", e.replace('`', "'"));
        }
        (s, all)
    }
}
