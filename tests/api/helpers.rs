//! The test harness: one PostgreSQL cluster per test run (the embedded launcher in a temporary
//! directory, or the server named by DATABASE_URL), a fresh database per test, and the app
//! spawned on port 0 with a typed client.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use solobase::config::Config;
use solobase::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use solobase::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How tests reach the cluster: superuser connection settings, and how to name a database.
struct Cluster {
    /// Keeps the embedded server alive for the whole run; it stops when the process exits.
    _server: Option<std::sync::Mutex<EmbeddedPostgres>>,
    admin: tokio_postgres::Config,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = solobase::telemetry::init(&solobase::config::LogConfig {
                level: "info,solobase=debug".into(),
                ..Default::default()
            });
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            let admin = url.parse().expect("DATABASE_URL parses");
            return Cluster {
                _server: None,
                admin,
            };
        }
        remove_stale_clusters();
        let root = std::env::temp_dir().join(format!("solobase-test-{}", std::process::id()));
        let server = EmbeddedPostgres::start(&EmbeddedOptions {
            root: root.clone(),
            bin_dir: None,
            system_user: "postgres".into(),
            start_timeout: Duration::from_secs(60),
            ephemeral: true,
        })
        .expect("the test cluster starts");
        let admin = server.connect_config("postgres");
        Cluster {
            _server: Some(std::sync::Mutex::new(server)),
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

/// Connection settings (key=value form, usable as DATABASE_URL) for database `name`.
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

/// A new empty database for one test.
pub async fn fresh_database() -> String {
    fresh_database_with("").await
}

/// A new empty database for one test, made with `options` (such as `LC_CTYPE 'C.utf8'`; from
/// `template0` when there are options).
pub async fn fresh_database_with(options: &str) -> String {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(" TEMPLATE template0 {options}")
    };
    let (client, conn) = cluster()
        .admin
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}{options}"))
        .await
        .expect("create database");
    name
}

