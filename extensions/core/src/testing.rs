//! The unit-test kit (feature `testing`): run an extension with mock services and call its
//! routes and hooks directly — no server, no database, no network.
//!
//! ```ignore
//! use solobase_sdk::testing::{TestHarness, identity};
//!
//! #[tokio::test]
//! async fn greets() {
//!     let harness = TestHarness::<Hello>::builder("hello").build().await.unwrap();
//!     let res = harness.call(Request::new(Method::GET, "/")).await;
//!     assert_eq!(res.status, StatusCode::OK);
//!     // Hooks are the extension's own methods (registered in `hooks`): call them directly.
//!     let mut head = RequestHead::new(Method::GET, "/anything");
//!     let flow = harness.ext().check_origin(&mut head).await;
//! }
//! ```
//!
//! Database calls fail as "unavailable" here, and what the host adds around a route — hooks
//! of other extensions, rate and body limits, the permissions a role was granted — is not
//! modelled (a `.permission(…)` route admits administrators only). For all of that, and a
//! database as the extension's own role in its own schema, test through the real server with
//! the host's kit, `solobase::testkit::TestServer` (the developer guide, "Testing").

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ExtensionError, Result};
use crate::event::{Event, EventBus};
use crate::extension::Extension;
use crate::http::{Identity, Request, Response, Role, StatusCode};
use crate::manifest::ExtensionName;
use crate::routes::{Access, Lookup, RouteTable};
use crate::services::{
    BoxFuture, ConfigHandle, Database, EventSink, Events, FileStore, Files, InitContext, JobQueue,
    Jobs, OutboxPosition, StoredFile, UserDirectory, UserInfo, Users,
};
use crate::storage::Storage;

/// An identity for test requests.
pub fn identity(email: &str, role: Role) -> Identity {
    Identity {
        user_id: Uuid::new_v4(),
        email: email.to_owned(),
        role,
    }
}

/// An in-memory user directory.
#[derive(Debug, Default)]
pub struct MockUsers {
    users: Mutex<Vec<UserInfo>>,
}

impl MockUsers {
    /// Adds a user and returns it.
    pub fn add(&self, email: &str, role: Role) -> UserInfo {
        let user = UserInfo {
            id: Uuid::new_v4(),
            email: email.to_owned(),
            role,
            created_at: OffsetDateTime::now_utc(),
        };
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(user.clone());
        user
    }

    fn find(&self, pred: impl Fn(&UserInfo) -> bool) -> Option<UserInfo> {
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|u| pred(u))
            .cloned()
    }
}

impl UserDirectory for MockUsers {
    fn by_id(&self, id: Uuid) -> BoxFuture<'_, Result<Option<UserInfo>>> {
        let found = self.find(|u| u.id == id);
        Box::pin(async move { Ok(found) })
    }

    fn by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>>> {
        let found = self.find(|u| u.email.eq_ignore_ascii_case(email));
        Box::pin(async move { Ok(found) })
    }
}

/// An in-memory file store standing in for the host's storage.
#[derive(Debug, Default)]
pub struct MockFiles {
    files: Mutex<std::collections::BTreeMap<(String, String), StoredFile>>,
}

impl MockFiles {
    /// Every file, by bucket and path.
    pub fn all(&self) -> std::collections::BTreeMap<(String, String), StoredFile> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut std::collections::BTreeMap<(String, String), StoredFile>) -> T,
    ) -> T {
        f(&mut self.files.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Reads ignore the caller: the host's read rules are the host's to test.
impl FileStore for MockFiles {
    fn read<'a>(
        &'a self,
        _caller: Option<&'a crate::Identity>,
        bucket: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredFile>>> {
        let found = self.with(|m| m.get(&(bucket.to_owned(), path.to_owned())).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn write<'a>(
        &'a self,
        bucket: &'a str,
        path: &'a str,
        file: StoredFile,
    ) -> BoxFuture<'a, Result<()>> {
        self.with(|m| m.insert((bucket.to_owned(), path.to_owned()), file));
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, bucket: &'a str, path: &'a str) -> BoxFuture<'a, Result<bool>> {
        let had = self.with(|m| m.remove(&(bucket.to_owned(), path.to_owned())).is_some());
        Box::pin(async move { Ok(had) })
    }
}

/// Records the jobs an extension queues (run them with `harness.ext().run_job(..)`).
#[derive(Debug, Default)]
pub struct MockJobs {
    queued: Mutex<Vec<(String, serde_json::Value)>>,
}

impl MockJobs {
    /// Every job queued so far: kind and payload.
    pub fn queued(&self) -> Vec<(String, serde_json::Value)> {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl JobQueue for MockJobs {
    fn enqueue<'a>(
        &'a self,
        kind: &'a str,
        payload: serde_json::Value,
        _delay: std::time::Duration,
    ) -> BoxFuture<'a, Result<i64>> {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        queued.push((kind.to_owned(), payload));
        let id = queued.len() as i64;
        Box::pin(async move { Ok(id) })
    }
}

/// Records the tasks an extension registers (`ctx.tasks`); run one with [`MockTasks::run`].
#[derive(Default)]
pub struct MockTasks {
    tasks: Mutex<Vec<(String, crate::tasks::Schedule, Arc<crate::tasks::TaskWork>)>>,
}

impl std::fmt::Debug for MockTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.registered()).finish()
    }
}

