//! The host's side of the services an extension receives: user lookups over the host's
//! tables, durable event publishing, and the extension's own database pool and storage.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use solobase_sdk::host::EventBus;
use solobase_sdk::services::BoxFuture;
use solobase_sdk::{
    Database, Event, EventSink, ExtensionError, ExtensionName, FileStore, OutboxPosition,
    StoredFile, UserDirectory, UserInfo,
};
use uuid::Uuid;

use super::grants::Grants;

/// Read-only user lookups on `solobase.users`, for extensions granted `users.read`.
#[derive(Debug, Clone)]
pub(crate) struct HostUsers {
    pub(crate) pool: Pool,
    pub(crate) grants: Arc<Grants>,
}

fn unavailable(e: crate::error::ApiError) -> ExtensionError {
    ExtensionError::Unavailable(e.message)
}

impl UserDirectory for HostUsers {
    fn by_id(&self, id: Uuid) -> BoxFuture<'_, solobase_sdk::Result<Option<UserInfo>>> {
        Box::pin(async move {
            self.grants.require("users.read")?;
            let user = crate::auth::users::by_id(&self.pool, id)
                .await
                .map_err(unavailable)?;
            Ok(user.map(crate::auth::User::into_info))
        })
    }

    fn by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, solobase_sdk::Result<Option<UserInfo>>> {
        Box::pin(async move {
            self.grants.require("users.read")?;
            let user = crate::auth::users::by_email(&self.pool, email)
                .await
                .map_err(unavailable)?;
            Ok(user.map(crate::auth::User::into_info))
        })
    }
}

/// Extension events: written to the outbox (committed), then put on the bus; for extensions
/// granted `events.publish`.
#[derive(Debug, Clone)]
pub(crate) struct HostEvents {
    pub(crate) pool: Pool,
    pub(crate) bus: EventBus,
    pub(crate) grants: Arc<Grants>,
}

impl EventSink for HostEvents {
    fn publish(&self, event: Event) -> BoxFuture<'_, solobase_sdk::Result<()>> {
        Box::pin(async move {
            self.grants.require("events.publish")?;
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            crate::events::record(&tx, &event).await?;
            tx.commit().await?;
            self.bus.publish(event);
            Ok(())
        })
    }

    fn may_subscribe(&self) -> solobase_sdk::Result<()> {
        self.grants.require("events.subscribe")
    }

    fn read_after(
        &self,
        after: OutboxPosition,
        limit: u32,
    ) -> BoxFuture<'_, solobase_sdk::Result<Vec<(OutboxPosition, Event)>>> {
        Box::pin(async move {
            self.grants.require("events.subscribe")?;
            let client = self.pool.get().await?;
            let rows = crate::events::read_after(&client, after, limit)
                .await
                .map_err(ExtensionError::internal)?;
            Ok(rows)
        })
    }
}

/// The extension's pool: connections as its own role (`role_config`, from
/// [`super::db_role::provision`]), whose `search_path` is its schema.
pub fn extension_database(
    role_config: tokio_postgres::Config,
    tls: &crate::db::tls::DbTls,
    name: &ExtensionName,
    pool_size: usize,
) -> Result<Database, ExtensionError> {
    let pool = crate::db::pool(role_config, tls, pool_size, Duration::from_secs(5))
        .map_err(ExtensionError::internal)?;
    Ok(Database::new(pool, name.schema()))
}

/// The extension's storage directory, `<data_dir>/extensions/<name>`, with its quota in
/// bytes (0: none).
pub(crate) fn extension_storage(
    data_dir: &Path,
    name: &ExtensionName,
    quota: u64,
) -> Result<solobase_sdk::Storage, ExtensionError> {
    let dir = extension_storage_dir(data_dir, name);
    if quota == 0 {
        solobase_sdk::Storage::open(&dir)
    } else {
        solobase_sdk::Storage::open_with_quota(&dir, quota)
    }
}

/// Where the extension `name` keeps its files (`ctx.storage`).
pub(crate) fn extension_storage_dir(data_dir: &Path, name: &ExtensionName) -> std::path::PathBuf {
    data_dir.join("extensions").join(name.as_str())
}

/// The user-directory service of an extension with `grants`.
pub(crate) fn users(pool: &Pool, grants: Arc<Grants>) -> solobase_sdk::Users {
    solobase_sdk::Users::new(Arc::new(HostUsers {
        pool: pool.clone(),
        grants,
    }))
}

