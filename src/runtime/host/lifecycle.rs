//! Loading, starting, re-reading and stopping the extensions: [`ExtensionHost::start`]
//! (dependency order, first-sight grants, roles, migrations, `initialize`, `start`),
//! [`ExtensionHost::resync`], limits replaced by a reload, [`ExtensionHost::shutdown`].

use super::*;

impl ExtensionHost {
    /// Loads, migrates, initializes and starts every compiled-in extension.
    pub(crate) async fn start(
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
            crate::runtime::db_role::harden_database(&ctx.pool)
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
            let item = Arc::new(item);
            item.tasks.attach(Arc::downgrade(&item));
            loaded.push(item);
        }

        let host = Self::assemble(loaded, by_name, &ctx);
        host.converge().await;
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
            crate::runtime::jobs::spawn(&host);
        }
        if !host.loaded.is_empty() {
            let task = crate::runtime::sync::spawn(
                Arc::downgrade(&host),
                ctx.pg_config.clone(),
                ctx.tls.clone(),
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

    pub(crate) fn assemble(
        loaded: Vec<Arc<Loaded>>,
        by_name: HashMap<String, usize>,
        ctx: &HostContext,
    ) -> Self {
        let mut hook_order: Vec<Vec<usize>> = vec![Vec::new(); HookPoint::ALL.len()];
        for point in HookPoint::ALL {
            hook_order[point as usize] = crate::runtime::order::hook_order(
                loaded.iter().enumerate().filter_map(|(i, l)| {
                    l.hooks
                        .points()
                        .iter()
                        .find(|(p, _)| *p == point)
                        .map(|(_, prio)| (*prio, l.name.as_str(), i))
                }),
            );
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
        let middleware_order = crate::runtime::order::middleware_order(
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
            converging: tokio::sync::Mutex::new(()),
            settings: ctx.settings.clone(),
            instance: instance_name(),
            started_at: time::OffsetDateTime::now_utc(),
        }
    }

    /// Brings every extension to the state its flags ask for: an enabled one that can run is
    /// started (dependencies first), one disabled — by an administrator or automatically —
    /// or whose dependency no longer runs is stopped (dependents first), its tasks with it.
    /// Run at start and after every re-read of the extensions' state; does nothing when all
    /// are as they should be.
    pub(crate) async fn converge(&self) {
        let _one_at_a_time = self.converging.lock().await;
        for l in self.loaded.iter().rev() {
            let dependency_down = l.manifest.as_ref().is_some_and(|m| {
                m.dependencies
                    .keys()
                    .any(|d| !self.get(d.as_str()).is_some_and(|x| x.is_running()))
            });
            if l.is_running() && (!l.is_enabled() || dependency_down) {
                self.stop_one(l).await;
            }
        }
        for l in &self.loaded {
            if l.is_enabled()
                && !l.is_running()
                && l.ext.is_some()
                && !l.start_failed.load(Ordering::Relaxed)
            {
                self.start_one(l).await;
            }
        }
    }

    /// Starts `l` (its `start()`, within the time limit; its tasks may run from then on).
    async fn start_one(&self, l: &Loaded) {
        let Some(ext) = l.ext.clone() else { return };
        if let Some(reason) = l.manifest.as_ref().and_then(|m| {
            loader::unmet_dependency(m.dependencies.keys().map(|d| d.as_str()), |d| {
                self.get(d).is_some_and(|x| x.is_running())
            })
        }) {
            // Not a failure of its own: it starts when its dependency does.
            *l.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            return;
        }
        let limit = Duration::from_secs(self.settings.lifecycle_timeout_secs);
        let started = Instant::now();
        l.tasks.open();
        let starting = AssertUnwindSafe(ext.start().instrument(l.span.clone())).catch_unwind();
        let failure = match tokio::time::timeout(limit, starting).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Err(payload)) => {
                l.panicked("start", payload.as_ref());
                Some(format!(
                    "start panicked: {}",
                    crate::runtime::faults::message(payload.as_ref())
                ))
            }
            Ok(Ok(Err(e))) => Some(format!("start failed: {e}")),
            Err(_) => Some(format!("start did not finish within {} s", limit.as_secs())),
        };
        match failure {
            None => {
                {
                    let mut reason = l.failure.lock().unwrap_or_else(|p| p.into_inner());
                    if reason.as_deref().is_some_and(|r| r.contains("dependency")) {
                        *reason = None;
                    }
                }
                l.running.store(true, Ordering::Relaxed);
                tracing::info!(
                    extension = %l.name,
                    micros = started.elapsed().as_micros() as u64,
                    "extension started"
                );
            }
            Some(reason) => {
                l.tasks.close(Duration::ZERO).await;
                l.start_failed.store(true, Ordering::Relaxed);
                l.fail(reason);
            }
        }
    }

    /// Stops `l`: its `stop()` within the time limit, then its tasks get what is left of it
    /// to end before they are cancelled.
    async fn stop_one(&self, l: &Loaded) {
        let limit = Duration::from_secs(self.settings.lifecycle_timeout_secs);
        let deadline = Instant::now() + limit;
        if let Some(ext) = l.ext.clone() {
            let stopping = AssertUnwindSafe(ext.stop().instrument(l.span.clone())).catch_unwind();
            match tokio::time::timeout(limit, stopping).await {
                Ok(Ok(Ok(()))) => tracing::info!(extension = %l.name, "extension stopped"),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(extension = %l.name, error = %e, "extension stop failed")
                }
                Ok(Err(payload)) => l.panicked("stop", payload.as_ref()),
                Err(_) => tracing::warn!(extension = %l.name, "extension stop timed out"),
            }
        }
        l.tasks
            .close(deadline.saturating_duration_since(Instant::now()))
            .await;
        l.running.store(false, Ordering::Relaxed);
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
        for l in self.loaded.iter().rev() {
            if l.is_running() {
                self.stop_one(l).await;
            }
        }
        // Idle connections say goodbye now, not when the database shuts them down.
        for l in &self.loaded {
            if let Some(pool) = &l.pool {
                pool.close();
            }
        }
    }

    /// Applies the limits of `new` that take effect at run time — rate limits, in-flight
    /// requests, CPU budget — to every extension, each extension's as one swap (a replaced
    /// rate limit starts with full buckets). Returns what changed, as `<extension>.<limit>`.
    pub(crate) fn apply_limits(&self, new: &ExtensionsConfig) -> Vec<String> {
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
            if let Some(http) = &l.outbound
                && http.set_allow(new.outbound_allow(name))
            {
                changed.push(format!("{name}.outbound_allow"));
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

    /// Applies the persisted state of every extension — enabled flag, grants — as changed by
    /// [`crate::runtime::control`] here or elsewhere (see [`crate::runtime::sync`]).
    pub(crate) async fn resync(&self) -> anyhow::Result<()> {
        let all = state::load_all(&self.pool).await?;
        for l in &self.loaded {
            let Some(persisted) = all.get(l.name.as_str()) else {
                continue;
            };
            // An automatic disable whose persistence is still on its way.
            let pending = persisted.enabled && l.disable_pending.load(Ordering::Relaxed);
            // Enabling brings its schema up first, as a start does: it may have been rolled
            // back while it was disabled.
            if persisted.enabled && !pending && !l.is_enabled() && l.ext.is_some() {
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
        // Disabled here or elsewhere, automatically or not: stopped; enabled: started.
        self.converge().await;
        Ok(())
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
