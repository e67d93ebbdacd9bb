//! Tests at the level production runs (`solobase::testkit`): the real server with this
//! extension compiled in, on a real PostgreSQL, every call through a socket and the whole
//! request pipeline.

use std::time::Duration;

use solobase::testkit::TestServer;
use solobase_sdk::prelude::*;
use solobase_sdk::testing::identity;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

fn code(res: &Response) -> String {
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn stats_need_the_granted_permission_and_the_hook_writes_as_the_extensions_own_role() {
    let server = TestServer::builder(crate::solobase_extension())
        .extension_config("analytics", "flush_interval_ms = 50\n")
        .start()
        .await
        .unwrap();
    // The route's access rule and the role's permissions, as the host checks them.
    let summary = || Request::new(Method::GET, "/api/stats/summary");
    assert_eq!(
        server.call(summary()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let user = identity("reader@example.com", Role::User);
    let refused = server.call(summary().with_identity(user.clone())).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(code(&refused), "forbidden");
    assert!(
        String::from_utf8_lossy(&refused.body).contains("analytics.view"),
        "{:?}",
        refused.body
    );
    server.grant("analytics.view").await;
    let allowed = server.call(summary().with_identity(user)).await;
    assert_eq!(allowed.status, StatusCode::OK, "{:?}", allowed.body);

    // The post_request hook sees host routes' page views; the flusher writes them.
    for _ in 0..3 {
        let mut page = Request::new(Method::GET, "/healthz");
        page.head
            .headers
            .insert("user-agent", HeaderValue::from_static(FIREFOX));
        assert_eq!(server.call_host(page).await.status, StatusCode::OK);
    }
    let db = server.database("analytics");
    let client = db.client().await.unwrap();
    let mut written = 0;
    for _ in 0..200 {
        written = client
            .query_one("SELECT count(*) FROM events WHERE path = '/healthz'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if written == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(written, 3);
    // That connection is the extension's: its role, and nothing of the host's.
    let who: String = client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "ext_analytics");
    let host_table = client
        .query_one("SELECT count(*) FROM solobase.users", &[])
        .await
        .unwrap_err();
    assert_eq!(
        host_table.code(),
        Some(&solobase_sdk::tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
        "{host_table}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_operators_rate_limit_holds_on_its_routes() {
    let server = TestServer::builder(crate::solobase_extension())
        .config(|c| {
            let limits = c.extensions.limits.entry("analytics".into()).or_default();
            limits.client_rate_per_second = Some(1);
            limits.client_rate_burst = Some(2);
        })
        .start()
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let res = server.call(Request::new(Method::GET, "/script.js")).await;
        statuses.push(res.status.as_u16());
    }
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
}
