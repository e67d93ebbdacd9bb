//! The extension's own metrics (`ctx.metrics`): counters, gauges and histograms exported on
//! the host's `/metrics` as `solobase_ext_<extension>_<name>` (a counter's name ends in
//! `_total`), listed by `solobase extensions metrics`, next to the host's own series.
//!
//! Labels are declared up front with every value they may take: a family ([`CounterVec`],
//! [`GaugeVec`]) answers `with(value)` for a declared value, and counts anything else under
//! `other`. However hostile the input an extension labels by, its series stay bounded.
//!
//! ```no_run
//! # use solobase_sdk::prelude::*;
//! # fn sketch(ctx: &InitContext<()>) -> Result<()> {
//! let accepted = ctx.metrics.counter("events_accepted", "Events accepted for writing")?;
//! accepted.increment(1);
//! let deliveries = ctx.metrics.counter_vec(
//!     "deliveries", "Deliveries, by outcome", "outcome", &["succeeded", "failed"])?;
//! deliveries.with("succeeded").increment(1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{ExtensionError, Result};

/// The value a label takes when the extension passes one it did not declare.
pub const OTHER: &str = "other";

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Set to a value.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

/// One series to register: its full name, help text and labels.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub labels: Vec<(String, String)>,
}

/// Where an extension's metrics go: the host's recorder (or the testing kit's). Not for
/// extensions to implement.
#[doc(hidden)]
pub trait MetricsSink: Send + Sync {
    /// Registers `series`; returns the function that records each observation.
    fn register(&self, series: &Series) -> Arc<dyn Fn(f64) + Send + Sync>;
}

/// The extension's metrics service.
#[derive(Clone)]
pub struct Metrics {
    extension: String,
    sink: Arc<dyn MetricsSink>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("extension", &self.extension)
            .finish_non_exhaustive()
    }
}

/// A counter: only goes up.
#[derive(Clone)]
pub struct Counter {
    value: Arc<AtomicU64>,
    record: Arc<dyn Fn(f64) + Send + Sync>,
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counter({})", self.get())
    }
}

impl Counter {
    /// Adds `n`.
    pub fn increment(&self, n: u64) {
        let total = self.value.fetch_add(n, Ordering::Relaxed) + n;
        (self.record)(total as f64);
    }

    /// Its value.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A gauge: set to a value.
#[derive(Clone)]
pub struct Gauge {
    value: Arc<AtomicU64>,
    record: Arc<dyn Fn(f64) + Send + Sync>,
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gauge({})", self.get())
    }
}

impl Gauge {
    /// Sets it.
    pub fn set(&self, value: f64) {
        self.value.store(value.to_bits(), Ordering::Relaxed);
        (self.record)(value);
    }

    /// Its value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }
}

/// A histogram of observations (seconds get the host's buckets when the name ends in
/// `_seconds`).
#[derive(Clone)]
pub struct Histogram {
    record: Arc<dyn Fn(f64) + Send + Sync>,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Histogram")
    }
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, value: f64) {
        (self.record)(value);
    }
}

/// Counters by the value of one label, declared up front.
#[derive(Debug, Clone)]
pub struct CounterVec(BTreeMap<String, Counter>);

impl CounterVec {
    /// The counter for `value`, or the one for [`OTHER`] when `value` was not declared.
    pub fn with(&self, value: &str) -> &Counter {
        self.0.get(value).unwrap_or_else(|| &self.0[OTHER])
    }
}

/// Gauges by the value of one label, declared up front.
#[derive(Debug, Clone)]
pub struct GaugeVec(BTreeMap<String, Gauge>);

impl GaugeVec {
    /// The gauge for `value`, or the one for [`OTHER`] when `value` was not declared.
    pub fn with(&self, value: &str) -> &Gauge {
        self.0.get(value).unwrap_or_else(|| &self.0[OTHER])
    }
}

/// Checks a metric or label name: `a-z`, `0-9` and `_`, starting with a letter, at most 48.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ExtensionError::Config(format!(
            "{what} {name:?}: use 1-48 of a-z, 0-9 and _, starting with a letter"
        )))
    }
}

fn check_values(label: &str, values: &[&str]) -> Result<()> {
    check_name("label", label)?;
    if label == "extension" {
        return Err(ExtensionError::Config(
            "the label `extension` is the host's: choose another name".into(),
        ));
    }
    if values.is_empty() || values.len() > 64 {
        return Err(ExtensionError::Config(format!(
            "label {label}: declare between 1 and 64 values"
        )));
    }
    for v in values {
        if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) || *v == OTHER {
            return Err(ExtensionError::Config(format!(
                "label {label}: value {v:?} must be 1-64 printable characters, not {OTHER:?}"
            )));
        }
    }
    Ok(())
}

impl Metrics {
    #[doc(hidden)]
    pub fn new(extension: &str, sink: Arc<dyn MetricsSink>) -> Self {
        Self {
            extension: extension.replace('-', "_"),
            sink,
        }
    }

