//! Permissions granted by an administrator: through the API and the command line, persisted,
//! applied by a running server at once (notified) or at its next re-read (a lost
//! notification), and enforced by the host's services.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TempDir, TestApp, connect, database_url, error_code, eventually, fresh_database,
};
use crate::server::cli::{run, solobase, stderr};

/// The probe as the extension list shows it.
async fn probe_entry(app: &TestApp, admin: &str) -> Value {
    app.extension(admin, "probe").await
}

async fn enable(app: &TestApp, admin: &str, body: Option<Value>) -> reqwest::Response {
    let req = app
        .http
        .post(app.url("/api/v1/extensions/probe/enable"))
        .bearer_auth(admin);
    match body {
        Some(body) => req.json(&body),
        None => req,
    }
    .send()
    .await
    .unwrap()
}

/// A request the probe authenticates by looking the user up (needs users.read).
async fn keyed_me(app: &TestApp) -> reqwest::Response {
    app.http
        .get(app.url("/ext/probe/me"))
        .header("x-probe-key", "letmein")
        .header("x-probe-user", "keyed@example.com")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_administrator_grants_what_an_extension_requests_when_enabling_and_may_revoke_it() {
    let db_name = fresh_database().await;
    let app = TestApp::builder()
        .on(db_name)
        .config(|c| c.extensions.grant_on_first_sight = false)
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let user = app.user_token("keyed@example.com", false).await;

    // New to this database and nothing granted: disabled, everything pending.
    let probe = probe_entry(&app, &admin).await;
    assert_eq!(probe["enabled"], false, "{probe}");
    assert_eq!(
        probe["permissions"]["pending"],
        json!([
            "events.subscribe",
            "storage.read",
            "storage.write",
            "users.read"
        ])
    );
    assert_eq!(probe["permissions"]["granted"], json!([]));
    assert_eq!(
        app.get("/ext/probe/public").await.status(),
        StatusCode::NOT_FOUND
    );

    // Enabling needs a decision on the pending permissions.
    let res = enable(&app, &admin, None).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permissions_pending");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("users.read") && message.contains("grant_all"),
        "{message}"
    );
    // Only requested permissions can be granted; the body is checked.
    let res = enable(&app, &admin, Some(json!({"grant": ["network.outbound"]}))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not request \"network.outbound\""),
        "{body}"
    );
    for bad in [
        json!({"grant_al": true}),
        json!({"grant_all": true, "grant": []}),
    ] {
        let res = enable(&app, &admin, Some(bad)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_code(res).await, "invalid_request");
    }
    // A non-admin can do none of it.
    let res = app
        .http
        .delete(app.url("/api/v1/extensions/probe/grants/users.read"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/ext/probe/public").await.status(),
        StatusCode::NOT_FOUND
    );

    // Granting one permission enables it with that one.
    let res = enable(&app, &admin, Some(json!({"grant": ["users.read"]}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["permissions"]["granted"], json!(["users.read"]));
    assert_eq!(
        body["permissions"]["pending"],
        json!(["events.subscribe", "storage.read", "storage.write"])
    );
    assert_eq!(app.get("/ext/probe/public").await.status(), StatusCode::OK);
    let res = keyed_me(&app).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Revoked: the user lookup is refused at once (PermissionDenied), so the probe identifies
    // nobody and the route asks for credentials.
    let res = app
        .http
        .delete(app.url("/api/v1/extensions/probe/grants/users.read"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = keyed_me(&app).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let probe = probe_entry(&app, &admin).await;
    assert_eq!(probe["permissions"]["granted"], json!([]));
    assert!(probe["permissions"]["denied_calls"].as_u64().unwrap() >= 1);
    // Revoking what it does not hold says what it holds.
    let res = app
        .http
        .delete(app.url("/api/v1/extensions/probe/grants/users.read"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Persisted and audited, with who did it.
    let db = app.db().await;
    let rows = db
        .query(
            "SELECT action, result, actor, detail FROM solobase.audit_log \
             WHERE extension = 'probe' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for expected in [
        ("extension.enable", "failed"),
        ("extension.revoke", "denied"),
        ("extension.grant", "ok"),
        ("extension.enable", "ok"),
        ("extension.revoke", "ok"),
        ("extension.revoke", "failed"),
    ] {
        assert!(
            seen.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {seen:?}"
        );
    }
    let grant = rows
        .iter()
        .find(|r| r.get::<_, String>(0) == "extension.grant" && r.get::<_, String>(2) != "system")
        .unwrap();
    assert!(grant.get::<_, String>(2).starts_with("user:"));
    assert_eq!(
        grant.get::<_, Value>(3)["permissions"],
        json!(["users.read"])
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_command_line_grants_and_running_servers_apply_it_when_notified() {
    let db_name = fresh_database().await;
    // No periodic re-read during this test: only the notification can deliver the changes.
    let app = TestApp::builder()
        .on(db_name.clone())
        .config(|c| {
            c.extensions.grant_on_first_sight = false;
            c.extensions.resync_secs = 3600;
        })
        .spawn()
        .await;
    app.create_user("keyed@example.com", "password123", false)
        .await;
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let ext = |args: &[&str]| {
        let mut cmd = solobase(&dir.0);
        cmd.arg("extensions")
            .args(args)
            .args(["--database-url", &url]);
        run(cmd, Duration::from_secs(60))
    };
    let stdout = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let out = ext(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("probe "))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(" no ") && line.contains("users.read"),
        "{line}"
    );
    let out = ext(&["list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let probe = listed.iter().find(|e| e["name"] == "probe").unwrap();
    assert_eq!(probe["enabled"], false);
    assert_eq!(probe["compiled"], true);
    assert_eq!(
        probe["permissions"]["pending"],
        json!([
            "events.subscribe",
            "storage.read",
            "storage.write",
            "users.read"
        ])
    );

    // Not a terminal and no --grant… flag: refused with what to pass, nothing changed.
    let out = ext(&["enable", "probe"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--grant-all"), "{}", stderr(&out));
    let out = ext(&["enable", "probe", "--grant", "network.outbound"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("it requests: events.subscribe, storage.read, storage.write, users.read")
    );
    assert_eq!(
        app.get("/ext/probe/public").await.status(),
        StatusCode::NOT_FOUND
    );

    let out = ext(&["enable", "probe", "--grant-all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("granted: events.subscribe, storage.read, storage.write, users.read")
    );
    let notified = std::time::Instant::now();
    let applied = eventually(Duration::from_secs(10), || async {
        keyed_me(&app).await.status() == StatusCode::OK
    })
    .await;
    if !applied {
        let res = keyed_me(&app).await;
        let admin = app.user_token("admin@example.com", true).await;
        panic!(
            "the server did not apply the enable and the grants: {} {}; probe: {}",
            res.status(),
            res.text().await.unwrap_or_default(),
            app.extension(&admin, "probe").await
        );
    }
    println!(
        "a CLI enable reached the running server within {} ms of the command's exit",
        notified.elapsed().as_millis()
    );

    let out = ext(&["revoke", "probe", "users.read"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(10), || async {
            keyed_me(&app).await.status() == StatusCode::UNAUTHORIZED
        })
        .await,
        "the server applied the revocation"
    );
    let out = ext(&["revoke", "probe", "users.read"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not hold"), "{}", stderr(&out));

    let out = ext(&["disable", "probe"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get("/ext/probe/public").await.status() == StatusCode::NOT_FOUND
        })
        .await,
        "the server applied the disable"
    );
    let db = connect(&db_name).await;
    let actors: Vec<String> = db
        .query(
            "SELECT DISTINCT actor FROM solobase.audit_log WHERE extension = 'probe' \
             AND action IN ('extension.grant', 'extension.revoke', 'extension.disable')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !actors.is_empty() && actors.iter().all(|a| a.starts_with("cli:")),
        "{actors:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_change_whose_notification_was_lost_is_applied_at_the_next_re_read() {
    let db_name = fresh_database().await;
    let app = TestApp::builder()
        .on(db_name.clone())
        .config(|c| c.extensions.resync_secs = 1)
        .spawn()
        .await;
    assert_eq!(app.get("/ext/probe/public").await.status(), StatusCode::OK);
    // Changed behind the host's back: no notification.
    let db = connect(&db_name).await;
    db.execute(
        "UPDATE solobase.extensions SET enabled = false WHERE name = 'probe'",
        &[],
    )
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.get("/ext/probe/public").await.status() == StatusCode::NOT_FOUND
        })
        .await,
        "the periodic re-read applied it"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn extensions_use_the_host_file_storage_only_as_granted() {
    let app = crate::helpers::spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;
    let user = app.user_token("someone@example.com", false).await;
    let res = app
        .put_object(&user, "docs/a.txt", b"from a user".to_vec(), "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Signed-in users read this bucket (the probe's files have no owner: in a private
    // bucket only administrators would).
    let res = app
        .http
        .put(app.url("/api/v1/buckets/docs"))
        .bearer_auth(&admin)
        .json(&json!({"access": "authenticated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Granted on first sight: the probe reads what users uploaded, for a caller who may …
    let res = app
        .http
        .get(app.url("/ext/probe/shared/docs/a.txt"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.text().await.unwrap(), "from a user");
    assert_eq!(
        app.get("/ext/probe/shared/docs/a.txt").await.status(),
        StatusCode::NOT_FOUND,
        "not for an anonymous caller"
    );
    assert_eq!(
        app.get("/ext/probe/shared/docs/none.txt").await.status(),
        StatusCode::NOT_FOUND
    );
    // … and writes files users read, recorded without an owner and announced.
    let res = app
        .http
        .put(app.url("/ext/probe/shared/docs/sub/b.txt"))
        .header("content-type", "text/csv")
        .body("from the probe")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.get_object(&user, "docs/sub/b.txt").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/csv");
    assert_eq!(res.text().await.unwrap(), "from the probe");
    let db = app.db().await;
    let owner: Option<uuid::Uuid> = db
        .query_one(
            "SELECT owner_id FROM solobase.storage_objects WHERE path = 'sub/b.txt'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, None);
    let event: Value = db
        .query_one(
            "SELECT data FROM solobase.outbox WHERE event_type = 'storage.uploaded' \
             AND data->>'path' = 'sub/b.txt'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(event["extension"], "probe");
    // Nobody owns it: a user may not delete it, an admin may.
    assert_eq!(
        app.delete_object(&user, "docs/sub/b.txt").await.status(),
        StatusCode::FORBIDDEN
    );
    // The storage rules hold for extensions too.
    let res = app
        .http
        .put(app.url("/ext/probe/shared/Bad/x.txt"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = app
        .http
        .put(app.url("/ext/probe/shared/docs/x.txt"))
        .header("content-type", "nonsense")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Without storage.read it reads nothing; without storage.write it changes nothing.
    for permission in ["storage.read", "storage.write"] {
        let res = app
            .http
            .delete(app.url(&format!("/api/v1/extensions/probe/grants/{permission}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.get("/ext/probe/shared/docs/a.txt").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "permission_denied");
    let res = app
        .http
        .delete(app.url("/ext/probe/shared/docs/a.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.get_object(&user, "docs/a.txt").await.status(),
        StatusCode::OK,
        "nothing was deleted"
    );
    // Granted again: it deletes.
    let res = enable(&app, &admin, Some(json!({"grant": ["storage.write"]}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .delete(app.url("/ext/probe/shared/docs/sub/b.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!(true));
    assert_eq!(
        app.get_object(&user, "docs/sub/b.txt").await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn extensions_in_use_before_grants_existed_keep_what_they_request() {
    let db_name = fresh_database().await;
    let app = TestApp::builder().on(db_name.clone()).spawn().await;
    app.stop().await.unwrap();
    // As a database from before grants: nothing granted, nothing decided.
    let db = connect(&db_name).await;
    db.batch_execute(
        "DELETE FROM solobase.extension_grants; \
         UPDATE solobase.extensions SET grants_decided = NULL",
    )
    .await
    .unwrap();
    let app = TestApp::builder()
        .on(db_name)
        .config(|c| c.extensions.grant_on_first_sight = false)
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let probe = probe_entry(&app, &admin).await;
    assert_eq!(probe["enabled"], true);
    assert_eq!(probe["permissions"]["pending"], json!([]), "{probe}");
    app.stop().await.unwrap();
}

/// Outbound HTTP is a host service like the others: an extension whose manifest does not
/// request `network.outbound` (the probe) gets `permission_denied` from `ctx.http`, reaches
/// nothing, and the refusal is counted and audited.
#[tokio::test]
async fn outbound_http_without_its_permission_is_refused_counted_and_audited() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = TestApp::builder()
        .config(|c| {
            // Even with the address allowed: the permission is checked first.
            c.extensions.outbound_allow = vec!["127.0.0.1".into()];
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let res = app.get(&format!("/ext/probe/outbound/{port}")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "permission_denied", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("network.outbound"),
        "{body}"
    );
    assert!(
        listener.accept().is_err(),
        "no connection reached the address"
    );
    let text = app.metrics_text(&admin).await;
    let denied = crate::helpers::sample(
        &text,
        "extension_outbound_requests_total",
        &["extension=\"probe\"", "outcome=\"denied\""],
    );
    assert_eq!(denied, 1.0, "{text}");
    let db = app.db().await;
    let audited = crate::helpers::eventually(Duration::from_secs(10), || async {
        db.query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE action = 'extension.permission_denied' \
             AND extension = 'probe' AND detail->>'permission' = 'network.outbound'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
            == 1
    })
    .await;
    assert!(audited, "the refusal is audited");
}
