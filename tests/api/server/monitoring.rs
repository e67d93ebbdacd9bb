//! Health monitoring: checks on an interval with a time limit, statuses with messages and a
//! bounded history, dependencies degrading their dependents, and an automatic disable after
//! repeated critical checks — shown in the API, `/readyz` and the database.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use solobase_sdk::prelude::*;
use solobase_sdk::{Health, Registration};

use crate::helpers::{TestApp, eventually};

/// What `Moody`'s health check does: 0 healthy, 1 degraded, 2 critical, 3 never answers.
static MOOD: AtomicU8 = AtomicU8::new(0);

struct Moody;

impl Extension for Moody {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Moody)
    }
    fn routes(&self, routes: &mut Routes<Self>) {
        routes
            .get("/ok", |_, _| async { Ok(Response::json(&"ok")) })
            .public();
    }
    async fn health(&self) -> Health {
        match MOOD.load(Ordering::Relaxed) {
            0 => Health::healthy(),
            1 => Health::degraded("the disk is slow"),
            2 => Health::critical("the upstream is down"),
            _ => std::future::pending().await,
        }
    }
}

struct Dependent;

impl Extension for Dependent {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Dependent)
    }
}

async fn health(app: &TestApp, admin: &str, name: &str) -> Value {
    app.extension(admin, name).await["health"].clone()
}

async fn becomes(app: &TestApp, admin: &str, name: &str, status: &str) -> bool {
    eventually(Duration::from_secs(10), || async {
        health(app, admin, name).await["now"]["status"] == status
    })
    .await
}

#[tokio::test]
async fn health_is_checked_on_an_interval_and_repeated_critical_checks_disable() {
    MOOD.store(0, Ordering::Relaxed);
    let app = TestApp::builder()
        .extensions(vec![
            Registration::new::<Moody>(
                "[extension]\nname = \"moody\"\nversion = \"0.1.0\"\ndescription = \"d\"\n\
                 min_host_version = \"0.1.0\"\n",
                "0.1.0",
            ),
            Registration::new::<Dependent>(
                "[extension]\nname = \"dependent\"\nversion = \"0.1.0\"\ndescription = \"d\"\n\
                 min_host_version = \"0.1.0\"\n\n[dependencies]\nmoody = \"^0.1\"\n",
                "0.1.0",
            ),
        ])
        .config(|c| {
            c.extensions.health_interval_ms = 100;
            c.extensions.health_timeout_ms = 50;
            c.extensions.health_critical_to_disable = 5;
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    assert!(becomes(&app, &admin, "moody", "healthy").await);
    assert!(becomes(&app, &admin, "dependent", "healthy").await);

    MOOD.store(1, Ordering::Relaxed);
    assert!(becomes(&app, &admin, "moody", "degraded").await);
    let now = &health(&app, &admin, "moody").await["now"];
    assert_eq!(now["message"], "the disk is slow");
    assert!(now["checked_at"].as_str().unwrap().contains('T'));
    // Reported by /readyz, which stays ready.
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["extensions"]["moody"]["status"], "degraded");

    // A check that never answers is cut at its time limit: critical. Its dependent, healthy
    // itself, is degraded.
    MOOD.store(3, Ordering::Relaxed);
    assert!(becomes(&app, &admin, "moody", "critical").await);
    let now = &health(&app, &admin, "moody").await["now"];
    assert!(
        now["message"].as_str().unwrap().contains("within 50 ms"),
        "{now}"
    );
    let dependent = &health(&app, &admin, "dependent").await["now"];
    assert_eq!(dependent["status"], "degraded", "{dependent}");
    assert!(dependent["message"].as_str().unwrap().contains("moody"));

    // Five critical checks in a row: disabled automatically, audited, recorded.
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get("/ext/moody/ok").await.status() == StatusCode::NOT_FOUND
        })
        .await,
        "disabled"
    );
    let moody = app.extension(&admin, "moody").await;
    assert_eq!(moody["enabled"], false);
    assert!(
        moody["error"]
            .as_str()
            .unwrap()
            .contains("health check was critical 5 times"),
        "{moody}"
    );
    let history = moody["health"]["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 20);
    assert!(
        history
            .iter()
            .all(|c| c["at"].is_string() && c["took_ms"].is_u64())
    );
    let db = app.db().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.query_one(
                "SELECT count(*) FROM solobase.audit_log \
                 WHERE action = 'extension.auto_disabled' AND extension = 'moody'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
                == 1
        })
        .await,
        "audited"
    );
    let recorded: Value = db
        .query_one(
            "SELECT health FROM solobase.extensions WHERE name = 'dependent'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(recorded["status"].is_string(), "{recorded}");
    MOOD.store(0, Ordering::Relaxed);
    app.stop().await.unwrap();
}
