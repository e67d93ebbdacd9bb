//! Prometheus metrics (the `metrics` facade, rendered by `metrics-exporter-prometheus`).
//!
//! Each application owns its recorder — nothing is global — and serves it at `/metrics`
//! (administrators only) or on `[metrics] bind`. Label values are bounded: route templates
//! (`/items/{id}`, or `unmatched`), never raw paths; extension names; hook names; status codes.
//!
//! Request counts and durations are recorded as requests finish. The rest is read from the
//! extension runtime's own counters when scraped, so the request path pays nothing for it:
//! `extension_hooks_executed_total`, `extension_errors_total{type}`, `extensions_active_total`,
//! `extension_health_status`, `extension_resource_usage{resource}`.
//! The login throttle's state is read at scrape time too: `auth_throttled_total{limit}`,
//! `auth_password_hashes_total`,
//! `auth_password_hash_slots`, `auth_password_hashes_running`, `auth_password_hashes_peak`
//! (the most hashes that ever ran at once: never above the slots), `auth_password_hash_waiting`,
//! `auth_throttle_tracked{kind}`; and the session cache's: `auth_cache_lookups_total{kind,
//! result}`, `auth_cache_listening`.
//! `extension_hook_duration_seconds` times the hook calls of one request in [`HOOK_SAMPLE`] per
//! thread (timing every call would cost more than most hooks do); its `_count` is therefore the
//! number of timed calls, while `extension_hooks_executed_total` counts them all.

use std::time::Duration;

use std::sync::atomic::Ordering;

use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// One hook call in this many has its duration measured.
pub(crate) const HOOK_SAMPLE: u32 = 16;

const SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

static METADATA: Metadata<'static> =
    Metadata::new("solobase", metrics::Level::INFO, Some(module_path!()));

