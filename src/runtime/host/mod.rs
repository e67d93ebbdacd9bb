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
use solobase_sdk::host::{ErasedExtension, EventBus, HookSet};
use solobase_sdk::routes::RouteTable;
use solobase_sdk::{
    Event, EventType, ExtensionName, Flow, Hook, Manifest, MiddlewareSpec, Registration, Response,
};
use tokio::sync::watch;
use tracing::Instrument;

use crate::audit;
use crate::config::ExtensionsConfig;
use crate::runtime::faults::{Breaker, PanicLog, Sampler, Verdict};
use crate::runtime::limits::{Client, Limited, Live};
use crate::runtime::state;

mod hooks;
mod lifecycle;
mod loaded;
pub(crate) mod loader;
mod stats;
mod status;
mod tasks;

use hooks::PIPELINE;
pub use hooks::{Begun, HookCall, HookOutcome, panicked_response, settle};
pub(crate) use loaded::Loaded;
pub use stats::{SLOTS, Slot, Stats, hook_durations, time_this_request};

/// What the host gives the extension runtime.
#[derive(Debug, Clone)]
pub(crate) struct HostContext {
    pub(crate) pool: Pool,
    /// Connection settings of the host database (extension pools derive from them).
    pub(crate) pg_config: tokio_postgres::Config,
    /// How connections to it are made (TLS), for extension pools and listeners alike.
    pub(crate) tls: crate::db::tls::DbTls,
    pub(crate) data_dir: PathBuf,
    pub(crate) bus: EventBus,
    pub(crate) settings: ExtensionsConfig,
    /// Whether the database authenticates by password (an external one): extension roles
    /// then get theirs set.
    pub(crate) role_passwords: bool,
    /// The host's file storage, and the largest file it takes.
    pub(crate) storage: crate::storage::FileStore,
    pub(crate) max_upload_bytes: u64,
    /// Where hook durations are recorded.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

/// Which extensions were active when a request began (see [`ExtensionHost::active_now`]).
#[derive(Debug, Clone)]
pub(crate) struct ActiveSet(smallvec::SmallVec<[bool; 16]>);

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
    middleware_order: Vec<(usize, usize, MiddlewareSpec)>,
    pool: Pool,
    bus: EventBus,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    settings: ExtensionsConfig,
    /// Held while extensions are started or stopped (`converge`), so that two re-reads never
    /// start one twice.
    converging: tokio::sync::Mutex<()>,
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

impl ExtensionHost {
    /// This instance's name: host name, process id and a random part (several instances may
    /// share a process, in tests).
    pub(crate) fn instance(&self) -> &str {
        &self.instance
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
        grant: crate::runtime::control::Grant,
        actor: &audit::Actor,
    ) -> Result<crate::runtime::control::Permissions, crate::runtime::control::AdminError> {
        let requested = self.requested(name);
        let permissions =
            crate::runtime::control::enable(&self.pool, name, &requested, grant, actor).await?;
        self.resync().await?;
        Ok(permissions)
    }

    /// Disables `name` on every instance, and here at once.
    pub async fn disable(
        &self,
        name: &str,
        actor: &audit::Actor,
    ) -> Result<(), crate::runtime::control::AdminError> {
        crate::runtime::control::disable(&self.pool, name, actor).await?;
        self.resync().await?;
        Ok(())
    }

    /// Revokes `permissions` from `name` on every instance, and here at once.
    pub(crate) async fn revoke(
        &self,
        name: &str,
        permissions: &[String],
        actor: &audit::Actor,
    ) -> Result<crate::runtime::control::Permissions, crate::runtime::control::AdminError> {
        let requested = self.requested(name);
        let after =
            crate::runtime::control::revoke(&self.pool, name, &requested, permissions, actor)
                .await?;
        self.resync().await?;
        Ok(after)
    }

    /// The runtime's settings as it started.
    pub(crate) fn settings(&self) -> &ExtensionsConfig {
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
    pub(crate) fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Changes to `true` when the host stops: background tasks end then.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// What `name`'s manifest requests.
    fn requested(&self, name: &str) -> Vec<String> {
        self.get(name)
            .and_then(|l| l.grants.as_ref())
            .map(|g| g.requested().to_vec())
            .unwrap_or_default()
    }

    /// Active extensions with a hook at `point`, in hook order.
    pub(crate) fn hooked(&self, point: HookPoint) -> impl Iterator<Item = &Arc<Loaded>> {
        self.hook_order[point as usize]
            .iter()
            .map(|&i| &self.loaded[i])
            .filter(|l| l.is_active())
    }

    /// Whether any extension of `active` takes part in the request pipeline (a pipeline
    /// hook, or middleware for `path`).
    pub(crate) fn pipeline_active(&self, path: &str, active: &ActiveSet) -> bool {
        self.pipeline_members.iter().any(|&i| {
            let l = &self.loaded[i];
            active.0[i]
                && (l.hooks.points().iter().any(|(p, _)| PIPELINE.contains(p))
                    || l.middleware.iter().any(|m| m.applies_to(path)))
        })
    }

    /// Which extensions are active now: taken once per request, so that the request sees one
    /// consistent set and each later check is a plain read.
    pub(crate) fn active_now(&self) -> ActiveSet {
        ActiveSet(self.loaded.iter().map(|l| l.is_active()).collect())
    }

    /// The extensions of `active` with a hook at `point`, in hook order.
    pub(crate) fn hooked_in<'a>(
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
    pub(crate) fn has_hooks_in(&self, point: HookPoint, active: &ActiveSet) -> bool {
        self.hook_order[point as usize].iter().any(|&i| active.0[i])
    }

    /// The middleware of `active`, in order: each with its position in its extension's list.
    pub(crate) fn middleware_in<'a>(
        &'a self,
        active: &'a ActiveSet,
    ) -> impl Iterator<Item = (&'a Arc<Loaded>, usize, &'a MiddlewareSpec)> {
        self.middleware_order
            .iter()
            .filter(|(i, ..)| active.0[*i])
            .map(|(i, declared, spec)| (&self.loaded[*i], *declared, spec))
    }

    /// The largest body extension `name`'s routes accept.
    pub(crate) fn max_body_bytes(&self, name: &str) -> usize {
        self.settings.resolve(name).max_body_bytes
    }
}
