//! Finding the PostgreSQL server binaries (`initdb`, `postgres`) on the host.
//!
//! Search order: an explicit directory from the configuration; `PATH`; `pg_config --bindir`;
//! the usual distribution locations (newest major version first). When none has them, the
//! error names the package to install and the `DATABASE_URL` alternative.

use std::path::{Path, PathBuf};

/// A directory known to contain both `initdb` and `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgBinaries {
    dir: PathBuf,
}

/// Where to look. Split from the process environment so that the search is testable.
#[derive(Debug, Clone, Default)]
pub(crate) struct SearchPlan {
    /// A directory the user named; when set, nothing else is searched.
    pub(crate) explicit: Option<PathBuf>,
    /// The value of `PATH`.
    pub(crate) path_var: Option<String>,
    /// Whether to ask `pg_config --bindir`.
    pub(crate) ask_pg_config: bool,
    /// Glob-free parent directories whose children are versioned installs, plus fixed dirs.
    pub(crate) well_known: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found in {0} (set by \
         [database.embedded] bin_dir or SOLOBASE_PG_BIN_DIR): point it at the directory that \
         holds them, or set DATABASE_URL to use an existing PostgreSQL server"
    )]
    NotInExplicitDir(String),
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found in PATH, `pg_config --bindir` \
         or the usual locations (searched: {searched}). Install the PostgreSQL server package \
         (Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; \
         macOS: `brew install postgresql`), or set SOLOBASE_PG_BIN_DIR to their directory, or set \
         DATABASE_URL to use an existing PostgreSQL server"
    )]
    NotFound { searched: String },
}

impl PgBinaries {
    /// The plan for this machine, honouring `explicit` when given.
    pub(crate) fn plan(explicit: Option<PathBuf>) -> SearchPlan {
        SearchPlan {
            explicit,
            path_var: std::env::var("PATH").ok(),
            ask_pg_config: true,
            well_known: well_known_dirs(),
        }
    }

    pub(crate) fn find(plan: &SearchPlan) -> Result<Self, FindError> {
        if let Some(dir) = &plan.explicit {
            return if has_server_binaries(dir) {
                Ok(Self { dir: dir.clone() })
            } else {
                Err(FindError::NotInExplicitDir(dir.display().to_string()))
            };
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = &plan.path_var {
            candidates.extend(std::env::split_paths(path));
        }
        if plan.ask_pg_config {
            candidates.extend(pg_config_bindir(plan.path_var.as_deref()));
        }
        candidates.extend(plan.well_known.iter().cloned());
        for dir in &candidates {
            if has_server_binaries(dir) {
                return Ok(Self { dir: dir.clone() });
            }
        }
        let searched = candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(FindError::NotFound {
            searched: if searched.is_empty() {
                "nothing".into()
            } else {
                searched
            },
        })
    }

    pub(crate) fn initdb(&self) -> PathBuf {
        self.dir.join("initdb")
    }

    pub(crate) fn postgres(&self) -> PathBuf {
        self.dir.join("postgres")
    }
}

fn has_server_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `pg_config --bindir` from `PATH`, if there is one.
fn pg_config_bindir(path_var: Option<&str>) -> Option<PathBuf> {
    let pg_config = std::env::split_paths(path_var?)
        .map(|d| d.join("pg_config"))
        .find(|p| is_executable(p))?;
    let out = std::process::Command::new(pg_config)
        .arg("--bindir")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Distribution locations, newest major version first.
fn well_known_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // Debian/Ubuntu: /usr/lib/postgresql/<major>/bin; Red Hat: /usr/pgsql-<major>/bin;
    // Homebrew: /opt/homebrew/opt/postgresql@<major>/bin.
    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
        ("/opt/homebrew/opt", "postgresql@", "bin"),
        ("/usr/local/opt", "postgresql@", "bin"),
    ] {
        let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let major: u32 = name.strip_prefix(prefix)?.split('.').next()?.parse().ok()?;
                Some((major, entry.path().join(suffix)))
            })
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        dirs.extend(versioned.into_iter().map(|(_, p)| p));
    }
    dirs.extend(
        ["/usr/local/pgsql/bin", "/usr/local/bin", "/usr/bin"]
            .into_iter()
            .map(PathBuf::from),
    );
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_search_names_the_package_and_database_url() {
        let err = PgBinaries::find(&SearchPlan::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("DATABASE_URL"), "{msg}");
    }

    #[test]
    fn empty_path_entries_are_not_binaries() {
        let dir = std::env::temp_dir();
        let plan = SearchPlan {
            path_var: Some(dir.display().to_string()),
            ..SearchPlan::default()
        };
        let err = PgBinaries::find(&plan).unwrap_err();
        assert!(err.to_string().contains(&dir.display().to_string()));
    }

    #[test]
    fn explicit_dir_without_binaries_is_reported_as_such() {
        let plan = SearchPlan {
            explicit: Some("/nonexistent-pg".into()),
            ..SearchPlan::default()
        };
        let msg = PgBinaries::find(&plan).unwrap_err().to_string();
        assert!(msg.contains("/nonexistent-pg") && msg.contains("SOLOBASE_PG_BIN_DIR"));
    }
}
