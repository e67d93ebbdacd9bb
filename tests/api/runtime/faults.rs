//! Faults and quotas, driven by fault-injection extensions defined here (used only by tests):
//! a panic in a handler, a hook (at once or while waiting), middleware or a lifecycle method
//! costs that request a 500 — never the server, another request, or another extension; slow
//! hooks, hostile SQL and quota abuse are contained the same way.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use solobase_sdk::prelude::*;
use solobase_sdk::{Database, Registration};

use crate::helpers::TestApp;

/// The fault-injection extension: panics (handler, hooks, middleware), slow hooks, hostile
/// SQL through its own pool, and storage-quota abuse, each on request.
struct Faulty {
    db: Database,
    storage: solobase_sdk::Storage,
}

fn wants(req: &RequestHead, fault: &str) -> bool {
    req.header("x-fault") == Some(fault)
}

impl Extension for Faulty {
    type Config = ();

    async fn initialize(ctx: InitContext<()>) -> Result<Self> {
        Ok(Faulty {
            db: ctx.db,
            storage: ctx.storage,
        })
    }

    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/boom", |_, _| async { panic!("the handler exploded") })
            .public();
        // Runs the body as SQL through the extension's own pool: the SQLSTATE, or "ok".
        routes
            .post("/sql", |ext: Arc<Faulty>, req: Request| async move {
                let sql = String::from_utf8_lossy(&req.body).into_owned();
                let client = ext.db.client().await?;
                let outcome = match client.batch_execute(&sql).await {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => e
                        .code()
                        .map_or("no sqlstate".into(), |c| c.code().to_owned()),
                };
                Ok(Response::json(&outcome))
            })
            .public();
        // Writes the body to its storage area, over and over under a new name.
        routes
            .put("/hog", |ext: Arc<Faulty>, req: Request| async move {
                let name = format!("hog-{}", uuid::Uuid::new_v4());
                ext.storage.write(&name, req.body.clone()).await?;
                Ok(Response::new(StatusCode::NO_CONTENT))
            })
            .public();
        routes
            .get("/fine", |_, _| async { Ok(Response::json(&"fine")) })
            .public();
    }

    fn hooks(&self, hooks: &mut Hooks<Self>) {
        hooks
            .middleware(MiddlewareSpec::new("faulty", 0), Some(Self::inbound), None)
            .pre_request(0, Self::first)
            .post_request(0, Self::after)
            .user_signup(0, Self::signup);
    }
}

impl Faulty {
    fn inbound<'a>(&'a self, req: &'a mut RequestHead) -> Hook<'a, Flow> {
        if wants(req, "middleware") {
            return Hook::wait(async {
                tokio::task::yield_now().await;
                panic!("the middleware exploded while waiting")
            });
        }
        Flow::Continue.into()
    }

    fn first(&self, req: &mut RequestHead) -> Hook<'_, Flow> {
        assert!(!wants(req, "pre_request"), "pre_request exploded");
        if wants(req, "slow") {
            return Hook::wait(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Flow::Continue
            });
        }
        Flow::Continue.into()
    }

    fn after(&self, req: &RequestHead, _res: &ResponseHead) -> Hook<'_, ()> {
        assert!(!wants(req, "post_request"), "post_request exploded");
        ().into()
    }

    fn signup<'a>(&'a self, info: &'a SignupInfo) -> Hook<'a, Flow> {
        assert!(!info.email.starts_with("panic"), "user_signup exploded");
        Flow::Continue.into()
    }
}

struct PanicsOnStart;

impl Extension for PanicsOnStart {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(PanicsOnStart)
    }
    async fn start(&self) -> Result<()> {
        panic!("start exploded")
    }
}

struct PanicsOnInit;

impl Extension for PanicsOnInit {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        panic!("initialize exploded")
    }
}

