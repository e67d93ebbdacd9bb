//! `solobase-bench`: measures what extensions cost, side by side in one run, and prints a
//! markdown report. Run it through `bench/run.sh` (which builds it in release mode and
//! installs wrk when missing).
//!
//! 1. **Request overhead.** One server (1 worker) with 5 synthetic extensions, each with a
//!    middleware on every path and `pre_request` and `post_request` hooks. wrk loads a host
//!    route (`GET /healthz`) while the extensions are disabled, then enabled, in rounds of
//!    ABBA order so that machine noise hits both alike; the report gives the median
//!    throughput of each, the median of the rounds' enabled/disabled ratios and the added
//!    server CPU microseconds per request.
//! 2. **Start-up cost.** Time to load (register, create or check the role and schema,
//!    initialize, start) N extensions that have no migration, for N = 0 and N = 20, on the
//!    same database: first start, restart, and first start with role passwords; the
//!    difference per extension.
//!
//! `BENCH_MODE=analytics` (`bench/run.sh analytics`) measures the analytics extension
//! instead: see `analytics.rs`.

mod analytics;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use solobase::audit::Actor;
use solobase::config::Config;
use solobase::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use solobase::extensions::admin::Grant;
use solobase::extensions::host::{ExtensionHost, HostContext};
use solobase::startup::Application;
use solobase_sdk::Registration;
use solobase_sdk::prelude::*;

/// A synthetic extension: the minimum real work a middleware and two hooks would do.
struct Synthetic {
    seen: AtomicU64,
}

impl Extension for Synthetic {
    type Config = ();

    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Self {
            seen: AtomicU64::new(0),
        })
    }

    fn middleware(&self) -> Vec<MiddlewareSpec> {
        vec![MiddlewareSpec::new("count", 0)]
    }

    fn middleware_request(&self, _id: &str, req: &mut RequestHead) -> Hook<'_, Flow> {
        static BLOCK: solobase_sdk::http::HeaderName =
            solobase_sdk::http::HeaderName::from_static("x-synthetic-block");
        if req.headers.contains_key(&BLOCK) {
            return Flow::reject(StatusCode::FORBIDDEN, "blocked", "blocked").into();
        }
        Flow::Continue.into()
    }

    fn hooks(&self) -> HookSet {
        HookSet::new()
            .on(HookPoint::PreRequest, 0)
            .on(HookPoint::PostRequest, 0)
    }

    fn pre_request(&self, _req: &mut RequestHead) -> Hook<'_, Flow> {
        self.seen.fetch_add(1, Ordering::Relaxed);
        Flow::Continue.into()
    }

    fn post_request(&self, _req: &RequestHead, res: &ResponseHead) -> Hook<'_, ()> {
        if res.status.is_server_error() {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
        ().into()
    }
}

fn synthetic(n: usize, prefix: &str) -> Vec<Registration> {
    (1..=n)
        .map(|i| {
            let manifest = format!(
                "[extension]\nname = \"{prefix}-{i}\"\nversion = \"0.1.0\"\n\
                 description = \"synthetic\"\nmin_host_version = \"0.1.0\"\n"
            );
            Registration::new::<Synthetic>(Box::leak(manifest.into_boxed_str()), "0.1.0")
        })
        .collect()
}

/// The CPU wrk runs on.
const WRK_CPU: &str = "1";

struct Wrk {
    rps: f64,
    /// Server CPU time (user + system) per request, in microseconds.
    cpu_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// CPU time used by this process so far (user, system), in seconds.
fn process_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the command name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

fn wrk(url: &str, secs: u64) -> anyhow::Result<Wrk> {
    wrk_with(url, secs, &[])
}

/// wrk with extra request headers (`Name: value`).
fn wrk_with(url: &str, secs: u64, headers: &[String]) -> anyhow::Result<Wrk> {
    let cpu_before = process_cpu();
    // The server runs on CPU 0 (bench/run.sh pins it); wrk gets CPU 1 to itself, so that
    // the scheduler's placement does not add noise to the comparison.
    let out = Command::new("taskset")
        .args([
            "-c",
            WRK_CPU,
            "wrk",
            "-t1",
            "-c32",
            &format!("-d{secs}s"),
            "--latency",
        ])
        .args(headers.iter().flat_map(|h| ["-H", h.as_str()]))
        .arg(url)
        .output()
        .context("cannot run wrk: install it (apt-get install wrk) or use bench/run.sh")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |prefix: &str| -> Option<f64> {
        let value = text
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))?
            .split_whitespace()
            .nth(1)?;
        parse_duration_ms(value).or_else(|| value.parse().ok())
    };
    let cpu_after = process_cpu();
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .context("wrk printed no request count")?;
    let cpu = (cpu_after.0 - cpu_before.0) + (cpu_after.1 - cpu_before.1);
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .context("wrk printed no Requests/sec")?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .flat_map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse::<u64>().ok())
        })
        .sum();
    Ok(Wrk {
        rps,
        cpu_us: cpu * 1e6 / requests,
        p50_ms: number("50%").unwrap_or(f64::NAN),
        p99_ms: number("99%").unwrap_or(f64::NAN),
        errors,
    })
}