/// A client on a test database, as the superuser.
pub async fn connect(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&database_url(db), tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    client
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("solobase-t-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running app on its own database, stopped when dropped.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The unauthenticated metrics listener's port, when `[metrics] bind` is set.
    pub metrics_port: Option<u16>,
    pub db_name: String,
    pub data_dir: TempDir,
    pub http: reqwest::Client,
    pub events: solobase::events::EventBus,
    /// The host routes the server mounted, as `(method, path)` (`Application::api`).
    pub routes: Vec<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
    finished: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A config for a test: port 0, one worker, the given database, a temporary data dir.
pub fn test_config(db_name: &str, data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    config.server.bind = "127.0.0.1:0".parse().expect("address");
    config.server.workers = 1;
    config.database.url = Some(database_url(db_name));
    config.database.pool_size = 4;
    config.extensions.config_dir = data_dir.join("extension-config");
    // Extension roles are server-wide and concurrent tests share them: a roomy CONNECTION
    // LIMIT (pools open connections lazily).
    config.extensions.pool_size = 100;
    // This binary has the test-only probe compiled in; the tests use it, and the community
    // analytics extension, enabled from the start.
    config.allow_test_extensions = true;
    config.extensions.approved = vec!["analytics".into(), "probe".into()];
    config
}

/// A change a test makes to its server's configuration.
type Customise<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// How a test wants its server: on which database, with which extensions, configured how.
/// `TestApp::builder().spawn()` is a server on a fresh database with the compiled-in
/// extensions and the test configuration.
#[must_use]
pub struct TestAppBuilder<'a> {
    database: Option<String>,
    registrations: Option<Vec<solobase_sdk::Registration>>,
    customise: Vec<Customise<'a>>,
}

impl<'a> TestAppBuilder<'a> {
    /// On an existing database (another instance's, or one a test prepared).
    pub fn on(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// With these extensions instead of the compiled-in ones.
    pub fn extensions(mut self, registrations: Vec<solobase_sdk::Registration>) -> Self {
        self.registrations = Some(registrations);
        self
    }

    /// Changes the configuration (after [`test_config`]).
    pub fn config(mut self, customise: impl FnOnce(&mut Config) + 'a) -> Self {
        self.customise.push(Box::new(customise));
        self
    }

    /// Builds the server without running it (its data directory lives as long as the
    /// returned `TempDir`).
    pub async fn build(self) -> anyhow::Result<(Application, TempDir)> {
        let db_name = match self.database {
            Some(name) => name,
            None => fresh_database().await,
        };
        let data_dir = TempDir::new();
        let mut config = test_config(&db_name, &data_dir.0);
        for customise in self.customise {
            customise(&mut config);
        }
        let app = match self.registrations {
            Some(r) => Application::build_with_extensions(config, r).await,
            None => Application::build(config).await,
        }?;
        Ok((app, data_dir))
    }

    /// Builds and runs the server.
    pub async fn spawn(self) -> TestApp {
        let (app, data_dir) = self.build().await.expect("the app builds");
        let db_name = {
            let url = app.state().config.database.url.clone().unwrap_or_default();
            url.split_whitespace()
                .find_map(|kv| kv.strip_prefix("dbname="))
                .unwrap_or_default()
                .to_owned()
        };
        let port = app.port();
        let metrics_port = app.metrics_port();
        let events = app.state().events.clone();
        let routes = app.api().routes();
        let (tx, rx) = oneshot::channel();
        let finished = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            metrics_port,
            db_name,
            data_dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            events,
            routes,
            shutdown: Some(tx),
            finished: Some(finished),
        }
    }
}

/// The value of the first sample in Prometheus `text` named `name` whose labels include each
/// of `labels` (such as `table="outbox"`); 0 when there is none.
pub fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The common case: `TestApp::builder().spawn()`.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

impl TestApp {
    /// A server to build: see [`TestAppBuilder`].
    pub fn builder<'a>() -> TestAppBuilder<'a> {
        TestAppBuilder {
            database: None,
            registrations: None,
            customise: Vec::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// `GET /metrics` as `admin`: the Prometheus text.
    pub async fn metrics_text(&self, admin: &str) -> String {
        let res = self
            .http
            .get(self.url("/metrics"))
            .bearer_auth(admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        res.text().await.unwrap()
    }

    /// `method path` as `token`, with an optional JSON body: the status and the body as JSON
    /// (`Null` when it is not JSON).
    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path` with extra request headers.
    #[cfg_attr(not(feature = "probe"), allow(dead_code))]
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = self.http.get(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("request")
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.db_name).await
    }

    /// Creates a user directly (as the CLI would) and returns its email.
    pub async fn create_user(&self, email: &str, password: &str, admin: bool) {
        let config = test_config(&self.db_name, &self.data_dir.0);
        let db = solobase::db::Postgres::connect(&config, solobase::db::Mode::Share)
            .await
            .expect("db");
        let role = if admin {
            solobase::auth::Role::Admin
        } else {
            solobase::auth::Role::User
        };
        solobase::auth::users::create(
            db.pool(),
            &solobase::auth::Email::parse(email).expect("email"),
            &solobase::auth::Password::parse(password.into(), 1).expect("password"),
            role,
        )
        .await
        .expect("create user");
        db.close().await;
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .expect("request")
    }

    /// `POST /api/v1/auth/signup`.
    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.http
            .post(self.url("/api/v1/auth/signup"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .expect("request")
    }

    /// Creates a user and returns a token for it.
    pub async fn user_token(&self, email: &str, admin: bool) -> String {
        self.create_user(email, "password123", admin).await;
        let res = self.login(email, "password123").await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn me(&self, token: &str) -> Response {
        self.http
            .get(self.url("/api/v1/auth/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn put_object(
        &self,
        token: &str,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> Response {
        self.http
            .put(self.url(&format!("/api/v1/storage/{path}")))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_object(&self, token: &str, path: &str) -> Response {
        self.http
            .get(self.url(&format!("/api/v1/storage/{path}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete_object(&self, token: &str, path: &str) -> Response {
        self.http
            .delete(self.url(&format!("/api/v1/storage/{path}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Sends a request exactly as written (no client-side path normalisation) and returns the
    /// status and body.
    pub async fn raw(&self, request_line: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let mut text = format!("{request_line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read");
        let out = String::from_utf8_lossy(&out).into_owned();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// `GET /api/v1/extensions` as `admin` sees it.
    pub async fn extensions(&self, admin: &str) -> Vec<Value> {
        let res = self
            .http
            .get(self.url("/api/v1/extensions"))
            .bearer_auth(admin)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        res.json().await.expect("a JSON list")
    }

    /// Extension `name`'s entry in [`TestApp::extensions`].
    pub async fn extension(&self, admin: &str, name: &str) -> Value {
        self.extensions(admin)
            .await
            .into_iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} is listed"))
    }

    /// Stops the server gracefully and returns how run_until_stopped ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.finished.take() {
            Some(handle) => handle.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `check` every 50 ms until it holds, for at most `limit`; whether it did.
pub async fn eventually<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Asserts the common error shape and returns the code.
pub async fn error_code(res: Response) -> String {
    let body: Value = res.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code is a string")
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    code
}
