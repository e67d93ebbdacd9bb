//! The database: one connection pool on either an external server (`DATABASE_URL`) or the
//! embedded cluster, plus the host's migrations.
//!
//! Nothing outside this module opens a PostgreSQL connection: the host borrows from the
//! [`Postgres`]'s pool, extensions from pools made by [`pool`] as their own roles.

pub(crate) mod binaries;
mod cluster_dir;
pub mod embedded;
pub(crate) mod listen;
pub mod lock;
pub mod migrate;
mod sys;
pub mod test_cluster;
pub mod tls;

use std::sync::Mutex;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Config;
use embedded::{EmbeddedError, EmbeddedOptions, EmbeddedPostgres};

/// Name of the host's database inside the embedded cluster.
pub(crate) const EMBEDDED_DATABASE: &str = "solobase";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "DATABASE_URL is not a valid PostgreSQL URL ({0}); expected something like \
         postgres://user:password@host:5432/dbname"
    )]
    BadUrl(String),
    #[error(
        "cannot connect to PostgreSQL at {target}: {cause}. Check that the server is running and \
         that DATABASE_URL is right, or unset DATABASE_URL to use the embedded database"
    )]
    Unreachable { target: String, cause: String },
    #[error("database TLS: {0}")]
    Tls(String),
    #[error(
        "PostgreSQL at {target} presented a certificate that does not verify ({cause}): name the \
         CA that signed it with sslrootcert=<file> in DATABASE_URL (or database.ca_file), and \
         connect by a host name the certificate is for (or use sslmode=verify-ca)"
    )]
    Certificate { target: String, cause: String },
    #[error("cannot start the embedded PostgreSQL: {0}")]
    Embedded(#[from] EmbeddedError),
    #[error("cannot prepare the embedded database: {0}")]
    EmbeddedSetup(String),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
}

/// Who runs the embedded cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A server: starts the cluster and stops it when done; a cluster already run by another
    /// process is an error.
    Own,
    /// A command-line tool: uses the cluster of a server running on the same data directory if
    /// there is one, and otherwise starts (and later stops) it itself.
    Share,
}

/// The pool and, when embedded, the server process it talks to.
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
    /// How connections are made (TLS and its verification), for every pool on this database.
    tls: tls::DbTls,
    /// Where the pool points, for messages (never contains a password).
    target: String,
    /// The connection settings, from which extension pools are derived.
    pg_config: tokio_postgres::Config,
    /// Held until [`Postgres::close`]; `None` with an external server.
    embedded: Mutex<Option<EmbeddedPostgres>>,
}

impl Postgres {
    /// Connects as configured: the URL when set, the embedded cluster otherwise (created and
    /// started as needed). Fails fast with a message saying what to do.
    pub async fn connect(config: &Config, mode: Mode) -> Result<Self, DbError> {
        let db = &config.database;
        let connect_timeout = Duration::from_secs(db.connect_timeout_secs.max(1));
        let mut policy = tls::DbTls::None;
        let (pg_config, embedded) = match &db.url {
            Some(url) => {
                let (rest, mode, root) = tls::split_url(url).map_err(DbError::BadUrl)?;
                let mut pg: tokio_postgres::Config = rest
                    .parse()
                    .map_err(|e: tokio_postgres::Error| DbError::BadUrl(e.to_string()))?;
                let only_sockets = pg
                    .get_hosts()
                    .iter()
                    .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
                if !only_sockets {
                    let (made, pg_mode) =
                        tls::DbTls::new(mode, root.as_deref(), db.ca_file.as_deref())
                            .map_err(DbError::Tls)?;
                    policy = made;
                    pg.ssl_mode(pg_mode);
                }
                pg.connect_timeout(connect_timeout);
                if pg.get_application_name().is_none() {
                    pg.application_name("solobase");
                }
                (pg, None)
            }
            None => {
                let opts = EmbeddedOptions {
                    root: config.data_dir.join("postgres"),
                    bin_dir: db.embedded.bin_dir.clone(),
                    system_user: db.embedded.system_user.clone(),
                    start_timeout: Duration::from_secs(db.embedded.start_timeout_secs),
                    ephemeral: false,
                };
                let socket_dir = embedded::socket_dir(&opts.root);
                match start_embedded(opts).await {
                    Ok(server) => {
                        ensure_database(&server.connect_config("postgres"), EMBEDDED_DATABASE)
                            .await?;
                        (server.connect_config(EMBEDDED_DATABASE), Some(server))
                    }
                    Err(DbError::Embedded(EmbeddedError::InUse { pid, .. }))
                        if mode == Mode::Share =>
                    {
                        tracing::info!(pid, "using the embedded cluster of the running server");
                        (
                            embedded::connect_config(&socket_dir, EMBEDDED_DATABASE),
                            None,
                        )
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let database = Self::from_pg_config(
            host_session(pg_config),
            policy,
            db.pool_size,
            connect_timeout,
        )?;
        *database.embedded.lock().unwrap_or_else(|p| p.into_inner()) = embedded;
        database.ping().await?;
        Ok(database)
    }

    /// A pool on explicit connection settings (used by [`Postgres::connect`] and tests).
    pub(crate) fn from_pg_config(
        pg_config: tokio_postgres::Config,
        tls: tls::DbTls,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, DbError> {
        let target = describe_target(&pg_config);
        let pool = pool(pg_config.clone(), &tls, pool_size, timeout).map_err(|e| {
            DbError::Unreachable {
                target: target.clone(),
                cause: e.to_string(),
            }
        })?;
        Ok(Self {
            pool,
            tls,
            target,
            pg_config,
            embedded: Mutex::new(None),
        })
    }

    /// Checks that a connection can be made and answers.
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        let unreachable = |cause: String| {
            if cause.contains("invalid peer certificate") {
                DbError::Certificate {
                    target: self.target.clone(),
                    cause,
                }
            } else {
                DbError::Unreachable {
                    target: self.target.clone(),
                    cause,
                }
            }
        };
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| unreachable(pool_error_cause(&e)))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(())
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How this database's connections are made (every pool on it uses the same).
    pub fn tls(&self) -> &tls::DbTls {
        &self.tls
    }

    /// The connection settings (with credentials: never log them).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg_config
    }

    /// Host, port and database name — safe to log.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// Closes the pool and stops the embedded server, if any.
    pub async fn close(&self) {
        self.pool.close();
        let server = self
            .embedded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut server) = server {
            let result = tokio::task::spawn_blocking(move || server.stop()).await;
            match result {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "embedded PostgreSQL did not stop cleanly")
                }
                Err(e) => tracing::warn!(error = %e, "embedded PostgreSQL stop task failed"),
            }
        }
    }
}

