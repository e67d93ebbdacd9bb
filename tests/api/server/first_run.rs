//! The first run: the log says where the server and its dashboard are; while no administrator
//! exists, a one-time link creates one (used once, expiring, refused once an administrator
//! exists by any means); `/` leads a person to the dashboard.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TempDir, TestApp, spawn_app};

/// The token of a setup link (`…/admin/#/setup/<token>`).
fn token_of(link: &str) -> String {
    link.split_once("#/setup/")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_else(|| panic!("not a setup link: {link}"))
}

async fn setup(app: &TestApp, token: &str, email: &str, password: &str) -> (StatusCode, Value) {
    let res = app
        .http
        .post(app.url("/api/v1/auth/setup"))
        .json(&json!({"token": token, "email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn admins(app: &TestApp) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.users WHERE role = 'admin'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_setup_link_creates_the_first_administrator_once() {
    let app = spawn_app().await;
    let link = app
        .setup_link
        .clone()
        .expect("a link while no administrator exists");
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{}/admin/#/setup/", app.port)),
        "{link}"
    );
    let token = token_of(&link);

    // Without the link, or with a forged one: nothing, and no hashing work for the server.
    for forged in ["", "sb_forged", &token[..token.len() - 1]] {
        let (status, body) = setup(&app, forged, "evil@example.com", "password123").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{forged:?}");
        assert_eq!(body["error"]["code"], "invalid_setup_link");
    }
    // A bad password does not spend the link.
    let (status, body) = setup(&app, &token, "owner@example.com", "short").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = setup(&app, &token, "owner@example.com", "password123").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    let admin = body["token"].as_str().unwrap().to_owned();
    let (status, me) = app.call(&admin, "GET", "/api/v1/auth/me", None).await;
    assert_eq!(
        (status, me["email"].clone()),
        (StatusCode::OK, json!("owner@example.com"))
    );

    // Replayed: refused, and still one administrator.
    let (status, body) = setup(&app, &token, "second@example.com", "password123").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "invalid_setup_link");
    assert_eq!(admins(&app).await, 1);
    // Audited, with the client it came from.
    let (_, audit) = app
        .call(&admin, "GET", "/api/v1/audit?action=auth.setup", None)
        .await;
    assert_eq!(audit["entries"][0]["detail"]["email"], "owner@example.com");
    assert_eq!(audit["entries"][0]["client"], "127.0.0.1");
    // The login form works with the new account.
    assert_eq!(
        app.login("owner@example.com", "password123").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn two_setups_at_once_make_one_administrator() {
    let app = spawn_app().await;
    let token = token_of(app.setup_link.as_deref().unwrap());
    let (a, b) = tokio::join!(
        setup(&app, &token, "a@example.com", "password123"),
        setup(&app, &token, "b@example.com", "password123"),
    );
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 403]);
    assert_eq!(admins(&app).await, 1);
}

#[tokio::test]
async fn links_expire_are_reissued_at_each_start_and_stop_once_an_administrator_exists() {
    let first = spawn_app().await;
    let db = first.db_name.clone();
    let old = token_of(first.setup_link.as_deref().unwrap());
    // Older than 30 minutes: refused.
    first
        .db()
        .await
        .execute(
            "UPDATE solobase.setup_links SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let (status, _) = setup(&first, &old, "late@example.com", "password123").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    first.stop().await.unwrap();

    // Each start prints a new link while no administrator exists.
    let second = TestApp::builder().on(db.clone()).spawn().await;
    let fresh = token_of(second.setup_link.as_deref().expect("a new link"));
    assert_ne!(fresh, old);
    // An administrator made another way (here as `solobase users create --admin` does): an
    // outstanding link is refused.
    second
        .create_user("cli-admin@example.com", "password123", true)
        .await;
    let (status, body) = setup(&second, &fresh, "owner@example.com", "password123").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "admin_exists");
    second.stop().await.unwrap();

    // With an administrator, no link at all.
    let third = TestApp::builder().on(db).spawn().await;
    assert_eq!(third.setup_link, None);
    assert_eq!(admins(&third).await, 1);
}

#[tokio::test]
async fn the_root_leads_a_person_to_the_dashboard() {
    let app = spawn_app().await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let res = app
            .http
            .request(method.clone(), app.url("/"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FOUND, "{method}");
        assert_eq!(res.headers()["location"], "/admin/");
    }
}

/// The binary as a newcomer runs it: the log says where the dashboard is and prints the link;
/// in a real browser the link creates the administrator and logs in, works once, and the
/// dashboard's own login then works.
#[tokio::test]
async fn a_newcomer_follows_the_printed_link_in_a_browser() {
    use crate::cdp::Browser;
    use crate::server::cli::Server;

    let dir = TempDir::new();
    let mut server = Server::start_with(&dir.0, &dir.0.join("data"), &[]);
    let dashboard = server.logged("admin dashboard:", Duration::from_secs(10));
    assert_eq!(
        dashboard,
        format!("admin dashboard: {}", server.url("/admin/"))
    );
    let message = server.logged("no administrator exists yet", Duration::from_secs(10));
    let link = message
        .split_whitespace()
        .find(|w| w.contains("#/setup/"))
        .unwrap_or_else(|| panic!("no link in {message:?}"))
        .to_owned();
    assert!(
        link.starts_with(&server.url("/admin/#/setup/sb_")),
        "{link}"
    );

    let mut browser = Browser::launch().await;
    browser.goto(&link).await;
    browser.wait_for("#setup-form").await;
    browser.fill("#setup-email", "owner@example.com").await;
    browser
        .fill("#setup-password", "correct horse battery")
        .await;
    browser.fill("#setup-again", "correct horse battery").await;
    browser.submit("#setup-form").await;
    // Logged in: the navigation shows, with who.
    browser
        .wait_until(
            "!document.getElementById('nav').hidden",
            "the dashboard logged in",
        )
        .await;
    browser.wait_for_text("#who", "owner@example.com").await;
    assert_eq!(browser.eval("location.hash").await, "#/extensions");

    // The same link again (another tab, nobody logged in): the page says it is spent.
    browser.eval("sessionStorage.clear()").await;
    browser.goto(&link).await;
    browser.eval("location.reload()").await;
    browser.wait_for("#setup-form").await;
    browser.fill("#setup-email", "intruder@example.com").await;
    browser.fill("#setup-password", "password123").await;
    browser.fill("#setup-again", "password123").await;
    browser.submit("#setup-form").await;
    browser
        .wait_for_text("#setup-error", "this setup link is not valid")
        .await;

    // The dashboard's own login works with the account the link created.
    browser.goto(&server.url("/admin/#/login")).await;
    browser.wait_for("#login-form").await;
    browser.fill("#email", "owner@example.com").await;
    browser.fill("#password", "correct horse battery").await;
    browser.submit("#login-form").await;
    browser.wait_for_text("#who", "owner@example.com").await;
    browser.close().await;

    // A person opening the server's address lands there too.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/admin/");
    server.signal("-TERM");
    let (status, _) = server.wait(Duration::from_secs(30));
    assert!(status.success());
}
