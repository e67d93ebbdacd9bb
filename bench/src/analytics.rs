//! `BENCH_MODE=analytics`: what the analytics extension costs and how fast it ingests.
//!
//! 1. **Sustained ingest.** The extension's own pipeline (bounded queue, flusher, binary
//!    `COPY`) fed as fast as one producer can capture page views, for `BENCH_INGEST_SECS`,
//!    into PostgreSQL; events written per second, counted from the database.
//! 2. **Hook cost in process.** `capture_page_view` + `offer` (what the `post_request` hook
//!    does) called a million times: nanoseconds per call.
//! 3. **Hook cost per request.** wrk on `GET /healthz` (a browser user agent, so every
//!    request is a counted page view) with the extension enabled and disabled, in ABBA
//!    rounds: throughput ratio and server CPU µs added per request (hook, queue and writing).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use solobase::audit::Actor;
use solobase::runtime::control::Grant;
use solobase::startup::Application;
use solobase_ext_analytics::ingest::Pipeline;
use solobase_ext_analytics::{AnalyticsConfig, capture_page_view};
use solobase_sdk::http::{HeaderValue, Method, RequestHead, StatusCode};
use solobase_sdk::{ConfigHandle, Database};

use solobase_bench::{config, median, wrk_with};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// The browser's `User-Agent` header line: requests with it are counted page views.
pub const BROWSER: &str =
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// Request heads as the hook sees them: 1,000 visitors over 50 pages.
fn heads() -> Vec<RequestHead> {
    (0..1000u32)
        .map(|i| {
            let mut req =
                RequestHead::new(Method::GET, &format!("/page/{}?utm_source=bench", i % 50));
            req.headers
                .insert("host", HeaderValue::from_static("bench.example"));
            req.headers
                .insert("user-agent", HeaderValue::from_static(FIREFOX));
            req.headers.insert(
                "referer",
                HeaderValue::from_static("https://news.example/item?id=1"),
            );
            req.peer_addr = Some(std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
            req
        })
        .collect()
}

async fn pool(url: &str) -> anyhow::Result<Database> {
    let mut pg: tokio_postgres::Config = url.parse().context("DATABASE_URL")?;
    pg.options("-c search_path=ext_analytics");
    let manager = deadpool_postgres::Manager::new(pg, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()?;
    Ok(Database::new(pool, "ext_analytics".into()))
}

async fn count(db: &Database) -> anyhow::Result<i64> {
    Ok(db
        .client()
        .await?
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0))
}

/// Sustained ingest: (events/s, events written, queue-full rejections retried).
async fn ingest(url: &str, secs: u64) -> anyhow::Result<(f64, i64, u64)> {
    let db = pool(url).await?;
    let config = ConfigHandle::new(AnalyticsConfig {
        queue_capacity: 262_144,
        ..AnalyticsConfig::default()
    });
    let before = count(&db).await?;
    let pipeline = Arc::new(Pipeline::new(config.get().queue_capacity, &discard())?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flusher = {
        let (p, db, c) = (pipeline.clone(), db.clone(), config.clone());
        tokio::spawn(async move { p.run(&db, &c, stop_rx).await })
    };
    let started = Instant::now();
    let producer = {
        let (p, c) = (pipeline.clone(), config.get());
        tokio::task::spawn_blocking(move || {
            let heads = heads();
            let until = Instant::now() + Duration::from_secs(secs);
            let mut i = 0usize;
            while Instant::now() < until {
                for _ in 0..1000 {
                    let hit = capture_page_view(&heads[i % heads.len()], StatusCode::OK, &c)
                        .expect("a counted page view");
                    i += 1;
                    if !p.offer(hit) {
                        // Full: the flusher is behind; wait for it rather than outrun it.
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
        })
    };
    producer.await?;
    let _ = stop_tx.send(true);
    flusher.await?;
    let took = started.elapsed().as_secs_f64();
    let written = count(&db).await? - before;
    let rejected = pipeline.counters.dropped.get();
    Ok((written as f64 / took, written, rejected))
}

/// The hook's work in process: nanoseconds per call.
fn hook_ns(n: usize) -> f64 {
    let config = AnalyticsConfig::default();
    let heads = heads();
    let pipeline = Pipeline::new(n, &discard()).expect("a queue");
    let started = Instant::now();
    for i in 0..n {
        if let Some(hit) = capture_page_view(&heads[i % heads.len()], StatusCode::OK, &config) {
            pipeline.offer(hit);
        }
    }
    started.elapsed().as_nanos() as f64 / n as f64
}

pub async fn run(url: &str, dir: &std::path::Path, rounds: usize, secs: u64) -> anyhow::Result<()> {
    let ingest_secs: u64 = std::env::var("BENCH_INGEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    // The server creates the extension's role, schema and tables.
    let app = Application::build_with_extensions(
        config(url, dir),
        vec![solobase_ext_analytics::solobase_extension()],
    )
    .await?;
    let port = app.port();
    let host = app.extensions().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));

    let (rate, written, rejected) = ingest(url, ingest_secs).await?;
    let per_call = median((0..5).map(|_| hook_ns(1_000_000)).collect());

    let target = format!("http://127.0.0.1:{port}/healthz");
    let headers = [format!("User-Agent: {FIREFOX}")];
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let set = |enabled: bool| {
        let host = host.clone();
        async move {
            if enabled {
                host.enable("analytics", Grant::All, &Actor::System).await?;
            } else {
                host.disable("analytics", &Actor::System).await?;
            }
            anyhow::Ok(())
        }
    };
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for enabled in order {
            set(enabled).await?;
            let (t, h) = (target.clone(), headers.clone());
            let result = tokio::task::spawn_blocking(move || wrk_with(&t, secs, &h)).await??;
            eprintln!(
                "  round: analytics {} → {:.0} requests/s, {:.2} µs CPU/request",
                if enabled { "enabled" } else { "disabled" },
                result.rps,
                result.cpu_us
            );
            if enabled { &mut on } else { &mut off }.push(result);
        }
    }
    let _ = tx.send(());
    server.await??;

    let ratio = median(on.iter().zip(&off).map(|(a, b)| a.rps / b.rps).collect());
    let added = median(
        on.iter()
            .zip(&off)
            .map(|(a, b)| a.cpu_us - b.cpu_us)
            .collect(),
    );
    println!("## Analytics\n");
    println!(
        "Sustained ingest into PostgreSQL (queue → flusher → binary COPY, batches of {}): \
         **{rate:.0} events/s** ({written} events in {ingest_secs} s plus the final flush; \
         {rejected} queue-full offers retried by the producer; goal ≥ 50,000/s: {}).\n",
        AnalyticsConfig::default().batch_size,
        if rate >= 50_000.0 { "met" } else { "missed" }
    );
    println!(
        "The hook's work in process (capture_page_view + offer, median of 5 × 1,000,000 \
         calls): **{:.3} µs** per request (goal ≤ 2 µs: {}).\n",
        per_call / 1000.0,
        if per_call <= 2000.0 { "met" } else { "missed" }
    );
    println!(
        "### Per request (GET /healthz as a counted page view, 1 server worker, wrk -t1 -c32, {rounds} rounds × {secs}s, ABBA)\n"
    );
    println!("| analytics | requests/s (median) | server CPU µs/request | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (label, runs) in [("disabled", &off), ("enabled", &on)] {
        println!(
            "| {label} | {:.0} | {:.2} | {:.3} | {:.3} |",
            median(runs.iter().map(|r| r.rps).collect()),
            median(runs.iter().map(|r| r.cpu_us).collect()),
            median(runs.iter().map(|r| r.p50_ms).collect()),
            median(runs.iter().map(|r| r.p99_ms).collect())
        );
    }
    let goal = |met: bool| if met { "met" } else { "**missed**" };
    println!(
        "\n| goal (same run) | value | goal |\n|---|---:|---|\n\
         | requests/s, enabled / disabled | **{ratio:.3}** | ≥ 0.90: {} |\n\
         | server CPU added per request: hook, queue, hashing and the flusher's writing (which \
         shares the server's CPU) | **{added:.2} µs** | ≤ 3 µs: {} |\n",
        goal(ratio >= 0.90),
        goal(added <= 3.0),
    );
    Ok(())
}

/// Metrics that go nowhere: the benchmark reads the counters themselves.
fn discard() -> solobase_sdk::metrics::Metrics {
    solobase_sdk::metrics::Metrics::new("analytics", Arc::new(solobase_sdk::metrics::Discard))
}
