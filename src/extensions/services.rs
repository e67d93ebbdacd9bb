//! The host's side of the services an extension receives: user lookups over the host's
//! tables, durable event publishing, and the extension's own database pool and storage.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use solobase_sdk::services::BoxFuture;
use solobase_sdk::{
    Database, Event, EventBus, EventSink, ExtensionError, ExtensionName, Role, UserDirectory,
    UserInfo,
};
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Read-only user lookups on `solobase.users`.
#[derive(Debug, Clone)]
pub struct HostUsers {
    pub pool: Pool,
}

fn user_info(row: &tokio_postgres::Row) -> UserInfo {
    let role: String = row.get("role");
    UserInfo {
        id: row.get("id"),
        email: row.get("email"),
        role: Role::parse(&role).unwrap_or(Role::User),
        created_at: row.get("created_at"),
    }
}

impl HostUsers {
    async fn query(
        &self,
        sql: &str,
        arg: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> solobase_sdk::Result<Option<UserInfo>> {
        let client = self.pool.get().await?;
        let row = client.query_opt(sql, &[arg]).await?;
        Ok(row.as_ref().map(user_info))
    }
}

impl UserDirectory for HostUsers {
    fn by_id(&self, id: Uuid) -> BoxFuture<'_, solobase_sdk::Result<Option<UserInfo>>> {
        Box::pin(async move {
            self.query(
                "SELECT id, email, role, created_at FROM solobase.users WHERE id = $1",
                &id,
            )
            .await
        })
    }

    fn by_email<'a>(
        &'a self,
        email: &'a str,
    ) -> BoxFuture<'a, solobase_sdk::Result<Option<UserInfo>>> {
        Box::pin(async move {
            self.query(
                "SELECT id, email, role, created_at FROM solobase.users WHERE lower(email) = lower($1)",
                &email,
            )
            .await
        })
    }
}

/// Extension events: written to the outbox (committed), then put on the bus.
#[derive(Debug, Clone)]
pub struct HostEvents {
    pub pool: Pool,
    pub bus: EventBus,
}

impl EventSink for HostEvents {
    fn publish(&self, event: Event) -> BoxFuture<'_, solobase_sdk::Result<()>> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            crate::events::record(&tx, &event).await?;
            tx.commit().await?;
            self.bus.publish(event);
            Ok(())
        })
    }
}

/// The extension's pool: connections whose `search_path` is its schema.
pub fn extension_database(
    base: &tokio_postgres::Config,
    name: &ExtensionName,
    pool_size: usize,
) -> Result<Database, ExtensionError> {
    let schema = name.schema();
    let mut pg = base.clone();
    pg.options(format!("-c search_path={schema}"));
    pg.application_name(format!("solobase ext {name}"));
    let manager = Manager::from_config(
        pg,
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
    Ok(Database::new(pool, schema))
}

/// The extension's storage directory, `<data_dir>/extensions/<name>`.
pub fn extension_storage(
    data_dir: &Path,
    name: &ExtensionName,
) -> Result<solobase_sdk::Storage, ExtensionError> {
    solobase_sdk::Storage::open(&data_dir.join("extensions").join(name.as_str()))
}

/// The user-directory service, shared by all extensions.
pub fn users(pool: &Pool) -> solobase_sdk::Users {
    solobase_sdk::Users::new(Arc::new(HostUsers { pool: pool.clone() }))
}
