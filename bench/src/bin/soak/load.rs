//! The mixed load: one paced task per class of request, each sending at its own steady rate
//! (never saturating: a request that finds its class's concurrency limit taken is skipped and
//! counted), and the operator's actions — configuration reloads through the file and the API,
//! disabling and enabling an extension, re-enabling the faulty one when the host disables it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::stats::{Class, Outcome, Stats};

/// Requests of one class in flight at once, at most.
const IN_FLIGHT: usize = 64;

/// Units per second of each class (a unit is one request, a storage round trip, or a sign-up
/// and its login), and the operator's periods (from `SOAK_*`).
#[derive(Debug, Clone)]
pub struct Rates {
    pub host: f64,
    pub auth: f64,
    pub storage: f64,
    pub extension: f64,
    /// The analytics dashboard's queries, whose cost grows with the events stored.
    pub stats: f64,
    pub tracking: f64,
    pub faulty: f64,
    pub reload_secs: u64,
    pub api_config_secs: u64,
    pub toggle_secs: u64,
    pub toggle_off_secs: u64,
}

impl Rates {
    pub fn from_env() -> Self {
        let n = |name: &str, default: f64| crate::env_or(name, default);
        Self {
            host: n("SOAK_RATE_HOST", 150.0),
            auth: n("SOAK_RATE_AUTH", 1.0),
            storage: n("SOAK_RATE_STORAGE", 10.0),
            extension: n("SOAK_RATE_EXTENSION", 40.0),
            // Ten open dashboards, each asking for its four panels every 30 s or so, about
            // 1.3 queries/s; summary, time series and breakdown in turn.
            stats: n("SOAK_RATE_STATS", 1.5),
            tracking: n("SOAK_RATE_TRACKING", 100.0),
            faulty: n("SOAK_RATE_FAULTY", 10.0),
            reload_secs: crate::env_or("SOAK_RELOAD_SECS", 15),
            api_config_secs: crate::env_or("SOAK_API_CONFIG_SECS", 10),
            toggle_secs: crate::env_or("SOAK_TOGGLE_SECS", 90),
            toggle_off_secs: crate::env_or("SOAK_TOGGLE_OFF_SECS", 15),
        }
    }

    /// Requests per second in all (a storage round trip is three requests, auth two).
    pub fn total(&self) -> f64 {
        self.host
            + 2.0 * self.auth
            + 3.0 * self.storage
            + self.extension
            + self.stats
            + self.tracking
            + self.faulty
    }
}

/// What every load task shares.
#[derive(Debug)]
pub struct Ctx {
    pub http: reqwest::Client,
    pub base: String,
    pub stats: Stats,
    pub admin: String,
    pub user: String,
    pub stop: AtomicBool,
    /// Requests not sent because their class had `IN_FLIGHT` in flight already.
    pub skipped: AtomicU64,
    /// Operator actions done: host file rewrites (valid, invalid), API changes (valid,
    /// invalid), disable/enable cycles, re-enables of the auto-disabled probe.
    pub reloads_valid: AtomicU64,
    pub reloads_invalid: AtomicU64,
    pub api_valid: AtomicU64,
    pub api_invalid: AtomicU64,
    pub toggles: AtomicU64,
    pub probe_reenabled: AtomicU64,
    /// The host configuration file the server watches.
    pub config_file: PathBuf,
}

/// The documented answer of a disabled extension's routes.
fn disabled(status: u16, body: &str) -> bool {
    status == 404 && (body.contains("is disabled") || body.contains("is not running"))
}

fn expect(codes: &'static [u16]) -> impl Fn(u16, &str) -> Outcome {
    move |status, _| {
        if codes.contains(&status) {
            Outcome::Ok
        } else {
            Outcome::Failure
        }
    }
}

/// For the extension that is disabled and enabled again: its 404 while off is expected.
fn expect_or_disabled(codes: &'static [u16]) -> impl Fn(u16, &str) -> Outcome {
    move |status, body| {
        if codes.contains(&status) {
            Outcome::Ok
        } else if disabled(status, body) {
            Outcome::Expected("404 while disabled")
        } else {
            Outcome::Failure
        }
    }
}

/// The faulty extension's answers: 200, or the failures the host is meant to contain.
fn faulty(status: u16, body: &str) -> Outcome {
    match status {
        200 => Outcome::Ok,
        500 if body.contains("\"internal\"") => Outcome::Expected("500 (error or panic)"),
        503 if body.contains("extension_unavailable") => Outcome::Expected("503 breaker open"),
        503 => Outcome::Expected("503 other (time limit, in-flight)"),
        _ if disabled(status, body) => Outcome::Expected("404 auto-disabled"),
        _ => Outcome::Failure,
    }
}

