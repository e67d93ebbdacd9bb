//! What the benchmarks share: the synthetic extension, the wrk driver, the database and the
//! server configuration. `src/main.rs` is the report (`bench/run.sh`); `benches/micro.rs` the
//! criterion micro-benchmarks.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use solobase::audit::Actor;
use solobase::config::Config;
use solobase::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use solobase::runtime::control::Grant;
use solobase::runtime::host::ExtensionHost;
use solobase_sdk::Registration;
use solobase_sdk::prelude::*;

/// A synthetic extension: the minimum real work a middleware and two hooks would do.
#[derive(Debug)]
pub struct Synthetic {
    seen: AtomicU64,
}

impl Synthetic {
    fn block(&self, req: &mut RequestHead) -> Hook<'_, Flow> {
        static BLOCK: solobase_sdk::http::HeaderName =
            solobase_sdk::http::HeaderName::from_static("x-synthetic-block");
        if req.headers.contains_key(&BLOCK) {
            return Flow::reject(StatusCode::FORBIDDEN, "blocked", "blocked").into();
        }
        Flow::Continue.into()
    }

    fn count_in(&self, _req: &mut RequestHead) -> Hook<'_, Flow> {
        self.seen.fetch_add(1, Ordering::Relaxed);
        Flow::Continue.into()
    }

    fn count_errors(&self, _req: &RequestHead, res: &ResponseHead) -> Hook<'_, ()> {
        if res.status.is_server_error() {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
        ().into()
    }
}

impl Extension for Synthetic {
    type Config = ();

    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Self {
            seen: AtomicU64::new(0),
        })
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        // The same work as the bare actix-web handler it is compared with.
        routes
            .get("/ping", |_, _| async {
                Ok(Response::text("text/plain", "pong"))
            })
            .public();
    }

    fn hooks(&self, hooks: &mut Hooks<Self>) {
        hooks
            .middleware(MiddlewareSpec::new("count", 0), Some(Self::block), None)
            .pre_request(0, Self::count_in)
            .post_request(0, Self::count_errors);
    }
}

pub fn synthetic(n: usize, prefix: &str) -> Vec<Registration> {
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

/// An extension with one public route and nothing else: what serving an extension route
/// costs, without any hook.
#[derive(Debug)]
pub struct RouteOnly;

impl Extension for RouteOnly {
    type Config = ();

    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Self)
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/ping", |_, _| async {
                Ok(Response::text("text/plain", "pong"))
            })
            .public();
    }
}

/// The registration of [`RouteOnly`] as `name`.
pub fn route_only(name: &str) -> Registration {
    let manifest = format!(
        "[extension]\nname = \"{name}\"\nversion = \"0.1.0\"\n\
         description = \"one route\"\nmin_host_version = \"0.1.0\"\n"
    );
    Registration::new::<RouteOnly>(Box::leak(manifest.into_boxed_str()), "0.1.0")
}

/// The CPU wrk runs on.
const WRK_CPU: &str = "1";

#[derive(Debug)]
pub struct Wrk {
    pub rps: f64,
    /// Server CPU time (user + system) per request, in microseconds.
    pub cpu_us: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// CPU time used by this process so far (user, system), in seconds.
pub fn process_cpu() -> (f64, f64) {
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

pub fn wrk(url: &str, secs: u64) -> anyhow::Result<Wrk> {
    wrk_with(url, secs, &[])
}

/// wrk with extra request headers (`Name: value`).
pub fn wrk_with(url: &str, secs: u64, headers: &[String]) -> anyhow::Result<Wrk> {
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
pub fn parse_duration_ms(v: &str) -> Option<f64> {
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

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn database_url(
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

pub fn config(url: &str, data: &std::path::Path) -> Config {
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
    // Rate limits stay checked, with limits no load generator reaches.
    c.extensions.client_rate_per_second = 100_000_000;
    c.extensions.client_rate_burst = 100_000_000;
    c
}

/// Sends `n` keep-alive `GET path` requests (with `headers`, `Name: value` lines) from one
/// thread and checks each answers 200 (404 for a path starting `/missing`).
/// Never inlined: `bench/instructions.sh` counts from its entry to [`window_end`].
#[inline(never)]
pub fn blocking_client(port: u16, path: &str, headers: &[&str], n: usize) -> anyhow::Result<()> {
    let expected = if path.starts_with("/missing") {
        " 404 "
    } else {
        " 200 "
    };
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    for _ in 0..n {
        writer.write_all(request.as_bytes())?;
        let mut status = String::new();
        reader.read_line(&mut status)?;
        if !status.contains(expected) {
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

/// Called when the counted requests are done: `bench/instructions.sh` dumps callgrind's
/// counters on entering it (shutdown varies from run to run and is not counted).
#[inline(never)]
pub fn window_end() {
    std::hint::black_box(());
}

/// Enables or disables the extension `name`.
pub async fn set_enabled(host: &ExtensionHost, name: &str, on: bool) -> anyhow::Result<()> {
    if on {
        host.enable(name, Grant::All, &Actor::System).await?;
    } else {
        host.disable(name, &Actor::System).await?;
    }
    Ok(())
}

/// This process's resident memory, in KiB (`VmRSS`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Logs in over HTTP; returns the bearer token.
pub async fn login(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let res: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await?
        .json()
        .await?;
    res["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("login as {email} failed: {res}"))
}
