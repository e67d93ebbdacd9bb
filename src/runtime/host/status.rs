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
        let db = s.limits_for(name);
        let Some(l) = self.get(name) else {
            return serde_json::Value::Null;
        };
        let live = l.limits.load();
        let (all, each) = live.rates.rates();
        serde_json::json!({
            "max_in_flight": live.max_in_flight,
            "max_body_bytes": s.max_body_bytes_for(name),
            "cpu_budget_ms": live.cpu_budget.as_millis() as u64,
            "storage_quota_bytes": s.storage_quota_for(name),
            "rate": {"per_second": all.per_second, "burst": all.burst},
            "client_rate": {"per_second": each.per_second, "burst": each.burst},
            "db_connections": db.max_connections,
            "statement_timeout_ms": db.statement_timeout_ms,
            "idle_in_transaction_timeout_ms": db.idle_in_transaction_timeout_ms,
        })
    }
}