impl Ctx {
    /// Sends one request, judges and counts the answer; returns it (status 0: no answer).
    pub async fn call(
        &self,
        class: Class,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        judge: impl Fn(u16, &str) -> Outcome,
    ) -> (u16, String) {
        let started = Instant::now();
        let req = build(
            self.http
                .request(method.clone(), format!("{}{path}", self.base)),
        );
        let (status, body) = match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                match res.text().await {
                    Ok(body) => (status, body),
                    Err(e) => (0, format!("the body broke off: {e}")),
                }
            }
            Err(e) => (0, format!("no answer: {e}")),
        };
        let outcome = if status == 0 {
            Outcome::Failure
        } else {
            judge(status, &body)
        };
        self.stats.record(class, status, started, outcome, || {
            let start: String = body.chars().take(200).collect();
            format!("{method} {path} → {status} {start}")
        });
        (status, body)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Calls `unit(n)` `rate` times a second until the run stops; each call is its own task.
async fn paced<F, Fut>(ctx: Arc<Ctx>, rate: f64, unit: F)
where
    F: Fn(Arc<Ctx>, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if rate <= 0.0 {
        return;
    }
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !ctx.stopped() {
        tick.tick().await;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            ctx.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let work = unit(ctx.clone(), n);
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
        n += 1;
    }
    // Wait for the requests still in flight.
    let _ = limit.acquire_many(IN_FLIGHT as u32).await;
}

async fn host(ctx: Arc<Ctx>, n: u64) {
    match n % 8 {
        0..=4 => {
            ctx.call(Class::Host, Method::GET, "/healthz", |b| b, expect(&[200]))
                .await;
        }
        5 | 6 => {
            let user = ctx.user.clone();
            ctx.call(
                Class::Host,
                Method::GET,
                "/api/v1/auth/me",
                |b| b.bearer_auth(user),
                expect(&[200]),
            )
            .await;
        }
        _ => {
            let admin = ctx.admin.clone();
            ctx.call(
                Class::Host,
                Method::GET,
                "/api/v1/extensions",
                |b| b.bearer_auth(admin),
                expect(&[200]),
            )
            .await;
        }
    }
}

/// Sign-up of a new account, then a login to it: events `user.created` and `user.login`.
async fn auth(ctx: Arc<Ctx>, n: u64) {
    let body = json!({"email": format!("soak-{n}@example.com"), "password": "soak password 123"});
    let (status, _) = ctx
        .call(
            Class::Auth,
            Method::POST,
            "/api/v1/auth/signup",
            |b| b.json(&body),
            expect(&[201]),
        )
        .await;
    if status == 201 {
        ctx.call(
            Class::Auth,
            Method::POST,
            "/api/v1/auth/login",
            |b| b.json(&body),
            expect(&[200]),
        )
        .await;
    }
}

/// Upload, download (checking the bytes), delete: events `storage.uploaded`, `storage.deleted`.
async fn storage(ctx: Arc<Ctx>, n: u64) {
    let path = format!("/api/v1/storage/soak/f{n}.txt");
    let data = format!("soak file {n} {}", "x".repeat((n % 64) as usize * 32));
    let user = ctx.user.clone();
    let (status, _) = ctx
        .call(
            Class::Storage,
            Method::PUT,
            &path,
            |b| {
                b.bearer_auth(&user)
                    .header("content-type", "text/plain")
                    .body(data.clone())
            },
            expect(&[200, 201]),
        )
        .await;
    if !(200..300).contains(&status) {
        return;
    }
    ctx.call(
        Class::Storage,
        Method::GET,
        &path,
        |b| b.bearer_auth(&user),
        |status, body| {
            if status == 200 && body == data {
                Outcome::Ok
            } else {
                Outcome::Failure
            }
        },
    )
    .await;
    ctx.call(
        Class::Storage,
        Method::DELETE,
        &path,
        |b| b.bearer_auth(&user),
        expect(&[200, 204]),
    )
    .await;
}