/// How many audit entries of `action` about `extension` exist, waiting up to 5 s for the
/// first (entries are written in the background).
async fn audit_entries(db: &tokio_postgres::Client, action: &str, extension: &str) -> i64 {
    let mut count = 0;
    for _ in 0..50 {
        count = db
            .query_one(
                "SELECT count(*) FROM solobase.audit_log WHERE action = $1 AND extension = $2",
                &[&action, &extension],
            )
            .await
            .unwrap()
            .get(0);
        if count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count
}

fn manifest(name: &str) -> &'static str {
    Box::leak(
        format!(
            "[extension]\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"d\"\n\
             min_host_version = \"0.1.0\"\n"
        )
        .into_boxed_str(),
    )
}

async fn get(app: &TestApp, path: &str, fault: Option<&str>) -> reqwest::Response {
    let mut req = app.http.get(app.url(path));
    if let Some(fault) = fault {
        req = req.header("x-fault", fault);
    }
    req.send().await.unwrap()
}

async fn assert_500(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{what}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal", "{what}: {body}");
}

#[tokio::test]
async fn panics_cost_one_request_a_500_and_nothing_else() {
    let app = TestApp::builder()
        .extensions(vec![
            Registration::new::<Faulty>(manifest("faulty"), "0.1.0"),
            Registration::new::<PanicsOnStart>(manifest("faulty-start"), "0.1.0"),
            Registration::new::<PanicsOnInit>(manifest("faulty-init"), "0.1.0"),
        ])
        .config(|c| {
            c.auth.signup_enabled = true;
            // Isolation alone, without the circuit breaker (tested below).
            c.extensions.breaker_failures = 0;
        })
        .spawn()
        .await;

    assert_500(get(&app, "/ext/faulty/boom", None).await, "handler").await;
    for fault in ["pre_request", "middleware", "post_request"] {
        assert_500(get(&app, "/healthz", Some(fault)).await, fault).await;
    }
    let res = app.signup("panic@example.com", "password123").await;
    assert_500(res, "user_signup").await;
    let created: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.users WHERE email = 'panic@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 0, "a refused sign-up creates nothing");

    // Everything else still answers.
    assert_eq!(get(&app, "/healthz", None).await.status(), StatusCode::OK);
    assert_eq!(
        get(&app, "/ext/faulty/fine", None).await.status(),
        StatusCode::OK
    );

    // Lifecycle panics keep only that extension off, with the reason.
    let db = app.db().await;
    for (name, reason) in [
        ("faulty-start", "start panicked: start exploded"),
        ("faulty-init", "initialize panicked: initialize exploded"),
    ] {
        let recorded: Option<String> = db
            .query_one(
                "SELECT last_error FROM solobase.extensions WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(recorded.as_deref(), Some(reason), "{name}");
    }

    // Counted and audited (the audit is sampled: at least one entry, none per panic).
    let audited = audit_entries(&db, "extension.panic", "faulty").await;
    assert!(audited >= 1, "panics are audited");
    app.stop().await.unwrap();
}

struct Slow;

impl Extension for Slow {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Slow)
    }
    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/slow", |_, _| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                Ok(Response::json(&"done"))
            })
            .public();
    }
}

