//! Users, passwords and login tokens.
//!
//! - [`domain`]: `Email`, `Password` and `Role` — values that can only exist when valid;
//! - [`password`]: argon2id hashing and verification;
//! - [`permissions`]: named permissions held by the user role;
//! - [`token`]: opaque bearer tokens (random, stored only as SHA-256);
//! - [`users`]: the `solobase.users` and `solobase.sessions` tables.

pub(crate) mod domain;
pub(crate) mod password;
pub(crate) mod permissions;
pub mod token;
pub mod users;

pub use domain::{Email, Password, Role};
pub(crate) use users::User;
