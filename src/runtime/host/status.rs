//! What the host says of each extension: counters, health, limits.

use super::*;

impl ExtensionHost {
    /// An extension's counters, as `stats` in the API and in `solobase.extension_stats`.
    pub fn stats_of(&self, l: &Loaded) -> serde_json::Value {
        let quota = l.storage.as_ref().and_then(|s| s.quota());
        serde_json::json!({
            "requests": l.stats.requests.load(Ordering::Relaxed),
            "errors": l.stats.errors.load(Ordering::Relaxed),
            "hook_calls": l.stats.hook_calls(),
            "hook_timeouts": l.stats.hook_timeouts.load(Ordering::Relaxed),
            "panics": l.panics.count(),
            "breaker": l.breaker.state(),
            "in_flight": l.in_flight(),
            "busy": l.stats.busy.load(Ordering::Relaxed),
            "rate_limited": l.stats.rate_limited.load(Ordering::Relaxed),
            "over_budget": l.stats.over_budget.load(Ordering::Relaxed),
            "jobs_done": l.stats.jobs_done.load(Ordering::Relaxed),
            "jobs_failed": l.stats.jobs_failed.load(Ordering::Relaxed),
            "allocated_bytes": l.stats.allocated_bytes.load(Ordering::Relaxed),
            "storage_bytes": quota.map(|(_, used)| used),
            "storage_quota_bytes": quota.map(|(limit, _)| limit),
        })
    }

    /// An extension's health as reported: its latest check, or why there is none, made at
    /// least degraded by a critical dependency.
    pub fn health_of(&self, l: &Loaded) -> (solobase_sdk::HealthStatus, String) {
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
            return (HealthStatus::Unknown, "not checked yet".into());
        };
        let critical_dependency = l.manifest.as_ref().and_then(|m| {
            m.dependencies.keys().find(|d| {
                self.get(d.as_str())
                    .is_some_and(|dep| self.health_of(dep).0 == HealthStatus::Critical)
            })
        });
        crate::runtime::health::with_dependencies(
            latest.status,
            latest.message,
            critical_dependency.map(|d| d.as_str()),
        )
    }

    /// [`ExtensionHost::health_of`] with the time of the latest check, as JSON.
    pub fn health_report(&self, l: &Loaded) -> serde_json::Value {
        let (status, message) = self.health_of(l);
        let at = l.health.latest().and_then(|c| {
            c.at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
        serde_json::json!({"status": status, "message": message, "checked_at": at})
    }

    /// The limits `name` runs under now (0: none), for status pages.
    pub fn limits_of(&self, name: &str) -> serde_json::Value {
        let s = &self.settings;
        let db = s.resolve(name).db;
        let Some(l) = self.get(name) else {
            return serde_json::Value::Null;
        };
        let live = l.limits.load();
        let (all, each) = live.rates.rates();
        serde_json::json!({
            "max_in_flight": live.max_in_flight,
            "max_body_bytes": s.resolve(name).max_body_bytes,
            "cpu_budget_ms": live.cpu_budget.as_millis() as u64,
            "storage_quota_bytes": s.resolve(name).storage_quota_bytes,
            "rate": {"per_second": all.per_second, "burst": all.burst},
            "client_rate": {"per_second": each.per_second, "burst": each.burst},
            "db_connections": db.max_connections,
            "statement_timeout_ms": db.statement_timeout_ms,
            "idle_in_transaction_timeout_ms": db.idle_in_transaction_timeout_ms,
        })
    }

    /// Reads every extension's counters, health and resource use into `metrics`, at scrape
    /// time, so the request path pays nothing for them.
    pub fn export_metrics(&self, metrics: &crate::metrics::Metrics) {
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