/// The webhooks extension's API (disabled now and then) and analytics' cheap queries.
async fn extension(ctx: Arc<Ctx>, n: u64) {
    let admin = ctx.admin.clone();
    let (path, webhooks) = match n % 8 {
        0 | 4 => ("/ext/webhooks/api/endpoints", true),
        1 | 5 => ("/ext/webhooks/api/summary", true),
        2 | 6 => ("/ext/analytics/api/ingest", false),
        _ => ("/ext/analytics/api/stats/realtime", false),
    };
    let auth = |b: reqwest::RequestBuilder| b.bearer_auth(admin);
    if webhooks {
        ctx.call(
            Class::Extension,
            Method::GET,
            path,
            auth,
            expect_or_disabled(&[200]),
        )
        .await;
    } else {
        ctx.call(Class::Extension, Method::GET, path, auth, expect(&[200]))
            .await;
    }
}

/// The analytics dashboard's queries over the last day, at `SOAK_RATE_STATS`.
async fn stats(ctx: Arc<Ctx>, n: u64) {
    let admin = ctx.admin.clone();
    let path = match n % 3 {
        0 => "/ext/analytics/api/stats/summary",
        1 => "/ext/analytics/api/stats/timeseries",
        _ => "/ext/analytics/api/stats/breakdown?by=page",
    };
    let auth = |b: reqwest::RequestBuilder| b.bearer_auth(admin);
    ctx.call(Class::Extension, Method::GET, path, auth, expect(&[200]))
        .await;
}

/// A custom analytics event, as the tracker script sends it.
async fn tracking(ctx: Arc<Ctx>, n: u64) {
    let body = json!({
        "name": "soak",
        "url": format!("http://soak.example/page/{}", n % 50),
        "referrer": "http://referrer.example/",
        "props": {"n": n, "kind": if n.is_multiple_of(2) { "even" } else { "odd" }},
    });
    ctx.call(
        Class::Tracking,
        Method::POST,
        "/ext/analytics/api/track",
        |b| {
            b.header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .json(&body)
        },
        expect(&[202]),
    )
    .await;
}

/// The probe, made to fail: handler errors and panics, slow answers, a pre_request hook that
/// overruns its time limit — next to ordinary requests.
async fn faulty_probe(ctx: Arc<Ctx>, n: u64) {
    let (path, slow_hook) = match n % 10 {
        0..=2 => ("/ext/probe/public".to_owned(), false),
        3 => (format!("/ext/probe/items/{n}"), false),
        4 | 5 => ("/ext/probe/boom".to_owned(), false),
        6 => ("/ext/probe/panic".to_owned(), false),
        7 => ("/ext/probe/sleep/1500".to_owned(), false),
        _ => ("/ext/probe/public".to_owned(), true),
    };
    ctx.call(
        Class::Faulty,
        Method::GET,
        &path,
        |b| {
            if slow_hook {
                b.header("x-probe-slow", "1")
            } else {
                b
            }
        },
        faulty,
    )
    .await;
}

/// The host configuration file: constant settings plus one that changes at every rewrite
/// (`cpu_budget_ms`, applied at once); `invalid` adds an unknown key, which must be refused.
/// The faulty extension's breaker closes again after 5 s (default 30), so that it fails often.
pub fn host_config(round: u64, invalid: bool) -> String {
    let budget = 2000 + (round % 2) * 500;
    let mut text = format!(
        "[server]\nworkers = 2\n\n[auth]\nsignup_enabled = true\n\n[extensions]\n\
         client_rate_per_second = 1000000\nclient_rate_burst = 1000000\n\
         cpu_budget_ms = {budget}\nbreaker_cooldown_secs = 5\n\n\
         [extensions.limits.webhooks]\noutbound_allow = [\"127.0.0.1\"]\n"
    );
    if invalid {
        text.push_str("cpu_budget_milliseconds = 1\n");
    }
    text
}

/// Rewrites the host file every `reload_secs`; every fourth rewrite is invalid and is
/// followed 3 s later by a valid one.
async fn file_reloads(ctx: Arc<Ctx>, every: u64) {
    let mut round = 0u64;
    while sleep_unless_stopped(&ctx, Duration::from_secs(every)).await {
        round += 1;
        let invalid = round.is_multiple_of(4);
        if std::fs::write(&ctx.config_file, host_config(round, invalid)).is_err() {
            continue;
        }
        if invalid {
            ctx.reloads_invalid.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let _ = std::fs::write(&ctx.config_file, host_config(round, false));
        }
        ctx.reloads_valid.fetch_add(1, Ordering::Relaxed);
    }
}

