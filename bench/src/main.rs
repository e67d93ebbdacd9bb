//! `solobase-bench`: what extensions cost, measured side by side in one run, printed as a
//! markdown report with the raw figures and their ratios. Run it through `bench/run.sh`
//! (release build, wrk installed when missing, the server pinned to CPU 0 and wrk to CPU 1).
//!
//! 1. **Host route** (`GET /healthz`, 1 server worker): no extensions compiled in, the
//!    shipped extensions enabled, and 5 synthetic extensions (a middleware on every path,
//!    `pre_request` and `post_request` each) disabled and enabled — in rounds whose order
//!    alternates (ABBA), so that machine noise hits every configuration alike.
//! 2. **Extension route** versus the same handler in a bare actix-web app: the floor.
//! 3. **Start-up**: time to ready (connect, migrate, load extensions, listen) with 0, 2 and
//!    10 extensions, first start and restart.
//! 4. **Idle memory**: resident memory of a fresh process with 0 extensions, 10 synthetic
//!    ones and the shipped ones.
//! 5. **Hot reload under load**: failed requests and latency while the configuration file is
//!    rewritten every 200 ms, next to the same load without reloads.
//! 6. **Webhooks**: deliveries per second, event-to-first-attempt latency and a
//!    SIGKILL-under-load run (`webhooks.rs`).
//! 7. **Analytics**: sustained ingest into PostgreSQL and the tracking hook's cost per request
//!    (`analytics.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use solobase::config::{Config, Overrides};
use solobase::runtime::host::ExtensionHost;
use solobase::startup::Application;
use solobase_bench::{
    Wrk, blocking_client, config, database_url, median, route_only, rss_kib, set_enabled,
    synthetic, wrk,
};

