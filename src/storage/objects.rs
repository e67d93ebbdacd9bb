//! The statements that read, store and delete objects, each deciding who may do it in the
//! statement that does it, so that nothing can change in between.
//!
//! - A store is one upsert whose update applies only when the writer owns the object (or is
//!   an administrator): an upload that began before someone else created the path gets no
//!   row back and is refused. The file is renamed into place after that decision, while the
//!   row lock is held, and before the commit; see [`commit_upload`] for what a crash leaves.
//! - A delete removes the row only under the same condition.
//! - A read checks the rule ([`super::access`]), opens the file, then checks that the row
//!   is still the version it checked, so a file replaced in between (by a delete and another
//!   user's upload) is never served under the first object's rule.

use std::path::PathBuf;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Access, Bucket, FileStore, ObjectPath, Reader, storage_error};
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

/// Who stores or deletes an object: a user (who then owns a new object; an administrator
/// may change anyone's), or an extension granted `storage.write` (whose objects have no
/// owner: it changes only those, and of users only administrators do).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Writer<'a> {
    User { id: Uuid, admin: bool },
    Extension(&'a str),
}

impl Writer<'_> {
    fn owner(self) -> Option<Uuid> {
        match self {
            Self::User { id, .. } => Some(id),
            Self::Extension(_) => None,
        }
    }

    /// Whether it may change any object, whoever owns it.
    fn admin(self) -> bool {
        matches!(self, Self::User { admin: true, .. })
    }

    /// Who did it, in the event's data.
    fn describe(self, data: &mut serde_json::Value) {
        match self {
            Self::User { id, .. } => data["user_id"] = serde_json::json!(id),
            Self::Extension(name) => {
                data["user_id"] = serde_json::Value::Null;
                data["extension"] = serde_json::json!(name);
            }
        }
    }

    /// The refusal when the path holds an object this writer may not change.
    fn refused(self) -> ApiError {
        match self {
            Self::User { .. } => ApiError::forbidden(
                "this path holds someone else's object, so it was not replaced (it may have \
                 been stored while your upload was arriving): only its uploader or an \
                 administrator may change it; use another path",
            ),
            Self::Extension(_) => ApiError::forbidden(
                "this path holds a user's object: an extension changes only the objects that \
                 have no owner; use another path",
            ),
        }
    }
}

/// Records the object whose `size` bytes are in `scratch` and moves it to `bucket`/`path`,
/// with its `storage.uploaded` event, in one transaction — refused (403) when the path holds
/// an object `by` may not replace, decided by the statement that writes. Returns the record,
/// whether it replaced an object, and the event to publish once this returns (committed).
///
/// Order: the upsert (which decides, and locks the row), the event, the rename into place
/// (refused with 409 when the path is both a file and a folder), the commit. A concurrent
/// writer of the same path waits on the row lock until this commits, so renames happen in
/// commit order and a refused writer never renames. A crash between the rename and the
/// commit leaves the new file under the old record (same owner, whose writer was allowed:
/// only the size and media type are stale until the next write) or, for a new path, a file
/// without a record, which no one can read and the next upload replaces.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_upload(
    client: &mut deadpool_postgres::Object,
    storage: &FileStore,
    bucket: &Bucket,
    path: &ObjectPath,
    scratch: super::Scratch,
    size: u64,
    content_type: &str,
    by: Writer<'_>,
) -> Result<(ObjectInfo, bool, Event), ApiError> {
    let path_str = path.as_string();
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "INSERT INTO solobase.storage_objects (bucket, path, size, content_type, owner_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bucket, path) DO UPDATE SET size = EXCLUDED.size, \
               content_type = EXCLUDED.content_type, updated_at = now() \
             WHERE $6::boolean \
               OR storage_objects.owner_id IS NOT DISTINCT FROM EXCLUDED.owner_id \
             RETURNING owner_id, updated_at, (xmax <> 0) AS replaced",
            &[
                &bucket.as_str(),
                &path_str,
                &(size as i64),
                &content_type,
                &by.owner(),
                &by.admin(),
            ],
        )
        .await?
        .ok_or_else(|| by.refused())?;
    let replaced: bool = row.get(2);
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
        "content_type": info.content_type, "replaced": replaced,
    });
    by.describe(&mut data);
    let event = Event::new(EventType::STORAGE_UPLOADED, data);
    events::record(&tx, &event).await?;
    storage
        .place(bucket, path, scratch)
        .map_err(storage_error)?;
    tx.commit().await?;
    Ok((info, replaced, event))
}