/// Replaces the analytics extension's configuration through the API (GET, then PUT with
/// If-Match): valid changes of `flush_interval_ms`, and every third time an invalid one
/// (`retention_days = 0`), which must be answered 400 and change nothing.
async fn api_config(ctx: Arc<Ctx>, every: u64) {
    let path = "/api/v1/extensions/analytics/config";
    let mut round = 0u64;
    while sleep_unless_stopped(&ctx, Duration::from_secs(every)).await {
        round += 1;
        let admin = ctx.admin.clone();
        let got = ctx
            .http
            .get(format!("{}{path}", ctx.base))
            .bearer_auth(&admin)
            .send()
            .await;
        let Ok(got) = got else { continue };
        let etag = got
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("*")
            .to_owned();
        let Ok(got) = got.json::<Value>().await else {
            continue;
        };
        let mut config = got["config"].clone();
        let invalid = round.is_multiple_of(3);
        if invalid {
            config["retention_days"] = json!(0);
        } else {
            config["flush_interval_ms"] = json!(if round.is_multiple_of(2) { 1000 } else { 900 });
        }
        let judge = move |status: u16, _: &str| match (invalid, status) {
            (false, 200) => Outcome::Ok,
            (true, 400) => Outcome::Expected("400 invalid config refused"),
            _ => Outcome::Failure,
        };
        ctx.call(
            Class::Admin,
            Method::PUT,
            path,
            |b| b.bearer_auth(admin).header("if-match", etag).json(&config),
            judge,
        )
        .await;
        let counter = if invalid {
            &ctx.api_invalid
        } else {
            &ctx.api_valid
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Disables the webhooks extension every `every` seconds for `off` seconds.
async fn toggle(ctx: Arc<Ctx>, every: u64, off: u64) {
    while sleep_unless_stopped(&ctx, Duration::from_secs(every.saturating_sub(off))).await {
        set_enabled(&ctx, "webhooks", false).await;
        tokio::time::sleep(Duration::from_secs(off)).await;
        set_enabled(&ctx, "webhooks", true).await;
        ctx.toggles.fetch_add(1, Ordering::Relaxed);
    }
}

async fn set_enabled(ctx: &Ctx, name: &str, on: bool) {
    let admin = ctx.admin.clone();
    let path = format!(
        "/api/v1/extensions/{name}/{}",
        if on { "enable" } else { "disable" }
    );
    ctx.call(
        Class::Admin,
        Method::POST,
        &path,
        |b| {
            let b = b.bearer_auth(admin);
            if on {
                b.json(&json!({"grant_all": true}))
            } else {
                b
            }
        },
        expect(&[200, 204]),
    )
    .await;
}

/// The host disables the probe after repeated breaker trips (its containment working); the
/// operator enables it again so that the faults go on.
async fn probe_watch(ctx: Arc<Ctx>) {
    while sleep_unless_stopped(&ctx, Duration::from_secs(5)).await {
        let admin = ctx.admin.clone();
        let (status, body) = ctx
            .call(
                Class::Admin,
                Method::GET,
                "/api/v1/extensions/probe",
                |b| b.bearer_auth(admin),
                expect(&[200]),
            )
            .await;
        let enabled = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["enabled"].as_bool());
        if status == 200 && enabled == Some(false) {
            set_enabled(&ctx, "probe", true).await;
            ctx.probe_reenabled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sleeps `d` in short steps; false once the run is stopping.
async fn sleep_unless_stopped(ctx: &Ctx, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if ctx.stopped() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200).min(until - Instant::now())).await;
    }
    !ctx.stopped()
}

/// Starts every load task; they end once `ctx.stop` is set (the faulty probe's slow requests
/// finish first).
pub fn start(ctx: &Arc<Ctx>, rates: &Rates) -> Vec<tokio::task::JoinHandle<()>> {
    let c = || ctx.clone();
    vec![
        tokio::spawn(paced(c(), rates.host, host)),
        tokio::spawn(paced(c(), rates.auth, auth)),
        tokio::spawn(paced(c(), rates.storage, storage)),
        tokio::spawn(paced(c(), rates.extension, extension)),
        tokio::spawn(paced(c(), rates.stats, stats)),
        tokio::spawn(paced(c(), rates.tracking, tracking)),
        tokio::spawn(paced(c(), rates.faulty, faulty_probe)),
        tokio::spawn(file_reloads(c(), rates.reload_secs)),
        tokio::spawn(api_config(c(), rates.api_config_secs)),
        tokio::spawn(toggle(c(), rates.toggle_secs, rates.toggle_off_secs)),
        tokio::spawn(probe_watch(c())),
    ]
}