impl MockTasks {
    /// Every task registered so far: name and schedule.
    pub fn registered(&self) -> Vec<(String, crate::tasks::Schedule)> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect()
    }

    /// Runs the task `name` once, to its end; `false` when no such task was registered.
    pub async fn run(&self, name: &str) -> bool {
        let work = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, ..)| n == name)
            .map(|(_, _, w)| w.clone());
        match work {
            Some(work) => {
                work().await;
                true
            }
            None => false,
        }
    }
}

impl crate::tasks::TaskRunner for MockTasks {
    fn run(&self, name: &str, schedule: crate::tasks::Schedule, work: crate::tasks::TaskWork) {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).push((
            name.to_owned(),
            schedule,
            Arc::new(work),
        ));
    }
}

/// Records every event an extension publishes (and puts it on a bus, like the host), and
/// keeps a durable feed of every event, published or [recorded](RecordedEvents::record), for
/// [`crate::Events::read_after`].
#[derive(Debug, Default)]
pub struct RecordedEvents {
    events: Mutex<Vec<Event>>,
    feed: Mutex<Vec<Event>>,
    bus: EventBus,
}

impl RecordedEvents {
    /// Everything published so far.
    pub fn published(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The bus the events go to; publish host events here to drive `on_event` tests.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Commits a host event, as the host does: into the feed, then onto the bus.
    pub fn record(&self, event: Event) {
        self.feed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        self.bus.publish(event);
    }
}

impl EventSink for RecordedEvents {
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<()>> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        self.record(event);
        Box::pin(async { Ok(()) })
    }

    fn read_after(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<(OutboxPosition, Event)>>> {
        let feed = self.feed.lock().unwrap_or_else(|p| p.into_inner());
        let page = feed
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let position = OutboxPosition {
                    tx: 0,
                    seq: i as i64 + 1,
                };
                (position, e.clone())
            })
            .filter(|(p, _)| *p > after)
            .take(limit as usize)
            .collect();
        Box::pin(async move { Ok(page) })
    }
}

/// Builds a [`TestHarness`].
#[derive(Debug)]
pub struct TestHarnessBuilder<E: Extension> {
    name: String,
    config: Option<E::Config>,
    http: Option<crate::outbound::Http>,
}

