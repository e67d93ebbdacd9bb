use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, error_code, spawn_app};

#[tokio::test]
async fn upload_download_replace_delete() {
    let app = spawn_app().await;
    let token = app.user_token("ada@example.com", false).await;
    let res = app
        .put_object(
            &token,
            "docs/notes/hello%20world.txt",
            "hello",
            "text/plain",
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["path"], "notes/hello world.txt");
    assert_eq!(info["size"], 5);

    let res = app.get_object(&token, "docs/notes/hello%20world.txt").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.text().await.unwrap(), "hello");

    let res = app
        .put_object(&token, "docs/notes/hello%20world.txt", "bye", "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.get_object(&token, "docs/notes/hello%20world.txt")
            .await
            .text()
            .await
            .unwrap(),
        "bye"
    );

    assert_eq!(
        app.delete_object(&token, "docs/notes/hello%20world.txt")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let res = app.get_object(&token, "docs/notes/hello%20world.txt").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(res).await, "not_found");
    assert!(
        !app.data_dir
            .0
            .join("storage/docs/notes/hello world.txt")
            .exists()
    );

    let types: Vec<String> = app
        .db()
        .await
        .query(
            "SELECT event_type FROM solobase.outbox WHERE event_type LIKE 'storage.%' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        types,
        ["storage.uploaded", "storage.uploaded", "storage.deleted"]
    );
}

#[tokio::test]
async fn changing_storage_requires_authentication() {
    let app = spawn_app().await;
    let res = app
        .http
        .put(app.url("/api/v1/storage/b/x"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(res).await, "unauthenticated");
    let res = app
        .http
        .delete(app.url("/api/v1/storage/b/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Reading without a token is for public buckets (`storage_access`); elsewhere there is
    // nothing to see.
    let res = app
        .http
        .get(app.url("/api/v1/storage/b/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_the_uploader_or_an_admin_may_change_an_object() {
    let app = spawn_app().await;
    let ada = app.user_token("ada@example.com", false).await;
    let bob = app.user_token("bob@example.com", false).await;
    let admin = app.user_token("root@example.com", true).await;
    assert_eq!(
        app.put_object(&ada, "b/file", "ada's", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    // Signed-in users may read this bucket's objects …
    let res = app
        .http
        .put(app.url("/api/v1/buckets/b"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"access": "authenticated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.get_object(&bob, "b/file").await.text().await.unwrap(),
        "ada's"
    );
    // …but not replace or delete.
    let res = app.put_object(&bob, "b/file", "bob's", "text/plain").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(res).await, "forbidden");
    assert_eq!(
        app.delete_object(&bob, "b/file").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_object(&ada, "b/file").await.text().await.unwrap(),
        "ada's"
    );
    assert_eq!(
        app.delete_object(&admin, "b/file").await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn uploads_over_the_limit_are_refused_and_leave_nothing() {
    let app = TestApp::builder()
        .config(|c| c.storage.max_upload_bytes = 1024)
        .spawn()
        .await;
    let token = app.user_token("ada@example.com", false).await;
    let res = app
        .put_object(&token, "b/big", vec![7u8; 1025], "application/octet-stream")
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(res).await, "payload_too_large");
    // Without a Content-Length (chunked), the limit holds while streaming.
    let chunks =
        futures_util::stream::iter((0..5).map(|_| Ok::<_, std::io::Error>(vec![1u8; 300])));
    let res = app
        .put_object(
            &token,
            "b/big",
            reqwest::Body::wrap_stream(chunks),
            "application/octet-stream",
        )
        .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        app.get_object(&token, "b/big").await.status(),
        StatusCode::NOT_FOUND
    );
    let scratch = std::fs::read_dir(app.data_dir.0.join("storage/.tmp"))
        .unwrap()
        .count();
    assert_eq!(scratch, 0, "no scratch file is left behind");
    // Exactly at the limit is fine.
    assert_eq!(
        app.put_object(&token, "b/ok", vec![7u8; 1024], "application/octet-stream")
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn paths_can_never_leave_the_storage_root() {
    let app = spawn_app().await;
    let token = app.user_token("ada@example.com", false).await;
    // Something outside storage that an escape would reach.
    std::fs::write(app.data_dir.0.join("secret.txt"), "secret").unwrap();
    let auth = format!("Bearer {token}");
    for path in [
        "/api/v1/storage/b/../../secret.txt",
        "/api/v1/storage/b/x/../../../secret.txt",
        "/api/v1/storage/b/%2e%2e/%2e%2e/secret.txt",
        "/api/v1/storage/b/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/api/v1/storage/b/..%2f..%2fsecret.txt",
        "/api/v1/storage/b/..%5c..%5csecret.txt",
        "/api/v1/storage/b//etc/passwd",
        "/api/v1/storage/b/%2fetc%2fpasswd",
        "/api/v1/storage/../secret.txt",
        "/api/v1/storage/%2e%2e/secret.txt",
        "/api/v1/storage/b/./secret.txt",
        "/api/v1/storage/b/x%00y",
        "/api/v1/storage/b/.tmp/x",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let (status, body) = app
                .raw(
                    &format!("{method} {path} HTTP/1.1"),
                    &[("Authorization", &auth), ("Content-Length", "6")],
                )
                .await;
            assert!(
                status == 400 || status == 404,
                "{method} {path} answered {status}: {body}"
            );
            assert!(!body.contains("secret\""), "{method} {path} leaked: {body}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(app.data_dir.0.join("secret.txt")).unwrap(),
        "secret"
    );
}

#[tokio::test]
async fn symlinks_inside_storage_are_never_followed() {
    let app = spawn_app().await;
    let token = app.user_token("ada@example.com", false).await;
    let outside = app.data_dir.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    // A file is uploaded, then someone with shell access swaps its directory for a link.
    assert_eq!(
        app.put_object(&token, "b/dir/secret.txt", "mine", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    let dir = app.data_dir.0.join("storage/b/dir");
    std::fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&outside, &dir).unwrap();
    let res = app.get_object(&token, "b/dir/secret.txt").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!res.text().await.unwrap().contains("secret\""));
    let res = app
        .put_object(&token, "b/dir/secret.txt", "overwrite", "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "secret"
    );
}

#[tokio::test]
async fn bad_bucket_names_and_content_types_are_rejected() {
    let app = spawn_app().await;
    let token = app.user_token("ada@example.com", false).await;
    let res = app
        .put_object(&token, "Bad.Bucket/x", "x", "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "invalid_request");
    let res = app.put_object(&token, "b/x", "x", "nonsense").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
