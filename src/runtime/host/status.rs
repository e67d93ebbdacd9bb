//! What the host says of each extension — counters, health, limits, the whole entry — as
//! typed values ([`ExtensionStatus`] and its parts), which the admin API, the command line's
//! `solobase.extension_stats` rows and the metrics are made from.

use serde::Serialize;

use super::*;
use crate::runtime::health::Check;

/// Everything the host says of one compiled-in extension (`GET /api/v1/extensions`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExtensionStatus {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    /// `official`, `community`, `custom` or `test`; `None` for an extension the embedding
    /// program registered itself.
    pub(crate) tier: Option<&'static str>,
    pub(crate) description: Option<String>,
    /// Always true here (the discovered extensions this binary lacks are listed apart).
    pub(crate) compiled: bool,
    /// The administrator's choice.
    pub(crate) enabled: bool,
    /// Initialized and started.
    pub(crate) running: bool,
    /// Enabled, running and its breaker closed: its routes answer.
    pub(crate) active: bool,
    /// Why it is not running.
    pub(crate) error: Option<String>,
    /// `METHOD /ext/<name>/path` for each route.
    pub(crate) routes: Option<Vec<String>>,
    pub(crate) hooks: Vec<HookEntry>,
    pub(crate) middleware: Vec<MiddlewareEntry>,
    /// The background tasks (`ctx.tasks`) running now.
    pub(crate) tasks: Vec<String>,
    pub(crate) permissions: PermissionsStatus,
    /// Its running configuration's etag and last refused change.
    pub(crate) config: serde_json::Value,
    pub(crate) health: HealthStatusView,
    pub(crate) limits: Option<LimitsView>,
    pub(crate) stats: StatsView,
}

/// A hook it registered, with its priority.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HookEntry {
    pub(crate) hook: &'static str,
    pub(crate) priority: i32,
}

/// A middleware it registered.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MiddlewareEntry {
    pub(crate) id: String,
    pub(crate) priority: i32,
    pub(crate) paths: Vec<String>,
}

/// Its permissions: requested by its manifest, granted, pending, and refused calls.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PermissionsStatus {
    pub(crate) requested: Vec<String>,
    pub(crate) granted: Vec<String>,
    pub(crate) pending: Vec<String>,
    pub(crate) denied_calls: u64,
}

/// Its health now and its recent checks.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthStatusView {
    pub(crate) now: HealthNow,
    pub(crate) history: Vec<Check>,
}

/// Its health as reported now.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HealthNow {
    pub(crate) status: solobase_sdk::HealthStatus,
    pub(crate) message: String,
    /// RFC 3339; `None` before the first check.
    pub(crate) checked_at: Option<String>,
}

/// A rate limit: requests per second and burst (0: none).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct RateView {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
}

/// The limits it runs under now (0: none).
#[derive(Debug, Clone, Serialize)]
pub struct LimitsView {
    pub(crate) max_in_flight: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) cpu_budget_ms: u64,
    pub(crate) storage_quota_bytes: u64,
    pub(crate) rate: RateView,
    pub(crate) client_rate: RateView,
    pub(crate) db_connections: u32,
    pub(crate) statement_timeout_ms: u64,
    pub(crate) idle_in_transaction_timeout_ms: u64,
    pub(crate) transaction_timeout_ms: u64,
}

/// Its counters since this instance started.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatsView {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) hook_calls: u64,
    pub(crate) hook_timeouts: u64,
    pub(crate) panics: u64,
    pub(crate) breaker: &'static str,
    pub(crate) in_flight: usize,
    pub(crate) busy: u64,
    pub(crate) rate_limited: u64,
    pub(crate) over_budget: u64,
    pub(crate) jobs_done: u64,
    pub(crate) jobs_failed: u64,
    pub(crate) allocated_bytes: u64,
    pub(crate) storage_bytes: Option<u64>,
    pub(crate) storage_quota_bytes: Option<u64>,
    /// Its own metrics (`ctx.metrics`), by series.
    pub(crate) metrics: std::collections::BTreeMap<String, f64>,
}

