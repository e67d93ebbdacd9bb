//! Attacks on the extension roles' hardening from inside: each test carries out the attack
//! against the real server and real PostgreSQL, and fails if it works again.
//!
//! The attacker is an extension's SQL, running as its role `ext_<name>` (an injection in its
//! queries, or a hostile migration). Every test uses an extension of its own (roles are
//! shared by every database of the test cluster).

use std::time::Duration;

use solobase::config::ExtensionLimits;
use solobase_sdk::Registration;
use solobase_sdk::prelude::*;

use super::security::plain;
use crate::helpers::{TestApp, connect, database_url};

/// A fresh extension name and its role.
fn fresh_extension(prefix: &str) -> (String, String) {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let role = format!("ext_{}", name.replace('-', "_"));
    (name, role)
}

/// Short time limits for the extension `name`, so that the watchdog acts within the test.
fn short_limits(name: &str) -> impl FnOnce(&mut solobase::config::Config) + '_ {
    move |c| {
        c.extensions.limits.insert(
            name.into(),
            ExtensionLimits {
                statement_timeout_ms: Some(500),
                idle_in_transaction_timeout_ms: Some(500),
                ..Default::default()
            },
        );
    }
}

/// A client connected exactly as the extension `name`'s database service is.
async fn connect_as(db_name: &str, name: &str) -> tokio_postgres::Client {
    let password: String = connect(db_name)
        .await
        .query_one(
            "SELECT password FROM solobase.extension_roles WHERE name = $1",
            &[&name],
        )
        .await
        .expect("the host generated the role's credentials")
        .get(0);
    let role = format!("ext_{}", name.replace('-', "_"));
    let mut config: tokio_postgres::Config = database_url(db_name).parse().expect("url");
    config
        .user(&role)
        .password(password)
        .options(format!("-c search_path={role}"))
        .application_name("hostile");
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connects as the extension's role");
    tokio::spawn(conn);
    client
}

/// One statement, sent as the extension's role, that survives every cancellation for `secs`
/// seconds: PL/pgSQL may catch `query_canceled` by name, which is what both
/// `statement_timeout` and `pg_cancel_backend` (the watchdog) raise. `first` runs before, in
/// the same transaction (its locks are held all along).
fn uncancellable(first: &str, secs: u32) -> String {
    format!(
        "DO $do$
         DECLARE until timestamptz := clock_timestamp() + interval '{secs} s';
         BEGIN
             {first}
             WHILE clock_timestamp() < until LOOP
                 BEGIN
                     PERFORM pg_sleep(0.2);
                 EXCEPTION WHEN query_canceled THEN NULL;
                 END;
             END LOOP;
         END $do$"
    )
}

/// Ends every session of `role` (cleanup, as the test cluster's superuser).
async fn terminate(superuser: &tokio_postgres::Client, role: &str) {
    superuser
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .unwrap();
}

