//! The webhooks extension end to end: a real receiver on a local socket records what
//! Solobase sends; signatures are checked with the SDK's verifier.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use solobase_sdk::webhooks::{self, Secret};

use crate::helpers::{TestApp, eventually};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Checks the signature as a receiver would, at the time of the check.
    pub fn verify(&self, secret: &str) -> Result<(), webhooks::VerifyError> {
        let secret: Secret = secret.parse().unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        webhooks::verify(
            &secret,
            self.header("webhook-id"),
            self.header("webhook-timestamp"),
            self.header("webhook-signature"),
            &self.body,
            now,
        )
    }
}

/// A local HTTP receiver answering the queued statuses in turn (then 200).
pub(crate) struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub fn start() -> Self {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let (g, a) = (got.clone(), answers.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            let (g, a) = (g.clone(), a.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (g, a) = (g.clone(), a.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    g.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    let status = a.lock().unwrap().pop_front().unwrap_or(200);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .body(format!("answered {status}"))
                }
            }))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            port,
            got,
            answers,
            handle,
        }
    }

    pub fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/hook", self.port)
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    /// Answer every request with `status` from now on (0: back to the queue, then 200).
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// The receivers listen on loopback, which outbound HTTP reaches only when the operator lists
/// it in the host file's `outbound_allow`.
const LOOPBACK: &[&str] = &["127.0.0.0/8", "localhost"];

/// An app whose webhooks configuration is `toml`, allowed to reach [`LOOPBACK`].
async fn app_with(toml: &str) -> TestApp {
    app_on(None, toml).await
}

/// An app whose webhooks configuration is `toml`, on database `db` (a fresh one if `None`),
/// allowed to reach [`LOOPBACK`].
async fn app_on(db: Option<&str>, toml: &str) -> TestApp {
    app_allowing(db, LOOPBACK, toml).await
}

/// An app whose webhooks configuration is `toml`, on database `db` (a fresh one if `None`),
/// with `allow` as the host's `outbound_allow` for webhooks.
async fn app_allowing(db: Option<&str>, allow: &[&str], toml: &str) -> TestApp {
    let toml = toml.to_owned();
    let allow: Vec<String> = allow.iter().map(|a| a.to_string()).collect();
    let builder = match db {
        Some(db) => TestApp::builder().on(db),
        None => TestApp::builder(),
    };
    builder
        .config(move |c| {
            c.auth.signup_enabled = true;
            c.extensions
                .limits
                .entry("webhooks".into())
                .or_default()
                .outbound_allow = Some(allow);
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            std::fs::write(c.extensions.config_dir.join("webhooks.toml"), toml).unwrap();
        })
        .spawn()
        .await
}

const FAST: &str = "poll_interval_ms = 50\n\
                    retry_schedule_secs = [0.0, 0.2, 0.2]\ntimeout_secs = 2\n";

async fn call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(token, method, &format!("/ext/webhooks/api{path}"), body)
        .await
}

