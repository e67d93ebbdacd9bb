//! `BENCH_MODE=webhooks`: the webhooks extension's delivery rate, its event-to-first-attempt
//! latency, and a SIGKILL-under-load run (`bench/run.sh webhooks`).
//!
//! 1. **Throughput.** A server (in this process) with the webhooks extension and 4 endpoints
//!    on a local receiver (also in this process); a burst of events recorded the way the host
//!    records them (outbox row in a transaction, then the bus), and the time until the
//!    receiver has every delivery: deliveries per second.
//! 2. **Latency.** Events at a steady rate; for each delivery, the time from the event's
//!    commit to the receiver's first request: p50 and p99.
//! 3. **SIGKILL under load.** The real binary (`SOLOBASE_BIN`, default
//!    `target/release/solobase`) with 4 endpoints, events being committed continuously; the
//!    server is killed with SIGKILL, events keep coming while it is down, it restarts, and
//!    the receiver's distinct (endpoint, webhook-id) pairs are compared with the outbox.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use solobase::events::{Event, EventType};
use solobase::startup::Application;

const ENDPOINTS: usize = 4;
const ADMIN: &str = "bench-admin@example.com";
const PASSWORD: &str = "bench password 123";

/// What the receiver saw: endpoint (from the path), webhook-id, when.
type Seen = Arc<Mutex<Vec<(usize, String, Instant)>>>;

fn start_receiver() -> anyhow::Result<(u16, Seen, actix_web::dev::ServerHandle)> {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let seen: Seen = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
    let s = seen.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        let s = s.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let s = s.clone();
            async move {
                let at = Instant::now();
                let endpoint = req
                    .path()
                    .trim_start_matches("/e")
                    .parse()
                    .unwrap_or(usize::MAX);
                let id = req
                    .headers()
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((endpoint, id, at));
                HttpResponse::NoContent().finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((port, seen, handle))
}

fn seen_len(seen: &Seen) -> usize {
    seen.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// The host file of the killed server: its receivers are on loopback.
const LOOPBACK_ALLOWED: &str = "[extensions.limits.webhooks]\noutbound_allow = [\"127.0.0.1\"]\n";

fn webhooks_toml(poll_ms: u64) -> String {
    format!(
        "poll_interval_ms = {poll_ms}\ntimeout_secs = 5\n\
         max_concurrency = 128\nendpoint_concurrency = 32\n"
    )
}

/// Deletes every endpoint, then creates one per receiver path `/e<i>` for `pattern`.
async fn endpoints(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    port: u16,
    pattern: &str,
) -> anyhow::Result<()> {
    let api = format!("{base}/ext/webhooks/api/endpoints");
    let list: Vec<Value> = http
        .get(&api)
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    for e in list {
        http.delete(format!("{api}/{}", e["id"].as_str().unwrap_or_default()))
            .bearer_auth(token)
            .send()
            .await?;
    }
    for i in 0..ENDPOINTS {
        let res = http
            .post(&api)
            .bearer_auth(token)
            .json(
                &json!({"url": format!("http://127.0.0.1:{port}/e{i}"), "event_types": [pattern]}),
            )
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("cannot create an endpoint: {}", res.text().await?);
        }
    }
    Ok(())
}

/// Records `n` events of `event_type` with one statement in one transaction (the bench's way
/// to commit a burst faster than the server delivers it); returns them.
async fn record_many(
    pool: &deadpool_postgres::Pool,
    event_type: &str,
    n: usize,
) -> anyhow::Result<Vec<Event>> {
    let kind = EventType::parse(event_type).context("event type")?;
    let events: Vec<Event> = (0..n)
        .map(|_| {
            Event::new(
                kind.clone(),
                json!({"bench": true, "padding": "x".repeat(200)}),
            )
        })
        .collect();
    let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
    let data: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    let at: Vec<time::OffsetDateTime> = events.iter().map(|e| e.occurred_at).collect();
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO solobase.outbox (event_id, event_type, data, occurred_at) \
             SELECT id, $2, d, t FROM unnest($1::uuid[], $3::jsonb[], $4::timestamptz[]) AS u(id, d, t)",
            &[&ids, &event_type, &data, &at],
        )
        .await?;
    Ok(events)
}

