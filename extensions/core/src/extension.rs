//! The [`Extension`] trait, its object-safe twin [`ErasedExtension`] that the host works
//! with, and [`Registration`], the entry the host's generated table holds for each
//! compiled-in extension.

use std::future::Future;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::{ExtensionError, Result};
use crate::event::Event;
use crate::hooks::registry::{Middleware, Table};
use crate::hooks::{DownloadInfo, Flow, Hook, HookSet, Hooks, LoginInfo, SignupInfo, UploadInfo};
use crate::http::{Identity, RequestHead, Response, ResponseHead};
use crate::routes::{RouteDef, Routes};
use crate::services::{BoxFuture, ConfigHandle, Health, InitContext, Job};

/// One versioned database migration: `up` applies it, `down` reverts it exactly. An
/// extension's come from its `migrations/` folder, embedded by its build script (see
/// [`export_extension!`](crate::export_extension)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The version, starting at 1, without gaps.
    pub version: u32,
    /// A short snake_case name, e.g. `create_items`.
    pub name: &'static str,
    /// SQL that applies the migration, run in the extension's schema.
    pub up: &'static str,
    /// SQL that reverts it.
    pub down: &'static str,
}

/// A middleware an extension registers: its hooks run, ordered by priority then extension
/// name, for requests whose path starts with one of `paths` (all requests when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiddlewareSpec {
    /// Identifies the middleware within its extension.
    pub id: String,
    /// Lower runs first on the way in (and last on the way out).
    pub priority: i32,
    /// Path prefixes, e.g. `/api/` or `/ext/notes/`; empty means every path.
    pub paths: Vec<String>,
}

impl MiddlewareSpec {
    /// A middleware `id` with `priority` for every path.
    pub fn new(id: &str, priority: i32) -> Self {
        Self {
            id: id.to_owned(),
            priority,
            paths: Vec::new(),
        }
    }

    /// Restricts it to paths starting with `prefix` (may be called several times).
    pub fn path(mut self, prefix: &str) -> Self {
        self.paths.push(prefix.to_owned());
        self
    }

    /// Whether it applies to `path`.
    pub fn applies_to(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_str()))
    }
}

