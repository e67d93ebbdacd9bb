//! Password guessing and hash flooding, tried for real against the server: wrong passwords in
//! a row, one address spraying many accounts, a burst of parallel logins and sign-ups. What
//! must hold: 429 with `Retry-After` once a limit is reached, unknown e-mails treated exactly
//! like known ones, never more hashes at once than the hashing slots, and requests beyond
//! them refused (503, 429) instead of queued — read from `/metrics`, never from timings.

use std::net::IpAddr;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// A client whose connections come from `from` (any 127.0.0.0/8 address reaches the server).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_with(
    http: &reqwest::Client,
    app: &TestApp,
    email: &str,
    password: &str,
) -> Response {
    http.post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Seconds of a 429's or 503's `Retry-After`, after checking the common error shape.
async fn refusal(res: Response) -> (u16, u64, String) {
    let status = res.status().as_u16();
    let wait = res
        .headers()
        .get("retry-after")
        .unwrap_or_else(|| panic!("a {status} without Retry-After"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let code = crate::helpers::error_code(res).await;
    (status, wait, code)
}

/// A sample of `/metrics` (as an administrator), by series as written there.
async fn metric(app: &TestApp, admin: &str, series: &str) -> f64 {
    let text = app.metrics_text(admin).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

#[tokio::test]
async fn twenty_wrong_passwords_in_a_row_are_answered_429_with_retry_after() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", "the real one", false)
        .await;
    let mut limited = None;
    for attempt in 1..=20 {
        let res = app.login("ada@example.com", "a guess").await;
        match res.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                limited = Some((attempt, refusal(res).await));
                break;
            }
            other => panic!("attempt {attempt}: {other}"),
        }
    }
    let Some((attempt, (_, wait, code))) = limited else {
        panic!("20 wrong passwords in a row, and never a 429");
    };
    assert_eq!(code, "rate_limited");
    assert!(
        (1..=60).contains(&wait),
        "Retry-After {wait} within account_max_backoff_secs"
    );
    assert!(
        attempt > 5,
        "the first five attempts pass (attempt {attempt})"
    );
}

/// With a backoff that outlasts the test, the answers are a pure function of the attempts:
/// they must be the same for an account that exists and one that does not.
#[tokio::test]
async fn unknown_emails_are_throttled_exactly_like_known_ones() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.account_backoff_secs = 600;
            c.auth.account_max_backoff_secs = 600;
            c.auth.client_burst = 1000;
            c.auth.client_per_minute = 1000;
        })
        .spawn()
        .await;
    app.create_user("ada@example.com", "the real one", false)
        .await;
    let mut answers = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        let mut seen = Vec::new();
        for _ in 0..8 {
            let res = app.login(email, "a guess").await;
            let status = res.status().as_u16();
            let wait = res.headers().get("retry-after").is_some();
            let body: Value = res.json().await.unwrap();
            seen.push((status, wait, body["error"]["code"].clone()));
        }
        answers.push(seen);
    }
    let expected: Vec<(u16, bool, Value)> =
        std::iter::repeat_n((401, false, json!("invalid_credentials")), 5)
            .chain(std::iter::repeat_n((429, true, json!("rate_limited")), 3))
            .collect();
    assert_eq!(answers[0], expected, "a known account");
    assert_eq!(answers[1], expected, "an unknown e-mail");
    // Even the right password waits out the backoff, from an address that never logged in.
    let res = app.login("ada@example.com", "the real one").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Someone hammering an account from their address does not keep its owner out: the owner's
/// address, which logged in before, passes the account's backoff; a new address waits at most
/// `account_max_backoff_secs`.
#[tokio::test]
async fn hammering_an_account_does_not_lock_its_owner_out() {
    // A first backoff as long as the longest, so that it outlasts the test.
    let app = TestApp::builder()
        .config(|c| {
            c.auth.account_backoff_secs = 30;
            c.auth.account_max_backoff_secs = 30;
        })
        .spawn()
        .await;
    app.create_user("ada@example.com", "the real one", false)
        .await;
    let owner = client_from("127.0.0.1");
    let attacker = client_from("127.0.0.2");
    let elsewhere = client_from("127.0.0.3");
    assert_eq!(
        login_with(&owner, &app, "ada@example.com", "the real one")
            .await
            .status(),
        StatusCode::OK
    );
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let res = login_with(&attacker, &app, "ada@example.com", "a guess").await;
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let (_, wait, _) = refusal(res).await;
            assert!(wait <= 30, "Retry-After {wait} over the maximum backoff");
        }
    }
    assert_eq!(statuses[..5], [401; 5]);
    assert_eq!(statuses[5..], [429; 10], "the attacker is held back");
    let res = login_with(&elsewhere, &app, "ada@example.com", "the real one").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let (_, wait, _) = refusal(res).await;
    assert!(wait <= 30);
    assert_eq!(
        login_with(&owner, &app, "ada@example.com", "the real one")
            .await
            .status(),
        StatusCode::OK,
        "the owner's address gets in"
    );
}