impl<E: Extension> TestHarnessBuilder<E> {
    /// Uses `config` instead of the default configuration.
    pub fn config(mut self, config: E::Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Answers the extension's `ctx.http` calls with `client` (by default every call fails
    /// with "no outbound HTTP here").
    pub fn http(mut self, client: Arc<dyn crate::outbound::HttpClient>) -> Self {
        self.http = Some(crate::outbound::Http::new(client));
        self
    }

    /// Initializes the extension with the services.
    pub async fn build(self) -> Result<TestHarness<E>> {
        let name = ExtensionName::parse(&self.name).map_err(ExtensionError::Config)?;
        let schema = name.schema();
        let mut nowhere = tokio_postgres::Config::new();
        nowhere
            .host_path("/nonexistent/solobase-testing")
            .connect_timeout(std::time::Duration::from_millis(100));
        let db = Database::new(pool(nowhere, &schema)?, schema);
        let dir = std::env::temp_dir().join(format!("solobase-testing-{}", Uuid::new_v4()));
        let storage = Storage::open(&dir)?;
        let users = Arc::new(MockUsers::default());
        let events = Arc::new(RecordedEvents::default());
        let files = Arc::new(MockFiles::default());
        let jobs = Arc::new(MockJobs::default());
        let tasks = Arc::new(MockTasks::default());
        let config = ConfigHandle::new(self.config.unwrap_or_default());
        let ctx = InitContext::assemble(
            name.clone(),
            db,
            storage,
            tracing::info_span!("extension", extension = %name),
            Users::new(users.clone()),
            config.clone(),
            Events::new(&name, events.clone(), events.bus().clone()),
            Files::new(files.clone()),
            Jobs::new(jobs.clone()),
            crate::tasks::Tasks::new(tasks.clone()),
            crate::metrics::Metrics::new(name.as_str(), Arc::new(crate::metrics::Discard)),
            self.http
                .unwrap_or_else(|| crate::outbound::Http::new(Arc::new(crate::outbound::NoHttp))),
        );
        let ext = Arc::new(E::initialize(ctx).await?);
        let defs =
            crate::host::ErasedExtension::routes(Arc::new(crate::host::Erased::new(ext.clone())));
        let routes = RouteTable::build(name.as_str(), defs).map_err(ExtensionError::Config)?;
        Ok(TestHarness {
            ext,
            routes,
            users,
            events,
            files,
            jobs,
            tasks,
            config,
            dir,
        })
    }
}

fn pool(pg: tokio_postgres::Config, schema: &str) -> Result<deadpool_postgres::Pool> {
    let mut pg = pg;
    pg.options(format!("-c search_path={schema}"));
    let manager = deadpool_postgres::Manager::new(pg, tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()
        .map_err(ExtensionError::internal)
}

/// An initialized extension with mock services, plus a way to call its routes.
#[derive(Debug)]
pub struct TestHarness<E: Extension> {
    ext: Arc<E>,
    routes: RouteTable,
    /// The user directory the extension sees; add users to it.
    pub users: Arc<MockUsers>,
    /// The events the extension published.
    pub events: Arc<RecordedEvents>,
    /// The host file storage the extension sees.
    pub files: Arc<MockFiles>,
    /// The jobs the extension queued.
    pub jobs: Arc<MockJobs>,
    /// The tasks the extension registered (in `start()`).
    pub tasks: Arc<MockTasks>,
    config: ConfigHandle<E::Config>,
    dir: PathBuf,
}

impl<E: Extension> TestHarness<E> {
    /// A builder for extension `name` (as in its manifest).
    pub fn builder(name: &str) -> TestHarnessBuilder<E> {
        TestHarnessBuilder {
            name: name.to_owned(),
            config: None,
            http: None,
        }
    }

    /// The extension, to call its hooks and lifecycle methods directly.
    pub fn ext(&self) -> &Arc<E> {
        &self.ext
    }

    /// Replaces the configuration, as a hot reload would.
    pub fn set_config(&self, config: E::Config) {
        self.config.replace(config);
    }

    /// Calls a route as the host would: `req.head.path` is relative to `/ext/<name>`; access
    /// rules are checked against `req.head.identity`; errors become the host's error shape.
    pub async fn call(&self, mut req: Request) -> Response {
        let (route, params) = match self.routes.lookup(&req.head.method, &req.head.path) {
            Lookup::Found { route, params } => (route, params),
            Lookup::MethodNotAllowed(_) => {
                return Response::error_with(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "method not allowed on this route",
                );
            }
            Lookup::NotFound => {
                return Response::error_with(StatusCode::NOT_FOUND, "not_found", "no such route");
            }
        };
        if let Err(denied) = check_access(&route.access, req.head.identity.as_ref()) {
            return Response::error(&denied);
        }
        req.params = params;
        match (route.handler)(req).await {
            Ok(res) => res,
            Err(e) => Response::error(&e),
        }
    }
}

impl<E: Extension> Drop for TestHarness<E> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The host's access rule, for tests. Permissions beyond roles are not modelled here: a
/// `Permission` route admits administrators only.
fn check_access(access: &Access, identity: Option<&Identity>) -> Result<()> {
    match (access, identity) {
        (Access::Public, _) => Ok(()),
        (_, None) => Err(ExtensionError::Unauthenticated("log in first".into())),
        (Access::Authenticated, Some(_)) => Ok(()),
        (_, Some(who)) if who.is_admin() => Ok(()),
        (Access::Admin, Some(_)) => Err(ExtensionError::Forbidden("administrators only".into())),
        (Access::Permission(p), Some(_)) => Err(ExtensionError::Forbidden(format!(
            "this needs the permission {p}, which your role does not hold"
        ))),
    }
}
