//! Ending sessions, tried as an attacker holding a token would: after a logout, a password
//! change, a revocation or a disabled account, the old token must be refused by host routes
//! and extension routes alike, through the HTTP API and the command line.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app};

const PASSWORD: &str = "password123";

async fn token_of(app: &TestApp, email: &str, password: &str) -> String {
    let res = app.login(email, password).await;
    assert_eq!(res.status(), StatusCode::OK, "{email} logs in");
    res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn id_of(app: &TestApp, token: &str) -> String {
    app.me(token).await.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post(app: &TestApp, path: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.http.post(app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// `GET /ext/probe/me` (an extension route that needs a caller) with `token` answers
/// `expected`.
#[cfg(feature = "probe")]
async fn assert_probe_me(app: &TestApp, token: &str, expected: StatusCode) {
    let res = app
        .http
        .get(app.url("/ext/probe/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, expected, "GET /ext/probe/me: {body}");
}

#[tokio::test]
async fn a_logged_out_token_is_refused_and_the_others_still_work() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, false).await;
    let laptop = token_of(&app, "ada@example.com", PASSWORD).await;
    let phone = token_of(&app, "ada@example.com", PASSWORD).await;

    let res = post(&app, "/api/v1/auth/logout", &laptop, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.me(&laptop).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "invalid_token");
    assert_eq!(
        post(&app, "/api/v1/auth/logout", &laptop, None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "a revoked token cannot be used, even to log out again"
    );
    #[cfg(feature = "probe")]
    assert_probe_me(&app, &laptop, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.me(&phone).await.status(), StatusCode::OK);
    #[cfg(feature = "probe")]
    assert_probe_me(&app, &phone, StatusCode::OK).await;
    // The revoked token is gone from the database, not merely hidden.
    let db = app.db().await;
    let left: i64 = db
        .query_one("SELECT count(*) FROM solobase.sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_and_ends_the_other_sessions() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, false).await;
    let mine = token_of(&app, "ada@example.com", PASSWORD).await;
    let stolen = token_of(&app, "ada@example.com", PASSWORD).await;

    // The thief cannot change it without the current password, and nothing changes.
    let res = post(
        &app,
        "/api/v1/auth/password",
        &stolen,
        Some(json!({"current_password": "a guess", "new_password": "thief's choice"})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "wrong_password");
    assert_eq!(app.me(&mine).await.status(), StatusCode::OK);
    // Too short a new password is refused before anything is checked.
    let res = post(
        &app,
        "/api/v1/auth/password",
        &mine,
        Some(json!({"current_password": PASSWORD, "new_password": "short"})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let res = post(
        &app,
        "/api/v1/auth/password",
        &mine,
        Some(json!({"current_password": PASSWORD, "new_password": "a new passphrase"})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["revoked_sessions"], 1);
    assert_eq!(app.me(&stolen).await.status(), StatusCode::UNAUTHORIZED);
    #[cfg(feature = "probe")]
    assert_probe_me(&app, &stolen, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.me(&mine).await.status(), StatusCode::OK);
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ada@example.com", "a new passphrase")
            .await
            .status(),
        StatusCode::OK
    );
    let db = app.db().await;
    let audited: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.audit_log \
             WHERE action = 'user.password' AND result = 'ok' \
               AND (detail->>'revoked_sessions')::int = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    let leaked: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE detail::text LIKE '%passphrase%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "no password in the audit log");
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_and_their_tokens_stop_working_everywhere() {
    let app = spawn_app().await;
    let admin = app.user_token("root@example.com", true).await;
    let user = app.user_token("mallory@example.com", false).await;
    let other = token_of(&app, "mallory@example.com", PASSWORD).await;
    let mallory = id_of(&app, &user).await;
    #[cfg(feature = "probe")]
    assert_probe_me(&app, &user, StatusCode::OK).await;

    // Only an administrator may disable, and not themself.
    let res = post(
        &app,
        &format!("/api/v1/users/{mallory}/disable"),
        &user,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let root = id_of(&app, &admin).await;
    let res = post(&app, &format!("/api/v1/users/{root}/disable"), &admin, None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let res = post(
        &app,
        &format!("/api/v1/users/{mallory}/disable"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body["disabled_at"].is_string(), "{body}");

    // Every token of theirs is refused at once, by host and extension routes.
    for token in [&user, &other] {
        let res = app.me(token).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(res).await, "invalid_token");
        #[cfg(feature = "probe")]
        assert_probe_me(&app, token, StatusCode::UNAUTHORIZED).await;
        let res = app
            .put_object(token, "files/after.txt", "x", "text/plain")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // A session row that outlived the disabling (another instance's login racing it) is
    // refused too: the lookup behind every request's caller refuses disabled accounts.
    let late = solobase::auth::token::random_token();
    let db = app.db().await;
    db.execute(
        "INSERT INTO solobase.sessions (token_hash, user_id, expires_at) \
         VALUES ($1, $2, now() + interval '1 hour')",
        &[
            &solobase::auth::token::token_hash(&late),
            &uuid::Uuid::parse_str(&mallory).unwrap(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(app.me(&late).await.status(), StatusCode::UNAUTHORIZED);
    #[cfg(feature = "probe")]
    assert_probe_me(&app, &late, StatusCode::UNAUTHORIZED).await;
    db.execute(
        "DELETE FROM solobase.sessions WHERE token_hash = $1",
        &[&solobase::auth::token::token_hash(&late)],
    )
    .await
    .unwrap();

    // Their login is refused with a clear error — but only with the right password, so the
    // state of an account is no one else's business.
    let res = app.login("mallory@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "account_disabled");
    let res = app.login("mallory@example.com", "not it at all").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "invalid_credentials");

    // The list shows it; enabling lets them log in again, their old tokens stay ended.
    let res = app
        .http
        .get(app.url("/api/v1/users"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let list: Vec<Value> = res.json().await.unwrap();
    let entry = list
        .iter()
        .find(|a| a["email"] == "mallory@example.com")
        .unwrap();
    assert!(entry["disabled_at"].is_string());
    assert_eq!(entry["live_sessions"], 0);
    let res = post(
        &app,
        &format!("/api/v1/users/{mallory}/enable"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.json::<Value>().await.unwrap()["disabled_at"].is_null());
    assert_eq!(app.me(&user).await.status(), StatusCode::UNAUTHORIZED);
    let fresh = token_of(&app, "mallory@example.com", PASSWORD).await;
    assert_eq!(app.me(&fresh).await.status(), StatusCode::OK);

    // Audited, with who did it.
    let rows = db
        .query(
            "SELECT action, result, actor FROM solobase.audit_log \
             WHERE action LIKE 'user.%' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "user.disable".into(),
                "denied".into(),
                format!("user:{mallory}")
            ),
            ("user.disable".into(), "ok".into(), format!("user:{root}")),
            ("user.enable".into(), "ok".into(), format!("user:{root}")),
        ]
    );
}

#[tokio::test]
async fn users_end_their_own_sessions_and_administrators_anyone_s() {
    let app = spawn_app().await;
    let admin = app.user_token("root@example.com", true).await;
    let ada = app.user_token("ada@example.com", false).await;
    let ada_too = token_of(&app, "ada@example.com", PASSWORD).await;
    let bob = app.user_token("bob@example.com", false).await;
    let bob_too = token_of(&app, "bob@example.com", PASSWORD).await;
    let ada_id = id_of(&app, &ada).await;
    let bob_id = id_of(&app, &bob).await;

    let revoke = |token: String, id: String| {
        let app = &app;
        async move {
            app.http
                .delete(app.url(&format!("/api/v1/users/{id}/sessions")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Ada may not end Bob's sessions.
    let res = revoke(ada.clone(), bob_id.clone()).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.me(&bob).await.status(), StatusCode::OK);
    // Her own: all of them, this one included.
    let res = revoke(ada.clone(), ada_id.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["revoked_sessions"], 2);
    assert_eq!(app.me(&ada).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&ada_too).await.status(), StatusCode::UNAUTHORIZED);
    // An administrator: Bob's.
    let res = revoke(admin.clone(), bob_id.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.me(&bob).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&bob_too).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.me(&admin).await.status(), StatusCode::OK);
    let res = revoke(admin.clone(), uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// `solobase users …` against the database of a running server: the server refuses what the
/// command line ended, at once.
#[tokio::test]
async fn the_command_line_ends_sessions_while_a_server_runs() {
    let app = spawn_app().await;
    let user = app.user_token("ada@example.com", false).await;
    let url = crate::helpers::database_url(&app.db_name);
    let cli = |args: &'static [&'static str]| {
        let url = url.clone();
        let dir = app.data_dir.0.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = crate::server::cli::solobase(&dir);
                cmd.args(["users"])
                    .args(args)
                    .args(["--database-url", &url]);
                let out = crate::server::cli::run(cmd, std::time::Duration::from_secs(60));
                assert!(
                    out.status.success(),
                    "users {args:?}: {}",
                    crate::server::cli::stderr(&out)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .await
            .unwrap()
        }
    };

    let out = cli(&["disable", "--email", "ada@example.com"]).await;
    assert!(out.contains("ended 1 session"), "{out}");
    assert_eq!(app.me(&user).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("ada@example.com", PASSWORD).await.status(),
        StatusCode::FORBIDDEN
    );
    let out = cli(&["list", "--json"]).await;
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(list[0]["disabled_at"].is_string(), "{out}");
    cli(&["enable", "--email", "ada@example.com"]).await;
    let token = token_of(&app, "ada@example.com", PASSWORD).await;

    let out = cli(&[
        "set-password",
        "--email",
        "ada@example.com",
        "--password",
        "another passphrase",
    ])
    .await;
    assert!(out.contains("ended 1 session"), "{out}");
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);
    let token = token_of(&app, "ada@example.com", "another passphrase").await;
    cli(&["revoke-sessions", "--email", "ada@example.com"]).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::UNAUTHORIZED);

    let db = app.db().await;
    let actors: Vec<String> = db
        .query(
            "SELECT DISTINCT actor FROM solobase.audit_log WHERE action LIKE 'user.%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        actors.len() == 1 && actors[0].starts_with("cli:"),
        "{actors:?}"
    );
}

/// Red team: a login that checked the old password while its owner was changing it must not
/// hand out a session that outlives the change. The test holds the outbox (which a login
/// writes its `user.login` event to, after inserting its session row) so that the login's
/// transaction commits only after the password change has committed and ended "every other
/// session"; a stolen password used at the moment its owner changes it must not survive.
#[tokio::test]
async fn a_login_racing_a_password_change_gets_no_session_that_outlives_it() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", PASSWORD, false).await;
    let mine = token_of(&app, "ada@example.com", PASSWORD).await;

    // Hold every writer of the outbox (readers pass).
    let mut db = app.db().await;
    let hold = db.transaction().await.unwrap();
    hold.batch_execute("LOCK TABLE solobase.outbox IN EXCLUSIVE MODE")
        .await
        .unwrap();

    // The thief logs in with the old password; it verifies, then waits on the outbox.
    let thief = {
        let http = app.http.clone();
        let url = app.url("/api/v1/auth/login");
        tokio::spawn(async move {
            http.post(url)
                .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        })
    };
    let probe = app.db().await;
    let waiting = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        probe
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO solobase.outbox%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    assert!(waiting, "the thief's login waits on the outbox");

    // The owner changes the password meanwhile.
    let change = {
        let http = app.http.clone();
        let url = app.url("/api/v1/auth/password");
        let mine = mine.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(mine)
                .json(&json!({"current_password": PASSWORD, "new_password": "a new passphrase"}))
                .send()
                .await
                .unwrap()
        })
    };
    // Long enough for the change to commit when nothing holds it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    hold.commit().await.unwrap();

    let change = change.await.unwrap();
    assert_eq!(
        change.status(),
        StatusCode::OK,
        "the owner's change succeeds"
    );
    let thief = thief.await.unwrap();
    if thief.status() == StatusCode::OK {
        let token = thief.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = app.me(&token).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "a session opened with the old password outlives the password change"
        );
    } else {
        assert_eq!(thief.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.me(&mine).await.status(), StatusCode::OK);
}

/// Red team: an extension's authentication hook can only name a user (the SDK's `UserInfo`
/// does not say whether the account is disabled), so the host must refuse a disabled
/// account it vouches for on extension routes too, as it does on host routes.
#[cfg(feature = "probe")]
#[tokio::test]
async fn a_disabled_account_vouched_for_by_an_authentication_hook_is_refused_on_extension_routes() {
    let app = spawn_app().await;
    let admin = app.user_token("root@example.com", true).await;
    let user = app.user_token("mallory@example.com", false).await;
    let mallory = id_of(&app, &user).await;
    let vouched = [
        ("x-probe-key", "letmein"),
        ("x-probe-user", "mallory@example.com"),
    ];
    let get = |path: &'static str| {
        let mut req = app.http.get(app.url(path));
        for (k, v) in vouched {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(get("/ext/probe/me").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("/api/v1/auth/me").await.unwrap().status(),
        StatusCode::OK
    );

    let res = post(
        &app,
        &format!("/api/v1/users/{mallory}/disable"),
        &admin,
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);

    // The host's own routes refuse the disabled account the hook vouches for…
    assert_eq!(
        get("/api/v1/auth/me").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // …and so must extension routes.
    let res = get("/ext/probe/me").await.unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled account still reaches an extension route: {body}"
    );
}

/// An instance to ask: a server in this process or another.
#[cfg(feature = "probe")]
type Base<'a> = (&'a reqwest::Client, String);

/// `GET path` with `token` at `base`: the status.
#[cfg(feature = "probe")]
async fn status_of(base: &Base<'_>, path: &str, token: &str) -> StatusCode {
    base.0
        .get(format!("{}{path}", base.1))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// A sample of `name` (with `labels`) in the metrics of `base`.
#[cfg(feature = "probe")]
async fn metric(base: &Base<'_>, admin: &str, name: &str, labels: &[&str]) -> f64 {
    let res = base
        .0
        .get(format!("{}/metrics", base.1))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    crate::helpers::sample(&res.text().await.unwrap(), name, labels)
}

/// Two instances on one database — this test's server and a second `solobase serve`
/// process — each keeping sessions and role permissions in memory. The attacker holds a
/// token (or a role's permission) that both have just answered from memory; the change is
/// made on one. The instance that made it refuses at once; the other as soon as PostgreSQL
/// notifies it (within a second here, in practice milliseconds).
#[cfg(feature = "probe")]
#[tokio::test]
async fn sessions_and_permissions_in_memory_are_forgotten_at_every_change_on_every_instance() {
    use std::time::Duration;

    use crate::helpers::{TempDir, database_url, eventually, fresh_database};
    use crate::server::cli::Server;
    let db_name = fresh_database().await;
    let app = TestApp::builder().on(db_name.clone()).spawn().await;
    let dir = TempDir::new();
    let url = database_url(&db_name);
    let server = Server::start_with(
        &dir.0,
        &dir.0.join("data"),
        &[("DATABASE_URL", url.as_str())],
    );
    let a: Base<'_> = (&app.http, app.url(""));
    let b: Base<'_> = (&app.http, server.url(""));
    let admin = app.user_token("root@example.com", true).await;
    for base in [&a, &b] {
        let listening = eventually(Duration::from_secs(10), || async {
            metric(base, &admin, "auth_cache_listening", &[]).await == 1.0
        })
        .await;
        assert!(listening, "each instance listens for changes");
    }
    let hits = |base, kind: &'static str| {
        let admin = admin.clone();
        async move {
            metric(
                base,
                &admin,
                "auth_cache_lookups_total",
                &[&format!("kind=\"{kind}\""), "result=\"hit\""],
            )
            .await
        }
    };
    let eve = app.user_token("eve@example.com", false).await;
    let perm = "/ext/probe/perm";
    let grant = app.url("/api/v1/roles/user/permissions/probe.use");

    // Refused without the permission; the second answer on each instance comes from memory.
    let before = hits(&b, "permissions").await;
    for base in [&a, &b, &a, &b] {
        assert_eq!(status_of(base, perm, &eve).await, StatusCode::FORBIDDEN);
    }
    assert!(
        hits(&b, "permissions").await > before,
        "the permissions were answered from memory (else this test proves nothing)"
    );

    // Granted on A: A serves at once, B once told.
    let res = app
        .http
        .put(&grant)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(status_of(&a, perm, &eve).await, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(1), || async {
            status_of(&b, perm, &eve).await == StatusCode::OK
        })
        .await,
        "B serves the granted permission"
    );

    // Revoked on A, while both hold the grant in memory: refused at once on A, and on B once
    // told — never again served.
    for base in [&a, &b, &a, &b] {
        assert_eq!(status_of(base, perm, &eve).await, StatusCode::OK);
    }
    let res = app
        .http
        .delete(&grant)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(status_of(&a, perm, &eve).await, StatusCode::FORBIDDEN);
    assert!(
        eventually(Duration::from_secs(1), || async {
            status_of(&b, perm, &eve).await == StatusCode::FORBIDDEN
        })
        .await,
        "B refuses the revoked permission"
    );
    for base in [&a, &b] {
        assert_eq!(status_of(base, perm, &eve).await, StatusCode::FORBIDDEN);
    }

    // A session both instances answered from memory, ended on B: refused at once on B, then
    // on A, by host and extension routes.
    let before = hits(&a, "session").await;
    for base in [&a, &b, &a, &b] {
        assert_eq!(status_of(base, "/ext/probe/me", &eve).await, StatusCode::OK);
        assert_eq!(
            status_of(base, "/api/v1/auth/me", &eve).await,
            StatusCode::OK
        );
    }
    assert!(
        hits(&a, "session").await > before,
        "the session was answered from memory"
    );
    let res = app
        .http
        .post(server.url("/api/v1/auth/logout"))
        .bearer_auth(&eve)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for path in ["/api/v1/auth/me", "/ext/probe/me"] {
        assert_eq!(status_of(&b, path, &eve).await, StatusCode::UNAUTHORIZED);
    }
    assert!(
        eventually(Duration::from_secs(1), || async {
            status_of(&a, "/api/v1/auth/me", &eve).await == StatusCode::UNAUTHORIZED
        })
        .await,
        "A refuses the ended session"
    );
    for path in ["/api/v1/auth/me", "/ext/probe/me"] {
        for base in [&a, &b] {
            assert_eq!(status_of(base, path, &eve).await, StatusCode::UNAUTHORIZED);
        }
    }

    // A disabled account, from memory on both: refused at once where disabled, then
    // everywhere.
    let mallory = app.user_token("mallory@example.com", false).await;
    let id = id_of(&app, &mallory).await;
    for base in [&a, &b, &a, &b] {
        assert_eq!(
            status_of(base, "/api/v1/auth/me", &mallory).await,
            StatusCode::OK
        );
    }
    let res = post(&app, &format!("/api/v1/users/{id}/disable"), &admin, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        status_of(&a, "/api/v1/auth/me", &mallory).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        eventually(Duration::from_secs(1), || async {
            status_of(&b, "/api/v1/auth/me", &mallory).await == StatusCode::UNAUTHORIZED
        })
        .await,
        "B refuses the disabled account's token"
    );
}
