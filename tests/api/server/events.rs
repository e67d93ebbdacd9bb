use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::TestApp;

#[tokio::test]
async fn committed_events_reach_bus_subscribers_and_the_outbox() {
    let app = TestApp::builder()
        .config(|c| c.auth.signup_enabled = true)
        .spawn()
        .await;
    let mut rx = app.events.subscribe();
    let res = app.signup("ev@example.com", "password123").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.event_type.as_str(), "user.created");
    assert_eq!(second.event_type.as_str(), "user.login");
    // The live event and the durable one are the same event.
    let row = app
        .db()
        .await
        .query_one(
            "SELECT event_id FROM solobase.outbox WHERE event_type = 'user.created'",
            &[],
        )
        .await
        .unwrap();
    let id: uuid::Uuid = row.get(0);
    assert_eq!(id, first.id);
}

#[tokio::test]
async fn a_failed_change_records_no_event() {
    let app = TestApp::builder()
        .config(|c| c.auth.signup_enabled = true)
        .spawn()
        .await;
    let signup = || app.signup("dup@example.com", "password123");
    assert_eq!(signup().await.status(), StatusCode::CREATED);
    assert_eq!(signup().await.status(), StatusCode::CONFLICT);
    let created: i64 = app
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM solobase.outbox WHERE event_type = 'user.created'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 1);
}