/// An extension: Rust code compiled into Solobase that behaves like a plugin at run time.
///
/// Only [`Extension::initialize`] is required; every other method has a no-op default, so a
/// minimal extension is a few lines. Hooks and middleware are registered in
/// [`Extension::hooks`] with the methods that run them, as routes are in
/// [`Extension::routes`].
pub trait Extension: Send + Sync + Sized + 'static {
    /// The extension's configuration (`config/extensions/<name>.toml`). Its JSON Schema is
    /// derived and checked by the host; `()` when there is none.
    type Config: DeserializeOwned + JsonSchema + Default + Send + Sync + 'static;

    /// Builds the extension from its services and configuration. Runs once, in dependency
    /// order, before [`Extension::start`].
    fn initialize(ctx: InitContext<Self::Config>) -> impl Future<Output = Result<Self>> + Send;

    /// Starts background work. Runs after every extension is initialized.
    fn start(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Stops background work; runs on shutdown, in reverse dependency order.
    fn stop(&self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Reports health; called periodically with a time limit.
    fn health(&self) -> impl Future<Output = Health> + Send {
        async { Health::healthy() }
    }

    /// Registers routes (mounted under `/ext/<name>/`).
    fn routes(&self, routes: &mut Routes<Self>) {
        let _ = routes;
    }

    /// Registers hooks and middleware, each with the method that runs it (see [`Hooks`]).
    fn hooks(&self, hooks: &mut Hooks<Self>) {
        let _ = hooks;
    }

    /// Runs one of its background jobs (queued with [`crate::Jobs::enqueue`]): `Ok` when done,
    /// an error to have it retried later. Runs on one instance at a time, with a time limit.
    fn run_job(&self, job: &Job) -> impl Future<Output = Result<()>> + Send {
        let _ = job;
        async {
            Err(ExtensionError::internal(
                "this extension queued a job but does not implement run_job",
            ))
        }
    }

    /// A new configuration is about to replace the running one (its file changed, or an
    /// administrator changed it through the API). It has passed the schema check; return an
    /// error to refuse it — the running configuration then stays. Once this returns `Ok`,
    /// [`InitContext::config`]'s handle returns the new one to every later call.
    fn config_changed(&self, new: &Self::Config) -> Result<()> {
        let _ = new;
        Ok(())
    }
}

#[doc(hidden)]
/// The object-safe twin of [`Extension`]: what the host holds for every extension.
/// Implemented for every `Extension`; extension authors never implement it.
#[allow(missing_docs)]
pub trait ErasedExtension: Send + Sync {
    fn start(&self) -> BoxFuture<'_, Result<()>>;
    fn stop(&self) -> BoxFuture<'_, Result<()>>;
    fn health(&self) -> BoxFuture<'_, Health>;
    fn routes(self: Arc<Self>) -> Vec<RouteDef>;
    fn middleware(&self) -> Vec<MiddlewareSpec>;
    /// Runs the inbound half of the middleware at `index` in [`Self::middleware`]'s list.
    fn middleware_request<'a>(&'a self, index: usize, req: &'a mut RequestHead) -> Hook<'a, Flow>;
    /// Runs the outbound half of the middleware at `index` in [`Self::middleware`]'s list.
    fn middleware_response<'a>(
        &'a self,
        index: usize,
        req: &'a RequestHead,
        res: &'a mut ResponseHead,
    ) -> Hook<'a, ()>;
    fn hooks(&self) -> HookSet;
    fn pre_request<'a>(&'a self, req: &'a mut RequestHead) -> Hook<'a, Flow>;
    fn authenticate<'a>(&'a self, req: &'a RequestHead) -> Hook<'a, Result<Option<Identity>>>;
    fn authorize<'a>(&'a self, req: &'a RequestHead) -> Hook<'a, Flow>;
    fn on_error<'a>(
        &'a self,
        req: &'a RequestHead,
        res: &'a ResponseHead,
    ) -> Hook<'a, Option<Response>>;
    fn post_request<'a>(&'a self, req: &'a RequestHead, res: &'a ResponseHead) -> Hook<'a, ()>;
    fn pre_response<'a>(&'a self, req: &'a RequestHead, res: &'a mut ResponseHead) -> Hook<'a, ()>;
    fn post_response<'a>(&'a self, req: &'a RequestHead, res: &'a ResponseHead) -> Hook<'a, ()>;
    fn user_signup<'a>(&'a self, info: &'a SignupInfo) -> BoxFuture<'a, Flow>;
    fn user_login<'a>(&'a self, info: &'a LoginInfo) -> BoxFuture<'a, Flow>;
    fn storage_before_upload<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, Flow>;
    fn storage_after_upload<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, ()>;
    fn storage_before_download<'a>(&'a self, info: &'a DownloadInfo) -> BoxFuture<'a, Flow>;
    fn storage_after_download<'a>(&'a self, info: &'a DownloadInfo) -> BoxFuture<'a, ()>;
    fn on_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, ()>;
    fn config_changed(&self, new: &serde_json::Value) -> Result<()>;
    fn run_job<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<()>>;
}

/// An extension with its registered hooks: what the host holds for it.
#[doc(hidden)]
pub struct Erased<E: Extension> {
    ext: Arc<E>,
    set: HookSet,
    table: Table<E>,
}

impl<E: Extension> std::fmt::Debug for Erased<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Erased")
            .field("hooks", &self.set)
            .finish_non_exhaustive()
    }
}

impl<E: Extension> Erased<E> {
    /// `ext` with the hooks it registers.
    pub fn new(ext: Arc<E>) -> Self {
        let mut hooks = Hooks::new();
        ext.hooks(&mut hooks);
        Self {
            ext,
            set: hooks.set,
            table: hooks.table,
        }
    }
}

