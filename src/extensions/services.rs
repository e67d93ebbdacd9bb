//! The host's side of the services an extension receives: user lookups over the host's
//! tables, durable event publishing, and the extension's own database pool and storage.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use solobase_sdk::services::BoxFuture;
use solobase_sdk::{
    Database, Event, EventBus, EventSink, ExtensionError, ExtensionName, UserDirectory, UserInfo,
};
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::grants::Grants;

/// Read-only user lookups on `solobase.users`, for extensions granted `users.read`.
#[derive(Debug, Clone)]
pub struct HostUsers {
    pub pool: Pool,
    pub grants: Arc<Grants>,
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
pub struct HostEvents {
    pub pool: Pool,
    pub bus: EventBus,
    pub grants: Arc<Grants>,
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
}

/// The extension's pool: connections as its own role (`role_config`, from
/// [`super::roles::provision`]), whose `search_path` is its schema.
pub fn extension_database(
    role_config: tokio_postgres::Config,
    name: &ExtensionName,
    pool_size: usize,
) -> Result<Database, ExtensionError> {
    let manager = Manager::from_config(
        role_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let timeout = Some(Duration::from_secs(5));
    let pool = Pool::builder(manager)
        .max_size(pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
        .map_err(ExtensionError::internal)?;
    Ok(Database::new(pool, name.schema()))
}

/// The extension's storage directory, `<data_dir>/extensions/<name>`, with its quota in
/// bytes (0: none).
pub fn extension_storage(
    data_dir: &Path,
    name: &ExtensionName,
    quota: u64,
) -> Result<solobase_sdk::Storage, ExtensionError> {
    let dir = data_dir.join("extensions").join(name.as_str());
    if quota == 0 {
        solobase_sdk::Storage::open(&dir)
    } else {
        solobase_sdk::Storage::open_with_quota(&dir, quota)
    }
}

/// The user-directory service, shared by all extensions.
/// The user-directory service of an extension with `grants`.
pub fn users(pool: &Pool, grants: Arc<Grants>) -> solobase_sdk::Users {
    solobase_sdk::Users::new(Arc::new(HostUsers {
        pool: pool.clone(),
        grants,
    }))
}