/// One address trying one password on many accounts (spraying) meets its own limit.
#[tokio::test]
async fn one_address_spraying_many_accounts_is_answered_429() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.client_burst = 5;
            c.auth.client_per_minute = 1;
            c.auth.signup_enabled = true;
        })
        .spawn()
        .await;
    let sprayer = client_from("127.0.0.4");
    let mut statuses = Vec::new();
    for i in 0..7 {
        let res = login_with(
            &sprayer,
            &app,
            &format!("user{i}@example.com"),
            "Summer2025",
        )
        .await;
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let (_, wait, code) = refusal(res).await;
            assert_eq!(code, "rate_limited");
            assert!((1..=60).contains(&wait), "{wait}");
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    // Sign-ups count against the same limit.
    let res = sprayer
        .post(app.url("/api/v1/auth/signup"))
        .json(&json!({"email": "new@example.com", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    assert_eq!(
        app.signup("new@example.com", "long enough").await.status(),
        StatusCode::CREATED
    );
}

/// The parallel bursts: `n` requests at once from `client`, their statuses.
async fn burst(n: usize, send: impl Fn(usize) -> reqwest::RequestBuilder) -> Vec<Response> {
    let requests: Vec<_> = (0..n).map(|i| send(i).send()).collect();
    futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

async fn check_burst(app: &TestApp, admin: &str, answers: Vec<Response>, hashed: u16) {
    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for res in answers {
        let status = res.status().as_u16();
        *counts.entry(status).or_default() += 1;
        if status == 503 || status == 429 {
            let (_, wait, code) = refusal(res).await;
            assert!(wait >= 1);
            assert_eq!(
                code,
                if status == 503 {
                    "busy"
                } else {
                    "rate_limited"
                }
            );
        }
    }
    let refused_busy = counts.get(&503).copied().unwrap_or(0);
    let refused_limited = counts.get(&429).copied().unwrap_or(0);
    let hashes = counts.get(&hashed).copied().unwrap_or(0);
    assert_eq!(
        refused_busy + refused_limited + hashes,
        100,
        "only {hashed}, 429 and 503: {counts:?}"
    );
    assert!(
        refused_busy > 0,
        "a burst of 100 on 1 slot with a queue of 2 gets early 503s: {counts:?}"
    );
    // Never more hashes at once than the slots, and none for a refused request.
    let slots = metric(app, admin, "auth_password_hash_slots").await;
    assert_eq!(slots, 1.0);
    let peak = metric(app, admin, "auth_password_hashes_peak").await;
    assert!(
        peak <= slots,
        "{peak} hashes ran at once on {slots} slot(s)"
    );
    assert_eq!(
        metric(app, admin, "auth_throttled_total{limit=\"hashing\"}").await,
        refused_busy as f64
    );
    assert_eq!(metric(app, admin, "auth_password_hash_waiting").await, 0.0);
}

#[tokio::test]
async fn a_burst_of_parallel_logins_is_refused_early_instead_of_queued() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.hash_concurrency = 1;
            c.auth.hash_queue = 2;
            c.auth.client_burst = 1000;
            c.auth.client_per_minute = 1000;
        })
        .spawn()
        .await;
    let admin = app.user_token("root@example.com", true).await;
    let before = metric(&app, &admin, "auth_password_hashes_total").await;
    let answers = burst(100, |_| {
        app.http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": "nobody@example.com", "password": "a guess"}))
    })
    .await;
    let verified = answers
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    // Each 401 is one hash; a refused request cost none.
    let after = metric(&app, &admin, "auth_password_hashes_total").await;
    assert_eq!(after - before, verified as f64);
    check_burst(&app, &admin, answers, 401).await;
    // The server still answers an authenticated request.
    assert_eq!(app.me(&admin).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_of_parallel_signups_is_refused_early_instead_of_queued() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.hash_concurrency = 1;
            c.auth.hash_queue = 2;
            c.auth.client_burst = 1000;
            c.auth.client_per_minute = 1000;
            c.auth.signup_enabled = true;
        })
        .spawn()
        .await;
    let admin = app.user_token("root@example.com", true).await;
    let answers = burst(100, |i| {
        app.http
            .post(app.url("/api/v1/auth/signup"))
            .json(&json!({"email": format!("new{i}@example.com"), "password": "long enough"}))
    })
    .await;
    check_burst(&app, &admin, answers, 201).await;
    let db = app.db().await;
    let created: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.users WHERE email LIKE 'new%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(created > 0 && created < 100, "{created} accounts created");
}

