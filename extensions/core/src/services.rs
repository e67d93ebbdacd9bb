//! The services an extension receives at initialization ([`InitContext`]): its database
//! schema, its storage directory, a logger span, read-only user lookups, its typed
//! configuration and the event bus. Each is confined to the extension: the database pool
//! works in `ext_<name>`, storage in the extension's own directory, published events are
//! named `extension.<name>.<what>`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::error::{ExtensionError, Result};
use crate::event::{Event, EventBus, EventType};
use crate::http::Identity;
use crate::http::Role;
use crate::manifest::ExtensionName;
use crate::storage::Storage;

/// A boxed, sendable future, as returned by host-implemented services.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything an extension receives when it is initialized. Built by the host (or by
/// [`crate::testing`]); fields may be added in later versions.
#[derive(Debug)]
#[non_exhaustive]
pub struct InitContext<C> {
    /// The extension's own name.
    pub name: ExtensionName,
    /// Its database: a pool whose connections work in schema `ext_<name>`.
    pub db: Database,
    /// Its own storage directory.
    pub storage: Storage,
    /// A tracing span carrying the extension's name. Everything the host calls is already
    /// inside it; enter it in tasks the extension spawns itself.
    pub log: tracing::Span,
    /// Read-only lookups of user accounts.
    pub users: Users,
    /// Its configuration, typed; [`ConfigHandle::get`] always returns the current version.
    pub config: ConfigHandle<C>,
    /// Publish its own events; subscribe to everyone's.
    pub events: Events,
    /// The host's file storage (the buckets users upload to).
    pub files: Files,
    /// Background jobs, run by [`crate::Extension::run_job`] on any instance.
    pub jobs: Jobs,
    /// Background tasks on this instance, run and owned by the host (register them in
    /// `start()`; they are cancelled when the extension stops).
    pub tasks: crate::tasks::Tasks,
    /// Its own metrics, exported on the host's `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Outbound HTTP through the host (permission `network.outbound`).
    pub http: crate::outbound::Http,
}

impl<C> InitContext<C> {
    /// Assembles a context. For the host and the testing kit; extensions receive one.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn assemble(
        name: ExtensionName,
        db: Database,
        storage: Storage,
        log: tracing::Span,
        users: Users,
        config: ConfigHandle<C>,
        events: Events,
        files: Files,
        jobs: Jobs,
        tasks: crate::tasks::Tasks,
        metrics: crate::metrics::Metrics,
        http: crate::outbound::Http,
    ) -> Self {
        Self {
            name,
            db,
            storage,
            log,
            users,
            config,
            events,
            files,
            jobs,
            tasks,
            metrics,
            http,
        }
    }
}

/// The extension's database: a connection pool whose sessions have `search_path` set to the
/// extension's schema, so unqualified table names are its own.
#[derive(Clone)]
pub struct Database {
    pool: deadpool_postgres::Pool,
    schema: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Wraps a pool (built by the host) for `schema`.
    #[doc(hidden)]
    pub fn new(pool: deadpool_postgres::Pool, schema: String) -> Self {
        Self { pool, schema }
    }

    /// A connection from the pool.
    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// The schema, `ext_<name>`.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The pool itself.
    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.pool
    }
}

/// A user account as extensions see it (never with credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user's id.
    pub id: Uuid,
    /// The user's email.
    pub email: String,
    /// The user's role.
    pub role: Role,
    /// When the account was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Read-only user lookups, implemented by the host (and by mocks in tests).
pub trait UserDirectory: Send + Sync {
    /// The user with this id.
    fn by_id(&self, id: Uuid) -> BoxFuture<'_, Result<Option<UserInfo>>>;
    /// The user with this email (case-insensitive).
    fn by_email<'a>(&'a self, email: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>>>;
}

/// The auth service: read-only access to user accounts.
#[derive(Clone)]
pub struct Users(Arc<dyn UserDirectory>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Users")
    }
}

impl Users {
    /// Wraps a directory implementation.
    pub fn new(directory: Arc<dyn UserDirectory>) -> Self {
        Self(directory)
    }

    /// The user with this id.
    pub async fn by_id(&self, id: Uuid) -> Result<Option<UserInfo>> {
        self.0.by_id(id).await
    }

    /// The user with this email (case-insensitive).
    pub async fn by_email(&self, email: &str) -> Result<Option<UserInfo>> {
        self.0.by_email(email).await
    }
}

/// The extension's configuration. Reading is lock-free; the host swaps in a new version
/// atomically, so a reader sees the old or the new configuration, never a mix.
#[derive(Debug)]
pub struct ConfigHandle<C>(Arc<ArcSwap<C>>);

impl<C> Clone for ConfigHandle<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> ConfigHandle<C> {
    /// A handle holding `value`.
    pub fn new(value: C) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The current configuration.
    pub fn get(&self) -> Arc<C> {
        self.0.load_full()
    }

    /// Replaces the configuration (the host does this on reload).
    #[doc(hidden)]
    pub fn replace(&self, value: C) {
        self.0.store(Arc::new(value));
    }
}

