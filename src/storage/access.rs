//! Who may read a stored object: the bucket's rule ([`Access`], one row of
//! `solobase.storage_buckets` per configured bucket) applied to the reader ([`Reader`]).
//!
//! The owner and administrators read everything; beyond them a bucket is `private` (no one
//! else, the default for every bucket without a row), `authenticated` (any signed-in user) or
//! `public` (anyone, without a token). The same function decides for the host's routes and
//! for the extensions' storage service, which reads for the caller of the request it serves.
//! Bucket rules change only through [`set_access`], which writes the audit entry in the same
//! transaction.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::Bucket;
use crate::audit::{self, Actor, Entry, Outcome};
use crate::error::ApiError;

/// A bucket's read rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Access {
    /// Only the object's owner and administrators (the default).
    #[default]
    Private,
    /// Any signed-in user.
    Authenticated,
    /// Anyone, without a token.
    Public,
}

impl Access {
    pub(crate) const ALL: [Self; 3] = [Self::Private, Self::Authenticated, Self::Public];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Authenticated => "authenticated",
            Self::Public => "public",
        }
    }

    /// `private`, `authenticated` or `public`.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == raw)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "unknown bucket access {raw:?}: use private, authenticated or public"
                ))
            })
    }

    /// As stored in `solobase.storage_buckets.access` (a CHECK constraint keeps it one of
    /// these); a missing row reads as `private`.
    fn from_column(raw: Option<&str>) -> Self {
        raw.and_then(|r| Self::parse(r).ok()).unwrap_or_default()
    }
}

/// Who reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// A client without a token (and an extension's work outside any request).
    Anonymous,
    /// A signed-in user.
    User { id: Uuid, admin: bool },
}

impl Reader {
    /// The account `id` as it is now (its current role), or anonymous when it no longer
    /// exists.
    pub(crate) async fn of_user(
        pool: &deadpool_postgres::Pool,
        id: Uuid,
    ) -> Result<Self, ApiError> {
        Ok(crate::auth::users::by_id(pool, id)
            .await?
            .map_or(Self::Anonymous, |user| Self::User {
                id: user.id,
                admin: user.is_admin(),
            }))
    }

    /// The rule: may this reader read an object owned by `owner` in a bucket with `access`?
    pub(crate) fn may_read(self, access: Access, owner: Option<Uuid>) -> bool {
        match self {
            Self::User { admin: true, .. } => true,
            Self::User { id, .. } if owner == Some(id) => true,
            Self::User { .. } => access != Access::Private,
            Self::Anonymous => access == Access::Public,
        }
    }
}

/// A bucket: its read rule and what it holds.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = BucketSettings)]
pub(crate) struct BucketSettings {
    /// The bucket's name.
    pub(crate) name: String,
    /// Who may read its objects beyond their owner and administrators.
    pub(crate) access: Access,
    /// How many objects it holds.
    pub(crate) objects: i64,
    /// Their total size in bytes.
    pub(crate) bytes: i64,
}

const SETTINGS: &str = "SELECT coalesce(b.name, o.bucket) AS name, b.access, \
       coalesce(o.objects, 0) AS objects, coalesce(o.bytes, 0)::bigint AS bytes \
     FROM solobase.storage_buckets b \
     FULL JOIN (SELECT bucket, count(*) AS objects, sum(size) AS bytes \
                FROM solobase.storage_objects GROUP BY bucket) o ON o.bucket = b.name";

fn settings(row: &tokio_postgres::Row) -> BucketSettings {
    BucketSettings {
        name: row.get(0),
        access: Access::from_column(row.get(1)),
        objects: row.get(2),
        bytes: row.get(3),
    }
}

/// Every bucket that holds objects or has a rule, by name.
pub(crate) async fn list(client: &impl GenericClient) -> Result<Vec<BucketSettings>, ApiError> {
    let rows = client.query(&format!("{SETTINGS} ORDER BY 1"), &[]).await?;
    Ok(rows.iter().map(settings).collect())
}

/// One bucket (private and empty when nothing is known about it).
pub(crate) async fn get(
    client: &impl GenericClient,
    bucket: &Bucket,
) -> Result<BucketSettings, ApiError> {
    let row = client
        .query_one(
            "SELECT $1::text, \
               (SELECT access FROM solobase.storage_buckets WHERE name = $1), \
               count(*), coalesce(sum(size), 0)::bigint \
             FROM solobase.storage_objects WHERE bucket = $1",
            &[&bucket.as_str()],
        )
        .await?;
    Ok(settings(&row))
}

/// Sets `bucket`'s read rule, with its audit entry (`storage.bucket_access`, by `actor`) in
/// the same transaction; returns the bucket as it now is. Takes effect at once on every
/// instance: readers look the rule up at every read.
pub(crate) async fn set_access(
    client: &mut deadpool_postgres::Object,
    bucket: &Bucket,
    access: Access,
    actor: Actor,
) -> Result<BucketSettings, ApiError> {
    let tx = client.transaction().await?;
    let previous: Option<String> = tx
        .query_opt(
            "SELECT access FROM solobase.storage_buckets WHERE name = $1 FOR UPDATE",
            &[&bucket.as_str()],
        )
        .await?
        .map(|row| row.get(0));
    tx.execute(
        "INSERT INTO solobase.storage_buckets (name, access) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET access = EXCLUDED.access, updated_at = now()",
        &[&bucket.as_str(), &access.as_str()],
    )
    .await?;
    let previous = Access::from_column(previous.as_deref());
    let entry = Entry::new(actor, "storage.bucket_access", Outcome::Ok).detail(serde_json::json!({
        "bucket": bucket.as_str(), "access": access.as_str(), "previous": previous.as_str(),
    }));
    audit::record_in(&*tx, &entry)
        .await
        .map_err(ApiError::internal)?;
    let now = get(&*tx, bucket).await?;
    tx.commit().await?;
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_rule() {
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let user = |id| Reader::User { id, admin: false };
        let admin = Reader::User {
            id: Uuid::new_v4(),
            admin: true,
        };
        for access in Access::ALL {
            assert!(user(alice).may_read(access, Some(alice)), "the owner");
            assert!(admin.may_read(access, Some(alice)), "an administrator");
            assert!(admin.may_read(access, None), "an object without owner");
            assert_eq!(
                user(bob).may_read(access, Some(alice)),
                access != Access::Private
            );
            assert_eq!(user(bob).may_read(access, None), access != Access::Private);
            assert_eq!(
                Reader::Anonymous.may_read(access, Some(alice)),
                access == Access::Public
            );
        }
    }

    #[test]
    fn access_names() {
        for access in Access::ALL {
            assert_eq!(Access::parse(access.as_str()).unwrap(), access);
            assert_eq!(
                serde_json::to_value(access).unwrap(),
                serde_json::json!(access.as_str())
            );
        }
        assert!(Access::parse("Public").is_err());
        assert_eq!(Access::from_column(None), Access::Private);
    }
}