/// Sign-ups for one e-mail back off like logins, apart from them: they cannot slow down the
/// owner's logins.
#[tokio::test]
async fn repeated_signups_for_one_email_back_off_apart_from_its_logins() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.signup_enabled = true;
            c.auth.account_backoff_secs = 600;
            c.auth.account_max_backoff_secs = 600;
        })
        .spawn()
        .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            app.signup("ada@example.com", "long enough")
                .await
                .status()
                .as_u16(),
        );
    }
    // Created (which clears the count), then five attempts, the fifth starting the backoff.
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 429, 429]);
    assert_eq!(
        app.login("ada@example.com", "long enough").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn limits_are_off_when_configured_so() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.client_burst = 0;
            c.auth.account_max_backoff_secs = 0;
        })
        .spawn()
        .await;
    for _ in 0..25 {
        assert_eq!(
            app.login("nobody@example.com", "a guess").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

/// Red team: on a database whose character type is UTF-8 (as most clusters made by a
/// distribution's tools are, unlike the embedded one's `C`), `lower()` folds `İ` (U+0130) to
/// `i`, so `İan@example.com` logs in to `ian@example.com`; the throttle's key must fold it the
/// same way, or every `i` of an e-mail doubles the guesses its account's backoff allows.
#[tokio::test]
async fn unicode_spellings_of_an_email_share_its_accounts_backoff() {
    let db = crate::helpers::fresh_database_with("LC_CTYPE 'C.utf8' LC_COLLATE 'C'").await;
    let app = TestApp::builder()
        .on(db)
        .config(|c| {
            c.auth.account_backoff_secs = 600;
            c.auth.account_max_backoff_secs = 600;
            c.auth.client_burst = 1000;
            c.auth.client_per_minute = 1000;
        })
        .spawn()
        .await;
    app.create_user("ian@example.com", "the real one", false)
        .await;
    // The database takes the other spelling as the same account (shown from an address of
    // its own, which the account then knows).
    let res = login_with(
        &client_from("127.0.0.2"),
        &app,
        "\u{130}an@example.com",
        "the real one",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK, "İan@ logs in to ian@");

    for _ in 0..5 {
        let res = app.login("ian@example.com", "a guess").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app.login("ian@example.com", "a guess").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // The account waits out its backoff, whichever way its e-mail is spelt.
    for spelling in [
        "IAN@example.com",
        "\u{130}an@example.com",
        "\u{130}AN@EXAMPLE.COM",
    ] {
        let res = app.login(spelling, "a guess").await;
        assert_eq!(
            res.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{spelling}: a guess on the account in its backoff"
        );
    }
}

/// Sign-ups are throttled before any extension's `user_signup` hook runs: a client flooding
/// sign-ups that a hook refuses makes the hooks run no more often than its limit allows.
#[tokio::test]
async fn a_flood_of_sign_ups_runs_extension_hooks_no_more_than_the_limit() {
    let app = TestApp::builder()
        .config(|c| {
            c.auth.signup_enabled = true;
            c.auth.client_burst = 5;
            c.auth.client_per_minute = 5;
        })
        .spawn()
        .await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        // The probe's hook refuses this domain (403) after counting the call.
        let res = app
            .signup(&format!("u{i}@blocked.example"), "password123")
            .await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    let hits: serde_json::Value = app.get("/ext/probe/hits").await.json().await.unwrap();
    assert_eq!(hits["user.signup"], 5, "{hits}");
}
