//! Hot reload of the host's configuration file (the `--config` file, or
//! `config/solobase.toml`): the file is watched (the `notify` crate, events debounced), and a
//! change is read and checked exactly as at start-up. A valid file's run-time limits are
//! applied at once ([`ExtensionHost::apply_limits`]: rate limits, in-flight requests, CPU
//! budgets); settings that only take effect at start-up are named in the log. An invalid file
//! changes nothing: the running configuration stays, and the error is logged and audited.
//! Every reload, applied or refused, is audited as `config.reload`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::audit::{self, Actor, Entry, Outcome};
use crate::config::{Config, Overrides};
use crate::extensions::host::ExtensionHost;

/// How long a burst of file events is gathered before the file is read (editors write a file
/// in several steps).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches `path` until `stop` changes. Fails when the file cannot be watched.
pub fn spawn(
    path: PathBuf,
    running: Config,
    host: Arc<ExtensionHost>,
    pool: deadpool_postgres::Pool,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let file_name = path.file_name().map(|n| n.to_owned());
    // The directory is watched, not the file: editors replace files by renaming.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref())
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!(file = %path.display(), "watching the configuration file for changes");
    Ok(tokio::spawn(async move {
        let _watching = watcher;
        let mut running = running;
        loop {
            tokio::select! {
                event = rx.recv() => if event.is_none() { return },
                _ = stop.changed() => return,
            }
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            if let Some(applied) = reload(&path, &running, &host, &pool).await {
                running = applied;
            }
        }
    }))
}

/// Reads and applies `path`; the new configuration when it was valid.
async fn reload(
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