/// A registered hook's answer as a boxed future, or `default` when none is registered.
fn boxed<'a, T: Unpin + Send + 'a>(hook: Option<Hook<'a, T>>, default: T) -> BoxFuture<'a, T> {
    Box::pin(hook.unwrap_or_else(|| Hook::ready(default)))
}

impl<E: Extension> ErasedExtension for Erased<E> {
    fn start(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Extension::start(&*self.ext))
    }
    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(Extension::stop(&*self.ext))
    }
    fn health(&self) -> BoxFuture<'_, Health> {
        Box::pin(Extension::health(&*self.ext))
    }
    fn routes(self: Arc<Self>) -> Vec<RouteDef> {
        let mut routes = Routes::new(self.ext.clone());
        Extension::routes(&*self.ext, &mut routes);
        routes.into_defs()
    }
    fn middleware(&self) -> Vec<MiddlewareSpec> {
        self.table
            .middleware
            .iter()
            .map(|m| m.spec.clone())
            .collect()
    }
    // The request-path hooks are forwarded as they are: no allocation for hooks that answer
    // at once.
    fn middleware_request<'a>(&'a self, index: usize, req: &'a mut RequestHead) -> Hook<'a, Flow> {
        match self.table.middleware.get(index) {
            Some(Middleware {
                on_request: Some(f),
                ..
            }) => f(&self.ext, req),
            _ => Flow::Continue.into(),
        }
    }
    fn middleware_response<'a>(
        &'a self,
        index: usize,
        req: &'a RequestHead,
        res: &'a mut ResponseHead,
    ) -> Hook<'a, ()> {
        match self.table.middleware.get(index) {
            Some(Middleware {
                on_response: Some(f),
                ..
            }) => f(&self.ext, req, res),
            _ => ().into(),
        }
    }
    fn hooks(&self) -> HookSet {
        self.set.clone()
    }
    fn pre_request<'a>(&'a self, req: &'a mut RequestHead) -> Hook<'a, Flow> {
        match self.table.pre_request {
            Some(f) => f(&self.ext, req),
            None => Flow::Continue.into(),
        }
    }
    fn authenticate<'a>(&'a self, req: &'a RequestHead) -> Hook<'a, Result<Option<Identity>>> {
        match self.table.authentication {
            Some(f) => f(&self.ext, req),
            None => Ok(None).into(),
        }
    }
    fn authorize<'a>(&'a self, req: &'a RequestHead) -> Hook<'a, Flow> {
        match self.table.authorization {
            Some(f) => f(&self.ext, req),
            None => Flow::Continue.into(),
        }
    }
    fn on_error<'a>(
        &'a self,
        req: &'a RequestHead,
        res: &'a ResponseHead,
    ) -> Hook<'a, Option<Response>> {
        match self.table.error {
            Some(f) => f(&self.ext, req, res),
            None => None.into(),
        }
    }
    fn post_request<'a>(&'a self, req: &'a RequestHead, res: &'a ResponseHead) -> Hook<'a, ()> {
        match self.table.post_request {
            Some(f) => f(&self.ext, req, res),
            None => ().into(),
        }
    }
    fn pre_response<'a>(&'a self, req: &'a RequestHead, res: &'a mut ResponseHead) -> Hook<'a, ()> {
        match self.table.pre_response {
            Some(f) => f(&self.ext, req, res),
            None => ().into(),
        }
    }
    fn post_response<'a>(&'a self, req: &'a RequestHead, res: &'a ResponseHead) -> Hook<'a, ()> {
        match self.table.post_response {
            Some(f) => f(&self.ext, req, res),
            None => ().into(),
        }
    }
    fn user_signup<'a>(&'a self, info: &'a SignupInfo) -> BoxFuture<'a, Flow> {
        boxed(
            self.table.user_signup.map(|f| f(&self.ext, info)),
            Flow::Continue,
        )
    }
    fn user_login<'a>(&'a self, info: &'a LoginInfo) -> BoxFuture<'a, Flow> {
        boxed(
            self.table.user_login.map(|f| f(&self.ext, info)),
            Flow::Continue,
        )
    }
    fn storage_before_upload<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, Flow> {
        boxed(
            self.table.storage_before_upload.map(|f| f(&self.ext, info)),
            Flow::Continue,
        )
    }
    fn storage_after_upload<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, ()> {
        boxed(
            self.table.storage_after_upload.map(|f| f(&self.ext, info)),
            (),
        )
    }
    fn storage_before_download<'a>(&'a self, info: &'a DownloadInfo) -> BoxFuture<'a, Flow> {
        boxed(
            self.table
                .storage_before_download
                .map(|f| f(&self.ext, info)),
            Flow::Continue,
        )
    }
    fn storage_after_download<'a>(&'a self, info: &'a DownloadInfo) -> BoxFuture<'a, ()> {
        boxed(
            self.table
                .storage_after_download
                .map(|f| f(&self.ext, info)),
            (),
        )
    }
    fn on_event<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, ()> {
        boxed(self.table.on_event.map(|f| f(&self.ext, event)), ())
    }
    fn config_changed(&self, new: &serde_json::Value) -> Result<()> {
        Extension::config_changed(&*self.ext, &parse_config::<E::Config>(new)?)
    }
    fn run_job<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<()>> {
        Box::pin(Extension::run_job(&*self.ext, job))
    }
}

#[doc(hidden)]
/// Replaces the running configuration from JSON; fails (changing nothing) when the JSON does
/// not fit the extension's `Config` type.
pub type ConfigUpdater = Box<dyn Fn(&serde_json::Value) -> Result<()> + Send + Sync>;

#[doc(hidden)]
/// A started extension and the updater of its configuration.
pub type Initialized = (Arc<dyn ErasedExtension>, ConfigUpdater);

#[doc(hidden)]
/// What [`Registration::initialize`] gets: the services, with the configuration still as JSON.
pub type RawInit = InitContext<serde_json::Value>;

