//! Replacing a running extension's configuration — from its file (watched by
//! [`crate::reload`]) or through the API (`PUT /api/v1/extensions/{name}/config`, guarded by
//! `If-Match`). The new configuration is checked against the extension's schema, offered to
//! the extension (`Extension::config_changed`, which may refuse), then swapped in atomically:
//! requests already running keep the configuration they read, later ones see the new one. A
//! refused or invalid configuration changes nothing; the failure is logged, counted, audited
//! and shown in status.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::config_file;
use super::host::{ExtensionHost, Loaded};
use crate::audit::{self, Actor, Entry, Outcome};

/// An extension's configuration as it runs now.
#[derive(Debug, Default)]
pub struct ConfigState {
    inner: Mutex<Inner>,
    /// Serializes changes, so that a compare (`If-Match`) and the swap are one step.
    pub(super) changing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Inner {
    current: Value,
    etag: String,
    last_error: Option<String>,
    failures: u64,
}

/// The entity tag of a configuration: a digest of its JSON.
pub fn etag(value: &Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(value).unwrap_or_default());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl ConfigState {
    /// Starts at `value`.
    pub fn new(value: Value) -> Self {
        let state = Self::default();
        state.set(value);
        state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, value: Value) {
        let mut inner = self.lock();
        inner.etag = etag(&value);
        inner.current = value;
        inner.last_error = None;
    }

    fn failed(&self, error: &str) {
        let mut inner = self.lock();
        inner.last_error = Some(error.to_owned());
        inner.failures += 1;
    }

    /// The running configuration and its entity tag.
    pub fn current(&self) -> (Value, String) {
        let inner = self.lock();
        (inner.current.clone(), inner.etag.clone())
    }

    /// For status pages: the entity tag, the last failed change, and how many failed.
    pub fn status(&self) -> Value {
        let inner = self.lock();
        json!({"etag": inner.etag, "last_error": inner.last_error, "failed_changes": inner.failures})
    }
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration does not fit the schema or type.
    #[error("{0}")]
    Invalid(String),
    /// The extension refused it.
    #[error("the extension refused the configuration: {0}")]
    Refused(String),
    /// `If-Match` named another version.
    #[error("the configuration changed meanwhile (it is now {current:?}); read it again")]
    Stale { current: String },
    /// It is not running, or writing the file failed.
    #[error("{0}")]
    Unavailable(String),
}

/// Where a change came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// This instance's file changed.
    File,
    /// An administrator, through this instance's API.
    Api(Actor),
    /// Another instance (through `solobase.extension_config`).
    Shared,
}

impl ExtensionHost {
    /// Replaces `name`'s configuration with `value`. With `if_match`, only when the running
    /// one has that entity tag. With `write`, the file is rewritten too (an API change), after
    /// the checks and before the swap. Returns the new entity tag.
    pub async fn reconfigure(
        &self,
        name: &str,
        value: Value,
        if_match: Option<&str>,
        write: bool,
        source: Source,
    ) -> Result<String, ConfigError> {
        let l = self
            .get(name)
            .ok_or_else(|| ConfigError::Unavailable(format!("no extension {name}")))?;
        let _changing = l.config_state.changing.lock().await;
        let (_, current) = l.config_state.current();
        if let Some(expected) = if_match
            && expected != current
        {
            return Err(ConfigError::Stale { current });
        }
        if etag(&value) == current {
            return Ok(current);
        }
        let file = config_file::path(self.config_dir(), name);
        let outcome = apply(l, &file, &value, write);
        let actor = match &source {
            Source::File | Source::Shared => Actor::System,
            Source::Api(actor) => actor.clone(),
        };
        let via = match source {
            Source::File => "file",
            Source::Api(_) => "api",
            Source::Shared => "another instance",
        };
        let entry = match &outcome {
            Ok(()) => {
                // Every other instance applies it too (a shared change is already shared).
                if !matches!(source, Source::Shared)
                    && let Err(e) =
                        super::state::share_config(self.pool(), name, &value, &etag(&value)).await
                {
                    tracing::error!(extension = name, error = %e, "cannot share the configuration with the other instances");
                }
                l.config_state.set(value);
                tracing::info!(extension = name, via, "configuration replaced");
                Entry::new(actor, "extension.config", Outcome::Ok)
                    .detail(json!({"via": via, "etag": l.config_state.current().1}))
            }
            Err(e) => {
                l.config_state.failed(&e.to_string());
                tracing::error!(extension = name, via, error = %e, "configuration not replaced: the running one stays");
                Entry::new(actor, "extension.config", Outcome::Failed)
                    .detail(json!({"via": via, "error": e.to_string()}))
            }
        };
        // A shared change was audited where it was made.
        if !(matches!(source, Source::Shared) && outcome.is_ok()) {
            audit::record_or_log(self.pool(), entry.extension(name)).await;
        }
        outcome.map(|()| l.config_state.current().1)
    }

    /// Re-reads `name`'s file and applies it (see [`ExtensionHost::reconfigure`]).
    pub async fn reload_config_file(&self, name: &str) {
        let file = config_file::path(self.config_dir(), name);
        match config_file::read(&file) {
            Ok(value) => {
                let _ = self
                    .reconfigure(name, value, None, false, Source::File)
                    .await;
            }
            Err(e) => {
                if let Some(l) = self.get(name) {
                    l.config_state.failed(&e);
                    tracing::error!(extension = name, error = %e, "configuration not replaced: the running one stays");
                    let entry = Entry::new(Actor::System, "extension.config", Outcome::Failed)
                        .extension(name)
                        .detail(json!({"via": "file", "error": e}));
                    audit::record_or_log(self.pool(), entry).await;
                }
            }
        }
    }
}

/// Checks, offers, (writes,) swaps.
fn apply(l: &Loaded, file: &Path, value: &Value, write: bool) -> Result<(), ConfigError> {
    let (Some(ext), Some(updater)) = (l.ext(), l.config.as_ref()) else {
        return Err(ConfigError::Unavailable(format!(
            "{} is not running; its configuration is read when it starts",
            l.name
        )));
    };
    config_file::check(file, &l.registration, value).map_err(ConfigError::Invalid)?;
    match std::panic::catch_unwind(AssertUnwindSafe(|| ext.config_changed(value))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ConfigError::Refused(e.to_string())),
        Err(payload) => {
            l.panicked("config_changed", payload.as_ref());
            return Err(ConfigError::Refused("config_changed panicked".into()));
        }
    }
    if write {
        write_file(file, value)?;
    }
    updater(value).map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// Writes `value` as TOML to `file`, atomically (a temporary file renamed into place).
pub(super) fn write_file(file: &Path, value: &Value) -> Result<(), ConfigError> {
    let text = if value.is_null() {
        String::new()
    } else {
        toml::to_string(value).map_err(|e| {
            ConfigError::Invalid(format!("the configuration cannot be written as TOML: {e}"))
        })?
    };
    let failed = |e: std::io::Error| {
        ConfigError::Unavailable(format!("cannot write {}: {e}", file.display()))
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let temporary = file.with_extension("toml.tmp");
    std::fs::write(&temporary, text).map_err(failed)?;
    std::fs::rename(&temporary, file).map_err(failed)
}