#[tokio::test]
async fn an_extension_serves_at_most_its_in_flight_quota_at_once() {
    let app = TestApp::builder()
        .extensions(vec![Registration::new::<Slow>(manifest("slow"), "0.1.0")])
        .config(|c| {
            c.extensions.limits.insert(
                "slow".into(),
                solobase::config::ExtensionLimits {
                    max_in_flight: Some(2),
                    ..Default::default()
                },
            );
        })
        .spawn()
        .await;
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let req = app.http.get(app.url("/ext/slow/slow")).send();
            tokio::spawn(req)
        })
        .collect();
    let mut statuses = Vec::new();
    for r in requests {
        let res = r.await.unwrap().unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(res.headers()["retry-after"], "1");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "extension_busy");
            statuses.push(503);
        } else {
            statuses.push(res.status().as_u16());
        }
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503, 503]);
    // The slots are free again, and the host was never affected.
    assert_eq!(app.get("/ext/slow/slow").await.status(), StatusCode::OK);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn each_client_is_rate_limited_per_extension_with_429_and_headers() {
    let app = TestApp::builder()
        .extensions(vec![
            Registration::new::<Healthy>(manifest("limited"), "0.1.0"),
            Registration::new::<Healthy>(manifest("other"), "0.1.0"),
        ])
        .config(|c| {
            c.extensions.limits.insert(
                "limited".into(),
                solobase::config::ExtensionLimits {
                    client_rate_per_second: Some(1),
                    client_rate_burst: Some(3),
                    ..Default::default()
                },
            );
        })
        .spawn()
        .await;
    for _ in 0..3 {
        assert_eq!(app.get("/ext/limited/ok").await.status(), StatusCode::OK);
    }
    let res = app.get("/ext/limited/ok").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(res.headers()["ratelimit-limit"], "3");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // Another client (a signed-in user) and another extension have their own buckets.
    let token = app.user_token("someone@example.com", false).await;
    let res = app
        .http
        .get(app.url("/ext/limited/ok"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.get("/ext/other/ok").await.status(), StatusCode::OK);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);

    // The bucket refills: one token per second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/ext/limited/ok").await.status(), StatusCode::OK);

    // Refusals are audited, sampled.
    let db = app.db().await;
    let audited = audit_entries(&db, "extension.rate_limited", "limited").await;
    assert_eq!(audited, 1);
    app.stop().await.unwrap();
}

struct Spinner;

impl Extension for Spinner {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Spinner)
    }
    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/spin", |_, _| async {
                // Burns CPU in slices, forever.
                loop {
                    let until = std::time::Instant::now() + Duration::from_millis(5);
                    while std::time::Instant::now() < until {}
                    tokio::task::yield_now().await;
                }
            })
            .public();
        routes
            .get("/sleepy", |_, _| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok(Response::json(&"rested"))
            })
            .public();
    }
}

#[tokio::test]
async fn a_handler_over_its_time_budget_is_cancelled_but_waiting_costs_nothing() {
    let app = TestApp::builder()
        .extensions(vec![Registration::new::<Spinner>(
            manifest("spinner"),
            "0.1.0",
        )])
        .config(|c| c.extensions.cpu_budget_ms = 100)
        .spawn()
        .await;
    let started = std::time::Instant::now();
    let res = get(&app, "/ext/spinner/spin", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "over_budget");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cancelled promptly"
    );
    assert_eq!(
        get(&app, "/ext/spinner/sleepy", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(get(&app, "/healthz", None).await.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

struct Nosy;

impl Extension for Nosy {
    type Config = ();
    async fn initialize(ctx: InitContext<()>) -> Result<Self> {
        // Keeps its services to call them later.
        NOSY_CTX.set(ctx).ok();
        Ok(Nosy)
    }
    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/peek", |_, _| async {
                let ctx = NOSY_CTX.get().expect("initialized");
                ctx.users.by_email("root@example.com").await?;
                Ok(Response::json(&"looked"))
            })
            .public();
        routes
            .get("/shout", |_, _| async {
                let ctx = NOSY_CTX.get().expect("initialized");
                ctx.events.publish("shouted", serde_json::json!({})).await?;
                Ok(Response::json(&"shouted"))
            })
            .public();
    }
}

static NOSY_CTX: std::sync::OnceLock<InitContext<()>> = std::sync::OnceLock::new();

#[tokio::test]
async fn a_service_call_outside_the_granted_permissions_is_refused_counted_and_audited() {
    // Its manifest requests no permission at all.
    let app = TestApp::builder()
        .extensions(vec![Registration::new::<Nosy>(manifest("nosy"), "0.1.0")])
        .spawn()
        .await;
    for (path, permission) in [
        ("/ext/nosy/peek", "users.read"),
        ("/ext/nosy/shout", "events.publish"),
    ] {
        let res = get(&app, path, None).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "permission_denied", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(permission),
            "{body}"
        );
    }
    let db = app.db().await;
    let published: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.outbox WHERE event_type LIKE 'nosy.%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(published, 0, "nothing was published");
    let audited = audit_entries(&db, "extension.permission_denied", "nosy").await;
    assert!(audited >= 1, "refusals are audited");
    app.stop().await.unwrap();
}

