//! [`Loaded`]: one compiled-in extension and everything the host knows about it — its
//! instance, routes, hooks, pool, enabled and running state, counters, breaker, limits —
//! and the automatic disable.

use super::*;

/// How long a panic in one of an extension's tasks keeps its health degraded.
pub(crate) const TASK_PANIC_SHOWN: Duration = Duration::from_secs(300);

/// How the reason of an automatic disable begins.
const AUTO_DISABLED: &str = "disabled automatically";

/// One request being served by an extension's route (see [`Loaded::enter`]).
#[derive(Debug)]
pub(crate) struct InFlight<'l>(&'l AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One compiled-in extension and everything the host knows about it.
pub struct Loaded {
    pub name: ExtensionName,
    /// `None` when the manifest itself is invalid.
    pub(crate) manifest: Option<Manifest>,
    pub(crate) registration: Registration,
    /// The instance; `None` when it failed before or during `initialize`.
    pub(crate) ext: Option<Arc<dyn ErasedExtension>>,
    pub routes: Option<RouteTable>,
    pub(crate) hooks: HookSet,
    pub(crate) middleware: Vec<MiddlewareSpec>,
    pub(crate) config: Option<ConfigUpdater>,
    /// The extension's database pool, closed at shutdown.
    pub(crate) pool: Option<deadpool_postgres::Pool>,
    /// The administrator's choice (persisted).
    pub(crate) enabled: AtomicBool,
    /// Initialized and started successfully.
    pub(crate) running: AtomicBool,
    /// Why it is not running.
    pub(crate) failure: Mutex<Option<String>>,
    pub(crate) stats: Stats,
    /// Panics caught in its code.
    pub(crate) panics: PanicLog,
    /// Opens on repeated failures.
    pub(crate) breaker: Breaker,
    /// Requests its routes are serving now, and how many they may.
    pub(crate) in_flight: AtomicUsize,
    /// Its rate limits, in-flight limit and time budget (replaced as one when the
    /// configuration is reloaded).
    /// Its outbound HTTP (`ctx.http`), whose allowed addresses a reload replaces.
    pub(crate) outbound: Option<Arc<crate::runtime::outbound::HostHttp>>,
    pub(crate) limits: arc_swap::ArcSwap<Live>,
    /// Samples the audit entries of rate-limit refusals.
    pub(crate) rate_audit: Sampler,
    /// Its storage area (for its quota and usage).
    pub(crate) storage: Option<solobase_sdk::Storage>,
    /// Its permissions (`None` before it was loaded).
    pub grants: Option<Arc<crate::runtime::grants::Grants>>,
    /// Where an automatic disable is announced.
    pub(crate) bus: Option<EventBus>,
    /// Sampled hook durations, by [`Slot`] (empty: not measured).
    pub(crate) hook_durations: Vec<metrics::Histogram>,
    /// Its recent health checks.
    pub(crate) health: crate::runtime::health::HealthLog,
    /// Its running configuration.
    pub config_state: crate::runtime::reconfigure::ConfigState,
    /// Set while an automatic disable is being persisted, so that a re-read racing it does
    /// not enable the extension again.
    pub(crate) disable_pending: Arc<AtomicBool>,
    pub(crate) span: tracing::Span,
    /// Its background tasks (`ctx.tasks`), cancelled when it stops.
    pub(crate) tasks: Arc<crate::runtime::tasks::TaskSet>,
    /// The latest panic in one of its tasks: when, and where.
    pub(crate) task_panic: Mutex<Option<(Instant, String)>>,
    /// Its `start()` failed since it was last enabled: not started again until it is.
    pub(crate) start_failed: AtomicBool,
    /// Its own metrics (`ctx.metrics`).
    pub(crate) own_metrics: Arc<crate::runtime::services::HostMetrics>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// Enabled, running, and its circuit breaker lets calls through: its routes answer and its
    /// hooks run.
    pub(crate) fn is_active(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
            && self.running.load(Ordering::Relaxed)
            && self.breaker.allows()
    }

