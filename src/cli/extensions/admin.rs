//! `solobase extensions list|info|enable|disable|revoke|audit`: an extension's state and
//! permissions, and the audit log, by hand. Changes are committed with a notification, so
//! running instances apply them at once, and audited as the command line's.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use serde_json::json;
use solobase_sdk::Manifest;

use super::{compiled, with_db};
use crate::audit::{self, Actor};
use crate::config::{Config, ConfigError};
use crate::runtime::control::{self, AdminError, Grant};
use crate::runtime::host::loader;
use crate::runtime::{schema, state};

/// `enable NAME [--grant-all | --grant P… | --grant-none]`.
pub(super) async fn enable(config: &Config, name: &str, grant: Grant) -> anyhow::Result<()> {
    let (manifest, _) = compiled(name)?;
    let requested = loader::requested(Some(&manifest));
    with_db(config, true, async |db| {
        let pool = db.pool();
        let grant = match grant {
            Grant::Unspecified => confirm_grants(pool, name, &requested).await?,
            other => other,
        };
        let p = control::enable(pool, name, &requested, grant, &Actor::cli())
            .await
            .map_err(usage)?;
        println!(
            "enabled {name}; granted: {}; not granted: {}",
            or_none(&p.granted),
            or_none(&p.pending)
        );
        Ok(())
    })
    .await
}

/// `disable NAME`.
pub(super) async fn disable(config: &Config, name: &str) -> anyhow::Result<()> {
    compiled(name)?;
    with_db(config, true, async |db| {
        control::disable(db.pool(), name, &Actor::cli())
            .await
            .map_err(usage)?;
        println!("disabled {name}");
        Ok(())
    })
    .await
}

/// `revoke NAME PERMISSION…`.
pub(super) async fn revoke(
    config: &Config,
    name: &str,
    permissions: &[String],
) -> anyhow::Result<()> {
    let (manifest, _) = compiled(name)?;
    let requested = loader::requested(Some(&manifest));
    with_db(config, true, async |db| {
        let p = control::revoke(db.pool(), name, &requested, permissions, &Actor::cli())
            .await
            .map_err(usage)?;
        println!(
            "revoked {} from {name}; granted now: {}",
            permissions.join(", "),
            or_none(&p.granted)
        );
        Ok(())
    })
    .await
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
pub(super) async fn list(pool: &deadpool_postgres::Pool, as_json: bool) -> anyhow::Result<()> {
    let persisted = state::load_all(pool).await?;
    let mut all = super::manifests();
    all.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
    let mut rows: Vec<serde_json::Value> = all
        .iter()
        .map(|manifest| {
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
pub(super) async fn info(
    pool: &deadpool_postgres::Pool,
    base: &tokio_postgres::Config,
    tls: &crate::db::tls::DbTls,
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
    let migrations = schema::applied_as_role(pool, base, tls, &manifest.name).await?;
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
pub(super) async fn audit(
    config: &Config,
    filter: audit::Filter,
    as_json: bool,
) -> anyhow::Result<()> {
    with_db(config, true, async |db| {
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
        Ok(())
    })
    .await
}

/// The audit selection of `audit --extension N --since T --limit N`, checked.
pub(super) fn audit_filter(
    extension: Option<String>,
    since: Option<String>,
    limit: i64,
) -> Result<audit::Filter, ConfigError> {
    use time::format_description::well_known::Rfc3339;
    let since = since
        .map(|s| {
            time::OffsetDateTime::parse(&s, &Rfc3339).map_err(|e| {
                ConfigError::Invalid(format!(
                    "--since {s:?}: not an RFC 3339 time such as 2026-11-26T08:00:00Z ({e})"
                ))
            })
        })
        .transpose()?;
    if !(1..=audit::MAX_PAGE).contains(&limit) {
        return Err(ConfigError::Invalid(format!(
            "--limit {limit}: ask for 1 to {} entries",
            audit::MAX_PAGE
        )));
    }
    Ok(audit::Filter {
        extension,
        action: None,
        since,
        before: None,
        limit,
    })
}
