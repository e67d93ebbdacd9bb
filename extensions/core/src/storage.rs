//! Safe file access under one root directory: [`ObjectPath`] (a relative path that cannot
//! escape), [`SafeDir`] (lookups that never follow a symlink, writes that replace files
//! atomically) and [`Storage`], the storage service an extension receives, confined to its own
//! directory.
//!
//! Object paths are parsed into a type that cannot hold `..`, `.`, empty or absolute segments,
//! backslashes, NULs or control characters (after percent-decoding when the path comes from a
//! URL, so `%2e%2e` and `%2f` are caught too); every directory on the way is checked not to be
//! a symlink; files are opened with `O_NOFOLLOW`. Writes go to a scratch file renamed into
//! place, so a reader never sees half a file and a failed write leaves the old content.
//!
//! A path is a file or a folder, never both: a write whose path runs through a file
//! (`a/b` stored, then `a/b/c`), or lands on a folder holding files (`a/b/c` stored, then
//! `a/b`), is a [`StorageError::Conflict`] that says which and what to do. Deleting a file
//! removes the folders it leaves empty, so the name is free again.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::ExtensionError;

/// Longest object path, in bytes, after decoding.
pub const MAX_PATH_BYTES: usize = 1024;
/// Deepest object path, in segments.
pub const MAX_SEGMENTS: usize = 32;
const SCRATCH_DIR: &str = ".tmp";

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid object path: {0}")]
pub struct PathError(pub String);

/// A relative object path made only of safe, decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath(Vec<String>);

impl ObjectPath {
    /// Parses a still percent-encoded path, as taken from a request URI.
    pub fn parse_encoded(raw: &str) -> Result<Self, PathError> {
        let segments = raw
            .split('/')
            .map(|s| {
                percent_decode(s).ok_or_else(|| {
                    PathError("malformed percent-encoding or non-UTF-8 bytes".into())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_segments(segments)
    }

    /// Parses a plain (not percent-encoded) `/`-separated path such as `avatars/me.png`.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        Self::from_segments(raw.split('/').map(str::to_owned).collect())
    }

    fn from_segments(raw: Vec<String>) -> Result<Self, PathError> {
        let err = |m: &str| Err(PathError(m.to_owned()));
        if raw.len() == 1 && raw[0].is_empty() {
            return err("the path is empty");
        }
        let mut segments = Vec::new();
        let mut total = 0;
        for segment in raw {
            match segment.as_str() {
                "" => return err("empty segment (leading, trailing or double '/')"),
                "." | ".." => return err("'.' and '..' segments are not allowed"),
                _ => {}
            }
            if segment.contains(['/', '\\']) {
                return err("encoded '/' or '\\' inside a segment");
            }
            if segment.chars().any(char::is_control) {
                return err("control characters are not allowed");
            }
            if segment.len() > 255 {
                return err("a segment is longer than 255 bytes");
            }
            if segments.is_empty() && segment == SCRATCH_DIR {
                return err("the name .tmp is reserved");
            }
            total += segment.len() + 1;
            segments.push(segment);
        }
        if total - 1 > MAX_PATH_BYTES {
            return err("the path is longer than 1024 bytes");
        }
        if segments.len() > MAX_SEGMENTS {
            return err("the path has more than 32 segments");
        }
        Ok(Self(segments))
    }

    /// The decoded path, `/`-joined, as stored in the metadata table.
    pub fn as_string(&self) -> String {
        self.0.join("/")
    }
}

/// Strict percent-decoding: `%` must be followed by two hex digits; the result must be UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why storage refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A directory or file on the way is a symbolic link.
    #[error("the path leads through a symbolic link, which storage never follows")]
    Symlink,
    /// Nothing is stored at the path.
    #[error("no such object")]
    NotFound,
    /// The path is not acceptable.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The file system failed.
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// The storage area's quota would be exceeded.
    #[error("storage quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The path is a file where a folder is needed, or a folder where the file goes.
    #[error("{0}")]
    Conflict(String),
}

impl StorageError {
    /// `prefix` is a file, so nothing can be stored under it.
    fn file_on_the_way(prefix: &str, path: &ObjectPath) -> Self {
        Self::Conflict(format!(
            "{prefix:?} is a file, so it cannot also be a folder holding {:?}: a path cannot be \
             both a file and a folder. Store this under another path, or delete {prefix:?} first",
            path.as_string()
        ))
    }

    /// `path` is a folder with something in it, so no file can be stored there.
    fn folder_in_the_way(path: &ObjectPath) -> Self {
        let path = path.as_string();
        Self::Conflict(format!(
            "{path:?} is a folder holding other files (under \"{path}/\"), so it cannot also be \
             a file: a path cannot be both a file and a folder. Store this under another path, \
             or delete what is under \"{path}/\" first"
        ))
    }
}

impl From<StorageError> for ExtensionError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound => ExtensionError::NotFound("no such object".into()),
            StorageError::Path(p) => ExtensionError::InvalidRequest(p.to_string()),
            StorageError::Symlink => ExtensionError::Forbidden(e.to_string()),
            StorageError::Io(e) => ExtensionError::internal(e),
            StorageError::QuotaExceeded(m) => ExtensionError::InsufficientStorage(m),
            StorageError::Conflict(m) => ExtensionError::Conflict(m),
        }
    }
}