/// Records `n` events of `event_type` in one transaction, as the host does; returns them.
async fn record(
    pool: &deadpool_postgres::Pool,
    event_type: &str,
    n: usize,
) -> anyhow::Result<Vec<Event>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let event = Event::new(
            EventType::parse(event_type).context("event type")?,
            json!({"bench": true, "padding": "x".repeat(200)}),
        );
        solobase::events::record(&tx, &event).await?;
        events.push(event);
    }
    tx.commit().await?;
    Ok(events)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn wait_for(seen: &Seen, count: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while seen_len(seen) < count {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

pub(crate) async fn run(url: &str, dir: &Path) -> anyhow::Result<()> {
    let burst: usize = env_or("BENCH_WEBHOOK_EVENTS", 5000);
    let rate: usize = env_or("BENCH_WEBHOOK_RATE", 150);
    let secs: u64 = env_or("BENCH_WEBHOOK_SECS", 10);
    let (port, seen, receiver) = start_receiver()?;
    let http = reqwest::Client::new();

    // --- in-process server -------------------------------------------------------------
    let mut cfg = solobase_bench::config(url, dir);
    // The bench's own configuration directory, never the repository's.
    cfg.extensions.config_dir = dir.join("extension-config");
    std::fs::create_dir_all(&cfg.extensions.config_dir)?;
    std::fs::write(
        cfg.extensions.config_dir.join("webhooks.toml"),
        webhooks_toml(500),
    )?;
    cfg.server.workers = 1;
    // The receivers listen on loopback, which outbound HTTP reaches only when listed.
    cfg.extensions
        .limits
        .entry("webhooks".into())
        .or_default()
        .outbound_allow = Some(vec!["127.0.0.1".into()]);
    let app =
        Application::build_with_extensions(cfg, vec![solobase_ext_webhooks::solobase_extension()])
            .await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let pool = app.state().pool.clone();
    let bus = app.state().events.clone();
    let _ = solobase::auth::users::create(
        &pool,
        &solobase::auth::Email::parse(ADMIN).map_err(anyhow::Error::msg)?,
        &solobase::auth::Password::parse(PASSWORD.into(), 1).map_err(anyhow::Error::msg)?,
        solobase::auth::Role::Admin,
    )
    .await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let token = solobase_bench::login(&http, &base, ADMIN, PASSWORD).await?;
    endpoints(&http, &base, &token, port, "bench.*").await?;

    // 1. Throughput: a burst, committed 1000 per statement.
    let start = Instant::now();
    let mut recorded = 0;
    while recorded < burst {
        let n = (burst - recorded).min(1000);
        for e in record_many(&pool, "bench.burst", n).await? {
            bus.publish(e);
        }
        recorded += n;
    }
    let produced_in = start.elapsed();
    let expected = burst * ENDPOINTS;
    if !wait_for(&seen, expected, Duration::from_secs(600)).await {
        bail!("only {} of {expected} deliveries arrived", seen_len(&seen));
    }
    let drained = start.elapsed();
    let throughput = expected as f64 / drained.as_secs_f64();

    // 2. Latency at a steady rate: every 20 ms, rate/50 events in one transaction.
    seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let per_tick = (rate / 50).max(1);
    let mut committed_at: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        tick.tick().await;
        let events = record(&pool, "bench.steady", per_tick).await?;
        let at = Instant::now();
        for e in events {
            committed_at.insert(solobase_ext_webhooks::message_id(e.id), at);
            bus.publish(e);
        }
    }
    let expected = committed_at.len() * ENDPOINTS;
    if !wait_for(&seen, expected, Duration::from_secs(120)).await {
        bail!(
            "only {} of {expected} steady deliveries arrived",
            seen_len(&seen)
        );
    }
    let mut first: HashMap<(usize, String), Instant> = HashMap::new();
    for (ep, id, at) in seen.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        first.entry((*ep, id.clone())).or_insert(*at);
    }
    let mut latencies: Vec<f64> = first
        .iter()
        .filter_map(|((_, id), at)| {
            committed_at
                .get(id)
                .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    // Where the time goes: outbox commit → delivery row (the feed), → first attempt (queue).
    let breakdown = pool
        .get()
        .await?
        .query_one(
            "WITH d AS (SELECT extract(epoch FROM d.created_at - o.occurred_at) * 1000 AS feed, \
                 extract(epoch FROM a.started_at - d.created_at) * 1000 AS queue \
               FROM ext_webhooks.deliveries d \
               JOIN solobase.outbox o ON o.event_id = d.event_id \
               JOIN ext_webhooks.attempts a ON a.delivery_id = d.id AND a.attempt = 1 \
               WHERE d.event_type = 'bench.steady') \
             SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY feed), \
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY feed), \
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY queue), \
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY queue) FROM d",
            &[],
        )
        .await?;
    let part = |i: usize| breakdown.get::<_, Option<f64>>(i).unwrap_or(f64::NAN);
    let _ = stop_tx.send(());
    server.await??;

    println!("## Webhooks (4 endpoints, local receiver)\n");
    println!("| measure | value |\n|---|---|");
    println!(
        "| burst: {burst} events → {} deliveries | {:.0} deliveries/s ({:.2} s; events committed in {:.2} s) |",
        burst * ENDPOINTS,
        throughput,
        drained.as_secs_f64(),
        produced_in.as_secs_f64()
    );
    println!(
        "| steady {rate} events/s ({} deliveries/s) for {secs} s: event → first attempt | p50 {:.1} ms, p99 {:.1} ms (n = {}) |",
        rate * ENDPOINTS,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.len()
    );
    println!(
        "| of which event → delivery row (feed) / row → first attempt (queue) | p50 {:.1} / {:.1} ms, p99 {:.1} / {:.1} ms |",
        part(0),
        part(2),
        part(1),
        part(3)
    );

    // 3. SIGKILL under load, on the real binary.
    seen.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let db = solobase::db::Postgres::connect(
        &solobase_bench::config(url, dir),
        solobase::db::Mode::Share,
    )
    .await?;
    let report = kill_run(url, dir, db.pool(), port, &seen, &http).await?;
    println!("| SIGKILL under load | {report} |\n");
    receiver.stop(false).await;
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The binary as a child process, its port read from its log.
struct Child2 {
    child: Child,
    port: u16,
}

fn spawn_server(url: &str, cwd: &Path) -> anyhow::Result<Child2> {
    let bin = std::env::var("SOLOBASE_BIN").unwrap_or_else(|_| "target/release/solobase".into());
    // Absolute: a relative program path may be resolved from the child's directory.
    let bin = std::fs::canonicalize(&bin)
        .with_context(|| format!("{bin} is missing (build it: cargo build --release)"))?;
    let bin = bin.display().to_string();
    let mut child = Command::new(&bin)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(cwd.join("data"))
        .current_dir(cwd)
        .env("DATABASE_URL", url)
        .env("SOLOBASE_LOG_FORMAT", "json")
        .env("SOLOBASE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {bin} (build it: cargo build --release)"))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if v["message"] == "listening" {
                    let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                    sent = true;
                }
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not start listening")?;
    Ok(Child2 { child, port })
}

async fn kill_run(
    url: &str,
    dir: &Path,
    pool: &deadpool_postgres::Pool,
    port: u16,
    seen: &Seen,
    http: &reqwest::Client,
) -> anyhow::Result<String> {
    let cwd = dir.join("kill");
    std::fs::create_dir_all(cwd.join("config/extensions"))?;
    std::fs::write(
        cwd.join("config/extensions/webhooks.toml"),
        webhooks_toml(100),
    )?;
    std::fs::write(cwd.join("config/solobase.toml"), LOOPBACK_ALLOWED)?;
    let mut server = spawn_server(url, &cwd)?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let token = solobase_bench::login(http, &base, ADMIN, PASSWORD).await?;
    endpoints(http, &base, &token, port, "bench.kill").await?;

    // Events are committed throughout: 200/s in transactions of 4.
    let producing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producer = {
        let (pool, producing) = (pool.clone(), producing.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0usize;
            while producing.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                n += record(&pool, "bench.kill", 4).await.map_or(0, |e| e.len());
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_kill = seen_len(seen);
    server.child.kill()?; // SIGKILL
    server.child.wait()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut server = spawn_server(url, &cwd)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    producing.store(false, std::sync::atomic::Ordering::Relaxed);
    let produced = producer.await?;

    let client = pool.get().await?;
    let ids: HashSet<String> = client
        .query(
            "SELECT event_id FROM solobase.outbox WHERE event_type = 'bench.kill'",
            &[],
        )
        .await?
        .iter()
        .map(|r| solobase_ext_webhooks::message_id(r.get(0)))
        .collect();
    let expected: HashSet<(usize, String)> = ids
        .iter()
        .flat_map(|id| (0..ENDPOINTS).map(move |e| (e, id.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (delivered, requests) = loop {
        let got = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let delivered: HashSet<(usize, String)> =
            got.iter().map(|(e, id, _)| (*e, id.clone())).collect();
        if expected.is_subset(&delivered) || Instant::now() > deadline {
            break (delivered, got.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost = expected.difference(&delivered).count();
    let _ = server.child.kill();
    let _ = server.child.wait();
    Ok(format!(
        "{produced} events ({} in the outbox) × {ENDPOINTS} endpoints = {} deliveries expected; \
         {before_kill} requests before the kill; after the restart {} distinct delivered, \
         {} repeated requests by then (sends in flight at the kill repeat when their lease \
         ends), **{lost} lost**",
        ids.len(),
        expected.len(),
        expected.intersection(&delivered).count(),
        requests - delivered.len(),
    ))
}
