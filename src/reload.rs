//! Hot reload of the configuration: the host's file (the `--config` file, or
//! `config/solobase.toml`) and each extension's file in `[extensions] config_dir` are watched
//! (the `notify` crate, events debounced). An extension's changed file goes through
//! [`ExtensionHost::reconfigure`]. A changed host file is read and checked exactly as at
//! start-up. A valid file's run-time limits are
//! applied at once ([`ExtensionHost::apply_limits`]: rate limits, in-flight requests, CPU
//! budgets); settings that only take effect at start-up are named in the log. An invalid file
//! changes nothing: the running configuration stays, and the error is logged and audited.
//! Every reload, applied or refused, is audited as `config.reload`.
//!
//! Only changes count, never reads: notify reports opens and reads too, and a reload that
//! reacted to them would read the file again for ever (`tests/api/runtime/reload.rs`,
//! `reading_the_file_does_not_reload_it_again`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::audit::{self, Actor, Entry, Outcome};
use crate::config::{Config, Overrides};
use crate::runtime::host::ExtensionHost;

/// How long a burst of file events is gathered before the file is read (editors write a file
/// in several steps).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Changed {
    Host,
    Extension(String),
}

/// Watches the host's configuration file (`host_file`, if any) and the extensions'
/// configuration directory until `stop` changes. Fails when neither can be watched.
pub(crate) fn spawn(
    host_file: Option<PathBuf>,
    running: Config,
    host: Arc<ExtensionHost>,
    pool: deadpool_postgres::Pool,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Changed>();
    // Directories are watched, not files: editors replace files by renaming.
    let dir_of = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned()
    };
    let host_dir = host_file
        .as_deref()
        .map(dir_of)
        .and_then(|d| d.canonicalize().ok());
    let host_name = host_file
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_owned());
    let ext_dir = running.extensions.config_dir.canonicalize().ok();
    let (watch_host, watch_ext) = (host_dir.clone(), ext_dir.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reading a file is an event too (notify reports inotify's open and close-after-read
        // as accesses): a reload reading the file must not trigger the next one, or reloads
        // go on forever. Only a change, or the close that ends a write, counts.
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return;
        }
        for path in &event.paths {
            let parent = path.parent().and_then(|p| p.canonicalize().ok());
            let name = path.file_name();
            if parent.is_some() && parent == watch_host && name == host_name.as_deref() {
                let _ = tx.send(Changed::Host);
            } else if parent.is_some()
                && parent == watch_ext
                && path.extension().is_some_and(|e| e == "toml")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                let _ = tx.send(Changed::Extension(stem.to_owned()));
            }
        }
    })?;
    let mut watching = Vec::new();
    for dir in [&host_dir, &ext_dir].into_iter().flatten() {
        if !watching.contains(dir) {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            watching.push(dir.clone());
        }
    }
    if watching.is_empty() {
        anyhow::bail!(
            "neither a configuration file nor the extensions' configuration directory exists"
        );
    }
    tracing::info!(directories = ?watching, "watching the configuration for changes");
    Ok(tokio::spawn(async move {
        let _watching = watcher;
        let mut running = running;
        loop {
            let first = tokio::select! {
                event = rx.recv() => match event { Some(c) => c, None => return },
                _ = stop.changed() => return,
            };
            tokio::time::sleep(DEBOUNCE).await;
            let mut changed = std::collections::BTreeSet::from([first]);
            while let Ok(c) = rx.try_recv() {
                changed.insert(c);
            }
            for c in changed {
                match c {
                    Changed::Host => {
                        if let Some(path) = &host_file
                            && let Some(applied) = reload(path, &running, &host, &pool).await
                        {
                            running = applied;
                        }
                    }
                    Changed::Extension(name) if host.get(&name).is_some() => {
                        host.reload_config_file(&name).await;
                    }
                    Changed::Extension(name) => {
                        tracing::warn!(file = %name, "a configuration file changed that no extension of this binary owns");
                    }
                }
            }
        }
    }))
}

/// Reads and applies `path` (what the watcher does when the host's file changed); the new
/// configuration when it was valid. `running` is the configuration applied before.
pub async fn reload(
    path: &Path,
    running: &Config,
    host: &ExtensionHost,
    pool: &deadpool_postgres::Pool,
) -> Option<Config> {
    let file = path.display().to_string();
    // The command line's overrides (bind address, data directory, database) stay as started.
    let mut new = match Config::load(Some(path), &Overrides::default()) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(file, error = %e, "configuration not reloaded: the running one stays");
            let entry = Entry::new(Actor::System, "config.reload", Outcome::Failed)
                .detail(json!({"file": file, "error": e.to_string()}));
            audit::record_or_log(pool, entry).await;
            return None;
        }
    };
    new.server.bind = running.server.bind;
    new.data_dir.clone_from(&running.data_dir);
    new.database.url.clone_from(&running.database.url);
    new.bootstrap_admin.clone_from(&running.bootstrap_admin);
    let applied = host.apply_limits(&new.extensions);
    let at_restart = restart_needed(running, &new);
    if !at_restart.is_empty() {
        tracing::warn!(file, keys = ?at_restart, "these settings changed but take effect only at the next start");
    }
    tracing::info!(file, ?applied, "configuration reloaded");
    let entry = Entry::new(Actor::System, "config.reload", Outcome::Ok)
        .detail(json!({"file": file, "applied": applied, "at_restart": at_restart}));
    audit::record_or_log(pool, entry).await;
    Some(new)
}

/// The sections that changed in ways only a restart applies.
fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let live = |c: &Config| {
        let mut e = c.extensions.clone();
        let d = crate::config::ExtensionsConfig::default();
        (e.rate_per_second, e.rate_burst) = (d.rate_per_second, d.rate_burst);
        (e.client_rate_per_second, e.client_rate_burst) =
            (d.client_rate_per_second, d.client_rate_burst);
        (e.max_in_flight, e.cpu_budget_ms) = (d.max_in_flight, d.cpu_budget_ms);
        for limits in e.limits.values_mut() {
            limits.rate_per_second = None;
            limits.rate_burst = None;
            limits.client_rate_per_second = None;
            limits.client_rate_burst = None;
            limits.max_in_flight = None;
            limits.cpu_budget_ms = None;
        }
        e.limits.retain(|_, l| *l != Default::default());
        e
    };
    let mut keys = Vec::new();
    if running.server != new.server {
        keys.push("server");
    }
    if running.database != new.database {
        keys.push("database");
    }
    if running.auth != new.auth {
        keys.push("auth");
    }
    if running.storage != new.storage {
        keys.push("storage");
    }
    if running.log != new.log {
        keys.push("log");
    }
    if live(running) != live(new) {
        keys.push("extensions (other than rates, in-flight and CPU budgets)");
    }
    keys
}
