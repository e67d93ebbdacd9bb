//! The extension testing kit at the level production runs: a real Solobase server started in
//! the test's process, with the extensions under test compiled in, on a fresh database of a
//! real PostgreSQL cluster ([`crate::db::test_cluster`]). Every call goes through a real
//! socket and the whole request pipeline — `pre_request` hooks and middleware in priority
//! order, authentication and authorization hooks, the route's access rule and the role's
//! granted permissions, rate limits, in-flight and body limits, the CPU budget, panic
//! isolation — and the extension runs as its own PostgreSQL role in its own schema, with the
//! permissions its manifest requests granted.
//!
//! An extension crate uses it as a dev-dependency (the server does not depend on it for this,
//! so there is no cycle in the build):
//!
//! ```toml
//! [dev-dependencies]
//! solobase = { path = "../../..", default-features = false }
//! ```
//!
//! ```ignore
//! use solobase::testkit::TestServer;
//! use solobase_sdk::prelude::*;
//!
//! #[tokio::test]
//! async fn the_route_needs_its_permission() {
//!     let server = TestServer::builder(crate::solobase_extension()).start().await.unwrap();
//!     let user = solobase_sdk::testing::identity("u@example.com", Role::User);
//!     let req = Request::new(Method::GET, "/items").with_identity(user.clone());
//!     assert_eq!(server.call(req).await.status, StatusCode::FORBIDDEN);
//!     server.grant("notes.read").await;
//!     let req = Request::new(Method::GET, "/items").with_identity(user);
//!     assert_eq!(server.call(req).await.status, StatusCode::OK);
//!     // The extension's own tables, seen with its own rights:
//!     let db = server.database("notes");
//!     let rows = db.client().await.unwrap().query("SELECT * FROM items", &[]).await.unwrap();
//! }
//! ```
//!
//! Without `DATABASE_URL` the kit starts PostgreSQL itself (its server binaries must be
//! installed; as root it runs them as the `postgres` user); with it, the URL must be a
//! superuser's. The SDK's `solobase_sdk::testing` is the other level: a unit-test harness
//! with mock services that calls handlers directly, without the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use solobase_sdk::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Role, StatusCode};
use solobase_sdk::{Database, Manifest, Registration};
use tokio::sync::{Mutex, oneshot};

use crate::config::Config;
use crate::db::test_cluster::{database_url, fresh_database};
use crate::runtime::host::ExtensionHost;
use crate::startup::Application;

/// The configuration a test server starts from: database `db_name`, data under `data_dir`,
/// port 0 on loopback, one worker, small pools.
pub fn base_config(db_name: &str, data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    config.server.bind = "127.0.0.1:0".parse().expect("a socket address");
    config.server.workers = 1;
    config.database.url = Some(database_url(db_name));
    config.database.pool_size = 4;
    config.extensions.config_dir = data_dir.join("extension-config");
    // Extension roles are cluster-wide and concurrent tests share them: a roomy CONNECTION
    // LIMIT (pools open connections lazily).
    config.extensions.pool_size = 100;
    // A test binary built with --all-features has the test-only extensions compiled in; a
    // test server is where they belong.
    config.allow_test_extensions = true;
    config
}

/// A change a test makes to its server's configuration.
type Customise = Box<dyn FnOnce(&mut Config) + Send>;

/// How a test wants its server; see [`TestServer::builder`].
#[must_use]
pub struct TestServerBuilder {
    registrations: Vec<Registration>,
    extension_configs: Vec<(String, String)>,
    customise: Vec<Customise>,
}

impl std::fmt::Debug for TestServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServerBuilder")
            .field("registrations", &self.registrations)
            .finish_non_exhaustive()
    }
}

impl TestServerBuilder {
    /// Compiles in another extension too (one the extension under test depends on).
    pub fn with(mut self, registration: Registration) -> Self {
        self.registrations.push(registration);
        self
    }

    /// Starts extension `name` with this configuration file (TOML, as an operator would write
    /// `<config_dir>/<name>.toml`), checked against its schema like any other.
    pub fn extension_config(mut self, name: &str, toml: &str) -> Self {
        self.extension_configs
            .push((name.to_owned(), toml.to_owned()));
        self
    }

    /// Changes the server's configuration (after [`base_config`]), such as
    /// `[extensions.limits.<name>]` rate limits.
    pub fn config(mut self, customise: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.customise.push(Box::new(customise));
        self
    }

