//! `solobase extensions …` by hand: `migrate|rollback|purge` an extension's schema (as the
//! extension's own role, exactly as the server does), `list|info|enable|disable|revoke` its state
//! and permissions, read the `audit` log. They work whether or not a server is running (on the
//! embedded cluster, they use the running server's); running servers apply state changes at
//! once.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use serde_json::json;
use solobase_sdk::{ExtensionName, Manifest, Migration};

pub use super::extension_config::ConfigOp;
pub use super::extension_status::Unhealthy;
use super::{extension_config, extension_status};
use crate::audit::{self, Actor, Entry, Outcome};
use crate::config::{Config, ConfigError};
use crate::db::{Database, Mode};
use crate::runtime::control::{self, AdminError, Grant};
use crate::runtime::host::loader;
use crate::runtime::{db_role, schema, state};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Migrate {
        name: String,
        to: Option<u32>,
        dry_run: bool,
        json: bool,
    },
    Rollback {
        name: String,
        to: u32,
        dry_run: bool,
        json: bool,
    },
    Purge {
        name: String,
        yes: bool,
    },
}

/// The compiled-in migrations of `name`; a usage error when it is not compiled in.
fn migrations_of(name: &str) -> anyhow::Result<(ExtensionName, Vec<Migration>)> {
    let (manifest, registration) = compiled(name)?;
    Ok((manifest.name, registration.migrations()))
}

/// Every compiled-in extension with a valid manifest.
fn manifests() -> Vec<(Manifest, solobase_sdk::Registration)> {
    crate::runtime::registrations()
        .into_iter()
        .filter_map(|r| Manifest::parse(r.manifest).ok().map(|m| (m, r)))
        .collect()
}

/// The compiled-in extension `name`; a usage error when it is not compiled in.
fn compiled(name: &str) -> anyhow::Result<(Manifest, solobase_sdk::Registration)> {
    if let Some(found) = manifests()
        .into_iter()
        .find(|(m, _)| m.name.as_str() == name)
    {
        return Ok(found);
    }
    let known = crate::runtime::discovered().iter().any(|d| d.name == name);
    Err(ConfigError::Invalid(if known {
        format!(
            "extension {name:?} is known but not compiled into this binary: rebuild with \
             --features {name}"
        )
    } else {
        let names: Vec<&str> = crate::runtime::discovered()
            .iter()
            .map(|d| d.name)
            .collect();
        format!(
            "no extension {name:?}; the known ones are: {}",
            names.join(", ")
        )
    })
    .into())
}