/// A background job, as [`crate::Extension::run_job`] receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Unique among the extension's jobs.
    pub id: i64,
    /// What to do, as given to [`Jobs::enqueue`].
    pub kind: String,
    /// Its data, as given to [`Jobs::enqueue`].
    pub payload: serde_json::Value,
    /// 1 for the first run, 2 for the first retry …
    pub attempt: u32,
}

/// Where jobs are queued: implemented by the host (and by mocks in tests).
pub trait JobQueue: Send + Sync {
    /// Queues a job to run after `delay`; returns its id.
    fn enqueue<'a>(
        &'a self,
        kind: &'a str,
        payload: serde_json::Value,
        delay: std::time::Duration,
    ) -> BoxFuture<'a, Result<i64>>;
}

/// The extension's background jobs. A queued job is run once by one instance — whichever
/// claims it first — through [`crate::Extension::run_job`], with a time limit; a job that
/// fails (or whose instance dies) is retried later with a growing delay, up to 5 runs.
#[derive(Clone)]
pub struct Jobs(Arc<dyn JobQueue>);

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jobs")
    }
}

impl Jobs {
    #[doc(hidden)]
    pub fn new(queue: Arc<dyn JobQueue>) -> Self {
        Self(queue)
    }

    /// Queues a job of `kind` to run as soon as an instance is free; returns its id.
    pub async fn enqueue(&self, kind: &str, payload: serde_json::Value) -> Result<i64> {
        self.0
            .enqueue(kind, payload, std::time::Duration::ZERO)
            .await
    }

    /// Queues a job of `kind` to run after `delay`; returns its id.
    pub async fn enqueue_in(
        &self,
        delay: std::time::Duration,
        kind: &str,
        payload: serde_json::Value,
    ) -> Result<i64> {
        self.0.enqueue(kind, payload, delay).await
    }
}

/// A file of the host's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Its media type, e.g. `text/plain`.
    pub content_type: String,
    /// Its content.
    pub data: bytes::Bytes,
}

/// The host's file storage, implemented by the host (and by mocks in tests). Buckets and
/// paths follow the storage API's rules; an invalid one fails with `InvalidRequest`.
pub trait FileStore: Send + Sync {
    /// A file's content as `caller` may read it (`None` acts for an anonymous client), or
    /// `None` when there is none at `bucket`/`path` that the caller may read.
    fn read<'a>(
        &'a self,
        caller: Option<&'a Identity>,
        bucket: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredFile>>>;
    /// Creates or replaces a file.
    fn write<'a>(
        &'a self,
        bucket: &'a str,
        path: &'a str,
        file: StoredFile,
    ) -> BoxFuture<'a, Result<()>>;
    /// Deletes a file; false when there was none.
    fn delete<'a>(&'a self, bucket: &'a str, path: &'a str) -> BoxFuture<'a, Result<bool>>;
}

/// The host's file storage — the buckets users upload to through `/api/v1/storage`:
/// reading needs the `storage.read` permission, writing and deleting `storage.write`.
///
/// A read acts for a caller and follows the bucket's read rule exactly as
/// `GET /api/v1/storage/…` does for that caller: the owner and administrators always,
/// signed-in users in an `authenticated` bucket, anyone in a `public` one. Pass the identity
/// of the request being served (`req.head.identity.as_ref()`); `None` reads as an anonymous
/// client, which is also how work outside a request (jobs, event handlers) reads. The host
/// looks the caller's role up again, so a stale role grants nothing.
///
/// Files an extension writes have no owner: users cannot change them and, like any
/// ownerless object, only administrators read them in a private bucket. An extension
/// replaces or deletes only ownerless files, never a user's (`Forbidden`). A path that is a
/// file where a folder is needed, or the reverse, is a `Conflict`. Uploads and deletions are
/// announced as `storage.uploaded` / `storage.deleted` events. For the extension's private
/// files, use [`InitContext::storage`] instead.
#[derive(Clone)]
pub struct Files(Arc<dyn FileStore>);

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Files")
    }
}

impl Files {
    #[doc(hidden)]
    pub fn new(store: Arc<dyn FileStore>) -> Self {
        Self(store)
    }

    /// A file's content as `caller` may read it (`None`: as an anonymous client), or `None`
    /// when there is no such file or the caller may not read it (the two look alike, as
    /// they do through the host's API).
    pub async fn read(
        &self,
        caller: Option<&Identity>,
        bucket: &str,
        path: &str,
    ) -> Result<Option<StoredFile>> {
        self.0.read(caller, bucket, path).await
    }

    /// Creates or replaces a file.
    pub async fn write(
        &self,
        bucket: &str,
        path: &str,
        content_type: &str,
        data: impl Into<bytes::Bytes>,
    ) -> Result<()> {
        let file = StoredFile {
            content_type: content_type.to_owned(),
            data: data.into(),
        };
        self.0.write(bucket, path, file).await
    }

    /// Deletes a file; false when there was none.
    pub async fn delete(&self, bucket: &str, path: &str) -> Result<bool> {
        self.0.delete(bucket, path).await
    }
}

