//! Retention: old outbox events and audit entries are deleted (audit entries archived first),
//! recent ones stay, and the audit log stays append-only for everything else.

use std::time::Duration;

use crate::helpers::{TempDir, TestApp, eventually, sample};

/// Rows of `table` matching `filter`.
async fn count(db: &tokio_postgres::Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn old_events_and_audit_entries_are_deleted_the_audit_archived_first() {
    let archive = TempDir::new();
    let archive_dir = archive.0.join("audit");
    let app = TestApp::builder()
        .config({
            let archive_dir = archive_dir.clone();
            move |c| {
                c.retention.outbox_days = 1;
                c.retention.audit_days = 2;
                c.retention.audit_archive_dir = Some(archive_dir);
                c.retention.interval_secs = 1;
                c.retention.batch_size = 2;
            }
        })
        .spawn()
        .await;
    let db = app.db().await;
    db.batch_execute(
        "INSERT INTO solobase.outbox (event_id, event_type, data, occurred_at) \
           SELECT gen_random_uuid(), 'test.old', '{}', now() - interval '3 days' \
           FROM generate_series(1, 5); \
         INSERT INTO solobase.outbox (event_id, event_type, data) \
           SELECT gen_random_uuid(), 'test.recent', '{}' FROM generate_series(1, 2); \
         INSERT INTO solobase.audit_log (at, actor, action, result) \
           SELECT now() - interval '5 days', 'system', 'test.old', 'ok' \
           FROM generate_series(1, 3); \
         INSERT INTO solobase.audit_log (at, actor, action, result) \
           VALUES (now() - interval '1 day', 'system', 'test.recent', 'ok')",
    )
    .await
    .unwrap();

    let gone = eventually(Duration::from_secs(20), || async {
        count(
            &db,
            "SELECT count(*) FROM solobase.outbox WHERE event_type = 'test.old'",
        )
        .await
            == 0
            && count(
                &db,
                "SELECT count(*) FROM solobase.audit_log WHERE action = 'test.old'",
            )
            .await
                == 0
    })
    .await;
    assert!(gone, "old outbox events and audit entries were not deleted");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM solobase.outbox WHERE event_type = 'test.recent'"
        )
        .await,
        2,
        "recent events stay"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM solobase.audit_log WHERE action = 'test.recent'"
        )
        .await,
        1,
        "recent audit entries stay"
    );

    // The deleted entries are in the archive, one JSON object per line.
    let mut archived = Vec::new();
    for file in std::fs::read_dir(&archive_dir).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in text.lines() {
            let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            archived.push(entry["action"].as_str().unwrap().to_owned());
        }
    }
    archived.retain(|a| a.starts_with("test."));
    assert_eq!(
        archived,
        vec!["test.old"; 3],
        "each deleted entry archived once"
    );

    // Counted in /metrics.
    let admin = app.user_token("admin@example.com", true).await;
    let text = app.metrics_text(&admin).await;
    let deleted = |table: &str| {
        sample(
            &text,
            "retention_deleted_total",
            &[&format!("table=\"{table}\"")],
        )
    };
    assert!(deleted("outbox") >= 5.0, "{text}");
    assert!(deleted("audit_log") >= 3.0, "{text}");
    assert!(
        text.contains("retention_runs_total{outcome=\"done\"}"),
        "{text}"
    );
}

/// Retention's way in does not open the audit log: without a run's cutoff nothing is deleted,
/// with one nothing younger than a day, and nothing is ever updated or truncated — not even
/// by the superuser the tests connect as.
#[tokio::test]
async fn the_audit_log_stays_append_only_outside_retention() {
    let app = TestApp::builder().spawn().await;
    let db = app.db().await;
    db.batch_execute(
        "INSERT INTO solobase.audit_log (at, actor, action, result) VALUES \
           (now() - interval '10 days', 'system', 'test.old', 'ok'), \
           (now() - interval '1 hour', 'system', 'test.recent', 'ok')",
    )
    .await
    .unwrap();
    let refused = |sql: &'static str| {
        let db = &db;
        async move {
            let error = db
                .batch_execute(sql)
                .await
                .expect_err(&format!("{sql} must be refused"));
            let text = error.as_db_error().map(|d| d.message().to_owned());
            assert!(
                text.as_deref().is_some_and(|t| t.contains("append-only")),
                "{sql}: {error:?}"
            );
        }
    };
    refused("DELETE FROM solobase.audit_log WHERE action = 'test.old'").await;
    refused(
        "BEGIN; SELECT set_config('solobase.audit_delete_before', now()::text, true); \
         DELETE FROM solobase.audit_log WHERE action = 'test.recent'; COMMIT",
    )
    .await;
    db.batch_execute("ROLLBACK").await.unwrap();
    refused(
        "BEGIN; SELECT set_config('solobase.audit_delete_before', \
           (now() - interval '5 days')::text, true); \
         DELETE FROM solobase.audit_log WHERE at > now() - interval '5 days'; COMMIT",
    )
    .await;
    db.batch_execute("ROLLBACK").await.unwrap();
    refused("UPDATE solobase.audit_log SET action = 'forged' WHERE action = 'test.old'").await;
    refused("TRUNCATE solobase.audit_log").await;
    // What retention may do, it may: an entry older than its cutoff and than a day.
    db.batch_execute(
        "BEGIN; SELECT set_config('solobase.audit_delete_before', \
           (now() - interval '5 days')::text, true); \
         DELETE FROM solobase.audit_log WHERE action = 'test.old'; COMMIT",
    )
    .await
    .unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM solobase.audit_log WHERE action LIKE 'test.%'"
        )
        .await,
        1
    );
}
