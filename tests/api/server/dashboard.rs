//! The admin dashboard at `/admin`: its files as the server sends them, and an administrator's
//! work in a real headless Chromium against the real server — log in, watch the extensions,
//! disable and re-enable one (granting a permission again), reconfigure it (an invalid value,
//! a valid one, a stale edit), read the audit log, log out.

use reqwest::StatusCode;
#[cfg(feature = "probe")]
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary_with_a_strict_policy() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/admin", "text/html"),
        ("/admin/", "text/html"),
        ("/admin/app.js", "text/javascript"),
        ("/admin/extensions.js", "text/javascript"),
        ("/admin/app.css", "text/css"),
        ("/admin/favicon.svg", "image/svg+xml"),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert!(header("content-type").starts_with(content_type), "{path}");
        let policy = header("content-security-policy");
        assert!(
            policy.contains("default-src 'none'")
                && policy.contains("script-src 'self'")
                && policy.contains("frame-ancestors 'none'")
                && !policy.contains("unsafe"),
            "{path}: {policy}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        let etag = header("etag");
        assert!(etag.starts_with('"'), "{path}: {etag}");
        let body = res.bytes().await.unwrap();
        assert!(!body.is_empty());
        // Revalidation: the same file costs a 304 and no body.
        let res = app.get_with(path, &[("if-none-match", &etag)]).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(res.bytes().await.unwrap().is_empty());
    }
    let page = app.get("/admin/").await.text().await.unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from another origin"
    );
    assert_eq!(app.get("/admin/missing.js").await.status(), 404);
    app.stop().await.unwrap();
}