struct Healthy;

impl Extension for Healthy {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Healthy)
    }
    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/ok", |_, _| async { Ok(Response::json(&"ok")) })
            .public();
    }
}

/// Hostile statements the faulty extension sends through its own pool.
const HOSTILE_SQL: [&str; 6] = [
    "UPDATE solobase.users SET role = 'admin'",
    "SELECT * FROM solobase.sessions",
    "DELETE FROM solobase.audit_log",
    "SET ROLE solobase",
    "ALTER ROLE ext_faulty SUPERUSER",
    "CREATE TABLE solobase.evil (x int)",
];

#[tokio::test]
async fn hostile_sql_through_an_extensions_own_pool_is_refused() {
    let app = TestApp::builder()
        .extensions(vec![Registration::new::<Faulty>(
            manifest("faulty"),
            "0.1.0",
        )])
        .spawn()
        .await;
    let user = app.user_token("someone@example.com", false).await;
    for sql in HOSTILE_SQL {
        let res = app
            .http
            .post(app.url("/ext/faulty/sql"))
            .body(sql)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap(), "42501", "{sql}");
    }
    // Its own schema is its to use.
    let res = app
        .http
        .post(app.url("/ext/faulty/sql"))
        .body("CREATE TABLE mine (x int); INSERT INTO mine VALUES (1)")
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), "ok");
    let me: Value = app.me(&user).await.json().await.unwrap();
    assert_eq!(me["role"], "user", "nobody was made an admin");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn under_load_a_misbehaving_extension_costs_healthy_requests_nothing() {
    let app = TestApp::builder()
        .extensions(vec![
            Registration::new::<Faulty>(manifest("faulty"), "0.1.0"),
            Registration::new::<Healthy>(manifest("healthy"), "0.1.0"),
        ])
        .config(|c| {
            c.server.workers = 2;
            c.extensions.limits.insert(
                "faulty".into(),
                solobase::config::ExtensionLimits {
                    storage_quota_bytes: Some(16 * 1024),
                    ..Default::default()
                },
            );
        })
        .spawn()
        .await;
    const REQUESTS: usize = 800;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let http = app.http.clone();
        let base = app.address.clone();
        tasks.push(tokio::spawn(async move {
            // Half the load misbehaves: a panicking handler, middleware panicking while it
            // waits, hostile SQL, storage-quota abuse. The other half goes to the host (one in
            // four through a slow hook) and to a healthy extension.
            let kind = i % 8;
            let req = match kind {
                0 => http.get(format!("{base}/ext/faulty/boom")),
                1 => http
                    .get(format!("{base}/healthz"))
                    .header("x-fault", "middleware"),
                2 => http
                    .post(format!("{base}/ext/faulty/sql"))
                    .body(HOSTILE_SQL[i % HOSTILE_SQL.len()]),
                3 => http
                    .put(format!("{base}/ext/faulty/hog"))
                    .body(vec![0u8; 4096]),
                4 => http
                    .get(format!("{base}/healthz"))
                    .header("x-fault", "slow"),
                5 => http.get(format!("{base}/healthz")),
                _ => http.get(format!("{base}/ext/healthy/ok")),
            };
            let sent = std::time::Instant::now();
            let status = req.send().await.map(|r| r.status().as_u16());
            (kind, status, sent.elapsed())
        }));
    }
    let mut provoked = std::collections::BTreeMap::<u16, usize>::new();
    let mut healthy = Vec::new();
    for task in tasks {
        let (kind, status, took) = task.await.unwrap();
        let status = status.expect("every request is answered");
        if kind < 4 {
            // 500 for a panic, 200 for refused SQL or a middleware skipped once the breaker
            // is open, 503 while it is open, 507 over the storage quota (204 before it).
            assert!(
                [200, 204, 500, 503, 507].contains(&status),
                "a misbehaving request (kind {kind}) got {status}"
            );
            *provoked.entry(status).or_default() += 1;
        } else {
            assert_eq!(status, 200, "a healthy request (kind {kind}) failed");
            healthy.push(took);
        }
    }
    let elapsed = started.elapsed();
    healthy.sort();
    let at = |q: f64| healthy[((healthy.len() - 1) as f64 * q) as usize];
    println!(
        "fault load: {REQUESTS} requests in {:.2} s; healthy {} of {} succeeded \
         (p50 {:.1} ms, p99 {:.1} ms); misbehaving answered {provoked:?}",
        elapsed.as_secs_f64(),
        healthy.len(),
        REQUESTS / 2,
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
    );
    assert_eq!(healthy.len(), REQUESTS / 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_circuit_breaker_opens_recovers_and_disables_an_extension_that_keeps_failing() {
    let app = TestApp::builder()
        .extensions(vec![Registration::new::<Faulty>(
            manifest("faulty"),
            "0.1.0",
        )])
        .config(|c| {
            c.extensions.breaker_failures = 3;
            c.extensions.breaker_window_secs = 60;
            c.extensions.breaker_cooldown_secs = 1;
            c.extensions.breaker_trips_to_disable = 2;
        })
        .spawn()
        .await;
    let mut events = app.events.subscribe();
    for _ in 0..3 {
        assert_500(get(&app, "/ext/faulty/boom", None).await, "handler").await;
    }
    // Open: the extension's routes answer 503 with Retry-After, and its hooks are skipped.
    let res = get(&app, "/ext/faulty/fine", None).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "extension_unavailable");
    let res = get(&app, "/healthz", Some("pre_request")).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "its panicking hook is skipped"
    );

    // After the cool-down one call may try; a success closes the breaker.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&app, "/ext/faulty/fine", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/ext/faulty/fine", None).await.status(),
        StatusCode::OK
    );

    // Opening a second time within the trips window: disabled automatically.
    for _ in 0..3 {
        assert_500(get(&app, "/ext/faulty/boom", None).await, "handler").await;
    }
    let res = get(&app, "/ext/faulty/fine", None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "disabled");

    let db = app.db().await;
    let mut recorded = (true, None::<String>, 0i64);
    for _ in 0..50 {
        let row = db
            .query_one(
                "SELECT enabled, last_error, \
                        (SELECT count(*) FROM solobase.audit_log \
                         WHERE action = 'extension.auto_disabled' AND extension = 'faulty') \
                 FROM solobase.extensions WHERE name = 'faulty'",
                &[],
            )
            .await
            .unwrap();
        recorded = (row.get(0), row.get(1), row.get(2));
        if !recorded.0 && recorded.2 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!recorded.0, "the disable is persisted");
    assert!(
        recorded
            .1
            .unwrap_or_default()
            .contains("disabled automatically"),
        "with the reason"
    );
    assert_eq!(recorded.2, 1, "and audited");
    let announced = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.event_type.as_str() == "extension.disabled" {
                return event;
            }
        }
    })
    .await
    .expect("an extension.disabled event");
    assert_eq!(announced.data["extension"], "faulty");

    // Enabled again by an administrator: a fresh start, without the old reason.
    let admin = app.user_token("admin@example.com", true).await;
    let res = app
        .http
        .post(app.url("/api/v1/extensions/faulty/enable"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        get(&app, "/ext/faulty/fine", None).await.status(),
        StatusCode::OK
    );
    let faulty = app.extension(&admin, "faulty").await;
    assert!(faulty["error"].is_null(), "{faulty}");
    assert_eq!(faulty["stats"]["breaker"], "closed", "{faulty}");
    app.stop().await.unwrap();
}
