//! `solobase extensions status|health|metrics`: what the running instances report, read from
//! the database — each instance writes its counters every `stats_interval_ms`
//! (`solobase.extension_stats`) and its health checks every `health_interval_ms`
//! (`solobase.extensions.health`) — so they answer whether or not this machine runs a server.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use serde_json::{Value, json};
use solobase_sdk::Manifest;

use crate::config::Config;
use crate::runtime::state::{self, InstanceStats};

/// The counters summed over the instances.
const SUMMED: [&str; 12] = [
    "requests",
    "errors",
    "hook_calls",
    "hook_timeouts",
    "panics",
    "in_flight",
    "busy",
    "rate_limited",
    "over_budget",
    "jobs_done",
    "jobs_failed",
    "allocated_bytes",
];

/// Counters written longer ago than this are from an instance that stopped or hangs: shown,
/// but not counted.
fn fresh_secs(config: &Config) -> f64 {
    (3 * config.extensions.stats_interval_ms).max(15_000) as f64 / 1000.0
}

/// The fresh rows of `name`, and their sum.
fn summed<'a>(
    rows: &'a [InstanceStats],
    name: &str,
    fresh: f64,
) -> (Vec<&'a InstanceStats>, Value) {
    let mine: Vec<&InstanceStats> = rows
        .iter()
        .filter(|r| r.name == name && r.age_secs <= fresh)
        .collect();
    let mut total = serde_json::Map::new();
    for key in SUMMED {
        let sum: u64 = mine.iter().filter_map(|r| r.stats[key].as_u64()).sum();
        total.insert(key.to_owned(), sum.into());
    }
    // The extension's own series (`ctx.metrics`), summed over the instances.
    let mut own: BTreeMap<String, f64> = BTreeMap::new();
    for r in &mine {
        for (series, value) in r.stats["metrics"].as_object().into_iter().flatten() {
            *own.entry(series.clone()).or_default() += value.as_f64().unwrap_or_default();
        }
    }
    total.insert("metrics".to_owned(), json!(own));
    (mine, Value::Object(total))
}

/// How many distinct instances wrote counters recently.
fn instances(rows: &[InstanceStats], fresh: f64) -> usize {
    let mut names: Vec<&str> = rows
        .iter()
        .filter(|r| r.age_secs <= fresh)
        .map(|r| r.instance.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names.len()
}

/// `solobase extensions status`: every compiled-in extension with its state, health and the
/// running instances' counters, in one table (or JSON).
pub(super) async fn status(
    config: &Config,
    pool: &Pool,
    manifests: &[Manifest],
    as_json: bool,
) -> anyhow::Result<()> {
    let persisted = state::load_all(pool).await?;
    let rows = state::load_stats(pool).await?;
    let fresh = fresh_secs(config);
    let list: Vec<Value> = manifests
        .iter()
        .map(|m| {
            let name = m.name.as_str();
            let row = persisted.get(name);
            let (reporting, total) = summed(&rows, name, fresh);
            json!({
                "name": name,
                "version": m.version.to_string(),
                "enabled": row.map(|r| r.enabled),
                "error": row.and_then(|r| r.last_error.clone()),
                "health": row.and_then(|r| r.health.as_ref()).map(|h| json!({
                    "status": h["status"], "message": h["message"], "checked_at": h["checked_at"],
                })),
                "instances": reporting.len(),
                "stats": total,
            })
        })
        .collect();
    let running = instances(&rows, fresh);
    if as_json {
        let value = json!({"instances": running, "extensions": list});
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if running == 0 {
        println!("no running instance reported in the last {fresh} s: counters are not shown");
    } else {
        println!(
            "{running} running instance{} reporting",
            if running == 1 { "" } else { "s" }
        );
    }
    println!(
        "{:<16} {:<9} {:<8} {:<10} {:>10} {:>8}  CHECKED",
        "NAME", "VERSION", "ENABLED", "HEALTH", "REQUESTS", "ERRORS"
    );
    for e in &list {
        let enabled = match e["enabled"].as_bool() {
            Some(true) => "yes",
            Some(false) => "no",
            None => "new",
        };
        let (requests, errors) = if running == 0 {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                e["stats"]["requests"].to_string(),
                e["stats"]["errors"].to_string(),
            )
        };
        println!(
            "{:<16} {:<9} {enabled:<8} {:<10} {requests:>10} {errors:>8}  {}",
            e["name"].as_str().unwrap_or_default(),
            e["version"].as_str().unwrap_or_default(),
            e["health"]["status"].as_str().unwrap_or("unknown"),
            e["health"]["checked_at"].as_str().unwrap_or("never"),
        );
        if let Some(message) = e["health"]["message"].as_str().filter(|m| !m.is_empty()) {
            println!("  health: {message}");
        }
        if let Some(error) = e["error"].as_str() {
            println!("  error: {error}");
        }
    }
    Ok(())
}

/// What `solobase extensions health NAME` found: its exit code says it for scripts.
#[derive(Debug, thiserror::Error)]
#[error("{name} is {status}")]
pub(crate) struct Unhealthy {
    pub(crate) name: String,
    pub(crate) status: String,
}

impl Unhealthy {
    /// 3 degraded, 4 critical, 5 unknown (never checked, disabled, or no instance running).
    pub(crate) fn exit_code(&self) -> u8 {
        match self.status.as_str() {
            "degraded" => 3,
            "critical" => 4,
            _ => 5,
        }
    }
}

/// `solobase extensions health NAME`: its latest health and the recent checks, as the last
/// instance to check it recorded them.
pub(super) async fn health(pool: &Pool, manifest: &Manifest, as_json: bool) -> anyhow::Result<()> {
    let name = manifest.name.as_str();
    let report = state::load_all(pool)
        .await?
        .remove(name)
        .and_then(|p| p.health)
        .unwrap_or_else(|| json!({"status": "unknown", "message": "never checked", "history": []}));
    let status = report["status"].as_str().unwrap_or("unknown").to_owned();
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"name": name, "health": report}))?
        );
    } else {
        println!(
            "{name}: {status}{}",
            report["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(" — {m}"))
                .unwrap_or_default()
        );
        if let Some(at) = report["checked_at"].as_str() {
            println!("  checked at {at}");
        }
        let history = report["history"].as_array().cloned().unwrap_or_default();
        if !history.is_empty() {
            println!("  recent checks, oldest first:");
            for check in &history {
                println!(
                    "  {:<25} {:<9} {:>6} ms  {}",
                    check["at"].as_str().unwrap_or_default(),
                    check["status"].as_str().unwrap_or_default(),
                    check["took_ms"],
                    check["message"].as_str().unwrap_or_default()
                );
            }
        }
    }
    if status == "healthy" {
        Ok(())
    } else {
        Err(Unhealthy {
            name: name.to_owned(),
            status,
        }
        .into())
    }
}

