//! `solobase extensions migrate|rollback|purge NAME`: an extension's schema by hand, as the
//! extension's own role, exactly as the server does it; each change audited as the command
//! line's. A dry run reads the history as the role as it is and creates nothing.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use serde_json::json;
use solobase_sdk::{ExtensionName, Migration};

use super::{compiled, with_db};
use crate::audit::{self, Actor, Entry, Outcome};
use crate::config::{Config, ConfigError};
use crate::db::Postgres;
use crate::runtime::{db_role, schema, services, state};

/// Which way a schema change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Apply the pending migrations, all or up to a version.
    Up(Option<u32>),
    /// Revert those above a version (0: all).
    Down(u32),
}

/// `migrate NAME [--to V] [--dry-run] [--json]`.
pub(super) async fn migrate(
    config: &Config,
    name: &str,
    to: Option<u32>,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    change(config, name, Direction::Up(to), dry_run, json).await
}

/// `rollback NAME V [--dry-run] [--json]`.
pub(super) async fn rollback(
    config: &Config,
    name: &str,
    to: u32,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    change(config, name, Direction::Down(to), dry_run, json).await
}

/// `purge NAME [--yes]`: works for an extension this binary no longer has, too.
pub(super) async fn purge(config: &Config, name: &str, yes: bool) -> anyhow::Result<()> {
    let ext = match compiled(name) {
        Ok((manifest, _)) => manifest.name,
        Err(_) => ExtensionName::parse(name).map_err(ConfigError::Invalid)?,
    };
    if !yes {
        confirm_purge(&ext)?;
    }
    with_db(config, true, async |db| {
        let ext = &ext;
        let purged = db_role::purge(db.pool(), ext).await;
        // Its files go once its database state is gone (a failure there leaves them).
        let files = services::extension_storage_dir(&config.data_dir, ext);
        let files_removed = match &purged {
            Ok(_) if files.exists() => match std::fs::remove_dir_all(&files) {
                Ok(()) => Some(files.display().to_string()),
                Err(e) => {
                    eprintln!(
                        "could not remove the extension's files {}: {e}; remove them by hand",
                        files.display()
                    );
                    None
                }
            },
            _ => None,
        };
        let entry =
            |outcome| Entry::new(Actor::cli(), "extension.purge", outcome).extension(ext.as_str());
        match &purged {
            Ok(db_role::Purged::All) => {
                audit::record_or_log(
                    db.pool(),
                    entry(Outcome::Ok).detail(json!({"files_removed": files_removed})),
                )
                .await;
                println!(
                    "purged {ext}: dropped the schema {} with its data, and its role; removed \
                     its queued jobs{}",
                    ext.schema(),
                    files_note(&files_removed)
                );
            }
            Ok(db_role::Purged::RoleKept(why)) => {
                audit::record_or_log(
                    db.pool(),
                    entry(Outcome::Ok)
                        .detail(json!({"role_kept": why, "files_removed": files_removed})),
                )
                .await;
                println!(
                    "purged {ext}: dropped the schema {} with its data; removed its queued \
                     jobs{}; kept the role {}: {why}",
                    ext.schema(),
                    files_note(&files_removed),
                    ext.schema()
                );
            }
            Err(e) => {
                audit::record_or_log(
                    db.pool(),
                    entry(Outcome::Failed).detail(json!({"error": e.to_string()})),
                )
                .await;
            }
        }
        purged.map(|_| ())
    })
    .await
}

async fn change(
    config: &Config,
    name: &str,
    direction: Direction,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let (manifest, registration) = compiled(name)?;
    let ext = &manifest.name;
    let migrations = registration.migrations();
    // A dry run reads only: not even the host's schema is made.
    with_db(config, !dry_run, async |db| {
        if dry_run {
            // Only reads, as the extension's role as it is: no role, schema or table is made.
            let (to, down) = match direction {
                Direction::Up(to) => (to, false),
                Direction::Down(to) => (Some(to), true),
            };
            return print_plan(db, ext, &migrations, to, down, json).await;
        }
        if let Direction::Down(_) = direction {
            refuse_when_enabled(db, ext).await?;
        }
        let limits = config.extensions.resolve(ext.as_str()).db;
        let passwords = config.database.url.is_some();
        let role_config =
            db_role::provision(db.pool(), db.pg_config(), ext, &limits, passwords).await?;
        let pool = crate::runtime::services::extension_database(role_config, db.tls(), ext, 1)?
            .pool()
            .clone();
        let started = std::time::Instant::now();
        let (verb, action, result) = match direction {
            Direction::Up(to) => {
                let plan = {
                    let history = schema::applied(&*pool.get().await?, ext).await?;
                    schema::dry_run(&history, &migrations, to, false)?
                };
                let ticker = Progress::start(&plan, json);
                let result = schema::migrate(db.pool(), &pool, ext, &migrations, to).await;
                ticker.stop();
                ("applied", "extension.migrate", result)
            }
            Direction::Down(to) => {
                let mut step = |i: usize, n: usize, file: &str| {
                    if !json {
                        eprintln!("[{i}/{n}] reverting {file}");
                    }
                };
                let result =
                    schema::rollback(db.pool(), &pool, ext, &migrations, to, &mut step).await;
                ("reverted", "extension.rollback", result)
            }
        };
        pool.close();
        let entry = match &result {
            Ok(versions) => Entry::new(Actor::cli(), action, Outcome::Ok)
                .detail(json!({ "versions": versions })),
            Err(e) => Entry::new(Actor::cli(), action, Outcome::Failed)
                .detail(json!({ "error": e.to_string() })),
        };
        audit::record_or_log(db.pool(), entry.extension(ext.as_str())).await;
        let versions = result?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "name": ext.as_str(), verb: versions,
                    "elapsed_ms": started.elapsed().as_millis() as u64,
                }))?
            );
        } else {
            report(ext, verb, &versions, started.elapsed());
        }
        Ok(())
    })
    .await
}

