//! Attacks on stored objects, carried out against the real server: replacing someone's object
//! with an upload that began before it existed, reading objects the bucket's rule does not
//! allow (GET and HEAD, encoded paths, no token, through an extension's storage service),
//! changing someone's object through an extension, and a path that would be both a file and
//! a folder. Also the bucket rules' administration (API, command line, audit).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, eventually, spawn_app};

/// An administrator sets who may read `bucket`.
async fn set_access(app: &TestApp, admin: &str, bucket: &str, access: &str) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/api/v1/buckets/{bucket}")))
        .bearer_auth(admin)
        .json(&json!({ "access": access }))
        .send()
        .await
        .unwrap()
}

/// `method` of `/api/v1/storage/{path}`, with `token` when given: the status and body.
async fn read(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app
        .http
        .request(method, app.url(&format!("/api/v1/storage/{path}")));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// What the object's file on disk holds.
fn on_disk(app: &TestApp, path: &str) -> String {
    std::fs::read_to_string(app.data_dir.0.join("storage").join(path)).unwrap()
}

/// Uploads in progress: scratch files not yet moved into place.
fn scratch_files(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_dir.0.join("storage/.tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_upload_begun_before_someone_else_created_the_path_does_not_replace_their_object() {
    let app = spawn_app().await;
    let alice = app.user_token("alice@example.com", false).await;
    let mallory = app.user_token("mallory@example.com", false).await;

    // Mallory starts uploading to a free path; the body trickles in.
    let (chunks, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let slow = app
        .http
        .put(app.url("/api/v1/storage/shared/x.txt"))
        .bearer_auth(&mallory)
        .header("content-type", "text/plain")
        .body(reqwest::Body::wrap_stream(body));
    let slow = tokio::spawn(async move { slow.send().await.unwrap() });
    chunks.send(b"mallory's ".to_vec()).await.unwrap();
    // Its scratch file exists once the server has checked the path (it was free) and
    // started receiving the body.
    assert!(
        eventually(Duration::from_secs(10), || async {
            scratch_files(&app) == 1
        })
        .await,
        "the slow upload is under way"
    );

    // Meanwhile Alice creates the path.
    let res = app
        .put_object(&alice, "shared/x.txt", "alice's", "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // Mallory's body ends: refused, and nothing of it is kept.
    chunks.send(b"content".to_vec()).await.unwrap();
    drop(chunks);
    let res = slow.await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not replaced"),
        "{body}"
    );
    assert_eq!(
        read(&app, "GET", "shared/x.txt", Some(&alice)).await,
        (200, "alice's".into())
    );
    assert_eq!(on_disk(&app, "shared/x.txt"), "alice's", "the file on disk");
    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT o.owner_id = u.id, o.size FROM solobase.storage_objects o \
             JOIN solobase.users u ON u.email = 'alice@example.com' \
             WHERE o.bucket = 'shared' AND o.path = 'x.txt'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "Alice still owns it");
    assert_eq!(row.get::<_, i64>(1), 7);
    let uploads: i64 = db
        .query_one(
            "SELECT count(*) FROM solobase.outbox WHERE event_type = 'storage.uploaded'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(uploads, 1, "only Alice's upload is announced");
    assert_eq!(scratch_files(&app), 0, "the refused upload left nothing");

    // Mallory cannot delete it either; Alice can still change it.
    assert_eq!(
        app.delete_object(&mallory, "shared/x.txt").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put_object(&alice, "shared/x.txt", "alice's v2", "text/plain")
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_private_object_is_read_only_by_its_owner_and_administrators() {
    let app = spawn_app().await;
    let alice = app.user_token("alice@example.com", false).await;
    let bob = app.user_token("bob@example.com", false).await;
    let admin = app.user_token("admin@example.com", true).await;
    let res = app
        .put_object(
            &alice,
            "private/dir/alice.txt",
            "alice's secret",
            "text/plain",
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // Refused exactly as a missing object is, however the path is spelled, by GET and HEAD,
    // with a token or without.
    let (_, missing) = read(&app, "GET", "private/dir/none.txt", Some(&bob)).await;
    for path in [
        "private/dir/alice.txt",
        "private/dir/%61lice.txt",
        "private/%64ir/alice%2Etxt",
    ] {
        for method in ["GET", "HEAD"] {
            for token in [Some(bob.as_str()), None] {
                let (status, body) = read(&app, method, path, token).await;
                assert_eq!(status, 404, "{method} {path} as {token:?}: {body}");
                assert!(!body.contains("secret"), "{method} {path}: {body}");
                if method == "GET" {
                    assert_eq!(body, missing, "indistinguishable from a missing object");
                }
            }
        }
    }
    let (status, _) = read(&app, "GET", "PRIVATE/dir/alice.txt", Some(&bob)).await;
    assert_eq!(status, 400, "bucket names are lower-case");
    // A forged or expired token is refused, not read as anonymous.
    assert_eq!(
        read(&app, "GET", "private/dir/alice.txt", Some("not-a-token"))
            .await
            .0,
        401
    );
    // Bob can neither delete it (404: he may not know it exists) nor replace it.
    assert_eq!(
        app.delete_object(&bob, "private/dir/alice.txt")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let res = app
        .put_object(&bob, "private/dir/alice.txt", "bob's", "text/plain")
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Its owner and administrators read it, by GET and by HEAD.
    for token in [&alice, &admin] {
        assert_eq!(
            read(&app, "GET", "private/dir/alice.txt", Some(token)).await,
            (200, "alice's secret".into())
        );
        let res = app
            .http
            .head(app.url("/api/v1/storage/private/dir/alice.txt"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-length"], "14");
    }
}

/// Whether `docs/a.txt` can be read as `token`: the status, the same for GET and HEAD.
async fn readable(app: &TestApp, token: Option<&str>) -> u16 {
    let get = read(app, "GET", "docs/a.txt", token).await;
    let head = read(app, "HEAD", "docs/a.txt", token).await.0;
    assert_eq!(get.0, head, "HEAD answers as GET");
    if get.0 == 200 {
        assert_eq!(get.1, "alice's notes");
    }
    get.0
}

#[tokio::test]
async fn bucket_rules_open_reads_to_signed_in_users_or_to_everyone() {
    let app = spawn_app().await;
    let alice = app.user_token("alice@example.com", false).await;
    let bob = app.user_token("bob@example.com", false).await;
    let admin = app.user_token("admin@example.com", true).await;
    assert_eq!(
        app.put_object(&alice, "docs/a.txt", "alice's notes", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    // Signed-in users read an authenticated bucket; anonymous clients do not.
    assert_eq!(
        set_access(&app, &admin, "docs", "authenticated")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(readable(&app, Some(&bob)).await, 200);
    assert_eq!(readable(&app, None).await, 404);
    // Reading is not changing: Bob, who may read it now, is told no (403) when he tries.
    assert_eq!(
        app.delete_object(&bob, "docs/a.txt").await.status(),
        StatusCode::FORBIDDEN
    );

    // Anyone reads a public bucket, without a token.
    assert_eq!(
        set_access(&app, &admin, "docs", "public").await.status(),
        StatusCode::OK
    );
    assert_eq!(readable(&app, None).await, 200);
    assert_eq!(readable(&app, Some(&bob)).await, 200);
    // Another bucket is still private.
    assert_eq!(
        app.put_object(&alice, "other/a.txt", "x", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(read(&app, "GET", "other/a.txt", None).await.0, 404);

    // Private again: at once.
    assert_eq!(
        set_access(&app, &admin, "docs", "private").await.status(),
        StatusCode::OK
    );
    assert_eq!(readable(&app, None).await, 404);
    assert_eq!(readable(&app, Some(&bob)).await, 404);
    assert_eq!(readable(&app, Some(&alice)).await, 200);
}

#[tokio::test]
async fn bucket_rules_are_set_by_administrators_only_and_audited() {
    let app = spawn_app().await;
    let alice = app.user_token("alice@example.com", false).await;
    let admin = app.user_token("admin@example.com", true).await;
    app.put_object(&alice, "docs/a.txt", "abc", "text/plain")
        .await;

    let res = set_access(&app, &alice, "docs", "public").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(read(&app, "GET", "docs/a.txt", None).await.0, 404);
    let res = set_access(&app, &admin, "docs", "everyone").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(res).await, "invalid_request");
    let res = set_access(&app, &admin, "Docs", "public").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let res = set_access(&app, &admin, "docs", "public").await;
    assert_eq!(res.status(), StatusCode::OK);
    let bucket: Value = res.json().await.unwrap();
    assert_eq!(
        bucket,
        json!({"name": "docs", "access": "public", "objects": 1, "bytes": 3})
    );
    let list: Value = app
        .http
        .get(app.url("/api/v1/buckets"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([bucket]));
    let res = app
        .http
        .get(app.url("/api/v1/buckets/empty"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"name": "empty", "access": "private", "objects": 0, "bytes": 0})
    );

    let audit: Vec<(String, String, Value)> = app
        .db()
        .await
        .query(
            "SELECT actor, result, detail FROM solobase.audit_log \
             WHERE action = 'storage.bucket_access' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0].1, "denied");
    assert_eq!(audit[1].1, "ok");
    assert!(audit[1].0.starts_with("user:"));
    assert_eq!(
        audit[1].2,
        json!({"bucket": "docs", "access": "public", "previous": "private"})
    );
}

#[tokio::test]
async fn the_command_line_sets_a_buckets_rule() {
    use crate::server::cli::{run, solobase, stderr};
    let app = spawn_app().await;
    let alice = app.user_token("alice@example.com", false).await;
    app.put_object(&alice, "site/index.html", "<p>hi</p>", "text/html")
        .await;
    assert_eq!(read(&app, "GET", "site/index.html", None).await.0, 404);

    let url = crate::helpers::database_url(&app.db_name);
    let dir = crate::helpers::TempDir::new();
    let storage = |args: &[&str]| {
        let mut cmd = solobase(&dir.0);
        cmd.arg("storage").args(args).args(["--database-url", &url]);
        run(cmd, Duration::from_secs(60))
    };
    let out = storage(&["bucket", "site", "--access", "public"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("site: access public"), "{printed}");
    assert_eq!(
        read(&app, "GET", "site/index.html", None).await,
        (200, "<p>hi</p>".into())
    );

    let out = storage(&["buckets", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "site");
    assert_eq!(list[0]["access"], "public");

    let out = storage(&["bucket", "site", "--access", "everyone"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let out = storage(&["bucket", "Bad.Name", "--access", "public"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid bucket name"),
        "{}",
        stderr(&out)
    );

    let actor: String = app
        .db()
        .await
        .query_one(
            "SELECT actor FROM solobase.audit_log WHERE action = 'storage.bucket_access'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(actor.starts_with("cli:"), "{actor}");
}

#[tokio::test]
async fn a_path_is_a_file_or_a_folder_never_both() {
    let app = spawn_app().await;
    let alice = app.user_token("alice@example.com", false).await;
    let admin = app.user_token("admin@example.com", true).await;
    let conflict = |res: reqwest::Response| async move {
        assert_eq!(res.status(), StatusCode::CONFLICT);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "path_conflict");
        let message = body["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("cannot be both a file and a folder"),
            "{message}"
        );
        message
    };

    // A file, then a folder of the same name …
    assert_eq!(
        app.put_object(&alice, "b/c/d/e", "e", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    let message = conflict(app.put_object(&alice, "b/c/d", "d", "text/plain").await).await;
    assert!(message.contains("\"c/d\" is a folder"), "{message}");
    // … and a folder, then a file inside what is a file; administrators too.
    assert_eq!(
        app.put_object(&alice, "b/x/y", "y", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
    let message = conflict(app.put_object(&admin, "b/x/y/z", "z", "text/plain").await).await;
    assert!(message.contains("\"x/y\" is a file"), "{message}");
    let message = conflict(app.put_object(&alice, "b/x/y/z/w", "w", "text/plain").await).await;
    assert!(message.contains("\"x/y\" is a file"), "{message}");

    // Nothing of the refused writes is kept.
    for path in ["b/c/d", "b/x/y/z"] {
        assert_eq!(read(&app, "GET", path, Some(&admin)).await.0, 404, "{path}");
    }
    assert_eq!(
        read(&app, "GET", "b/c/d/e", Some(&alice)).await,
        (200, "e".into())
    );
    assert_eq!(
        read(&app, "GET", "b/x/y", Some(&alice)).await,
        (200, "y".into())
    );

    // Once the folder's last file is deleted, its name can hold a file.
    assert_eq!(
        app.delete_object(&alice, "b/c/d/e").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.put_object(&alice, "b/c/d", "d", "text/plain")
            .await
            .status(),
        StatusCode::CREATED
    );
}

/// Through the test-only probe extension, whose `/ext/probe/shared/{bucket}/{path}` routes
/// (public: any caller, with a token or without) read, write and delete host storage with
/// the storage service.
#[cfg(feature = "probe")]
mod through_an_extension {
    use super::*;

    /// `method` of the probe's `/ext/probe/shared/{path}`, as `token` when given.
    async fn probe(
        app: &TestApp,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &'static str,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = app
            .http
            .request(method, app.url(&format!("/ext/probe/shared/{path}")))
            .header("content-type", "text/plain")
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// The same caller gets the same answer from the host and through the extension.
    async fn same_answer(app: &TestApp, path: &str, token: Option<&str>) -> u16 {
        let host = read(app, "GET", path, token).await;
        let ext = probe(app, "GET", path, token, "").await;
        assert_eq!(host.0, ext.0, "{path} as {token:?}: {host:?} / {ext:?}");
        if host.0 == 200 {
            assert_eq!(host.1, ext.1);
        }
        host.0
    }

    #[tokio::test]
    async fn an_extension_reads_host_storage_only_as_its_caller_may() {
        let app = spawn_app().await;
        let alice = app.user_token("alice@example.com", false).await;
        let bob = app.user_token("bob@example.com", false).await;
        let admin = app.user_token("admin@example.com", true).await;
        assert_eq!(
            app.put_object(&alice, "private/a.txt", "alice's secret", "text/plain")
                .await
                .status(),
            StatusCode::CREATED
        );

        let path = "private/a.txt";
        assert_eq!(same_answer(&app, path, None).await, 404);
        assert_eq!(same_answer(&app, path, Some(&bob)).await, 404);
        assert_eq!(same_answer(&app, path, Some(&alice)).await, 200);
        assert_eq!(same_answer(&app, path, Some(&admin)).await, 200);

        set_access(&app, &admin, "private", "authenticated").await;
        assert_eq!(same_answer(&app, path, None).await, 404);
        assert_eq!(same_answer(&app, path, Some(&bob)).await, 200);
        set_access(&app, &admin, "private", "public").await;
        assert_eq!(same_answer(&app, path, None).await, 200);
        set_access(&app, &admin, "private", "private").await;
        assert_eq!(same_answer(&app, path, None).await, 404);
        assert_eq!(same_answer(&app, path, Some(&bob)).await, 404);

        // The extension cannot replace or delete a user's object, for anyone.
        for token in [None, Some(bob.as_str())] {
            let (status, body) = probe(&app, "PUT", path, token, "overwritten").await;
            assert_eq!(status, 403, "{body}");
            let (status, body) = probe(&app, "DELETE", path, token, "").await;
            assert_eq!(status, 403, "{body}");
        }
        assert_eq!(
            read(&app, "GET", path, Some(&alice)).await,
            (200, "alice's secret".into())
        );
        assert_eq!(on_disk(&app, path), "alice's secret");

        // What the extension stores has no owner: private, it is for administrators only.
        let (status, body) = probe(&app, "PUT", "private/ext.txt", None, "from the probe").await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(
            same_answer(&app, "private/ext.txt", Some(&alice)).await,
            404
        );
        assert_eq!(
            same_answer(&app, "private/ext.txt", Some(&admin)).await,
            200
        );
    }

    #[tokio::test]
    async fn an_extension_gets_a_conflict_for_a_path_that_is_a_file_and_a_folder() {
        let app = spawn_app().await;
        let alice = app.user_token("alice@example.com", false).await;
        assert_eq!(
            app.put_object(&alice, "b/c/d", "d", "text/plain")
                .await
                .status(),
            StatusCode::CREATED
        );
        let (status, body) = probe(&app, "PUT", "b/c/d/e", None, "e").await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body.contains("cannot be both a file and a folder"),
            "{body}"
        );
        let (status, body) = probe(&app, "PUT", "b/f/g", None, "g").await;
        assert_eq!(status, 204, "{body}");
        let (status, body) = probe(&app, "PUT", "b/f", None, "f").await;
        assert_eq!(status, 409, "{body}");
        assert!(
            body.contains("cannot be both a file and a folder"),
            "{body}"
        );
    }
}