/// An application's metrics.
pub struct Metrics {
    /// Tells apart the applications of one process in the per-thread handle cache.
    id: u64,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

/// The handles of one host route's metrics: method, status, count, duration.
type RouteHandles = Vec<(&'static str, u16, Counter, Histogram)>;

thread_local! {
    /// Handles already registered, by application and route template: a request then costs a
    /// map lookup instead of building, hashing and registering two keys.
    static HTTP_HANDLES: std::cell::RefCell<Vec<(u64, std::collections::HashMap<String, RouteHandles>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// The same for extension routes: by application, extension and (method, template).
    static EXTENSION_HANDLES: std::cell::RefCell<Vec<(u64, ExtensionHandles)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Per extension, per matched route (method, template; `None`: none matched): the handles
/// by status. An extension has few routes: a list scanned without hashing.
type ExtensionHandles = std::collections::HashMap<
    String,
    Vec<(Option<(String, String)>, Vec<(u16, Counter, Histogram)>)>,
>;

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn describe(recorder: &PrometheusRecorder) {
    let counters: [(&'static str, &'static str); 10] = [
        (
            "auth_cache_lookups_total",
            "Session and permission lookups, by kind (session, permissions) and result (hit: \
             answered from memory; miss: read from the database)",
        ),
        (
            "extension_outbound_requests_total",
            "Outbound HTTP calls of extensions (ctx.http), by extension and outcome (answered, \
             refused, failed, denied)",
        ),
        (
            "retention_deleted_total",
            "Rows deleted by retention, by table (outbox, audit_log)",
        ),
        (
            "retention_runs_total",
            "Retention runs by this instance, by outcome (done, skipped, failed)",
        ),
        (
            "auth_password_hashes_total",
            "Password hashes and verifications run",
        ),
        (
            "auth_throttled_total",
            "Login, sign-up and password-change attempts refused, by limit (client, account, hashing)",
        ),
        (
            "http_requests_total",
            "HTTP requests answered, by method, route template and status",
        ),
        (
            "extension_requests_total",
            "Requests to extension routes, by extension, route template and status",
        ),
        (
            "extension_errors_total",
            "Failures in extension code, by extension and type",
        ),
        (
            "extension_hooks_executed_total",
            "Hook and middleware calls, by extension and hook",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, help.into());
    }
    let histograms: [(&'static str, &'static str); 3] = [
        (
            "http_request_duration_seconds",
            "HTTP request duration, by method and route template",
        ),
        (
            "extension_request_duration_seconds",
            "Extension route duration, by extension and route template",
        ),
        (
            "extension_hook_duration_seconds",
            "Hook call duration (the calls of one request in 16 are timed), by extension and hook",
        ),
    ];
    for (name, help) in histograms {
        recorder.describe_histogram(name.into(), Some(Unit::Seconds), help.into());
    }
    let gauges: [(&'static str, &'static str); 9] = [
        (
            "auth_cache_listening",
            "1 while session and permission changes are listened for (the cache is used), else 0",
        ),
        (
            "auth_password_hash_slots",
            "Passwords that may be hashed or verified at once",
        ),
        (
            "auth_password_hashes_running",
            "Password hashes running now",
        ),
        (
            "auth_password_hashes_peak",
            "The most password hashes that ever ran at once",
        ),
        (
            "auth_password_hash_waiting",
            "Requests waiting for a password-hashing slot",
        ),
        (
            "auth_throttle_tracked",
            "Entries the login throttle holds, by kind (clients, accounts)",
        ),
        (
            "extensions_active_total",
            "Extensions enabled, running and not paused by their circuit breaker",
        ),
        (
            "extension_health_status",
            "Latest health: 0 healthy, 1 degraded, 2 critical, 3 unknown",
        ),
        (
            "extension_resource_usage",
            "Resources an extension uses, by resource (in_flight, storage_bytes, allocated_bytes, db_connections, rate_limited_clients)",
        ),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(name.into(), None, help.into());
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .expect("the bucket list is not empty")
            .build_recorder();
        describe(&recorder);
        let handle = recorder.handle();
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            recorder,
            handle,
        }
    }

    fn key(name: &'static str, labels: Vec<Label>) -> Key {
        Key::from_parts(name, labels)
    }

    pub(crate) fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    pub(crate) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// Registers one of an extension's own series (`ctx.metrics`, named
    /// `solobase_ext_<extension>_…` by the SDK); returns what records an observation (a
    /// counter's total, a gauge's value, a histogram's sample).
    pub(crate) fn extension_series(
        &self,
        series: &solobase_sdk::metrics::Series,
    ) -> std::sync::Arc<dyn Fn(f64) + Send + Sync> {
        use solobase_sdk::metrics::Kind;
        let labels: Vec<Label> = series
            .labels
            .iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect();
        let key = Key::from_parts(series.name.clone(), labels);
        let name = series.name.clone();
        let help = series.help.clone();
        match series.kind {
            Kind::Counter => {
                self.recorder
                    .describe_counter(name.into(), None, help.into());
                let counter = self.recorder.register_counter(&key, &METADATA);
                std::sync::Arc::new(move |total| counter.absolute(total as u64))
            }
            Kind::Gauge => {
                self.recorder.describe_gauge(name.into(), None, help.into());
                let gauge = self.recorder.register_gauge(&key, &METADATA);
                std::sync::Arc::new(move |value| gauge.set(value))
            }
            _ => {
                self.recorder
                    .describe_histogram(name.into(), None, help.into());
                let histogram = self.recorder.register_histogram(&key, &METADATA);
                std::sync::Arc::new(move |value| histogram.record(value))
            }
        }
    }

    /// A request the host answered: `route` is the matched template, or `None`.
    pub(crate) fn http_request(
        &self,
        method: &str,
        route: Option<String>,
        status: u16,
        took: Duration,
    ) {
        let method = static_method(method);
        let route = route.unwrap_or_else(|| "unmatched".to_owned());
        HTTP_HANDLES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let at = match cache.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    cache.push((self.id, Default::default()));
                    cache.len() - 1
                }
            };
            let routes = &mut cache[at].1;
            if let Some(handles) = routes.get(route.as_str())
                && let Some((_, _, count, duration)) = handles
                    .iter()
                    .find(|(m, s, ..)| *m == method && *s == status)
            {
                count.increment(1);
                duration.record(took.as_secs_f64());
                return;
            }
            let count = self.counter(
                "http_requests_total",
                vec![
                    Label::new("method", method),
                    Label::new("route", route.clone()),
                    Label::new("status", status_label(status)),
                ],
            );
            let duration = self.histogram(
                "http_request_duration_seconds",
                vec![
                    Label::new("method", method),
                    Label::new("route", route.clone()),
                ],
            );
            count.increment(1);
            duration.record(took.as_secs_f64());
            routes
                .entry(route)
                .or_default()
                .push((method, status, count, duration));
        });
    }

    /// A request to an extension's route: `route` is the matched route's (method, template),
    /// or `None` when no route matched; its label is `"<METHOD> <template>"` or `unmatched`.
    pub(crate) fn extension_request(
        &self,
        extension: &str,
        route: Option<(&str, &str)>,
        status: u16,
        took: Duration,
    ) {
        EXTENSION_HANDLES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let at = match cache.iter().position(|(id, _)| *id == self.id) {
                Some(at) => at,
                None => {
                    cache.push((self.id, Default::default()));
                    cache.len() - 1
                }
            };
            let extensions = &mut cache[at].1;
            let same = |key: &Option<(String, String)>| {
                key.as_ref().map(|(m, p)| (m.as_str(), p.as_str())) == route
            };
            if let Some((_, count, duration)) = extensions
                .get(extension)
                .and_then(|routes| routes.iter().find(|(key, _)| same(key)))
                .and_then(|(_, handles)| handles.iter().find(|(s, ..)| *s == status))
            {
                count.increment(1);
                duration.record(took.as_secs_f64());
                return;
            }
            let label = SharedString::from(extension.to_owned());
            let route_label =
                route.map_or_else(|| "unmatched".to_owned(), |(m, p)| format!("{m} {p}"));
            let count = self.counter(
                "extension_requests_total",
                vec![
                    Label::new("extension", label.clone()),
                    Label::new("route", route_label.clone()),
                    Label::new("status", status_label(status)),
                ],
            );
            let duration = self.histogram(
                "extension_request_duration_seconds",
                vec![
                    Label::new("extension", label),
                    Label::new("route", route_label),
                ],
            );
            count.increment(1);
            duration.record(took.as_secs_f64());
            let routes = extensions.entry(extension.to_owned()).or_default();
            let handles = match routes.iter().position(|(key, _)| same(key)) {
                Some(i) => &mut routes[i].1,
                None => {
                    let key = route.map(|(m, p)| (m.to_owned(), p.to_owned()));
                    routes.push((key, Vec::new()));
                    &mut routes.last_mut().expect("just pushed").1
                }
            };
            handles.push((status, count, duration));
        });
    }

    /// Reads the login throttle's and the session cache's counters into the metrics (at
    /// scrape time).
    pub(crate) fn export_auth(
        &self,
        throttle: &crate::auth::throttle::Throttle,
        cache: &crate::auth::cache::AuthCache,
    ) {
        for (i, kind) in ["session", "permissions"].into_iter().enumerate() {
            for (result, count) in [("hit", &cache.hits[i]), ("miss", &cache.misses[i])] {
                self.counter(
                    "auth_cache_lookups_total",
                    vec![Label::new("kind", kind), Label::new("result", result)],
                )
                .absolute(count.load(Ordering::Relaxed));
            }
        }
        self.gauge("auth_cache_listening", vec![])
            .set(f64::from(u8::from(cache.listening.load(Ordering::Relaxed))));
        let refused = &throttle.refused;
        for (limit, count) in [
            ("client", &refused.client),
            ("account", &refused.account),
            ("hashing", &refused.busy),
        ] {
            self.counter("auth_throttled_total", vec![Label::new("limit", limit)])
                .absolute(count.load(Ordering::Relaxed));
        }
        let hashing = &throttle.hashing;
        let counts = hashing.counts();
        self.counter("auth_password_hashes_total", vec![])
            .absolute(counts.done.load(Ordering::Relaxed));
        let gauges = [
            ("auth_password_hash_slots", hashing.slots()),
            (
                "auth_password_hashes_running",
                counts.running.load(Ordering::Acquire),
            ),
            (
                "auth_password_hashes_peak",
                counts.peak.load(Ordering::Acquire),
            ),
            ("auth_password_hash_waiting", hashing.waiting()),
        ];
        for (name, value) in gauges {
            self.gauge(name, vec![]).set(value as f64);
        }
        let (clients, accounts) = throttle.tracked();
        for (kind, value) in [("clients", clients), ("accounts", accounts)] {
            self.gauge("auth_throttle_tracked", vec![Label::new("kind", kind)])
                .set(value as f64);
        }
    }

    /// The exposition text (read the runtime's counters into it first:
    /// `ExtensionHost::export_metrics`).
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram samples into their buckets (run periodically so that unscraped
    /// samples do not pile up).
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn static_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The status as a label value; codes outside 100-599 are folded together.
fn status_label(status: u16) -> SharedString {
    const COMMON: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (413, "413"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
        (507, "507"),
        (206, "206"),
    ];
    match COMMON.iter().find(|(c, _)| *c == status) {
        Some((_, s)) => SharedString::from(*s),
        None if (100..600).contains(&status) => SharedString::from(status.to_string()),
        None => SharedString::from("other"),
    }
}

/// The shipped extensions' own series the dashboard shows (`tests/api/server/metrics.rs`
/// checks each is exported).
#[cfg(test)]
const SHIPPED_EXTENSION_SERIES: [&str; 6] = [
    "solobase_ext_analytics_events_total",
    "solobase_ext_analytics_queue_depth",
    "solobase_ext_webhooks_deliveries_total",
    "solobase_ext_webhooks_attempts_total",
    "solobase_ext_webhooks_pending",
    "solobase_ext_webhooks_queue_age_seconds",
];

/// Every metric this module exports (the dashboard test checks it queries only these).
#[cfg(test)]
const NAMES: [&str; 20] = [
    "extension_outbound_requests_total",
    "retention_deleted_total",
    "retention_runs_total",
    "auth_throttled_total",
    "auth_password_hashes_total",
    "auth_password_hash_slots",
    "auth_password_hashes_running",
    "auth_password_hashes_peak",
    "auth_password_hash_waiting",
    "auth_throttle_tracked",
    "http_requests_total",
    "http_request_duration_seconds",
    "extension_requests_total",
    "extension_request_duration_seconds",
    "extension_errors_total",
    "extensions_active_total",
    "extension_health_status",
    "extension_resource_usage",
    "extension_hooks_executed_total",
    "extension_hook_duration_seconds",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped Grafana dashboard queries only metrics that exist.
    #[test]
    fn the_dashboard_uses_only_exported_metrics() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../dashboards/solobase.json")).unwrap();
        let mut used = 0;
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let tokens = expr.split(|c: char| !(c.is_ascii_lowercase() || c == '_'));
                let metric = |t: &&str| {
                    t.starts_with("http_")
                        || t.starts_with("auth_")
                        || t.starts_with("extension_")
                        || t.starts_with("extensions_")
                        || t.starts_with("solobase_ext_")
                };
                for token in tokens.filter(metric) {
                    let base = token.trim_end_matches("_bucket");
                    assert!(
                        NAMES.contains(&base) || SHIPPED_EXTENSION_SERIES.contains(&base),
                        "{token} in {expr}"
                    );
                    used += 1;
                }
            }
        }
        assert!(used >= NAMES.len() + SHIPPED_EXTENSION_SERIES.len());
    }
}
