//! `soak`: Solobase under steady mixed load for a long time (`bench/soak.sh [MINUTES]`), looking
//! for what only time shows — failures, leaks, lost events, latency that drifts.
//!
//! The real release binary runs as a child process (with the shipped extensions and the
//! test-only `probe`, on an embedded PostgreSQL this driver starts), so that its resident
//! memory is read from `/proc/<pid>/status`. For `SOAK_MINUTES` the driver sends, at steady
//! rates, host routes, sign-ups and logins, storage round trips, the extensions' APIs and
//! analytics tracking (`load.rs`); it rewrites the host configuration file and replaces an
//! extension's configuration through the API (valid and invalid), disables and enables the
//! webhooks extension, and makes the probe fail (errors, panics, slow answers, hook
//! time-outs). A local receiver verifies every webhook's signature (`receiver.rs`). After a
//! drain period it compares events produced with deliveries received and tracking events sent
//! with events stored, and prints the report (`report.rs`); the exit code says whether every
//! goal was met.

mod load;
mod receiver;
mod report;
mod stats;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::load::{Ctx, Rates};
use crate::report::{Finals, Interval, Report};
use crate::stats::{Class, quantile};

const ADMIN: &str = "soak-admin@example.com";
const PASSWORD: &str = "soak admin password 123";
const USER: &str = "soak-user@example.com";
/// Webhook endpoints on the local receiver, each subscribed to `user.*` and `storage.*`.
const ENDPOINTS: usize = 2;

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The run's settings, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub minutes: f64,
    pub interval_secs: u64,
    pub drain_secs: u64,
    /// RSS samples are taken this often.
    pub rss_every_secs: u64,
    /// The largest acceptable RSS growth after warm-up, in MiB per hour.
    pub rss_slope_max: f64,
    pub rates: Rates,
    pub out_dir: PathBuf,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            minutes: env_or("SOAK_MINUTES", 30.0),
            interval_secs: env_or("SOAK_INTERVAL_SECS", 60),
            drain_secs: env_or("SOAK_DRAIN_SECS", 120),
            rss_every_secs: env_or("SOAK_RSS_EVERY_SECS", 10),
            rss_slope_max: env_or("SOAK_RSS_SLOPE_MAX", 20.0),
            rates: Rates::from_env(),
            out_dir: std::env::var_os("SOAK_OUT")
                .map_or_else(|| PathBuf::from("target/soak"), PathBuf::from),
        }
    }
}

/// The server as a child process.
struct Server {
    child: Child,
    port: u16,
    /// Log lines at WARN and ERROR, and the first few of them.
    warnings: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    error_samples: Arc<std::sync::Mutex<Vec<String>>>,
}