/// A running server and how to stop it.
struct Running {
    port: u16,
    host: Arc<ExtensionHost>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve(app: Application) -> Running {
    let port = app.port();
    let host = app.extensions().clone();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    Running {
        port,
        host,
        stop,
        task,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

async fn load(url: String, secs: u64) -> anyhow::Result<Wrk> {
    let result = tokio::task::spawn_blocking(move || wrk(&url, secs)).await??;
    if result.errors > 0 {
        bail!("wrk saw {} failed requests", result.errors);
    }
    Ok(result)
}

async fn set_all(host: &ExtensionHost, prefix: &str, n: usize, on: bool) -> anyhow::Result<()> {
    for i in 1..=n {
        set_enabled(host, &format!("{prefix}-{i}"), on).await?;
    }
    Ok(())
}

fn row(label: &str, runs: &[Wrk]) -> String {
    format!(
        "| {label} | {:.0} | {:.2} | {:.3} | {:.3} |",
        median(runs.iter().map(|r| r.rps).collect()),
        median(runs.iter().map(|r| r.cpu_us).collect()),
        median(runs.iter().map(|r| r.p50_ms).collect()),
        median(runs.iter().map(|r| r.p99_ms).collect())
    )
}

/// The median of the rounds' ratios a/b: each round's runs are neighbours in time, so the
/// machine's drift between rounds cancels out.
fn ratio(a: &[Wrk], b: &[Wrk]) -> f64 {
    median(a.iter().zip(b).map(|(a, b)| a.rps / b.rps).collect())
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

const TABLE_HEAD: &str = "| configuration | requests/s (median) | server CPU µs/request | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|";

/// Section 1.
async fn host_route(url: &str, dir: &Path, rounds: usize, secs: u64) -> anyhow::Result<()> {
    let none = serve(Application::build_with_extensions(config(url, dir), Vec::new()).await?).await;
    let shipped = serve(Application::build(config(url, dir)).await?).await;
    let synth =
        serve(Application::build_with_extensions(config(url, dir), synthetic(5, "synth")).await?)
            .await;
    let shipped_names: Vec<String> = shipped
        .host
        .all()
        .iter()
        .map(|l| l.name.to_string())
        .collect();
    for name in &shipped_names {
        set_enabled(&shipped.host, name, true).await?;
    }
    set_all(&synth.host, "synth", 5, true).await?;
    for s in [&none, &shipped, &synth] {
        load(s.url("/healthz"), 1).await?;
    }
    let mut runs: [Vec<Wrk>; 4] = Default::default();
    const LABELS: [&str; 4] = [
        "no extensions compiled in",
        "shipped extensions enabled",
        "5 synthetic extensions disabled",
        "5 synthetic extensions enabled (middleware + pre/post_request each)",
    ];
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [0, 1, 2, 3]
        } else {
            [3, 2, 1, 0]
        };
        for which in order {
            let target = match which {
                0 => none.url("/healthz"),
                1 => shipped.url("/healthz"),
                _ => {
                    set_all(&synth.host, "synth", 5, which == 3).await?;
                    synth.url("/healthz")
                }
            };
            let result = load(target, secs).await?;
            eprintln!(
                "  host route, {}: {:.0} requests/s, {:.2} µs CPU/request",
                LABELS[which], result.rps, result.cpu_us
            );
            runs[which].push(result);
        }
    }
    for s in [none, shipped, synth] {
        s.stop().await?;
    }
    println!(
        "## Host route: GET /healthz (1 server worker, wrk -t1 -c32, {rounds} rounds × {secs} s, ABBA order)\n"
    );
    println!("{TABLE_HEAD}");
    for (label, r) in LABELS.iter().zip(&runs) {
        println!("{}", row(label, r));
    }
    let synthetic_ratio = ratio(&runs[3], &runs[2]);
    let added_us = median(
        runs[3]
            .iter()
            .zip(&runs[2])
            .map(|(a, b)| a.cpu_us - b.cpu_us)
            .collect(),
    );
    println!(
        "\n| ratio (median of the rounds' ratios) | value | goal |\n|---|---:|---|\n\
         | 5 synthetic enabled / disabled | **{synthetic_ratio:.3}** | ≥ 0.95: {} |\n\
         | 5 synthetic disabled / no extensions | {:.3} | |\n\
         | shipped enabled ({}) / no extensions | {:.3} | |\n\
         \nServer CPU added per request by the 5 synthetic extensions (median of the rounds' \
         differences): **{added_us:.2} µs**.\n",
        goal(synthetic_ratio >= 0.95),
        ratio(&runs[2], &runs[0]),
        shipped_names.join(", "),
        ratio(&runs[1], &runs[0]),
    );
    Ok(())
}

/// The same handler as the extension route, in a bare actix-web app with one worker (not a
/// Solobase route: the lint guarding the host's route table does not apply).
#[allow(clippy::disallowed_methods)]
fn bare_actix() -> anyhow::Result<(u16, actix_web::dev::ServerHandle)> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let server = HttpServer::new(|| {
        App::new().route(
            "/ping",
            web::get().to(|| async { HttpResponse::Ok().content_type("text/plain").body("pong") }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))?;
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((port, handle))
}

/// Section 2: the bare framework, the host's own route and an extension's route, side by
/// side in ABBA rounds.
async fn extension_route(url: &str, dir: &Path, rounds: usize, secs: u64) -> anyhow::Result<()> {
    let app = serve(
        Application::build_with_extensions(config(url, dir), vec![route_only("route-1")]).await?,
    )
    .await;
    set_enabled(&app.host, "route-1", true).await?;
    let none = serve(Application::build_with_extensions(config(url, dir), Vec::new()).await?).await;
    let (bare_port, bare) = bare_actix()?;
    let urls = [
        format!("http://127.0.0.1:{bare_port}/ping"),
        none.url("/healthz"),
        app.url("/ext/route-1/ping"),
    ];
    for url in &urls {
        load(url.clone(), 1).await?;
    }
    let mut runs: [Vec<Wrk>; 3] = Default::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for which in order {
            runs[which].push(load(urls[which].clone(), secs).await?);
        }
    }
    bare.stop(true).await;
    app.stop().await?;
    none.stop().await?;
    let [floor, host, ext] = &runs;
    println!(
        "## Extension route and host route versus the bare framework ({rounds} rounds × {secs} s, ABBA)\n"
    );
    println!("{TABLE_HEAD}");
    for (label, r) in [
        (
            "bare actix-web, the same handler (GET /ping → \"pong\")",
            floor,
        ),
        (
            "Solobase host route (GET /healthz, no extensions compiled in)",
            host,
        ),
        (
            "Solobase extension route (GET /ext/route-1/ping, no hooks)",
            ext,
        ),
    ] {
        println!("{}", row(label, r));
    }
    let added = |a: &[Wrk]| {
        median(
            a.iter()
                .zip(floor)
                .map(|(a, b)| a.cpu_us - b.cpu_us)
                .collect(),
        )
    };
    let (ext_ratio, ext_added) = (ratio(ext, floor), added(ext));
    let host_added = added(host);
    println!(
        "\n| goal (against bare actix-web, same run) | value | goal |\n|---|---:|---|\n\
         | extension route / bare, requests/s | **{ext_ratio:.3}** | ≥ 0.85: {} |\n\
         | extension route, server CPU added per request | **{ext_added:.2} µs** | ≤ 1.7 µs: {} |\n\
         | host route, server CPU added per request (its handler serializes JSON) | **{host_added:.2} µs** | ≤ 1.5 µs: {} |\n\
         | host route / bare, requests/s | {:.3} | |\n\
         \nWhat the host adds: request id and span, metrics, security headers, the pipeline's check, \
         dispatch with its limits, panic isolation and accounting; `bench/instructions.sh` counts \
         the same paths in instructions.\n",
        goal(ext_ratio >= 0.85),
        goal(ext_added <= 1.7),
        goal(host_added <= 1.5),
        ratio(host, floor),
    );
    Ok(())
}

/// Section 3: time to ready of an application with `n` synthetic extensions named `prefix-i`.
async fn time_to_ready(url: &str, dir: &Path, n: usize, prefix: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let app = Application::build_with_extensions(config(url, dir), synthetic(n, prefix)).await?;
    let took = started.elapsed();
    app.run_until_stopped(async {}).await?;
    Ok(took)
}

async fn startup(url: &str, dir: &Path) -> anyhow::Result<()> {
    // A first start of the host itself (schema, roles) is not counted.
    time_to_ready(url, dir, 0, "warm").await?;
    let mut rows = Vec::new();
    for n in [0usize, 2, 10] {
        let prefix = format!("boot{n}");
        let first = time_to_ready(url, dir, n, &prefix).await?;
        let mut restarts = Vec::new();
        for _ in 0..3 {
            restarts.push(time_to_ready(url, dir, n, &prefix).await?.as_secs_f64() * 1000.0);
        }
        rows.push((n, first.as_secs_f64() * 1000.0, median(restarts)));
    }
    println!(
        "## Start-up: time to ready (connect, migrate, load the extensions, listen)\n\n\
         | extensions | first start | restart (median of 3) |\n|---:|---:|---:|"
    );
    for (n, first, restart) in &rows {
        println!("| {n} | {first:.1} ms | {restart:.1} ms |");
    }
    let first = (rows[2].1 - rows[0].1) / 10.0;
    let restart = (rows[2].2 - rows[0].2) / 10.0;
    println!(
        "\nPer extension (10 versus 0): **{first:.2} ms** on a first start (creates its role and \
         schema), **{restart:.2} ms** on a restart (goal < 5 ms: {}).\n",
        goal(first < 5.0 && restart < 5.0)
    );
    Ok(())
}

/// `BENCH_MODE=idle`: an application with `BENCH_IDLE` = `none` | `synthetic10` | `shipped`
/// extensions, left idle for two seconds; prints its resident memory in KiB.
async fn idle_mode(url: &str, dir: &Path) -> anyhow::Result<()> {
    let which = std::env::var("BENCH_IDLE").unwrap_or_default();
    let app = match which.as_str() {
        "none" => Application::build_with_extensions(config(url, dir), Vec::new()).await?,
        "synthetic10" => {
            Application::build_with_extensions(config(url, dir), synthetic(10, "idle")).await?
        }
        "shipped" => Application::build(config(url, dir)).await?,
        other => bail!("BENCH_IDLE={other:?}: use none, synthetic10 or shipped"),
    };
    let running = serve(app).await;
    // Served a little, then idle.
    let port = running.port;
    tokio::task::spawn_blocking(move || blocking_client(port, "/healthz", &[], 100)).await??;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("{}", rss_kib());
    running.stop().await
}

async fn memory(url: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let measure = |which: &str| -> anyhow::Result<f64> {
        let mut samples = Vec::new();
        for _ in 0..3 {
            let out = std::process::Command::new(&exe)
                .env("BENCH_MODE", "idle")
                .env("BENCH_IDLE", which)
                .env("DATABASE_URL", url)
                .output()?;
            if !out.status.success() {
                bail!(
                    "idle run {which} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let kib: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("the idle run printed no RSS")?;
            samples.push(kib);
        }
        Ok(median(samples))
    };
    // The first run of each creates roles and schemas; the samples are medians of 3.
    let none = measure("none")?;
    let ten = measure("synthetic10")?;
    let shipped = measure("shipped")?;
    let per = (ten - none) / 10.0 / 1024.0;
    println!(
        "## Idle memory (resident, a fresh process after 100 requests and 2 s idle, median of 3)\n\n\
         | extensions | resident memory |\n|---|---:|\n\
         | none | {:.1} MiB |\n| 10 synthetic | {:.1} MiB |\n| shipped (webhooks, analytics) | {:.1} MiB |\n\
         \nPer extension (10 synthetic versus none): **{per:.3} MiB** (goal < 1 MiB: {}); the \
         shipped ones add {:.2} MiB together.\n",
        none / 1024.0,
        ten / 1024.0,
        shipped / 1024.0,
        goal(per < 1.0),
        (shipped - none) / 1024.0
    );
    Ok(())
}

/// Configuration reloads applied so far (they are audited).
async fn reloads(pool: &deadpool_postgres::Pool) -> anyhow::Result<i64> {
    let client = pool.get().await?;
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE action = 'config.reload' \
             AND result = 'ok'",
            &[],
        )
        .await?
        .get(0);
    Ok(n)
}

/// Section 5.
async fn hot_reload(url: &str, dir: &Path, secs: u64) -> anyhow::Result<()> {
    let file = dir.join("reload.toml");
    let write = |rate: u32| {
        std::fs::write(
            &file,
            format!(
                "[server]\nworkers = 1\n[log]\nlevel = \"warn\"\n[extensions]\n\
                 jobs_poll_ms = 3600000\nhealth_interval_ms = 3600000\nresync_secs = 3600\n\
                 client_rate_per_second = {rate}\nclient_rate_burst = {rate}\n"
            ),
        )
    };
    write(1_000_000)?;
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse()?),
        data_dir: Some(dir.to_owned()),
        database_url: Some(url.to_owned()),
    };
    let config = Config::load(Some(&file), &overrides)?;
    let app =
        serve(Application::build_with_extensions(config, synthetic(5, "reload")).await?).await;
    set_all(&app.host, "reload", 5, true).await?;
    let target = app.url("/healthz");
    load(target.clone(), 1).await?;
    let pool = app.host.pool().clone();
    let quiet = tokio::task::spawn_blocking({
        let t = target.clone();
        move || wrk(&t, secs)
    })
    .await??;
    let before = reloads(&pool).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = std::thread::spawn({
        let stop = stop.clone();
        let file = file.clone();
        move || {
            let mut rate = 1_000_000u32;
            let mut writes = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                rate = if rate == 1_000_000 {
                    2_000_000
                } else {
                    1_000_000
                };
                let text = format!(
                    "[server]\nworkers = 1\n[log]\nlevel = \"warn\"\n[extensions]\n\
                     jobs_poll_ms = 3600000\nhealth_interval_ms = 3600000\nresync_secs = 3600\n\
                     client_rate_per_second = {rate}\nclient_rate_burst = {rate}\n"
                );
                if std::fs::write(&file, text).is_ok() {
                    writes += 1;
                }
            }
            writes
        }
    });
    let busy = tokio::task::spawn_blocking({
        let t = target.clone();
        move || wrk(&t, secs)
    })
    .await??;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))?;
    // The last write's reload lands within the watcher's debounce.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let applied = reloads(&pool).await? - before;
    app.stop().await?;
    println!(
        "## Hot reload under load (5 synthetic extensions enabled, GET /healthz, {secs} s each)\n"
    );
    println!("| run | requests/s | failed requests | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|");
    for (label, r) in [
        ("no reloads", &quiet),
        ("config file rewritten every 200 ms", &busy),
    ] {
        println!(
            "| {label} | {:.0} | {} | {:.3} | {:.3} |",
            r.rps, r.errors, r.p50_ms, r.p99_ms
        );
    }
    println!(
        "\n{writes} writes, {applied} reloads applied (the watcher debounces bursts by 250 ms). \
         Failed requests during reloads: **{}** (goal 0: {}); p99 with reloads / without: {:.2}.\n",
        busy.errors,
        goal(busy.errors == 0),
        busy.p99_ms / quiet.p99_ms
    );
    Ok(())
}