/// The host's file storage, for extensions granted `storage.read` / `storage.write`. A read
/// acts for the caller the extension names (the request it serves; none for an anonymous
/// one or for work outside a request), whose role is looked up again, and gets exactly the
/// answer `GET /api/v1/storage/…` gives that caller (`storage::open_for`). Writes
/// act for the extension: they follow the storage API's rules (bucket and path syntax,
/// `storage.max_upload_bytes`, one owner per object, a path is a file or a folder), store
/// objects without an owner, replace or delete only such objects, and are recorded and
/// announced like uploads; storage hooks are not called for them.
#[derive(Debug, Clone)]
pub(crate) struct HostFiles {
    pub(crate) extension: ExtensionName,
    pub(crate) pool: Pool,
    pub(crate) storage: crate::storage::FileStore,
    pub(crate) max_bytes: u64,
    pub(crate) bus: EventBus,
    pub(crate) grants: Arc<Grants>,
}

/// A failure of the host's storage, as an extension sees it.
fn storage_failure(e: crate::error::ApiError) -> ExtensionError {
    use crate::error::ErrorCode;
    match e.code {
        ErrorCode::InvalidRequest => ExtensionError::InvalidRequest(e.message),
        ErrorCode::Forbidden => ExtensionError::Forbidden(e.message),
        ErrorCode::NotFound => ExtensionError::NotFound(e.message),
        ErrorCode::PayloadTooLarge => ExtensionError::InvalidRequest(e.message),
        ErrorCode::PathConflict => ExtensionError::Conflict(e.message),
        _ => ExtensionError::Unavailable(e.message),
    }
}

fn target(
    bucket: &str,
    path: &str,
) -> Result<(crate::storage::Bucket, crate::storage::ObjectPath), ExtensionError> {
    let bucket = crate::storage::Bucket::parse(bucket)
        .map_err(|e| ExtensionError::InvalidRequest(e.to_string()))?;
    let path = crate::storage::ObjectPath::parse(path)
        .map_err(|e| ExtensionError::InvalidRequest(e.to_string()))?;
    Ok((bucket, path))
}

impl FileStore for HostFiles {
    fn read<'a>(
        &'a self,
        caller: Option<&'a solobase_sdk::Identity>,
        bucket: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, solobase_sdk::Result<Option<StoredFile>>> {
        Box::pin(async move {
            self.grants.require("storage.read")?;
            let (bucket, path) = target(bucket, path)?;
            let reader = match caller {
                Some(identity) => crate::storage::Reader::of_user(&self.pool, identity.user_id)
                    .await
                    .map_err(storage_failure)?,
                None => crate::storage::Reader::Anonymous,
            };
            let Some(opened) =
                crate::storage::open_for(&self.pool, &self.storage, &bucket, &path, reader)
                    .await
                    .map_err(storage_failure)?
            else {
                return Ok(None);
            };
            let data = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut file = opened.file;
                let mut data = Vec::new();
                file.read_to_end(&mut data)?;
                Ok::<_, std::io::Error>(data)
            })
            .await
            .map_err(ExtensionError::internal)?
            .map_err(ExtensionError::internal)?;
            Ok(Some(StoredFile {
                content_type: opened.content_type,
                data: data.into(),
            }))
        })
    }

    fn write<'a>(
        &'a self,
        bucket: &'a str,
        path: &'a str,
        file: StoredFile,
    ) -> BoxFuture<'a, solobase_sdk::Result<()>> {
        Box::pin(async move {
            self.grants.require("storage.write")?;
            let (bucket, path) = target(bucket, path)?;
            let ct = file.content_type.trim();
            if ct.len() > 255 || !ct.contains('/') {
                return Err(ExtensionError::InvalidRequest(format!(
                    "invalid content type {ct:?}: use a media type such as text/plain"
                )));
            }
            let size = file.data.len() as u64;
            if size > self.max_bytes {
                return Err(ExtensionError::InvalidRequest(format!(
                    "the file is larger than the {}-byte limit (storage.max_upload_bytes)",
                    self.max_bytes
                )));
            }
            let storage = self.storage.clone();
            let scratch = tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut scratch = storage.scratch()?;
                let mut out = scratch
                    .take_file()
                    .ok_or_else(|| std::io::Error::other("scratch file taken"))?;
                out.write_all(&file.data)?;
                out.sync_all()?;
                Ok::<_, std::io::Error>(scratch)
            })
            .await
            .map_err(ExtensionError::internal)?
            .map_err(ExtensionError::internal)?;
            let mut client = self.pool.get().await?;
            let (_, _, event) = crate::storage::commit_upload(
                &mut client,
                &self.storage,
                &bucket,
                &path,
                scratch,
                size,
                ct,
                crate::storage::Writer::Extension(self.extension.as_str()),
            )
            .await
            .map_err(storage_failure)?;
            self.bus.publish(event);
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        bucket: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, solobase_sdk::Result<bool>> {
        Box::pin(async move {
            self.grants.require("storage.write")?;
            let (bucket, path) = target(bucket, path)?;
            let mut client = self.pool.get().await?;
            let event = crate::storage::delete_object(
                &mut client,
                &self.storage,
                &bucket,
                &path,
                crate::storage::Writer::Extension(self.extension.as_str()),
            )
            .await
            .map_err(storage_failure)?;
            Ok(event.map(|e| self.bus.publish(e)).is_some())
        })
    }
}

