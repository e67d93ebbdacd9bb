//! Hot reload of the host configuration file: run-time limits change without a restart, and
//! an invalid file changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, eventually, fresh_database};

async fn probe_limits(app: &TestApp, admin: &str) -> Value {
    app.extension(admin, "probe").await["limits"].clone()
}

/// Waits up to 10 s for the probe's client rate to become `per_second`.
async fn client_rate_becomes(app: &TestApp, admin: &str, per_second: u64) -> bool {
    eventually(Duration::from_secs(10), || async {
        probe_limits(app, admin).await["client_rate"]["per_second"] == per_second
    })
    .await
}

async fn reloads(app: &TestApp, result: &str) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE action = 'config.reload' AND result = $1",
            &[&result],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_changed_config_file_changes_rate_limits_at_once_and_an_invalid_one_nothing() {
    let dir = crate::helpers::TempDir::new();
    let file = dir.0.join("solobase.toml");
    std::fs::write(&file, "[extensions]\nclient_rate_per_second = 100\n").unwrap();
    let source = file.clone();
    let app = TestApp::builder()
        .on(fresh_database().await)
        .config(move |c| c.source = Some(source))
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    assert_eq!(
        probe_limits(&app, &admin).await["client_rate"]["per_second"],
        100
    );
    for _ in 0..5 {
        assert_eq!(app.get("/ext/probe/public").await.status(), StatusCode::OK);
    }

    // Tightened for the probe alone: applied without a restart.
    std::fs::write(
        &file,
        "[extensions]\nclient_rate_per_second = 100\n\n\
         [extensions.limits.probe]\nclient_rate_per_second = 1\nclient_rate_burst = 1\n",
    )
    .unwrap();
    assert!(
        client_rate_becomes(&app, &admin, 1).await,
        "the new limit applies"
    );
    let statuses = [
        app.get("/ext/probe/public").await.status(),
        app.get("/ext/probe/public").await.status(),
    ];
    assert_eq!(statuses[1], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");

    // An invalid file: the running configuration stays, the failure is audited.
    std::fs::write(&file, "[extensions]\nclient_rate_per_second = \"lots\"\n").unwrap();
    eventually(Duration::from_secs(10), || async {
        reloads(&app, "failed").await > 0
    })
    .await;
    assert_eq!(reloads(&app, "failed").await, 1);
    assert_eq!(
        probe_limits(&app, &admin).await["client_rate"]["per_second"],
        1
    );
    assert!(reloads(&app, "ok").await >= 1);

    // Fixed again: loosened.
    std::fs::write(&file, "[extensions]\nclient_rate_per_second = 50\n").unwrap();
    assert!(client_rate_becomes(&app, &admin, 50).await);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn reading_the_file_does_not_reload_it_again() {
    let dir = crate::helpers::TempDir::new();
    let file = dir.0.join("solobase.toml");
    std::fs::write(&file, "[extensions]\nclient_rate_per_second = 100\n").unwrap();
    let source = file.clone();
    let app = TestApp::builder()
        .on(fresh_database().await)
        .config(move |c| c.source = Some(source))
        .spawn()
        .await;
    std::fs::write(&file, "[extensions]\nclient_rate_per_second = 90\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            reloads(&app, "ok").await > 0
        })
        .await
    );
    // The reload opened and read the file: that is no change. Several debounce periods
    // later there is still one reload.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(reloads(&app, "ok").await, 1);
    std::fs::write(&file, "[extensions]\nclient_rate_per_second = \"lots\"\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            reloads(&app, "failed").await > 0
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(reloads(&app, "failed").await, 1);
    assert_eq!(reloads(&app, "ok").await, 1);
    app.stop().await.unwrap();
}

/// `GET /ext/probe/config`'s greeting.
async fn greeting(app: &TestApp) -> String {
    let body: Value = app.get("/ext/probe/config").await.json().await.unwrap();
    body["greeting"].as_str().unwrap().to_owned()
}

async fn config_of(app: &TestApp, admin: &str) -> (Value, String) {
    let res = app
        .http
        .get(app.url("/api/v1/extensions/probe/config"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let etag = res.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["etag"], etag.as_str());
    (body["config"].clone(), etag)
}

async fn put_config(
    app: &TestApp,
    admin: &str,
    etag: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut req = app
        .http
        .put(app.url("/api/v1/extensions/probe/config"))
        .bearer_auth(admin)
        .json(&body);
    if let Some(etag) = etag {
        req = req.header("if-match", format!("\"{etag}\""));
    }
    req.send().await.unwrap()
}

/// An app whose extension configuration directory exists (so it is watched), without the
/// per-client rate limit (the tests send many requests from one address).
async fn app_with_config_dir() -> TestApp {
    TestApp::builder()
        .on(fresh_database().await)
        .config(|c| {
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            c.extensions.client_rate_per_second = 0;
        })
        .spawn()
        .await
}

#[tokio::test]
async fn the_api_replaces_a_configuration_only_with_the_current_etag() {
    let app = app_with_config_dir().await;
    let admin = app.user_token("admin@example.com", true).await;
    assert_eq!(greeting(&app).await, "hello");
    let (config, first) = config_of(&app, &admin).await;
    assert!(config.is_null(), "no file: the defaults");

    let res = put_config(&app, &admin, None, serde_json::json!({"greeting": "hi"})).await;
    assert_eq!(res.status(), 428, "If-Match is required");
    let res = put_config(
        &app,
        &admin,
        Some(&first),
        serde_json::json!({"greeting": "hi"}),
    )
    .await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let second = res.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(greeting(&app).await, "hi", "applied at once");
    let file = app.data_dir.0.join("extension-config/probe.toml");
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("greeting = \"hi\"")
    );

    // A second writer with the old etag cannot overwrite the change.
    let res = put_config(
        &app,
        &admin,
        Some(&first),
        serde_json::json!({"greeting": "yo"}),
    )
    .await;
    assert_eq!(res.status(), 412);
    assert_eq!(crate::helpers::error_code(res).await, "precondition_failed");
    // Invalid, or refused by the extension: nothing changes.
    let res = put_config(
        &app,
        &admin,
        Some(&second),
        serde_json::json!({"greeting": 5}),
    )
    .await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("key `greeting`") && message.contains("5 is not of type \"string\""),
        "{message}"
    );
    let res = put_config(
        &app,
        &admin,
        Some(&second),
        serde_json::json!({"greeting": "refuse"}),
    )
    .await;
    assert_eq!(res.status(), 409);
    assert_eq!(crate::helpers::error_code(res).await, "config_refused");
    assert_eq!(greeting(&app).await, "hi");
    assert_eq!(config_of(&app, &admin).await.1, second);
    let status = &app.extension(&admin, "probe").await["config"];
    assert_eq!(status["failed_changes"], 2, "{status}");
    assert!(status["last_error"].as_str().unwrap().contains("refuse"));
    let failed: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE action = 'extension.config' \
             AND result = 'failed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failed, 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_changed_extension_file_is_applied_and_an_invalid_one_changes_nothing() {
    let app = app_with_config_dir().await;
    let admin = app.user_token("admin@example.com", true).await;
    let file = app.data_dir.0.join("extension-config/probe.toml");
    std::fs::write(&file, "greeting = \"from the file\"\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            greeting(&app).await == "from the file"
        })
        .await
    );
    std::fs::write(&file, "greeting = \"unterminated\n").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.extension(&admin, "probe").await["config"]["failed_changes"] == 1
        })
        .await
    );
    assert_eq!(greeting(&app).await, "from the file");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_hundred_reloads_under_load_fail_no_request() {
    let app = app_with_config_dir().await;
    let admin = app.user_token("admin@example.com", true).await;
    let file = app.data_dir.0.join("extension-config/probe.toml");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (http, url, stop) = (app.http.clone(), app.url("/ext/probe/config"), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(res) if res.status() == 200 => ok += 1,
                    other => {
                        failed += 1;
                        eprintln!("failed: {:?}", other.map(|r| r.status()));
                    }
                }
            }
            (ok, failed)
        }));
    }
    let started = std::time::Instant::now();
    let (mut applied, mut refused) = (0, 0);
    for i in 0..100 {
        if i % 2 == 0 {
            // Through the API: valid, invalid and refused in turn.
            let (_, etag) = config_of(&app, &admin).await;
            let body = match i % 6 {
                0 => serde_json::json!({"greeting": format!("api {i}")}),
                2 => serde_json::json!({"greeting": 7}),
                _ => serde_json::json!({"greeting": "refuse"}),
            };
            if put_config(&app, &admin, Some(&etag), body).await.status() == 200 {
                applied += 1;
            } else {
                refused += 1;
            }
        } else {
            // Through the file: valid and broken in turn.
            let text = if i % 4 == 1 {
                format!("greeting = \"file {i}\"\n")
            } else {
                "greeting = [\n".to_owned()
            };
            std::fs::write(&file, text).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for task in load {
        let (o, f) = task.await.unwrap();
        ok += o;
        failed += f;
    }
    println!(
        "100 reloads (50 through the API: {applied} applied, {refused} refused; 50 file writes, \
         half broken) in {:.2} s under load: {ok} requests succeeded, {failed} failed",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(failed, 0);
    assert!(ok > 100);
    app.stop().await.unwrap();
}
