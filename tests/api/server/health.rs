use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, error_code, fresh_database, spawn_app};

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["migrations"], "ok");
}

#[tokio::test]
async fn readyz_fails_when_the_database_goes_away() {
    let app = spawn_app().await;
    let admin = crate::helpers::connect("postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", app.db_name))
        .await
        .unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_ne!(body["checks"]["database"], "ok");
    // Liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let app = spawn_app().await;
    let res = app.get("/no/such/route").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    let res = app
        .http
        .post(app.url("/api/v1/storage/b/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(res).await, "method_not_allowed");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-id-42");
    // An id with unsafe characters is replaced, never echoed.
    let res = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "a b<script>")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "a b<script>");
}

#[tokio::test]
async fn host_tables_live_in_their_own_schema_and_migrate_once() {
    let db = fresh_database().await;
    // Two instances starting together on one empty database.
    let (a, b) = tokio::join!(
        TestApp::builder().on(db.clone()).spawn(),
        TestApp::builder().on(db.clone()).spawn()
    );
    assert_eq!(a.get("/readyz").await.status(), StatusCode::OK);
    assert_eq!(b.get("/readyz").await.status(), StatusCode::OK);
    let client = a.db().await;
    let history: i64 = client
        .query_one(
            "SELECT count(*) FROM solobase.refinery_schema_history WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 1);
    let public: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0);
    let host_tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'solobase' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        host_tables,
        [
            "audit_log",
            "extension_config",
            "extension_grants",
            "extension_roles",
            "extension_stats",
            "extensions",
            "jobs",
            "locks",
            "outbox",
            "refinery_schema_history",
            "role_permissions",
            "sessions",
            "setup_links",
            "storage_buckets",
            "storage_objects",
            "users"
        ]
    );
}

#[tokio::test]
async fn graceful_stop_returns_ok() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    app.stop().await.expect("clean stop");
}

/// Every line logged while a request is served carries its id (the span `request`), and the
/// line that ends it says what it was: method, path, client, status.
#[cfg(feature = "probe")]
#[tokio::test]
async fn a_request_s_log_lines_carry_its_id_and_the_last_one_says_what_it_was() {
    use std::time::Duration;

    use crate::helpers::{TempDir, database_url};
    use crate::server::cli::Server;
    let db_name = fresh_database().await;
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let mut server = Server::start_with(&dir.0, &dir.0.join("data"), &[("DATABASE_URL", &url)]);
    let http = reqwest::Client::new();
    let res = http
        .get(server.url("/ext/probe/boom"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let of_request = |v: &Value| v["span"]["request_id"] == "trace-me-42";
    let inside = server.logged_where("the handler's error", Duration::from_secs(10), |v| {
        v["message"] == "extension handler failed"
    });
    assert!(of_request(&inside), "{inside}");
    let last = server.logged_where("the request's last line", Duration::from_secs(10), |v| {
        v["message"] == "request failed"
    });
    assert!(of_request(&last), "{last}");
    assert_eq!(last["method"], "GET", "{last}");
    assert_eq!(last["path"], "/ext/probe/boom", "{last}");
    assert_eq!(last["client"], "127.0.0.1 (http)", "{last}");
    assert_eq!(last["status"], 500, "{last}");
}
