//! The PostgreSQL cluster tests run on: the server `DATABASE_URL` names (connected to as a
//! superuser), or else an embedded cluster started once per test process in a temporary
//! directory and removed with it. Each test gets a fresh database of its own
//! ([`fresh_database`]). Used by the integration tests and by [`crate::testkit`].

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::embedded::{EmbeddedOptions, EmbeddedPostgres};

/// How tests reach the cluster: superuser connection settings.
struct Cluster {
    /// Keeps the embedded server alive for the whole run; it stops when the process exits.
    _server: Option<Mutex<EmbeddedPostgres>>,
    admin: tokio_postgres::Config,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            let admin = url
                .parse()
                .unwrap_or_else(|e| panic!("DATABASE_URL does not parse ({e}): unset it to let the tests start their own cluster"));
            return Cluster {
                _server: None,
                admin,
            };
        }
        remove_stale_clusters();
        let root = std::env::temp_dir().join(format!("solobase-test-{}", std::process::id()));
        let server = EmbeddedPostgres::start(&EmbeddedOptions {
            root,
            bin_dir: None,
            system_user: "postgres".into(),
            start_timeout: Duration::from_secs(60),
            ephemeral: true,
        })
        .unwrap_or_else(|e| {
            panic!("the test cluster does not start ({e}): install PostgreSQL's server binaries, or set DATABASE_URL to a superuser's connection")
        });
        let admin = server.connect_config("postgres");
        Cluster {
            _server: Some(Mutex::new(server)),
            admin,
        }
    })
}

/// Clusters of earlier test runs whose process is gone.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("solobase-test-")
            .and_then(|p| p.parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Connection settings (key=value form, usable as `DATABASE_URL`) for database `name`, as the
/// cluster's superuser.
pub fn database_url(name: &str) -> String {
    use tokio_postgres::config::Host;
    let admin = &cluster().admin;
    let host = match &admin.get_hosts()[0] {
        Host::Tcp(h) => h.clone(),
        Host::Unix(p) => p.display().to_string(),
    };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    let user = admin.get_user().unwrap_or("postgres");
    let mut url = format!("host={host} port={port} user={user} dbname={name}");
    if let Some(pw) = admin.get_password() {
        url.push_str(&format!(" password={}", String::from_utf8_lossy(pw)));
    }
    url
}

/// A new empty database for one test; its name.
pub async fn fresh_database() -> String {
    fresh_database_with("").await
}

/// A new empty database for one test, made with `options` (such as `LC_CTYPE 'C.utf8'`; from
/// `template0` when there are options); its name.
#[allow(clippy::disallowed_methods)] // src/db is the one place allowed to connect
pub async fn fresh_database_with(options: &str) -> String {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(" TEMPLATE template0 {options}")
    };
    let (admin, conn) = cluster()
        .admin
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
    tokio::spawn(conn);
    admin
        .batch_execute(&format!("CREATE DATABASE {name}{options}"))
        .await
        .expect("create the test database");
    name
}

/// A client on database `name`, as the cluster's superuser.
#[allow(clippy::disallowed_methods)] // src/db is the one place allowed to connect
pub async fn connect(name: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&database_url(name), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database {name}: {e}"));
    tokio::spawn(conn);
    client
}