/// Deletes the object's record and file, with its `storage.deleted` event, in one
/// transaction, when `by` may (decided by the statement that deletes). Returns the event to
/// publish, or `None` when there was no such object — or, for a user who may not read it
/// either, one that user may not see. An object the writer may see but not change is 403.
pub(crate) async fn delete_object(
    client: &mut deadpool_postgres::Object,
    storage: &FileStore,
    bucket: &Bucket,
    path: &ObjectPath,
    by: Writer<'_>,
) -> Result<Option<Event>, ApiError> {
    let path_str = path.as_string();
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM solobase.storage_objects WHERE bucket = $1 AND path = $2 \
             AND ($3::boolean OR owner_id IS NOT DISTINCT FROM $4)",
            &[&bucket.as_str(), &path_str, &by.admin(), &by.owner()],
        )
        .await?;
    if deleted == 0 {
        let Some((_, owner, access, _)) = lookup(&*tx, bucket, &path_str).await? else {
            return Ok(None);
        };
        return match by {
            Writer::User { id, admin } if !Reader::User { id, admin }.may_read(access, owner) => {
                Ok(None)
            }
            _ => Err(by.refused()),
        };
    }
    let mut data = serde_json::json!({"bucket": bucket.as_str(), "path": path_str});
    by.describe(&mut data);
    let event = Event::new(EventType::STORAGE_DELETED, data);
    events::record(&tx, &event).await?;
    storage.remove(bucket, path).map_err(storage_error)?;
    tx.commit().await?;
    Ok(Some(event))
}

/// An object opened for a reader who may read it.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The media type it was stored with.
    pub(crate) content_type: String,
    pub(crate) file: std::fs::File,
    pub(crate) location: PathBuf,
}

/// Opens `bucket`/`path` for `reader`: `None` when there is no such object or the reader may
/// not read it — the two answer alike, so that a refusal does not tell that an object
/// exists.
pub(crate) async fn open_for(
    pool: &deadpool_postgres::Pool,
    storage: &FileStore,
    bucket: &Bucket,
    path: &ObjectPath,
    reader: Reader,
) -> Result<Option<Opened>, ApiError> {
    let path_str = path.as_string();
    // A version that changes under the reader is read again, a few times.
    for _ in 0..3 {
        let client = pool.get().await?;
        let Some((content_type, owner, access, version)) =
            lookup(&**client, bucket, &path_str).await?
        else {
            return Ok(None);
        };
        if !reader.may_read(access, owner) {
            return Ok(None);
        }
        let (file, location) = match storage.open_read(bucket, path) {
            Ok(found) => found,
            Err(super::StorageError::NotFound) => return Ok(None),
            Err(e) => return Err(storage_error(e)),
        };
        // The file opened is the one the checked row describes only if the row is still
        // that version: uploads rename before they commit, under the row's lock.
        let now: Option<String> = client
            .query_opt(
                "SELECT xmin::text FROM solobase.storage_objects WHERE bucket = $1 AND path = $2",
                &[&bucket.as_str(), &path_str],
            )
            .await?
            .map(|row| row.get(0));
        if now.as_deref() == Some(version.as_str()) {
            return Ok(Some(Opened {
                content_type,
                file,
                location,
            }));
        }
    }
    Err(ApiError::new(
        ErrorCode::Unavailable,
        "the object is being replaced right now; try again",
    ))
}

/// The object's media type, owner, bucket rule and row version, if it exists.
async fn lookup(
    client: &impl tokio_postgres::GenericClient,
    bucket: &Bucket,
    path: &str,
) -> Result<Option<(String, Option<Uuid>, Access, String)>, ApiError> {
    let row = client
        .query_opt(
            "SELECT o.content_type, o.owner_id, b.access, o.xmin::text \
             FROM solobase.storage_objects o \
             LEFT JOIN solobase.storage_buckets b ON b.name = o.bucket \
             WHERE o.bucket = $1 AND o.path = $2",
            &[&bucket.as_str(), &path],
        )
        .await?;
    Ok(row.map(|row| {
        let access: Option<String> = row.get(2);
        let access = access
            .as_deref()
            .and_then(|a| Access::parse(a).ok())
            .unwrap_or_default();
        (row.get(0), row.get(1), access, row.get(3))
    }))
}