impl ExtensionHost {
    /// Everything the host says of `l`.
    pub(crate) fn status_of(&self, l: &Loaded) -> ExtensionStatus {
        let name = l.name.as_str();
        let found = crate::runtime::discovered().iter().find(|d| d.name == name);
        ExtensionStatus {
            name: name.to_owned(),
            version: l
                .manifest
                .as_ref()
                .map(|m| m.version.to_string())
                .or(found.map(|d| d.version.to_owned())),
            tier: found.map(|d| d.tier),
            description: l
                .manifest
                .as_ref()
                .map(|m| m.description.clone())
                .or(found.map(|d| d.description.to_owned())),
            compiled: true,
            enabled: l.is_enabled(),
            running: l.is_running(),
            active: l.is_active(),
            error: l.failure(),
            routes: l.routes.as_ref().map(|t| {
                t.list()
                    .into_iter()
                    .map(|(m, p)| format!("{m} /ext/{name}{p}"))
                    .collect()
            }),
            hooks: l
                .hooks
                .points()
                .iter()
                .map(|(p, priority)| HookEntry {
                    hook: p.as_str(),
                    priority: *priority,
                })
                .collect(),
            tasks: l.tasks.names(),
            middleware: l
                .middleware
                .iter()
                .map(|m| MiddlewareEntry {
                    id: m.id.clone(),
                    priority: m.priority,
                    paths: m.paths.clone(),
                })
                .collect(),
            permissions: PermissionsStatus {
                requested: l
                    .manifest
                    .as_ref()
                    .map(|m| m.permissions.iter().map(|p| p.to_string()).collect())
                    .unwrap_or_default(),
                granted: l.grants.as_ref().map(|g| g.granted()).unwrap_or_default(),
                pending: l.grants.as_ref().map(|g| g.pending()).unwrap_or_default(),
                denied_calls: l.grants.as_ref().map_or(0, |g| g.denied()),
            },
            config: l.config_state.status(),
            health: HealthStatusView {
                now: self.health_report(l),
                history: l.health.history(),
            },
            limits: self.limits_of(name),
            stats: self.stats_of(l),
        }
    }

    /// An extension's counters, as `stats` in the API and in `solobase.extension_stats`.
    pub(crate) fn stats_of(&self, l: &Loaded) -> StatsView {
        let quota = l.storage.as_ref().and_then(|s| s.quota());
        StatsView {
            requests: l.stats.requests.load(Ordering::Relaxed),
            errors: l.stats.errors.load(Ordering::Relaxed),
            hook_calls: l.stats.hook_calls(),
            hook_timeouts: l.stats.hook_timeouts.load(Ordering::Relaxed),
            panics: l.panics.count(),
            breaker: l.breaker.state(),
            in_flight: l.in_flight(),
            busy: l.stats.busy.load(Ordering::Relaxed),
            rate_limited: l.stats.rate_limited.load(Ordering::Relaxed),
            over_budget: l.stats.over_budget.load(Ordering::Relaxed),
            jobs_done: l.stats.jobs_done.load(Ordering::Relaxed),
            jobs_failed: l.stats.jobs_failed.load(Ordering::Relaxed),
            allocated_bytes: l.stats.allocated_bytes.load(Ordering::Relaxed),
            storage_bytes: quota.map(|(_, used)| used),
            storage_quota_bytes: quota.map(|(limit, _)| limit),
            metrics: l.own_metrics.snapshot(),
        }
    }

    /// An extension's health as reported: its latest check, or why there is none, made at
    /// least degraded by a critical dependency.
    pub(crate) fn health_of(&self, l: &Loaded) -> (solobase_sdk::HealthStatus, String) {
        use solobase_sdk::HealthStatus;
        if !l.is_enabled() {
            return (HealthStatus::Unknown, "disabled".into());
        }
        if !l.is_running() {
            return (
                HealthStatus::Critical,
                format!("not running: {}", l.failure().unwrap_or_default()),
            );
        }
        let Some(latest) = l.health.latest() else {
            return match l.recent_task_panic() {
                Some(panic) => (HealthStatus::Degraded, panic),
                None => (HealthStatus::Unknown, "not checked yet".into()),
            };
        };
        let critical_dependency = l.manifest.as_ref().and_then(|m| {
            m.dependencies.keys().find(|d| {
                self.get(d.as_str())
                    .is_some_and(|dep| self.health_of(dep).0 == HealthStatus::Critical)
            })
        });
        let (status, message) = crate::runtime::health::with_dependencies(
            latest.status,
            latest.message,
            critical_dependency.map(|d| d.as_str()),
        );
        // A recent panic in one of its tasks: at least degraded, saying which.
        match l.recent_task_panic() {
            Some(panic) if status == HealthStatus::Healthy => (HealthStatus::Degraded, panic),
            _ => (status, message),
        }
    }

