//! File storage under `<data_dir>/storage/<bucket>/<path>`, and who may read and change it.
//!
//! Two promises. No request can touch a file outside the storage root: the path rules and
//! the symlink-refusing lookups are the SDK's (`solobase_sdk::storage`), shared with the
//! extensions' own storage areas; this module adds buckets. And an object is read only as
//! its bucket's rule allows and changed only by its owner or an administrator, decided in
//! the statements that read and write it (`access` holds the rule, `objects` the
//! statements), for the host's routes and the extensions' storage service alike.

pub(crate) mod access;
pub(crate) mod objects;

pub(crate) use access::{Access, BucketSettings, Reader};
pub(crate) use objects::{ObjectInfo, Writer, commit_upload, delete_object, open_for};
pub use solobase_sdk::storage::{ObjectPath, SafeDir, Scratch, StorageError};

use crate::error::{ApiError, ErrorCode};

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
        StorageError::Conflict(m) => ApiError::new(ErrorCode::PathConflict, m),
    }
}

/// Why a bucket name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid bucket name {0:?}: use 1-63 characters of a-z, 0-9, '-' and '_', starting with a \
     letter or digit"
)]
pub struct BucketError(String);

/// A bucket name: `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket(String);

impl Bucket {
    pub fn parse(raw: &str) -> Result<Self, BucketError> {
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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The host's storage area: one directory per bucket under a [`SafeDir`].
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: SafeDir,
}

impl FileStore {
    /// Creates the root if needed.
    pub fn open(root: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self {
            dir: SafeDir::open(root)?,
        })
    }

    /// The root directory (for the fuzz target's lexical check).
    pub fn root(&self) -> &std::path::Path {
        self.dir.root()
    }

    /// Where an object lives; see [`SafeDir::locate`].
    pub fn locate(
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

    /// Moves a finished upload into place; see [`SafeDir::place`] (a path that is both a file
    /// and a folder is a [`StorageError::Conflict`]).
    pub(crate) fn place(
        &self,
        bucket: &Bucket,
        path: &ObjectPath,
        scratch: Scratch,
    ) -> Result<std::path::PathBuf, StorageError> {
        self.dir.place(bucket.as_str(), path, scratch)
    }

    /// Removes an object's file and the folders it leaves empty; a missing file is not an
    /// error.
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