/// Where extension events go: implemented by the host (durably) and by mocks in tests.
pub trait EventSink: Send + Sync {
    /// Records and publishes an event.
    fn publish(&self, event: Event) -> BoxFuture<'_, Result<()>>;

    /// Whether the extension may receive events now (the host checks `events.subscribe`).
    fn may_subscribe(&self) -> Result<()> {
        Ok(())
    }

    /// Up to `limit` committed events after `after`, in feed order (see
    /// [`Events::read_after`]). Sinks without a durable log answer `Unavailable`.
    fn read_after(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<(OutboxPosition, Event)>>> {
        let _ = (after, limit);
        Box::pin(async {
            Err(ExtensionError::Unavailable(
                "this event service keeps no durable log".into(),
            ))
        })
    }
}

/// A place in the durable event feed (the host's outbox). Positions grow in feed order; the
/// default is the start. Keep the last one you have processed (in your own schema, in the
/// transaction that records what you did with the events) and read after it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct OutboxPosition {
    /// The id of the transaction that recorded the event (its commit made it visible).
    pub tx: i64,
    /// The event's sequence number in the outbox.
    pub seq: i64,
}

/// Events as they are committed, from [`Events::subscribe`].
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    sink: Arc<dyn EventSink>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next event. Events missed by falling too far behind are skipped (and logged).
    /// Fails with [`ExtensionError::PermissionDenied`] once `events.subscribe` is revoked,
    /// and with [`ExtensionError::Unavailable`] when the server shuts the bus down.
    pub async fn recv(&mut self) -> Result<Arc<Event>> {
        loop {
            let received = self.rx.recv().await;
            self.sink.may_subscribe()?;
            match received {
                Ok(event) => return Ok(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "fell behind the event bus; events were skipped");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(ExtensionError::Unavailable(
                        "the event bus is closed".into(),
                    ));
                }
            }
        }
    }
}

/// The event service: publish events named `extension.<name>.<what>`, subscribe to all.
#[derive(Clone)]
pub struct Events {
    prefix: String,
    sink: Arc<dyn EventSink>,
    bus: EventBus,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// The event service of extension `name`.
    #[doc(hidden)]
    pub fn new(name: &ExtensionName, sink: Arc<dyn EventSink>, bus: EventBus) -> Self {
        Self {
            prefix: format!("extension.{name}."),
            sink,
            bus,
        }
    }

    /// Publishes `extension.<name>.<what>` with `data`, durably: it is committed before this
    /// returns. Returns the event.
    pub async fn publish(&self, what: &str, data: serde_json::Value) -> Result<Event> {
        let name = format!("{}{what}", self.prefix);
        let event_type = EventType::parse(&name).ok_or_else(|| {
            ExtensionError::InvalidRequest(format!(
                "invalid event name {what:?}: use dotted lowercase words"
            ))
        })?;
        let event = Event::new(event_type, data);
        self.sink.publish(event.clone()).await?;
        Ok(event)
    }

    /// The durable feed: up to `limit` (1 to 10,000) committed events after position
    /// `after`, oldest first, each with its position. Needs `events.subscribe`.
    ///
    /// Unlike [`Events::subscribe`], nothing is missed: an event is in the outbox from the
    /// commit of the change it describes, and the feed only hands out an event once no event
    /// can be committed before it any more (a transaction still running could otherwise
    /// commit an earlier one after you moved past it). A consumer that stores the position of
    /// the last event it handled, in the same transaction as its handling, resumes after a
    /// crash exactly where it committed: at-least-once, never a gap. Use the live
    /// subscription only as a prompt to read the feed sooner.
    pub async fn read_after(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> Result<Vec<(OutboxPosition, Event)>> {
        if !(1..=10_000).contains(&limit) {
            return Err(ExtensionError::InvalidRequest(
                "read the event feed 1 to 10,000 events at a time".into(),
            ));
        }
        self.sink.read_after(after, limit).await
    }

    /// Every event committed from now on, from the host and all extensions. Needs the
    /// `events.subscribe` permission, now and at each event received.
    pub fn subscribe(&self) -> Result<Subscription> {
        self.sink.may_subscribe()?;
        Ok(Subscription {
            rx: self.bus.subscribe(),
            sink: self.sink.clone(),
        })
    }
}

/// An extension's health, as reported by [`crate::Extension::health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// A human-readable reason, empty when healthy.
    pub message: String,
}

/// Health verdicts, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working with reduced function.
    Degraded,
    /// Not working.
    Critical,
    /// Not known (not checked yet, or the check did not answer).
    Unknown,
}

impl Health {
    /// Working.
    pub fn healthy() -> Self {
        Self {
            status: HealthStatus::Healthy,
            message: String::new(),
        }
    }

    /// Working with reduced function, because `message`.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Degraded,
            message: message.into(),
        }
    }

    /// Not working, because `message`.
    pub fn critical(message: impl Into<String>) -> Self {
        Self {
            status: HealthStatus::Critical,
            message: message.into(),
        }
    }
}
