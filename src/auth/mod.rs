//! Users, passwords and login tokens.
//!
//! - [`cache`]: sessions and role permissions kept in memory, forgotten at every change;
//! - [`domain`]: `Email`, `Password` and `Role` — values that can only exist when valid;
//! - [`password`]: argon2id hashing and verification;
//! - [`permissions`]: named permissions held by the user role;
//! - [`setup`]: the first run's one-time link that creates the first administrator;
//! - [`sessions`]: logging out, revoking tokens, password changes, disabling accounts;
//! - [`throttle`]: per-client and per-account limits on guessing, and the hashing slots;
//! - [`token`]: opaque bearer tokens (random, stored only as SHA-256);
//! - [`users`]: the `solobase.users` and `solobase.sessions` tables.

pub(crate) mod cache;
pub(crate) mod domain;
pub(crate) mod password;
pub(crate) mod permissions;
pub(crate) mod sessions;
pub mod setup;
pub(crate) mod throttle;
pub mod token;
pub mod users;

pub use domain::{Email, Password, Role};
pub(crate) use users::User;
