//! The extension runtime: everything between the registration table that `build.rs`
//! generates and the running extensions.
//!
//! - [`host::ExtensionHost`] loads the compiled-in extensions in dependency order (migrate,
//!   initialize, start — the per-extension steps are in `loader`), keeps their enabled/failed
//!   state (persisted in `solobase.extensions`), and stops them in reverse order;
//! - [`pipeline`] runs middleware and the pipeline hooks around every request;
//! - [`dispatch`] serves `/ext/<name>/…` from each extension's route table;
//! - [`services`] implements the services extensions receive;
//! - [`roles`] gives each extension its PostgreSQL role, owner of its schema and nothing else;
//! - [`migrate`] applies and rolls back each extension's migrations, as its role.
//!
//! Only this module knows the registration table.

pub mod admin;
pub mod api;
pub mod cli;
mod cli_config;
mod cli_status;
pub mod config_file;
pub mod convert;
pub mod dispatch;
pub mod faults;
pub mod grants;
pub mod health;
pub mod host;
mod jobs;
pub mod limits;
mod loader;
pub mod migrate;
pub mod order;
pub mod pipeline;
pub mod reconfigure;
pub mod roles;
pub mod services;
pub mod state;
mod sync;

/// An extension found in the source tree when this binary was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovered {
    pub name: &'static str,
    /// `official`, `community`, `custom`, or `test` (the test suite's own).
    pub tier: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    /// Its folder, relative to the source tree's root.
    pub dir: &'static str,
    /// The Cargo feature that compiles it in.
    pub feature: &'static str,
    /// Whether this binary contains it.
    pub compiled: bool,
}

mod generated {
    use super::Discovered;
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}

/// Every extension discovered at build time, compiled in or not.
pub fn discovered() -> &'static [Discovered] {
    generated::DISCOVERED
}

/// The registrations of the compiled-in extensions.
pub fn registrations() -> Vec<solobase_sdk::Registration> {
    generated::registrations()
}

/// The test-only extensions (`tests/extensions/`) compiled into this binary: with any, a
/// server starts only when the test suite allows it ([`crate::config::Config::allow_test_extensions`]).
pub fn test_only_compiled() -> Vec<&'static str> {
    discovered()
        .iter()
        .filter(|d| d.compiled && d.tier == "test")
        .map(|d| d.name)
        .collect()
}
