//! [`ExtensionHost`]: loads the compiled-in extensions and owns them while the server runs.
//!
//! Loading, in dependency order (ties by name): parse the manifest, migrate the extension's
//! schema, build its services, `initialize`, collect its routes, middleware and hooks, then
//! `start` every initialized extension in the same order. Each step has a time limit; a
//! failing step leaves that extension (and those depending on it) not running, with the
//! reason recorded, and the server goes on. On shutdown extensions stop in reverse order.
//!
//! At run time an extension is *active* when an administrator has it enabled and it runs.
//! Inactive extensions' routes answer 404 and their hooks and middleware are skipped — the
//! check is one atomic load, so enabling and disabling take effect at once.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::Pool;
use futures_util::FutureExt;
use solobase_sdk::extension::ConfigUpdater;
use solobase_sdk::hooks::HookPoint;
use solobase_sdk::routes::RouteTable;
use solobase_sdk::{
    ErasedExtension, Event, EventBus, EventType, ExtensionName, Flow, Hook, HookSet, Manifest,
    MiddlewareSpec, Registration, Response,
};
use tokio::sync::watch;
use tracing::Instrument;

use super::faults::{Breaker, PanicLog, Sampler, Verdict};
use super::limits::{Client, Limited, Live};
use super::{loader, state};
use crate::audit;
use crate::config::ExtensionsConfig;

/// What the host gives the extension runtime.
#[derive(Debug, Clone)]
pub struct HostContext {
    pub pool: Pool,
    /// Connection settings of the host database (extension pools derive from them).
    pub pg_config: tokio_postgres::Config,
    pub data_dir: PathBuf,
    pub bus: EventBus,
    pub settings: ExtensionsConfig,
    /// Whether the database authenticates by password (an external one): extension roles
    /// then get theirs set.
    pub role_passwords: bool,
    /// The host's file storage, and the largest file it takes.
    pub storage: crate::storage::Storage,
    pub max_upload_bytes: u64,
    /// Where hook durations are recorded.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How the reason of an automatic disable begins.
const AUTO_DISABLED: &str = "disabled automatically";

/// Where extension code is called, for counters and metrics: a hook point, a middleware half,
/// or an event hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u8);

/// How many [`Slot`]s there are.
pub const SLOTS: usize = HookPoint::ALL.len() + 3;

impl Slot {
    pub const MIDDLEWARE_REQUEST: Slot = Slot(HookPoint::ALL.len() as u8);
    pub const MIDDLEWARE_RESPONSE: Slot = Slot(HookPoint::ALL.len() as u8 + 1);
    pub const EVENT: Slot = Slot(HookPoint::ALL.len() as u8 + 2);