/// Starts the embedded cluster off the async threads (initdb and start-up block).
pub(crate) async fn start_embedded(opts: EmbeddedOptions) -> Result<EmbeddedPostgres, DbError> {
    tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&opts))
        .await
        .map_err(|e| DbError::EmbeddedSetup(e.to_string()))?
        .map_err(DbError::from)
}

/// Creates `dbname` unless it exists, connecting with `admin` (a superuser's settings).
#[allow(clippy::disallowed_methods)] // this module is the one place allowed to connect
pub async fn ensure_database(admin: &tokio_postgres::Config, dbname: &str) -> Result<(), DbError> {
    let setup = |e: tokio_postgres::Error| DbError::EmbeddedSetup(e.to_string());
    let (client, connection) = admin.connect(NoTls).await.map_err(setup)?;
    let conn = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .map_err(setup)?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", dbname.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => {}
            // Another instance created it in the meantime.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(setup(e)),
        }
    }
    // The cluster is Solobase's alone: no role but the superuser may connect to its other
    // databases (extensions' roles would find there temporary tables and large objects
    // outside every quota). Only what is still granted, so a restart changes nothing.
    let open: Vec<String> = client
        .query(
            "SELECT datname::text FROM pg_database WHERE datname <> $1 AND datallowconn \
             AND has_database_privilege('public', oid, 'CONNECT')",
            &[&dbname],
        )
        .await
        .map_err(setup)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for other in open {
        let quoted = format!("\"{}\"", other.replace('"', "\"\""));
        client
            .batch_execute(&format!("REVOKE CONNECT ON DATABASE {quoted} FROM PUBLIC"))
            .await
            .map_err(setup)?;
    }
    drop(client);
    let _ = conn.await;
    Ok(())
}

/// A pool on `config` of at most `size` connections, each wait bounded by `timeout`: the one
/// way connections are opened (the host's pool, extensions' pools as their roles).
pub(crate) fn pool(
    config: tokio_postgres::Config,
    tls: &tls::DbTls,
    size: usize,
    timeout: Duration,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match tls {
        tls::DbTls::None => Manager::from_config(config, NoTls, manager_config),
        tls::DbTls::Rustls(make) => Manager::from_config(config, make.clone(), manager_config),
    };
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
}

/// The host's sessions resolve unqualified names in `pg_catalog`, then `solobase`, and
/// nowhere else: never in a schema another role may create objects in (`public` on older
/// databases, an extension's), whose functions or operators could otherwise stand in for the
/// built-in ones in the host's statements.
fn host_session(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    let path = "-c search_path=pg_catalog,solobase";
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {path}"),
        _ => path.to_owned(),
    };
    config.options(options);
    config
}

fn describe_target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// The innermost cause of a pool error, which is what tells the user what went wrong.
fn pool_error_cause(e: &deadpool_postgres::PoolError) -> String {
    use std::error::Error as _;
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

/// A pool's error as [`error_text`] words it when PostgreSQL refused the connection
/// ("too many connections for role …" rather than "db error").
pub(crate) fn pool_error_text(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => error_text(e),
        other => other.to_string(),
    }
}

/// A PostgreSQL error as a person should read it: the server's message with its detail and
/// hint, or the client's own error ("db error" alone says nothing).
pub(crate) fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => e.to_string(),
    }
}