/// `BENCH_MODE=instructions`: one scenario (`BENCH_SCENARIO`), `BENCH_REQUESTS` keep-alive
/// requests from a client thread in this process, for callgrind to count (`bench/instructions.sh`):
/// `bare` (actix-web alone, `GET /ping`), `none` (`GET /healthz`, no extensions compiled in),
/// `disabled` / `enabled` (5 synthetic extensions), `route` (an extension route,
/// `GET /ext/route-1/ping`), `analytics-off` / `analytics` (`GET /healthz` from a browser, a
/// counted page view while the extension is enabled), `missing` (a path no route has: 404).
async fn instructions_mode(url: &str, dir: &Path) -> anyhow::Result<()> {
    let requests: usize = env_number("BENCH_REQUESTS", 0);
    let scenario = std::env::var("BENCH_SCENARIO").unwrap_or_else(|_| "enabled".into());
    // BENCH_LOG=json|pretty: the server's logging as `solobase serve` installs it (level
    // info; its output is discarded by the script).
    if let Ok(format) = std::env::var("BENCH_LOG")
        && !format.is_empty()
    {
        let log = solobase::config::LogConfig {
            format: if format == "json" {
                solobase::config::LogFormat::Json
            } else {
                solobase::config::LogFormat::Pretty
            },
            level: "info".into(),
        };
        solobase::telemetry::init(&log).map_err(anyhow::Error::msg)?;
    }
    if scenario == "bare" {
        let (port, bare) = bare_actix()?;
        tokio::task::spawn_blocking(move || {
            let done = blocking_client(port, "/ping", &[], requests);
            solobase_bench::window_end();
            done
        })
        .await??;
        bare.stop(true).await;
        return Ok(());
    }
    let (extensions, path, headers): (_, _, &[&str]) = match scenario.as_str() {
        "none" => (Vec::new(), "/healthz", &[]),
        "missing" => (Vec::new(), "/missing/page", &[]),
        "disabled" | "enabled" => (synthetic(5, "synth"), "/healthz", &[]),
        "route" => (vec![route_only("route-1")], "/ext/route-1/ping", &[]),
        "analytics" | "analytics-off" => (
            vec![solobase_ext_analytics::solobase_extension()],
            "/healthz",
            &[analytics::BROWSER],
        ),
        other => bail!("unknown BENCH_SCENARIO {other:?}"),
    };
    let app = Application::build_with_extensions(config(url, dir), extensions).await?;
    let running = serve(app).await;
    let on = !matches!(scenario.as_str(), "disabled" | "analytics-off");
    for loaded in running.host.all() {
        set_enabled(&running.host, &loaded.name.to_string(), on).await?;
    }
    let port = running.port;
    // Connections the server opens after its start (its listeners) are made before the
    // counted window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Analytics writes what it captured within a second (flush_interval_ms): the window
    // includes that writing, off and on alike.
    let settle = if scenario.starts_with("analytics") {
        Duration::from_secs(3)
    } else {
        Duration::ZERO
    };
    tokio::task::spawn_blocking(move || {
        let done = blocking_client(port, path, headers, requests);
        std::thread::sleep(settle);
        solobase_bench::window_end();
        done
    })
    .await??;
    running.stop().await
}

