//! Hot reload of the host configuration file: run-time limits change without a restart, and
//! an invalid file changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, eventually, fresh_database, spawn_app_on};

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
    let app = spawn_app_on(fresh_database().await, move |c| c.source = Some(source)).await;
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
