//! What an administrator does to an extension, from the API or the command line: enable it
//! (granting permissions it requests), disable it, revoke permissions. Each change is one
//! transaction that also holds its audit entries and a notification to every instance
//! ([`state::CHANNEL`]); a refused change is audited as failed and changes nothing.

use std::collections::BTreeSet;

use deadpool_postgres::Pool;
use serde_json::json;

use super::state;
use crate::audit::{self, Actor, Entry, Outcome};

/// Which of the requested permissions an enable grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// None was named: enabling is refused while a requested permission is not granted.
    Unspecified,
    /// Every requested permission.
    All,
    /// Exactly these more (each must be requested); the others stay ungranted.
    Only(Vec<String>),
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "{extension} requests permissions that are not granted: {}. Grant them all \
         (--grant-all, or {{\"grant_all\": true}}), or name those to grant (--grant PERMISSION, \
         or {{\"grant\": [...]}}; an empty list enables it without them)",
        pending.join(", ")
    )]
    PermissionsPending {
        extension: String,
        requested: Vec<String>,
        pending: Vec<String>,
    },
    #[error(
        "{extension} does not request {permission:?}; it requests: {}",
        list(requested)
    )]
    NotRequested {
        extension: String,
        permission: String,
        requested: Vec<String>,
    },
    #[error(
        "{extension} does not hold {permission:?}; it holds: {}",
        list(granted)
    )]
    NotGranted {
        extension: String,
        permission: String,
        granted: Vec<String>,
    },
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for AdminError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Database(e.into())
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// An extension's permissions after a change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = ExtensionPermissions)]
pub struct Permissions {
    /// Granted and requested.
    pub(crate) granted: Vec<String>,
    /// Requested and not granted.
    pub(crate) pending: Vec<String>,
}

impl Permissions {
    fn of(requested: &[String], granted: &BTreeSet<String>) -> Self {
        let (granted, pending) = requested.iter().cloned().partition(|p| granted.contains(p));
        Self { granted, pending }
    }
}

