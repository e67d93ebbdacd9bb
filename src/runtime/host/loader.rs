//! Loading one extension: its manifest, its place in the dependency order, its configuration
//! file, its migrations and services, and `initialize`. [`super::ExtensionHost::start`]
//! drives these steps; failures become the extension's recorded reason, never the server's.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use solobase_sdk::extension::ConfigUpdater;
use solobase_sdk::host::ErasedExtension;
use solobase_sdk::host::HookSet;
use solobase_sdk::routes::RouteTable;
use solobase_sdk::services::ConfigHandle;
use solobase_sdk::{Events, ExtensionName, InitContext, Manifest, Registration};
use tracing::Instrument;

use super::{HostContext, Loaded, Stats};
use crate::runtime::faults::{Breaker, PanicLog, Sampler};
use crate::runtime::grants::Grants;
use crate::runtime::limits::Live;
use crate::runtime::{db_role, schema, services};

/// Orders extensions so that each comes after its dependencies (ties by name). Extensions
/// in a cycle or with missing dependencies come last, to be failed by the loader.
pub(crate) fn dependency_order(manifests: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut placed: Vec<String> = Vec::new();
    let mut remaining: BTreeMap<&String, &Vec<String>> = manifests.iter().collect();
    loop {
        let ready: Vec<String> = remaining
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| placed.contains(d)))
            .map(|(name, _)| (*name).clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            remaining.remove(&name);
            placed.push(name);
        }
    }
    placed.extend(remaining.keys().map(|n| (*n).clone()));
    placed
}

/// Why an extension cannot be initialized or started: the first of its `dependencies` that
/// is not `ready` (initialized, or running). The host asks in [`dependency_order`], so an
/// extension in a cycle, or depending on a missing or failed one, is never loaded.
pub(super) fn unmet_dependency<'a>(
    dependencies: impl IntoIterator<Item = &'a str>,
    ready: impl Fn(&str) -> bool,
) -> Option<String> {
    dependencies
        .into_iter()
        .find(|d| !ready(d))
        .map(|d| format!("its dependency {d} is not running"))
}

pub(super) type Pending = (
    ExtensionName,
    Option<Manifest>,
    Registration,
    Option<String>,
);

pub(super) fn parse_manifests(registrations: Vec<Registration>) -> Vec<Pending> {
    registrations
        .into_iter()
        .filter_map(|reg| match Manifest::parse(reg.manifest) {
            Ok(m) => {
                let problem = (m.version.to_string() != reg.crate_version).then(|| {
                    format!(
                        "manifest version {} differs from crate version {}",
                        m.version, reg.crate_version
                    )
                });
                Some((m.name.clone(), Some(m), reg, problem))
            }
            Err(e) => {
                tracing::error!(error = %e, "a compiled-in extension has an invalid manifest");
                None
            }
        })
        .collect()
}

/// The permissions a manifest requests.
pub(crate) fn requested(manifest: Option<&Manifest>) -> Vec<String> {
    manifest
        .map(|m| m.permissions.iter().map(|p| p.to_string()).collect())
        .unwrap_or_default()
}