/// `BENCH_MODE=micro-report`: the criterion micro-benchmarks' medians (read from
/// `BENCH_CRITERION_DIR`, criterion's output directory) as a table.
fn micro_report() -> anyhow::Result<()> {
    let dir = std::env::var("BENCH_CRITERION_DIR").context("set BENCH_CRITERION_DIR")?;
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {dir}"))? {
        let path = entry?.path().join("new");
        let (Ok(benchmark), Ok(estimates)) = (
            std::fs::read_to_string(path.join("benchmark.json")),
            std::fs::read_to_string(path.join("estimates.json")),
        ) else {
            continue;
        };
        let benchmark: serde_json::Value = serde_json::from_str(&benchmark)?;
        let estimates: serde_json::Value = serde_json::from_str(&estimates)?;
        let name = benchmark["title"].as_str().unwrap_or_default().to_owned();
        let median = &estimates["median"];
        rows.push((
            name,
            median["point_estimate"].as_f64().unwrap_or(f64::NAN),
            median["confidence_interval"]["lower_bound"]
                .as_f64()
                .unwrap_or(f64::NAN),
            median["confidence_interval"]["upper_bound"]
                .as_f64()
                .unwrap_or(f64::NAN),
        ));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    println!(
        "## Micro-benchmarks (criterion, `cargo bench -p solobase-bench --bench micro`)\n\n\
         | operation | median | 95% interval |\n|---|---:|---:|"
    );
    for (name, median, low, high) in rows {
        println!("| {name} | {median:.1} ns | {low:.1}–{high:.1} ns |");
    }
    println!();
    Ok(())
}

