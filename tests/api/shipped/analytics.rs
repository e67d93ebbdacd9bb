//! The analytics extension through a real socket: page views of host routes counted by its
//! hook, events through the tracking endpoint (CORS, bad payloads), the stats API's numbers
//! against a known set of events, the retention purge, a full queue dropping and counting,
//! and the dashboard in headless Chromium.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

/// An app whose analytics configuration is `toml`.
async fn app_with(toml: &'static str) -> TestApp {
    TestApp::builder()
        .config(move |c| {
            // Frequent health checks: the full-queue test reads the verdict.
            c.extensions.health_interval_ms = 200;
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            std::fs::write(c.extensions.config_dir.join("analytics.toml"), toml).unwrap();
        })
        .spawn()
        .await
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let res = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn track(app: &TestApp, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/ext/analytics/api/track"))
        .header("user-agent", FIREFOX)
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn page_views_of_host_routes_are_counted_except_excluded_paths_and_bots() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    for _ in 0..3 {
        let res = app
            .get_with(
                "/healthz?session=secret&utm_source=newsletter",
                // The site is the Host header's, not the address (which only the hash holds).
                &[("user-agent", FIREFOX), ("host", "site.example")],
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Excluded by default, a bot, Do-Not-Track, not a GET.
    app.get_with("/api/v1/health", &[("user-agent", FIREFOX)])
        .await;
    app.get_with("/admin/", &[("user-agent", FIREFOX)]).await;
    app.get_with("/healthz", &[("user-agent", "curl/8.5.0")])
        .await;
    app.get_with("/healthz", &[("user-agent", FIREFOX), ("dnt", "1")])
        .await;
    let (_, ingest) = get_json(&app, &admin, "/ext/analytics/api/ingest").await;
    assert_eq!(ingest["accepted"], 4, "{ingest}");
    let counted = eventually(Duration::from_secs(10), || async {
        let (_, s) = get_json(&app, &admin, "/ext/analytics/api/ingest").await;
        s["written"] == 3 && s["bots"] == 1
    })
    .await;
    assert!(counted, "{ingest}");
    let (status, pages) =
        get_json(&app, &admin, "/ext/analytics/api/stats/breakdown?by=page").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        pages,
        json!([{"value": "/healthz", "visitors": 1, "count": 3}])
    );
    let (_, sources) = get_json(
        &app,
        &admin,
        "/ext/analytics/api/stats/breakdown?by=utm_source",
    )
    .await;
    assert_eq!(sources[0]["value"], "newsletter", "{sources}");
    // Neither the address nor the dropped parameter is stored anywhere.
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT string_agg(e::text, ' ') FROM ext_analytics.events e",
            &[],
        )
        .await
        .unwrap();
    let stored: String = row.get(0);
    assert!(
        !stored.contains("127.0.0.1")
            && !stored.contains("secret")
            && stored.contains("site.example"),
        "{stored}"
    );
    assert!(stored.contains("utm_source=newsletter"), "{stored}");
    let user = app.user_token("user@example.com", false).await;
    let (status, _) = get_json(&app, &user, "/ext/analytics/api/stats/summary").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_tracking_endpoint_checks_origins_payloads_and_queues_events() {
    let app =
        app_with("allowed_origins = [\"https://shop.example\"]\nflush_interval_ms = 50\n").await;
    let admin = app.user_token("admin@example.com", true).await;

    // Preflight: the allowed origin gets CORS headers, another a 403 without them.
    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                app.url("/ext/analytics/api/track"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let res = preflight("https://shop.example").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(
        res.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let res = preflight("https://evil.example").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("access-control-allow-origin").is_none());

    // Malformed payloads: 400 with the error shape; too large: 413; wrong origin: 403.
    for bad in [
        "{",
        r#"{"url":"https://shop.example/"}"#,
        r#"{"name":"x","url":"not a url"}"#,
        r#"{"name":"x","url":"https://shop.example/","props":[1]}"#,
    ] {
        let res = track(&app, bad, &[("origin", "https://shop.example")]).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(crate::helpers::error_code(res).await, "invalid_request");
    }
    let big = format!(
        r#"{{"name":"x","url":"https://shop.example/","props":{{"a":"{}"}}}}"#,
        "x".repeat(5000)
    );
    assert_eq!(
        track(&app, &big, &[]).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let page = r#"{"name":"pageview","url":"https://shop.example/pricing?token=abc&utm_campaign=spring#top","referrer":"https://news.example/item?id=1"}"#;
    let res = track(&app, page, &[("origin", "https://evil.example")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(crate::helpers::error_code(res).await, "origin_not_allowed");

    // Accepted: 202 with CORS headers for the page's origin.
    let res = track(
        &app,
        page,
        &[
            ("origin", "https://shop.example"),
            ("content-type", "text/plain"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let signup = r#"{"name":"signup","url":"https://shop.example/pricing","props":{"plan":"pro"}}"#;
    assert_eq!(
        track(&app, signup, &[]).await.status(),
        StatusCode::ACCEPTED
    );
    // Do-Not-Track: accepted, not recorded.
    assert_eq!(
        track(&app, signup, &[("dnt", "1")]).await.status(),
        StatusCode::ACCEPTED
    );

    let written = eventually(Duration::from_secs(10), || async {
        let (_, s) = get_json(&app, &admin, "/ext/analytics/api/ingest").await;
        s["written"] == 2
    })
    .await;
    assert!(written);
    let (_, summary) = get_json(
        &app,
        &admin,
        "/ext/analytics/api/stats/summary?site=shop.example",
    )
    .await;
    assert_eq!(
        (
            summary["visitors"].as_i64(),
            summary["pageviews"].as_i64(),
            summary["events"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{summary}"
    );
    let (_, refs) = get_json(
        &app,
        &admin,
        "/ext/analytics/api/stats/breakdown?by=referrer",
    )
    .await;
    assert_eq!(refs[0]["value"], "news.example", "{refs}");
    let (_, campaigns) = get_json(
        &app,
        &admin,
        "/ext/analytics/api/stats/breakdown?by=utm_campaign",
    )
    .await;
    assert_eq!(campaigns[0]["value"], "spring", "{campaigns}");
    let (_, plans) = get_json(
        &app,
        &admin,
        "/ext/analytics/api/stats/events?event=signup&property=plan",
    )
    .await;
    assert_eq!(plans, json!([{"value": "pro", "visitors": 1, "count": 1}]));
    let (_, now) = get_json(&app, &admin, "/ext/analytics/api/stats/realtime").await;
    assert_eq!(now["visitors"], 1);

    // The script is served, small, without cookies.
    let res = app.get("/ext/analytics/script.js").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("set-cookie").is_none());
    let script = res.text().await.unwrap();
    assert!(script.contains("sendBeacon") && script.contains("solobase.track"));
    assert!(!script.contains("document.cookie"));
    app.stop().await.unwrap();
}

/// Inserts a page view (or an event with `props`) `minutes` after 10:00 UTC yesterday.
async fn seed(
    db: &tokio_postgres::Client,
    visitor: i64,
    minutes: i32,
    name: &str,
    path: &str,
    browser: &str,
) {
    db.execute(
        "INSERT INTO ext_analytics.events (occurred_at, site, visitor, name, path, browser, device, props) \
         VALUES (date_trunc('day', now()) - interval '1 day' + interval '10 hours' \
                 + make_interval(mins => $1), 'example.com', $2, $3, $4, $5, 'desktop', \
                 CASE WHEN $3 = 'pageview' THEN NULL ELSE '{\"plan\":\"pro\"}'::jsonb END)",
        &[&minutes, &visitor, &name, &path, &browser],
    )
    .await
    .unwrap();
}

async fn seed_known_set(app: &TestApp) -> String {
    let db = app.db().await;
    db.execute("SET TIME ZONE 'UTC'", &[]).await.unwrap();
    // Visitor 1: three views within 10 minutes (one session of 600 s), another two hours
    // later (a second session, a bounce).
    for m in [0, 5, 10] {
        seed(&db, 1, m, "pageview", "/", "Firefox").await;
    }
    seed(&db, 1, 120, "pageview", "/pricing", "Firefox").await;
    // Visitor 2: one view and a custom event a minute later (one session of 60 s, a bounce).
    seed(&db, 2, 60, "pageview", "/pricing", "Chrome").await;
    seed(&db, 2, 61, "signup", "/pricing", "Chrome").await;
    // Visitor 3: two views 40 minutes apart: two sessions, two bounces.
    seed(&db, 3, 0, "pageview", "/", "Chrome").await;
    seed(&db, 3, 40, "pageview", "/docs", "Chrome").await;
    let day: String = db
        .query_one("SELECT (current_date - 1)::text", &[])
        .await
        .unwrap()
        .get(0);
    day
}

#[tokio::test]
async fn the_stats_api_answers_with_the_numbers_of_a_known_set_of_events() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let day = seed_known_set(&app).await;
    let range = format!("from={day}&to={day}");

    let (status, s) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/summary?{range}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        s,
        json!({"visitors": 3, "pageviews": 7, "events": 1, "sessions": 5, "bounces": 4,
               "bounce_rate": 0.8, "avg_duration_secs": 132.0, "pages_per_session": 1.4})
    );
    // A filter narrows every number.
    let (_, chrome) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/summary?{range}&browser=Chrome"),
    )
    .await;
    assert_eq!(
        (
            chrome["visitors"].as_i64(),
            chrome["pageviews"].as_i64(),
            chrome["sessions"].as_i64()
        ),
        (Some(2), Some(3), Some(3)),
        "{chrome}"
    );

    let (_, pages) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/breakdown?{range}&by=page"),
    )
    .await;
    assert_eq!(
        pages,
        json!([
            {"value": "/", "visitors": 2, "count": 4},
            {"value": "/pricing", "visitors": 2, "count": 2},
            {"value": "/docs", "visitors": 1, "count": 1},
        ])
    );
    let (_, browsers) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/breakdown?{range}&by=browser&limit=1"),
    )
    .await;
    assert_eq!(
        browsers,
        json!([{"value": "Chrome", "visitors": 2, "count": 3}])
    );
    let (_, events) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/events?{range}"),
    )
    .await;
    assert_eq!(
        events,
        json!([{"value": "signup", "visitors": 1, "count": 1}])
    );
    let (_, plan) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/summary?{range}&prop=plan:pro"),
    )
    .await;
    assert_eq!(plan["events"], 1, "{plan}");

    let (_, hours) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/timeseries?{range}&interval=hour"),
    )
    .await;
    let hours = hours.as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(
        hours[10],
        json!({"time": format!("{day}T10:00:00Z"), "visitors": 2, "pageviews": 5})
    );
    assert_eq!(hours[11]["pageviews"], 1);
    assert_eq!(hours[12]["pageviews"], 1);
    assert_eq!(
        hours
            .iter()
            .map(|h| h["pageviews"].as_i64().unwrap())
            .sum::<i64>(),
        7
    );
    let (_, days) = get_json(
        &app,
        &admin,
        &format!("/ext/analytics/api/stats/timeseries?{range}"),
    )
    .await;
    assert_eq!(
        days,
        json!([{"time": format!("{day}T00:00:00Z"), "visitors": 3, "pageviews": 7}])
    );

    // Bad parameters: 400 saying what to use.
    for (query, says) in [
        (
            "/ext/analytics/api/stats/summary?colour=red",
            "unknown parameter",
        ),
        (
            "/ext/analytics/api/stats/summary?from=yesterday",
            "YYYY-MM-DD",
        ),
        (
            "/ext/analytics/api/stats/timeseries?interval=week",
            "hour or day",
        ),
        ("/ext/analytics/api/stats/breakdown?by=colour", "use one of"),
    ] {
        let (status, body) = get_json(&app, &admin, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn events_older_than_the_retention_are_purged_in_the_background() {
    let app = app_with("retention_days = 1\npurge_interval_secs = 1\n").await;
    let admin = app.user_token("admin@example.com", true).await;
    let db = app.db().await;
    for age in ["3 days", "1 hour", "30 hours", "10 minutes"] {
        db.execute(
            &format!(
                "INSERT INTO ext_analytics.events (occurred_at, site, visitor, name, path) \
                 VALUES (now() - interval '{age}', 'example.com', 1, 'pageview', '/{}')",
                age.replace(' ', "-")
            ),
            &[],
        )
        .await
        .unwrap();
    }
    let purged = eventually(Duration::from_secs(10), || async {
        let n: i64 = db
            .query_one("SELECT count(*) FROM ext_analytics.events", &[])
            .await
            .unwrap()
            .get(0);
        n == 2
    })
    .await;
    assert!(purged);
    let paths: Vec<String> = db
        .query("SELECT path FROM ext_analytics.events ORDER BY path", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(paths, ["/1-hour", "/10-minutes"]);
    // The purge on demand: administrators only.
    let res = app
        .http
        .post(app.url("/ext/analytics/api/purge"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["retention_days"], 1);
    let user = app.user_token("user@example.com", false).await;
    let res = app
        .http
        .post(app.url("/ext/analytics/api/purge"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_events_counts_them_and_never_blocks() {
    let app = app_with("queue_capacity = 1\nbatch_size = 1\nflush_interval_ms = 10\n").await;
    let admin = app.user_token("admin@example.com", true).await;
    // Hold the flusher's write: it keeps one event, the queue one more; the rest are dropped.
    let mut db = app.db().await;
    let lock = db.transaction().await.unwrap();
    lock.execute(
        "LOCK TABLE ext_analytics.events IN ACCESS EXCLUSIVE MODE",
        &[],
    )
    .await
    .unwrap();
    let event = r#"{"name":"click","url":"https://example.com/"}"#;
    assert_eq!(track(&app, event, &[]).await.status(), StatusCode::ACCEPTED);
    let taken = eventually(Duration::from_secs(10), || async {
        let (_, s) = get_json(&app, &admin, "/ext/analytics/api/ingest").await;
        s["queued"] == 0
    })
    .await;
    assert!(taken, "the flusher took the first event");
    for _ in 0..9 {
        // Answered at once even though nothing can be written.
        let res = tokio::time::timeout(Duration::from_secs(5), track(&app, event, &[])).await;
        assert_eq!(res.expect("no waiting").status(), StatusCode::ACCEPTED);
    }
    let (_, s) = get_json(&app, &admin, "/ext/analytics/api/ingest").await;
    assert_eq!(
        (
            s["accepted"].as_i64(),
            s["dropped"].as_i64(),
            s["queued"].as_i64()
        ),
        (Some(2), Some(8), Some(1)),
        "{s}"
    );
    let degraded = eventually(Duration::from_secs(10), || async {
        let ext = app.extension(&admin, "analytics").await;
        ext.to_string().contains("events are being dropped")
    })
    .await;
    assert!(degraded, "{}", app.extension(&admin, "analytics").await);
    lock.rollback().await.unwrap();
    let written = eventually(Duration::from_secs(10), || async {
        let (_, s) = get_json(&app, &admin, "/ext/analytics/api/ingest").await;
        s["written"] == 2
    })
    .await;
    assert!(written);
    app.stop().await.unwrap();
}

/// The dashboard in a real browser: an administrator logged in to the admin dashboard opens
/// it in the same tab; its cards, chart and lists show the known set of events.
#[cfg(feature = "probe")]
#[tokio::test]
async fn the_dashboard_shows_the_numbers_in_a_browser() {
    use crate::cdp::Browser;

    let app = spawn_app().await;
    app.create_user("admin@example.com", "correct horse battery", true)
        .await;
    let day = seed_known_set(&app).await;

    // The page itself holds no data: anyone may load it, and it says to log in.
    let res = app.get("/ext/analytics/dashboard").await;
    assert_eq!(res.status(), StatusCode::OK);
    let policy = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );
    let mut browser = Browser::launch().await;
    browser.goto(&app.url("/ext/analytics/dashboard")).await;
    browser
        .wait_until(
            "!document.getElementById('login').hidden",
            "the log-in hint",
        )
        .await;

    browser.goto(&app.url("/admin/")).await;
    browser.fill("#email", "admin@example.com").await;
    browser.fill("#password", "correct horse battery").await;
    browser.submit("#login-form").await;
    browser
        .wait_until(
            "sessionStorage.getItem('solobase.admin.token') !== null",
            "the admin login",
        )
        .await;
    browser
        .goto(&app.url(&format!("/ext/analytics/dashboard?from={day}&to={day}")))
        .await;
    browser.wait_for("#card-visitors").await;
    assert_eq!(browser.text("#card-visitors b").await, "3");
    assert_eq!(browser.text("#card-pageviews b").await, "7");
    assert_eq!(browser.text("#card-sessions b").await, "5");
    assert_eq!(browser.text("#card-bounce b").await, "80%");
    assert_eq!(browser.text("#card-duration b").await, "2m 12s");
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#timeseries rect.bar').length")
            .await,
        24
    );
    assert!(browser.text(".lists").await.contains("/pricing"));
    // The range picker shows the range asked for.
    assert_eq!(
        browser.eval("document.getElementById('from').value").await,
        day.as_str()
    );
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("analytics-dashboard.png");
    assert!(browser.screenshot_to(&shot).await, "a screenshot");
    println!("analytics dashboard screenshot: {}", shot.display());

    // The tracking script in the page: a page view on load, one on a history-API navigation,
    // a custom event. Headless Chromium calls itself a bot: sent and accepted, then dropped.
    let token = app.user_token("reader@example.com", true).await;
    browser
        .eval(
            "(() => { const s = document.createElement('script'); \
             s.src = '/ext/analytics/script.js'; document.head.appendChild(s); return 1; })()",
        )
        .await;
    browser
        .wait_until("window.solobase !== undefined", "the tracking script")
        .await;
    browser
        .eval(
            "history.pushState({}, '', location.pathname + '?utm_source=spa'); \
             solobase.track('clicked', {button: 'buy'}); 1",
        )
        .await;
    let tracked = eventually(Duration::from_secs(10), || async {
        let (_, s) = get_json(&app, &token, "/ext/analytics/api/ingest").await;
        s["accepted"] == 3 && s["bots"] == 3
    })
    .await;
    let (_, s) = get_json(&app, &token, "/ext/analytics/api/ingest").await;
    assert!(tracked, "{s}");
    assert!(browser.problems.is_empty(), "{:?}", browser.problems);
    browser.close().await;
    app.stop().await.unwrap();
}
