//! Integration tests: one binary, a module per feature. Every test gets its own database on a
//! real PostgreSQL (see `helpers`) and talks to the server through a real socket.
//! Set TEST_LOG=1 to see the servers' logs.

#![allow(clippy::unwrap_used)]
// Tests connect directly to inspect what the server wrote.
#![allow(clippy::disallowed_methods)]

// The analytics extension; its browser test needs the probe feature's harness.
mod analytics;
mod audit;
mod auth;
// Drives headless Chromium through the DevTools protocol for the dashboard's test.
#[cfg(feature = "probe")]
mod cdp;
mod cli;
// The admin dashboard; its browser test uses the probe extension: run with --all-features.
mod dashboard;
mod events;
// Needs the test-only `probe` extension: run with --all-features.
#[cfg(feature = "probe")]
mod extensions;
mod faults;
// Grants the probe extension's permissions: run with --all-features.
#[cfg(feature = "probe")]
mod grants;
mod health;
mod helpers;
// Runs the binary with the analytics and webhooks extensions (the default features).
#[cfg(all(feature = "analytics", feature = "webhooks"))]
mod hostile;
// Uses the probe and webhooks extensions' roles: run with --all-features.
#[cfg(feature = "probe")]
mod isolation;
// Three instances of the probe extension's host: run with --all-features.
#[cfg(feature = "probe")]
mod instances;
mod lifecycle;
// Operates the probe extension from the command line: run with --all-features.
#[cfg(feature = "probe")]
mod operate;
mod packages;
// Property tests; the migrations' one reuses `isolation`'s roles: run with --all-features.
#[cfg(feature = "probe")]
mod properties;
mod scaffold;
// Attacks on the trust boundaries; most use the probe extension: run with --all-features.
mod security;
// Ending sessions: logout, revocation, password changes, disabled accounts.
mod sessions;
// Drives the probe extension's routes: run with --all-features.
#[cfg(feature = "probe")]
mod metrics;
mod monitoring;
mod openapi;
// Reads the probe extension's limits: run with --all-features.
#[cfg(feature = "probe")]
mod reload;
mod storage;
// Password guessing and hash flooding against the login and sign-up routes.
mod throttle;
#[cfg(feature = "webhooks")]
mod webhooks;