mod analytics;
mod webhooks;

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("solobase-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(dir: &Path) -> anyhow::Result<()> {
    let mode = std::env::var("BENCH_MODE").unwrap_or_default();
    if mode == "micro-report" {
        return micro_report();
    }
    if mode == "instructions" || mode == "idle" {
        let url = std::env::var("DATABASE_URL").context("this mode needs DATABASE_URL")?;
        return if mode == "idle" {
            idle_mode(&url, dir).await
        } else {
            instructions_mode(&url, dir).await
        };
    }
    let secs: u64 = env_number("BENCH_SECS", 2);
    let rounds: usize = env_number("BENCH_ROUNDS", 12);
    // BENCH_ONLY=route,memory runs some sections (host, route, startup, memory, reload,
    // webhooks, analytics).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    let (url, _pg) = database_url(dir).await?;
    if wanted("host") {
        host_route(&url, dir, rounds, secs).await?;
    }
    if wanted("route") {
        extension_route(&url, dir, rounds.div_ceil(2), secs).await?;
    }
    if wanted("startup") {
        startup(&url, dir).await?;
    }
    if wanted("memory") {
        memory(&url).await?;
    }
    if wanted("reload") {
        hot_reload(&url, dir, 10).await?;
    }
    if wanted("webhooks") {
        webhooks::run(&url, dir).await?;
    }
    if wanted("analytics") {
        analytics::run(&url, dir, rounds.div_ceil(2), secs).await?;
    }
    Ok(())
}