    /// A slot for one request to its routes, or `None` when `max_in_flight` are being served;
    /// the slot frees itself when dropped (also when the request is cancelled or panics).
    pub(crate) fn enter(&self) -> Option<InFlight<'_>> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(&self.in_flight))
    }

    /// Takes a rate-limit token for `client`; a refusal is counted and audited (sampled).
    pub(crate) fn admit(&self, client: Client) -> Result<(), Limited> {
        let refused = match self.limits.load().rates.check(client) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        if let (Some(pool), Some(held_back)) = (self.panics.pool(), self.rate_audit.due()) {
            let who = match client {
                Client::User(id) => format!("user:{id}"),
                Client::Address(ip) => format!("address:{ip}"),
                Client::Unknown => "unknown".into(),
            };
            let entry = audit::Entry::new(
                audit::Actor::System,
                "extension.rate_limited",
                audit::Outcome::Denied,
            )
            .extension(self.name.as_str())
            .detail(serde_json::json!({
                "client": who, "scope": refused.scope, "unaudited_before": held_back,
            }));
            crate::runtime::faults::audit_later(pool, entry);
        }
        Err(refused)
    }

    /// Requests its routes are serving now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A panic was caught in its code at `place`: logged, counted, audited, and a failure for
    /// the circuit breaker.
    pub(crate) fn panicked(&self, place: &str, payload: &(dyn std::any::Any + Send)) {
        self.panics.record(&self.name, place, payload);
        self.failed();
    }

    /// A panic in its task `task`: counted and fed to the breaker like any other, and shown in
    /// its health for [`TASK_PANIC_SHOWN`].
    pub(crate) fn task_panicked(&self, task: &str, payload: &(dyn std::any::Any + Send)) {
        let message = format!(
            "its task {task} panicked: {}",
            crate::runtime::faults::message(payload)
        );
        *self.task_panic.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), message));
        self.panicked(&format!("task {task}"), payload);
    }

    /// Its latest task panic, while it is recent enough to show in its health.
    pub(crate) fn recent_task_panic(&self) -> Option<String> {
        self.task_panic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < TASK_PANIC_SHOWN)
            .map(|(_, message)| message.clone())
    }

    /// A call into it failed (a panic or a time-out): feeds the circuit breaker, which may
    /// open — or, opening once too often, disable the extension (persisted, audited and
    /// announced as `extension.disabled` on the event bus).
    pub(crate) fn failed(&self) {
        match self.breaker.failure() {
            Verdict::Counted => {}
            Verdict::Opened => tracing::warn!(
                extension = %self.name,
                "circuit breaker opened: the extension answers 503 and its hooks are skipped \
                 until the cool-down has passed"
            ),
            Verdict::Disable => {
                self.disable_automatically("its circuit breaker kept opening (panics or time-outs)")
            }
        }
    }

    /// Disables it because `why`: persisted with the reason, audited, announced.
    pub(crate) fn disable_automatically(&self, why: &str) {
        if !self.enabled.swap(false, Ordering::Relaxed) {
            return;
        }
        let reason = format!("{AUTO_DISABLED}: {why}; fix it and enable it again");
        tracing::error!(extension = %self.name, "{reason}");
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
        let (Some(pool), Ok(runtime)) = (
            self.panics.pool().cloned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        self.disable_pending.store(true, Ordering::Relaxed);
        let pending = self.disable_pending.clone();
        let name = self.name.to_string();
        let bus = self.bus.clone();
        runtime.spawn(async move {
            // Persisted, or every instance would enable it again at its next re-read.
            for attempt in 1..=10 {
                match state::disable_with_reason(&pool, &name, &reason).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(extension = %name, attempt, error = %e, "cannot persist the automatic disable; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            pending.store(false, Ordering::Relaxed);
            let entry = audit::Entry::new(
                audit::Actor::System,
                "extension.auto_disabled",
                audit::Outcome::Ok,
            )
            .extension(&name)
            .detail(serde_json::json!({ "reason": reason }));
            audit::record_or_log(&pool, entry).await;
            if let (Some(bus), Some(kind)) = (bus, EventType::parse("extension.disabled")) {
                bus.publish(Event::new(
                    kind,
                    serde_json::json!({ "extension": name, "reason": reason }),
                ));
            }
        });
    }

    /// Connections its database pool holds now.
    pub(crate) fn db_connections(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.status().size)
    }

    /// Records a measured hook duration.
    pub(crate) fn hook_took(&self, slot: Slot, started: Option<Instant>) {
        if let (Some(started), Some(histogram)) = (started, self.hook_durations.get(slot.index())) {
            histogram.record(started.elapsed().as_secs_f64());
        }
    }

    /// Requests its routes may serve at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.limits.load().max_in_flight
    }

    /// The handler time budget of one request (zero: none).
    pub(crate) fn cpu_budget(&self) -> Duration {
        self.limits.load().cpu_budget
    }

    /// Enabled again by an administrator: a fresh breaker, and an automatic disable's reason
    /// no longer stands.
    pub(crate) fn reenabled(&self) {
        self.start_failed.store(false, Ordering::Relaxed);
        self.breaker.reset();
        self.health.reset_streak();
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure
            .as_deref()
            .is_some_and(|f| f.starts_with(AUTO_DISABLED))
        {
            *failure = None;
        }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn ext(&self) -> Option<&Arc<dyn ErasedExtension>> {
        self.ext.as_ref()
    }

    /// Applies its pending migrations (there are some only after a rollback); a failure stops
    /// it, as it would at start.
    pub(crate) async fn migrate_up(&self, host: &deadpool_postgres::Pool) {
        let Some(pool) = &self.pool else { return };
        let migrations = self.registration.migrations();
        match crate::runtime::schema::migrate(host, pool, &self.name, &migrations, None).await {
            Ok(applied) if !applied.is_empty() => {
                tracing::info!(extension = %self.name, ?applied, "extension migrations applied");
            }
            Ok(_) => {}
            Err(e) => self.fail(format!("migration failed: {e}")),
        }
    }

    pub(crate) fn fail(&self, reason: String) {
        tracing::error!(extension = %self.name, %reason, "extension not running");
        self.running.store(false, Ordering::Relaxed);
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// The hook time limit.
    pub(crate) fn hook_limit(&self) -> Duration {
        self.hooks.time_limit()
    }
}