/// Migrates and initializes one extension; failures are recorded, not returned.
pub(super) async fn load_one(
    ctx: &HostContext,
    name: ExtensionName,
    manifest: Option<Manifest>,
    registration: Registration,
    persisted: &crate::runtime::state::Persisted,
    problem: Option<String>,
) -> anyhow::Result<Loaded> {
    let span = tracing::info_span!("extension", extension = %name);
    let mut item = Loaded {
        name: name.clone(),
        manifest,
        registration,
        ext: None,
        routes: None,
        hooks: HookSet::new(),
        middleware: Vec::new(),
        config: None,
        pool: None,
        enabled: AtomicBool::new(persisted.enabled),
        running: AtomicBool::new(false),
        failure: Mutex::new(None),
        stats: Stats::default(),
        panics: PanicLog::new(Some(ctx.pool.clone())),
        breaker: Breaker::new(ctx.settings.breaker()),
        in_flight: AtomicUsize::new(0),
        limits: arc_swap::ArcSwap::from_pointee(Live::of(&ctx.settings, name.as_str())),
        rate_audit: Sampler::default(),
        storage: None,
        grants: None,
        bus: Some(ctx.bus.clone()),
        hook_durations: super::hook_durations(&ctx.metrics, name.as_str()),
        health: Default::default(),
        config_state: Default::default(),
        disable_pending: Default::default(),
        span: span.clone(),
        tasks: Arc::new(crate::runtime::tasks::TaskSet::new(
            name.clone(),
            span.clone(),
        )),
        task_panic: Mutex::new(None),
        start_failed: AtomicBool::new(false),
        own_metrics: Arc::new(services::HostMetrics::new(ctx.metrics.clone())),
        outbound: None,
    };
    if let Some(problem) = problem {
        item.fail(problem);
        return Ok(item);
    }
    let grants = Arc::new(Grants::new(
        name.clone(),
        requested(item.manifest.as_ref()),
        &persisted.granted,
        Some(ctx.pool.clone()),
    ));
    let pending = grants.pending();
    if !pending.is_empty() {
        tracing::warn!(
            extension = %name,
            ?pending,
            "the extension requests permissions that are not granted; its calls needing them \
             fail. Grant them with `solobase extensions enable {name} --grant-all`"
        );
    }
    item.grants = Some(grants.clone());
    let http = Arc::new(crate::runtime::outbound::HostHttp::new(
        name.clone(),
        grants.clone(),
        ctx.settings.outbound_allow(name.as_str()),
        crate::runtime::outbound::extra_roots(ctx.settings.outbound_ca_file.as_deref())?,
        &ctx.metrics,
    )?);
    item.outbound = Some(http.clone());
    let shared = persisted.config.as_ref().map(|(config, _)| config.clone());
    match initialize(
        ctx,
        &name,
        &registration,
        grants,
        shared,
        Own {
            tasks: item.tasks.clone(),
            metrics: item.own_metrics.clone(),
            http,
        },
    )
    .instrument(span)
    .await
    {
        Ok((ext, updater, pool, storage, config)) => {
            item.config_state = crate::runtime::reconfigure::ConfigState::new(config);
            item.pool = Some(pool);
            item.storage = Some(storage);
            let defs = ext.clone().routes();
            let table = RouteTable::build(name.as_str(), defs).map_err(|e| anyhow::anyhow!(e))?;
            item.hooks = ext.hooks();
            item.middleware = ext.middleware();
            item.routes = Some(table);
            item.config = Some(updater);
            item.ext = Some(ext);
        }
        Err(reason) => item.fail(reason),
    }
    Ok(item)
}

type Initialized = (
    Arc<dyn ErasedExtension>,
    ConfigUpdater,
    deadpool_postgres::Pool,
    solobase_sdk::Storage,
    serde_json::Value,
);

/// The services of an extension that its `Loaded` keeps a handle on.
struct Own {
    tasks: Arc<crate::runtime::tasks::TaskSet>,
    metrics: Arc<services::HostMetrics>,
    http: Arc<crate::runtime::outbound::HostHttp>,
}

