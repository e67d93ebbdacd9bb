//! File storage under `<data_dir>/storage/<bucket>/<path>`.
//!
//! The one promise here: no request can touch a file outside the storage root. Bucket names
//! and object paths are parsed into types that cannot hold `..`, `.`, empty or absolute
//! segments, backslashes, NULs or control characters (after percent-decoding, so `%2e%2e` and
//! `%2f` are caught too); every directory on the way is checked not to be a symlink; files are
//! opened with `O_NOFOLLOW`. Uploads are written to a scratch file and renamed into place, so a
//! reader never sees half a file and a failed upload leaves the old content untouched.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest object path, in bytes, after decoding.
pub const MAX_PATH_BYTES: usize = 1024;
/// Deepest object path, in segments.
pub const MAX_SEGMENTS: usize = 32;
const SCRATCH_DIR: &str = ".tmp";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error(
        "invalid bucket name {0:?}: use 1-63 characters of a-z, 0-9, '-' and '_', starting with \
         a letter or digit"
    )]
    Bucket(String),
    #[error("invalid object path: {0}")]
    Path(String),
}

/// A bucket name: `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket(String);

impl Bucket {
    pub fn parse(raw: &str) -> Result<Self, PathError> {
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
            Err(PathError::Bucket(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A relative object path made only of safe, decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath(Vec<String>);

impl ObjectPath {
    /// Parses the still percent-encoded path from the request URI.
    pub fn parse_encoded(raw: &str) -> Result<Self, PathError> {
        let err = |m: &str| Err(PathError::Path(m.to_owned()));
        if raw.is_empty() {
            return err("the path is empty");
        }
        let mut segments = Vec::new();
        let mut total = 0;
        for encoded in raw.split('/') {
            let Some(segment) = percent_decode(encoded) else {
                return err("malformed percent-encoding or non-UTF-8 bytes");
            };
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

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the path leads through a symbolic link, which storage never follows")]
    Symlink,
    #[error("no such object")]
    NotFound,
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
}

/// The storage area: a root directory with one sub-directory per bucket.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Creates the root (and its scratch directory) if needed.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join(SCRATCH_DIR))?;
        Ok(Self {
            root: fs::canonicalize(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The final location of an object, checking that nothing on the way is a symlink.
    /// With `create_dirs`, missing directories are created (for writes).
    pub fn locate(
        &self,
        bucket: &Bucket,
        path: &ObjectPath,
        create_dirs: bool,
    ) -> Result<PathBuf, StorageError> {
        let mut current = self.root.join(bucket.as_str());
        let (last, dirs) = path.0.split_last().ok_or(StorageError::NotFound)?;
        for dir in std::iter::once(None).chain(dirs.iter().map(Some)) {
            if let Some(dir) = dir {
                current.push(dir);
            }
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => return Err(StorageError::Symlink),
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(StorageError::NotFound),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create_dirs {
                        return Err(StorageError::NotFound);
                    }
                    fs::create_dir(&current).or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
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

    /// Opens an object for reading, refusing a symlink at the last step too.
    pub fn open_read(
        &self,
        bucket: &Bucket,
        path: &ObjectPath,
    ) -> Result<(fs::File, PathBuf), StorageError> {
        let location = self.locate(bucket, path, false)?;
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&location)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StorageError::NotFound,
                _ if e.raw_os_error() == Some(libc::ELOOP) => StorageError::Symlink,
                _ => StorageError::Io(e),
            })?;
        if !file.metadata()?.is_file() {
            return Err(StorageError::NotFound);
        }
        Ok((file, location))
    }

    /// A new scratch file for an upload; removed on drop unless persisted.
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

    /// Removes an object's file. A missing file is not an error.
    pub fn remove(&self, bucket: &Bucket, path: &ObjectPath) -> Result<(), StorageError> {
        match self.locate(bucket, path, false) {
            Ok(location) => match fs::remove_file(location) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// An upload in progress.
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

    /// Atomically moves the finished upload to `dest`, replacing what was there (a rename
    /// replaces a symlink at `dest` rather than following it).
    pub fn persist(self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
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
        let storage = Storage::open(&base.join("root")).unwrap();
        let bucket = Bucket::parse("b").unwrap();
        fs::create_dir_all(storage.root().join("b")).unwrap();
        std::os::unix::fs::symlink(&outside, storage.root().join("b/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), storage.root().join("b/file")).unwrap();
        let through_dir = ObjectPath::parse_encoded("link/secret").unwrap();
        assert!(matches!(
            storage.open_read(&bucket, &through_dir),
            Err(StorageError::Symlink)
        ));
        assert!(matches!(
            storage.locate(&bucket, &through_dir, true),
            Err(StorageError::Symlink)
        ));
        let direct = ObjectPath::parse_encoded("file").unwrap();
        assert!(matches!(
            storage.open_read(&bucket, &direct),
            Err(StorageError::Symlink)
        ));
        fs::remove_dir_all(&base).unwrap();
    }
}
