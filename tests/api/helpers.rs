//! The test harness: one PostgreSQL cluster per test run (the embedded launcher in a temporary
//! directory, or the server named by DATABASE_URL), a fresh database per test, and the app
//! spawned on port 0 with a typed client.

use std::path::{Path, PathBuf};

use reqwest::{Response, StatusCode};
use serde_json::Value;
use solobase::config::Config;
use solobase::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

pub use solobase::db::test_cluster::{connect, database_url, fresh_database, fresh_database_with};

/// With `TEST_LOG` set, the servers' logs go to the test output.
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = solobase::telemetry::init(&solobase::config::LogConfig {
                level: "info,solobase=debug".into(),
                ..Default::default()
            });
        }
    });
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
    /// The first-run link it printed (while no administrator exists).
    pub setup_link: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    finished: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A config for a test: the test kit's ([`solobase::testkit::base_config`]: port 0, one
/// worker, the given database, a temporary data dir) with the probe allowed.
pub fn test_config(db_name: &str, data_dir: &Path) -> Config {
    let mut config = solobase::testkit::base_config(db_name, data_dir);
    // This binary has the test-only probe compiled in; the tests use it, and the community
    // analytics extension, enabled from the start.
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
        init_test_log();
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
        let setup_link = app.setup_link().map(str::to_owned);
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
            setup_link,
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
