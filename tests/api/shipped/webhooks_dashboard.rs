//! The webhooks dashboard at `/ext/webhooks/` in headless Chromium, with its strict
//! Content-Security-Policy in force: it shows an endpoint and its deliveries from the real
//! server with no policy violation, and code injected inline into it does not run.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::webhooks::Receiver;
use crate::cdp::Browser;
use crate::helpers::{TestApp, eventually};

#[tokio::test]
async fn the_dashboard_shows_endpoints_and_deliveries_under_its_policy() {
    let receiver = Receiver::start();
    let app = TestApp::builder()
        .config(|c| {
            c.auth.signup_enabled = true;
            c.extensions
                .limits
                .entry("webhooks".into())
                .or_default()
                .outbound_allow = Some(vec!["127.0.0.0/8".into()]);
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            std::fs::write(
                c.extensions.config_dir.join("webhooks.toml"),
                "poll_interval_ms = 50\n",
            )
            .unwrap();
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    let url = receiver.url("127.0.0.1");
    let res = app
        .http
        .post(app.url("/ext/webhooks/api/endpoints"))
        .bearer_auth(&admin)
        .json(&json!({"url": url, "event_types": ["user.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        app.signup("new@example.com", "password123").await.status(),
        StatusCode::CREATED
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            receiver.got().len() == 1
        })
        .await,
        "the delivery reached the receiver"
    );

    let res = app.get("/ext/webhooks/").await;
    assert_eq!(res.status(), StatusCode::OK);
    let policy = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );

    let mut browser = Browser::launch().await;
    browser.goto(&app.url("/ext/webhooks/")).await;
    browser.fill("#token", &admin).await;
    browser.click("#load").await;
    browser.wait_for_text("#endpoints tbody", &url).await;
    browser
        .wait_for_text("#deliveries tbody", "user.created")
        .await;
    let endpoint_row = browser.text("#endpoints tbody tr").await;
    assert!(
        endpoint_row.contains("enabled") && endpoint_row.contains("1 / 0 / 0"),
        "{endpoint_row}"
    );
    let delivery_row = browser.text("#deliveries tbody tr").await;
    assert!(
        delivery_row.contains("succeeded") && delivery_row.contains(&url),
        "{delivery_row}"
    );
    // The style sheet applied: a succeeded delivery is green.
    assert_eq!(
        browser
            .eval("getComputedStyle(document.querySelector('#deliveries td.succeeded')).color")
            .await,
        "rgb(27, 127, 59)"
    );
    assert!(
        browser.problems.is_empty(),
        "the page reported problems: {:?}",
        browser.problems
    );

    // The policy is in force: an inline script injected into the page does not run, and the
    // browser reports the violation.
    browser
        .eval(
            "(() => { const s = document.createElement('script'); \
             s.textContent = 'window.injected = true'; document.body.appendChild(s); \
             return 1; })()",
        )
        .await;
    assert_eq!(browser.eval("window.injected === undefined").await, true);
    let mut reported = false;
    for _ in 0..50 {
        browser.eval("1").await;
        if browser
            .problems
            .iter()
            .any(|p| p.contains("Content Security Policy"))
        {
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reported, "no violation reported: {:?}", browser.problems);
    browser.close().await;
    app.stop().await.unwrap();
}