/// `, and its files (…)` when the purge removed them.
fn files_note(removed: &Option<String>) -> String {
    removed
        .as_ref()
        .map(|dir| format!(" and its files ({dir})"))
        .unwrap_or_default()
}

fn confirm_purge(ext: &ExtensionName) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(ConfigError::Invalid(format!(
            "purging drops the schema {} with all its data: confirm with --yes",
            ext.schema()
        ))
        .into());
    }
    print!(
        "This drops the schema {} with all its data, its role, its files and its queued jobs. \
         Type the extension's name to confirm: ",
        ext.schema()
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if line.trim() != ext.as_str() {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

/// Rolling back under a running extension breaks it: its code expects the schema it has.
async fn refuse_when_enabled(db: &Postgres, ext: &ExtensionName) -> anyhow::Result<()> {
    let enabled = state::load_all(db.pool())
        .await?
        .get(ext.as_str())
        .is_some_and(|p| p.enabled);
    if enabled {
        return Err(ConfigError::Invalid(format!(
            "{ext} is enabled: disable it first (solobase extensions disable {ext}); its code \
             expects the schema it has now. Enabling it again, or the next start, migrates it up"
        ))
        .into());
    }
    Ok(())
}

/// Shows that a migration is under way: its plan first, then (at a terminal) the time it has
/// taken so far, every second, until [`Progress::stop`]. refinery applies the pending
/// migrations as one transaction, so there is no finer step to show.
struct Progress(Option<(tokio::task::JoinHandle<()>, bool)>);

impl Progress {
    fn start(plan: &[schema::Step], quiet: bool) -> Self {
        if quiet || plan.is_empty() {
            return Self(None);
        }
        let files: Vec<&str> = plan.iter().map(|s| s.file.as_str()).collect();
        eprintln!(
            "applying {} migration{} in one transaction: {}",
            plan.len(),
            if plan.len() == 1 { "" } else { "s" },
            files.join(", ")
        );
        let terminal = std::io::stderr().is_terminal();
        if !terminal {
            return Self(None);
        }
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprint!("\r  … {} s", started.elapsed().as_secs());
                let _ = std::io::stderr().flush();
            }
        });
        Self(Some((task, terminal)))
    }

    fn stop(self) {
        if let Some((task, terminal)) = self.0 {
            task.abort();
            if terminal {
                eprint!("\r");
            }
        }
    }
}

/// A dry run: the files that would run, with their SQL (or JSON).
async fn print_plan(
    db: &Postgres,
    ext: &ExtensionName,
    migrations: &[Migration],
    to: Option<u32>,
    down: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let history = schema::applied_as_role(db.pool(), db.pg_config(), db.tls(), ext).await?;
    let steps = schema::dry_run(&history, migrations, to, down)?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"name": ext.as_str(), "dry_run": true, "role": ext.schema(), "steps": steps})
            )?
        );
        return Ok(());
    }
    let verb = if down { "revert" } else { "apply" };
    if steps.is_empty() {
        println!("-- {ext}: nothing to {verb}");
        return Ok(());
    }
    println!(
        "-- {ext}: would {verb}, in one transaction as the role {}:",
        ext.schema()
    );
    for step in &steps {
        println!("-- {}\n{}\n", step.file, step.sql.trim_end());
    }
    if down {
        println!(
            "-- then: DELETE FROM {}.refinery_schema_history WHERE version > {};",
            ext.schema(),
            to.unwrap_or(0)
        );
    }
    Ok(())
}

fn report(ext: &ExtensionName, verb: &str, versions: &[i32], took: std::time::Duration) {
    if versions.is_empty() {
        println!("{ext}: nothing to do");
    } else {
        let list: Vec<String> = versions.iter().map(|v| format!("V{v}")).collect();
        println!(
            "{ext}: {verb} {} in {} ms",
            list.join(", "),
            took.as_millis()
        );
    }
}
