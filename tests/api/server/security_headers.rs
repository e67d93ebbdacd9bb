//! The security headers of every answer, fetched through a real socket: every GET route the
//! host documents, the admin dashboard, and every GET route of every extension compiled in
//! (as their status lists them). Every answer says `nosniff`; every HTML page carries the
//! strict Content-Security-Policy and refuses framing, unless it set a policy of its own.

use std::collections::BTreeSet;

use serde_json::Value;
use solobase_sdk::http::DEFAULT_CONTENT_SECURITY_POLICY;

use crate::helpers::spawn_app;

/// Pages that set a policy of their own, which the host keeps.
const OWN_POLICY: &[&str] = &["/ext/probe/sandboxed"];

#[tokio::test]
async fn every_html_page_carries_the_strict_policy_and_every_answer_nosniff() {
    let app = spawn_app().await;
    let admin = app.user_token("admin@example.com", true).await;

    let mut paths: BTreeSet<String> = ["/admin", "/admin/", "/no/such/route", "/ext/nope/x"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let document: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        if item.get("get").is_some() && !path.contains('{') {
            paths.insert(path.clone());
        }
    }
    for ext in app.extensions(&admin).await {
        for route in ext["routes"].as_array().into_iter().flatten() {
            let route = route.as_str().unwrap();
            if let Some(path) = route.strip_prefix("GET ")
                && !path.contains('{')
            {
                paths.insert(path.to_owned());
            }
        }
    }

    let mut pages = BTreeSet::new();
    let mut statuses = std::collections::BTreeMap::new();
    for path in &paths {
        // An extension route may shed load (503 over its CPU budget or in-flight limit, 429)
        // on a busy machine: asked again, it answers what this test is about.
        let mut tries = 0;
        let res = loop {
            tries += 1;
            let res = app
                .http
                .get(app.url(path))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            let shed = [503, 429];
            if tries == 3 || !shed.contains(&res.status().as_u16()) {
                break res;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        };
        statuses.insert(path.as_str(), res.status().as_u16());
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path} ({})",
            res.status()
        );
        let content_type = header("content-type").unwrap_or_default();
        if !content_type.starts_with("text/html") {
            continue;
        }
        pages.insert(path.as_str());
        let policy = header("content-security-policy").unwrap_or_default();
        if OWN_POLICY.contains(&path.as_str()) {
            assert_eq!(
                policy, "sandbox; default-src 'none'",
                "{path} keeps its own"
            );
            continue;
        }
        assert_eq!(policy, DEFAULT_CONTENT_SECURITY_POLICY, "{path}");
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{path}");
    }

    // The pages this build serves were all among them: the check above was not vacuous.
    let mut expected = vec!["/admin", "/admin/"];
    if cfg!(feature = "webhooks") {
        expected.push("/ext/webhooks/");
    }
    if cfg!(feature = "analytics") {
        expected.extend(["/ext/analytics/dashboard", "/ext/analytics/api/report"]);
    }
    if cfg!(feature = "probe") {
        expected.extend(["/ext/probe/page", "/ext/probe/sandboxed"]);
    }
    for page in expected {
        assert!(
            pages.contains(page),
            "{page} not among {pages:?}; answers: {statuses:?}"
        );
    }
    app.stop().await.unwrap();
}