/// A directory whose files are only ever reached through [`ObjectPath`]s, never through a
/// symlink.
#[derive(Debug, Clone)]
pub struct SafeDir {
    root: PathBuf,
}

impl SafeDir {
    /// Creates the root (and its scratch directory) if needed.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(SCRATCH_DIR))?;
        Ok(Self {
            root: fs::canonicalize(root)?,
        })
    }

    /// The (canonical) root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The location of `path` under `sub` (a directory name under the root, or `""`),
    /// checking that nothing on the way is a symlink. With `create_dirs` (for writes),
    /// missing directories are created and a file on the way is a
    /// [`StorageError::Conflict`]; without, it is [`StorageError::NotFound`].
    pub fn locate(
        &self,
        sub: &str,
        path: &ObjectPath,
        create_dirs: bool,
    ) -> Result<PathBuf, StorageError> {
        let mut current = self.root.clone();
        let (last, dirs) = path.0.split_last().ok_or(StorageError::NotFound)?;
        let subs = (!sub.is_empty()).then_some((0, sub));
        let on_the_way = dirs.iter().enumerate().map(|(i, d)| (i + 1, d.as_str()));
        for (depth, dir) in subs.into_iter().chain(on_the_way) {
            current.push(dir);
            let mut found = fs::symlink_metadata(&current);
            if create_dirs && matches!(&found, Err(e) if e.kind() == io::ErrorKind::NotFound) {
                match fs::create_dir(&current) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                    // Made here or by a concurrent write: what is there now decides.
                    _ => found = fs::symlink_metadata(&current),
                }
            }
            match found {
                Ok(meta) if meta.file_type().is_symlink() => return Err(StorageError::Symlink),
                Ok(meta) if meta.is_dir() => {}
                Ok(_) if create_dirs && depth > 0 => {
                    let prefix = path.0[..depth].join("/");
                    return Err(StorageError::file_on_the_way(&prefix, path));
                }
                Ok(_) => return Err(StorageError::NotFound),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StorageError::NotFound);
                }
                Err(e) => return Err(e.into()),
            }
        }
        current.push(last);
        if fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(StorageError::Symlink);
        }
        Ok(current)
    }

    /// Opens a file for reading, refusing a symlink at the last step too.
    pub fn open_read(
        &self,
        sub: &str,
        path: &ObjectPath,
    ) -> Result<(fs::File, PathBuf), StorageError> {
        let location = self.locate(sub, path, false)?;
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW)
            .open(&location)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StorageError::NotFound,
                _ if e.raw_os_error() == Some(ELOOP) => StorageError::Symlink,
                _ => StorageError::Io(e),
            })?;
        if !file.metadata()?.is_file() {
            return Err(StorageError::NotFound);
        }
        Ok((file, location))
    }

    /// A new scratch file for a write in progress; removed on drop unless persisted.
    pub fn scratch(&self) -> io::Result<Scratch> {
        let path = self
            .root
            .join(SCRATCH_DIR)
            .join(uuid::Uuid::new_v4().to_string());
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Scratch {
            path,
            file: Some(file),
        })
    }

    /// Moves the finished `scratch` file to `path` under `sub`, replacing the file there
    /// atomically and creating the folders on the way; returns where it went. An empty folder
    /// at `path` (left by files deleted concurrently) is replaced; one with files in it, or a
    /// file on the way, is a [`StorageError::Conflict`] and nothing is written. A folder
    /// removed by a concurrent delete between the lookup and the rename is made again.
    pub fn place(
        &self,
        sub: &str,
        path: &ObjectPath,
        scratch: Scratch,
    ) -> Result<PathBuf, StorageError> {
        let mut attempts = 0;
        loop {
            let dest = self.locate(sub, path, true)?;
            if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                match fs::remove_dir(&dest) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(if is_not_empty(&e) {
                            StorageError::folder_in_the_way(path)
                        } else {
                            e.into()
                        });
                    }
                    _ => {}
                }
            }
            match fs::rename(&scratch.path, &dest) {
                Ok(()) => {
                    scratch.disarm();
                    return Ok(dest);
                }
                // A folder on the way was removed, or replaced by a file, since the lookup:
                // look again (which names the file, if that is what is there now).
                Err(e)
                    if (e.kind() == io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(ENOTDIR))
                        && attempts < 3 =>
                {
                    attempts += 1;
                }
                // A folder appeared at `path` since the lookup.
                Err(e) if e.raw_os_error() == Some(EISDIR) || is_not_empty(&e) => {
                    return Err(StorageError::folder_in_the_way(path));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Removes a file, then the folders it leaves empty (up to `sub`), so that their names
    /// can hold files again. A missing file is not an error.
    pub fn remove(&self, sub: &str, path: &ObjectPath) -> Result<(), StorageError> {
        let location = match self.locate(sub, path, false) {
            Ok(location) => location,
            Err(StorageError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&location) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let top = if sub.is_empty() {
            self.root.clone()
        } else {
            self.root.join(sub)
        };
        // Stops at the first folder that is not empty (or was just filled by another write,
        // which then makes it again: see `place`).
        let mut dir = location.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(&top) && *d != top) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Total size in bytes of the regular files under the root (symlinks are not followed).
    pub fn usage(&self) -> io::Result<u64> {
        fn walk(dir: &Path) -> io::Result<u64> {
            let mut total = 0;
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    total += walk(&entry.path())?;
                } else if kind.is_file() {
                    total += entry.metadata()?.len();
                }
            }
            Ok(total)
        }
        walk(&self.root)
    }
}

