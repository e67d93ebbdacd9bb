//! File storage under `<data_dir>/storage/<bucket>/<path>`.
//!
//! The one promise here: no request can touch a file outside the storage root. The path
//! rules and the symlink-refusing lookups are the SDK's (`solobase_sdk::storage`), shared with
//! the extensions' own storage areas; this module adds buckets.

pub(crate) use solobase_sdk::storage::{ObjectPath, SafeDir, Scratch, StorageError};

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};
use crate::events::{self, Event, EventType};

/// An object's record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ObjectInfo {
    pub(crate) bucket: String,
    pub(crate) path: String,
    pub(crate) size: i64,
    pub(crate) content_type: String,
    pub(crate) owner_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) updated_at: OffsetDateTime,
}

/// Who stores or deletes an object: a user (who then owns a new object), or an extension
/// granted `storage.write` (whose objects have no owner, so only admins change them).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer<'a> {
    User(Uuid),
    Extension(&'a str),
}

impl Writer<'_> {
    fn owner(self) -> Option<Uuid> {
        match self {
            Self::User(id) => Some(id),
            Self::Extension(_) => None,
        }
    }

    /// Who did it, in the event's data.
    fn describe(self, data: &mut serde_json::Value) {
        match self {
            Self::User(id) => data["user_id"] = serde_json::json!(id),
            Self::Extension(name) => {
                data["user_id"] = serde_json::Value::Null;
                data["extension"] = serde_json::json!(name);
            }
        }
    }
}

/// Maps a storage failure to what a client is told.
pub(crate) fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound => ApiError::not_found("no such object"),
        StorageError::Symlink => {
            ApiError::forbidden("the path leads outside the storage area; it cannot be used")
        }
        StorageError::Path(e) => ApiError::invalid(e.to_string()),
        StorageError::Io(e) => ApiError::internal(e),
        StorageError::QuotaExceeded(m) => ApiError::new(ErrorCode::InsufficientStorage, m),
    }
}

/// Records the object whose `size` bytes are in `scratch` and moves it to `bucket`/`path`,
/// with its `storage.uploaded` event, in one transaction. Returns the record and the event,
/// to publish once this returns (it is committed).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_upload(
    client: &mut deadpool_postgres::Object,
    storage: &Storage,
    bucket: &Bucket,
    path: &ObjectPath,
    scratch: Scratch,
    size: u64,
    content_type: &str,
    by: Writer<'_>,
) -> Result<(ObjectInfo, Event), ApiError> {
    let dest = storage.locate(bucket, path, true).map_err(storage_error)?;
    let path_str = path.as_string();
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "INSERT INTO solobase.storage_objects (bucket, path, size, content_type, owner_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bucket, path) DO UPDATE SET size = EXCLUDED.size, \
               content_type = EXCLUDED.content_type, updated_at = now() \
             RETURNING owner_id, updated_at, (xmax <> 0) AS replaced",
            &[
                &bucket.as_str(),
                &path_str,
                &(size as i64),
                &content_type,
                &by.owner(),
            ],
        )
        .await?;
    let info = ObjectInfo {
        bucket: bucket.as_str().to_owned(),
        path: path_str,
        size: size as i64,
        content_type: content_type.to_owned(),
        owner_id: row.get(0),
        updated_at: row.get(1),
    };
    let mut data = serde_json::json!({
        "bucket": info.bucket, "path": info.path, "size": info.size,
        "content_type": info.content_type, "replaced": row.get::<_, bool>(2),
    });
    by.describe(&mut data);
    let event = Event::new(EventType::STORAGE_UPLOADED, data);
    events::record(&tx, &event).await?;
    scratch.persist(&dest).map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok((info, event))
}

/// Deletes the object's record and file, with its `storage.deleted` event, in one
/// transaction. Returns the event to publish, or `None` when there was no such object.
pub(crate) async fn delete_object(
    client: &mut deadpool_postgres::Object,
    storage: &Storage,
    bucket: &Bucket,
    path: &ObjectPath,
    by: Writer<'_>,
) -> Result<Option<Event>, ApiError> {
    let path_str = path.as_string();
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM solobase.storage_objects WHERE bucket = $1 AND path = $2",
            &[&bucket.as_str(), &path_str],
        )
        .await?;
    if deleted == 0 {
        return Ok(None);
    }
    let mut data = serde_json::json!({"bucket": bucket.as_str(), "path": path_str});
    by.describe(&mut data);
    let event = Event::new(EventType::STORAGE_DELETED, data);
    events::record(&tx, &event).await?;
    storage.remove(bucket, path).map_err(storage_error)?;
    tx.commit().await?;
    Ok(Some(event))
}

/// Why a bucket name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid bucket name {0:?}: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a \
     letter or digit"
)]
pub(crate) struct BucketError(String);

/// A bucket name: `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bucket(String);

impl Bucket {
    pub(crate) fn parse(raw: &str) -> Result<Self, BucketError> {
        let ok = (1..=63).contains(&raw.len())
            && raw
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(BucketError(raw.chars().take(80).collect()))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The host's storage area: one directory per bucket under a [`SafeDir`].
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    dir: SafeDir,
}

impl Storage {
    /// Creates the root if needed.
    pub(crate) fn open(root: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self {
            dir: SafeDir::open(root)?,
        })
    }

    /// Where an object lives; see [`SafeDir::locate`].
    pub(crate) fn locate(
        &self,
        bucket: &Bucket,
        path: &ObjectPath,
        create_dirs: bool,
    ) -> Result<std::path::PathBuf, StorageError> {
        self.dir.locate(bucket.as_str(), path, create_dirs)
    }

    /// Opens an object for reading; see [`SafeDir::open_read`].
    pub(crate) fn open_read(
        &self,
        bucket: &Bucket,
        path: &ObjectPath,
    ) -> Result<(std::fs::File, std::path::PathBuf), StorageError> {
        self.dir.open_read(bucket.as_str(), path)
    }

    /// A scratch file for an upload in progress.
    pub(crate) fn scratch(&self) -> std::io::Result<Scratch> {
        self.dir.scratch()
    }

    /// Removes an object's file; a missing file is not an error.
    pub(crate) fn remove(&self, bucket: &Bucket, path: &ObjectPath) -> Result<(), StorageError> {
        self.dir.remove(bucket.as_str(), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(Bucket::parse("avatars").is_ok());
        assert!(Bucket::parse("a-1_b").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "-a",
            "A",
            "a/b",
            "a.b",
            "%2e",
            &"a".repeat(64),
        ] {
            assert!(Bucket::parse(bad).is_err(), "{bad:?}");
        }
    }
}