/// `solobase extensions metrics [NAME]`: the counters of every running instance, summed per
/// extension; with a name, also each instance's.
pub(super) async fn metrics(
    config: &Config,
    pool: &Pool,
    manifests: &[Manifest],
    only: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let rows = state::load_stats(pool).await?;
    let fresh = fresh_secs(config);
    let mut out = BTreeMap::new();
    for m in manifests {
        let name = m.name.as_str();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let (reporting, total) = summed(&rows, name, fresh);
        let stale: Vec<&InstanceStats> = rows
            .iter()
            .filter(|r| r.name == name && r.age_secs > fresh)
            .collect();
        out.insert(
            name.to_owned(),
            json!({"total": total, "instances": reporting, "stale": stale}),
        );
    }
    if as_json {
        let value = json!({"fresh_within_secs": fresh, "extensions": out});
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let running = instances(&rows, fresh);
    if running == 0 {
        println!(
            "no running instance reported counters in the last {fresh} s: start a server \
             (solobase serve), or check that it uses this database"
        );
        return Ok(());
    }
    println!(
        "{:<16} {:>10} {:>8} {:>10} {:>8} {:>8} {:>10} {:>6} {:>6}",
        "NAME", "REQUESTS", "ERRORS", "HOOKS", "PANICS", "LIMITED", "JOBS", "JFAIL", "INST"
    );
    for (name, e) in &out {
        let t = &e["total"];
        println!(
            "{name:<16} {:>10} {:>8} {:>10} {:>8} {:>8} {:>10} {:>6} {:>6}",
            t["requests"],
            t["errors"],
            t["hook_calls"],
            t["panics"],
            t["rate_limited"],
            t["jobs_done"],
            t["jobs_failed"],
            e["instances"].as_array().map_or(0, Vec::len)
        );
        if only.is_some() {
            for (series, value) in t["metrics"].as_object().into_iter().flatten() {
                println!("  {series} {value}");
            }
            for r in e["instances"].as_array().into_iter().flatten() {
                println!(
                    "  {}  requests {}  errors {}  breaker {}  ({:.1} s ago)",
                    r["instance"].as_str().unwrap_or_default(),
                    r["stats"]["requests"],
                    r["stats"]["errors"],
                    r["stats"]["breaker"],
                    r["age_secs"].as_f64().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
