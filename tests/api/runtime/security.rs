//! Attacks on the trust boundaries, carried out for real: a binary with test-only extensions
//! asked to serve, an extension outside the official tier granting itself permissions, an
//! extension's database role trying to become a superuser through the host's commands, to
//! hold the host's locks, to reach the cluster's other databases. Each test fails if the
//! attack works again.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use solobase_sdk::prelude::*;
use solobase_sdk::{Migration, Registration};

use crate::helpers::{TempDir, TestApp, connect, database_url, fresh_database};
use crate::server::cli::{Server, run, solobase, stderr};

const ADMIN: &str = "admin@example.com";
const PASSWORD: &str = "correct horse battery";

/// A client on the embedded cluster of the server whose data directory is `data`, as `user`.
async fn embedded_as(
    data: &Path,
    user: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let socket = solobase::db::embedded::socket_dir(&data.join("postgres"));
    let mut config = solobase::db::embedded::connect_config(&socket, dbname);
    config.user(user);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn admin_token(http: &reqwest::Client, server: &Server) -> String {
    let res = http
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `solobase extensions ARGS --data-dir DATA` next to the running server; its output.
fn extensions_cli(cwd: &Path, data: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = solobase(cwd);
    cmd.arg("extensions").args(args).arg("--data-dir").arg(data);
    run(cmd, Duration::from_secs(60))
}

#[cfg(feature = "probe")]
#[tokio::test]
async fn a_build_with_test_only_extensions_refuses_to_serve() {
    // The binary under test is built with --all-features: the probe, whose authentication hook
    // signs anyone in as anyone with a header, is compiled in.
    let db_name = fresh_database().await;
    let dir = TempDir::new();
    let mut cmd = solobase(&dir.0);
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", database_url(&db_name))
        .env_remove("SOLOBASE_ALLOW_TEST_EXTENSIONS");
    let out = run(cmd, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("test-only extensions (probe)")
            && err.contains("--all-features")
            && err.contains("SOLOBASE_ALLOW_TEST_EXTENSIONS"),
        "{err}"
    );
    assert!(!err.contains("\"listening\""), "it never listened: {err}");
    // Nothing was even written to the database.
    let schemas: i64 = connect(&db_name)
        .await
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'solobase'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schemas, 0);

    // The same refusal for a program embedding the library.
    let data = TempDir::new();
    let mut config = crate::helpers::test_config(&db_name, &data.0);
    config.allow_test_extensions = false;
    let refused = solobase::startup::Application::build(config).await;
    let e = refused.err().expect("refused").to_string();
    assert!(e.contains("probe"), "{e}");
}

#[cfg(feature = "probe")]
#[tokio::test]
async fn an_extension_outside_the_official_tier_waits_for_an_administrator() {
    // No extension approved in the configuration: only the official tier starts granted.
    let app = TestApp::builder()
        .config(|c| c.extensions.approved.clear())
        .spawn()
        .await;
    app.create_user(ADMIN, PASSWORD, true).await;
    let token = app
        .login(ADMIN, PASSWORD)
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (name, enabled) in [("webhooks", true), ("analytics", false), ("probe", false)] {
        let e = app.extension(&token, name).await;
        assert_eq!(e["enabled"], enabled, "{name}: {e}");
        let granted = e["permissions"]["granted"].as_array().unwrap();
        assert_eq!(granted.is_empty(), !enabled, "{name}: {e}");
    }
    let grants: Vec<(String, String)> = app
        .db()
        .await
        .query(
            "SELECT extension, granted_by FROM solobase.extension_grants ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        grants.iter().all(|(e, _)| e == "webhooks"),
        "only the official extension was granted anything: {grants:?}"
    );

    // The probe's header login does not exist while it waits.
    let bypass = [("x-probe-key", "letmein"), ("x-probe-user", ADMIN)];
    let res = app.get_with("/api/v1/auth/me", &bypass).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.get_with("/ext/probe/public", &bypass).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // An administrator's decision changes that, and is recorded as theirs.
    let res = app
        .http
        .post(app.url("/api/v1/extensions/probe/enable"))
        .bearer_auth(&token)
        .json(&json!({"grant_all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    let granted_by: String = app
        .db()
        .await
        .query_one(
            "SELECT DISTINCT granted_by FROM solobase.extension_grants WHERE extension = 'probe'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(granted_by.starts_with("user:"), "{granted_by}");
    let res = app.get_with("/ext/probe/public", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// The view trick: the extension's role replaces its migration history with a view calling
/// its own function, which makes the role a superuser when someone more privileged reads it,
/// and writes down who read it.
const VIEW_TRICK: &str = "
    CREATE TABLE ext_probe.witness (reader text, at timestamptz DEFAULT now());
    ALTER TABLE ext_probe.refinery_schema_history RENAME TO history_kept;
    CREATE FUNCTION ext_probe.grab() RETURNS SETOF ext_probe.history_kept
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ext_probe.witness (reader) VALUES (current_user);
        BEGIN
            EXECUTE 'ALTER ROLE ext_probe SUPERUSER';
        EXCEPTION WHEN insufficient_privilege THEN NULL;
        END;
        RETURN QUERY SELECT * FROM ext_probe.history_kept;
    END $$;
    CREATE VIEW ext_probe.refinery_schema_history AS SELECT * FROM ext_probe.grab();
";

/// Whether the probe's role is a superuser, and who ever read its history.
async fn escalation(superuser: &tokio_postgres::Client) -> (bool, Vec<String>, i64) {
    let rolsuper: bool = superuser
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'ext_probe'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let row = superuser
        .query_one(
            "SELECT coalesce(array_agg(DISTINCT reader), '{}'), count(*) FROM ext_probe.witness",
            &[],
        )
        .await
        .unwrap();
    (rolsuper, row.get(0), row.get(1))
}

#[cfg(feature = "probe")]
#[tokio::test]
async fn no_host_command_reads_an_extension_object_with_more_than_its_rights() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let env = [
        ("SOLOBASE_ADMIN_EMAIL", ADMIN),
        ("SOLOBASE_ADMIN_PASSWORD", PASSWORD),
    ];
    let server = Server::start_with(&dir.0, &data, &env);
    let superuser = embedded_as(&data, solobase::db::embedded::SUPERUSER, "solobase")
        .await
        .unwrap();
    let probe = embedded_as(&data, "ext_probe", "solobase").await.unwrap();
    probe.batch_execute(VIEW_TRICK).await.unwrap();
    let mut reads = 0;
    let mut check = |step: &str, (rolsuper, readers, count): (bool, Vec<String>, i64), read| {
        assert!(!rolsuper, "{step}: the extension's role became a superuser");
        assert!(
            readers.iter().all(|r| r == "ext_probe"),
            "{step}: its history was read by {readers:?}"
        );
        if read {
            assert!(count > reads, "{step} read the history (through the role)");
        }
        reads = count;
    };

    // The admin API's dry runs.
    let http = reqwest::Client::new();
    let token = admin_token(&http, &server).await;
    for (path, body) in [
        ("migrate", json!({"dry_run": true})),
        ("rollback", json!({"to": 0, "dry_run": true})),
        ("migrate", json!({})),
    ] {
        let res = http
            .post(server.url(&format!("/api/v1/extensions/probe/{path}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path} {body}");
        check(
            &format!("POST {path} {body}"),
            escalation(&superuser).await,
            true,
        );
    }

    // The command line, next to the running server.
    for args in [
        &["info", "probe", "--json"][..],
        &["migrate", "probe", "--dry-run"],
        &["rollback", "probe", "0", "--dry-run"],
        &["migrate", "probe"],
        &["list"],
        &["status"],
    ] {
        let out = extensions_cli(&dir.0, &data, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let read = args[0] != "list" && args[0] != "status";
        check(
            &format!("extensions {args:?}"),
            escalation(&superuser).await,
            read,
        );
    }

    // A restart: start-up reads every extension's history.
    server.signal("-TERM");
    let (status, _) = server.wait(Duration::from_secs(30));
    assert!(status.success());
    drop((superuser, probe));
    let server = Server::start_with(&dir.0, &data, &env);
    let superuser = embedded_as(&data, solobase::db::embedded::SUPERUSER, "solobase")
        .await
        .unwrap();
    check("a restart", escalation(&superuser).await, true);

    // Purging drops the view and the function without calling it.
    let out = extensions_cli(&dir.0, &data, &["purge", "probe", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rolsuper: Option<bool> = superuser
        .query_opt(
            "SELECT rolsuper FROM pg_roles WHERE rolname = 'ext_probe'",
            &[],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert_ne!(rolsuper, Some(true));
    server.signal("-TERM");
    let _ = server.wait(Duration::from_secs(30));
}

#[cfg(feature = "probe")]
#[tokio::test]
async fn an_extension_role_can_neither_hold_the_host_hostage_nor_leave_its_database() {
    let dir = TempDir::new();
    let data = dir.0.join("data");
    let server = Server::start_with(&dir.0, &data, &[]);
    let probe = embedded_as(&data, "ext_probe", "solobase").await.unwrap();

    // The host's locks are rows it cannot see, let alone lock.
    for sql in [
        "SELECT * FROM solobase.locks FOR UPDATE",
        "BEGIN; LOCK TABLE solobase.locks",
    ] {
        let e = probe.batch_execute(sql).await.expect_err(sql);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e}"
        );
        probe.batch_execute("ROLLBACK").await.unwrap();
    }
    // The advisory lock the host's migrations once used, held by an idle session: nobody
    // waits for it any more.
    probe
        .batch_execute("SELECT pg_advisory_lock(8317986262424318821)")
        .await
        .unwrap();
    let out = extensions_cli(&dir.0, &data, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.signal("-TERM");
    let (status, _) = server.wait(Duration::from_secs(30));
    assert!(status.success());
    let server = Server::start_with(&dir.0, &data, &[]);
    assert_eq!(
        reqwest::get(server.url("/readyz")).await.unwrap().status(),
        StatusCode::OK
    );

    // The cluster's other databases are closed to it (temporary tables and large objects
    // there would escape every quota); its own stays open.
    for other in ["postgres", "template1"] {
        let e = embedded_as(&data, "ext_probe", other)
            .await
            .err()
            .unwrap_or_else(|| panic!("ext_probe connected to {other}"));
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{other}: {e}"
        );
    }
    assert!(embedded_as(&data, "ext_probe", "solobase").await.is_ok());
    drop(probe);
    server.signal("-TERM");
    let _ = server.wait(Duration::from_secs(30));
}

#[tokio::test]
async fn a_wait_for_a_host_lock_ends_naming_its_holder() {
    let db_name = fresh_database().await;
    let data = TempDir::new();
    let config = crate::helpers::test_config(&db_name, &data.0);
    let db = solobase::db::Postgres::connect(&config, solobase::db::Mode::Share)
        .await
        .unwrap();
    solobase::db::migrate::run(db.pool()).await.unwrap();
    let mut holder_config: tokio_postgres::Config = database_url(&db_name).parse().unwrap();
    holder_config.application_name("stuck-holder");
    let (holder, conn) = holder_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    holder
        .batch_execute(
            "BEGIN; SELECT name FROM solobase.locks WHERE name = 'host.migrate' FOR UPDATE",
        )
        .await
        .unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let e = solobase::db::lock::hold_explained(db.pool(), "host.migrate", Duration::from_secs(1))
        .await
        .expect_err("the lock is held");
    let message = e.to_string();
    assert!(
        message.contains(&format!("session {pid}")) && message.contains("stuck-holder"),
        "{message}"
    );
    // Released, it is taken at once.
    holder.batch_execute("ROLLBACK").await.unwrap();
    let held =
        solobase::db::lock::hold_explained(db.pool(), "host.migrate", Duration::from_secs(5))
            .await
            .unwrap();
    held.release().await;
    db.close().await;
}

struct Plain;

impl Extension for Plain {
    type Config = ();
    async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
        Ok(Plain)
    }
}

/// An extension named `name` with one migration and nothing else.
pub(crate) fn plain(name: &str) -> Registration {
    let manifest = format!(
        "[extension]\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"d\"\n\
         min_host_version = \"0.1.0\"\n"
    );
    Registration::new::<Plain>(Box::leak(manifest.into_boxed_str()), "0.1.0").with_migrations(&[
        Migration {
            version: 1,
            name: "items",
            up: "CREATE TABLE items (id int)",
            down: "DROP TABLE items",
        },
    ])
}

#[tokio::test]
async fn an_escalated_extension_role_is_repaired_at_start_and_audited() {
    // A role of its own (roles are shared by every database of the cluster).
    let name = format!("esc-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let role = format!("ext_{}", name.replace('-', "_"));
    let app = TestApp::builder()
        .extensions(vec![plain(&name)])
        .spawn()
        .await;
    let db_name = app.db_name.clone();
    app.stop().await.unwrap();

    // What a role that once was a superuser could have left behind.
    let superuser = connect(&db_name).await;
    superuser
        .batch_execute(&format!(
            "ALTER ROLE {role} SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS INHERIT; \
             GRANT pg_read_server_files TO {role}; \
             ALTER ROLE {role} SET work_mem = '64MB'; \
             CREATE TABLE solobase.planted (x int); ALTER TABLE solobase.planted OWNER TO {role}"
        ))
        .await
        .unwrap();

    let app = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![plain(&name)])
        .spawn()
        .await;
    let row = superuser
        .query_one(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolinherit, \
                    (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid), \
                    (SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting d, unnest(d.setconfig) c \
                     WHERE d.setrole = r.oid) \
             FROM pg_roles r WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap();
    for (i, attribute) in [
        "SUPERUSER",
        "CREATEDB",
        "CREATEROLE",
        "REPLICATION",
        "BYPASSRLS",
        "INHERIT",
    ]
    .iter()
    .enumerate()
    {
        assert!(!row.get::<_, bool>(i), "{attribute} was taken back");
    }
    assert_eq!(row.get::<_, i64>(6), 0, "no membership is left");
    let settings: Vec<String> = row.get(7);
    assert!(
        settings.iter().all(|s| !s.starts_with("work_mem")),
        "{settings:?}"
    );
    let detail: Value = superuser
        .query_one(
            "SELECT detail FROM solobase.audit_log WHERE action = 'extension.role_repaired' \
             AND extension = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    let text = detail.to_string();
    for expected in [
        "SUPERUSER",
        "BYPASSRLS",
        "pg_read_server_files",
        "solobase.planted",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    // It still works as an extension.
    assert!(
        app.get("/readyz").await.status().is_success(),
        "the server runs"
    );
    superuser
        .batch_execute("DROP TABLE solobase.planted")
        .await
        .unwrap();
    drop(app);
}
