//! The host's background work while the server runs: event hooks, health checks, the
//! database watchdog, the rate-limit sweeper, the counters published for the command line.

use super::*;

impl ExtensionHost {
    /// Starts one task per extension that subscribed to events.
    pub(crate) fn spawn_event_hooks(self: &Arc<Self>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (i, l) in self.loaded.iter().enumerate() {
            if l.hooks.event_patterns().is_empty() || l.ext.is_none() {
                continue;
            }
            // Events reach only extensions granted `events.subscribe`, checked per event as
            // grants change at run time (a refusal is counted and audited once, here).
            if let Some(grants) = &l.grants {
                let _ = grants.require("events.subscribe");
            }
            let host = Arc::clone(self);
            let mut events = self.bus.subscribe();
            let mut stop = self.stop.subscribe();
            let span = l.span.clone();
            tasks.push(tokio::spawn(
                async move {
                    loop {
                        let event = tokio::select! {
                            received = events.recv() => received,
                            _ = stop.changed() => return,
                        };
                        let event = match event {
                            Ok(event) => event,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                tracing::warn!(missed = n, "extension fell behind the event bus");
                                continue;
                            }
                            Err(_) => return,
                        };
                        let l = &host.loaded[i];
                        if !l.is_active()
                            || l.grants
                                .as_ref()
                                .is_some_and(|g| !g.allows("events.subscribe"))
                            || !l
                                .hooks
                                .event_patterns()
                                .iter()
                                .any(|p| event.event_type.matches(p))
                        {
                            continue;
                        }
                        if let Some(ext) = l.ext() {
                            settle(host.call(l, Slot::EVENT, || ext.on_event(&event))).await;
                        }
                    }
                }
                .instrument(span),
            ));
        }
    }

    /// Runs `round` every `period` until the host stops (or is dropped); the task is awaited
    /// at shutdown.
    pub(crate) fn spawn_periodic<F, Fut>(self: &Arc<Self>, period: Duration, round: F)
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let host = Arc::downgrade(self);
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(host) = host.upgrade() else { return };
                round(host).await;
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Every minute, forgets the rate-limit buckets of clients that are idle again, so that
    /// many different clients cannot grow memory without bound.
    pub(crate) fn spawn_rate_sweeper(self: &Arc<Self>) {
        self.spawn_periodic(Duration::from_secs(60), |host| async move {
            for l in &host.loaded {
                l.limits.load().rates.forget_idle_clients();
            }
        });
    }

    /// Starts the health monitor (see [`crate::runtime::health`]).
    pub(crate) fn spawn_health_monitor(self: &Arc<Self>) {
        if !self.loaded.is_empty() {
            let every = Duration::from_millis(self.settings.health_interval_ms);
            self.spawn_periodic(every, |host| async move { host.check_health().await });
        }
    }

    /// Writes this instance's counters to the database every `stats_interval_ms`.
    pub(crate) fn spawn_stats_publisher(self: &Arc<Self>) {
        if !self.loaded.is_empty() {
            let every = Duration::from_millis(self.settings.stats_interval_ms);
            self.spawn_periodic(every, |host| async move {
                if let Err(e) = host.publish_stats().await {
                    tracing::warn!(error = %e, "cannot record the extensions' counters");
                }
            });
        }
    }

    pub(crate) async fn publish_stats(&self) -> anyhow::Result<()> {
        let rows: Vec<(String, serde_json::Value)> = self
            .loaded
            .iter()
            .map(|l| {
                let stats = serde_json::to_value(self.stats_of(l)).unwrap_or_default();
                (l.name.to_string(), stats)
            })
            .collect();
        state::record_stats(&self.pool, &self.instance, self.started_at, &rows).await
    }

    /// One round of health checks, all extensions at once; then the consequences.
    pub(crate) async fn check_health(&self) {
        let limit = Duration::from_millis(self.settings.health_timeout_ms);
        let due: Vec<&Arc<Loaded>> = self
            .loaded
            .iter()
            .filter(|l| l.is_enabled() && l.is_running())
            .collect();
        let checks = futures_util::future::join_all(due.iter().map(|l| {
            let ext = l.ext.clone();
            async move {
                match ext {
                    Some(ext) => Some(
                        crate::runtime::health::check(ext.as_ref(), limit)
                            .instrument(l.span.clone())
                            .await,
                    ),
                    None => None,
                }
            }
        }))
        .await;
        let disable_after = self.settings.health_critical_to_disable;
        for (l, check) in due.iter().zip(checks) {
            let Some(check) = check else { continue };
            if check.status != solobase_sdk::HealthStatus::Healthy {
                tracing::warn!(extension = %l.name, status = ?check.status, message = %check.message, "extension health check");
            }
            let message = check.message.clone();
            let in_a_row = l.health.record(check);
            if disable_after > 0 && in_a_row >= disable_after {
                l.disable_automatically(&format!(
                    "its health check was critical {in_a_row} times in a row ({message})"
                ));
            }
        }
        let reports: Vec<(String, serde_json::Value)> = self
            .loaded
            .iter()
            .map(|l| {
                let report = status::HealthStatusView {
                    now: self.health_report(l),
                    history: l.health.history(),
                };
                let mut report = serde_json::to_value(report).unwrap_or_default();
                // Stored flat: the latest check's fields, and the history beside them.
                if let Some(now) = report.get("now").cloned() {
                    let history = report["history"].take();
                    report = now;
                    report["history"] = history;
                }
                (l.name.to_string(), report)
            })
            .collect();
        if let Err(e) = state::record_health(&self.pool, &reports).await {
            tracing::warn!(error = %e, "cannot record the extensions' health");
        }
    }

    /// Starts the watchdog that keeps the extensions' database time limits.
    pub(crate) fn spawn_watchdog(&self) {
        let limits: Vec<_> = self
            .loaded
            .iter()
            .filter(|l| l.pool.is_some())
            .map(|l| (l.name.schema(), self.settings.resolve(l.name.as_str()).db))
            .collect();
        if limits.is_empty() {
            return;
        }
        let task = crate::runtime::watchdog::spawn_watchdog(
            self.pool.clone(),
            limits,
            self.stop.subscribe(),
        );
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }
}