    fn full_name(&self, name: &str, kind: Kind) -> String {
        let suffix = match kind {
            Kind::Counter if !name.ends_with("_total") => "_total",
            _ => "",
        };
        format!("solobase_ext_{}_{name}{suffix}", self.extension)
    }

    fn register(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: Vec<(String, String)>,
    ) -> Arc<dyn Fn(f64) + Send + Sync> {
        self.sink.register(&Series {
            name: self.full_name(name, kind),
            help: help.to_owned(),
            kind,
            labels,
        })
    }

    /// A counter, exported as `solobase_ext_<extension>_<name>_total`.
    pub fn counter(&self, name: &str, help: &str) -> Result<Counter> {
        check_name("metric", name)?;
        Ok(Counter {
            value: Arc::new(AtomicU64::new(0)),
            record: self.register(name, help, Kind::Counter, Vec::new()),
        })
    }

    /// Counters by `label`, which takes one of `values` (anything else counts as `other`).
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> Result<CounterVec> {
        check_name("metric", name)?;
        check_values(label, values)?;
        let mut family = BTreeMap::new();
        for value in values.iter().copied().chain([OTHER]) {
            let counter = Counter {
                value: Arc::new(AtomicU64::new(0)),
                record: self.register(
                    name,
                    help,
                    Kind::Counter,
                    vec![(label.to_owned(), value.to_owned())],
                ),
            };
            family.insert(value.to_owned(), counter);
        }
        Ok(CounterVec(family))
    }

    /// A gauge, exported as `solobase_ext_<extension>_<name>`.
    pub fn gauge(&self, name: &str, help: &str) -> Result<Gauge> {
        check_name("metric", name)?;
        Ok(Gauge {
            value: Arc::new(AtomicU64::new(0f64.to_bits())),
            record: self.register(name, help, Kind::Gauge, Vec::new()),
        })
    }

    /// Gauges by `label`, which takes one of `values` (anything else is `other`).
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> Result<GaugeVec> {
        check_name("metric", name)?;
        check_values(label, values)?;
        let mut family = BTreeMap::new();
        for value in values.iter().copied().chain([OTHER]) {
            let gauge = Gauge {
                value: Arc::new(AtomicU64::new(0f64.to_bits())),
                record: self.register(
                    name,
                    help,
                    Kind::Gauge,
                    vec![(label.to_owned(), value.to_owned())],
                ),
            };
            family.insert(value.to_owned(), gauge);
        }
        Ok(GaugeVec(family))
    }

    /// A histogram, exported as `solobase_ext_<extension>_<name>` (`_bucket`, `_sum`,
    /// `_count`).
    pub fn histogram(&self, name: &str, help: &str) -> Result<Histogram> {
        check_name("metric", name)?;
        Ok(Histogram {
            record: self.register(name, help, Kind::Histogram, Vec::new()),
        })
    }
}

/// A sink that keeps nothing (for contexts without a host).
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Discard;

impl MetricsSink for Discard {
    fn register(&self, _: &Series) -> Arc<dyn Fn(f64) + Send + Sync> {
        Arc::new(|_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Registered(Mutex<Vec<Series>>);

    impl MetricsSink for Registered {
        fn register(&self, series: &Series) -> Arc<dyn Fn(f64) + Send + Sync> {
            self.0.lock().unwrap().push(series.clone());
            Arc::new(|_| {})
        }
    }

    #[test]
    fn labels_take_only_declared_values_and_other() {
        let sink = Arc::new(Registered::default());
        let metrics = Metrics::new("my-ext", sink.clone());
        let by = metrics
            .counter_vec("deliveries", "d", "outcome", &["ok", "failed"])
            .unwrap();
        by.with("ok").increment(2);
        for hostile in ["x", "../../etc", "\u{0}", &"y".repeat(1000)] {
            by.with(hostile).increment(1);
        }
        assert_eq!(by.with("ok").get(), 2);
        assert_eq!(by.with(OTHER).get(), 4);
        let series = sink.0.lock().unwrap();
        assert_eq!(series.len(), 3, "declared values and other, nothing more");
        assert!(
            series
                .iter()
                .all(|s| s.name == "solobase_ext_my_ext_deliveries_total")
        );
    }

    #[test]
    fn names_and_values_are_checked() {
        let metrics = Metrics::new("x", Arc::new(Discard));
        assert!(metrics.counter("Bad-Name", "").is_err());
        assert!(metrics.counter("", "").is_err());
        assert!(metrics.counter_vec("n", "", "extension", &["a"]).is_err());
        assert!(metrics.counter_vec("n", "", "l", &[]).is_err());
        assert!(metrics.counter_vec("n", "", "l", &["other"]).is_err());
        assert!(metrics.gauge("queue_depth", "").is_ok());
    }
}