/// A compiled-in extension, as listed in the host's generated registration table. Made by
/// [`export_extension!`](crate::export_extension).
#[derive(Clone, Copy)]
pub struct Registration {
    /// The text of the crate's `extension.toml`.
    pub manifest: &'static str,
    /// The crate's `Cargo.toml` version (checked against the manifest's).
    pub crate_version: &'static str,
    initialize: fn(RawInit) -> BoxFuture<'static, Result<Initialized>>,
    config_schema: fn() -> serde_json::Value,
    check_config: fn(&serde_json::Value) -> Result<()>,
    migrations: &'static [Migration],
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("crate_version", &self.crate_version)
            .finish_non_exhaustive()
    }
}

/// Parses a configuration; an absent one (`null` or `{}`) is the type's default.
fn parse_config<C: DeserializeOwned + Default>(value: &serde_json::Value) -> Result<C> {
    let empty = value.is_null() || value.as_object().is_some_and(|o| o.is_empty());
    if empty {
        return Ok(C::default());
    }
    serde_json::from_value(value.clone()).map_err(|e| ExtensionError::Config(e.to_string()))
}

impl Registration {
    /// The registration of extension type `E`; `manifest` is its `extension.toml`.
    pub fn new<E: Extension>(manifest: &'static str, crate_version: &'static str) -> Self {
        Self {
            manifest,
            crate_version,
            initialize: |raw| {
                Box::pin(async move {
                    let config: E::Config = parse_config(&raw.config.get())?;
                    let handle = ConfigHandle::new(config);
                    let updater_handle = handle.clone();
                    let updater: ConfigUpdater = Box::new(move |value| {
                        updater_handle.replace(parse_config::<E::Config>(value)?);
                        Ok(())
                    });
                    let ctx = InitContext::assemble(
                        raw.name,
                        raw.db,
                        raw.storage,
                        raw.log,
                        raw.users,
                        handle,
                        raw.events,
                        raw.files,
                        raw.jobs,
                        raw.tasks,
                        raw.metrics,
                        raw.http,
                    );
                    let ext = E::initialize(ctx).await?;
                    Ok((
                        Arc::new(Erased::new(Arc::new(ext))) as Arc<dyn ErasedExtension>,
                        updater,
                    ))
                })
            },
            config_schema: || {
                serde_json::to_value(schemars::schema_for!(E::Config)).unwrap_or_default()
            },
            check_config: |value| parse_config::<E::Config>(value).map(|_| ()),
            migrations: &[],
        }
    }

    /// Initializes the extension; returns it and the updater for its configuration.
    pub fn initialize(&self, raw: RawInit) -> BoxFuture<'static, Result<Initialized>> {
        (self.initialize)(raw)
    }

    /// The JSON Schema of the extension's configuration.
    pub fn config_schema(&self) -> serde_json::Value {
        (self.config_schema)()
    }

    /// Checks a configuration against the extension's `Config` type.
    pub fn check_config(&self, value: &serde_json::Value) -> Result<()> {
        (self.check_config)(value)
    }

    /// The extension's migrations, oldest first.
    pub fn migrations(&self) -> Vec<Migration> {
        self.migrations.to_vec()
    }

    /// The same registration with `migrations` (oldest first). [`export_extension!`]
    /// gives it the crate's `migrations/` folder; for extensions made in tests.
    ///
    /// [`export_extension!`]: crate::export_extension
    pub fn with_migrations(mut self, migrations: &'static [Migration]) -> Self {
        self.migrations = migrations;
        self
    }
}

/// Exports an extension type so that the host can compile it in: defines
/// `pub fn solobase_extension() -> Registration`, with the crate's `extension.toml` and the
/// migrations of its `migrations/` folder. The folder is read by the crate's build script,
/// which every extension crate has (`solobase extensions generate` writes it):
///
/// ```ignore
/// // build.rs ([build-dependencies] solobase-manifest)
/// fn main() {
///     solobase_manifest::migrations::build();
/// }
/// // src/lib.rs
/// solobase_sdk::export_extension!(Notes);
/// ```
#[macro_export]
macro_rules! export_extension {
    ($ty:ty) => {
        /// This crate's registration, called by the Solobase host's generated table.
        pub fn solobase_extension() -> $crate::Registration {
            $crate::Registration::new::<$ty>(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/extension.toml")),
                env!("CARGO_PKG_VERSION"),
            )
            // Written by the crate's build.rs (`solobase_manifest::migrations::build()`).
            .with_migrations(include!(concat!(
                env!("OUT_DIR"),
                "/solobase_migrations.rs"
            )))
        }
    };
}
