//! The audit log: what it records, who may read it, its filters and pages, and that nothing
//! can change it.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

async fn audit(app: &TestApp, token: Option<&str>, query: &str) -> reqwest::Response {
    let mut req = app.http.get(app.url(&format!("/api/v1/audit{query}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

async fn entries(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, Value) {
    let res = audit(app, Some(token), query).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    (
        body["entries"].as_array().unwrap().clone(),
        body["next"].clone(),
    )
}

async fn toggle(app: &TestApp, token: &str, name: &str, verb: &str) -> StatusCode {
    app.http
        .post(app.url(&format!("/api/v1/extensions/{name}/{verb}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn admin_actions_are_recorded_and_only_admins_read_them() {
    let app = spawn_app().await;
    let admin = app.user_token("root@example.com", true).await;
    let user = app.user_token("someone@example.com", false).await;

    assert_eq!(
        audit(&app, None, "").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        audit(&app, Some(&user), "").await.status(),
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        toggle(&app, &user, "webhooks", "disable").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        toggle(&app, &admin, "webhooks", "disable").await,
        StatusCode::OK
    );
    assert_eq!(
        toggle(&app, &admin, "webhooks", "enable").await,
        StatusCode::OK
    );

    let (list, _) = entries(&app, &admin, "?extension=webhooks").await;
    let seen: Vec<(&str, &str)> = list
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("extension.enable", "ok"),
            ("extension.disable", "ok"),
            ("extension.disable", "denied"),
            // Granted what it requests when first seen, by the system.
            ("extension.grant", "ok"),
        ],
        "newest first"
    );
    assert_eq!(list[3]["actor"], "system");
    assert!(list[0]["actor"].as_str().unwrap().starts_with("user:"));
    assert!(list[0]["at"].as_str().unwrap().contains('T'));

    let (logins, _) = entries(&app, &admin, "?action=auth.admin_login").await;
    assert_eq!(
        logins.len(),
        1,
        "the admin's login; the user's is not an admin login"
    );

    // Pages: newest first, `next` continues where the page ended.
    let (first, next) = entries(&app, &admin, "?extension=webhooks&limit=2").await;
    assert_eq!(first.len(), 2);
    let (rest, end) = entries(
        &app,
        &admin,
        &format!(
            "?extension=webhooks&limit=2&before={}",
            next.as_i64().unwrap()
        ),
    )
    .await;
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0]["result"], "denied");
    assert_eq!(rest[1]["action"], "extension.grant");
    let (_, end) = entries(
        &app,
        &admin,
        &format!(
            "?extension=webhooks&limit=2&before={}",
            end.as_i64().unwrap()
        ),
    )
    .await;
    assert!(end.is_null());
    let (none, _) = entries(&app, &admin, "?since=2999-01-01T00:00:00Z").await;
    assert!(none.is_empty());

    for bad in ["?since=yesterday", "?limit=0", "?limit=501", "?colour=red"] {
        let res = audit(&app, Some(&admin), bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // Append-only, even for Solobase's own login; and no secret in any entry.
    let db = app.db().await;
    for sql in [
        "UPDATE solobase.audit_log SET result = 'ok'",
        "DELETE FROM solobase.audit_log",
        "TRUNCATE solobase.audit_log",
    ] {
        let e = db.batch_execute(sql).await.unwrap_err();
        assert!(format!("{e:?}").contains("append-only"), "{sql}: {e:?}");
    }
    let everything: String = db
        .query_one(
            "SELECT string_agg(audit_log::text, ' ') FROM solobase.audit_log",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for secret in [admin.as_str(), user.as_str(), "password123"] {
        assert!(
            !everything.contains(secret),
            "a secret reached the audit log"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_admin_route_requires_an_admin() {
    let app = spawn_app().await;
    let admin = app.user_token("root@example.com", true).await;
    let user = app.user_token("someone@example.com", false).await;
    let routes = [
        ("GET", "/api/v1/extensions"),
        ("POST", "/api/v1/extensions/webhooks/disable"),
        ("POST", "/api/v1/extensions/webhooks/enable"),
        ("GET", "/api/v1/audit"),
    ];
    for (method, path) in routes {
        let send = |token: Option<&str>| {
            let mut req = match method {
                "GET" => app.http.get(app.url(path)),
                _ => app.http.post(app.url(path)),
            };
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            req.send()
        };
        let expired = "sb_0000000000000000000000000000000000000000000";
        for (token, wanted) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some(expired), StatusCode::UNAUTHORIZED),
            (Some(user.as_str()), StatusCode::FORBIDDEN),
        ] {
            let res = send(token).await.unwrap();
            assert_eq!(res.status(), wanted, "{method} {path} with {token:?}");
            let body: Value = res.json().await.unwrap();
            assert!(
                body["error"]["code"].is_string(),
                "{method} {path}: the error shape"
            );
        }
        let res = send(Some(&admin)).await.unwrap();
        assert!(res.status().is_success(), "{method} {path} as an admin");
    }
    app.stop().await.unwrap();
}

/// An ordinary user repeating a refused admin action 1,000 times: the log gains a handful of
/// entries, not a thousand, and their counts still account for every refusal.
#[tokio::test]
async fn a_flood_of_refused_admin_calls_is_merged_yet_every_refusal_counted() {
    let app = spawn_app().await;
    let user = app.user_token("someone@example.com", false).await;
    let id = app.me(&user).await.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let actor = format!("user:{id}");
    let db = app.db().await;
    let denied = "SELECT count(*), coalesce(sum((detail->>'count')::bigint), 0)::bigint \
                  FROM solobase.audit_log WHERE actor = $1 AND result = 'denied'";

    let mut flood = Vec::new();
    for i in 0..1000 {
        // Two actions, one of them about ever new extension names.
        let req = if i % 2 == 0 {
            app.http
                .put(app.url("/api/v1/roles/user/permissions/flood.test"))
                .bearer_auth(&user)
        } else {
            app.http
                .post(app.url(&format!("/api/v1/extensions/name{i}/disable")))
                .bearer_auth(&user)
        };
        flood.push(req.send());
        if flood.len() == 20 {
            for res in futures_util::future::join_all(flood.drain(..)).await {
                assert_eq!(res.unwrap().status(), StatusCode::FORBIDDEN);
            }
        }
    }
    // While the windows are open: one entry per action so far.
    let row = db.query_one(denied, &[&actor]).await.unwrap();
    let (rows, counted): (i64, i64) = (row.get(0), row.get(1));
    assert!(rows <= 4, "{rows} entries for 1000 refusals");
    assert!(counted >= 2);

    // Stopping writes what the open windows merged.
    app.stop().await.unwrap();
    let row = db.query_one(denied, &[&actor]).await.unwrap();
    let (rows, counted): (i64, i64) = (row.get(0), row.get(1));
    assert!(rows <= 8, "{rows} entries for 1000 refusals");
    assert_eq!(counted, 1000, "every refusal is counted once");
    let merged = db
        .query(
            "SELECT action, detail FROM solobase.audit_log \
             WHERE actor = $1 AND detail ? 'merged'",
            &[&actor],
        )
        .await
        .unwrap();
    assert!(!merged.is_empty());
    for row in merged {
        let detail: Value = row.get(1);
        assert!(detail["count"].as_u64().unwrap() >= 1);
        assert!(detail["first_at"].is_string() && detail["last_at"].is_string());
        // Names are bounded in a merged entry, whatever the requests carried.
        assert!(detail["extensions"].as_array().unwrap().len() <= 8);
    }
    // The log stays append-only.
    assert!(
        db.execute("DELETE FROM solobase.audit_log WHERE actor = $1", &[&actor])
            .await
            .is_err()
    );
}