pub async fn run(config: Config, action: Action) -> anyhow::Result<()> {
    let name = match &action {
        Action::Migrate { name, .. }
        | Action::Rollback { name, .. }
        | Action::Purge { name, .. } => name.clone(),
    };
    let (ext, migrations) = match &action {
        // Purging works for an extension this binary no longer has.
        Action::Purge { .. } => match migrations_of(&name) {
            Ok(found) => found,
            Err(_) => (
                ExtensionName::parse(&name).map_err(ConfigError::Invalid)?,
                Vec::new(),
            ),
        },
        _ => migrations_of(&name)?,
    };
    if let Action::Purge { yes: false, .. } = action {
        confirm_purge(&ext)?;
    }
    let db = Database::connect(&config, Mode::Share).await?;
    let result = act(&config, &db, &ext, &migrations, action).await;
    db.close().await;
    result
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
        "This drops the schema {} with all its data, and its role. Type the extension's name \
         to confirm: ",
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

async fn act(
    config: &Config,
    db: &Database,
    ext: &ExtensionName,
    migrations: &[Migration],
    action: Action,
) -> anyhow::Result<()> {
    match action {
        // A dry run only reads, as the extension's role as it is: it creates no role, no
        // schema and no table.
        Action::Migrate {
            to,
            dry_run: true,
            json,
            ..
        } => print_plan(db, ext, migrations, to, false, json).await,
        Action::Rollback {
            to,
            dry_run: true,
            json,
            ..
        } => print_plan(db, ext, migrations, Some(to), true, json).await,
        Action::Purge { .. } => {
            crate::db::migrate::run(db.pool()).await?;
            let purged = db_role::purge(db.pool(), ext).await;
            let entry = |outcome| {
                Entry::new(Actor::cli(), "extension.purge", outcome).extension(ext.as_str())
            };
            match &purged {
                Ok(db_role::Purged::All) => {
                    audit::record_or_log(db.pool(), entry(Outcome::Ok)).await;
                    println!(
                        "purged {ext}: dropped the schema {} with its data, and its role",
                        ext.schema()
                    );
                }
                Ok(db_role::Purged::RoleKept(why)) => {
                    audit::record_or_log(
                        db.pool(),
                        entry(Outcome::Ok).detail(json!({"role_kept": why})),
                    )
                    .await;
                    println!(
                        "purged {ext}: dropped the schema {} with its data; kept the role {}: {why}",
                        ext.schema(),
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
        }
        action => {
            crate::db::migrate::run(db.pool()).await?;
            if let Action::Rollback { .. } = action {
                refuse_when_enabled(db, ext).await?;
            }
            let limits = config.extensions.resolve(ext.as_str()).db;
            let passwords = config.database.url.is_some();
            let role_config =
                db_role::provision(db.pool(), db.pg_config(), ext, &limits, passwords).await?;
            let pool = crate::runtime::services::extension_database(role_config, ext, 1)?
                .pool()
                .clone();
            let started = std::time::Instant::now();
            let (verb, name, json, result) = match action {
                Action::Migrate { to, json, .. } => {
                    let plan = {
                        let history = schema::applied(&*pool.get().await?, ext).await?;
                        schema::dry_run(&history, migrations, to, false)?
                    };
                    let ticker = Progress::start(&plan, json);
                    let result = schema::migrate(db.pool(), &pool, ext, migrations, to).await;
                    ticker.stop();
                    ("applied", "extension.migrate", json, result)
                }
                Action::Rollback { to, json, .. } => {
                    let mut step = |i: usize, n: usize, file: &str| {
                        if !json {
                            eprintln!("[{i}/{n}] reverting {file}");
                        }
                    };
                    let result =
                        schema::rollback(db.pool(), &pool, ext, migrations, to, &mut step).await;
                    ("reverted", "extension.rollback", json, result)
                }
                Action::Purge { .. } => unreachable!("handled above"),
            };
            pool.close();
            let entry = match &result {
                Ok(versions) => Entry::new(Actor::cli(), name, Outcome::Ok)
                    .detail(json!({ "versions": versions })),
                Err(e) => Entry::new(Actor::cli(), name, Outcome::Failed)
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
        }
    }
}

/// Rolling back under a running extension breaks it: its code expects the schema it has.
async fn refuse_when_enabled(db: &Database, ext: &ExtensionName) -> anyhow::Result<()> {
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

/// What an administrator does from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAction {
    List {
        json: bool,
    },
    Info {
        name: String,
        json: bool,
    },
    Enable {
        name: String,
        grant: Grant,
    },
    Disable {
        name: String,
    },
    Revoke {
        name: String,
        permissions: Vec<String>,
    },
    Status {
        json: bool,
    },
    Health {
        name: String,
        json: bool,
    },
    Metrics {
        name: Option<String>,
        json: bool,
    },
    Config {
        name: String,
        op: ConfigOp,
    },
}

/// `solobase extensions list|enable|disable|revoke`: changes are applied by every running
/// instance at once (they are notified), and audited as the command line's.
pub async fn run_admin(config: Config, action: AdminAction) -> anyhow::Result<()> {
    let target = match &action {
        AdminAction::List { .. } | AdminAction::Status { .. } => None,
        AdminAction::Metrics { name, .. } => match name {
            Some(name) => Some(compiled(name)?),
            None => None,
        },
        AdminAction::Enable { name, .. }
        | AdminAction::Info { name, .. }
        | AdminAction::Disable { name }
        | AdminAction::Health { name, .. }
        | AdminAction::Config { name, .. }
        | AdminAction::Revoke { name, .. } => Some(compiled(name)?),
    };
    let (target, registration) = target.unzip();
    let requested = loader::requested(target.as_ref());
    let db = Database::connect(&config, Mode::Share).await?;
    let result = async {
        crate::db::migrate::run(db.pool()).await?;
        let pool = db.pool();
        let actor = Actor::cli();
        let all: Vec<Manifest> = manifests().into_iter().map(|(m, _)| m).collect();
        match action {
            AdminAction::List { json } => list(pool, json).await,
            AdminAction::Status { json } => {
                extension_status::status(&config, pool, &all, json).await
            }
            AdminAction::Metrics { name, json } => {
                extension_status::metrics(&config, pool, &all, name.as_deref(), json).await
            }
            AdminAction::Health { json, .. } => {
                let manifest = target.as_ref().expect("named");
                extension_status::health(pool, manifest, json).await
            }
            AdminAction::Config { name, op } => {
                let registration = registration.as_ref().expect("named");
                extension_config::run(&config, pool, &name, registration, op).await
            }
            AdminAction::Info { name, json } => {
                let manifest = target
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("no extension {name}"))?;
                info(pool, db.pg_config(), manifest, json).await
            }
            AdminAction::Enable { name, grant } => {
                let grant = match grant {
                    Grant::Unspecified => confirm_grants(pool, &name, &requested).await?,
                    other => other,
                };
                let p = control::enable(pool, &name, &requested, grant, &actor)
                    .await
                    .map_err(usage)?;
                println!(
                    "enabled {name}; granted: {}; not granted: {}",
                    or_none(&p.granted),
                    or_none(&p.pending)
                );
                Ok(())
            }
            AdminAction::Disable { name } => {
                control::disable(pool, &name, &actor).await.map_err(usage)?;
                println!("disabled {name}");
                Ok(())
            }
            AdminAction::Revoke { name, permissions } => {
                let p = control::revoke(pool, &name, &requested, &permissions, &actor)
                    .await
                    .map_err(usage)?;
                println!(
                    "revoked {} from {name}; granted now: {}",
                    permissions.join(", "),
                    or_none(&p.granted)
                );
                Ok(())
            }
        }
    }
    .await;
    db.close().await;
    result
}

/// A refused change is a usage error (exit 2); a database failure is not.
fn usage(e: AdminError) -> anyhow::Error {
    match e {
        AdminError::Database(e) => e,
        refused => ConfigError::Invalid(refused.to_string()).into(),
    }
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// With no grant named: when permissions are pending and a person is at the terminal, asks
/// whether to grant them all. Otherwise [`control::enable`] refuses and says what to pass.
async fn confirm_grants(
    pool: &deadpool_postgres::Pool,
    name: &str,
    requested: &[String],
) -> anyhow::Result<Grant> {
    let granted = state::load_all(pool)
        .await?
        .remove(name)
        .map(|p| p.granted)
        .unwrap_or_default();
    let pending: Vec<&String> = requested.iter().filter(|p| !granted.contains(*p)).collect();
    let stdin = std::io::stdin();
    if pending.is_empty() || !stdin.is_terminal() {
        return Ok(Grant::Unspecified);
    }
    println!("{name} requests these permissions, not granted yet:");
    for p in &pending {
        println!("  {p}");
    }
    print!("Grant them and enable {name}? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(Grant::All)
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

/// `solobase extensions list`: every compiled-in extension and its state in the database, then
/// the known ones this binary lacks, with the feature to rebuild with. A table, or JSON.
async fn list(pool: &deadpool_postgres::Pool, as_json: bool) -> anyhow::Result<()> {
    let persisted = state::load_all(pool).await?;
    let mut all = manifests();
    all.sort_by(|a, b| a.0.name.as_str().cmp(b.0.name.as_str()));
    let mut rows: Vec<serde_json::Value> = all
        .iter()
        .map(|(manifest, _)| {
            let requested = loader::requested(Some(manifest));
            let row = persisted.get(manifest.name.as_str());
            let (granted, pending): (Vec<String>, Vec<String>) = requested
                .into_iter()
                .partition(|p| row.is_some_and(|r| r.granted.contains(p)));
            json!({
                "name": manifest.name.as_str(),
                "version": manifest.version.to_string(),
                "compiled": true,
                // null: never started on this database.
                "enabled": row.map(|r| r.enabled),
                "health": row.and_then(|r| r.health.clone()),
                "error": row.and_then(|r| r.last_error.clone()),
                "permissions": {"granted": granted, "pending": pending},
            })
        })
        .collect();
    rows.extend(
        crate::runtime::discovered()
            .iter()
            .filter(|d| !d.compiled)
            .map(|d| {
                json!({
                    "name": d.name, "version": d.version, "compiled": false,
                    "hint": format!("rebuild with --features {}", d.feature),
                })
            }),
    );
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<9} {:<8} {:<10} {:<40} NOT GRANTED",
        "NAME", "VERSION", "ENABLED", "HEALTH", "GRANTED"
    );
    let words = |v: &serde_json::Value| {
        let list: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        or_none(&list)
    };
    for row in &rows {
        let name = row["name"].as_str().unwrap_or_default();
        let version = row["version"].as_str().unwrap_or_default();
        if row["compiled"] == false {
            println!(
                "{name:<16} {version:<9} not compiled in: {}",
                row["hint"].as_str().unwrap_or_default()
            );
            continue;
        }
        let enabled = match row["enabled"].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "new",
        };
        let health = row["health"]["status"].as_str().unwrap_or("unknown");
        println!(
            "{name:<16} {version:<9} {enabled:<8} {health:<10} {:<40} {}",
            words(&row["permissions"]["granted"]),
            words(&row["permissions"]["pending"]),
        );
        if let Some(message) = row["health"]["message"].as_str().filter(|m| !m.is_empty()) {
            println!("  health: {message}");
        }
        if let Some(error) = row["error"].as_str() {
            println!("  error: {error}");
        }
    }
    Ok(())
}

/// `solobase extensions info NAME`.
async fn info(
    pool: &deadpool_postgres::Pool,
    base: &tokio_postgres::Config,
    manifest: &Manifest,
    as_json: bool,
) -> anyhow::Result<()> {
    let name = manifest.name.as_str();
    let row = state::load_all(pool).await?.remove(name);
    let requested = loader::requested(Some(manifest));
    let (granted, pending): (Vec<String>, Vec<String>) = requested
        .iter()
        .cloned()
        .partition(|p| row.as_ref().is_some_and(|r| r.granted.contains(p)));
    let migrations = schema::applied_as_role(pool, base, &manifest.name).await?;
    let value = json!({
        "name": name,
        "version": manifest.version.to_string(),
        "description": manifest.description,
        "dependencies": manifest.dependencies.iter()
            .map(|(d, r)| (d.to_string(), r.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        "enabled": row.as_ref().map(|r| r.enabled),
        "error": row.as_ref().and_then(|r| r.last_error.clone()),
        "health": row.as_ref().and_then(|r| r.health.clone()),
        "permissions": {"requested": requested, "granted": granted, "pending": pending},
        "config": row.as_ref().and_then(|r| r.config.as_ref().map(|(c, etag)| json!({"config": c, "etag": etag}))),
        "migrations": migrations.iter().map(|(v, n)| format!("V{v}__{n}")).collect::<Vec<_>>(),
        "schema": manifest.name.schema(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!(
        "{name} {} — {}",
        value["version"].as_str().unwrap_or_default(),
        manifest.description
    );
    let enabled = match value["enabled"].as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not started on this database yet",
    };
    println!("  enabled:     {enabled}");
    if let Some(error) = value["error"].as_str() {
        println!("  error:       {error}");
    }
    println!(
        "  health:      {} {}",
        value["health"]["status"].as_str().unwrap_or("unknown"),
        value["health"]["message"].as_str().unwrap_or_default()
    );
    println!(
        "  permissions: granted {}; not granted {}",
        or_none(&granted),
        or_none(&pending)
    );
    println!(
        "  schema:      {} (migrations: {})",
        manifest.name.schema(),
        or_none(
            &value["migrations"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect::<Vec<_>>())
                .unwrap_or_default()
        )
    );
    if let Some(etag) = value["config"]["etag"].as_str() {
        println!("  config:      {} (etag {etag})", value["config"]["config"]);
    }
    Ok(())
}

/// `solobase extensions audit`: the newest entries, oldest of them first.
pub async fn print_audit(
    config: Config,
    filter: audit::Filter,
    as_json: bool,
) -> anyhow::Result<()> {
    let db = Database::connect(&config, Mode::Share).await?;
    let result = async {
        crate::db::migrate::run(db.pool()).await?;
        let mut entries = audit::list(db.pool(), &filter).await?;
        entries.reverse();
        if as_json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
            return Ok(());
        }
        for e in &entries {
            let at =
                e.at.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
            println!(
                "{at}  {:<24} {:<10} {:<7} {:<22} {}",
                e.action,
                e.extension.as_deref().unwrap_or("-"),
                e.result,
                e.actor,
                e.detail
            );
        }
        if entries.is_empty() {
            println!("no audit entries match");
        }
        anyhow::Ok(())
    }
    .await;
    db.close().await;
    result
}

/// A dry run: the files that would run, with their SQL (or JSON).
async fn print_plan(
    db: &Database,
    ext: &ExtensionName,
    migrations: &[Migration],
    to: Option<u32>,
    down: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    let history = schema::applied_as_role(db.pool(), db.pg_config(), ext).await?;
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