async fn initialize(
    ctx: &HostContext,
    name: &ExtensionName,
    registration: &Registration,
    grants: Arc<Grants>,
    shared: Option<serde_json::Value>,
    own: Own,
) -> Result<Initialized, String> {
    let limit = Duration::from_secs(ctx.settings.lifecycle_timeout_secs);
    let config = match shared {
        // Changed on some instance: it wins over this instance's file, which is brought up
        // to date.
        Some(config) => {
            let file = crate::runtime::config_file::path(&ctx.settings.config_dir, name.as_str());
            crate::runtime::config_file::check(&file, registration, &config)?;
            if crate::runtime::config_file::read(&file).ok().as_ref() != Some(&config)
                && let Err(e) = crate::runtime::reconfigure::write_value(&file, &config)
            {
                tracing::warn!(error = %e, "cannot bring the configuration file up to date");
            }
            config
        }
        None => crate::runtime::config_file::load(
            &ctx.settings.config_dir,
            name.as_str(),
            registration,
        )?,
    };
    let limits = ctx.settings.resolve(name.as_str()).db;
    let role_config =
        db_role::provision(&ctx.pool, &ctx.pg_config, name, &limits, ctx.role_passwords)
            .await
            .map_err(|e| e.to_string())?;
    let db =
        services::extension_database(role_config, &ctx.tls, name, limits.max_connections as usize)
            .map_err(|e| e.to_string())?;
    let pool = db.pool().clone();
    let migrations = registration.migrations();
    let applied = schema::migrate(&ctx.pool, &pool, name, &migrations, None)
        .await
        .map_err(|e| format!("migration failed: {e}"))?;
    if !applied.is_empty() {
        tracing::info!(?applied, "extension migrations applied");
    }
    let quota = ctx.settings.resolve(name.as_str()).storage_quota_bytes;
    let storage =
        services::extension_storage(&ctx.data_dir, name, quota).map_err(|e| e.to_string())?;
    let storage_handle = storage.clone();
    let sink = Arc::new(services::HostEvents {
        pool: ctx.pool.clone(),
        bus: ctx.bus.clone(),
        grants: grants.clone(),
    });
    let raw = InitContext::assemble(
        name.clone(),
        db,
        storage,
        tracing::Span::current(),
        services::users(&ctx.pool, grants.clone()),
        ConfigHandle::new(config.clone()),
        Events::new(name, sink, ctx.bus.clone()),
        services::files(ctx, name, grants),
        solobase_sdk::Jobs::new(Arc::new(services::HostJobs {
            extension: name.clone(),
            pool: ctx.pool.clone(),
        })),
        solobase_sdk::tasks::Tasks::new(own.tasks),
        solobase_sdk::metrics::Metrics::new(name.as_str(), own.metrics),
        solobase_sdk::outbound::Http::new(own.http),
    );
    let started = Instant::now();
    let initializing = AssertUnwindSafe(registration.initialize(raw)).catch_unwind();
    let (ext, updater) = tokio::time::timeout(limit, initializing)
        .await
        .map_err(|_| format!("initialize did not finish within {} s", limit.as_secs()))?
        .map_err(|payload| {
            format!(
                "initialize panicked: {}",
                crate::runtime::faults::message(payload.as_ref())
            )
        })?
        .map_err(|e| format!("initialize failed: {e}"))?;
    tracing::debug!(
        micros = started.elapsed().as_micros() as u64,
        "extension initialized"
    );
    Ok((ext, updater, pool, storage_handle, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_and_ties_go_by_name() {
        let deps: BTreeMap<String, Vec<String>> = [
            ("c".to_string(), vec!["a".to_string()]),
            ("b".to_string(), vec![]),
            ("a".to_string(), vec!["b".to_string()]),
            ("d".to_string(), vec![]),
            ("x".to_string(), vec!["y".to_string()]),
            ("y".to_string(), vec!["x".to_string()]),
        ]
        .into_iter()
        .collect();
        assert_eq!(dependency_order(&deps), ["b", "d", "a", "c", "x", "y"]);
    }
}

/// Why an extension seen for the first time may be enabled with every permission it requests
/// without an administrator's decision, or `None` when it must wait for one. Only while
/// `extensions.grant_on_first_sight` holds, and only for what the operator trusted in advance:
/// the official tier (shipped with Solobase), an extension listed in `extensions.approved`, or
/// one handed to the host by the program embedding it. Community, custom and test-only
/// extensions never grant themselves anything.
pub(crate) fn first_sight_approval(
    settings: &crate::config::ExtensionsConfig,
    name: &str,
) -> Option<&'static str> {
    if !settings.grant_on_first_sight {
        return None;
    }
    if settings.approved.iter().any(|a| a == name) {
        return Some("first seen; approved in extensions.approved");
    }
    match crate::runtime::discovered().iter().find(|d| d.name == name) {
        Some(d) if d.tier == "official" => {
            Some("first seen; official tier, and extensions.grant_on_first_sight is true")
        }
        Some(_) => None,
        None => Some(
            "first seen; handed to the host by the program embedding it, and \
             extensions.grant_on_first_sight is true",
        ),
    }
}

#[cfg(test)]
mod properties;