    /// Creates a fresh database, starts the server on it and waits until it listens.
    pub async fn start(self) -> anyhow::Result<TestServer> {
        let names = self
            .registrations
            .iter()
            .map(|r| Manifest::parse(r.manifest).map(|m| m.name.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("an extension's manifest does not parse: {e}"))?;
        let database = fresh_database().await;
        let data_dir = DataDir::new()?;
        let mut config = base_config(&database, &data_dir.0);
        // The extensions under test are granted what their manifests request, whatever
        // their tier, as an operator approving them would.
        config.extensions.approved = names.clone();
        std::fs::create_dir_all(&config.extensions.config_dir)?;
        for (name, toml) in self.extension_configs {
            let file = crate::runtime::config_file::path(&config.extensions.config_dir, &name);
            std::fs::write(&file, toml)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        for customise in self.customise {
            customise(&mut config);
        }
        let app = Application::build_with_extensions(config, self.registrations).await?;
        let extension = names.first().cloned().unwrap_or_default();
        let port = app.port();
        let state = app.state().clone();
        let host = app.extensions().clone();
        let (tx, rx) = oneshot::channel();
        let finished = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        Ok(TestServer {
            address: format!("http://127.0.0.1:{port}"),
            extension,
            database,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            state,
            host,
            tokens: Mutex::new(HashMap::new()),
            shutdown: Some(tx),
            finished: Some(finished),
            _data_dir: data_dir,
        })
    }
}

/// A running server with the extensions under test; stopped when dropped (or by
/// [`TestServer::stop`], which waits for the extensions' `stop()`).
pub struct TestServer {
    address: String,
    extension: String,
    database: String,
    http: reqwest::Client,
    state: crate::http::AppState,
    host: Arc<ExtensionHost>,
    /// The session token of each account the tests called as, by e-mail.
    tokens: Mutex<HashMap<String, (Role, String)>>,
    shutdown: Option<oneshot::Sender<()>>,
    finished: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _data_dir: DataDir,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("address", &self.address)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// A server for `extension` (its crate's `solobase_extension()`), which [`Self::call`]
    /// addresses.
    pub fn builder(extension: Registration) -> TestServerBuilder {
        TestServerBuilder {
            registrations: vec![extension],
            extension_configs: Vec::new(),
            customise: Vec::new(),
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The name of the server's database on the test cluster.
    pub fn database_name(&self) -> &str {
        &self.database
    }

    /// Calls the extension under test: `req.head.path` is relative to `/ext/<name>`.
    pub async fn call(&self, req: Request) -> Response {
        let path = format!("/ext/{}{}", self.extension, req.head.path);
        self.send(req, &path).await
    }

    /// Calls any route of the server: `req.head.path` is the whole path (`/api/v1/…`).
    pub async fn call_host(&self, req: Request) -> Response {
        let path = req.head.path.clone();
        self.send(req, &path).await
    }

    /// Sends `req` to `path` over a real connection. `req.head.identity`, when set, becomes
    /// a real account with that e-mail and role (created on first use; its id is the
    /// server's, not the identity's) and its session token in `Authorization`.
    async fn send(&self, req: Request, path: &str) -> Response {
        let mut url = self.url(path);
        if !req.head.query.is_empty() {
            url.push('?');
            url.push_str(&req.head.query);
        }
        let mut builder = self
            .http
            .request(req.head.method.clone(), url)
            .headers(req.head.headers.clone())
            .body(req.body.clone());
        if let Some(who) = &req.head.identity {
            builder = builder.bearer_auth(self.token(&who.email, who.role).await);
        }
        let res = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("the test server did not answer {path}: {e}"));
        let status = StatusCode::from_u16(res.status().as_u16()).expect("a valid status");
        let mut headers = HeaderMap::new();
        for (name, value) in res.headers() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_ref()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                headers.append(name, value);
            }
        }
        let body = res
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("the answer to {path} broke off: {e}"));
        Response {
            status,
            headers,
            body,
        }
    }

    /// A session token for the account `email` with `role`, created on first use (an
    /// account the tests made with another role is an error). The account has no usable
    /// password: tests that log in create theirs through the API.
    pub async fn token(&self, email: &str, role: Role) -> String {
        let mut tokens = self.tokens.lock().await;
        if let Some((had, token)) = tokens.get(email) {
            assert_eq!(
                *had, role,
                "{email} was first used as {had:?}: use another e-mail for {role:?}"
            );
            return token.clone();
        }
        let parsed = crate::auth::Email::parse(email)
            .unwrap_or_else(|e| panic!("{email:?} is not an e-mail address: {e}"));
        let pool = &self.state.pool;
        // A hash no password verifies against: nobody logs in as this account.
        let (user, created) = crate::auth::users::create_with_hash(pool, &parsed, "!", role)
            .await
            .unwrap_or_else(|e| panic!("cannot create the account {email}: {e}"));
        let ttl = std::time::Duration::from_secs(3600);
        let (token, _, login) = crate::auth::users::open_session(pool, &user, ttl, None)
            .await
            .unwrap_or_else(|e| panic!("cannot open a session for {email}: {e}"));
        self.state.events.publish(created);
        self.state.events.publish(login);
        tokens.insert(email.to_owned(), (role, token.clone()));
        token
    }

    /// Gives the `user` role `permission` through the admin API, as an administrator would.
    pub async fn grant(&self, permission: &str) {
        let admin = self.token("testkit-admin@example.com", Role::Admin).await;
        let res = self
            .http
            .put(self.url(&format!("/api/v1/roles/user/permissions/{permission}")))
            .bearer_auth(admin)
            .send()
            .await
            .expect("the grant request is answered");
        assert_eq!(
            res.status().as_u16(),
            200,
            "granting {permission}: {}",
            res.text().await.unwrap_or_default()
        );
    }

    /// Extension `name`'s own database handle: its pool, connected as its PostgreSQL role
    /// `ext_<name>` with `search_path` its schema — what its code uses, with its rights only.
    pub fn database(&self, name: &str) -> Database {
        let loaded = self
            .host
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not compiled into this test server"));
        let pool = loaded
            .pool
            .clone()
            .unwrap_or_else(|| panic!("{name} did not load: {:?}", loaded.failure()));
        Database::new(pool, loaded.name.schema())
    }

    /// The running extension host (status, enable and disable).
    pub fn host(&self) -> &Arc<ExtensionHost> {
        &self.host
    }

    /// Stops the server as SIGTERM would (extensions' `stop()`, their tasks, the pools) and
    /// returns how it ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.finished.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The server's data directory, removed with it.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("solobase-kit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