    /// Every slot.
    pub fn all() -> impl Iterator<Item = Slot> {
        (0..SLOTS as u8).map(Slot)
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// Its name in logs, audit entries and metrics.
    pub fn name(self) -> &'static str {
        match HookPoint::ALL.get(self.index()) {
            Some(point) => point.as_str(),
            None if self == Self::MIDDLEWARE_REQUEST => "middleware_request",
            None if self == Self::MIDDLEWARE_RESPONSE => "middleware_response",
            None => "on_event",
        }
    }
}

impl From<HookPoint> for Slot {
    fn from(point: HookPoint) -> Self {
        Slot(point as u8)
    }
}

thread_local! {
    static HOOK_TICK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this request (or hook call outside a request) is one of those whose hook durations
/// are measured: one in [`crate::metrics::HOOK_SAMPLE`] on each thread.
#[inline]
pub fn time_this_request() -> bool {
    HOOK_TICK.with(|tick| {
        let n = tick.get().wrapping_add(1);
        tick.set(n);
        n % crate::metrics::HOOK_SAMPLE == 0
    })
}

/// Counters per extension, read by status pages and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Calls of its code, by [`Slot`].
    pub hooks: [AtomicU64; SLOTS],
    pub hook_timeouts: AtomicU64,
    /// Requests refused because `max_in_flight` were being served.
    pub busy: AtomicU64,
    /// Requests refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Requests whose handler ran over its time budget and was cancelled.
    pub over_budget: AtomicU64,
    /// Bytes allocated while its handlers and hooks ran (see [`crate::alloc`]).
    pub allocated_bytes: AtomicU64,
    /// Background jobs it finished, and runs that failed.
    pub jobs_done: AtomicU64,
    pub jobs_failed: AtomicU64,
}

impl Stats {
    /// Hook, middleware and event-hook calls in all.
    pub fn hook_calls(&self) -> u64 {
        self.hooks.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Attributes what this thread allocated since `since` (an [`crate::alloc::allocated`]
    /// reading).
    #[inline]
    pub fn allocated_since(&self, since: u64) {
        let bytes = crate::alloc::allocated().wrapping_sub(since);
        if bytes != 0 {
            self.allocated_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// Which extensions were active when a request began (see [`ExtensionHost::active_now`]).
#[derive(Debug, Clone)]
pub struct ActiveSet(smallvec::SmallVec<[bool; 16]>);

/// One request being served by an extension's route (see [`Loaded::enter`]).
#[derive(Debug)]
pub struct InFlight<'l>(&'l AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One compiled-in extension and everything the host knows about it.
pub struct Loaded {
    pub name: ExtensionName,
    /// `None` when the manifest itself is invalid.
    pub manifest: Option<Manifest>,
    pub registration: Registration,
    /// The instance; `None` when it failed before or during `initialize`.
    pub(super) ext: Option<Arc<dyn ErasedExtension>>,
    pub routes: Option<RouteTable>,
    pub hooks: HookSet,
    pub middleware: Vec<MiddlewareSpec>,
    pub config: Option<ConfigUpdater>,
    /// The extension's database pool, closed at shutdown.
    pub(crate) pool: Option<deadpool_postgres::Pool>,
    /// The administrator's choice (persisted).
    pub(super) enabled: AtomicBool,
    /// Initialized and started successfully.
    pub(super) running: AtomicBool,
    /// Why it is not running.
    pub(super) failure: Mutex<Option<String>>,
    pub stats: Stats,
    /// Panics caught in its code.
    pub panics: PanicLog,
    /// Opens on repeated failures.
    pub breaker: Breaker,
    /// Requests its routes are serving now, and how many they may.
    pub(super) in_flight: AtomicUsize,
    /// Its rate limits, in-flight limit and time budget (replaced as one when the
    /// configuration is reloaded).
    pub limits: arc_swap::ArcSwap<Live>,
    /// Samples the audit entries of rate-limit refusals.
    pub(super) rate_audit: Sampler,
    /// Its storage area (for its quota and usage).
    pub storage: Option<solobase_sdk::Storage>,
    /// Its permissions (`None` before it was loaded).
    pub grants: Option<Arc<super::grants::Grants>>,
    /// Where an automatic disable is announced.
    pub(super) bus: Option<EventBus>,
    /// Sampled hook durations, by [`Slot`] (empty: not measured).
    pub(super) hook_durations: Vec<metrics::Histogram>,
    /// Its recent health checks.
    pub health: super::health::HealthLog,
    /// Its running configuration.
    pub config_state: super::reconfigure::ConfigState,
    /// Set while an automatic disable is being persisted, so that a re-read racing it does
    /// not enable the extension again.
    pub(super) disable_pending: Arc<AtomicBool>,
    pub span: tracing::Span,
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
    pub fn is_active(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
            && self.running.load(Ordering::Relaxed)
            && self.breaker.allows()
    }

    /// A slot for one request to its routes, or `None` when `max_in_flight` are being served;
    /// the slot frees itself when dropped (also when the request is cancelled or panics).
    pub fn enter(&self) -> Option<InFlight<'_>> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(&self.in_flight))
    }

    /// Takes a rate-limit token for `client`; a refusal is counted and audited (sampled).
    pub fn admit(&self, client: Client) -> Result<(), Limited> {
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
            super::faults::audit_later(pool, entry);
        }
        Err(refused)
    }

    /// Requests its routes are serving now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A panic was caught in its code at `place`: logged, counted, audited, and a failure for
    /// the circuit breaker.
    pub fn panicked(&self, place: &str, payload: &(dyn std::any::Any + Send)) {
        self.panics.record(&self.name, place, payload);
        self.failed();
    }

    /// A call into it failed (a panic or a time-out): feeds the circuit breaker, which may
    /// open — or, opening once too often, disable the extension (persisted, audited and
    /// announced as `extension.disabled` on the event bus).
    pub fn failed(&self) {
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
    pub(super) fn disable_automatically(&self, why: &str) {
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
    pub fn db_connections(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.status().size)
    }

    /// Records a measured hook duration.
    fn hook_took(&self, slot: Slot, started: Option<Instant>) {
        if let (Some(started), Some(histogram)) = (started, self.hook_durations.get(slot.index())) {
            histogram.record(started.elapsed().as_secs_f64());
        }
    }

    /// Requests its routes may serve at once.
    pub fn max_in_flight(&self) -> usize {
        self.limits.load().max_in_flight
    }

    /// The handler time budget of one request (zero: none).
    pub fn cpu_budget(&self) -> Duration {
        self.limits.load().cpu_budget
    }

    /// Enabled again by an administrator: a fresh breaker, and an automatic disable's reason
    /// no longer stands.
    fn reenabled(&self) {
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

    pub fn is_enabled(&self) -> bool {
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
    async fn migrate_up(&self, host: &deadpool_postgres::Pool) {
        let Some(pool) = &self.pool else { return };
        let migrations = self.registration.migrations();
        match super::schema::migrate(host, pool, &self.name, &migrations, None).await {
            Ok(applied) if !applied.is_empty() => {
                tracing::info!(extension = %self.name, ?applied, "extension migrations applied");
            }
            Ok(_) => {}
            Err(e) => self.fail(format!("migration failed: {e}")),
        }
    }

    pub(super) fn fail(&self, reason: String) {
        tracing::error!(extension = %self.name, %reason, "extension not running");
        self.running.store(false, Ordering::Relaxed);
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    /// The hook time limit.
    pub fn hook_limit(&self) -> Duration {
        self.hooks.time_limit()
    }
}

/// All loaded extensions and the orders in which their hooks and middleware run.
pub struct ExtensionHost {
    /// In dependency order.
    loaded: Vec<Arc<Loaded>>,
    by_name: HashMap<String, usize>,
    /// Per hook point (indexed by `HookPoint as usize`): indices into `loaded`, by
    /// (priority, name).
    hook_order: Vec<Vec<usize>>,
    /// Indices of extensions with any request-pipeline hook or middleware.
    pipeline_members: Vec<usize>,
    /// Middleware by (priority, extension name, id): index into `loaded` and the spec.
    middleware_order: Vec<(usize, MiddlewareSpec)>,
    pool: Pool,
    bus: EventBus,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    settings: ExtensionsConfig,
    /// This instance, as named in `solobase.extension_stats` and the jobs it claims.
    instance: String,
    started_at: time::OffsetDateTime,
}

impl std::fmt::Debug for ExtensionHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtensionHost")
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

/// The hook points of the request pipeline.
const PIPELINE: [HookPoint; 7] = [
    HookPoint::PreRequest,
    HookPoint::Authentication,
    HookPoint::Authorization,
    HookPoint::Error,
    HookPoint::PostRequest,
    HookPoint::PreResponse,
    HookPoint::PostResponse,
];

/// How a hook call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome<T> {
    /// It answered.
    Done(T),
    /// It was cut off at its time limit (counted and logged).
    TimedOut,
    /// It panicked (counted, logged and audited): the request it served gets a 500.
    Panicked,
}

impl<T> HookOutcome<T> {
    /// The answer, if there was one.
    pub fn done(self) -> Option<T> {
        match self {
            Self::Done(value) => Some(value),
            _ => None,
        }
    }
}

/// A request-path hook call after its synchronous part.
#[derive(Debug)]
pub enum Begun<'l, T, F> {
    /// It answered at once.
    Ready(T),
    /// It waits: await the call.
    Waiting(HookCall<'l, F>),
    /// It panicked before answering.
    Panicked,
}

/// One hook call: the hook's future with its time limit. A hook that answers on its first
/// poll (most do) costs no timer and no allocation; the timer starts only when it waits. A
/// panic while polling is caught.
#[derive(Debug)]
#[must_use = "a hook call does nothing unless awaited"]
pub struct HookCall<'l, F> {
    hook: F,
    loaded: &'l Loaded,
    slot: Slot,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When it began, if its duration is measured.
    started: Option<Instant>,
}

impl<F: Future + Unpin> Future for HookCall<'_, F> {
    type Output = HookOutcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let since = crate::alloc::allocated();
        let polled =
            std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.hook).poll(cx)));
        this.loaded.stats.allocated_since(since);
        match polled {
            Ok(Poll::Ready(value)) => {
                this.loaded.breaker.success();
                this.loaded.hook_took(this.slot, this.started);
                return Poll::Ready(HookOutcome::Done(value));
            }
            Ok(Poll::Pending) => {}
            Err(payload) => {
                this.loaded.panicked(this.slot.name(), payload.as_ref());
                return Poll::Ready(HookOutcome::Panicked);
            }
        }
        let limit = this.loaded.hook_limit();
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.loaded
            .stats
            .hook_timeouts
            .fetch_add(1, Ordering::Relaxed);
        this.loaded.failed();
        tracing::warn!(extension = %this.loaded.name, hook = this.slot.name(), limit_ms = limit.as_millis() as u64, "hook cut off at its time limit");
        Poll::Ready(HookOutcome::TimedOut)
    }
}

/// Awaits a begun hook call to its outcome.
pub async fn settle<T, F: Future<Output = T> + Unpin>(begun: Begun<'_, T, F>) -> HookOutcome<T> {
    match begun {
        Begun::Ready(answer) => HookOutcome::Done(answer),
        Begun::Waiting(call) => call.await,
        Begun::Panicked => HookOutcome::Panicked,
    }
}

/// The answer to a request whose extension code panicked.
pub fn panicked_response() -> Response {
    Response::error_with(
        solobase_sdk::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an extension failed while handling this request",
    )
}

impl ExtensionHost {
    /// Loads, migrates, initializes and starts every compiled-in extension.
    pub async fn start(
        ctx: HostContext,
        registrations: Vec<Registration>,
    ) -> anyhow::Result<Arc<Self>> {
        let pending = loader::parse_manifests(registrations);
        let deps: BTreeMap<String, Vec<String>> = pending
            .iter()
            .map(|(name, m, _, _)| {
                let deps = m
                    .as_ref()
                    .map(|m| m.dependencies.keys().map(|d| d.to_string()).collect())
                    .unwrap_or_default();
                (name.to_string(), deps)
            })
            .collect();
        let order = loader::dependency_order(&deps);
        let trusted = |name: &str| loader::first_sight_approval(&ctx.settings, name);
        let first_sight: Vec<(String, bool)> = order
            .iter()
            .map(|n| (n.clone(), trusted(n).is_some()))
            .collect();
        state::ensure_all(&ctx.pool, &first_sight).await?;
        let requested: Vec<(String, Vec<String>, bool)> = pending
            .iter()
            .map(|(name, m, ..)| {
                (
                    name.to_string(),
                    loader::requested(m.as_ref()),
                    trusted(name.as_str()).is_some(),
                )
            })
            .collect();
        for (name, permissions) in state::decide_first_grants(&ctx.pool, &requested).await? {
            if permissions.is_empty() {
                continue;
            }
            let reason = trusted(&name)
                .unwrap_or("in use before permissions were granted; it keeps what it requests");
            let entry =
                audit::Entry::new(audit::Actor::System, "extension.grant", audit::Outcome::Ok)
                    .extension(&name)
                    .detail(serde_json::json!({"permissions": permissions, "reason": reason}));
            audit::record_or_log(&ctx.pool, entry).await;
        }
        let persisted = state::load_all(&ctx.pool)
            .await
            .context("cannot read extension state")?;
        if !order.is_empty() {
            super::db_role::harden_database(&ctx.pool)
                .await
                .context("cannot prepare the database for extension roles")?;
        }
        let mut loaded: Vec<Arc<Loaded>> = Vec::new();
        let mut by_name = HashMap::new();
        for name in &order {
            let Some((ext_name, manifest, registration, problem)) =
                pending.iter().find(|(n, ..)| n.as_str() == name).cloned()
            else {
                continue;
            };
            let no_row = state::Persisted {
                enabled: false,
                last_error: None,
                granted: Default::default(),
                health: None,
                config: None,
            };
            let persisted = persisted.get(name).unwrap_or(&no_row);
            let problem = problem.or_else(|| {
                manifest.as_ref().and_then(|m| {
                    loader::unmet_dependency(m.dependencies.keys().map(|d| d.as_str()), |d| {
                        by_name
                            .get(d)
                            .is_some_and(|&i: &usize| loaded[i].ext.is_some())
                    })
                })
            });
            let item = loader::load_one(&ctx, ext_name, manifest, registration, persisted, problem)
                .await?;
            by_name.insert(name.clone(), loaded.len());
            loaded.push(Arc::new(item));
        }

        let host = Self::assemble(loaded, by_name, &ctx);
        host.start_all().await;
        let outcomes: Vec<(String, Option<String>)> = host
            .loaded
            .iter()
            .map(|l| (l.name.to_string(), l.failure()))
            .collect();
        state::record_outcomes(&ctx.pool, &outcomes).await?;
        let host = Arc::new(host);
        host.spawn_event_hooks();
        host.spawn_watchdog();
        host.spawn_rate_sweeper();
        host.spawn_health_monitor();
        host.spawn_stats_publisher();
        if !host.loaded.is_empty() {
            super::jobs::spawn(&host);
        }
        if !host.loaded.is_empty() {
            let task = super::sync::spawn(
                Arc::downgrade(&host),
                ctx.pg_config.clone(),
                Duration::from_secs(ctx.settings.resync_secs),
                host.stop.subscribe(),
            );
            host.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(task);
        }
        Ok(host)
    }

