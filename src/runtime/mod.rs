//! The extension runtime: everything between the registration table that `build.rs`
//! generates and the running extensions.
//!
//! - [`host::ExtensionHost`] loads the compiled-in extensions in dependency order (migrate,
//!   initialize, start — the per-extension steps are in `loader`), keeps their enabled/failed
//!   state (persisted in `solobase.extensions`), and stops them in reverse order;
//! - [`services`] implements the services extensions receive;
//! - [`db_role`] gives each extension its PostgreSQL role, owner of its schema and nothing
//!   else; [`schema`] applies and rolls back each extension's migrations, as its role;
//! - [`control`] is what an administrator changes (enable, disable, grants), [`state`] and
//!   `sync` keep every instance's view equal to the database's.
//!
//! The HTTP side — the pipeline around every request, `/ext/<name>/…` dispatch — is
//! `crate::http::ext`; the command line's is `crate::cli`. Only this module knows the
//! registration table.

pub mod config_file;
pub mod control;
pub mod db_role;
pub(crate) mod faults;
pub(crate) mod grants;
pub(crate) mod health;
pub mod host;
pub(crate) mod jobs;
pub mod limits;
pub(crate) mod order;
pub(crate) mod outbound;
pub mod reconfigure;
pub mod schema;
pub mod services;
pub(crate) mod state;
mod sync;
pub(crate) mod tasks;
pub(crate) mod watchdog;

/// An extension found in the source tree when this binary was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Discovered {
    pub(crate) name: &'static str,
    /// `official`, `community`, `custom`, or `test` (the test suite's own).
    pub(crate) tier: &'static str,
    pub(crate) version: &'static str,
    pub(crate) description: &'static str,
    /// Its folder, relative to the source tree's root.
    pub(crate) dir: &'static str,
    /// The Cargo feature that compiles it in.
    pub(crate) feature: &'static str,
    /// Whether this binary contains it.
    pub(crate) compiled: bool,
}

mod generated {
    use super::Discovered;
    include!(concat!(env!("OUT_DIR"), "/generated.rs"));
}

/// Every extension discovered at build time, compiled in or not.
pub(crate) fn discovered() -> &'static [Discovered] {
    generated::DISCOVERED
}

/// The registrations of the compiled-in extensions.
pub fn registrations() -> Vec<solobase_sdk::Registration> {
    generated::registrations()
}

/// The test-only extensions (`tests/extensions/`) compiled into this binary: with any, a
/// server starts only when the test suite allows it ([`crate::config::Config::allow_test_extensions`]).
pub(crate) fn test_only_compiled() -> Vec<&'static str> {
    discovered()
        .iter()
        .filter(|d| d.compiled && d.tier == "test")
        .map(|d| d.name)
        .collect()
}
