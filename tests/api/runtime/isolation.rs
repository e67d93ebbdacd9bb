//! Per-extension isolation, enforced by PostgreSQL: each extension's role owns its schema and
//! nothing else, whatever SQL it sends; its limits are the role's; its migrations go up, down
//! and up again, refuse a changed file, and leave nothing behind when they fail.

use std::time::Duration;

use solobase::config::ExtensionLimits;
use solobase::runtime::{db_role, schema};
use solobase_sdk::prelude::*;
use solobase_sdk::{ExtensionName, Registration};
use tokio_postgres::error::SqlState;

use crate::helpers::{
    TempDir, TestApp, connect, database_url, fresh_database, spawn_app, test_config,
};

/// A client connected exactly as extension `name`'s database service is.
async fn connect_as(
    db_name: &str,
    name: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
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
        .options(format!("-c search_path={role}"));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map_or_else(|| e.to_string(), |c| c.code().to_owned())
}

#[tokio::test]
async fn an_extension_role_cannot_reach_beyond_its_schema() {
    let app = spawn_app().await;
    let admin = app.db().await;
    let outbox_before: i64 = admin
        .query_one("SELECT count(*) FROM solobase.outbox", &[])
        .await
        .unwrap()
        .get(0);
    let probe = connect_as(&app.db_name, "probe").await.unwrap();

    // Its own schema is its to use.
    probe
        .batch_execute(
            "SELECT count(*) FROM probe_items; CREATE TABLE mine (x int); DROP TABLE mine",
        )
        .await
        .expect("an extension uses its own schema");

    let hostile = [
        "SELECT * FROM solobase.users",
        "SELECT * FROM solobase.sessions",
        "SELECT * FROM solobase.outbox",
        "SELECT * FROM solobase.extension_roles",
        "SELECT * FROM solobase.audit_log",
        "INSERT INTO solobase.audit_log (actor, action, result) VALUES ('x', 'y', 'ok')",
        "INSERT INTO solobase.outbox (event_type, payload) VALUES ('x', '{}')",
        "UPDATE solobase.users SET role = 'admin'",
        "SELECT * FROM ext_webhooks.endpoints",
        "CREATE TABLE solobase.evil (x int)",
        "CREATE TABLE public.evil (x int)",
        "CREATE TABLE ext_webhooks.evil (x int)",
        "CREATE SCHEMA evil",
        "CREATE TEMP TABLE evil (x int)",
        "SELECT lo_create(0)",
        "SET ROLE solobase",
        "SET SESSION AUTHORIZATION solobase",
        "ALTER ROLE ext_probe CONNECTION LIMIT -1",
        "ALTER ROLE ext_probe SUPERUSER",
        "GRANT ext_webhooks TO ext_probe",
        "COPY (SELECT 1) TO PROGRAM 'true'",
    ];
    for sql in hostile {
        let e = probe
            .batch_execute(sql)
            .await
            .expect_err(&format!("{sql} must be refused"));
        assert_eq!(
            code(&e),
            SqlState::INSUFFICIENT_PRIVILEGE.code(),
            "{sql}: {e}"
        );
    }
    // Escapes that do not raise an error still reach nothing.
    for escape in [
        "RESET ROLE; SELECT * FROM solobase.users",
        "RESET SESSION AUTHORIZATION; SELECT * FROM solobase.users",
        "SET search_path TO solobase, public; SELECT * FROM users",
        "SET search_path TO ext_webhooks; SELECT * FROM endpoints",
    ] {
        let e = probe
            .batch_execute(escape)
            .await
            .expect_err(&format!("{escape} must read nothing"));
        assert!(
            [SqlState::INSUFFICIENT_PRIVILEGE, SqlState::UNDEFINED_TABLE]
                .iter()
                .any(|c| e.code() == Some(c)),
            "{escape}: {e}"
        );
    }
    let whoami: (String, String) = probe
        .query_one("SELECT session_user::text, current_user::text", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(whoami, ("ext_probe".into(), "ext_probe".into()));

    // Nothing changed anywhere.
    let outbox_after: i64 = admin
        .query_one("SELECT count(*) FROM solobase.outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outbox_before, outbox_after);
    let evil: i64 = admin
        .query_one("SELECT count(*) FROM pg_class WHERE relname = 'evil'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(evil, 0);

    // The role itself: no attributes, no memberships, owner of its schema, password hashed.
    let row = admin
        .query_one(
            "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolinherit, \
                    (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid), \
                    (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'ext_probe'), \
                    a.rolpassword \
             FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = 'ext_probe'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1) && !row.get::<_, bool>(2));
    assert!(!row.get::<_, bool>(3), "NOINHERIT");
    assert_eq!(row.get::<_, i64>(4), 0, "member of no role");
    assert_eq!(row.get::<_, String>(5), "ext_probe");
    assert!(row.get::<_, String>(6).starts_with("SCRAM-SHA-256$"));
    app.stop().await.unwrap();
}

// --- Extensions of this file, with migrations the tests choose ------------------------------

const V1: Migration = Migration {
    version: 1,
    name: "entries",
    up: "CREATE TABLE entries (id bigserial PRIMARY KEY, amount bigint NOT NULL)",
    down: "DROP TABLE entries",
};
const V2: Migration = Migration {
    version: 2,
    name: "notes",
    up: "ALTER TABLE entries ADD COLUMN note text; CREATE INDEX entries_note ON entries (note)",
    down: "DROP INDEX entries_note; ALTER TABLE entries DROP COLUMN note",
};
const V1_CHANGED: Migration = Migration {
    up: "CREATE TABLE entries (id bigserial PRIMARY KEY, amount numeric NOT NULL)",
    ..V1
};
const V2_BROKEN: Migration = Migration {
    version: 2,
    name: "broken",
    up: "ALTER TABLE entries ADD COLUMN note text; SELECT no_such_function()",
    down: "ALTER TABLE entries DROP COLUMN note",
};

/// An extension type of this file with its migrations.
trait Ledger: Extension {
    const MIGRATIONS: &'static [Migration];
}

macro_rules! ledger {
    ($ty:ident, [$($m:expr),*]) => {
        struct $ty;
        impl Extension for $ty {
            type Config = ();
            async fn initialize(_ctx: InitContext<()>) -> Result<Self> {
                Ok($ty)
            }
        }
        impl Ledger for $ty {
            const MIGRATIONS: &'static [Migration] = &[$($m),*];
        }
    };
}

ledger!(LedgerV1, [V1]);
ledger!(LedgerV1V2, [V1, V2]);
ledger!(LedgerChanged, [V1_CHANGED]);
ledger!(LedgerBroken, [V1, V2_BROKEN]);

fn manifest(name: &str) -> &'static str {
    Box::leak(
        format!(
            "[extension]\nname = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"d\"\n\
             min_host_version = \"0.1.0\"\n"
        )
        .into_boxed_str(),
    )
}

fn ledger<E: Ledger>(name: &str) -> Registration {
    Registration::new::<E>(manifest(name), "0.1.0").with_migrations(E::MIGRATIONS)
}

/// Why the extension is not running, as recorded; `None` when it runs.
async fn failure(db_name: &str, name: &str) -> Option<String> {
    connect(db_name)
        .await
        .query_one(
            "SELECT last_error FROM solobase.extensions WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

async fn tables(db_name: &str, schema: &str) -> Vec<String> {
    connect(db_name)
        .await
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn role_limits_come_from_configuration_and_postgres_enforces_them() {
    let app = TestApp::builder()
        .extensions(vec![ledger::<LedgerV1>("lim-ledger")])
        .config(|c| {
            c.extensions.limits.insert(
                "lim-ledger".into(),
                ExtensionLimits {
                    max_connections: Some(2),
                    statement_timeout_ms: Some(300),
                    idle_in_transaction_timeout_ms: Some(400),
                    ..Default::default()
                },
            );
        })
        .spawn()
        .await;
    let limit: i32 = app
        .db()
        .await
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'ext_lim_ledger'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 2);
    let a = connect_as(&app.db_name, "lim-ledger").await.unwrap();
    let e = a.batch_execute("SELECT pg_sleep(2)").await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    a.batch_execute("BEGIN").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        a.batch_execute("SELECT 1").await.is_err(),
        "an idle transaction is ended at its limit"
    );
    // Lifting the limits for its own session does not help: the host's watchdog keeps them.
    let a = connect_as(&app.db_name, "lim-ledger").await.unwrap();
    let e = a
        .batch_execute("SET statement_timeout = 0; SELECT pg_sleep(10)")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    a.batch_execute("SET idle_in_transaction_session_timeout = 0; BEGIN")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        a.batch_execute("SELECT 1").await.is_err(),
        "the watchdog ends an idle transaction at its limit"
    );
    // The server's pool may hold one connection; two more exceed the limit of 2.
    let b = connect_as(&app.db_name, "lim-ledger").await;
    let c = connect_as(&app.db_name, "lim-ledger").await;
    let refused = [b.err(), c.err()].into_iter().flatten().next();
    let refused = refused.expect("a connection beyond the role's limit is refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{refused}"
    );
    app.stop().await.unwrap();
}

/// The host's database on a fresh database, migrated, and a way to get an extension's pool as
/// its own role — what the server does at start, without a server.
pub(crate) struct Roles {
    pub(crate) db_name: String,
    config: solobase::config::Config,
    pub(crate) db: solobase::db::Postgres,
    _data: TempDir,
}

impl Roles {
    pub(crate) async fn new() -> Self {
        let db_name = fresh_database().await;
        let data = TempDir::new();
        let config = test_config(&db_name, &data.0);
        let db = solobase::db::Postgres::connect(&config, solobase::db::Mode::Share)
            .await
            .unwrap();
        solobase::db::migrate::run(db.pool()).await.unwrap();
        Self {
            db_name,
            config,
            db,
            _data: data,
        }
    }

    /// Extension `name`'s pool, connected as its role.
    pub(crate) async fn pool(&self, name: &ExtensionName) -> deadpool_postgres::Pool {
        let limits = self.config.extensions.resolve(name.as_str()).db;
        let role = db_role::provision(self.db.pool(), self.db.pg_config(), name, &limits, true)
            .await
            .unwrap();
        solobase::runtime::services::extension_database(
            role,
            &solobase::db::tls::DbTls::None,
            name,
            2,
        )
        .unwrap()
        .pool()
        .clone()
    }
}

#[tokio::test]
async fn migrations_go_up_down_to_zero_and_up_again_for_every_compiled_in_extension() {
    let roles = Roles::new().await;
    let db_name = roles.db_name.clone();
    let mut regs = solobase::runtime::registrations();
    regs.push(ledger::<LedgerV1V2>("updown-ledger"));
    for reg in regs {
        let manifest = solobase_sdk::Manifest::parse(reg.manifest).unwrap();
        let name: ExtensionName = manifest.name;
        let migrations = reg.migrations();
        let pool = roles.pool(&name).await;
        let schema = name.schema();
        let all: Vec<i32> = migrations.iter().map(|m| m.version as i32).collect();
        let history = ["refinery_schema_history".to_string()];

        assert_eq!(
            schema::migrate(roles.db.pool(), &pool, &name, &migrations, None)
                .await
                .unwrap(),
            all,
            "{name} up"
        );
        let full = tables(&db_name, &schema).await;
        assert!(
            full.len() > history.len() || migrations.is_empty(),
            "{name}: {full:?}"
        );
        let mut reverted = all.clone();
        reverted.reverse();
        assert_eq!(
            schema::rollback(
                roles.db.pool(),
                &pool,
                &name,
                &migrations,
                0,
                &mut |_, _, _| {}
            )
            .await
            .unwrap(),
            reverted,
            "{name} down"
        );
        let after_down = tables(&db_name, &schema).await;
        assert!(
            after_down.is_empty() || after_down == history,
            "{name}: down to zero leaves {after_down:?}"
        );
        assert_eq!(
            schema::migrate(roles.db.pool(), &pool, &name, &migrations, None)
                .await
                .unwrap(),
            all,
            "{name} up again"
        );
        assert_eq!(tables(&db_name, &schema).await, full, "{name}");
        pool.close();
    }
    roles.db.close().await;
}

#[tokio::test]
async fn migrate_to_a_version_and_roll_back_one() {
    let roles = Roles::new().await;
    let db_name = roles.db_name.clone();
    let name = ExtensionName::parse("step-ledger").unwrap();
    let pool = roles.pool(&name).await;
    let both = [V1, V2];
    assert_eq!(
        schema::migrate(roles.db.pool(), &pool, &name, &both, Some(1))
            .await
            .unwrap(),
        [1]
    );
    assert_eq!(
        schema::migrate(roles.db.pool(), &pool, &name, &both, None)
            .await
            .unwrap(),
        [2]
    );
    assert_eq!(
        schema::rollback(roles.db.pool(), &pool, &name, &both, 1, &mut |_, _, _| {})
            .await
            .unwrap(),
        [2]
    );
    let columns: i64 = connect(&db_name)
        .await
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_schema = 'ext_step_ledger' AND table_name = 'entries'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 2, "V2's column is gone, V1's table stays");
    assert!(matches!(
        schema::migrate(roles.db.pool(), &pool, &name, &both, Some(7)).await,
        Err(schema::MigrationError::UnknownVersion(7, _))
    ));
    pool.close();
    roles.db.close().await;
}

#[tokio::test]
async fn a_changed_applied_migration_is_refused_naming_its_file() {
    let db_name = fresh_database().await;
    let first = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![ledger::<LedgerV1>("drift-ledger")])
        .spawn()
        .await;
    assert_eq!(failure(&db_name, "drift-ledger").await, None);
    first.stop().await.unwrap();

    let second = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![ledger::<LedgerChanged>("drift-ledger")])
        .spawn()
        .await;
    let reason = failure(&db_name, "drift-ledger").await.unwrap_or_default();
    assert!(
        reason.contains("V1__entries.sql") && reason.contains("changed"),
        "{reason}"
    );
    assert_eq!(
        second.get("/healthz").await.status(),
        200,
        "the server still runs"
    );
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_migration_leaves_the_schema_as_it_was() {
    let app = TestApp::builder()
        .extensions(vec![ledger::<LedgerBroken>("bad-ledger")])
        .spawn()
        .await;
    let reason = failure(&app.db_name, "bad-ledger")
        .await
        .unwrap_or_default();
    assert!(reason.contains("V2__broken.sql"), "{reason}");
    // Not even V1, which came before it in the same run, was kept.
    assert!(
        tables(&app.db_name, "ext_bad_ledger")
            .await
            .iter()
            .all(|t| t != "entries")
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_instances_on_one_empty_database_migrate_once() {
    let db_name = fresh_database().await;
    let (a, b) = tokio::join!(
        TestApp::builder()
            .on(db_name.clone())
            .extensions(vec![ledger::<LedgerV1V2>("twin-ledger")])
            .build(),
        TestApp::builder()
            .on(db_name.clone())
            .extensions(vec![ledger::<LedgerV1V2>("twin-ledger")])
            .build(),
    );
    let ((a, _a_dir), (b, _b_dir)) = (a.unwrap(), b.unwrap());
    for app in [&a, &b] {
        assert!(app.extensions().get("twin-ledger").unwrap().is_running());
    }
    let versions: Vec<i32> = connect(&db_name)
        .await
        .query(
            "SELECT version FROM ext_twin_ledger.refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
    for app in [a, b] {
        app.extensions().shutdown().await;
    }
}

#[tokio::test]
async fn an_external_login_without_createrole_is_told_what_to_grant() {
    let db_name = fresh_database().await;
    let login = format!("sb_login_{}", &db_name[5..17]);
    let admin = connect(&db_name).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN PASSWORD 'not-a-secret'; \
             ALTER DATABASE {db_name} OWNER TO {login}"
        ))
        .await
        .unwrap();
    let as_login = |c: &mut solobase::config::Config| {
        c.database.url = Some(format!(
            "{} user={login} password=not-a-secret",
            database_url(&db_name)
        ));
    };

    // Without CREATEROLE: the server runs, the extension says what its login lacks.
    let app = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![ledger::<LedgerV1>("ext-login-ledger")])
        .config(as_login)
        .spawn()
        .await;
    let reason = failure(&db_name, "ext-login-ledger")
        .await
        .unwrap_or_default();
    assert!(
        reason.contains("CREATEROLE") && reason.contains(&login),
        "{reason}"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await.unwrap();

    // With it (and owning the database), as the docs say, the extension runs in its role.
    admin
        .batch_execute(&format!("ALTER ROLE {login} CREATEROLE"))
        .await
        .unwrap();
    let app = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![ledger::<LedgerV1>("ext-login-ledger")])
        .config(as_login)
        .spawn()
        .await;
    assert_eq!(failure(&db_name, "ext-login-ledger").await, None);
    let ext = connect_as(&db_name, "ext-login-ledger").await.unwrap();
    ext.batch_execute("INSERT INTO entries (amount) VALUES (1)")
        .await
        .unwrap();
    let e = ext
        .batch_execute("SELECT * FROM solobase.users")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let e = ext
        .batch_execute("CREATE TEMP TABLE t (x int)")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "the owner revoked TEMPORARY"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_schema_made_by_another_role_is_handed_to_the_extension() {
    let db_name = fresh_database().await;
    connect(&db_name)
        .await
        .batch_execute(
            "CREATE SCHEMA ext_old_ledger; CREATE TABLE ext_old_ledger.kept (x int); \
             INSERT INTO ext_old_ledger.kept VALUES (7)",
        )
        .await
        .unwrap();
    let app = TestApp::builder()
        .on(db_name.clone())
        .extensions(vec![ledger::<LedgerV1>("old-ledger")])
        .spawn()
        .await;
    assert_eq!(failure(&db_name, "old-ledger").await, None);
    let ext = connect_as(&db_name, "old-ledger").await.unwrap();
    let kept: i32 = ext
        .query_one("SELECT x FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 7, "its earlier data stays and is its own");
    app.stop().await.unwrap();
}
