//! Tests at the level production runs (`solobase::testkit`): the real server with this
//! extension compiled in, on a real PostgreSQL, every call through a socket and the whole
//! request pipeline, deliveries through the host's outbound client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use solobase::testkit::TestServer;
use solobase_sdk::prelude::*;
use solobase_sdk::testing::identity;
use solobase_sdk::webhooks::{Secret, verify_headers};

/// A local receiver (actix-web) keeping every request's headers and body.
type Got = Arc<Mutex<Vec<(http::HeaderMap, Vec<u8>)>>>;

fn receiver() -> (u16, Got, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let got: Got = Arc::default();
    let keep = got.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let keep = keep.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let keep = keep.clone();
            async move {
                let mut headers = http::HeaderMap::new();
                for (name, value) in req.headers() {
                    headers.append(
                        http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                        http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
                    );
                }
                keep.lock().unwrap().push((headers, body.to_vec()));
                HttpResponse::Ok().finish()
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (port, got, handle)
}

#[tokio::test]
async fn a_granted_user_subscribes_and_a_committed_event_arrives_signed() {
    let (port, got, receiver) = receiver();
    let server = TestServer::builder(crate::solobase_extension())
        .extension_config("webhooks", "poll_interval_ms = 50\n")
        .config(|c| {
            // The receiver is on loopback, which only the operator may open to ctx.http.
            c.extensions
                .limits
                .entry("webhooks".into())
                .or_default()
                .outbound_allow = Some(vec!["127.0.0.0/8".into()]);
        })
        .start()
        .await
        .unwrap();
    let body = serde_json::json!({
        "url": format!("http://127.0.0.1:{port}/hook"),
        "event_types": ["user.created"],
    });
    let subscribe = |who: Identity| {
        Request::new(Method::POST, "/api/endpoints")
            .with_json(&body)
            .with_identity(who)
    };
    let ops = identity("ops@example.com", Role::User);
    let refused = server.call(subscribe(ops.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    server.grant(crate::api::PERMISSION).await;
    let created = server.call(subscribe(ops)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let endpoint: serde_json::Value = serde_json::from_slice(&created.body).unwrap();
    let secret: Secret = endpoint["secret"].as_str().unwrap().parse().unwrap();

    // A host change commits its event; the feed and the workers (host-managed tasks) deliver.
    server.token("newcomer@example.com", Role::User).await;
    let mut delivered = Vec::new();
    for _ in 0..200 {
        delivered = got.lock().unwrap().clone();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let [(headers, body)] = &delivered[..] else {
        panic!("one delivery, got {}", delivered.len());
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    verify_headers(&secret, headers, body, now).unwrap();
    let event: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event["type"], "user.created");
    assert_eq!(event["data"]["email"], "newcomer@example.com");

    // What it stored, read as the extension itself.
    let client = server.database("webhooks").client().await.unwrap();
    let endpoints: i64 = client
        .query_one("SELECT count(*) FROM endpoints", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(endpoints, 1);
    assert!(
        client
            .query_one("SELECT count(*) FROM solobase.outbox", &[])
            .await
            .is_err(),
        "the extension's role reads the host's outbox only through ctx.events"
    );
    server.stop().await.unwrap();
    receiver.stop(false).await;
}