/// The statements of `role`'s sessions that have been running for more than `secs` seconds.
async fn running_longer_than(
    superuser: &tokio_postgres::Client,
    role: &str,
    secs: f64,
) -> Vec<(i32, f64)> {
    superuser
        .query(
            "SELECT pid, extract(epoch FROM now() - query_start)::float8 FROM pg_stat_activity \
             WHERE usename = $1 AND state = 'active' \
               AND query_start < now() - make_interval(secs => $2)",
            &[&role, &secs],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The watchdog "keeps the time limits even when an extension lifts them for its own
/// session": it cancels statements past their limit. A statement that catches the
/// cancellation keeps running — and holding its locks — for as long as it likes, and
/// `statement_timeout` is caught the same way.
#[tokio::test]
async fn a_statement_that_catches_its_cancellation_does_not_outlive_the_time_limit() {
    let (name, role) = fresh_extension("trap");
    let app = TestApp::builder()
        .extensions(vec![plain(&name)])
        .config(short_limits(&name))
        .spawn()
        .await;
    let superuser = connect(&app.db_name).await;
    let hostile = connect_as(&app.db_name, &name).await;
    // The role's own limit, 500 ms, is in force for the session.
    let limit: String = hostile
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, "500ms");
    let running = tokio::spawn(async move {
        let sql = uncancellable("LOCK TABLE items IN ACCESS EXCLUSIVE MODE;", 20);
        hostile.batch_execute(&sql).await
    });

    // Limit 500 ms, the watchdog looks every 500 ms with a grace of one look: well past all of
    // it, the statement must be gone.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let survivors = running_longer_than(&superuser, &role, 4.0).await;
    terminate(&superuser, &role).await;
    let _ = running.await;
    assert!(
        survivors.is_empty(),
        "a statement of {role} (limit 500 ms) caught every cancellation and was still running, \
         holding an ACCESS EXCLUSIVE lock, after {survivors:?} (pid, seconds)"
    );
    drop(app);
}

/// A transaction kept busy with short statements, each within the statement limit and never
/// idle, would hold its locks for ever: past `transaction_timeout_ms` its session is ended.
#[tokio::test]
async fn a_busy_transaction_does_not_outlive_its_time_limit() {
    let (name, _role) = fresh_extension("busy");
    let app = TestApp::builder()
        .extensions(vec![plain(&name)])
        .config({
            let name = name.clone();
            move |c| {
                c.extensions.limits.insert(
                    name,
                    ExtensionLimits {
                        statement_timeout_ms: Some(500),
                        idle_in_transaction_timeout_ms: Some(500),
                        transaction_timeout_ms: Some(1000),
                        ..Default::default()
                    },
                );
            }
        })
        .spawn()
        .await;
    let hostile = connect_as(&app.db_name, &name).await;
    hostile
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut ended = None;
    while started.elapsed() < Duration::from_secs(8) {
        if let Err(e) = hostile.batch_execute("SELECT pg_sleep(0.1)").await {
            ended = Some((started.elapsed(), e.to_string()));
            break;
        }
    }
    drop(app);
    let (after, error) = ended.expect("the busy transaction was still open after 8 s");
    assert!(
        after < Duration::from_secs(4),
        "ended only after {after:?}: {error}"
    );
}

/// Start-up provisions each extension's role with `ALTER ROLE` statements run as the host.
/// The extension's role may change its own role settings: a transaction that did so and
/// stays open (a statement that catches its cancellation, see above), begun while no
/// instance runs and so no watchdog looks, holds the row the host must change. The next
/// start must not wait for it for ever: it waits a while, ends the role's open transactions
/// and goes on.
#[tokio::test]
async fn an_extension_role_holding_its_own_role_row_does_not_freeze_the_next_start() {
    let (name, role) = fresh_extension("freeze");
    let app = TestApp::builder()
        .extensions(vec![plain(&name)])
        .config(short_limits(&name))
        .spawn()
        .await;
    let db_name = app.db_name.clone();
    let superuser = connect(&db_name).await;

    // 1. A committed change to its role's settings, so that the next start has to repair it
    //    (the host takes the ALTER ROLE path instead of its "already up to date" read).
    let hostile = connect_as(&db_name, &name).await;
    hostile
        .batch_execute(&format!("ALTER ROLE {role} SET work_mem = '1MB'"))
        .await
        .unwrap();
    drop(hostile);
    app.stop().await.unwrap();
    // 2. The same row changed again in a transaction that never ends, while nothing watches.
    let holder = connect_as(&db_name, &name).await;
    let first = format!("EXECUTE 'ALTER ROLE {role} SET work_mem = ''2MB''';");
    let sql = uncancellable(&first, 60);
    let holding = tokio::spawn(async move { holder.batch_execute(&sql).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. The next start on this database.
    let started = tokio::time::timeout(
        Duration::from_secs(30),
        TestApp::builder()
            .on(db_name.clone())
            .extensions(vec![plain(&name)])
            .config(short_limits(&name))
            .build(),
    )
    .await;
    let waiting: Vec<String> = superuser
        .query(
            "SELECT left(query, 80) FROM pg_stat_activity \
             WHERE datname = $1 AND wait_event_type = 'Lock' AND usename <> $2",
            &[&db_name, &role],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    terminate(&superuser, &role).await;
    let _ = holding.await;
    match started {
        Ok(Ok((app, _dir))) => {
            let failed: Option<String> = superuser
                .query_one(
                    "SELECT last_error FROM solobase.extensions WHERE name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            drop(app);
            assert_eq!(failed, None, "the extension {name} runs after the start");
        }
        Ok(Err(e)) => panic!("the start failed instead of serving: {e:#}"),
        Err(_) => panic!(
            "start-up was still waiting after 30 s, frozen by {role}'s open transaction; \
             the host's statements waiting for a lock: {waiting:?}"
        ),
    }
}

/// Provisioning "forces again at every start" the role's defaults and removes those the
/// extension set itself (`ALTER ROLE … RESET ALL`). That resets the role's defaults for every
/// database only: defaults the role gives itself for *this* database (`ALTER ROLE … IN
/// DATABASE … SET`, allowed to any role for itself) take precedence over the host's, are not
/// read, and stay — here lifting its time limits for good.
#[tokio::test]
async fn role_defaults_an_extension_sets_in_its_database_do_not_survive_a_restart() {
    let (name, role) = fresh_extension("dbset");
    let app = TestApp::builder()
        .extensions(vec![plain(&name)])
        .config(short_limits(&name))
        .spawn()
        .await;
    let db_name = app.db_name.clone();
    let hostile = connect_as(&db_name, &name).await;
    hostile
        .batch_execute(&format!(
            "ALTER ROLE {role} IN DATABASE \"{db_name}\" SET statement_timeout = 0; \
             ALTER ROLE {role} IN DATABASE \"{db_name}\" SET idle_in_transaction_session_timeout = 0"
        ))
        .await
        .expect("a role may set its own defaults in a database");
    drop(hostile);
    app.stop().await.unwrap();

    let app = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![plain(&name)])
        .config(short_limits(&name))
        .spawn()
        .await;
    let left: Vec<String> = connect(&db_name)
        .await
        .query(
            "SELECT c FROM pg_db_role_setting d, unnest(d.setconfig) c \
             WHERE d.setrole = (SELECT oid FROM pg_roles WHERE rolname = $1) AND d.setdatabase <> 0",
            &[&role],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let session = connect_as(&db_name, &name).await;
    let limits: (String, String) = session
        .query_one(
            "SELECT current_setting('statement_timeout'), \
                    current_setting('idle_in_transaction_session_timeout')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    drop(app);
    assert!(
        left.is_empty(),
        "defaults {role} gave itself in this database survived the restart: {left:?}"
    );
    assert_eq!(
        limits,
        ("500ms".to_owned(), "500ms".to_owned()),
        "a new session of {role} runs with the extension's limits, not its own"
    );
}

/// The role's password hash, as the server stores it.
async fn verifier(superuser: &tokio_postgres::Client, role: &str) -> String {
    superuser
        .query_one(
            "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0)
}

/// The role's password is set only when the role or its stored credentials are new. An
/// extension's role may change its own password, so its SQL can plant a credential its author
/// knows (a login to the database from outside Solobase, kept across restarts and even past
/// a purge that has to keep the role), and lock the host's own connections out on a server
/// that checks passwords. Nothing puts the host's password back.
#[tokio::test]
async fn a_password_an_extension_gives_its_role_does_not_survive_a_restart() {
    let (name, role) = fresh_extension("passwd");
    let app = TestApp::builder()
        .extensions(vec![plain(&name)])
        .spawn()
        .await;
    let db_name = app.db_name.clone();
    let superuser = connect(&db_name).await;
    let host_set = verifier(&superuser, &role).await;
    assert!(host_set.starts_with("SCRAM-SHA-256$"), "{host_set}");

    let hostile = connect_as(&db_name, &name).await;
    hostile
        .batch_execute(&format!(
            "ALTER ROLE {role} PASSWORD 'known-to-the-extension-author'"
        ))
        .await
        .expect("a role may change its own password");
    let planted = verifier(&superuser, &role).await;
    assert_ne!(planted, host_set);
    drop(hostile);
    app.stop().await.unwrap();

    let app = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![plain(&name)])
        .spawn()
        .await;
    let after = verifier(&superuser, &role).await;
    drop(app);
    assert_ne!(
        after, planted,
        "the password {role} gave itself is still its password after a restart"
    );
}

/// An extension that leaves things behind in the host's keeping: a file in its storage area
/// and a job queued for tomorrow.
struct Keeper;

impl Extension for Keeper {
    type Config = ();
    async fn initialize(ctx: InitContext<()>) -> Result<Self> {
        ctx.storage
            .write("kept.txt", "written before the purge")
            .await?;
        ctx.jobs
            .enqueue_in(
                Duration::from_secs(86_400),
                "after-the-purge",
                serde_json::json!({"from": "the purged extension"}),
            )
            .await?;
        Ok(Keeper)
    }
}

fn keeper(name: &str) -> Registration {
    let manifest = format!(
        "[extension]\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"d\"\n\
         min_host_version = \"0.1.0\"\n"
    );
    Registration::new::<Keeper>(Box::leak(manifest.into_boxed_str()), "0.1.0")
}

/// `solobase extensions purge` "drops the extension's schema (with its data) and role, and
/// forgets its credentials and state", but what the extension keeps through the host's
/// services survives: its storage area and its queued jobs. A later extension of the same
/// name — another author's package — inherits both, and runs the jobs' payloads.
#[tokio::test]
async fn a_purge_leaves_nothing_of_the_extension_behind() {
    let (name, _role) = fresh_extension("keeper");
    let (app, dir) = TestApp::builder()
        .extensions(vec![keeper(&name)])
        .build()
        .await
        .unwrap();
    let db_name = app.state().config.database.url.clone().unwrap();
    let db_name = db_name
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("dbname="))
        .unwrap()
        .to_owned();
    drop(app);
    let file = dir.0.join("extensions").join(&name).join("kept.txt");
    let jobs = async || -> i64 {
        connect(&db_name)
            .await
            .query_one(
                "SELECT count(*) FROM solobase.jobs WHERE extension = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0)
    };
    assert!(file.exists(), "the extension wrote {}", file.display());
    assert_eq!(jobs().await, 1, "the extension queued a job");

    let mut cmd = crate::server::cli::solobase(&dir.0);
    cmd.args(["extensions", "purge", &name, "--yes", "--data-dir"])
        .arg(&dir.0)
        .env("DATABASE_URL", database_url(&db_name));
    let out = crate::server::cli::run(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", crate::server::cli::stderr(&out));
    let left = (file.exists(), jobs().await);
    assert_eq!(
        left,
        (false, 0),
        "after the purge of {name}: its stored file is still there, its queued jobs still wait"
    );
}
