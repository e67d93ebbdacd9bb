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
    /// A shared configuration this instance could not apply: not retried until it changes.
    refused_shared: Option<String>,
}

/// The entity tag of a configuration: a digest of its JSON. No file (`null`) and an empty one
/// (`{}`) both mean the defaults, and have one tag.
pub fn etag(value: &Value) -> String {
    let empty = Value::Object(Default::default());
    let value = if value.is_null() { &empty } else { value };
    let digest = Sha256::digest(serde_json::to_vec(value).unwrap_or_default());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl ConfigState {
    /// Starts at `value`.
    pub(crate) fn new(value: Value) -> Self {
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

    /// Whether the shared configuration `etag` already failed here.
    pub(crate) fn refused_shared(&self, etag: &str) -> bool {
        self.lock().refused_shared.as_deref() == Some(etag)
    }

    /// The running configuration and its entity tag.
    pub fn current(&self) -> (Value, String) {
        let inner = self.lock();
        (inner.current.clone(), inner.etag.clone())
    }

    /// For status pages: the entity tag, the last failed change, and how many failed.
    pub(crate) fn status(&self) -> Value {
        let inner = self.lock();
        json!({"etag": inner.etag, "last_error": inner.last_error, "failed_changes": inner.failures})
    }
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
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
pub(crate) enum Source {
    /// This instance's file changed.
    File,
    /// An administrator, through this instance's API.
    Api(Actor),
    /// Another instance (through `solobase.extension_config`).
    Shared,
}

/// What to replace the configuration with.
enum Proposal {
    Value(Value),
    /// The extension's file, read once the change lock is held (so that an older write
    /// cannot be read and applied after a newer one).
    File,
    /// The shared configuration (`solobase.extension_config`), read once the change lock is
    /// held: a value read before could be older than a change this instance made meanwhile,
    /// and would undo it (and rewrite its file) until the next resync.
    Shared,
}

impl ExtensionHost {
    /// Replaces `name`'s configuration with `value`. With `if_match`, only when the current
    /// one — on every instance — has that entity tag. With `write`, the file is rewritten too
    /// (an API or shared change). Returns the new entity tag.
    pub(crate) async fn reconfigure(
        &self,
        name: &str,
        value: Value,
        if_match: Option<&str>,
        write: bool,
        source: Source,
    ) -> Result<String, ChangeError> {
        self.change_config(name, Proposal::Value(value), if_match, write, source)
            .await
    }

    /// Applies `name`'s shared configuration, changed by another instance (see
    /// [`ExtensionHost::reconfigure`]); nothing when it is this instance's already, or one it
    /// could not apply before.
    pub(crate) async fn apply_shared_config(&self, name: &str) {
        let _ = self
            .change_config(name, Proposal::Shared, None, true, Source::Shared)
            .await;
    }

    /// Re-reads `name`'s file and applies it (see [`ExtensionHost::reconfigure`]).
    pub async fn reload_config_file(&self, name: &str) {
        let _ = self
            .change_config(name, Proposal::File, None, false, Source::File)
            .await;
    }

    async fn change_config(
        &self,
        name: &str,
        proposal: Proposal,
        if_match: Option<&str>,
        write: bool,
        source: Source,
    ) -> Result<String, ChangeError> {
        let l = self
            .get(name)
            .ok_or_else(|| ChangeError::Unavailable(format!("no extension {name}")))?;
        let _changing = l.config_state.changing.lock().await;
        let (_, current) = l.config_state.current();
        if let Some(expected) = if_match
            && expected != current
        {
            return Err(ChangeError::Stale { current });
        }
        let file = config_file::path(self.config_dir(), name);
        let outcome = match proposal {
            Proposal::Value(value) => Ok(value),
            Proposal::File => config_file::read(&file).map_err(ChangeError::Invalid),
            Proposal::Shared => match super::state::shared_config(self.pool(), name).await {
                Ok(Some((value, tag))) if !l.config_state.refused_shared(&tag) => Ok(value),
                Ok(_) => return Ok(current),
                Err(e) => Err(ChangeError::Unavailable(format!(
                    "cannot read the shared configuration: {e:#}"
                ))),
            },
        };
        let attempted = outcome.as_ref().ok().map(etag);
        let outcome = match outcome {
            Ok(value) if etag(&value) == current => return Ok(current),
            Ok(value) => {
                let shared = !matches!(source, Source::Shared);
                self.apply(l, &file, value, if_match, write, shared).await
            }
            Err(e) => Err(e),
        };
        let actor = match &source {
            Source::File | Source::Shared => Actor::System,
            Source::Api(actor) => actor.clone(),
        };
        let via = match source {
            Source::File => "file",
            Source::Api(_) => "api",
            Source::Shared => "another instance",
        };
        if let (Err(_), Source::Shared, Some(tag)) = (&outcome, &source, &attempted) {
            l.config_state.lock().refused_shared = Some(tag.clone());
        }
        let entry = match &outcome {
            Ok(etag) => {
                tracing::info!(extension = name, via, "configuration replaced");
                Entry::new(actor, "extension.config", Outcome::Ok)
                    .detail(json!({"via": via, "etag": etag}))
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
        outcome
    }

    /// Checks, offers, shares (unless it came from another instance), writes, swaps. Every
    /// step that can fail runs before anything is changed, in this order, so that a failure
    /// leaves the running configuration, the shared one and the file as they were.
    async fn apply(
        &self,
        l: &Loaded,
        file: &Path,
        value: Value,
        if_match: Option<&str>,
        write: bool,
        share: bool,
    ) -> Result<String, ChangeError> {
        let (Some(ext), Some(updater)) = (l.ext(), l.config.as_ref()) else {
            return Err(ChangeError::Unavailable(format!(
                "{} is not running; its configuration is read when it starts",
                l.name
            )));
        };
        config_file::check(file, &l.registration, &value).map_err(ChangeError::Invalid)?;
        let text = if write {
            Some(toml_text(&value)?)
        } else {
            None
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| ext.config_changed(&value))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ChangeError::Refused(e.to_string())),
            Err(payload) => {
                l.panicked("config_changed", payload.as_ref());
                return Err(ChangeError::Refused("config_changed panicked".into()));
            }
        }
        let new_etag = etag(&value);
        if share {
            super::state::share_config(self.pool(), l.name.as_str(), &value, &new_etag, if_match)
                .await
                .map_err(|e| match e {
                    super::state::ShareError::Stale(current) => ChangeError::Stale { current },
                    super::state::ShareError::Database(e) => ChangeError::Unavailable(format!(
                        "cannot share the configuration with the other instances: {e}"
                    )),
                })?;
        }
        if let Some(text) = text {
            write_file(file, &text)?;
        }
        updater(&value).map_err(|e| ChangeError::Invalid(e.to_string()))?;
        l.config_state.set(value);
        Ok(new_etag)
    }
}

/// The configuration as the text of its file (empty for the defaults).
fn toml_text(value: &Value) -> Result<String, ChangeError> {
    if value.is_null() {
        return Ok(String::new());
    }
    toml::to_string(value).map_err(|e| {
        ChangeError::Invalid(format!("the configuration cannot be written as TOML: {e}"))
    })
}

/// Writes `text` to `file`, atomically (a temporary file renamed into place).
pub(super) fn write_file(file: &Path, text: &str) -> Result<(), ChangeError> {
    let failed = |e: std::io::Error| {
        ChangeError::Unavailable(format!("cannot write {}: {e}", file.display()))
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let temporary = file.with_extension("toml.tmp");
    std::fs::write(&temporary, text).map_err(failed)?;
    std::fs::rename(&temporary, file).map_err(failed)
}

/// [`write_file`] of a configuration value.
pub(super) fn write_value(file: &Path, value: &Value) -> Result<(), ChangeError> {
    write_file(file, &toml_text(value)?)
}
