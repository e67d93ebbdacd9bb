//! Three instances on one database behave as one system: migrations run once, and enable,
//! disable, grants and configuration changed on any instance apply on all of them within a
//! second — by notification alone (the periodic re-read is switched off here).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, connect, eventually, fresh_database};

async fn instance(db_name: &str) -> TestApp {
    TestApp::builder()
        .on(db_name.to_owned())
        .config(|c| {
            c.extensions.resync_secs = 3600;
            c.extensions.client_rate_per_second = 0;
            c.extensions.jobs_poll_ms = 50;
            std::fs::create_dir_all(&c.extensions.config_dir).unwrap();
        })
        .spawn()
        .await
}

/// How long until `check` holds on every instance (panics after a second).
async fn everywhere(
    apps: &[&TestApp],
    what: &str,
    check: impl AsyncFn(&TestApp) -> bool,
) -> Duration {
    let started = Instant::now();
    for app in apps {
        assert!(
            eventually(Duration::from_secs(1), || check(app)).await,
            "{what}: not applied on every instance within a second"
        );
    }
    started.elapsed()
}

async fn status(app: &TestApp, path: &str) -> StatusCode {
    app.get(path).await.status()
}

#[tokio::test]
async fn three_instances_on_one_database_behave_as_one() {
    let db_name = fresh_database().await;
    // Started at once on an empty database: the migrations run once.
    let (a, b, c) = tokio::join!(instance(&db_name), instance(&db_name), instance(&db_name));
    let db = connect(&db_name).await;
    for history in [
        "solobase.refinery_schema_history",
        "ext_probe.refinery_schema_history",
    ] {
        let (all, distinct): (i64, i64) = db
            .query_one(
                &format!("SELECT count(*), count(DISTINCT version) FROM {history}"),
                &[],
            )
            .await
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(all, distinct, "{history}: each migration applied once");
    }
    let admin = a.user_token("admin@example.com", true).await;
    b.create_user("keyed@example.com", "password123", false)
        .await;
    let others = [&b, &c];
    let mut took = Vec::new();

    // Disabled on A: gone on B and C.
    let res = a
        .http
        .post(a.url("/api/v1/extensions/probe/disable"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    took.push(
        everywhere(&others, "disable", async |app| {
            status(app, "/ext/probe/public").await == StatusCode::NOT_FOUND
        })
        .await,
    );

    // Enabled on B (its token works everywhere: one database): back on A and C.
    let res = b
        .http
        .post(b.url("/api/v1/extensions/probe/enable"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    took.push(
        everywhere(&[&a, &c], "enable", async |app| {
            status(app, "/ext/probe/public").await == StatusCode::OK
        })
        .await,
    );

    // users.read revoked on C: the probe's user lookups fail on A and B.
    let keyed = |app: &TestApp| {
        app.http
            .get(app.url("/ext/probe/me"))
            .header("x-probe-key", "letmein")
            .header("x-probe-user", "keyed@example.com")
            .send()
    };
    assert_eq!(keyed(&a).await.unwrap().status(), StatusCode::OK);
    let res = c
        .http
        .delete(c.url("/api/v1/extensions/probe/grants/users.read"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    took.push(
        everywhere(&[&a, &b], "revoke", async |app| {
            keyed(app).await.unwrap().status() == StatusCode::UNAUTHORIZED
        })
        .await,
    );

    // Configuration changed on A: applied on B and C, and written to their files.
    let res = a
        .http
        .get(a.url("/api/v1/extensions/probe/config"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = a
        .http
        .put(a.url("/api/v1/extensions/probe/config"))
        .bearer_auth(&admin)
        .header("if-match", etag)
        .json(&json!({"greeting": "from A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    took.push(
        everywhere(&others, "configuration", async |app| {
            let body: Value = app.get("/ext/probe/config").await.json().await.unwrap();
            body["greeting"] == "from A"
        })
        .await,
    );
    for app in others {
        let file = app.data_dir.0.join("extension-config/probe.toml");
        assert!(std::fs::read_to_string(file).unwrap().contains("from A"));
    }
    println!("changes reached the other instances in {took:?}");

    // 300 background jobs queued on A: each run exactly once, by whichever instance claimed it.
    let res = a
        .http
        .post(a.url("/ext/probe/jobs/300"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let done = || async {
        db.query_one(
            "SELECT count(*) FROM solobase.jobs WHERE extension = 'probe' AND done_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    assert!(
        eventually(Duration::from_secs(30), || async { done().await == 300 }).await,
        "all jobs done ({} of 300)",
        done().await
    );
    let runs: i64 = db
        .query_one("SELECT count(*) FROM ext_probe.job_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 300, "each job ran once");
    let rows = db
        .query(
            "SELECT ran_by, count(*), max(attempts), count(last_error) FROM solobase.jobs \
             WHERE extension = 'probe' GROUP BY ran_by",
            &[],
        )
        .await
        .unwrap();
    let by_instance: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    for row in &rows {
        assert_eq!(row.get::<_, i32>(2), 1, "no job needed a second run");
        assert_eq!(row.get::<_, i64>(3), 0, "no job failed");
    }
    println!("jobs run per instance: {by_instance:?}");
    assert!(
        by_instance.len() >= 2,
        "the instances shared the work: {by_instance:?}"
    );
    for app in [a, b, c] {
        app.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_failing_job_is_retried_later_and_given_up_after_its_last_attempt() {
    let db_name = fresh_database().await;
    let app = instance(&db_name).await;
    let db = connect(&db_name).await;
    let queued = db
        .query_one(
            "INSERT INTO solobase.jobs (extension, kind, max_attempts) \
             VALUES ('probe', 'no-such-kind', 2) RETURNING id, run_at",
            &[],
        )
        .await
        .unwrap();
    let (id, queued_at): (i64, time::OffsetDateTime) = (queued.get(0), queued.get(1));
    let state = || async {
        let row = db
            .query_one(
                // The next run is due at least the first retry delay (2 s) after the job could
                // first run: after its failure, however late this query runs.
                "SELECT attempts, done_at IS NOT NULL, last_error, \
                        run_at >= $2::timestamptz + interval '2 seconds' \
                 FROM solobase.jobs WHERE id = $1",
                &[&id, &queued_at],
            )
            .await
            .unwrap();
        (
            row.get::<_, i32>(0),
            row.get::<_, bool>(1),
            row.get::<_, Option<String>>(2),
            row.get::<_, bool>(3),
        )
    };
    // The first run fails: retried later, not before.
    assert!(eventually(Duration::from_secs(5), async || state().await.0 >= 1).await);
    let (attempts, done, error, later) = state().await;
    assert!(later, "scheduled again for later");
    assert!(attempts == 2 || !done, "not given up after its first run");
    assert!(error.unwrap().contains("no job kind no-such-kind"));
    // The second (last) run fails too: given up, with the error kept.
    assert!(eventually(Duration::from_secs(10), async || state().await.1).await);
    assert_eq!(state().await.0, 2);
    let probe = app
        .extension(&app.user_token("admin@example.com", true).await, "probe")
        .await;
    assert_eq!(probe["stats"]["jobs_failed"], 2, "{probe}");
    app.stop().await.unwrap();
}