/// wrk prints latencies as `812.00us`, `1.20ms`, `2.01s`.
fn parse_duration_ms(v: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|x| x * factor)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn database_url(
    root: &std::path::Path,
) -> anyhow::Result<(String, Option<EmbeddedPostgres>)> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok((url, None));
    }
    let opts = EmbeddedOptions {
        root: root.join("postgres"),
        bin_dir: None,
        system_user: "postgres".into(),
        start_timeout: Duration::from_secs(60),
        ephemeral: true,
    };
    let server = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts)).await??;
    solobase::db::ensure_database(&server.connect_config("postgres"), "bench").await?;
    let url = format!(
        "host={} port=5432 user={} dbname=bench",
        server.socket_dir().display(),
        solobase::db::embedded::SUPERUSER
    );
    Ok((url, Some(server)))
}

fn config(url: &str, data: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: data.to_owned(),
        ..Config::default()
    };
    c.server.bind = "127.0.0.1:0".parse().expect("address");
    c.server.workers = 1;
    c.database.url = Some(url.to_owned());
    c.log.level = "warn".into();
    // Measure what requests cost: the runtime's periodic background work (the job poll, health
    // checks, the state re-read) stays idle during a measurement, in both configurations.
    c.extensions.jobs_poll_ms = 3_600_000;
    c.extensions.health_interval_ms = 3_600_000;
    c.extensions.resync_secs = 3600;
    c
}

/// Sends `n` keep-alive `GET path` requests from one thread and checks each answers 200.
fn blocking_client(port: u16, path: &str, n: usize) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    for _ in 0..n {
        writer.write_all(request.as_bytes())?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.contains(" 200 ") {
            bail!("unexpected status line {status:?}");
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
    }
    Ok(())
}

/// `BENCH_MODE=instructions`: serve `BENCH_REQUESTS` requests from an in-process client with
/// the 5 synthetic extensions `BENCH_EXTENSIONS=enabled|disabled`, then exit. Run under
/// `valgrind --tool=callgrind` by `bench/instructions.sh`, it gives instruction counts, which
/// unlike times do not depend on what else the machine is doing.
/// Enables or disables synthetic extension `i`.
async fn set_enabled(host: &ExtensionHost, i: usize, on: bool) -> anyhow::Result<()> {
    let name = format!("synth-{i}");
    if on {
        host.enable(&name, Grant::All, &Actor::System).await?;
    } else {
        host.disable(&name, &Actor::System).await?;
    }
    Ok(())
}

