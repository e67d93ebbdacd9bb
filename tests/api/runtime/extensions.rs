//! The extension runtime seen from outside: the shipped extensions and the test-only `probe`
//! (compiled in by --all-features), plus extensions defined right here for lifecycle cases.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TempDir, TestApp, error_code, spawn_app};

async fn hits(app: &TestApp) -> Value {
    app.get("/ext/probe/hits").await.json().await.unwrap()
}

/// Waits for a probe counter to reach `at_least` (for hooks that run after the response).
async fn wait_hit(app: &TestApp, key: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = hits(app).await[key].as_u64().unwrap_or(0);
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn list(app: &TestApp, token: &str) -> Vec<Value> {
    app.extensions(token).await
}

fn find<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} listed"))
}

#[tokio::test]
async fn compiled_in_extensions_are_listed_and_running() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/extensions").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let user = app.user_token("user@example.com", false).await;
    let res = app
        .http
        .get(app.url("/api/v1/extensions"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let admin = app.user_token("admin@example.com", true).await;
    let list = list(&app, &admin).await;
    for name in ["webhooks", "analytics", "probe"] {
        let e = find(&list, name);
        assert_eq!(e["compiled"], true, "{e}");
        assert_eq!(e["active"], true, "{e}");
        assert!(e["error"].is_null(), "{e}");
    }
    let probe = find(&list, "probe");
    assert!(
        probe["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "GET /ext/probe/public")
    );
    assert_eq!(
        probe["middleware"][0]["paths"],
        json!(["/ext/probe/", "/healthz"])
    );
    // Migrations ran in the extension's own schema, with their own history.
    let v: i32 = app
        .db()
        .await
        .query_one(
            "SELECT max(version) FROM ext_probe.refinery_schema_history",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 2);
}

#[tokio::test]
async fn routes_enforce_their_access_rules() {
    let app = spawn_app().await;
    let user = app.user_token("user@example.com", false).await;
    let admin = app.user_token("admin@example.com", true).await;
    let get = |path: &str, token: Option<&str>| {
        let mut req = app.http.get(app.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(
        get("/ext/probe/public", None).await.unwrap().status(),
        StatusCode::OK
    );
    // Authenticated is the default.
    let res = get("/ext/probe/me", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthenticated");
    let me: Value = get("/ext/probe/me", Some(&user))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "user@example.com");
    assert_eq!(
        get("/ext/probe/admin", Some(&user)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get("/ext/probe/admin", Some(&admin))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // A named permission: admins hold all; a user role holds it once granted.
    assert_eq!(
        get("/ext/probe/perm", Some(&admin)).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/ext/probe/perm", Some(&user)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let role_permission = |method: reqwest::Method, path: &str, token: &str| {
        app.http
            .request(method, app.url(&format!("/api/v1/roles/{path}")))
            .bearer_auth(token)
            .send()
    };
    let put = reqwest::Method::PUT;
    let res = role_permission(put.clone(), "user/permissions/probe.use", &user)
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "only admins give permissions"
    );
    for bad in [
        "user/permissions/Probe%20Use",
        "admin/permissions/probe.use",
    ] {
        let res = role_permission(put.clone(), bad, &admin).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let res = role_permission(put.clone(), "user/permissions/probe.use", &admin)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let held: Value = res.json().await.unwrap();
    assert_eq!(held["permissions"], serde_json::json!(["probe.use"]));
    assert_eq!(
        get("/ext/probe/perm", Some(&user)).await.unwrap().status(),
        StatusCode::OK
    );
    let res = role_permission(
        reqwest::Method::DELETE,
        "user/permissions/probe.use",
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        get("/ext/probe/perm", Some(&user)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let res = role_permission(
        reqwest::Method::DELETE,
        "user/permissions/probe.use",
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Given back for the rest of this test.
    role_permission(put, "user/permissions/probe.use", &admin)
        .await
        .unwrap();

    let item: Value = get("/ext/probe/items/a%20b", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(item["id"], "a b");
    let res = get("/ext/probe/nothing-here", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .http
        .delete(app.url("/ext/probe/public"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let res = get("/ext/nope/x", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("no extension named nope")
    );
    // The /ext prefix is a whole segment: /extras is no extension's, and /ext itself names
    // none.
    let res = get("/extras/probe/public", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("no such route"));
    let res = get("/ext", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("no extension named"));
    // A failing handler answers 500 in the common shape, without its internal details.
    let res = get("/ext/probe/boom", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("\"internal\"") && !body.contains("hunter2"),
        "{body}"
    );
    // Bodies are parsed by the extension, errors in the common shape.
    let res = app
        .http
        .post(app.url("/ext/probe/echo"))
        .bearer_auth(&user)
        .body("{bad")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, "invalid_request");
    let res = app
        .http
        .post(app.url("/ext/probe/echo"))
        .bearer_auth(&user)
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"a": 1}));
    // The body limit holds.
    let big = vec![b'x'; 1024 * 1024 + 1];
    let res = app
        .http
        .post(app.url("/ext/probe/echo"))
        .bearer_auth(&user)
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn disabling_takes_effect_at_once_and_persists() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let toggle = |action: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/extensions/probe/{action}")))
            .bearer_auth(&admin)
            .send()
    };
    assert_eq!(
        app.get_with("/healthz", &[("x-probe-reject", "1")])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(toggle("disable").await.unwrap().status(), StatusCode::OK);
    let res = app.get("/ext/probe/public").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("extension probe is disabled")
    );
    // Its hooks and middleware are skipped too.
    let res = app.get_with("/healthz", &[("x-probe-reject", "1")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("x-probe-mw").is_none());

    // The choice survives a restart.
    let again = TestApp::builder().on(app.db_name.clone()).spawn().await;
    assert_eq!(
        again.get("/ext/probe/public").await.status(),
        StatusCode::NOT_FOUND
    );

    assert_eq!(toggle("enable").await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.get("/ext/probe/public").await.status(), StatusCode::OK);
    let res = app
        .http
        .post(app.url("/api/v1/extensions/unknown/enable"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pipeline_hooks_run_at_their_points() {
    let app = spawn_app().await;
    // pre_request may answer, on host routes too.
    let res = app.get_with("/healthz", &[("x-probe-reject", "1")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "probe_rejected");
    // pre_request's header change reaches the handler; pre_response changes the response.
    let res = app
        .get_with("/ext/probe/headers", &[("x-probe-mark", "1")])
        .await;
    assert_eq!(res.headers()["x-probe-pre-response"], "pre_request");
    assert_eq!(
        res.json::<Value>().await.unwrap()["x-probe-seen"],
        "pre_request"
    );
    assert_eq!(wait_hit(&app, "post_request", 1).await, 1);
    assert_eq!(wait_hit(&app, "post_response", 1).await, 1);
    // authorization may deny.
    let res = app.get_with("/healthz", &[("x-probe-deny", "1")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "probe_denied");
    // error hooks see 5xx responses and may replace them.
    let res = app
        .get_with("/ext/probe/boom", &[("x-probe-error-replace", "1")])
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(res).await, "probe_replaced");
    assert!(hits(&app).await["error"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn authentication_hooks_identify_callers_of_host_and_extension_routes() {
    let app = spawn_app().await;
    app.create_user("keyed@example.com", "password123", false)
        .await;
    let keyed = |path: &str| {
        app.http
            .get(app.url(path))
            .header("x-probe-key", "letmein")
            .header("x-probe-user", "keyed@example.com")
            .send()
    };
    let me: Value = keyed("/api/v1/auth/me")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "keyed@example.com");
    let me: Value = keyed("/ext/probe/me").await.unwrap().json().await.unwrap();
    assert_eq!(me["email"], "keyed@example.com");
    // A wrong key identifies nobody.
    let res = app
        .get_with("/api/v1/auth/me", &[("x-probe-key", "nope")])
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn middleware_is_path_scoped_and_may_answer() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.headers()["x-probe-mw"], "1");
    let res = app.get("/ext/probe/public").await;
    assert_eq!(res.headers()["x-probe-mw"], "1");
    let res = app.get("/readyz").await;
    assert!(
        res.headers().get("x-probe-mw").is_none(),
        "outside its paths"
    );
    let res = app
        .get_with("/ext/probe/public", &[("x-probe-mw-block", "1")])
        .await;
    assert_eq!(res.status(), StatusCode::IM_A_TEAPOT);
    let res = app.get_with("/readyz", &[("x-probe-mw-block", "1")]).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_hook_over_its_time_limit_is_cut_off_and_counted() {
    let app = spawn_app().await;
    let started = Instant::now();
    let res = app.get_with("/healthz", &[("x-probe-slow", "1")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let admin = app.user_token("admin@example.com", true).await;
    let probe = find(&list(&app, &admin).await, "probe").clone();
    assert!(
        probe["stats"]["hook_timeouts"].as_u64().unwrap() >= 1,
        "{probe}"
    );
}

#[tokio::test]
async fn system_hooks_may_refuse_and_observe() {
    let app = TestApp::builder()
        .config(|c| c.auth.signup_enabled = true)
        .spawn()
        .await;
    let signup = |email| app.signup(email, "password123");
    let res = signup("x@blocked.example").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "domain_blocked");
    let users: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM solobase.users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 0);
    assert_eq!(signup("ok@example.com").await.status(), StatusCode::CREATED);
    // Event subscriptions see committed events.
    assert!(wait_hit(&app, "event:user.created", 1).await >= 1);

    app.create_user("banned@example.com", "password123", false)
        .await;
    let res = app.login("banned@example.com", "password123").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "banned");
    let sessions: i64 = app.db().await
        .query_one("SELECT count(*) FROM solobase.sessions s JOIN solobase.users u ON u.id = s.user_id WHERE u.email = 'banned@example.com'", &[])
        .await.unwrap().get(0);
    assert_eq!(sessions, 0);

    let token = app.user_token("files@example.com", false).await;
    let res = app
        .put_object(&token, "full/x.txt", "data", "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(error_code(res).await, "quota_exceeded");
    assert_eq!(
        app.get_object(&token, "full/x.txt").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put_object(&token, "docs/forbidden.txt", "data", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.put_object(&token, "docs/ok.txt", "data", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    let res = app.get_object(&token, "docs/forbidden.txt").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_object(&token, "docs/ok.txt")
            .await
            .text()
            .await
            .unwrap(),
        "data"
    );
    let h = hits(&app).await;
    assert_eq!(h["storage.after_upload"], 2, "{h}");
    assert_eq!(h["storage.before_download"], 2, "{h}");
    assert_eq!(h["storage.after_download"], 1, "{h}");
    assert!(
        h["user.signup"].as_u64().unwrap() >= 2 && h["user.login"].as_u64().unwrap() >= 2,
        "{h}"
    );
}

#[tokio::test]
async fn extension_services_are_confined_to_the_extension() {
    let app = spawn_app().await;
    // Database: unqualified names are the extension's own schema.
    let res = app
        .http
        .post(app.url("/ext/probe/items"))
        .json(&json!("first"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let label: String = app
        .db()
        .await
        .query_one("SELECT label FROM ext_probe.probe_items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(label, "first");
    // Storage: its own directory, no way out.
    let res = app
        .http
        .put(app.url("/ext/probe/files/notes/a.txt"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let stored =
        std::fs::read_to_string(app.data_dir.0.join("extensions/probe/notes/a.txt")).unwrap();
    assert_eq!(stored, "hi");
    let (status, _) = app
        .raw(
            "PUT /ext/probe/files/%2e%2e/%2e%2e/escape.txt HTTP/1.1",
            &[("Content-Length", "0")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(!app.data_dir.0.join("escape.txt").exists());
    assert!(!app.data_dir.0.join("extensions/escape.txt").exists());
}

#[tokio::test]
async fn configuration_comes_from_the_extension_file_and_bad_files_stop_only_that_extension() {
    let dir = TempDir::new();
    std::fs::write(dir.0.join("probe.toml"), "greeting = \"hi there\"\n").unwrap();
    let path = dir.0.clone();
    let app = TestApp::builder()
        .config(|c| c.extensions.config_dir = path)
        .spawn()
        .await;
    let cfg: Value = app.get("/ext/probe/config").await.json().await.unwrap();
    assert_eq!(cfg["greeting"], "hi there");

    let bad = TempDir::new();
    std::fs::write(bad.0.join("probe.toml"), "greting = 1\n").unwrap();
    let path = bad.0.clone();
    let app = TestApp::builder()
        .config(|c| c.extensions.config_dir = path)
        .spawn()
        .await;
    let res = app.get("/ext/probe/public").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let text = res.text().await.unwrap();
    assert!(
        text.contains("is not running") && text.contains("greting"),
        "{text}"
    );
    // The rest of the server and the other extensions carry on.
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let admin = app.user_token("admin@example.com", true).await;
    let list = list(&app, &admin).await;
    assert_eq!(find(&list, "webhooks")["active"], true);
    assert!(
        find(&list, "probe")["error"]
            .as_str()
            .unwrap()
            .contains("probe.toml")
    );
    let recorded: Option<String> = app
        .db()
        .await
        .query_one(
            "SELECT last_error FROM solobase.extensions WHERE name = 'probe'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(recorded.unwrap().contains("greting"));
}

#[tokio::test]
async fn webhooks_queue_deliveries_for_subscribed_events() {
    let app = TestApp::builder()
        .config(|c| c.auth.signup_enabled = true)
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let res = app
        .http
        .post(app.url("/ext/webhooks/api/endpoints"))
        .bearer_auth(&admin)
        .json(&json!({"url": "https://example.com/hook", "event_types": ["user.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .http
        .post(app.url("/ext/webhooks/api/endpoints"))
        .bearer_auth(&admin)
        .json(&json!({"url": "ftp://nope", "event_types": ["user.*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    app.signup("new@example.com", "password123").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list: Vec<Value> = app
            .http
            .get(app.url("/ext/webhooks/api/deliveries"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list.iter().any(|d| d["event_type"] == "user.created") {
            break;
        }
        assert!(Instant::now() < deadline, "no delivery queued: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_extension_storage_quota_refuses_writes_beyond_it_with_507() {
    let app = TestApp::builder()
        .config(|c| {
            c.extensions.limits.insert(
                "probe".into(),
                solobase::config::ExtensionLimits {
                    storage_quota_bytes: Some(10),
                    ..Default::default()
                },
            );
        })
        .spawn()
        .await;
    let put = |path: &'static str, body: &'static str| {
        app.http
            .put(app.url(&format!("/ext/probe/files/{path}")))
            .body(body)
            .send()
    };
    assert_eq!(
        put("a.txt", "12345678").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let res = put("b.txt", "12345").await.unwrap();
    assert_eq!(res.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_storage");
    assert!(
        !app.data_dir.0.join("extensions/probe/b.txt").exists(),
        "nothing written"
    );
    // Replacing a file counts only the difference.
    assert_eq!(
        put("a.txt", "1234").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put("b.txt", "12345").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let token = app.user_token("root@example.com", true).await;
    let listed = list(&app, &token).await;
    let stats = &find(&listed, "probe")["stats"];
    assert_eq!(
        (
            stats["storage_bytes"].as_u64(),
            stats["storage_quota_bytes"].as_u64()
        ),
        (Some(9), Some(10))
    );
    // Every limit it runs under is shown with the counters.
    let limits = &find(&listed, "probe")["limits"];
    assert_eq!(limits["storage_quota_bytes"], 10);
    for key in [
        "max_in_flight",
        "max_body_bytes",
        "cpu_budget_ms",
        "db_connections",
        "statement_timeout_ms",
    ] {
        assert!(limits[key].as_u64().is_some(), "{key} in {limits}");
    }
    assert!(limits["client_rate"]["per_second"].as_u64().is_some());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bytes_allocated_by_an_extensions_code_are_measured_and_shown() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let allocated = || async {
        app.extension(&admin, "probe").await["stats"]["allocated_bytes"]
            .as_u64()
            .unwrap()
    };
    let before = allocated().await;
    for _ in 0..3 {
        let res = app.get("/ext/probe/allocate/1000000").await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let after = allocated().await;
    assert!(
        after - before >= 3_000_000,
        "3 MB allocated by the handler, {} measured",
        after - before
    );
}

#[tokio::test]
async fn one_extension_its_health_and_its_metrics_have_their_own_routes() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let user = app.user_token("user@example.com", false).await;
    for _ in 0..3 {
        app.get("/ext/probe/public").await;
    }
    let get = |path: &str, token: Option<&str>| {
        let mut req = app.http.get(app.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    for path in [
        "/api/v1/extensions/probe",
        "/api/v1/extensions/probe/health",
        "/api/v1/extensions/probe/metrics",
    ] {
        assert_eq!(
            get(path, None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(path, Some(&user)).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }
    let one: Value = get("/api/v1/extensions/probe", Some(&admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "probe");
    let listed = list(&app, &admin).await;
    assert_eq!(one["routes"], find(&listed, "probe")["routes"]);
    let res = get("/api/v1/extensions/nope", Some(&admin)).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let health: Value = get("/api/v1/extensions/probe/health", Some(&admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(health["now"]["status"].is_string() && health["history"].is_array());
    let metrics: Value = get("/api/v1/extensions/probe/metrics", Some(&admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        metrics["stats"]["requests"].as_u64().unwrap() >= 3,
        "{metrics}"
    );
    assert!(
        metrics["hooks"]["pre_request"].as_u64().unwrap() >= 3,
        "{metrics}"
    );
    assert!(metrics["limits"]["max_in_flight"].is_u64());
}

#[tokio::test]
async fn migrations_are_planned_applied_and_rolled_back_through_the_api() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let user = app.user_token("user@example.com", false).await;
    let post = |path: &str, token: &str, body: &str| {
        app.http
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let db = app.db().await;
    let tables = || async {
        db.query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ext_probe'
             AND tablename IN ('probe_items', 'job_runs')",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    let rollback = "/api/v1/extensions/probe/rollback";
    let migrate = "/api/v1/extensions/probe/migrate";
    let res = post(rollback, &user, r#"{"to": 0}"#).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Everything is applied at start: nothing to do, and the plan down names the down scripts.
    let plan: Value = post(migrate, &admin, r#"{"dry_run": true}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["steps"], json!([]), "{plan}");
    let plan: Value = post(rollback, &admin, r#"{"to": 0, "dry_run": true}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        ["V2__job_runs.down.sql", "V1__probe_items.down.sql"],
        "{plan}"
    );
    assert!(plan["steps"][0]["sql"].as_str().unwrap().contains("DROP"));
    assert_eq!(tables().await, 2, "a dry run changes nothing");

    // Bad bodies and targets say what to send.
    let res = post(rollback, &admin, "").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = post(rollback, &admin, r#"{"to": 9, "dry_run": true}"#)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("no migration V9"));
    let res = post(migrate, &admin, r#"{"too": 1}"#).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Rolling back under a running extension is refused; disabled, it goes through.
    let res = post(rollback, &admin, r#"{"to": 1}"#).await.unwrap();
    assert_eq!(error_code(res).await, "extension_enabled");
    assert_eq!(tables().await, 2);
    let res = post("/api/v1/extensions/probe/disable", &admin, "")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let done: Value = post(rollback, &admin, r#"{"to": 1}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["reverted"], json!([2]), "{done}");
    assert_eq!(tables().await, 1);
    let plan: Value = post(migrate, &admin, r#"{"dry_run": true}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plan["steps"][0]["file"], "V2__job_runs.sql", "{plan}");
    let done: Value = post(migrate, &admin, "")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(done["applied"], json!([2]), "{done}");
    assert_eq!(tables().await, 2);

    // Rolled back while disabled, it is migrated up again when enabled, before it serves.
    post(rollback, &admin, r#"{"to": 0}"#).await.unwrap();
    assert_eq!(tables().await, 0);
    let res = post("/api/v1/extensions/probe/enable", &admin, "")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(tables().await, 2);
    let res = post("/ext/probe/items", &admin, r#""after a rollback""#)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let audited: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE extension = 'probe'
             AND action IN ('extension.migrate', 'extension.rollback')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(audited >= 4, "{audited}");
}
