use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app};

#[tokio::test]
async fn login_returns_a_token_that_identifies_the_user() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "correct horse", false)
        .await;
    let res = app.login("ada@example.com", "correct horse").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("sb_"));
    let expires = time::OffsetDateTime::parse(
        body["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = expires - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::hours(23) && ttl <= time::Duration::hours(24),
        "{ttl}"
    );

    let me: Value = app.me(token).await.json().await.unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["role"], "user");
    assert!(me.get("password_hash").is_none());
    // Emails match case-insensitively.
    assert_eq!(
        app.login("ADA@example.com", "correct horse").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "correct horse", false)
        .await;
    let wrong = app.login("ada@example.com", "wrong horse").await;
    let unknown = app.login("nobody@example.com", "correct horse").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
}

#[tokio::test]
async fn me_requires_a_valid_live_token() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/auth/me").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthenticated");
    for bad in ["garbage", "sb_short", &format!("sb_{}", "A".repeat(43))] {
        let res = app.me(bad).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(error_code(res).await, "invalid_token");
    }
    let res = app
        .http
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, "invalid_token");

    let token = app.user_token("ada@example.com", false).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // Expired by hand in SQL, notifying as docs/operating.md says a hand edit must (the
    // instance answers sessions from memory until told).
    app.db()
        .await
        .batch_execute(
            "BEGIN; UPDATE solobase.sessions SET expires_at = now() - interval '1 second'; \
             SELECT pg_notify('solobase_auth', ''); COMMIT",
        )
        .await
        .unwrap();
    let refused = crate::helpers::eventually(std::time::Duration::from_secs(2), || async {
        app.me(&token).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(refused, "the expired token is refused");
    assert_eq!(error_code(app.me(&token).await).await, "invalid_token");
}

#[tokio::test]
async fn tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    let token = app.user_token("ada@example.com", false).await;
    let rows = app
        .db()
        .await
        .query("SELECT token_hash FROM solobase.sessions", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored: Vec<u8> = rows[0].get(0);
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&token[3..]));
}

#[tokio::test]
async fn signup_is_refused_when_disabled() {
    let app = spawn_app().await;
    let res = app.signup("new@example.com", "password123").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "signup_disabled");
}

#[tokio::test]
async fn signup_creates_a_user_and_records_the_event() {
    let app = TestApp::builder()
        .config(|c| c.auth.signup_enabled = true)
        .spawn()
        .await;
    let res = app.signup("new@example.com", "password123").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        app.me(body["token"].as_str().unwrap()).await.status(),
        StatusCode::OK
    );
    assert_eq!(body["user"]["role"], "user");

    let res = app.signup("NEW@example.com", "password123").await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(res).await, "email_taken");
    let res = app.signup("not-an-email", "password123").await;
    assert_eq!(error_code(res).await, "invalid_request");
    let res = app.signup("short@example.com", "short").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let outbox = app
        .db()
        .await
        .query(
            "SELECT event_type, data FROM solobase.outbox ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let types: Vec<String> = outbox.iter().map(|r| r.get(0)).collect();
    assert_eq!(types, ["user.created", "user.login"]);
    let data: Value = outbox[0].get(1);
    assert_eq!(data["email"], "new@example.com");
}

#[tokio::test]
async fn malformed_bodies_get_the_error_shape() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/auth/login");
    let res = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "invalid_request");
    let res = app
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(error_code(res).await, "unsupported_media_type");
    let res = app
        .http
        .post(&url)
        .json(&json!({"email": "a@b.c"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(res).await, "invalid_request");
    let huge = "x".repeat(100_000);
    let res = app
        .http
        .post(&url)
        .json(&json!({"email": huge, "password": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(res).await, "payload_too_large");
}

#[tokio::test]
async fn the_first_admin_is_created_from_the_environment_once() {
    let seed = || solobase::config::AdminSeed {
        email: "root@example.com".into(),
        password: "admin-password".into(),
    };
    let app = TestApp::builder()
        .config(|c| c.bootstrap_admin = Some(seed()))
        .spawn()
        .await;
    let res = app.login("root@example.com", "admin-password").await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");
    // A second start with another seed leaves the existing admin alone.
    let db = app.db_name.clone();
    let again = TestApp::builder()
        .on(db)
        .config(|c| {
            c.bootstrap_admin = Some(solobase::config::AdminSeed {
                email: "other@example.com".into(),
                password: "admin-password".into(),
            });
        })
        .spawn()
        .await;
    let admins: i64 = again
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.users WHERE role = 'admin'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(admins, 1);
}
