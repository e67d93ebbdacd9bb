//! The extension runtime: lifecycle, hooks, faults, grants, isolation, several instances,
//! reloads, properties, attacks on the trust boundaries.

// Needs the test-only `probe` extension: run with --all-features.
#[cfg(feature = "probe")]
mod extensions;
mod faults;
// Grants the probe extension's permissions: run with --all-features.
#[cfg(feature = "probe")]
mod grants;
// Three instances of the probe extension's host: run with --all-features.
#[cfg(feature = "probe")]
mod instances;
// Uses the probe and webhooks extensions' roles: run with --all-features.
#[cfg(feature = "probe")]
pub(crate) mod isolation;
mod lifecycle;
// Operates the probe extension from the command line: run with --all-features.
#[cfg(feature = "probe")]
mod operate;
// Property tests; the migrations' one reuses `isolation`'s roles: run with --all-features.
#[cfg(feature = "probe")]
mod properties;
// Reads the probe extension's limits: run with --all-features.
#[cfg(feature = "probe")]
mod reload;
// Attacks on the trust boundaries; most use the probe extension: run with --all-features.
mod security;
// Disable means stopped, on the probe extension's tasks: run with --all-features.
#[cfg(feature = "probe")]
mod stopping;
// Attacks on the extension roles' hardening from inside: the role's own SQL.
mod hostile;