    /// [`ExtensionHost::health_of`] with the time of the latest check.
    pub(crate) fn health_report(&self, l: &Loaded) -> HealthNow {
        let (status, message) = self.health_of(l);
        let checked_at = l.health.latest().and_then(|c| {
            c.at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        HealthNow {
            status,
            message,
            checked_at,
        }
    }

    /// The limits `name` runs under now (0: none), for status pages.
    pub fn limits_of(&self, name: &str) -> Option<LimitsView> {
        let resolved = self.settings.resolve(name);
        let l = self.get(name)?;
        let live = l.limits.load();
        let (all, each) = live.rates.rates();
        Some(LimitsView {
            max_in_flight: live.max_in_flight,
            max_body_bytes: resolved.max_body_bytes,
            cpu_budget_ms: live.cpu_budget.as_millis() as u64,
            storage_quota_bytes: resolved.storage_quota_bytes,
            rate: RateView {
                per_second: all.per_second,
                burst: all.burst,
            },
            client_rate: RateView {
                per_second: each.per_second,
                burst: each.burst,
            },
            db_connections: resolved.db.max_connections,
            statement_timeout_ms: resolved.db.statement_timeout_ms,
            idle_in_transaction_timeout_ms: resolved.db.idle_in_transaction_timeout_ms,
            transaction_timeout_ms: resolved.db.transaction_timeout_ms,
        })
    }

    /// Reads every extension's counters, health and resource use into `metrics`, at scrape
    /// time, so the request path pays nothing for them.
    pub(crate) fn export_metrics(&self, metrics: &crate::metrics::Metrics) {
        use metrics::Label;
        let host = self;
        let mut active = 0;
        for l in host.all() {
            let name = l.name.to_string();
            let label = || Label::new("extension", name.clone());
            if l.is_active() {
                active += 1;
            }
            for slot in Slot::all() {
                let n = l.stats.hooks[slot.index()].load(Ordering::Relaxed);
                if n > 0 {
                    metrics
                        .counter(
                            "extension_hooks_executed_total",
                            vec![label(), Label::new("hook", slot.name())],
                        )
                        .absolute(n);
                }
            }
            let s = &l.stats;
            let errors = [
                ("panic", l.panics.count()),
                ("hook_timeout", s.hook_timeouts.load(Ordering::Relaxed)),
                ("handler_error", s.errors.load(Ordering::Relaxed)),
                ("over_budget", s.over_budget.load(Ordering::Relaxed)),
                ("busy", s.busy.load(Ordering::Relaxed)),
                ("rate_limited", s.rate_limited.load(Ordering::Relaxed)),
                (
                    "permission_denied",
                    l.grants.as_ref().map_or(0, |g| g.denied()),
                ),
            ];
            for (kind, n) in errors {
                metrics
                    .counter(
                        "extension_errors_total",
                        vec![label(), Label::new("type", kind)],
                    )
                    .absolute(n);
            }
            let (status, _) = host.health_of(l);
            metrics
                .gauge("extension_health_status", vec![label()])
                .set(status as u8 as f64);
            let storage = l
                .storage
                .as_ref()
                .and_then(|s| s.quota())
                .map(|(_, used)| used);
            let resources = [
                ("in_flight", Some(l.in_flight() as f64)),
                ("storage_bytes", storage.map(|b| b as f64)),
                (
                    "allocated_bytes",
                    Some(s.allocated_bytes.load(Ordering::Relaxed) as f64),
                ),
                ("db_connections", l.db_connections().map(|n| n as f64)),
                (
                    "rate_limited_clients",
                    Some(l.limits.load().rates.clients() as f64),
                ),
            ];
            for (resource, value) in resources {
                if let Some(value) = value {
                    metrics
                        .gauge(
                            "extension_resource_usage",
                            vec![label(), Label::new("resource", resource)],
                        )
                        .set(value);
                }
            }
        }
        metrics
            .gauge("extensions_active_total", Vec::new())
            .set(active as f64);
        debug_assert_eq!(Slot::all().count(), SLOTS);
    }
}
