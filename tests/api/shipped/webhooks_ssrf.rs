//! The host's outbound guard (`ctx.http`, which webhooks sends through) against IPv6 addresses
//! that carry a loopback IPv4 address, attacked for real: endpoints pointing at a receiver on
//! 127.0.0.1 through each form (and through the name `localhost`), first while the host file's
//! `outbound_allow` admits them (the IPv4-mapped form and the name do reach the receiver),
//! then with the list emptied by a reload of the file, when committed events must reach
//! nothing — not even over a connection opened while they were allowed — and each attempt
//! must say what was refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::webhooks::Receiver;
use crate::helpers::{TestApp, eventually};

/// Each form of 127.0.0.1 (or a refused tunnel towards it) and what its refusal must name;
/// the first is a name, resolved at each connection.
const FORMS: [(&str, &str); 8] = [
    ("localhost", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:0:127.0.0.1", "loopback"),
    ("::127.0.0.1", "loopback"),
    ("2002:7f00:1::", "loopback"),
    ("64:ff9b::127.0.0.1", "loopback"),
    ("64:ff9b:1::7f00:1", "local-use NAT64"),
    // Teredo, client 127.0.0.1 (stored inverted in the last 32 bits).
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
];

/// Settings shared by both phases: fast polling, one attempt, a short time limit (the forms
/// other than IPv4-mapped lead nowhere on this machine and would otherwise wait).
const SETTINGS: &str = "poll_interval_ms = 50\nretry_schedule_secs = [0.0]\ntimeout_secs = 2\n";

/// The host file, with `allow` as the webhooks extension's `outbound_allow`.
fn host_file(allow: &[String]) -> String {
    let quoted: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[auth]\nsignup_enabled = true\n\n[extensions.limits.webhooks]\noutbound_allow = [{}]\n",
        quoted.join(", ")
    )
}

/// Applied reloads of the host file so far.
async fn reloads(app: &TestApp) -> i64 {
    app.db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.audit_log WHERE action = 'config.reload' \
             AND result = 'ok'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn ipv6_forms_of_loopback_reach_nothing_and_each_attempt_says_why() {
    let receiver = Receiver::start();
    let urls: Vec<String> = FORMS
        .iter()
        .map(|(ip, _)| match ip.contains(':') {
            true => format!("http://[{ip}]:{}/hook", receiver.port),
            false => format!("http://{ip}:{}/hook", receiver.port),
        })
        .collect();
    let allowed: Vec<String> = FORMS.iter().map(|(ip, _)| ip.to_string()).collect();
    let dir = crate::helpers::TempDir::new();
    let file = dir.0.join("solobase.toml");
    std::fs::write(&file, host_file(&allowed)).unwrap();
    let source = file.clone();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.signup_enabled = true;
            c.extensions
                .limits
                .entry("webhooks".into())
                .or_default()
                .outbound_allow = Some(allowed);
            c.source = Some(source);
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            std::fs::write(c.extensions.config_dir.join("webhooks.toml"), SETTINGS).unwrap();
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;

    // While `outbound_allow` lists them, the endpoints can be created, and the name and the
    // IPv4-mapped form do reach the loopback receiver: the attack is real, not a matter of
    // routing. The connections they used stay open in the client's pool.
    let mut endpoints = Vec::new();
    for url in &urls {
        let (status, ep) = app
            .call(
                &admin,
                "POST",
                "/ext/webhooks/api/endpoints",
                Some(json!({"url": url, "event_types": ["user.created"]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{url}: {ep}");
        endpoints.push(ep["id"].as_str().unwrap().to_owned());
    }
    for id in &endpoints[..2] {
        let path = format!("/ext/webhooks/api/endpoints/{id}/test");
        let (status, body) = app.call(&admin, "POST", &path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            receiver.got().len() == 2
        })
        .await,
        "localhost and [::ffff:127.0.0.1] reach a receiver on 127.0.0.1"
    );
    let reached_while_allowed = receiver.got().len();

    // The operator empties the list, and the server reloads its file: no new endpoint may
    // name these addresses (a name is judged when it resolves)…
    let before = reloads(&app).await;
    std::fs::write(&file, host_file(&[])).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            reloads(&app).await > before
        })
        .await,
        "the emptied list was applied"
    );
    for (url, (_, why)) in urls.iter().zip(FORMS).skip(1) {
        let (status, body) = app
            .call(
                &admin,
                "POST",
                "/ext/webhooks/api/endpoints",
                Some(json!({"url": url, "event_types": ["user.created"]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{url}: {message}");
    }

    // …and the existing ones get nothing when an event is committed: every attempt records
    // the refusal, and the receiver sees no request.
    assert_eq!(
        app.signup("victim@example.com", "password123")
            .await
            .status(),
        StatusCode::CREATED
    );
    let settled = eventually(Duration::from_secs(30), || async {
        let list = user_created_deliveries(&app, &admin).await;
        list.len() == FORMS.len() && list.iter().all(|d| d["status"] == "failed")
    })
    .await;
    let list = user_created_deliveries(&app, &admin).await;
    assert!(settled, "one failed delivery per endpoint: {list:#?}");
    for (id, (ip, why)) in endpoints.iter().zip(FORMS) {
        let delivery = list
            .iter()
            .find(|d| d["endpoint_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{ip}: no delivery in {list:#?}"));
        assert_eq!(delivery["attempts"], 1, "{ip}: {delivery}");
        assert_eq!(delivery["last_status"], Value::Null, "{ip}: {delivery}");
        let error = delivery["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("refused to call") && error.contains(why),
            "{ip}: {error}"
        );
        if why == "loopback" || why == "Teredo" {
            assert!(error.contains("127.0.0.1"), "names what it judged: {error}");
        }
        let path = format!("/ext/webhooks/api/deliveries/{}/attempts", delivery["id"]);
        let (_, attempts) = app.call(&admin, "GET", &path, None).await;
        assert_eq!(attempts[0]["error"], delivery["last_error"], "{attempts}");
    }
    assert_eq!(
        receiver.got().len(),
        reached_while_allowed,
        "no request reached the receiver once the addresses were refused"
    );
    app.stop().await.unwrap();
}

async fn user_created_deliveries(app: &TestApp, admin: &str) -> Vec<Value> {
    let path = "/ext/webhooks/api/deliveries?event_type=user.created";
    let (status, body) = app.call(admin, "GET", path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}