fn spawn_server(url: &str, cwd: &Path) -> anyhow::Result<Server> {
    let bin = std::env::var("SOLOBASE_BIN").unwrap_or_else(|_| "target/release/solobase".into());
    let bin = std::fs::canonicalize(&bin).with_context(|| {
        format!("{bin} is missing: build it with bench/soak.sh (release, --features probe)")
    })?;
    let mut child = Command::new(&bin)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(cwd.join("data"))
        .current_dir(cwd)
        .env("DATABASE_URL", url)
        .env("SOLOBASE_LOG_FORMAT", "json")
        .env("SOLOBASE_LOG", "info")
        .env("SOLOBASE_ADMIN_EMAIL", ADMIN)
        .env("SOLOBASE_ADMIN_PASSWORD", PASSWORD)
        // Built with the test-only probe (its faulty routes), and approving the community
        // analytics extension it loads.
        .env("SOLOBASE_ALLOW_TEST_EXTENSIONS", "1")
        .env("SOLOBASE_APPROVED_EXTENSIONS", "analytics,probe")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let warnings = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let error_samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut log = std::fs::File::create(cwd.join("server.log"))?;
    {
        let (warnings, errors, samples) = (warnings.clone(), errors.clone(), error_samples.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                if v["message"] == "listening" {
                    let _ = tx.send(v["port"].as_u64().unwrap_or(0) as u16);
                }
                match v["level"].as_str() {
                    Some("WARN") => {
                        warnings.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("ERROR") => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut s = samples.lock().unwrap_or_else(|p| p.into_inner());
                        if s.len() < 8 {
                            s.push(line.chars().take(300).collect());
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    let port = rx
        .recv_timeout(Duration::from_secs(120))
        .context("the server did not start listening within 120 s (see its server.log)")?;
    Ok(Server {
        child,
        port,
        warnings,
        errors,
        error_samples,
    })
}

/// The server's resident memory in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Creates the endpoints on the receiver; returns their secrets.
async fn endpoints(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    port: u16,
) -> anyhow::Result<Vec<solobase_sdk::webhooks::Secret>> {
    let mut secrets = Vec::new();
    for i in 0..ENDPOINTS {
        let res = http
            .post(format!("{base}/ext/webhooks/api/endpoints"))
            .bearer_auth(admin)
            .json(&json!({
                "url": format!("http://127.0.0.1:{port}/e{i}"),
                "event_types": ["user.*", "storage.*"],
                "description": "soak receiver",
            }))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("cannot create a webhook endpoint: {status} {body}");
        }
        let secret = body["secret"]
            .as_str()
            .context("the endpoint's answer holds no secret")?;
        secrets.push(
            secret
                .parse()
                .map_err(|e| anyhow::anyhow!("secret: {e:?}"))?,
        );
    }
    Ok(secrets)
}

fn write_files(cwd: &Path) -> anyhow::Result<PathBuf> {
    let ext = cwd.join("config/extensions");
    std::fs::create_dir_all(&ext)?;
    std::fs::write(
        ext.join("webhooks.toml"),
        "poll_interval_ms = 200\ntimeout_secs = 5\n",
    )?;
    let file = cwd.join("config/solobase.toml");
    std::fs::write(&file, load::host_config(0, false))?;
    Ok(file)
}

async fn one_number(pool: &deadpool_postgres::Pool, sql: &str) -> anyhow::Result<i64> {
    Ok(pool.get().await?.query_one(sql, &[]).await?.get(0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let dir = std::env::temp_dir().join(format!("solobase-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&settings, &dir).await;
    // The server's log (JSON lines) is kept next to the report.
    let _ = std::fs::copy(
        dir.join("server/server.log"),
        settings.out_dir.join("server.log"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(e) => Err(e),
    }
}

/// The whole run; true when every goal was met.
async fn run(settings: &Settings, dir: &Path) -> anyhow::Result<bool> {
    let (url, _pg) = solobase_bench::database_url(dir).await?;
    let db = solobase::db::Postgres::connect(
        &solobase_bench::config(&url, dir),
        solobase::db::Mode::Share,
    )
    .await?;
    let pool = db.pool().clone();
    let cwd = dir.join("server");
    let config_file = write_files(&cwd)?;
    let receiver = Arc::new(receiver::Receiver::default());
    let (receiver_port, receiver_handle) = receiver::start(receiver.clone())?;
    let mut server = spawn_server(&url, &cwd)?;
    let pid = server.child.id();
    let base = format!("http://127.0.0.1:{}", server.port);
    // Idle connections are dropped before the server's keep-alive (5 s) closes them: a request
    // sent on a connection the server is closing at that moment fails on the client's side
    // (HTTP/1.1 lets either side close an idle connection), which is not the server failing.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(4))
        .build()?;

    // Accounts, endpoints, and the moment from which events are counted.
    let admin = solobase_bench::login(&http, &base, ADMIN, PASSWORD).await?;
    let res = http
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&json!({"email": USER, "password": PASSWORD}))
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("cannot sign up the soak user: {}", res.text().await?);
    }
    let user = solobase_bench::login(&http, &base, USER, PASSWORD).await?;
    let secrets = endpoints(&http, &base, &admin, receiver_port).await?;
    let _ = receiver.secrets.set(secrets);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counted_from = time::OffsetDateTime::now_utc();

    let ctx = Arc::new(Ctx {
        http: http.clone(),
        base: base.clone(),
        stats: Default::default(),
        admin,
        user,
        stop: Default::default(),
        skipped: Default::default(),
        reloads_valid: Default::default(),
        reloads_invalid: Default::default(),
        api_valid: Default::default(),
        api_invalid: Default::default(),
        toggles: Default::default(),
        probe_reenabled: Default::default(),
        config_file,
    });
    eprintln!(
        "soak: {} min of load at about {:.0} requests/s on {base} (server pid {pid}); report in {}",
        settings.minutes,
        settings.rates.total(),
        settings.out_dir.display()
    );
    let started = Instant::now();
    let tasks = load::start(&ctx, &settings.rates);

    // Sampling: RSS every few seconds, one table row per interval.
    let total = Duration::from_secs_f64(settings.minutes * 60.0);
    let mut intervals = Vec::new();
    let mut rss = Vec::new();
    let mut next_row = Duration::from_secs(settings.interval_secs);
    let mut csv = report::Csv::create(&settings.out_dir)?;
    while started.elapsed() < total {
        let step = Duration::from_secs(settings.rss_every_secs)
            .min(total.saturating_sub(started.elapsed()));
        tokio::time::sleep(step).await;
        let at = started.elapsed();
        rss.push((at.as_secs_f64(), rss_kib(pid) as f64 / 1024.0));
        if at >= next_row || at >= total {
            next_row += Duration::from_secs(settings.interval_secs);
            let row = interval_row(&ctx, &pool, &receiver, pid, at).await;
            csv.write(&row)?;
            eprintln!("soak: {}", row.summary());
            intervals.push(row);
        }
    }
    ctx.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let load_secs = started.elapsed().as_secs_f64();
    // Whatever was toggled off is on again: the load tasks end after a full cycle.
    eprintln!(
        "soak: load stopped; draining for up to {} s",
        settings.drain_secs
    );

    let finals = drain(
        settings,
        &ctx,
        &pool,
        &receiver,
        counted_from,
        pid,
        &mut server,
    )
    .await?;
    receiver_handle.stop(false).await;
    let report = Report {
        settings: settings.clone(),
        load_secs,
        totals: ctx.stats.totals(),
        intervals,
        rss,
        finals,
        skipped: ctx.skipped.load(Ordering::Relaxed),
        operator: [
            (
                "host file rewrites (valid)",
                ctx.reloads_valid.load(Ordering::Relaxed),
            ),
            (
                "host file rewrites (invalid)",
                ctx.reloads_invalid.load(Ordering::Relaxed),
            ),
            (
                "API config changes (valid)",
                ctx.api_valid.load(Ordering::Relaxed),
            ),
            (
                "API config changes (invalid)",
                ctx.api_invalid.load(Ordering::Relaxed),
            ),
            (
                "webhooks disable/enable cycles",
                ctx.toggles.load(Ordering::Relaxed),
            ),
            (
                "probe re-enabled after auto-disable",
                ctx.probe_reenabled.load(Ordering::Relaxed),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    };
    let (text, ok) = report.render();
    std::fs::create_dir_all(&settings.out_dir)?;
    std::fs::write(settings.out_dir.join("report.md"), &text)?;
    println!("{text}");
    Ok(ok)
}

async fn interval_row(
    ctx: &Ctx,
    pool: &deadpool_postgres::Pool,
    receiver: &receiver::Receiver,
    pid: u32,
    at: Duration,
) -> Interval {
    let mut w = ctx.stats.take_window();
    let backends = one_number(
        pool,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .await
    .unwrap_or(-1);
    Interval {
        minute: at.as_secs_f64() / 60.0,
        requests: (w.healthy.len() + w.faulty.len()) as u64,
        failures: w.failures,
        p50: quantile(&mut w.healthy, 0.5),
        p99: quantile(&mut w.healthy, 0.99),
        max: quantile(&mut w.healthy, 1.0),
        faulty_p99: quantile(&mut w.faulty, 0.99),
        rss_mib: rss_kib(pid) as f64 / 1024.0,
        backends,
        deliveries: receiver.lock().delivered.len() as u64,
        tracked: ctx.stats.ok(Class::Tracking),
    }
}

/// Waits until every event produced is delivered and every tracking event is stored (or the
/// drain period ends), then stops the server with SIGTERM.
async fn drain(
    settings: &Settings,
    ctx: &Ctx,
    pool: &deadpool_postgres::Pool,
    receiver: &receiver::Receiver,
    counted_from: time::OffsetDateTime,
    pid: u32,
    server: &mut Server,
) -> anyhow::Result<Finals> {
    let tracked = ctx.stats.ok(Class::Tracking) as i64;
    let deadline = Instant::now() + Duration::from_secs(settings.drain_secs);
    let drain_started = Instant::now();
    let (produced, missing, stored) = loop {
        let client = pool.get().await?;
        let produced: HashSet<String> = client
            .query(
                "SELECT event_id FROM solobase.outbox \
                 WHERE (event_type LIKE 'user.%' OR event_type LIKE 'storage.%') \
                 AND occurred_at >= $1",
                &[&counted_from],
            )
            .await?
            .iter()
            .map(|r| solobase_ext_webhooks::message_id(r.get(0)))
            .collect();
        let stored: i64 = client
            .query_one(
                "SELECT count(*) FROM ext_analytics.events WHERE name = 'soak'",
                &[],
            )
            .await?
            .get(0);
        drop(client);
        let missing = {
            let seen = receiver.lock();
            produced
                .iter()
                .flat_map(|id| (0..ENDPOINTS).map(move |e| (e, id.clone())))
                .filter(|pair| !seen.delivered.contains(pair))
                .count()
        };
        if (missing == 0 && stored >= tracked) || Instant::now() > deadline {
            break (produced.len(), missing, stored);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let drained_in = drain_started.elapsed().as_secs_f64();
    let rss_end_mib = rss_kib(pid) as f64 / 1024.0;
    let audit = pool
        .get()
        .await?
        .query(
            "SELECT action, result, count(*) FROM solobase.audit_log \
             WHERE action IN ('config.reload', 'extension.config', 'extension.panic', \
             'extension.auto_disabled', 'extension.enable', 'extension.disable') \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
            )
        })
        .collect();
    let backends_end = one_number(
        pool,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .await
    .unwrap_or(-1);
    // A graceful stop: SIGTERM, then the exit status.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stop_started = Instant::now();
    let exit = loop {
        if let Some(status) = server.child.try_wait()? {
            break Some(status);
        }
        if stop_started.elapsed() > Duration::from_secs(60) {
            let _ = server.child.kill();
            let _ = server.child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seen = receiver.lock();
    Ok(Finals {
        produced: produced as u64,
        endpoints: ENDPOINTS as u64,
        expected_deliveries: (produced * ENDPOINTS) as u64,
        missing_deliveries: missing as u64,
        delivered_pairs: seen.delivered.len() as u64,
        receiver_requests: seen.requests,
        bad_signatures: seen.bad,
        bad_samples: seen.bad_samples.clone(),
        tracked: tracked as u64,
        stored: stored as u64,
        drained_in,
        rss_end_mib,
        backends_end,
        audit,
        exit: exit.map(|s| s.to_string()),
        exit_ok: exit.is_some_and(|s| s.success()),
        stop_secs: stop_started.elapsed().as_secs_f64(),
        log_warnings: server.warnings.load(Ordering::Relaxed),
        log_errors: server.errors.load(Ordering::Relaxed),
        log_error_samples: server
            .error_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    })
}