/// The file-storage service of extension `name` with `grants`.
pub(crate) fn files(
    ctx: &super::host::HostContext,
    name: &ExtensionName,
    grants: Arc<Grants>,
) -> solobase_sdk::Files {
    solobase_sdk::Files::new(Arc::new(HostFiles {
        extension: name.clone(),
        pool: ctx.pool.clone(),
        storage: ctx.storage.clone(),
        max_bytes: ctx.max_upload_bytes,
        bus: ctx.bus.clone(),
        grants,
    }))
}

/// The extension's job queue: rows in `solobase.jobs`, run by [`super::jobs`].
#[derive(Debug, Clone)]
pub(crate) struct HostJobs {
    pub(crate) extension: ExtensionName,
    pub(crate) pool: Pool,
}

impl solobase_sdk::JobQueue for HostJobs {
    fn enqueue<'a>(
        &'a self,
        kind: &'a str,
        payload: serde_json::Value,
        delay: Duration,
    ) -> BoxFuture<'a, solobase_sdk::Result<i64>> {
        Box::pin(async move {
            if kind.is_empty() || kind.len() > 100 {
                return Err(ExtensionError::InvalidRequest(
                    "a job kind is 1 to 100 characters".into(),
                ));
            }
            let client = self.pool.get().await?;
            let delay_ms = delay.as_millis() as f64;
            let row = client
                .query_one(
                    "INSERT INTO solobase.jobs (extension, kind, payload, run_at) \
                     VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond') RETURNING id",
                    &[&self.extension.as_str(), &kind, &payload, &delay_ms],
                )
                .await?;
            Ok(row.get(0))
        })
    }
}

/// An extension's own metrics (`ctx.metrics`): registered on the host's recorder, and each
/// series' latest value kept for the counters the instances publish (`solobase extensions
/// metrics`).
pub(crate) struct HostMetrics {
    metrics: Arc<crate::metrics::Metrics>,
    latest: std::sync::Mutex<Vec<(String, Arc<std::sync::atomic::AtomicU64>)>>,
}

impl std::fmt::Debug for HostMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostMetrics").finish_non_exhaustive()
    }
}

impl HostMetrics {
    pub(crate) fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            latest: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Every series' latest value, by `name{label="value"}` (histograms are left out).
    pub(crate) fn snapshot(&self) -> std::collections::BTreeMap<String, f64> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    f64::from_bits(v.load(std::sync::atomic::Ordering::Relaxed)),
                )
            })
            .collect()
    }
}

impl solobase_sdk::metrics::MetricsSink for HostMetrics {
    fn register(&self, series: &solobase_sdk::metrics::Series) -> Arc<dyn Fn(f64) + Send + Sync> {
        let record = self.metrics.extension_series(series);
        if series.kind == solobase_sdk::metrics::Kind::Histogram {
            return record;
        }
        let labels: Vec<String> = series
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let key = if labels.is_empty() {
            series.name.clone()
        } else {
            format!("{}{{{}}}", series.name, labels.join(","))
        };
        let latest = Arc::new(std::sync::atomic::AtomicU64::new(0f64.to_bits()));
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, latest.clone()));
        Arc::new(move |value| {
            latest.store(value.to_bits(), std::sync::atomic::Ordering::Relaxed);
            record(value);
        })
    }
}
