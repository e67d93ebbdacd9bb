//! # The Solobase extension SDK
//!
//! An extension is a Rust crate compiled into the Solobase binary and chosen at build time
//! with a Cargo feature, that still behaves like a plugin at run time: it can be listed,
//! enabled, disabled and configured while the server runs. This crate is the only one an
//! extension depends on.
//!
//! ## A complete extension
//!
//! `extensions/custom/hello/extension.toml`:
//!
//! ```toml
//! [extension]
//! name = "hello"
//! version = "0.1.0"
//! description = "Says hello"
//! host = "^0.1"
//! ```
//!
//! `extensions/custom/hello/src/lib.rs`:
//!
//! ```
//! use std::sync::Arc;
//! use solobase_sdk::prelude::*;
//!
//! pub struct Hello;
//!
//! impl Extension for Hello {
//!     type Config = ();
//!
//!     async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
//!         Ok(Hello)
//!     }
//!
//!     fn routes(&self, routes: &mut Routes<Self>) {
//!         routes.get("/", greet).public(); // GET /ext/hello/
//!     }
//! }
//!
//! async fn greet(_ext: Arc<Hello>, _req: Request) -> Result<Response> {
//!     Ok(Response::json(&solobase_sdk::serde_json::json!({"hello": "world"})))
//! }
//!
//! # #[cfg(any())]
//! solobase_sdk::export_extension!(Hello);
//! ```
//!
//! ## What an extension can do
//!
//! - **Routes** ([`Routes`]) under `/ext/<name>/`, each with an [`Access`] rule.
//! - **Hooks and middleware** ([`Hooks`], registered in `Extension::hooks` with the methods
//!   that run them): seven pipeline hooks around every request, hooks on sign-up, login,
//!   uploads and downloads, subscriptions to system events, and priority-ordered,
//!   path-scoped middleware ([`MiddlewareSpec`]).
//! - **Services** ([`InitContext`]): its own database schema, storage directory, logger,
//!   read-only user lookups, typed configuration and the event bus.
//! - **Lifecycle**: `initialize`, `start`, `stop` and `health`.
//! - **Migrations** ([`Migration`]): the files of the crate's `migrations/` folder, each with
//!   a down script, embedded by its build script.
//! - **Outbound HTTP** ([`outbound`], `ctx.http`) through the host's guard.
//!
//! The developer guide (`extensions/README.md` in the Solobase repository) walks through all
//! of it; the [`testing`] module (feature `testing`) runs extensions in unit tests.

#![warn(missing_docs)]

pub mod error;
pub mod event;
pub mod extension;
pub mod hooks;
#[doc(hidden)]
pub mod host;
pub mod http;
/// The manifest, `extension.toml` (the `solobase-manifest` crate).
pub use solobase_manifest as manifest;
pub mod metrics;
pub mod outbound;
pub mod routes;
pub mod services;
pub mod storage;
pub mod tasks;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use error::{ExtensionError, Result};
pub use event::{Event, EventType};
pub use extension::{Extension, MiddlewareSpec, Migration, Registration};
pub use hooks::{Flow, Hook, HookPoint, Hooks};
pub use http::{Identity, Request, RequestHead, Response, ResponseHead, Role};
pub use manifest::{ExtensionName, Manifest, Permission, Tier};
pub use routes::{Access, Routes};
pub use services::{
    ConfigHandle, Database, EventSink, Events, FileStore, Files, Health, HealthStatus, InitContext,
    Job, JobQueue, Jobs, OutboxPosition, StoredFile, Subscription, UserDirectory, UserInfo, Users,
};
pub use storage::Storage;

/// Re-exported so that extensions use the same versions as the host.
pub use {bytes, schemars, serde_json, tokio_postgres, tracing};

/// The names most extensions need: `use solobase_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::hooks::{DownloadInfo, LoginInfo, SignupInfo, UploadInfo};
    pub use crate::http::{
        HeaderMap, HeaderValue, Identity, Method, Request, RequestHead, Response, ResponseHead,
        Role, StatusCode,
    };
    pub use crate::{
        Access, Event, Extension, ExtensionError, Flow, Health, Hook, HookPoint, Hooks,
        InitContext, Job, MiddlewareSpec, Migration, Result, Routes,
    };
}