async fn deliveries(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let (status, body) = call(app, token, "GET", &format!("/deliveries{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

#[tokio::test]
async fn deliveries_are_signed_retried_with_the_same_id_and_recorded() {
    let receiver = Receiver::start();
    receiver.answer(&[500]);
    let app = app_with(FAST).await;
    let admin = app.user_token("admin@example.com", true).await;
    let (status, ep) = call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(
            json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"],
                    "headers": {"x-tenant": "acme"}, "description": "crm"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ep}");
    let secret = ep["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = ep["id"].as_str().unwrap().to_owned();
    // The secret is not in listings, only behind its own route.
    let (_, list) = call(&app, &admin, "GET", "/endpoints", None).await;
    assert!(list[0].get("secret").is_none(), "{list}");
    let (_, s) = call(
        &app,
        &admin,
        "GET",
        &format!("/endpoints/{id}/secret"),
        None,
    )
    .await;
    assert_eq!(s["secret"], secret.as_str());

    assert_eq!(
        app.signup("new@example.com", "password123").await.status(),
        StatusCode::CREATED
    );
    assert!(
        eventually(Duration::from_secs(15), || async {
            receiver.got().len() >= 2
        })
        .await,
        "two attempts: {:?}",
        receiver.got()
    );
    let got = receiver.got();
    let (first, second) = (&got[0], &got[1]);
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    assert!(first.header("webhook-id").starts_with("msg_"));
    for r in [first, second] {
        r.verify(&secret).unwrap();
        assert_eq!(r.header("x-tenant"), "acme");
        assert_eq!(r.header("content-type"), "application/json");
        let payload = r.json();
        assert_eq!(payload["type"], "user.created");
        assert_eq!(payload["data"]["email"], "new@example.com");
        assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // Another endpoint's secret does not verify it.
    let other = "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==";
    assert!(first.verify(other).is_err());

    assert!(
        eventually(Duration::from_secs(10), || async {
            !deliveries(&app, &admin, "?status=succeeded")
                .await
                .is_empty()
        })
        .await
    );
    let list = deliveries(&app, &admin, "?status=succeeded").await;
    assert_eq!(list[0]["attempts"], 2);
    assert_eq!(list[0]["message_id"], first.header("webhook-id"));
    let (_, attempts) = call(
        &app,
        &admin,
        "GET",
        &format!("/deliveries/{}/attempts", list[0]["id"]),
        None,
    )
    .await;
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["status_code"], 500);
    assert_eq!(attempts[0]["succeeded"], false);
    assert_eq!(attempts[0]["response_body"], "answered 500");
    assert_eq!(attempts[1]["status_code"], 200);
    assert_eq!(attempts[1]["succeeded"], true);
    // Filters.
    assert!(deliveries(&app, &admin, "?status=failed").await.is_empty());
    assert_eq!(
        deliveries(&app, &admin, "?event_type=user.*").await.len(),
        1
    );
    assert!(
        deliveries(&app, &admin, "?event_type=storage.*")
            .await
            .is_empty()
    );
    let (status, _) = call(&app, &admin, "GET", "/deliveries?status=nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_an_event_says_so() {
    let receiver = Receiver::start();
    receiver.answer(&[410]);
    let app = app_with(FAST).await;
    let admin = app.user_token("admin@example.com", true).await;
    let (_, ep) = call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"]})),
    )
    .await;
    let id = ep["id"].as_str().unwrap().to_owned();
    app.signup("a@example.com", "password123").await;
    let path = format!("/endpoints/{id}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            call(&app, &admin, "GET", &path, None).await.1["enabled"] == false
        })
        .await
    );
    let (_, ep) = call(&app, &admin, "GET", &path, None).await;
    assert!(
        ep["disabled_reason"].as_str().unwrap().contains("410"),
        "{ep}"
    );
    assert_eq!(receiver.got().len(), 1, "no retry after 410");
    let db = app.db().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.query_opt(
                "SELECT 1 FROM solobase.outbox WHERE event_type = 'extension.webhooks.endpoint_disabled' \
                 AND data->>'endpoint_id' = $1",
                &[&id],
            )
            .await
            .unwrap()
            .is_some()
        })
        .await,
        "the disabling is announced"
    );
    // Later events are not delivered to a disabled endpoint.
    app.signup("b@example.com", "password123").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 1);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let receiver = Receiver::start();
    let app = app_allowing(
        None,
        &[],
        "poll_interval_ms = 50\nretry_schedule_secs = [0.0]\n",
    )
    .await;
    let admin = app.user_token("admin@example.com", true).await;
    for blocked in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
    ] {
        let (status, body) = call(
            &app,
            &admin,
            "POST",
            "/endpoints",
            Some(json!({"url": blocked, "event_types": ["*"]})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{blocked}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("allow"),
            "{body}"
        );
    }
    // A name is checked when it resolves, at every connection.
    let (status, ep) = call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(json!({"url": receiver.url("localhost"), "event_types": ["*"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = ep["id"].as_str().unwrap();
    let (status, d) = call(&app, &admin, "POST", &format!("/endpoints/{id}/test"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{d}");
    let path = format!("/deliveries/{}/attempts", d["id"]);
    assert!(
        eventually(Duration::from_secs(10), || async {
            call(&app, &admin, "GET", &path, None)
                .await
                .1
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await
    );
    let attempts = call(&app, &admin, "GET", &path, None).await.1;
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(error.contains("loopback"), "{error}");
    assert!(receiver.got().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn test_events_resend_replay_and_rotation() {
    let receiver = Receiver::start();
    let app = app_with("poll_interval_ms = 50\nretry_schedule_secs = [0.0]\n").await;
    let admin = app.user_token("admin@example.com", true).await;
    let (_, ep) = call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"]})),
    )
    .await;
    let id = ep["id"].as_str().unwrap().to_owned();
    let old_secret = ep["secret"].as_str().unwrap().to_owned();

    // A test event really goes out.
    let (status, _) = call(&app, &admin, "POST", &format!("/endpoints/{id}/test"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(10), || async {
            receiver.got().len() == 1
        })
        .await
    );
    assert_eq!(receiver.got()[0].json()["type"], "webhooks.test");
    receiver.got()[0].verify(&old_secret).unwrap();

    // Two events fail (one attempt each), then the receiver recovers.
    receiver.answer(&[503, 503]);
    app.signup("one@example.com", "password123").await;
    app.signup("two@example.com", "password123").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            deliveries(&app, &admin, "?status=failed").await.len() == 2
        })
        .await
    );
    let failed = deliveries(&app, &admin, "?status=failed").await;
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        &format!("/deliveries/{}/resend", failed[0]["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        eventually(Duration::from_secs(10), || async {
            deliveries(&app, &admin, "?status=failed").await.len() == 1
        })
        .await
    );
    let resent = receiver.got().pop().unwrap();
    assert_eq!(resent.header("webhook-id"), failed[0]["message_id"]);
    let (status, body) = call(
        &app,
        &admin,
        "POST",
        "/replay",
        Some(json!({"since": "2000-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["queued"], 1);
    assert!(
        eventually(Duration::from_secs(10), || async {
            deliveries(&app, &admin, "?status=failed").await.is_empty()
        })
        .await
    );
    let ids: HashSet<String> = receiver
        .got()
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        3,
        "a test event and two events, each with its own id"
    );

    // Rotation: both secrets sign during the overlap.
    let (status, rotated) = call(
        &app,
        &admin,
        "POST",
        &format!("/endpoints/{id}/rotate"),
        Some(json!({"overlap_secs": 3600})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    let before = receiver.got().len();
    call(&app, &admin, "POST", &format!("/endpoints/{id}/test"), None).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            receiver.got().len() > before
        })
        .await
    );
    let last = receiver.got().pop().unwrap();
    assert_eq!(last.header("webhook-signature").split(' ').count(), 2);
    last.verify(&new_secret).unwrap();
    last.verify(&old_secret).unwrap();
}

#[tokio::test]
async fn endpoints_are_managed_and_validated_and_guarded_by_a_permission() {
    let app = app_with(FAST).await;
    let admin = app.user_token("admin@example.com", true).await;
    let user = app.user_token("user@example.com", false).await;
    let good = json!({"url": "https://example.com/hook", "event_types": ["user.*"]});
    let (status, _) = call(&app, &user, "POST", "/endpoints", Some(good.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The permission opens the API to users.
    let res = app
        .http
        .put(app.url("/api/v1/roles/user/permissions/webhooks.manage"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let (status, ep) = call(&app, &user, "POST", "/endpoints", Some(good)).await;
    assert_eq!(status, StatusCode::CREATED, "{ep}");
    let id = ep["id"].as_str().unwrap().to_owned();
    for (bad, why) in [
        (json!({"url": "ftp://x", "event_types": ["*"]}), "scheme"),
        (
            json!({"url": "https://x.example", "event_types": ["Bad"]}),
            "pattern",
        ),
        (
            json!({"url": "https://x.example", "event_types": ["*"], "headers": {"Webhook-Id": "x"}}),
            "signature header",
        ),
        (
            json!({"url": "https://x.example", "event_types": ["*"], "headers": {"connection": "close"}}),
            "hop-by-hop",
        ),
        (
            json!({"url": "https://x.example", "event_types": ["*"], "rate_limit": 0}),
            "rate",
        ),
    ] {
        let (status, body) = call(&app, &admin, "POST", "/endpoints", Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {body}");
    }
    let (status, ep) = call(
        &app,
        &admin,
        "PATCH",
        &format!("/endpoints/{id}"),
        Some(json!({"description": "billing", "rate_limit": 5, "enabled": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ep}");
    assert_eq!(ep["description"], "billing");
    assert_eq!(ep["rate_limit"], 5);
    assert_eq!(ep["enabled"], false);
    let (_, ep) = call(
        &app,
        &admin,
        "PATCH",
        &format!("/endpoints/{id}"),
        Some(json!({"rate_limit": null, "enabled": true})),
    )
    .await;
    assert_eq!(ep["rate_limit"], Value::Null);
    assert_eq!(ep["enabled"], true);
    assert_eq!(ep["description"], "billing");
    let (status, _) = call(&app, &admin, "DELETE", &format!("/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&app, &admin, "GET", &format!("/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The dashboard is a page of its own, calling the API with the user's token.
    let res = app.get("/ext/webhooks/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("/ext/webhooks/dashboard.js") && page.contains("Recent deliveries"));
    let script = app
        .get("/ext/webhooks/dashboard.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(script.contains("/ext/webhooks/api"));
    for text in [page, script] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "no CDN"
        );
    }
}

/// The real binary, killed with SIGKILL while events are being produced and delivered:
/// after a restart every event reaches the receiver at least once.
#[tokio::test]
async fn no_event_is_lost_when_the_server_is_killed() {
    use crate::helpers::{TempDir, connect, database_url, fresh_database};
    use crate::server::cli::Server;
    let receiver = Receiver::start();
    let db_name = fresh_database().await;
    let url = database_url(&db_name);
    let dir = TempDir::new();
    let configs = dir.0.join("config/extensions");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(
        dir.0.join("config/solobase.toml"),
        "[extensions.limits.webhooks]\noutbound_allow = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    std::fs::write(
        configs.join("webhooks.toml"),
        "poll_interval_ms = 50\ntimeout_secs = 1\n\
         retry_schedule_secs = [0.0, 0.5, 1.0, 1.0, 1.0]\n",
    )
    .unwrap();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("SOLOBASE_ADMIN_EMAIL", "admin@example.com"),
        ("SOLOBASE_ADMIN_PASSWORD", "correct horse battery staple"),
        ("SOLOBASE_SIGNUP_ENABLED", "true"),
    ];
    let http = reqwest::Client::new();
    let server = Server::start_with(&dir.0, &dir.0.join("data"), &env);
    let login: Value = http
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"email": "admin@example.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let res = http
        .post(server.url("/ext/webhooks/api/endpoints"))
        .bearer_auth(&token)
        .json(&json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"]}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(status, StatusCode::CREATED, "{}", res.text().await.unwrap());

    // Four producers sign users up until the server dies under them.
    let base = server.url("");
    let mut producers = Vec::new();
    for p in 0..4 {
        let (http, base) = (http.clone(), base.clone());
        producers.push(tokio::spawn(async move {
            for i in 0.. {
                let res = http
                    .post(format!("{base}/api/v1/auth/signup"))
                    .json(&json!({"email": format!("p{p}-{i}@example.com"), "password": "password123"}))
                    .send()
                    .await;
                if res.is_err() {
                    break;
                }
            }
        }));
    }
    // Kill once deliveries are flowing, mid-stream.
    assert!(
        eventually(Duration::from_secs(30), || async {
            receiver.got().len() >= 20
        })
        .await,
        "deliveries started"
    );
    server.signal("-KILL");
    let _ = server.wait(Duration::from_secs(10));
    for p in producers {
        p.await.unwrap();
    }
    let db = connect(&db_name).await;
    let before: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.outbox WHERE event_type = 'user.created'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let seen_before_restart = receiver.got().len();

    let server = Server::start_with(&dir.0, &dir.0.join("data"), &env);
    let expected: HashSet<String> = db
        .query(
            "SELECT event_id FROM solobase.outbox WHERE event_type = 'user.created' \
             AND data->>'email' <> 'admin@example.com'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| webhook_id(r.get(0)))
        .collect();
    let delivered = || -> HashSet<String> {
        receiver
            .got()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect()
    };
    let all_arrived = eventually(Duration::from_secs(60), || async {
        expected.is_subset(&delivered())
    })
    .await;
    let missing: Vec<_> = expected.difference(&delivered()).cloned().collect();
    assert!(
        all_arrived,
        "{} of {} events never arrived (outbox had {before}, {seen_before_restart} requests \
         before the restart): {missing:?}",
        missing.len(),
        expected.len()
    );
    assert!(expected.len() >= 20);
    server.signal("-TERM");
    let _ = server.wait(Duration::from_secs(30));
}

fn webhook_id(event_id: uuid::Uuid) -> String {
    solobase_ext_webhooks::message_id(event_id)
}

#[tokio::test]
async fn an_endpoint_failing_for_the_period_is_disabled_and_bodies_are_capped() {
    let receiver = Receiver::start();
    receiver.answer(&[500; 50]);
    let app = app_with(
        "poll_interval_ms = 50\ndisable_after_failing_secs = 1\n\
         retry_schedule_secs = [0.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]\n\
         response_body_limit = 5\n",
    )
    .await;
    let admin = app.user_token("admin@example.com", true).await;
    let (_, ep) = call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"]})),
    )
    .await;
    let id = ep["id"].as_str().unwrap().to_owned();
    app.signup("a@example.com", "password123").await;
    let path = format!("/endpoints/{id}");
    assert!(
        eventually(Duration::from_secs(15), || async {
            call(&app, &admin, "GET", &path, None).await.1["enabled"] == false
        })
        .await,
        "disabled after failing for a second"
    );
    let (_, ep) = call(&app, &admin, "GET", &path, None).await;
    assert!(
        ep["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("disable_after_failing_secs"),
        "{ep}"
    );
    let got = receiver.got().len();
    assert!(got >= 2, "it was retried before: {got}");
    // Its pending delivery is failed (to be replayed once it is enabled again).
    let list = deliveries(&app, &admin, "").await;
    assert_eq!(list[0]["status"], "failed", "{list:?}");
    let (_, attempts) = call(
        &app,
        &admin,
        "GET",
        &format!("/deliveries/{}/attempts", list[0]["id"]),
        None,
    )
    .await;
    assert_eq!(attempts[0]["response_body"], "answe", "capped at 5 bytes");
    let db = app.db().await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            db.query_opt(
                "SELECT 1 FROM solobase.outbox \
                 WHERE event_type = 'extension.webhooks.endpoint_disabled' \
                   AND data->>'endpoint_id' = $1 AND data->>'reason' LIKE 'every delivery failed%'",
                &[&id],
            )
            .await
            .unwrap()
            .is_some()
        })
        .await
    );
}

#[tokio::test]
async fn without_events_subscribe_events_wait_in_the_outbox_and_health_says_why() {
    let receiver = Receiver::start();
    let toml = FAST.to_owned();
    let app = TestApp::builder()
        .config(move |c| {
            c.auth.signup_enabled = true;
            c.extensions.health_interval_ms = 100;
            c.extensions.outbound_allow = vec!["127.0.0.1".into()];
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            std::fs::write(c.extensions.config_dir.join("webhooks.toml"), toml).unwrap();
        })
        .spawn()
        .await;
    let admin = app.user_token("admin@example.com", true).await;
    call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"]})),
    )
    .await;
    let res = app
        .http
        .delete(app.url("/api/v1/extensions/webhooks/grants/events.subscribe"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    app.signup("waiting@example.com", "password123").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let health = app.extension(&admin, "webhooks").await["health"]["now"].clone();
            health["status"] == "degraded"
                && health["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("events.subscribe"))
        })
        .await,
        "{}",
        app.extension(&admin, "webhooks").await["health"]
    );
    assert!(receiver.got().is_empty());
    // Granted again: the waiting event is delivered.
    let res = app
        .http
        .post(app.url("/api/v1/extensions/webhooks/enable"))
        .bearer_auth(&admin)
        .json(&json!({"grant": ["events.subscribe"]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    assert!(
        eventually(Duration::from_secs(10), || async {
            receiver
                .got()
                .iter()
                .any(|r| r.json()["data"]["email"] == "waiting@example.com")
        })
        .await
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.extension(&admin, "webhooks").await["health"]["now"]["status"] == "healthy"
        })
        .await
    );
}

/// Creates an endpoint of `receiver` for user events, marked with the header `x-n: n`.
async fn endpoint(app: &TestApp, admin: &str, receiver: &Receiver, n: u32) {
    let (status, ep) = call(
        app,
        admin,
        "POST",
        "/endpoints",
        Some(
            json!({"url": receiver.url("127.0.0.1"), "event_types": ["user.created"],
                    "headers": {"x-n": n.to_string()}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ep}");
}

/// What `receiver` got for the users `emails`: (endpoint mark, email) → deliveries.
fn delivered(
    receiver: &Receiver,
    emails: &[String],
) -> std::collections::BTreeMap<(String, String), usize> {
    let mut seen = std::collections::BTreeMap::new();
    for r in receiver.got() {
        let email = r.json()["data"]["email"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if emails.contains(&email) {
            *seen.entry((r.header("x-n").to_owned(), email)).or_default() += 1;
        }
    }
    seen
}

async fn set_enabled(app: &TestApp, admin: &str, enabled: bool) {
    let (verb, body) = if enabled {
        ("enable", json!({"grant_all": true}))
    } else {
        ("disable", json!({}))
    };
    let res = app
        .http
        .post(app.url(&format!("/api/v1/extensions/webhooks/{verb}")))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{verb}");
}

/// Signs up `n` users through `app`; their e-mails.
async fn sign_up(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut emails = Vec::new();
    for i in 0..n {
        let email = format!("{prefix}{i}@example.com");
        let res = app.signup(&email, "password123").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        emails.push(email);
    }
    emails
}

#[tokio::test]
async fn while_disabled_webhooks_sends_nothing_and_once_enabled_delivers_each_event_once() {
    let receiver = Receiver::start();
    let app = app_with(FAST).await;
    let admin = app.user_token("admin@example.com", true).await;
    endpoint(&app, &admin, &receiver, 1).await;
    endpoint(&app, &admin, &receiver, 2).await;

    set_enabled(&app, &admin, false).await;
    let webhooks = app.extension(&admin, "webhooks").await;
    assert_eq!(webhooks["running"], false, "{webhooks}");
    let before = receiver.got().len();
    let emails = sign_up(&app, "quiet", 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.got().len(),
        before,
        "nothing is sent while it is disabled"
    );

    set_enabled(&app, &admin, true).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            delivered(&receiver, &emails).len() == 10
        })
        .await,
        "{:?}",
        delivered(&receiver, &emails)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = delivered(&receiver, &emails);
    assert!(
        seen.values().all(|n| *n == 1),
        "each event once per endpoint: {seen:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn disabled_on_one_of_three_instances_webhooks_stops_on_all() {
    let receiver = Receiver::start();
    let first = app_with(FAST).await;
    let db = first.db_name.clone();
    let second = app_on(Some(&db), FAST).await;
    let third = app_on(Some(&db), FAST).await;
    let admin = first.user_token("admin@example.com", true).await;
    endpoint(&first, &admin, &receiver, 1).await;
    endpoint(&first, &admin, &receiver, 2).await;

    set_enabled(&first, &admin, false).await;
    // Every instance stops: the others learn it from the change notification.
    for app in [&second, &third] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                app.extension(&admin, "webhooks").await["running"] == false
            })
            .await
        );
    }
    let before = receiver.got().len();
    let mut emails = sign_up(&second, "second", 3).await;
    emails.extend(sign_up(&third, "third", 3).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.got().len(),
        before,
        "no instance sends while it is disabled"
    );

    set_enabled(&third, &admin, true).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            delivered(&receiver, &emails).len() == 12
        })
        .await,
        "{:?}",
        delivered(&receiver, &emails)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = delivered(&receiver, &emails);
    assert!(
        seen.values().all(|n| *n == 1),
        "each event once per endpoint: {seen:?}"
    );
    for app in [first, second, third] {
        app.stop().await.unwrap();
    }
}

/// Finished deliveries past `retention_days` go with their attempts; pending ones and recent
/// ones stay; the deletions are counted on `/metrics`.
#[tokio::test]
async fn finished_deliveries_past_the_retention_are_deleted_with_their_attempts() {
    let receiver = Receiver::start();
    let app = app_with(&format!(
        "{FAST}retention_days = 1\nretention_interval_secs = 1\n"
    ))
    .await;
    let admin = app.user_token("admin@example.com", true).await;
    endpoint(&app, &admin, &receiver, 1).await;
    let db = app.db().await;
    db.batch_execute(
        "WITH e AS (SELECT id FROM ext_webhooks.endpoints LIMIT 1), \
              d AS (INSERT INTO ext_webhooks.deliveries \
                      (endpoint_id, event_id, event_type, payload, status, created_at, \
                       last_attempt_at, attempts) \
                    SELECT e.id, gen_random_uuid(), 'test.' || s.kind, '{}', s.status, \
                           now() - s.age, now() - s.age, 1 \
                    FROM e, (VALUES ('old_succeeded', 'succeeded', interval '3 days'), \
                                    ('old_failed', 'failed', interval '3 days'), \
                                    ('old_pending', 'pending', interval '3 days'), \
                                    ('recent', 'succeeded', interval '1 hour')) \
                         AS s(kind, status, age) \
                    RETURNING id, created_at) \
         INSERT INTO ext_webhooks.attempts \
           (delivery_id, attempt, started_at, duration_ms, succeeded) \
         SELECT id, 1, created_at, 5, true FROM d",
    )
    .await
    .unwrap();
    let kinds = async || -> Vec<String> {
        db.query(
            "SELECT event_type FROM ext_webhooks.deliveries WHERE event_type LIKE 'test.%' \
             ORDER BY event_type",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let deleted = crate::helpers::eventually(std::time::Duration::from_secs(20), || async {
        kinds().await.len() == 2
    })
    .await;
    assert!(
        deleted,
        "old finished deliveries remain: {:?}",
        kinds().await
    );
    assert_eq!(kinds().await, vec!["test.old_pending", "test.recent"]);
    let orphans: i64 = db
        .query_one(
            "SELECT count(*) FROM ext_webhooks.attempts a \
             WHERE NOT EXISTS (SELECT 1 FROM ext_webhooks.deliveries d WHERE d.id = a.delivery_id)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orphans, 0);
    let text = app.metrics_text(&admin).await;
    for (table, least) in [("deliveries", 2.0), ("attempts", 2.0)] {
        let value = crate::helpers::sample(
            &text,
            "solobase_ext_webhooks_retention_deleted_total",
            &[&format!("table=\"{table}\"")],
        );
        assert!(value >= least, "{table}: {value}\n{text}");
    }
}

/// An https receiver (rustls) answering 200 to every request; the bodies it got.
async fn https_receiver(ca: &crate::server::tls::Ca) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, keep) = (acceptor.clone(), keep.clone());
            tokio::spawn(async move {
                // A handshake the client refuses ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // One request: its head, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break buf[end + 4..end + 4 + length].to_vec();
                    }
                };
                keep.lock().unwrap().push(body);
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, got)
}

/// Deliveries to an https receiver whose certificate a private CA signed: refused (and the
/// attempt says why) until the operator names that CA in `outbound_ca_file`, then delivered.
#[tokio::test]
async fn https_deliveries_verify_the_receivers_certificate() {
    let ca = crate::server::tls::Ca::new();
    let ca_pem = ca.pem();
    let (port, got) = https_receiver(&ca).await;
    let url = format!("https://localhost:{port}/hook");
    let dir = crate::helpers::TempDir::new();
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    // Retries 2 s apart: the delivery still waits when the second server starts.
    let toml = "poll_interval_ms = 50\nretry_schedule_secs = [0.0, 2.0, 2.0, 2.0, 2.0]\n\
                timeout_secs = 2\n";
    // Without the CA: the certificate does not verify, which the attempt records.
    let app = app_with(toml).await;
    let db = app.db_name.clone();
    let admin = app.user_token("admin@example.com", true).await;
    let (status, ep) = call(
        &app,
        &admin,
        "POST",
        "/endpoints",
        Some(json!({"url": url, "event_types": ["user.created"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ep}");
    app.signup("first@example.com", "password123").await;
    let mut error = String::new();
    for _ in 0..200 {
        let list = deliveries(&app, &admin, "").await;
        if let Some(d) = list.first() {
            let (_, attempts) = call(
                &app,
                &admin,
                "GET",
                &format!("/deliveries/{}/attempts", d["id"]),
                None,
            )
            .await;
            if let Some(e) = attempts[0]["error"].as_str() {
                error = e.to_owned();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(error.contains("certificate"), "{error:?}");
    assert!(
        got.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
    app.stop().await.unwrap();

    // With the operator's CA: the waiting delivery goes through on its next try, verified.
    let ca = ca_file.clone();
    let app = TestApp::builder()
        .on(db)
        .config(move |c| {
            c.extensions.outbound_ca_file = Some(ca);
            c.extensions
                .limits
                .entry("webhooks".into())
                .or_default()
                .outbound_allow = Some(LOOPBACK.iter().map(|s| s.to_string()).collect());
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
            std::fs::write(c.extensions.config_dir.join("webhooks.toml"), toml).unwrap();
        })
        .spawn()
        .await;
    let delivered = eventually(Duration::from_secs(20), || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    assert!(delivered, "the delivery reached the https receiver");
    let body: Value = serde_json::from_slice(&got.lock().unwrap()[0]).unwrap();
    assert_eq!(body["data"]["email"], "first@example.com");
    assert!(
        eventually(Duration::from_secs(10), || async {
            !deliveries(&app, &admin, "?status=succeeded")
                .await
                .is_empty()
        })
        .await
    );
}

#[tokio::test]
async fn an_unreadable_outbound_ca_file_stops_the_start_with_a_clear_error() {
    let dir = crate::helpers::TempDir::new();
    let bad = dir.0.join("not-a-ca.pem");
    std::fs::write(&bad, "hello").unwrap();
    for (file, expected) in [
        (dir.0.join("missing.pem"), "cannot read it"),
        (bad, "holds no certificate"),
    ] {
        let err = TestApp::builder()
            .config(move |c| c.extensions.outbound_ca_file = Some(file))
            .build()
            .await
            .err()
            .expect("refused");
        let text = format!("{err:#}");
        assert!(
            text.contains("extensions.outbound_ca_file") && text.contains(expected),
            "{text}"
        );
    }
}