/// `O_NOFOLLOW` on Linux.
const O_NOFOLLOW: i32 = 0o400000;
/// `ELOOP`: what `open` answers with `O_NOFOLLOW` for a symlink.
const ELOOP: i32 = 40;
/// `ENOTDIR`: a file where a directory is needed.
const ENOTDIR: i32 = 20;
/// `EISDIR`: a directory where a file is needed.
const EISDIR: i32 = 21;
/// `ENOTEMPTY` (and `EEXIST`, which POSIX allows instead): a directory with entries.
const ENOTEMPTY: i32 = 39;
const EEXIST: i32 = 17;

fn is_not_empty(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ENOTEMPTY | EEXIST))
}

/// A write in progress.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    file: Option<fs::File>,
}

impl Scratch {
    /// The open file; taken once by the writer.
    pub fn take_file(&mut self) -> Option<fs::File> {
        self.file.take()
    }

    /// Atomically moves the finished file to `dest`, replacing what was there (a rename
    /// replaces a symlink at `dest` rather than following it). [`SafeDir::place`] is the
    /// checked way to do it under a storage root.
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.disarm();
        Ok(())
    }

    /// Closes the file and keeps it (it was moved into place).
    fn disarm(mut self) {
        drop(self.file.take());
        std::mem::forget(self);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The storage service of one extension: a directory of its own, reached only through
/// checked paths, optionally with a quota of bytes. Cloning gives another handle on the same
/// directory (and quota).
#[derive(Debug, Clone)]
pub struct Storage {
    dir: SafeDir,
    quota: Option<Arc<Quota>>,
}

/// A storage area's byte quota: the bytes in use (counted at open, then kept up to date by
/// writes and deletes, which take turns).
#[derive(Debug)]
struct Quota {
    limit: u64,
    used: Mutex<u64>,
}

impl Storage {
    /// Storage rooted at `dir` (created if needed), without a quota.
    pub fn open(dir: &Path) -> Result<Self, ExtensionError> {
        Ok(Self {
            dir: SafeDir::open(dir).map_err(ExtensionError::internal)?,
            quota: None,
        })
    }

    /// Storage rooted at `dir` that holds at most `limit` bytes: a write beyond fails with
    /// `InsufficientStorage` (507) and changes nothing.
    pub fn open_with_quota(dir: &Path, limit: u64) -> Result<Self, ExtensionError> {
        let dir = SafeDir::open(dir).map_err(ExtensionError::internal)?;
        let used = dir.usage().map_err(ExtensionError::internal)?;
        Ok(Self {
            dir,
            quota: Some(Arc::new(Quota {
                limit,
                used: Mutex::new(used),
            })),
        })
    }

    /// The quota and the bytes counted against it, when there is one.
    pub fn quota(&self) -> Option<(u64, u64)> {
        self.quota
            .as_ref()
            .map(|q| (q.limit, *q.used.lock().unwrap_or_else(|p| p.into_inner())))
    }

    /// Writes `bytes` at `path` (plain, `/`-separated), replacing any previous content
    /// atomically.
    pub async fn write(&self, path: &str, bytes: impl Into<Bytes>) -> Result<(), ExtensionError> {
        let path = ObjectPath::parse(path).map_err(StorageError::from)?;
        let bytes = bytes.into();
        let dir = self.dir.clone();
        let quota = self.quota.clone();
        blocking(move || {
            use std::io::Write;
            let dest = dir.locate("", &path, true)?;
            // Writes and deletes of a storage area with a quota take turns, so the count stays
            // exact.
            let mut used = quota
                .as_ref()
                .map(|q| q.used.lock().unwrap_or_else(|p| p.into_inner()));
            let old =
                fs::symlink_metadata(&dest).map_or(0, |m| if m.is_file() { m.len() } else { 0 });
            let new = bytes.len() as u64;
            if let (Some(q), Some(used)) = (&quota, &used)
                && **used - old + new > q.limit
            {
                return Err(StorageError::QuotaExceeded(format!(
                    "this storage area may hold {} bytes; {} are used and this write needs {} more",
                    q.limit,
                    **used,
                    new.saturating_sub(old)
                )));
            }
            let mut scratch = dir.scratch()?;
            let mut file = scratch.take_file().ok_or(StorageError::NotFound)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            dir.place("", &path, scratch)?;
            if let Some(used) = used.as_mut() {
                **used = **used - old + new;
            }
            Ok(())
        })
        .await
    }

    /// Reads the whole file at `path`.
    pub async fn read(&self, path: &str) -> Result<Bytes, ExtensionError> {
        let path = ObjectPath::parse(path).map_err(StorageError::from)?;
        let dir = self.dir.clone();
        blocking(move || {
            use std::io::Read;
            let (mut file, _) = dir.open_read("", &path)?;
            let mut out = Vec::new();
            file.read_to_end(&mut out)?;
            Ok(Bytes::from(out))
        })
        .await
    }

    /// Deletes the file at `path`; a missing file is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), ExtensionError> {
        let path = ObjectPath::parse(path).map_err(StorageError::from)?;
        let dir = self.dir.clone();
        let quota = self.quota.clone();
        blocking(move || {
            let Some(q) = quota else {
                return dir.remove("", &path);
            };
            let mut used = q.used.lock().unwrap_or_else(|p| p.into_inner());
            let size = match dir.locate("", &path, false) {
                Ok(location) => fs::symlink_metadata(location).map_or(0, |m| m.len()),
                Err(_) => 0,
            };
            dir.remove("", &path)?;
            *used = used.saturating_sub(size);
            Ok(())
        })
        .await
    }

    /// Bytes used by the files in this storage area.
    pub async fn usage(&self) -> Result<u64, ExtensionError> {
        let dir = self.dir.clone();
        blocking(move || Ok(dir.usage()?)).await
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        self.dir.root()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, ExtensionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ExtensionError::internal)?
        .map_err(ExtensionError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths() {
        let ok = ObjectPath::parse_encoded("dir/my%20file.txt").unwrap();
        assert_eq!(ok.as_string(), "dir/my file.txt");
        for bad in [
            "", "/abs", "a//b", "a/", "..", "a/../b", "./a", "%2e%2e/x", "a/%2E%2e", "a%2fb",
            "a%2Fb", "a%5cb", "a\\b", "a%00b", "%zz", "%4", "%ff", ".tmp/x",
        ] {
            assert!(ObjectPath::parse_encoded(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectPath::parse_encoded("a/".repeat(40).trim_end_matches('/')).is_err());
        assert!(ObjectPath::parse_encoded(&"x".repeat(300)).is_err());
    }

    #[test]
    fn symlinks_are_never_followed() {
        let base = std::env::temp_dir().join(format!("solobase-storage-{}", uuid::Uuid::new_v4()));
        let outside = base.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        let storage = SafeDir::open(&base.join("root")).unwrap();
        let bucket = "b";
        fs::create_dir_all(storage.root().join("b")).unwrap();
        std::os::unix::fs::symlink(&outside, storage.root().join("b/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), storage.root().join("b/file")).unwrap();
        let through_dir = ObjectPath::parse_encoded("link/secret").unwrap();
        assert!(matches!(
            storage.open_read(bucket, &through_dir),
            Err(StorageError::Symlink)
        ));
        assert!(matches!(
            storage.locate(bucket, &through_dir, true),
            Err(StorageError::Symlink)
        ));
        let direct = ObjectPath::parse_encoded("file").unwrap();
        assert!(matches!(
            storage.open_read(bucket, &direct),
            Err(StorageError::Symlink)
        ));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn plain_paths_take_percent_literally() {
        assert_eq!(
            ObjectPath::parse("a/100%.txt").unwrap().as_string(),
            "a/100%.txt"
        );
        assert!(ObjectPath::parse("a/../b").is_err());
        assert!(ObjectPath::parse("/a").is_err());
    }

    #[tokio::test]
    async fn a_path_is_a_file_or_a_folder_never_both() {
        let base = std::env::temp_dir().join(format!("solobase-sdk-{}", uuid::Uuid::new_v4()));
        let storage = Storage::open(&base).unwrap();
        let conflict = |r: Result<(), ExtensionError>| match r {
            Err(ExtensionError::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        };
        storage.write("a/b", "x").await.unwrap();
        let m = conflict(storage.write("a/b/c/d", "y").await);
        assert!(m.contains("\"a/b\" is a file"), "{m}");
        storage.write("d/e/f", "x").await.unwrap();
        let m = conflict(storage.write("d/e", "y").await);
        assert!(m.contains("\"d/e\" is a folder"), "{m}");
        assert_eq!(&storage.read("a/b").await.unwrap()[..], b"x");
        // Deleting the last file of a folder frees the folder's name.
        storage.delete("d/e/f").await.unwrap();
        assert!(!base.join("d").exists(), "emptied folders are removed");
        storage.write("d/e", "y").await.unwrap();
        // An empty folder left where a file goes is replaced.
        fs::create_dir(base.join("g")).unwrap();
        storage.write("g", "z").await.unwrap();
        assert_eq!(&storage.read("g").await.unwrap()[..], b"z");
        let scratch = fs::read_dir(base.join(SCRATCH_DIR)).unwrap().count();
        assert_eq!(scratch, 0, "refused writes leave no scratch file");
        fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn extension_storage_round_trip() {
        let base = std::env::temp_dir().join(format!("solobase-sdk-{}", uuid::Uuid::new_v4()));
        let storage = Storage::open(&base).unwrap();
        storage.write("notes/a.txt", "hello").await.unwrap();
        assert_eq!(&storage.read("notes/a.txt").await.unwrap()[..], b"hello");
        assert_eq!(storage.usage().await.unwrap(), 5);
        assert!(matches!(
            storage.read("../x").await,
            Err(ExtensionError::InvalidRequest(_))
        ));
        storage.delete("notes/a.txt").await.unwrap();
        assert!(matches!(
            storage.read("notes/a.txt").await,
            Err(ExtensionError::NotFound(_))
        ));
        fs::remove_dir_all(&base).unwrap();
    }
}