/// Locks `name`'s row (creating it, disabled, for an extension never started yet) and
/// returns its grants.
async fn lock(
    tx: &deadpool_postgres::Transaction<'_>,
    name: &str,
) -> Result<BTreeSet<String>, AdminError> {
    tx.execute(
        "INSERT INTO solobase.extensions (name, enabled) VALUES ($1, false) \
         ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    tx.execute(
        "SELECT 1 FROM solobase.extensions WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT permission FROM solobase.extension_grants WHERE extension = $1",
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Passes `result` on, auditing a refusal first (best effort: the refusal is what the caller
/// reports).
async fn audit_refusal<T>(
    pool: &Pool,
    actor: &Actor,
    action: &'static str,
    name: &str,
    result: Result<T, AdminError>,
) -> Result<T, AdminError> {
    if let Err(e) = &result {
        let entry = Entry::new(actor.clone(), action, Outcome::Failed)
            .extension(name)
            .detail(json!({"error": e.to_string()}));
        audit::record_or_log(pool, entry).await;
    }
    result
}

/// Enables `name`, whose manifest requests `requested`, granting what `grant` says.
pub(crate) async fn enable(
    pool: &Pool,
    name: &str,
    requested: &[String],
    grant: Grant,
    actor: &Actor,
) -> Result<Permissions, AdminError> {
    let result = try_enable(pool, name, requested, grant, actor).await;
    audit_refusal(pool, actor, "extension.enable", name, result).await
}

async fn try_enable(
    pool: &Pool,
    name: &str,
    requested: &[String],
    grant: Grant,
    actor: &Actor,
) -> Result<Permissions, AdminError> {
    if let Grant::Only(named) = &grant
        && let Some(p) = named.iter().find(|p| !requested.contains(p))
    {
        return Err(AdminError::NotRequested {
            extension: name.to_owned(),
            permission: p.clone(),
            requested: requested.to_vec(),
        });
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut granted = lock(&tx, name).await?;
    let adding: Vec<String> = match &grant {
        Grant::Unspecified => Vec::new(),
        Grant::All => requested.to_vec(),
        Grant::Only(named) => named.clone(),
    }
    .into_iter()
    .filter(|p| !granted.contains(p))
    .collect::<BTreeSet<_>>()
    .into_iter()
    .collect();
    granted.extend(adding.iter().cloned());
    let after = Permissions::of(requested, &granted);
    if grant == Grant::Unspecified && !after.pending.is_empty() {
        return Err(AdminError::PermissionsPending {
            extension: name.to_owned(),
            requested: requested.to_vec(),
            pending: after.pending,
        });
    }
    tx.execute(
        "INSERT INTO solobase.extension_grants (extension, permission, granted_by) \
         SELECT $1, unnest($2::text[]), $3",
        &[&name, &adding, &actor.as_text()],
    )
    .await?;
    tx.execute(
        "UPDATE solobase.extensions SET enabled = true, grants_decided = true, \
         last_error = CASE WHEN last_error LIKE 'disabled automatically%' THEN NULL \
                           ELSE last_error END, \
         updated_at = now() WHERE name = $1",
        &[&name],
    )
    .await?;
    if !adding.is_empty() {
        let entry = Entry::new(actor.clone(), "extension.grant", Outcome::Ok)
            .extension(name)
            .detail(json!({"permissions": adding}));
        audit::record_in(&*tx, &entry).await?;
    }
    let entry = Entry::new(actor.clone(), "extension.enable", Outcome::Ok)
        .extension(name)
        .detail(json!({"granted": after.granted, "pending": after.pending}));
    audit::record_in(&*tx, &entry).await?;
    state::announce(&*tx, name).await?;
    tx.commit().await?;
    Ok(after)
}

/// Disables `name`.
pub(crate) async fn disable(pool: &Pool, name: &str, actor: &Actor) -> Result<(), AdminError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    lock(&tx, name).await?;
    tx.execute(
        "UPDATE solobase.extensions SET enabled = false, updated_at = now() WHERE name = $1",
        &[&name],
    )
    .await?;
    let entry = Entry::new(actor.clone(), "extension.disable", Outcome::Ok).extension(name);
    audit::record_in(&*tx, &entry).await?;
    state::announce(&*tx, name).await?;
    tx.commit().await?;
    Ok(())
}

/// Revokes `permissions` (each must be held) from `name`, whose manifest requests
/// `requested`. Service calls needing them fail from now on, on every instance.
pub(crate) async fn revoke(
    pool: &Pool,
    name: &str,
    requested: &[String],
    permissions: &[String],
    actor: &Actor,
) -> Result<Permissions, AdminError> {
    let result = try_revoke(pool, name, requested, permissions, actor).await;
    audit_refusal(pool, actor, "extension.revoke", name, result).await
}

async fn try_revoke(
    pool: &Pool,
    name: &str,
    requested: &[String],
    permissions: &[String],
    actor: &Actor,
) -> Result<Permissions, AdminError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut granted = lock(&tx, name).await?;
    if let Some(p) = permissions.iter().find(|p| !granted.contains(*p)) {
        return Err(AdminError::NotGranted {
            extension: name.to_owned(),
            permission: p.clone(),
            granted: granted.into_iter().collect(),
        });
    }
    tx.execute(
        "DELETE FROM solobase.extension_grants WHERE extension = $1 AND permission = ANY($2)",
        &[&name, &permissions],
    )
    .await?;
    granted.retain(|p| !permissions.contains(p));
    let entry = Entry::new(actor.clone(), "extension.revoke", Outcome::Ok)
        .extension(name)
        .detail(json!({"permissions": permissions}));
    audit::record_in(&*tx, &entry).await?;
    state::announce(&*tx, name).await?;
    tx.commit().await?;
    Ok(Permissions::of(requested, &granted))
}
