//! The host: accounts, storage, events, health, metrics, the API document, the dashboard,
//! the binary as a user runs it, hostile clients.

mod audit;
mod auth;
pub(crate) mod cli;
// The admin dashboard; its browser test uses the probe extension: run with --all-features.
mod dashboard;
// PostgreSQL over TLS: a cluster with ssl = on, the sslmodes, a whole server on it.
mod database_tls;
mod events;
// The first run: the printed setup link, in the API and in a real browser.
mod first_run;
mod health;
// Runs the binary with the analytics and webhooks extensions (the default features).
#[cfg(all(feature = "analytics", feature = "webhooks"))]
mod hostile;
// Drives the probe extension's routes: run with --all-features.
#[cfg(feature = "probe")]
mod metrics;
mod monitoring;
mod openapi;
// The client's address behind real nginx; limits on the probe's routes: run with --all-features.
#[cfg(feature = "probe")]
mod proxies;
mod storage;
// Attacks on stored objects; a few go through the probe extension: run with --all-features.
mod storage_access;
// The security headers of every answer and every HTML page, host's and extensions'.
mod security_headers;
// Ending sessions: logout, revocation, password changes, disabled accounts.
mod sessions;
// Password guessing and hash flooding against the login and sign-up routes.
mod throttle;
// The server speaking https itself: ALPN, certificate renewal under load, bad files.
pub(crate) mod tls;
// Retention of the outbox and the audit log, and the audit log's append-only trigger.
mod retention;
