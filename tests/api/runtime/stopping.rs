//! Disable means stopped: an extension disabled by an administrator or automatically has
//! its `stop()` called and its host tasks cancelled, and enabling it starts it again; a panic
//! in one of its tasks is counted, trips its breaker and shows in its health.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app};

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> StatusCode {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

fn tasks(entry: &Value) -> Vec<String> {
    let mut names: Vec<String> = entry["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

async fn hits(app: &TestApp) -> Value {
    app.get("/ext/probe/hits").await.json().await.unwrap()
}

#[tokio::test]
async fn disabling_an_extension_stops_it_and_enabling_starts_it_again() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let probe = app.extension(&admin, "probe").await;
    assert_eq!(probe["running"], true);
    assert_eq!(tasks(&probe), ["tick", "trap"]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            hits(&app).await["tick"].as_u64().unwrap_or(0) > 0
        })
        .await,
        "the periodic task runs"
    );

    let status = post(&app, &admin, "/api/v1/extensions/probe/disable", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let probe = app.extension(&admin, "probe").await;
    assert_eq!(probe["enabled"], false);
    assert_eq!(probe["running"], false, "{probe}");
    assert!(tasks(&probe).is_empty(), "{probe}");

    let status = post(
        &app,
        &admin,
        "/api/v1/extensions/probe/enable",
        json!({"grant_all": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let probe = app.extension(&admin, "probe").await;
    assert_eq!(probe["running"], true, "{probe}");
    assert_eq!(tasks(&probe), ["tick", "trap"]);
    let hits = hits(&app).await;
    assert_eq!(hits["start"], 2, "started again: {hits}");
    assert_eq!(hits["stop"], 1, "stopped once: {hits}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_panic_in_a_task_is_counted_trips_the_breaker_and_shows_in_health() {
    let app = TestApp::builder()
        .config(|c| {
            c.extensions.breaker_failures = 1;
            c.extensions.breaker_trips_to_disable = 0;
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let res = app
        .http
        .post(app.url("/ext/probe/trap"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.extension(&admin, "probe").await["stats"]["panics"] == 1
        })
        .await,
        "the task's panic is counted"
    );
    let probe = app.extension(&admin, "probe").await;
    assert_eq!(probe["stats"]["breaker"], "open", "{probe}");
    assert_eq!(probe["health"]["now"]["status"], "degraded", "{probe}");
    assert!(
        probe["health"]["now"]["message"]
            .as_str()
            .unwrap()
            .contains("its task trap panicked"),
        "{probe}"
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("extension_errors_total{")
                && l.contains("extension=\"probe\"")
                && l.contains("type=\"panic\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // A continuous task is started again after its panic.
    assert!(
        eventually(Duration::from_secs(5), || async {
            tasks(&app.extension(&admin, "probe").await).contains(&"trap".to_owned())
        })
        .await
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_extension_its_breaker_disables_is_stopped_with_its_tasks() {
    let app = TestApp::builder()
        .config(|c| {
            c.extensions.breaker_failures = 1;
            c.extensions.breaker_trips_to_disable = 1;
            c.extensions.resync_secs = 1;
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    app.http
        .post(app.url("/ext/probe/trap"))
        .send()
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(15), || async {
            let probe = app.extension(&admin, "probe").await;
            probe["enabled"] == false && probe["running"] == false && tasks(&probe).is_empty()
        })
        .await,
        "{}",
        app.extension(&admin, "probe").await
    );
    let probe = app.extension(&admin, "probe").await;
    assert!(
        probe["error"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled automatically"),
        "{probe}"
    );
    app.stop().await.unwrap();
}
