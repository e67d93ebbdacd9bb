//! Integration tests: one binary, a folder per part of Solobase, a module per feature. Every
//! test gets its own database on a real PostgreSQL (see `helpers`) and talks to the server
//! through a real socket. Set TEST_LOG=1 to see the servers' logs.
//!
//! - `server/` — the host: accounts, storage, events, health, metrics, the API document, the
//!   dashboard, the binary as a user runs it, hostile clients;
//! - `runtime/` — the extension runtime: lifecycle, hooks, faults, grants, isolation, several
//!   instances, reloads, properties, attacks on the trust boundaries;
//! - `shipped/` — the shipped extensions (analytics, webhooks);
//! - `tools/` — the developer tools (generate, package, install).

#![allow(clippy::unwrap_used)]
// Tests connect directly to inspect what the server wrote.
#![allow(clippy::disallowed_methods)]

// Drives headless Chromium through the DevTools protocol for the dashboards' tests.
#[cfg(feature = "probe")]
mod cdp;
mod helpers;
mod runtime;
mod server;
mod shipped;
mod tools;