async fn instructions_mode(url: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let enabled = std::env::var("BENCH_EXTENSIONS").as_deref() != Ok("disabled");
    let app = Application::build_with_extensions(config(url, dir), synthetic(5, "synth")).await?;
    let port = app.port();
    for i in 1..=5 {
        set_enabled(app.extensions(), i, enabled).await?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    tokio::task::spawn_blocking(move || blocking_client(port, "/healthz", requests)).await??;
    let _ = tx.send(());
    server.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var("BENCH_MODE").as_deref() == Ok("instructions") {
        let dir = std::env::temp_dir().join(format!("solobase-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let url = std::env::var("DATABASE_URL").context("instructions mode needs DATABASE_URL")?;
        let result = instructions_mode(&url, &dir).await;
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let dir = std::env::temp_dir().join(format!("solobase-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (url, _pg) = database_url(&dir).await?;
    if std::env::var("BENCH_MODE").as_deref() == Ok("analytics") {
        let rounds = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6);
        let result = analytics::run(&url, &dir, rounds, secs).await;
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }

    // --- start-up cost -----------------------------------------------------------------
    // Loading extensions, timed on its own (ExtensionHost::start: register, create or check
    // the role and schema, initialize, start). The first start of an extension creates its
    // PostgreSQL role and schema; later starts find them in place. Against an external
    // database the role's password is set too, on the first start only.
    let mut startup = Vec::new();
    {
        let cfg = config(&url, &dir);
        let db = solobase::db::Database::connect(&cfg, solobase::db::Mode::Share).await?;
        solobase::db::migrate::run(db.pool()).await?;
        let ctx = |role_passwords| HostContext {
            pool: db.pool().clone(),
            pg_config: db.pg_config().clone(),
            data_dir: dir.clone(),
            bus: solobase_sdk::EventBus::default(),
            settings: cfg.extensions.clone(),
            role_passwords,
            storage: solobase::storage::Storage::open(&dir.join("storage"))
                .expect("storage directory"),
            max_upload_bytes: cfg.storage.max_upload_bytes,
            metrics: Default::default(),
        };
        for (n, prefix, passwords, label) in [
            (0, "warm", false, ""),
            (0, "none", false, "no extensions"),
            (20, "boot", false, "20 extensions, first start"),
            (20, "boot", false, "20 extensions, restart"),
            (
                20,
                "auth",
                true,
                "20 extensions, first start, setting role passwords (external database)",
            ),
        ] {
            let started = Instant::now();
            let host = ExtensionHost::start(ctx(passwords), synthetic(n, prefix)).await?;
            let took = started.elapsed();
            host.shutdown().await;
            if prefix != "warm" {
                startup.push((label, took));
            }
        }
        db.close().await;
    }
    let per_ext =
        |i: usize| (startup[i].1.as_secs_f64() - startup[0].1.as_secs_f64()) * 1000.0 / 20.0;
    let (first_ms, restart_ms, password_ms) = (per_ext(1), per_ext(2), per_ext(3));

    // --- request overhead --------------------------------------------------------------
    let bare = Application::build_with_extensions(config(&url, &dir), Vec::new()).await?;
    let bare_target = format!("http://127.0.0.1:{}/healthz", bare.port());
    let (bare_tx, bare_rx) = tokio::sync::oneshot::channel::<()>();
    let bare_server = tokio::spawn(bare.run_until_stopped(async {
        let _ = bare_rx.await;
    }));
    let app = Application::build_with_extensions(config(&url, &dir), synthetic(5, "synth")).await?;
    let port = app.port();
    let host: Arc<_> = app.extensions().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let target = format!("http://127.0.0.1:{port}/healthz");
    let set_all = |on: bool| {
        let host = host.clone();
        async move {
            for i in 1..=5 {
                set_enabled(&host, i, on).await?;
            }
            anyhow::Ok(())
        }
    };
    // Warm up both paths.
    set_all(true).await?;
    tokio::task::spawn_blocking({
        let t = target.clone();
        move || wrk(&t, 1)
    })
    .await??;
    let (mut none, mut off, mut on) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // ABBA order (disabled, enabled | enabled, disabled …) so that a machine getting
        // faster or slower during the run favours neither configuration.
        let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            let t = if which == 0 {
                bare_target.clone()
            } else {
                set_all(which == 2).await?;
                target.clone()
            };
            let result = tokio::task::spawn_blocking(move || wrk(&t, secs)).await??;
            if result.errors > 0 {
                bail!("wrk saw {} failed requests", result.errors);
            }
            eprintln!(
                "  round: {} → {:.0} requests/s, {:.2} µs CPU/request",
                ["no extensions", "disabled", "enabled"][which],
                result.rps,
                result.cpu_us
            );
            match which {
                0 => none.push(result),
                1 => off.push(result),
                _ => on.push(result),
            }
        }
    }
    let _ = tx.send(());
    server.await??;
    let _ = bare_tx.send(());
    bare_server.await??;

    // Each round's enabled run is compared with the disabled run next to it: the machine's
    // speed drifts far more between rounds than between neighbouring runs.
    let ratio = median(on.iter().zip(&off).map(|(a, b)| a.rps / b.rps).collect());
    println!(
        "## Extension overhead (host route GET /healthz, 1 server worker, wrk -t1 -c32, {rounds} rounds × {secs}s, ABBA order)\n"
    );
    println!("| configuration | requests/s (median) | server CPU µs/request | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (label, runs) in [
        ("no extensions", &none),
        ("5 synthetic extensions disabled", &off),
        (
            "5 synthetic extensions enabled (middleware + pre/post_request each)",
            &on,
        ),
    ] {
        println!(
            "| {label} | {:.0} | {:.2} | {:.3} | {:.3} |",
            median(runs.iter().map(|r| r.rps).collect()),
            median(runs.iter().map(|r| r.cpu_us).collect()),
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect())
        );
    }
    let added_us = median(
        on.iter()
            .zip(&off)
            .map(|(a, b)| a.cpu_us - b.cpu_us)
            .collect(),
    );
    println!(
        "\nThroughput ratio enabled/disabled (median of the rounds' ratios): **{ratio:.3}** (goal ≥ 0.90: {}); server CPU added per request by the 5 extensions (median of the rounds' differences): **{added_us:.2} µs**.\n",
        if ratio >= 0.90 { "met" } else { "missed" },
    );
    println!("## Start-up (register, initialize, start; no migrations)\n");
    println!("| start | time to ready |");
    println!("|---|---:|");
    for (label, took) in &startup {
        println!("| {label} | {:.1} ms |", took.as_secs_f64() * 1000.0);
    }
    println!(
        "\nPer extension: **{first_ms:.2} ms** on its first start, **{restart_ms:.2} ms** on a \
         restart (goal < 5 ms: {}); {password_ms:.2} ms on a first start that sets its role's \
         password (PostgreSQL checks a SCRAM secret at 4096 iterations: once per role).",
        if first_ms < 5.0 && restart_ms < 5.0 {
            "met"
        } else {
            "missed"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