/// In the browser, as an administrator: everything the dashboard is for, checked against the
/// API and the database.
#[cfg(feature = "probe")]
#[tokio::test]
async fn an_administrator_manages_an_extension_in_the_browser() {
    use crate::cdp::Browser;

    // Frequent health checks, so that the page has a history to show.
    let app = crate::helpers::TestApp::builder()
        .config(|c| c.extensions.health_interval_ms = 300)
        .spawn()
        .await;
    let password = "correct horse battery";
    app.create_user("admin@example.com", password, true).await;
    app.create_user("user@example.com", password, false).await;
    let token = app.user_token("other-admin@example.com", true).await;
    let mut browser = Browser::launch().await;

    // Log in: a wrong password is refused on the form, the right one shows the extensions.
    browser.goto(&app.url("/admin/")).await;
    browser.fill("#email", "admin@example.com").await;
    browser.fill("#password", "not the password").await;
    browser.submit("#login-form").await;
    browser
        .wait_for_text("#login-error", "wrong email or password")
        .await;
    browser.fill("#email", "user@example.com").await;
    browser.fill("#password", password).await;
    browser.submit("#login-form").await;
    browser
        .wait_for_text("#login-error", "not an administrator")
        .await;
    assert_eq!(browser.eval("sessionStorage.length").await, 0);
    browser.fill("#email", "admin@example.com").await;
    browser.fill("#password", password).await;
    browser.submit("#login-form").await;
    let probe = "#extensions-body tr[data-name=\"probe\"]";
    browser.wait_for(probe).await;
    assert!(
        browser
            .text(&format!("{probe} .enabled"))
            .await
            .contains("yes")
    );
    assert!(
        browser
            .text("#extensions-body tr[data-name=\"webhooks\"]")
            .await
            .contains("webhooks")
    );

    // Traffic between two refreshes: a request rate and the error count appear.
    for _ in 0..6 {
        assert_eq!(app.get("/ext/probe/public").await.status(), 200);
    }
    for _ in 0..3 {
        assert_eq!(app.get("/ext/probe/boom").await.status(), 500);
    }
    browser
        .wait_until(
            &format!("document.querySelector('{probe} .errors').innerText === '3'"),
            "the probe's error count to read 3",
        )
        .await;
    browser
        .wait_until(
            &format!("Number(document.querySelector('{probe} .rate').innerText) > 0"),
            "a request rate above zero",
        )
        .await;

    browser.screenshot("extensions").await;
    // Its page: health history, permissions.
    browser.click(&format!("{probe} a")).await;
    browser
        .wait_until(
            "document.querySelectorAll('#health-history tbody tr').length >= 2",
            "two health checks or more in the history",
        )
        .await;
    assert!(browser.text("#health-history").await.contains("healthy"));

    // Disable it: the page, the API and the database agree.
    browser.click("#disable").await;
    browser.wait_for_text("#state-enabled", "no").await;
    browser.wait_for_text("#status", "probe is disabled").await;
    let listed = app.extension(&token, "probe").await;
    assert_eq!(listed["enabled"], false, "{listed}");
    assert!(!enabled_in_database(&app).await);
    assert_eq!(app.get("/ext/probe/public").await.status(), 404);

    // Revoke two permissions, then enable it again: the confirmation shows what is granted,
    // and an unticked permission stays ungranted.
    for permission in ["users.read", "storage.write"] {
        let row = format!("tr[data-permission=\"{permission}\"]");
        browser.click(&format!("{row} button")).await;
        browser
            .wait_for_text(&format!("{row} .state"), "pending")
            .await;
    }
    browser.click("#enable").await;
    browser.screenshot("enable").await;
    let to_give = browser.text("#grants-to-give").await;
    assert!(
        to_give.contains("users.read")
            && to_give.contains("storage.write")
            && !to_give.contains("storage.read"),
        "only what is not held yet is granted: {to_give}"
    );
    browser
        .click("#enable-form input[value=\"storage.write\"]")
        .await;
    browser.click("#confirm-enable").await;
    browser.wait_for_text("#state-enabled", "yes").await;
    let listed = app.extension(&token, "probe").await;
    assert_eq!(listed["enabled"], true, "{listed}");
    let granted = listed["permissions"]["granted"].as_array().unwrap();
    assert!(granted.contains(&Value::from("users.read")), "{listed}");
    assert_eq!(
        listed["permissions"]["pending"],
        serde_json::json!(["storage.write"])
    );
    assert!(enabled_in_database(&app).await);
    assert_eq!(app.get("/ext/probe/public").await.status(), 200);
    // Granting what it still lacks, while it runs.
    browser.click("#grant").await;
    assert!(
        browser
            .text("#grants-to-give")
            .await
            .contains("storage.write")
    );
    browser.click("#confirm-enable").await;
    browser
        .wait_for_text("tr[data-permission=\"storage.write\"] .state", "granted")
        .await;
    let listed = app.extension(&token, "probe").await;
    assert_eq!(listed["permissions"]["pending"], serde_json::json!([]));

    browser.screenshot("extension").await;
    assert_shows_no_placeholders(&mut browser).await;
    // An invalid configuration: the server's error shows next to its key; nothing changes.
    browser.click("a[href=\"#/extensions/probe/config\"]").await;
    browser.fill("#config-text", r#"{"greeting": 5}"#).await;
    browser.submit("#config-form").await;
    browser
        .wait_for_text(
            "#config-problems li[data-key=\"greeting\"]",
            "is not of type \"string\"",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.querySelector('#config-text').getAttribute('aria-invalid')")
            .await,
        "true"
    );
    assert_eq!(greeting(&app).await, "hello");
    browser.screenshot("config-invalid").await;
    // Not JSON at all: said at once, without asking the server.
    browser.fill("#config-text", "{greeting: ").await;
    browser.submit("#config-form").await;
    browser
        .wait_for_text("#config-problems", "not valid JSON")
        .await;
    // A valid one is applied at once.
    browser
        .fill("#config-text", r#"{"greeting": "hi from the browser"}"#)
        .await;
    browser.submit("#config-form").await;
    browser.wait_for_text("#config-saved", "Saved").await;
    assert_eq!(greeting(&app).await, "hi from the browser");
    // Someone else changes it meanwhile: the browser's edit is refused, and told why.
    let current: Value = app
        .http
        .get(app.url("/api/v1/extensions/probe/config"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = app
        .http
        .put(app.url("/api/v1/extensions/probe/config"))
        .bearer_auth(&token)
        .header(
            "if-match",
            format!("\"{}\"", current["etag"].as_str().unwrap()),
        )
        .json(&serde_json::json!({"greeting": "changed elsewhere"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    browser
        .fill("#config-text", r#"{"greeting": "mine"}"#)
        .await;
    browser.submit("#config-form").await;
    browser
        .wait_for_text(
            "#config-stale",
            "changed this configuration after you loaded it",
        )
        .await;
    assert_eq!(greeting(&app).await, "changed elsewhere");

    // The audit log has what was done, and filters by action.
    browser.click("a[href=\"#/audit\"]").await;
    for action in [
        "auth.admin_login",
        "extension.disable",
        "extension.revoke",
        "extension.grant",
        "extension.enable",
        "extension.config",
    ] {
        browser
            .wait_for(&format!("#audit-body tr[data-action=\"{action}\"]"))
            .await;
    }
    browser.screenshot("audit").await;
    assert_shows_no_placeholders(&mut browser).await;
    browser.fill("#audit-action", "extension.disable").await;
    browser.submit("#audit-filters").await;
    browser
        .wait_until(
            "(rows => rows.length === 1 && rows[0].dataset.action === 'extension.disable')\
             ([...document.querySelectorAll('#audit-body tr')])",
            "the log filtered to the one disable",
        )
        .await;

    // Paging: older entries, then back to the newest.
    browser.eval("location.hash = '#/audit?limit=3'").await;
    let ids = "[...document.querySelectorAll('#audit-body tr')].map(r => Number(r.dataset.id))";
    browser
        .wait_until(&format!("{ids}.length === 3"), "a page of 3 entries")
        .await;
    let first = browser.eval(ids).await;
    assert!(
        browser
            .text("#audit-body")
            .await
            .contains("you (admin@example.com)")
    );
    browser.click("#audit-older").await;
    browser.wait_for_text("#audit-page", "Page 2").await;
    let second = browser.eval(ids).await;
    let oldest_first = first[2].as_i64().unwrap();
    assert!(
        second
            .as_array()
            .unwrap()
            .iter()
            .all(|id| id.as_i64().unwrap() < oldest_first),
        "page 2 {second} is older than page 1 {first}"
    );
    browser.click("#audit-newer").await;
    browser.wait_for_text("#audit-page", "Page 1").await;
    assert_eq!(browser.eval(ids).await, first);

    // Users: disabling one ends its sessions at once and refuses its login; enabling lets it
    // in again.
    let user_token = app.login("user@example.com", password).await;
    assert_eq!(user_token.status(), 200);
    let user_token = user_token.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.click("a[href=\"#/users\"]").await;
    let row = "#users-body tr[data-email=\"user@example.com\"]";
    browser.wait_for(&format!("{row} .state")).await;
    assert!(
        browser
            .text(&format!("{row} .state"))
            .await
            .contains("enabled")
    );
    // Their own row has no buttons: an administrator cannot lock themself out.
    browser
        .wait_until(
            "document.querySelector('#users-body tr[data-email=\"admin@example.com\"] \
             button[data-action=\"disable\"]') === null",
            "no disable button on the administrator's own row",
        )
        .await;
    browser
        .click(&format!("{row} button[data-action=\"disable\"]"))
        .await;
    browser
        .wait_for_text(&format!("{row} .state"), "disabled")
        .await;
    assert_eq!(app.me(&user_token).await.status(), 401);
    let refused = app.login("user@example.com", password).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        crate::helpers::error_code(refused).await,
        "account_disabled"
    );
    browser.screenshot("users").await;
    browser
        .click(&format!("{row} button[data-action=\"enable\"]"))
        .await;
    browser
        .wait_for_text(&format!("{row} .state"), "enabled")
        .await;
    assert_eq!(app.login("user@example.com", password).await.status(), 200);
    browser.eval("location.hash = '#/users?again'").await;
    browser
        .wait_for_text(&format!("{row} .sessions"), "1")
        .await;
    browser
        .click(&format!("{row} button[data-action=\"end-sessions\"]"))
        .await;
    browser
        .wait_for_text(&format!("{row} .sessions"), "0")
        .await;

    // Log out: the token is revoked on the server and gone from the tab.
    let admin_token = browser
        .eval("sessionStorage.getItem('solobase.admin.token')")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.me(&admin_token).await.status(), 200);
    browser.click("#logout").await;
    browser.wait_for("#login-form").await;
    browser
        .wait_for_text("#login-notice", "revoked on the server")
        .await;
    assert_eq!(browser.eval("sessionStorage.length").await, 0);
    assert_eq!(app.me(&admin_token).await.status(), 401);

    // A token the server no longer accepts sends you back to the login form.
    browser
        .eval("sessionStorage.setItem('solobase.admin.token', 'expired'); location.hash = '#/extensions'")
        .await;
    browser.wait_for_text("#login-notice", "log in again").await;

    assert!(
        browser.problems.is_empty(),
        "the page reported problems: {:?}",
        browser.problems
    );
    // The browser enforces the page's policy: injected inline script does not run.
    browser
        .eval(
            "const s = document.createElement('script'); \
             s.textContent = 'window.injected = true'; document.body.append(s)",
        )
        .await;
    assert_eq!(browser.eval("window.injected === undefined").await, true);
    // The report is an event: each round trip reads those that arrived.
    for _ in 0..50 {
        if browser
            .problems
            .iter()
            .any(|p| p.contains("Content Security Policy"))
        {
            break;
        }
        browser.eval("0").await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        browser
            .problems
            .iter()
            .any(|p| p.contains("Content Security Policy")),
        "the refusal is reported: {:?}",
        browser.problems
    );
    browser.close().await;
    app.stop().await.unwrap();
}

/// No text in the page reads like a value shown without being turned into text first.
#[cfg(feature = "probe")]
async fn assert_shows_no_placeholders(browser: &mut crate::cdp::Browser) {
    let found = browser
        .eval(
            "(() => { const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT); \
             const bad = []; \
             while (walk.nextNode()) { const t = walk.currentNode.data; \
               if (/^(null|undefined|NaN)$|\\[object |nullnull/.test(t.trim())) bad.push(t); } \
             return bad; })()",
        )
        .await;
    assert_eq!(found, serde_json::json!([]), "placeholders in the page");
}

#[cfg(feature = "probe")]
async fn enabled_in_database(app: &crate::helpers::TestApp) -> bool {
    app.db()
        .await
        .query_one(
            "SELECT enabled FROM solobase.extensions WHERE name = 'probe'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// What the probe greets with: its running configuration.
#[cfg(feature = "probe")]
async fn greeting(app: &crate::helpers::TestApp) -> String {
    let body: Value = app.get("/ext/probe/config").await.json().await.unwrap();
    body["greeting"].as_str().unwrap().to_owned()
}