    fn assemble(
        loaded: Vec<Arc<Loaded>>,
        by_name: HashMap<String, usize>,
        ctx: &HostContext,
    ) -> Self {
        let mut hook_order: Vec<Vec<usize>> = vec![Vec::new(); HookPoint::ALL.len()];
        for point in HookPoint::ALL {
            hook_order[point as usize] =
                super::order::hook_order(loaded.iter().enumerate().filter_map(|(i, l)| {
                    l.hooks
                        .points()
                        .iter()
                        .find(|(p, _)| *p == point)
                        .map(|(_, prio)| (*prio, l.name.as_str(), i))
                }));
        }
        let pipeline_members = loaded
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                !l.middleware.is_empty()
                    || l.hooks.points().iter().any(|(p, _)| PIPELINE.contains(p))
            })
            .map(|(i, _)| i)
            .collect();
        let middleware_order = super::order::middleware_order(
            loaded
                .iter()
                .enumerate()
                .map(|(i, l)| (i, l.name.as_str(), l.middleware.as_slice())),
        );
        Self {
            loaded,
            by_name,
            hook_order,
            pipeline_members,
            middleware_order,
            pool: ctx.pool.clone(),
            bus: ctx.bus.clone(),
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            settings: ctx.settings.clone(),
            instance: instance_name(),
            started_at: time::OffsetDateTime::now_utc(),
        }
    }

    async fn start_all(&self) {
        let limit = Duration::from_secs(self.settings.lifecycle_timeout_secs);
        for l in &self.loaded {
            let Some(ext) = l.ext.clone() else { continue };
            if let Some(reason) = l.manifest.as_ref().and_then(|m| {
                loader::unmet_dependency(m.dependencies.keys().map(|d| d.as_str()), |d| {
                    self.get(d).is_some_and(|x| x.is_running())
                })
            }) {
                l.fail(reason);
                continue;
            }
            let started = Instant::now();
            let starting = AssertUnwindSafe(ext.start().instrument(l.span.clone())).catch_unwind();
            match tokio::time::timeout(limit, starting).await {
                Ok(Err(payload)) => {
                    l.panicked("start", payload.as_ref());
                    l.fail(format!(
                        "start panicked: {}",
                        super::faults::message(payload.as_ref())
                    ));
                }
                Ok(Ok(Ok(()))) => {
                    l.running.store(true, Ordering::Relaxed);
                    tracing::info!(
                        extension = %l.name,
                        micros = started.elapsed().as_micros() as u64,
                        enabled = l.is_enabled(),
                        "extension started"
                    );
                }
                Ok(Ok(Err(e))) => l.fail(format!("start failed: {e}")),
                Err(_) => l.fail(format!("start did not finish within {} s", limit.as_secs())),
            }
        }
    }

    /// Starts one task per extension that subscribed to events.
    fn spawn_event_hooks(self: &Arc<Self>) {
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
    pub(super) fn spawn_periodic<F, Fut>(self: &Arc<Self>, period: Duration, round: F)
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
    fn spawn_rate_sweeper(self: &Arc<Self>) {
        self.spawn_periodic(Duration::from_secs(60), |host| async move {
            for l in &host.loaded {
                l.limits.load().rates.forget_idle_clients();
            }
        });
    }

    /// Starts the health monitor (see [`super::health`]).
    fn spawn_health_monitor(self: &Arc<Self>) {
        if !self.loaded.is_empty() {
            let every = Duration::from_millis(self.settings.health_interval_ms);
            self.spawn_periodic(every, |host| async move { host.check_health().await });
        }
    }

    /// This instance's name: host name, process id and a random part (several instances may
    /// share a process, in tests).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Writes this instance's counters to the database every `stats_interval_ms`.
    fn spawn_stats_publisher(self: &Arc<Self>) {
        if !self.loaded.is_empty() {
            let every = Duration::from_millis(self.settings.stats_interval_ms);
            self.spawn_periodic(every, |host| async move {
                if let Err(e) = host.publish_stats().await {
                    tracing::warn!(error = %e, "cannot record the extensions' counters");
                }
            });
        }
    }

    async fn publish_stats(&self) -> anyhow::Result<()> {
        let rows: Vec<(String, serde_json::Value)> = self
            .loaded
            .iter()
            .map(|l| (l.name.to_string(), self.stats_of(l)))
            .collect();
        state::record_stats(&self.pool, &self.instance, self.started_at, &rows).await
    }

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

    /// One round of health checks, all extensions at once; then the consequences.
    async fn check_health(&self) {
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
                        super::health::check(ext.as_ref(), limit)
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
                let mut report = self.health_report(l);
                report["history"] = serde_json::json!(l.health.history());
                (l.name.to_string(), report)
            })
            .collect();
        if let Err(e) = state::record_health(&self.pool, &reports).await {
            tracing::warn!(error = %e, "cannot record the extensions' health");
        }
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
        super::health::with_dependencies(
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

    /// Starts the watchdog that keeps the extensions' database time limits.
    fn spawn_watchdog(&self) {
        let limits: Vec<_> = self
            .loaded
            .iter()
            .filter(|l| l.pool.is_some())
            .map(|l| (l.name.schema(), self.settings.limits_for(l.name.as_str())))
            .collect();
        if limits.is_empty() {
            return;
        }
        let task = super::db_role::spawn_watchdog(self.pool.clone(), limits, self.stop.subscribe());
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Stops every running extension, in reverse dependency order.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        if !self.loaded.is_empty()
            && let Err(e) = state::forget_stats(&self.pool, &self.instance).await
        {
            tracing::warn!(error = %e, "cannot remove this instance's counters");
        }
        let limit = Duration::from_secs(self.settings.lifecycle_timeout_secs);
        for l in self.loaded.iter().rev() {
            let Some(ext) = l.ext.clone() else { continue };
            if !l.is_running() {
                continue;
            }
            let stopping = AssertUnwindSafe(ext.stop().instrument(l.span.clone())).catch_unwind();
            match tokio::time::timeout(limit, stopping).await {
                Ok(Ok(Ok(()))) => tracing::info!(extension = %l.name, "extension stopped"),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(extension = %l.name, error = %e, "extension stop failed")
                }
                Ok(Err(payload)) => l.panicked("stop", payload.as_ref()),
                Err(_) => tracing::warn!(extension = %l.name, "extension stop timed out"),
            }
            l.running.store(false, Ordering::Relaxed);
        }
        // Idle connections say goodbye now, not when the database shuts them down.
        for l in &self.loaded {
            if let Some(pool) = &l.pool {
                pool.close();
            }
        }
    }

    /// Every loaded extension, in dependency order.
    pub fn all(&self) -> &[Arc<Loaded>] {
        &self.loaded
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Loaded>> {
        self.by_name.get(name).map(|&i| &self.loaded[i])
    }

    /// Enables `name` (granting what `grant` says) on every instance, and here at once.
    pub async fn enable(
        &self,
        name: &str,
        grant: super::control::Grant,
        actor: &audit::Actor,
    ) -> Result<super::control::Permissions, super::control::AdminError> {
        let requested = self.requested(name);
        let permissions =
            super::control::enable(&self.pool, name, &requested, grant, actor).await?;
        self.resync().await?;
        Ok(permissions)
    }

    /// Disables `name` on every instance, and here at once.
    pub async fn disable(
        &self,
        name: &str,
        actor: &audit::Actor,
    ) -> Result<(), super::control::AdminError> {
        super::control::disable(&self.pool, name, actor).await?;
        self.resync().await?;
        Ok(())
    }

    /// Revokes `permissions` from `name` on every instance, and here at once.
    pub async fn revoke(
        &self,
        name: &str,
        permissions: &[String],
        actor: &audit::Actor,
    ) -> Result<super::control::Permissions, super::control::AdminError> {
        let requested = self.requested(name);
        let after =
            super::control::revoke(&self.pool, name, &requested, permissions, actor).await?;
        self.resync().await?;
        Ok(after)
    }

    /// The runtime's settings as it started.
    pub fn settings(&self) -> &ExtensionsConfig {
        &self.settings
    }

    /// Where the extensions' configuration files are.
    pub fn config_dir(&self) -> &std::path::Path {
        &self.settings.config_dir
    }

    /// The host's database pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the host is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Changes to `true` when the host stops: background tasks end then.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Applies the limits of `new` that take effect at run time — rate limits, in-flight
    /// requests, CPU budget — to every extension, each extension's as one swap (a replaced
    /// rate limit starts with full buckets). Returns what changed, as `<extension>.<limit>`.
    pub fn apply_limits(&self, new: &ExtensionsConfig) -> Vec<String> {
        let mut changed = Vec::new();
        for l in &self.loaded {
            let name = l.name.as_str();
            let old = l.limits.load_full();
            let mut live = Live::of(new, name);
            let before = changed.len();
            if old.rates.rates() == live.rates.rates() {
                live.rates = old.rates.clone();
            } else {
                changed.push(format!("{name}.rates"));
            }
            if old.max_in_flight != live.max_in_flight {
                changed.push(format!("{name}.max_in_flight"));
            }
            if old.cpu_budget != live.cpu_budget {
                changed.push(format!("{name}.cpu_budget_ms"));
            }
            if changed.len() > before {
                l.limits.store(Arc::new(live));
            }
        }
        changed
    }

    /// The limits `name` runs under now, all from one configuration.
    pub fn live_limits(&self, name: &str) -> Option<Arc<Live>> {
        self.get(name).map(|l| l.limits.load_full())
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

    /// What `name`'s manifest requests.
    fn requested(&self, name: &str) -> Vec<String> {
        self.get(name)
            .and_then(|l| l.grants.as_ref())
            .map(|g| g.requested().to_vec())
            .unwrap_or_default()
    }

    /// Applies the persisted state of every extension — enabled flag, grants — as changed by
    /// [`super::control`] here or elsewhere (see [`super::sync`]).
    pub async fn resync(&self) -> anyhow::Result<()> {
        let all = state::load_all(&self.pool).await?;
        for l in &self.loaded {
            let Some(persisted) = all.get(l.name.as_str()) else {
                continue;
            };
            // An automatic disable whose persistence is still on its way.
            let pending = persisted.enabled && l.disable_pending.load(Ordering::Relaxed);
            // Enabling brings its schema up first, as a start does: it may have been rolled
            // back while it was disabled.
            if persisted.enabled && !pending && !l.is_enabled() && l.is_running() {
                l.migrate_up(self.pool()).await;
            }
            if !pending && l.enabled.swap(persisted.enabled, Ordering::Relaxed) != persisted.enabled
            {
                tracing::info!(extension = %l.name, enabled = persisted.enabled, "extension state changed");
                if persisted.enabled {
                    l.reenabled();
                }
            }
            if let Some(grants) = &l.grants {
                grants.set(&persisted.granted);
            }
            // A configuration changed on another instance (read again under the change lock:
            // this one may be replacing it right now).
            if let Some((_, etag)) = &persisted.config
                && *etag != l.config_state.current().1
                && !l.config_state.refused_shared(etag)
            {
                self.apply_shared_config(l.name.as_str()).await;
            }
        }
        Ok(())
    }

    /// Active extensions with a hook at `point`, in hook order.
    pub fn hooked(&self, point: HookPoint) -> impl Iterator<Item = &Arc<Loaded>> {
        self.hook_order[point as usize]
            .iter()
            .map(|&i| &self.loaded[i])
            .filter(|l| l.is_active())
    }

    /// Whether any active extension has a hook at `point`.
    pub fn has_hooks(&self, point: HookPoint) -> bool {
        self.hooked(point).next().is_some()
    }

    /// Every middleware, in order, active or not.
    pub fn middleware(&self) -> impl Iterator<Item = (&Arc<Loaded>, &MiddlewareSpec)> {
        self.middleware_order
            .iter()
            .map(|(i, spec)| (&self.loaded[*i], spec))
    }

    /// Whether any extension of `active` takes part in the request pipeline (a pipeline
    /// hook, or middleware for `path`).
    pub fn pipeline_active(&self, path: &str, active: &ActiveSet) -> bool {
        self.pipeline_members.iter().any(|&i| {
            let l = &self.loaded[i];
            active.0[i]
                && (l.hooks.points().iter().any(|(p, _)| PIPELINE.contains(p))
                    || l.middleware.iter().any(|m| m.applies_to(path)))
        })
    }

    /// Which extensions are active now: taken once per request, so that the request sees one
    /// consistent set and each later check is a plain read.
    pub fn active_now(&self) -> ActiveSet {
        ActiveSet(self.loaded.iter().map(|l| l.is_active()).collect())
    }

    /// The extensions of `active` with a hook at `point`, in hook order.
    pub fn hooked_in<'a>(
        &'a self,
        point: HookPoint,
        active: &'a ActiveSet,
    ) -> impl Iterator<Item = &'a Arc<Loaded>> {
        self.hook_order[point as usize]
            .iter()
            .filter(|&&i| active.0[i])
            .map(|&i| &self.loaded[i])
    }

    /// Whether any extension of `active` has a hook at `point`.
    pub fn has_hooks_in(&self, point: HookPoint, active: &ActiveSet) -> bool {
        self.hook_order[point as usize].iter().any(|&i| active.0[i])
    }

    /// The middleware of `active`, in order.
    pub fn middleware_in<'a>(
        &'a self,
        active: &'a ActiveSet,
    ) -> impl Iterator<Item = (&'a Arc<Loaded>, &'a MiddlewareSpec)> {
        self.middleware_order
            .iter()
            .filter(|(i, _)| active.0[*i])
            .map(|(i, spec)| (&self.loaded[*i], spec))
    }

    /// Calls one hook of `l` in `place`: `start` makes its future (a panic there or while it
    /// runs is caught), which runs within the time limit. Counts the call and any time-out.
    pub fn call<'l, F: Future + Unpin>(
        &self,
        l: &'l Loaded,
        slot: Slot,
        start: impl FnOnce() -> F,
    ) -> Begun<'l, F::Output, F> {
        l.stats.hooks[slot.index()].fetch_add(1, Ordering::Relaxed);
        let started = time_this_request().then(Instant::now);
        match std::panic::catch_unwind(AssertUnwindSafe(start)) {
            Ok(hook) => Begun::Waiting(HookCall {
                hook,
                loaded: l,
                slot,
                timer: None,
                started,
            }),
            Err(payload) => {
                l.panicked(slot.name(), payload.as_ref());
                Begun::Panicked
            }
        }
    }

    /// Starts one request-path hook call: the answer when the hook gave it at once (counted,
    /// no timer), otherwise the call to await within the time limit. A panic while `start`
    /// runs unwinds to the caller — the pipeline catches it once per request, which costs far
    /// less than a catch around every hook; panics while a waiting hook runs are caught by the
    /// [`HookCall`].
    #[inline(always)]
    pub fn begin<'l, 'h, T: Unpin>(
        &self,
        l: &'l Loaded,
        slot: Slot,
        timed: bool,
        start: impl FnOnce() -> Hook<'h, T>,
    ) -> Begun<'l, T, Hook<'h, T>> {
        l.stats.hooks[slot.index()].fetch_add(1, Ordering::Relaxed);
        let started = timed.then(Instant::now);
        let since = crate::alloc::allocated();
        let outcome = start().try_ready();
        l.stats.allocated_since(since);
        match outcome {
            Ok(answer) => {
                l.breaker.success();
                l.hook_took(slot, started);
                Begun::Ready(answer)
            }
            Err(waiting) => Begun::Waiting(HookCall {
                hook: waiting,
                loaded: l,
                slot,
                timer: None,
                started,
            }),
        }
    }

    /// Runs the hooks at `point` that may refuse; the first refusal's response is returned. A
    /// hook that panics refuses with a 500.
    pub async fn refuse<'e, F, Fut>(&'e self, point: HookPoint, f: F) -> Option<Response>
    where
        F: Fn(&'e dyn ErasedExtension) -> Fut,
        Fut: Future<Output = Flow> + Unpin + 'e,
    {
        for l in self.hooked(point) {
            let Some(ext) = l.ext() else { continue };
            match settle(self.call(l, point.into(), || f(ext.as_ref()))).await {
                HookOutcome::Done(Flow::Respond(response)) => return Some(*response),
                HookOutcome::Panicked => return Some(panicked_response()),
                _ => {}
            }
        }
        None
    }

    /// Runs the observing hooks at `point`.
    pub async fn observe<'e, F, Fut>(&'e self, point: HookPoint, f: F)
    where
        F: Fn(&'e dyn ErasedExtension) -> Fut,
        Fut: Future<Output = ()> + Unpin + 'e,
    {
        for l in self.hooked(point) {
            if let Some(ext) = l.ext() {
                settle(self.call(l, point.into(), || f(ext.as_ref()))).await;
            }
        }
    }

    /// The largest body extension `name`'s routes accept.
    pub fn max_body_bytes(&self, name: &str) -> usize {
        self.settings.max_body_bytes_for(name)
    }
}

