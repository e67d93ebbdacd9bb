//! Prometheus metrics: who may read them, what they hold, and that label values stay bounded
//! however many distinct paths are requested.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use reqwest::StatusCode;

use crate::helpers::{TestApp, spawn_app};

async fn scrape(app: &TestApp, admin: &str) -> String {
    app.metrics_text(admin).await
}

/// The series: every sample line's name and labels.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_owned())
        .collect()
}

/// Sends `GET` for every path, 32 at a time; returns the statuses seen.
async fn flood(app: &TestApp, paths: Vec<String>) -> BTreeSet<u16> {
    futures_util::stream::iter(paths)
        .map(|p| {
            let http = app.http.clone();
            let url = app.url(&p);
            async move { http.get(url).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect::<BTreeSet<u16>>()
        .await
}

#[tokio::test]
async fn metrics_are_for_admins_and_hold_the_extension_and_http_series() {
    let app = spawn_app().await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::UNAUTHORIZED);
    let user = app.user_token("user@example.com", false).await;
    let res = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let admin = app.user_token("admin@example.com", true).await;
    // Traffic: extension routes (found and not), a failing handler, host routes; enough
    // hook calls for sampled durations.
    for _ in 0..40 {
        app.get("/ext/probe/public").await;
    }
    app.get("/ext/probe/items/7").await;
    app.get("/ext/probe/boom").await;
    app.get("/ext/probe/nothing-here").await;
    app.get("/healthz").await;
    let text = scrape(&app, &admin).await;
    for expected in [
        "extension_requests_total{extension=\"probe\",route=\"GET /public\",status=\"200\"} 40",
        "extension_requests_total{extension=\"probe\",route=\"GET /items/{id}\",status=\"200\"} 1",
        "extension_requests_total{extension=\"probe\",route=\"unmatched\",status=\"404\"} 1",
        "extension_request_duration_seconds_bucket{extension=\"probe\",route=\"GET /public\",le=\"",
        "extension_errors_total{extension=\"probe\",type=\"handler_error\"} 1",
        "extension_errors_total{extension=\"probe\",type=\"panic\"} 0",
        "extensions_active_total ",
        "extension_health_status{extension=\"probe\"} ",
        "extension_resource_usage{extension=\"probe\",resource=\"in_flight\"} 0",
        "extension_resource_usage{extension=\"probe\",resource=\"allocated_bytes\"} ",
        "extension_hooks_executed_total{extension=\"probe\",hook=\"pre_request\"} ",
        "extension_hook_duration_seconds_count{extension=\"probe\",hook=\"",
        "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1",
        "http_requests_total{method=\"GET\",route=\"/ext/{name}/{tail:.*}\",status=\"200\"}",
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/healthz\",le=\"",
        "# HELP extension_errors_total",
        "# TYPE extension_request_duration_seconds histogram",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn ten_thousand_distinct_paths_add_no_series() {
    // No per-client rate limit: every request reaches its route.
    let app = TestApp::builder()
        .config(|c| c.extensions.client_rate_per_second = 0)
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let kinds = |range: std::ops::Range<usize>| {
        range
            .flat_map(|i| {
                [
                    format!("/ext/probe/items/{i}"),
                    format!("/ext/probe/no/such/{i}"),
                    format!("/no-such-page-{i}"),
                    format!("/api/v1/storage/b/{i}.txt"),
                    format!("/ext/no-such-extension-{i}/x"),
                ]
            })
            .collect::<Vec<_>>()
    };
    // Every kind of path once, then the series are counted; then 10,000 more distinct paths.
    let warm = flood(&app, kinds(0..2)).await;
    // A scrape is a request too: the first one adds its own series.
    scrape(&app, &admin).await;
    let before = series(&scrape(&app, &admin).await);
    let statuses = flood(&app, kinds(2..2002)).await;
    assert_eq!(warm, statuses, "the same kinds of answers");
    let after = series(&scrape(&app, &admin).await);
    let added: Vec<_> = after.difference(&before).collect();
    assert!(added.is_empty(), "new series: {added:#?}");
    assert!(before.len() > 20, "{} series", before.len());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_may_be_served_without_authentication_on_a_private_address() {
    let app = TestApp::builder()
        .config(|c| c.metrics.bind = Some("127.0.0.1:0".parse().unwrap()))
        .spawn()
        .await;
    let port = app.metrics_port.expect("a metrics listener");
    app.get("/healthz").await;
    let res = app
        .http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("http_requests_total{method=\"GET\",route=\"/healthz\""),
        "{text}"
    );
    // Nothing else is served there.
    let res = app
        .http
        .get(format!("http://127.0.0.1:{port}/api/v1/extensions"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

/// The series of the shipped extensions' own metrics (`solobase_ext_…`).
fn own_series(text: &str) -> BTreeSet<String> {
    series(text)
        .into_iter()
        .filter(|s| s.starts_with("solobase_ext_"))
        .collect()
}

#[tokio::test]
async fn the_shipped_extensions_export_their_own_series_with_bounded_labels() {
    let app = TestApp::builder()
        .config(|c| {
            c.extensions.stats_interval_ms = 200;
            // Every hostile event from this one address is accepted.
            c.extensions.client_rate_per_second = 0;
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let before = own_series(&scrape(&app, &admin).await);
    for name in [
        "solobase_ext_analytics_events_total{fate=\"accepted\"}",
        "solobase_ext_analytics_events_total{fate=\"other\"}",
        "solobase_ext_analytics_queue_depth",
        "solobase_ext_webhooks_deliveries_total{outcome=\"succeeded\"}",
        "solobase_ext_webhooks_attempts_total",
        "solobase_ext_webhooks_pending",
        "solobase_ext_webhooks_queue_age_seconds",
    ] {
        assert!(before.contains(name), "{name} in {before:#?}");
    }

    // Hostile tracking events: names, pages, props and referrers nobody declared.
    let hostile: Vec<String> = (0..300)
        .map(|i| {
            serde_json::json!({
                "name": format!("evil-{i}-{}", "x".repeat(i % 50)),
                "url": format!("http://example.com/{i}/x?utm_source=s{i}"),
                "referrer": format!("http://ref-{i}.example/"),
                "props": {format!("k{i}"): format!("v{i}")},
            })
            .to_string()
        })
        .collect();
    let statuses = futures_util::stream::iter(hostile)
        .map(|body| {
            let http = app.http.clone();
            let url = app.url("/ext/analytics/api/track");
            async move {
                http.post(url)
                    .header(
                        "user-agent",
                        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                    )
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    let text = scrape(&app, &admin).await;
    let after = own_series(&text);
    assert_eq!(after, before, "no new series, whatever the input");
    let accepted = text
        .lines()
        .find(|l| l.starts_with("solobase_ext_analytics_events_total{fate=\"accepted\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .unwrap();
    assert!(accepted >= 300.0, "{accepted}");

    // The command line lists them from what the instance publishes.
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
            let out = {
                let mut cmd = crate::server::cli::solobase(&app.data_dir.0);
                cmd.args(["extensions", "metrics", "analytics", "--database-url"])
                    .arg(crate::helpers::database_url(&app.db_name));
                crate::server::cli::run(cmd, std::time::Duration::from_secs(30))
            };
            String::from_utf8_lossy(&out.stdout)
                .contains("solobase_ext_analytics_events_total{fate=\"accepted\"}")
        })
        .await
    );
    app.stop().await.unwrap();
}
