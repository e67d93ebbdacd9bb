//! Where the embedded cluster's directory is and who owns it. When Solobase runs as root the
//! cluster belongs to an unprivileged system user, which must be able to reach it; when it
//! cannot (a data directory under a `0700` home, say), the cluster is placed under
//! [`RELOCATED_BASE`] and linked from the requested path, so that no permission of the user's
//! own directories is loosened.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::embedded::{EmbeddedError, io};
use super::sys::{self, UserIds};

/// `Some(user)` when PostgreSQL must run as another user than us (we are root).
pub(super) fn cluster_owner(system_user: &str) -> Result<Option<UserIds>, EmbeddedError> {
    if sys::effective_uid() != 0 {
        return Ok(None);
    }
    sys::lookup_user(system_user)
        .filter(|ids| ids.uid != 0)
        .map(Some)
        .ok_or_else(|| EmbeddedError::NoSystemUser(system_user.to_owned()))
}

pub(super) fn absolute(path: &Path) -> Result<PathBuf, EmbeddedError> {
    std::path::absolute(path).map_err(io(format!("cannot resolve {}", path.display())))
}

pub(super) fn create_private_dir(dir: &Path, owner: Option<UserIds>) -> Result<(), EmbeddedError> {
    fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io(format!("cannot set permissions of {}", dir.display())))?;
    if let Some(ids) = owner {
        std::os::unix::fs::chown(dir, Some(ids.uid), Some(ids.gid)).map_err(io(format!(
            "cannot give {} to uid {}",
            dir.display(),
            ids.uid
        )))?;
    }
    Ok(())
}

/// Where clusters live whose requested place the PostgreSQL user cannot reach.
const RELOCATED_BASE: &str = "/var/lib/solobase/clusters";

/// Running as root with a data directory the PostgreSQL user cannot reach (say, under a
/// 0700 home directory), the cluster is kept under [`RELOCATED_BASE`] instead and the
/// requested path becomes a symlink to it, so that `<data_dir>/postgres` still leads to it
/// and no permission of the user's directories is loosened.
pub(super) fn resolve_root(
    requested: &Path,
    owner: Option<UserIds>,
) -> Result<PathBuf, EmbeddedError> {
    let Some(ids) = owner else {
        return Ok(requested.to_owned());
    };
    if let Ok(target) = fs::read_link(requested) {
        return Ok(target);
    }
    let Err(unreachable) = check_reachable(requested, ids) else {
        return Ok(requested.to_owned());
    };
    if requested.exists() {
        // A cluster made there earlier (by another user) is never moved behind anyone's back.
        return Err(unreachable);
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(requested.as_os_str().as_encoded_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let relocated = Path::new(RELOCATED_BASE).join(id);
    fs::create_dir_all(RELOCATED_BASE).map_err(io(format!("cannot create {RELOCATED_BASE}")))?;
    if let Some(parent) = requested.parent() {
        fs::create_dir_all(parent).map_err(io(format!("cannot create {}", parent.display())))?;
    }
    std::os::unix::fs::symlink(&relocated, requested).map_err(io(format!(
        "cannot link {} to {}",
        requested.display(),
        relocated.display()
    )))?;
    tracing::warn!(
        requested = %requested.display(),
        cluster = %relocated.display(),
        "the PostgreSQL user cannot reach the data directory; the cluster lives in {} instead",
        relocated.display()
    );
    Ok(relocated)
}

/// Every ancestor must be searchable by the PostgreSQL user, or it cannot open its data.
fn check_reachable(dir: &Path, ids: UserIds) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == ids.uid {
            mode & 0o100 != 0
        } else if meta.gid() == ids.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(EmbeddedError::Unreachable {
                uid: ids.uid,
                path: dir.display().to_string(),
                blocking: ancestor.display().to_string(),
            });
        }
    }
    Ok(())
}

/// After a cluster was created by another user (say, before Solobase ran as root), hand it to
/// the PostgreSQL user.
pub(super) fn ensure_owned_by(root: &Path, ids: UserIds) -> Result<(), EmbeddedError> {
    let pgdata = root.join("data");
    let meta = fs::metadata(&pgdata).map_err(io(format!("cannot read {}", pgdata.display())))?;
    if meta.uid() == ids.uid {
        return Ok(());
    }
    fn chown_tree(path: &Path, ids: UserIds) -> std::io::Result<()> {
        std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))?;
        if fs::symlink_metadata(path)?.is_dir() {
            for entry in fs::read_dir(path)? {
                chown_tree(&entry?.path(), ids)?;
            }
        }
        Ok(())
    }
    chown_tree(&pgdata, ids).map_err(io(format!(
        "cannot give {} to uid {}",
        pgdata.display(),
        ids.uid
    )))
}