/// See [`ExtensionHost::instance`].
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}:{}:{}",
        if host.is_empty() { "localhost" } else { &host },
        std::process::id(),
        &random[..8]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(limit: Duration) -> Loaded {
        Loaded {
            name: ExtensionName::parse("timed").expect("valid name"),
            manifest: None,
            registration: Registration::new::<Nothing>("", "0.1.0"),
            ext: None,
            routes: None,
            hooks: HookSet::new().timeout(limit),
            middleware: Vec::new(),
            config: None,
            pool: None,
            enabled: AtomicBool::new(true),
            running: AtomicBool::new(true),
            failure: Mutex::new(None),
            stats: Stats::default(),
            panics: PanicLog::new(None),
            breaker: Breaker::new(ExtensionsConfig::default().breaker()),
            in_flight: AtomicUsize::new(0),
            limits: arc_swap::ArcSwap::from_pointee(Live {
                max_in_flight: 1,
                ..Live::of(&ExtensionsConfig::default(), "timed")
            }),
            rate_audit: Sampler::default(),
            storage: None,
            grants: None,
            bus: None,
            hook_durations: Vec::new(),
            health: Default::default(),
            config_state: Default::default(),
            disable_pending: Default::default(),
            span: tracing::Span::none(),
        }
    }

    struct Nothing;
    impl solobase_sdk::Extension for Nothing {
        type Config = ();
        async fn initialize(_: solobase_sdk::InitContext<()>) -> solobase_sdk::Result<Self> {
            Ok(Nothing)
        }
    }

    fn call<'l, T: Unpin>(l: &'l Loaded, hook: Hook<'static, T>) -> HookCall<'l, Hook<'static, T>> {
        HookCall {
            hook,
            loaded: l,
            slot: Slot::from(HookPoint::PreRequest),
            timer: None,
            started: None,
        }
    }

    #[tokio::test]
    async fn hook_calls_cut_off_slow_hooks_and_catch_panics() {
        let l = loaded(Duration::from_millis(20));
        assert_eq!(call(&l, Hook::ready(1)).await, HookOutcome::Done(1));
        let waits = Hook::wait(async {
            tokio::task::yield_now().await;
            2
        });
        assert_eq!(call(&l, waits).await, HookOutcome::Done(2));
        assert_eq!(l.stats.hook_timeouts.load(Ordering::Relaxed), 0);
        let slow = Hook::wait(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            3
        });
        assert_eq!(call(&l, slow).await, HookOutcome::TimedOut);
        assert_eq!(l.stats.hook_timeouts.load(Ordering::Relaxed), 1);
        let panics = Hook::<u8>::wait(async {
            tokio::task::yield_now().await;
            panic!("inside a waiting hook")
        });
        assert_eq!(call(&l, panics).await, HookOutcome::Panicked);
        assert_eq!(l.panics.count(), 1);
    }
}
